//! What the harness threads share while a run is under way: the plan (workload, topic, the
//! clock of the run and its phases) behind an `Arc`, touched only through atomics; and each
//! thread's own statistics (`Rc`, no locks), which it sends to the main thread as one-second
//! ticks and as its final result.
//!
//! The clock: every thread measures from one `Instant` (`base`) plus the start offset the
//! main thread publishes once every producer and consumer is connected and positioned. The
//! run's phases are offsets from that start: warm-up `[0, t0)`, measured `[t0, t1)`, then the
//! drain. `t1` is fixed up front for a timed run, or set when the producers finish a run of
//! a given record count.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::latency::LatencyHistogram;
use super::workload::Workload;

/// Error messages kept per thread for the report.
pub const ERROR_SAMPLES: usize = 5;
const UNSET: u64 = u64::MAX;

/// The shared plan of a run.
pub struct Plan {
    pub workload: Workload,
    pub bootstrap: String,
    pub topic: String,
    /// consume mode: the end offset of each partition after the fill.
    pub fill_end: Vec<i64>,
    pub threads: usize,
    base: Instant,
    /// Start of the run, as nanoseconds after `base`.
    start_ns: AtomicU64,
    /// Unix time of the start, nanoseconds.
    start_unix_ns: AtomicU64,
    /// End of the measured phase, nanoseconds after the start (UNSET: open).
    measure_end_ns: AtomicU64,
    /// Producers and consumers connected and positioned (or failed).
    pub ready: AtomicUsize,
    pub failed: AtomicUsize,
    pub producers_done: AtomicUsize,
    /// Records acknowledged whose intended send time is in the measured phase.
    pub window_acked: AtomicU64,
    /// Per consumer group: records consumed whose intended send time is in the measured
    /// phase.
    pub window_consumed: Vec<AtomicU64>,
    /// Set by the main thread to stop everything (failure or interrupt).
    pub abort: AtomicBool,
}

/// How long consumers keep reading after the measured phase for records still on the way.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

impl Plan {
    pub fn new(
        workload: Workload,
        bootstrap: String,
        topic: String,
        fill_end: Vec<i64>,
        threads: usize,
    ) -> Self {
        let groups = workload.consumer_groups.max(1);
        Self {
            workload,
            bootstrap,
            topic,
            fill_end,
            threads,
            base: Instant::now(),
            start_ns: AtomicU64::new(UNSET),
            start_unix_ns: AtomicU64::new(0),
            measure_end_ns: AtomicU64::new(UNSET),
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            producers_done: AtomicUsize::new(0),
            window_acked: AtomicU64::new(0),
            window_consumed: (0..groups).map(|_| AtomicU64::new(0)).collect(),
            abort: AtomicBool::new(false),
        }
    }

    /// Starts the clock (main thread, once everyone is ready).
    pub fn start(&self) {
        self.start_unix_ns.store(unix_now_ns(), Ordering::SeqCst);
        let now = self.base.elapsed().as_nanos() as u64;
        if self.workload.duration_s > 0.0 {
            let end = self.warmup() + Duration::from_secs_f64(self.workload.duration_s);
            self.measure_end_ns
                .store(end.as_nanos() as u64, Ordering::SeqCst);
        }
        self.start_ns.store(now, Ordering::SeqCst);
    }

    pub fn started(&self) -> bool {
        self.start_ns.load(Ordering::SeqCst) != UNSET
    }

    /// Time since the start (zero before it).
    pub fn elapsed(&self) -> Duration {
        let start = self.start_ns.load(Ordering::Relaxed);
        if start == UNSET {
            return Duration::ZERO;
        }
        let now = self.base.elapsed().as_nanos() as u64;
        Duration::from_nanos(now.saturating_sub(start))
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.workload.warmup_s)
    }

    /// End of the measured phase, if known yet.
    pub fn measure_end(&self) -> Option<Duration> {
        match self.measure_end_ns.load(Ordering::Relaxed) {
            UNSET => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// Closes the measured phase now (a run of a given record count).
    pub fn end_measuring_now(&self) {
        let now = self.elapsed().as_nanos() as u64;
        let _ =
            self.measure_end_ns
                .compare_exchange(UNSET, now, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Whether an instant (from the start) falls in the measured phase.
    pub fn in_window(&self, at: Duration) -> bool {
        at >= self.warmup() && self.measure_end().is_none_or(|end| at < end)
    }

    /// Unix nanoseconds of an instant given from the start.
    pub fn unix_ns(&self, at: Duration) -> u64 {
        self.start_unix_ns.load(Ordering::Relaxed) + at.as_nanos() as u64
    }

    /// From the start, the instant a Unix-nanosecond stamp stands for (saturating at 0).
    pub fn from_unix_ns(&self, unix_ns: u64) -> Duration {
        Duration::from_nanos(unix_ns.saturating_sub(self.start_unix_ns.load(Ordering::Relaxed)))
    }

    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// Producers of this plan and consumers over all groups.
    pub fn actors(&self) -> usize {
        self.workload.total_producers() + self.workload.total_consumers()
    }
}

pub fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Counts of one interval or of a whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub produced: u64,
    pub produced_bytes: u64,
    pub consumed: u64,
    pub consumed_bytes: u64,
    pub errors: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.produced += o.produced;
        self.produced_bytes += o.produced_bytes;
        self.consumed += o.consumed;
        self.consumed_bytes += o.consumed_bytes;
        self.errors += o.errors;
    }
}

/// One thread's last second, sent to the main thread for the progress line.
pub struct Tick {
    pub counts: Counts,
    pub produce: LatencyHistogram,
    pub end_to_end: LatencyHistogram,
}

/// One thread's whole run, returned when it ends.
pub struct ThreadResult {
    pub counts: Counts,
    pub produce: LatencyHistogram,
    pub end_to_end: LatencyHistogram,
    pub txn_commit: LatencyHistogram,
    pub error_samples: Vec<String>,
}

/// One thread's statistics. Only this thread's tasks touch them; no borrow is held across
/// an await.
#[derive(Default)]
pub struct ThreadStats {
    /// Measured phase only.
    pub window: Cell<Counts>,
    /// Since the last tick, any phase.
    pub interval: Cell<Counts>,
    pub produce: RefCell<LatencyHistogram>,
    pub end_to_end: RefCell<LatencyHistogram>,
    /// Transaction commits in the measured phase.
    pub txn_commit: RefCell<LatencyHistogram>,
    pub interval_produce: RefCell<LatencyHistogram>,
    pub interval_end_to_end: RefCell<LatencyHistogram>,
    pub error_samples: RefCell<Vec<String>>,
}

impl ThreadStats {
    /// Adds to the interval counts, and to the run's when `in_window`.
    pub fn count(&self, in_window: bool, change: impl Fn(&mut Counts)) {
        let mut c = self.interval.get();
        change(&mut c);
        self.interval.set(c);
        if in_window {
            let mut c = self.window.get();
            change(&mut c);
            self.window.set(c);
        }
    }

    pub fn error(&self, in_window: bool, what: impl std::fmt::Display) {
        self.count(in_window, |c| c.errors += 1);
        let mut samples = self.error_samples.borrow_mut();
        if samples.len() < ERROR_SAMPLES {
            samples.push(what.to_string());
        }
    }

    pub fn take_tick(&self) -> Tick {
        let counts = self.interval.replace(Counts::default());
        Tick {
            counts,
            produce: take(&self.interval_produce),
            end_to_end: take(&self.interval_end_to_end),
        }
    }

    /// The run's totals, taken out (the thread's tasks have ended).
    pub fn take_result(&self) -> ThreadResult {
        ThreadResult {
            counts: self.window.get(),
            produce: self.produce.take(),
            end_to_end: self.end_to_end.take(),
            txn_commit: self.txn_commit.take(),
            error_samples: self.error_samples.take(),
        }
    }
}

fn take(h: &RefCell<LatencyHistogram>) -> LatencyHistogram {
    let mut h = h.borrow_mut();
    let out = h.clone();
    h.reset();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_opens_after_the_warmup_and_closes_at_the_end() {
        let w = Workload {
            warmup_s: 1.0,
            duration_s: 2.0,
            ..Workload::default()
        };
        let plan = Plan::new(w, String::new(), String::new(), Vec::new(), 1);
        assert!(!plan.started());
        plan.start();
        assert!(!plan.in_window(Duration::from_millis(999)));
        assert!(plan.in_window(Duration::from_secs(1)));
        assert!(!plan.in_window(Duration::from_secs(3)));
        let at = Duration::from_millis(1500);
        assert_eq!(plan.from_unix_ns(plan.unix_ns(at)), at);
    }

    #[test]
    fn a_counted_run_closes_its_window_once() {
        let w = Workload {
            duration_s: 0.0,
            records: 10,
            warmup_s: 0.0,
            ..Workload::default()
        };
        let plan = Plan::new(w, String::new(), String::new(), Vec::new(), 1);
        plan.start();
        assert!(plan.in_window(Duration::from_secs(1000)));
        plan.end_measuring_now();
        let end = plan.measure_end().expect("closed");
        plan.end_measuring_now();
        assert_eq!(plan.measure_end(), Some(end));
    }
}
