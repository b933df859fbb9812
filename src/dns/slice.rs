//! When the UDP readers ask for a short scheduler slice
//! (`--udp-sched-slice`, [`crate::sys::sched`]): never, always, or by
//! default (`auto`) only while the machine's CPUs are mostly busy.
//!
//! A short slice lets a woken reader preempt a busy neighbour at once, which
//! keeps the latency tail short when the cores are contended. When a core
//! is idle it buys nothing, and each query then costs more context
//! switches: 10-70 % more CPU per query at a fixed 20k qps on a quiet 2-core
//! VM. So `auto` asks for it only while the machine has little idle time.
//! [`watch`] samples `/proc/stat` four times a second and sets the switch;
//! each reader follows it between batches ([`ReaderSlice::follow`]), at the
//! cost of one relaxed atomic load per batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus::IntGauge;
use tracing::{debug, warn};

use crate::sys::sched;

/// `--udp-sched-slice`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SliceMode {
    /// The kernel's slice (`0`).
    Kernel,
    /// This slice, always.
    Always(Duration),
    /// This slice while the machine's idle share is low (`auto`).
    Auto(Duration),
}

/// The slice `auto` asks for: the kernel's minimum.
pub const AUTO_SLICE: Duration = Duration::from_micros(100);

/// How often `auto` samples the machine's idle time: often enough that a
/// burst ending gives the cores back within half a second, rarely enough
/// that reading `/proc/stat` costs nothing that shows (2 CPUs: 10 ms ticks,
/// so 50 per sample).
pub const SAMPLE: Duration = Duration::from_millis(250);

/// `auto` turns the short slice on below this idle share of all CPUs...
pub const ON_BELOW: f64 = 0.25;
/// ...and off again above this one (between them it stays as it is).
pub const OFF_ABOVE: f64 = 0.50;

/// Whether `auto` wants the short slice, given whether it has it now and
/// the idle share of the last sample.
pub fn wanted(on: bool, idle: f64) -> bool {
    if idle < ON_BELOW {
        true
    } else if idle > OFF_ABOVE {
        false
    } else {
        on
    }
}

/// What the readers should ask for now; shared by all of them.
pub struct SliceSwitch {
    mode: SliceMode,
    on: AtomicBool,
    /// 1 while the readers are asked for the short slice.
    gauge: IntGauge,
}

impl SliceSwitch {
    pub fn new(mode: SliceMode, gauge: IntGauge) -> Arc<Self> {
        let on = matches!(mode, SliceMode::Always(_));
        gauge.set(on.into());
        Arc::new(Self {
            mode,
            on: AtomicBool::new(on),
            gauge,
        })
    }

    pub fn mode(&self) -> SliceMode {
        self.mode
    }

    fn set(&self, on: bool) {
        if self.on.swap(on, Ordering::Relaxed) != on {
            debug!(on, "UDP readers' short scheduler slice");
            self.gauge.set(on.into());
        }
    }

    /// A reader thread's view of the switch; it applies what the switch says
    /// now.
    pub fn reader(&self) -> ReaderSlice<'_> {
        let mut reader = ReaderSlice {
            switch: self,
            applied: false,
        };
        reader.follow();
        reader
    }
}

/// One reader thread's slice: what it last asked the kernel for.
pub struct ReaderSlice<'a> {
    switch: &'a SliceSwitch,
    applied: bool,
}

impl ReaderSlice<'_> {
    /// Asks the kernel for what the switch says, if that changed. Only on
    /// the thread the slice is for.
    pub fn follow(&mut self) {
        let want = self.switch.on.load(Ordering::Relaxed);
        if want == self.applied {
            return;
        }
        self.applied = want;
        let slice = match (want, self.switch.mode) {
            (true, SliceMode::Always(slice) | SliceMode::Auto(slice)) => slice,
            _ => Duration::ZERO,
        };
        if let Err(error) = sched::request_slice(slice) {
            debug!(%error, ?slice, "could not set the scheduler slice");
        }
    }
}

/// Under `auto`, sets `switch` from the machine's idle time every
/// [`SAMPLE`], forever; otherwise only waits. Without `/proc/stat` the
/// readers keep the kernel's slice.
pub async fn watch(switch: Arc<SliceSwitch>) {
    if !matches!(switch.mode, SliceMode::Auto(_)) {
        return std::future::pending().await;
    }
    let mut tick = tokio::time::interval(SAMPLE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = None;
    loop {
        tick.tick().await;
        let now = match sched::cpu_times() {
            Ok(now) => now,
            Err(error) => {
                warn!(%error, "cannot read the CPUs' idle time: --udp-sched-slice auto keeps the kernel's slice");
                switch.set(false);
                return std::future::pending().await;
            }
        };
        if let Some(idle) = last.and_then(|last| now.idle_since(&last)) {
            switch.set(wanted(switch.on.load(Ordering::Relaxed), idle));
        }
        last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_switch(mode: SliceMode) -> Arc<SliceSwitch> {
        SliceSwitch::new(mode, IntGauge::new("slice", "test").unwrap())
    }

    #[test]
    fn auto_wants_the_slice_when_little_is_idle_with_hysteresis() {
        assert!(wanted(false, 0.0));
        assert!(wanted(false, 0.24));
        assert!(!wanted(false, 0.25));
        assert!(!wanted(false, 0.4));
        assert!(wanted(true, 0.4), "between the thresholds it stays on");
        assert!(wanted(true, 0.5));
        assert!(!wanted(true, 0.51));
        assert!(!wanted(true, 1.0));
    }

    #[test]
    fn the_switch_starts_as_its_mode_says_and_shows_in_the_gauge() {
        for (mode, on) in [
            (SliceMode::Kernel, false),
            (SliceMode::Auto(AUTO_SLICE), false),
            (SliceMode::Always(AUTO_SLICE), true),
        ] {
            let s = mk_switch(mode);
            assert_eq!(s.on.load(Ordering::Relaxed), on, "{mode:?}");
            assert_eq!(s.gauge.get(), i64::from(on), "{mode:?}");
        }
        let s = mk_switch(SliceMode::Auto(AUTO_SLICE));
        s.set(true);
        assert_eq!(s.gauge.get(), 1);
        s.set(false);
        assert_eq!(s.gauge.get(), 0);
    }

    #[test]
    fn a_reader_follows_the_switch_on_its_own_thread() {
        let s = mk_switch(SliceMode::Auto(AUTO_SLICE));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let before = sched::current_slice().unwrap();
                let mut reader = s.reader();
                assert!(!reader.applied);
                assert_eq!(sched::current_slice().unwrap(), before, "auto starts with the kernel's");
                s.set(true);
                reader.follow();
                assert!(reader.applied);
                if sched::current_slice().unwrap() != AUTO_SLICE {
                    eprintln!("skipped: this kernel has no per-thread slice (Linux 6.12+)");
                    return;
                }
                s.set(false);
                reader.follow();
                assert!(!reader.applied);
                assert_eq!(sched::current_slice().unwrap(), before);
            });
        });
    }
}
