//! The standby readers of `--workers auto`: threads parked beside the one
//! UDP socket's primary reader, woken one at a time when a reader finds a
//! backlog that lasts or a queue that overflows, and parked again once the
//! queue is drained. This module owns when to wake and when to park, and
//! the bookkeeping of who is awake; [`super::udp`] does the reading.
//!
//! A parked standby costs nothing: it waits in `std::thread::park`, with no
//! timer, so an idle or moderately loaded server runs one UDP thread.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::Thread;

use super::metrics::StandbyMetrics;
use crate::sys::mmsg::BATCH;

/// Full reads in a row after which a reader wakes a standby even though
/// nothing is lost: 16 batches, 512 datagrams, well under a millisecond of
/// one core's work. A shorter backlog is one reader's to clear: a second
/// reader on the same queue costs wake-ups and contention on the socket
/// that, with no idle core (saturation on two cores), cost more than it
/// saves (`load.py`, see the README's "Why `--workers auto`").
pub const PATIENCE: u32 = 16;

/// When one reader's reads call for another reader: the kernel dropped a
/// datagram for a full queue since this reader's last full read (a flood:
/// wake at once), or [`PATIENCE`] reads in a row filled the batch (a
/// backlog that lasts). Each reader keeps its own.
#[derive(Default)]
pub struct Backlog {
    full_reads: u32,
    /// The socket's drop count at this reader's last full read.
    drops: Option<u32>,
}

impl Backlog {
    /// Records a read of `n` datagrams; true when it should wake a
    /// standby. `drops` reads the socket's drop count (only after a full
    /// read, so a reader that keeps up makes no extra system call); `None`
    /// where the kernel does not say, and then only patience wakes.
    pub fn wake(&mut self, n: usize, drops: impl FnOnce() -> Option<u32>) -> bool {
        if n < BATCH {
            self.full_reads = 0;
            return false;
        }
        self.full_reads += 1;
        let dropped = match drops() {
            Some(now) => self.drops.replace(now).is_some_and(|seen| seen != now),
            None => false,
        };
        if dropped || self.full_reads >= PATIENCE {
            self.full_reads = 0;
            return true;
        }
        false
    }
}

/// A standby reads on while each read still finds at least half a batch;
/// fewer (or none) means the readers already awake keep up, and going back
/// to sleep on every short read would cost a wake-up per batch.
pub fn keep_reading(n: usize) -> bool {
    n >= BATCH / 2
}

/// The standby readers of one socket. With none (`--workers N`), waking is
/// one atomic load that finds no one to wake.
pub struct Standby {
    slots: Box<[Slot]>,
    /// Standby readers claimed by a waker and not yet parked again. Raised
    /// before a claim, lowered after a failed one or on parking, so it is
    /// never below the truth; it only spares the scan when all are awake.
    awake: AtomicUsize,
    metrics: StandbyMetrics,
}

struct Slot {
    /// Parked or about to park: a waker may claim it (true → false).
    asleep: AtomicBool,
    /// Set once the reader's thread exists, before any waker runs.
    thread: OnceLock<Thread>,
}

impl Standby {
    /// `n` standby readers, all asleep; each needs [`attach`](Self::attach).
    pub fn new(n: usize, metrics: StandbyMetrics) -> Self {
        let slots = (0..n)
            .map(|_| Slot {
                asleep: AtomicBool::new(true),
                thread: OnceLock::new(),
            })
            .collect();
        Self {
            slots,
            awake: AtomicUsize::new(0),
            metrics,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Names the thread that reads as standby `i`. Before the first
    /// [`wake_one`](Self::wake_one) could pick it, or it is never woken.
    pub fn attach(&self, i: usize, thread: Thread) {
        let _ = self.slots[i].thread.set(thread);
    }

    /// Wakes one parked standby reader, the lowest-numbered (so the same
    /// few threads stay warm); false when all are awake already, which
    /// costs one atomic load and no system call.
    pub fn wake_one(&self) -> bool {
        let n = self.slots.len();
        if self.awake.load(Ordering::Relaxed) >= n {
            return false;
        }
        self.awake.fetch_add(1, Ordering::Relaxed);
        self.metrics.awake.inc();
        for slot in &self.slots {
            // Release: the count raised above is seen by the reader woken,
            // before it lowers it.
            let claimed = slot.asleep.load(Ordering::Relaxed)
                && slot
                    .asleep
                    .compare_exchange(true, false, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok();
            if claimed {
                if let Some(thread) = slot.thread.get() {
                    thread.unpark();
                }
                self.metrics.wakeups.inc();
                return true;
            }
        }
        self.awake.fetch_sub(1, Ordering::Relaxed);
        self.metrics.awake.dec();
        false
    }

    /// Called by standby `i`'s own thread: returns once a waker has
    /// claimed it. Spurious unparks are waited out.
    pub fn wait(&self, i: usize) {
        let slot = &self.slots[i];
        // Acquire: pairs with the waker's claim.
        while slot.asleep.load(Ordering::Acquire) {
            std::thread::park();
        }
    }

    /// Called by standby `i`'s own thread when it is done: marks it asleep
    /// (claimable again) and waits for the next claim. An unpark between
    /// the two is kept as the thread's token, so no wake-up is lost.
    pub fn park(&self, i: usize) {
        self.awake.fetch_sub(1, Ordering::Relaxed);
        self.metrics.awake.dec();
        self.slots[i].asleep.store(true, Ordering::Release);
        self.wait(i);
    }

    /// Standby readers awake now (a hint: see the field).
    pub fn awake(&self) -> usize {
        self.awake.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::time::Duration;

    use prometheus::{IntCounter, IntGauge};

    use super::*;

    fn metrics() -> StandbyMetrics {
        StandbyMetrics {
            wakeups: IntCounter::new("w", "w").unwrap(),
            awake: IntGauge::new("a", "a").unwrap(),
        }
    }

    fn mk_backlog() -> Backlog {
        Backlog::default()
    }

    #[test]
    fn a_backlog_wakes_once_it_lasts() {
        let mut b = mk_backlog();
        let quiet = || Some(7);
        for read in 1..PATIENCE {
            assert!(!b.wake(BATCH, quiet), "woke after {read} full reads");
        }
        assert!(b.wake(BATCH, quiet), "{PATIENCE} full reads in a row");
        // Counting starts again, and a short read breaks the run.
        for _ in 1..PATIENCE {
            assert!(!b.wake(BATCH, quiet));
        }
        assert!(!b.wake(BATCH - 1, quiet));
        assert!(!b.wake(BATCH, quiet));
    }

    #[test]
    fn a_drop_wakes_at_once() {
        let mut b = mk_backlog();
        // The first full read only learns the count: old drops wake no one.
        assert!(!b.wake(BATCH, || Some(100)));
        assert!(!b.wake(BATCH, || Some(100)));
        assert!(b.wake(BATCH, || Some(101)), "a new drop");
        assert!(!b.wake(BATCH, || Some(101)));
        // The count wraps.
        let mut b = mk_backlog();
        assert!(!b.wake(BATCH, || Some(u32::MAX)));
        assert!(b.wake(BATCH, || Some(0)));
    }

    #[test]
    fn short_reads_ask_nothing_of_the_socket() {
        let mut b = mk_backlog();
        for n in [0, 1, BATCH - 1] {
            assert!(!b.wake(n, || panic!("drops read after a read of {n}")));
        }
        // Where the kernel keeps no count, patience still wakes.
        let results: Vec<bool> = (0..PATIENCE).map(|_| b.wake(BATCH, || None)).collect();
        assert_eq!(results.iter().filter(|w| **w).count(), 1);
        assert!(results[PATIENCE as usize - 1]);
    }

    #[test]
    fn a_standby_reads_on_while_reads_stay_large() {
        assert!(keep_reading(BATCH));
        assert!(keep_reading(BATCH / 2));
        assert!(!keep_reading(BATCH / 2 - 1));
        // EAGAIN reads as 0.
        assert!(!keep_reading(0));
    }

    #[test]
    fn with_no_standby_nothing_is_woken() {
        let s = Standby::new(0, metrics());
        assert!(!s.wake_one());
        assert_eq!(s.awake(), 0);
        assert_eq!(s.metrics.wakeups.get(), 0);
    }

    #[test]
    fn each_standby_is_woken_once_until_it_parks() {
        let m = metrics();
        let s = Standby::new(2, m.clone());
        // No threads attached: claims still count, nothing to unpark.
        assert!(s.wake_one());
        assert!(s.wake_one());
        assert_eq!(s.awake(), 2);
        assert!(!s.wake_one(), "all awake");
        assert_eq!((m.wakeups.get(), m.awake.get()), (2, 2));
        // Standby 0 is done (its state as park leaves it, without waiting).
        s.awake.fetch_sub(1, Ordering::Relaxed);
        m.awake.dec();
        s.slots[0].asleep.store(true, Ordering::Release);
        assert!(s.wake_one(), "standby 0 again");
        assert!(!s.slots[0].asleep.load(Ordering::Relaxed));
        assert_eq!((m.wakeups.get(), m.awake.get()), (3, 2));
    }

    #[test]
    fn a_parked_thread_wakes_when_claimed_and_parks_again() {
        let m = metrics();
        let s = Arc::new(Standby::new(1, m.clone()));
        let (tx, rx) = mpsc::channel();
        let reader = {
            let s = s.clone();
            std::thread::spawn(move || {
                s.wait(0);
                for round in 0..3 {
                    tx.send(round).unwrap();
                    s.park(0);
                }
            })
        };
        s.attach(0, reader.thread().clone());
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "parked until woken"
        );
        for round in 0..3 {
            // Claimable again only once the reader has parked.
            let start = std::time::Instant::now();
            while !s.wake_one() {
                assert!(start.elapsed() < Duration::from_secs(5), "never parked");
                std::thread::yield_now();
            }
            assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(round));
        }
        // Woken a fourth time, it returns from park and ends.
        while !s.wake_one() {
            std::thread::yield_now();
        }
        reader.join().unwrap();
        assert_eq!(m.wakeups.get(), 4);
        assert_eq!(s.awake(), 1);
    }
}
