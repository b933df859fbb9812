//! A cache prefetch hint: start loading a value's cache line now, so that
//! the load that needs it later does not wait for memory.
//!
//! Why it is sound: a prefetch only hints the CPU. It never faults, reads
//! nothing into the program and writes nothing, whatever the address; the
//! address here comes from a reference anyway.

/// Hints that `value` will be read soon. A no-op where no stable hint is.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: see the module docs.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
