//! A short scheduler time slice for the UDP threads.
//!
//! Since Linux 6.12 (EEVDF), a normal thread may ask for its own slice with
//! `sched_setattr(2)`'s `sched_runtime`. A thread with a short slice gets an
//! early deadline when it wakes, so it preempts a busy neighbour at once
//! instead of waiting out that neighbour's slice (about 3 ms by default on
//! two CPUs). A DNS answer takes microseconds, so this lowers latency when
//! the cores are shared, at the price of more context switches
//! (`--udp-sched-slice`). Older kernels ignore the field.

use std::io;
use std::time::Duration;

/// `struct sched_attr` from `<linux/sched/types.h>` (the version-1 layout,
/// with the utilization clamps).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

/// Requests `slice` for the calling thread, keeping its policy and nice
/// value. Only for `SCHED_OTHER` threads; others are left alone.
pub fn request_slice(slice: Duration) -> io::Result<()> {
    let mut attr = SchedAttr::default();
    let size = size_of::<SchedAttr>() as u32;
    // SAFETY: `attr` is a valid, writable `sched_attr` of `size` bytes, the
    // layout the kernel expects for that size; pid 0 is this thread.
    let r = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr as *mut SchedAttr, size, 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if attr.policy != libc::SCHED_OTHER as u32 {
        return Ok(());
    }
    attr.size = size;
    attr.flags = 0;
    attr.runtime = slice.as_nanos().min(u64::MAX as u128) as u64;
    // SAFETY: as above; the kernel only reads `attr`.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
