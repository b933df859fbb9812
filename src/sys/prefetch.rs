//! A cache prefetch hint: start loading a value's cache lines now, so that
//! the load that needs it later does not wait for memory.
//!
//! Why it is sound: a prefetch only hints the CPU. It never faults, reads
//! nothing into the program and writes nothing, whatever the address. The
//! addresses here start at a reference, and [`prefetch_lines`] may run past
//! its value, which is harmless for the same reason.

/// Hints that `value` will be read soon: the cache lines of its first and
/// last byte, which is all of them for a value of up to 64 bytes (a
/// 40-byte table slot straddles two lines half the time). When both bytes
/// share a line, the second hint finds it already on its way.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    let first = (value as *const T).cast::<i8>();
    hint(first);
    hint(first.wrapping_add(size_of::<T>().saturating_sub(1)));
}

/// Hints that the `lines` cache lines from `value`'s first byte on will be
/// read soon: a probe run that starts at `value` and may go on past it.
/// The lines need not belong to `value`, nor to anything: a hint never
/// faults.
#[inline(always)]
pub fn prefetch_lines<T>(value: &T, lines: usize) {
    let first = (value as *const T).cast::<i8>();
    for line in 0..lines {
        // `wrapping_add` never asserts that the address is inside an
        // allocation.
        hint(first.wrapping_add(line * 64));
    }
}

/// One hint for the line holding `addr`; a no-op where no stable hint is.
#[inline(always)]
fn hint(addr: *const i8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: see the module docs: any address will do.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}
