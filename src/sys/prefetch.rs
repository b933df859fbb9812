//! A cache prefetch hint: start loading a value's cache lines now, so that
//! the load that needs it later does not wait for memory.
//!
//! Why it is sound: a prefetch only hints the CPU. It never faults, reads
//! nothing into the program and writes nothing, whatever the address. The
//! addresses here start at a reference, and [`prefetch_lines`] may run past
//! its value, which is harmless for the same reason.

/// Hints that `value` will be read soon: the cache lines of its first and
/// last byte, which is all of them for a value of up to 64 bytes (a
/// 40-byte table slot straddles two lines half the time). A no-op where
/// no stable hint is.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let first = (value as *const T).cast::<i8>();
        let last = first.wrapping_add(size_of::<T>().saturating_sub(1));
        // SAFETY: see the module docs. When both bytes share a line, the
        // second hint finds it already on its way.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(first);
            _mm_prefetch::<_MM_HINT_T0>(last);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// Hints that the `lines` cache lines from `value`'s first byte on will be
/// read soon: a probe run that starts at `value` and may go on past it.
/// The lines need not belong to `value`, nor to anything: a hint never
/// faults.
#[inline(always)]
pub fn prefetch_lines<T>(value: &T, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let first = (value as *const T).cast::<i8>();
        for line in 0..lines {
            // SAFETY: see the module docs; `wrapping_add` never asserts
            // that the address is inside an allocation.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(line * 64)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (value, lines);
}
