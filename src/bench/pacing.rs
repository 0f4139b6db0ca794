//! Rate pacing: when each record of a fixed-rate producer is *meant* to be sent. The
//! schedule never slips: a producer that was held up (a full buffer, a slow broker, a
//! descheduled thread) sends the records that fell due at once, and their latency is still
//! measured from their intended time. That is the coordinated-omission correction of the
//! OpenMessaging Benchmark and wrk2: a stall shows up in every record it delayed, not only in
//! the one record that was in flight when it began.

use std::time::Duration;

/// The send schedule of one producer: record `n` is due `n / rate` seconds after the start.
#[derive(Debug, Clone)]
pub struct Pacer {
    records_per_s: f64,
    next: u64,
}

impl Pacer {
    /// A schedule of `records_per_s` (> 0) records a second.
    pub fn new(records_per_s: f64) -> Self {
        assert!(
            records_per_s > 0.0 && records_per_s.is_finite(),
            "a pacer needs a positive rate, got {records_per_s}"
        );
        Self {
            records_per_s,
            next: 0,
        }
    }

    /// When record `n` is due, from the start of the schedule.
    pub fn due(&self, n: u64) -> Duration {
        Duration::from_secs_f64(n as f64 / self.records_per_s)
    }

    /// When the next record is due.
    pub fn next_due(&self) -> Duration {
        self.due(self.next)
    }

    /// How many records are due at `elapsed` and not taken yet.
    pub fn due_by(&self, elapsed: Duration) -> u64 {
        let owed = (elapsed.as_secs_f64() * self.records_per_s).floor() as u64 + 1;
        owed.saturating_sub(self.next)
    }

    /// Takes the next record: its intended send time from the start.
    pub fn take(&mut self) -> Duration {
        let due = self.next_due();
        self.next += 1;
        due
    }

    /// Records taken so far.
    pub fn taken(&self) -> u64 {
        self.next
    }
}

/// Splits a total rate over `producers`, so their schedules add up to it.
pub fn per_producer_rate(total_records_per_s: f64, producers: usize) -> f64 {
    total_records_per_s / producers.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::latency::LatencyHistogram;

    #[test]
    fn records_are_due_evenly_spaced() {
        let mut p = Pacer::new(1000.0);
        assert_eq!(p.take(), Duration::ZERO);
        assert_eq!(p.take(), Duration::from_millis(1));
        assert_eq!(p.next_due(), Duration::from_millis(2));
        assert_eq!(p.taken(), 2);
    }

    #[test]
    fn one_second_at_a_rate_owes_that_many_records() {
        let p = Pacer::new(1000.0);
        // Records 0..=1000 are due at or before 1 s (record 1000 exactly at 1 s).
        assert_eq!(p.due_by(Duration::from_secs(1)), 1001);
        assert_eq!(p.due_by(Duration::from_micros(999_999)), 1000);
        assert_eq!(per_producer_rate(1000.0, 4), 250.0);
    }

    #[test]
    fn a_late_producer_catches_up_without_moving_the_schedule() {
        let mut p = Pacer::new(100.0);
        // Asleep for 50 ms: five records are owed, with their original due times.
        assert_eq!(p.due_by(Duration::from_millis(45)), 5);
        let dues: Vec<Duration> = (0..5).map(|_| p.take()).collect();
        assert_eq!(dues[4], Duration::from_millis(40));
        assert_eq!(p.due_by(Duration::from_millis(45)), 0);
    }

    /// A closed-loop sender at 1,000 records/s against a server taking 1 ms a record that
    /// stalls for 200 ms once. Measured from the actual send, one record sees the stall;
    /// measured from the intended send, every record scheduled during the stall does.
    #[test]
    fn coordinated_omission_correction_shows_a_synthetic_stall() {
        let service = Duration::from_micros(500);
        let stall_at = Duration::from_secs(1);
        let stall = Duration::from_millis(200);
        let mut pacer = Pacer::new(1000.0);
        let mut naive = LatencyHistogram::new();
        let mut corrected = LatencyHistogram::new();
        let mut free_at = Duration::ZERO;
        let mut stalled = false;
        while pacer.taken() < 2000 {
            let intended = pacer.take();
            // The sender waits for the previous answer (closed loop).
            let sent = intended.max(free_at);
            let mut done = sent + service;
            if !stalled && done > stall_at {
                done += stall;
                stalled = true;
            }
            free_at = done;
            naive.record_duration(done - sent);
            corrected.record_duration(done - intended);
        }
        let slow = |h: &LatencyHistogram| h.count_at_least(Duration::from_millis(50));
        assert_eq!(slow(&naive), 1, "naive sees the stall once");
        // At least every record due in the first 150 ms of the stall waited 50 ms or more
        // (and more after it, while the backlog drains).
        assert!(slow(&corrected) >= 150, "corrected: {}", slow(&corrected));
        let (n, c) = (naive.summary(), corrected.summary());
        assert!(n.p99_us < 1000.0, "naive p99 {} µs", n.p99_us);
        assert!(c.p99_us > 100_000.0, "corrected p99 {} µs", c.p99_us);
        assert!((c.max_us - 200_500.0).abs() < 1000.0, "max {}", c.max_us);
    }
}
