//! Hands freed heap memory back to the kernel after a large load.
//!
//! Parsing a big file or relist leaves its garbage scattered between the
//! entries that stay, and glibc only returns the top of the heap on its own
//! (about 9 MB stayed resident after loading 100k entries). `malloc_trim(0)`
//! releases every free page. Other C libraries (musl, in the container
//! image) return memory eagerly; there this does nothing.

/// Costs a walk over the heap (milliseconds at 100k entries): call it after
/// big changes, not per entry.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only touches the allocator's own free lists and
    // is thread-safe (it takes each arena's lock).
    unsafe {
        libc::malloc_trim(0);
    }
}
