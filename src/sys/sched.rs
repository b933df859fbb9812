//! A short scheduler time slice for the UDP threads.
//!
//! Since Linux 6.12 (EEVDF), a normal thread may ask for its own slice with
//! `sched_setattr(2)`'s `sched_runtime`. A thread with a short slice gets an
//! early deadline when it wakes, so it preempts a busy neighbour at once
//! instead of waiting out that neighbour's slice (about 3 ms by default on
//! two CPUs). A DNS answer takes microseconds, so this lowers latency when
//! the cores are shared, at the price of more context switches
//! (`--udp-sched-slice`). Older kernels ignore the field. Also the
//! machine's idle CPU time, which decides when to ask (`dns::slice`).

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
/// value; `Duration::ZERO` goes back to the kernel's default slice. Only
/// for `SCHED_OTHER` threads; others are left alone.
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

/// The calling thread's scheduler slice as the kernel reports it (Linux
/// 6.12 or later; 0 on older kernels).
pub fn current_slice() -> io::Result<Duration> {
    let mut attr = SchedAttr::default();
    let size = size_of::<SchedAttr>() as u32;
    // SAFETY: as in `request_slice`.
    let r = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr as *mut SchedAttr, size, 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Duration::from_nanos(attr.runtime))
}

/// Idle and total CPU time of the whole machine since boot, in clock ticks,
/// from the first line of `/proc/stat` (idle counts I/O wait; steal counts
/// as busy).
pub fn cpu_times() -> io::Result<CpuTimes> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    stat.lines()
        .next()
        .and_then(CpuTimes::parse)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "/proc/stat: no cpu line"))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub idle: u64,
    pub total: u64,
}

impl CpuTimes {
    /// `cpu  user nice system idle iowait irq softirq steal [guest guest_nice]`;
    /// guest time is already in user and nice.
    fn parse(line: &str) -> Option<Self> {
        let mut fields = line.strip_prefix("cpu ")?.split_ascii_whitespace();
        let mut t = [0u64; 8];
        for (i, v) in t.iter_mut().enumerate() {
            *v = match fields.next() {
                Some(f) => f.parse().ok()?,
                // Kernels before 2.6.11 had no steal column.
                None if i >= 7 => 0,
                None => return None,
            };
        }
        Some(Self {
            idle: t[3] + t[4],
            total: t.iter().sum(),
        })
    }

    /// The idle share of the CPU time between `earlier` and `self`; `None`
    /// when no tick went by.
    pub fn idle_since(&self, earlier: &Self) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total).filter(|&t| t > 0)?;
        let idle = self.idle.saturating_sub(earlier.idle).min(total);
        Some(idle as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_times_come_from_the_first_line_of_proc_stat() {
        let t = CpuTimes::parse("cpu  100 5 50 800 20 3 2 10 7 0").unwrap();
        assert_eq!(t, CpuTimes { idle: 820, total: 990 });
        assert_eq!(
            CpuTimes::parse("cpu  1 2 3 4 5 6 7"),
            Some(CpuTimes { idle: 9, total: 28 })
        );
        assert_eq!(CpuTimes::parse("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(CpuTimes::parse("cpu  1 2 x 4 5 6 7 8"), None);
        assert_eq!(CpuTimes::parse("cpu  1 2 3"), None);
        let now = cpu_times().unwrap();
        assert!(now.total >= now.idle && now.total > 0);
    }

    #[test]
    fn idle_share_between_two_readings() {
        let a = CpuTimes { idle: 100, total: 200 };
        assert_eq!(CpuTimes { idle: 175, total: 300 }.idle_since(&a), Some(0.75));
        assert_eq!(a.idle_since(&a), None);
        assert_eq!(CpuTimes { idle: 100, total: 100 }.idle_since(&a), None);
    }

    #[test]
    fn any_kernel_takes_a_request_and_zero_restores_its_slice() {
        // A thread of its own: the test harness's threads keep theirs.
        std::thread::spawn(|| {
            let default = current_slice().unwrap();
            request_slice(Duration::from_micros(100)).unwrap();
            request_slice(Duration::ZERO).unwrap();
            assert_eq!(current_slice().unwrap(), default);
        })
        .join()
        .unwrap();
    }

    #[test]
    #[ignore = "needs Linux 6.12+ (a per-thread scheduler slice)"]
    fn a_requested_slice_is_reported_back() {
        std::thread::spawn(|| {
            let short = Duration::from_micros(100);
            request_slice(short).unwrap();
            assert_eq!(current_slice().unwrap(), short);
        })
        .join()
        .unwrap();
    }
}
