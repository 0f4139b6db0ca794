//! Latency histograms: HDR histograms (`hdrhistogram`) of nanoseconds, 3 significant digits,
//! from 1 ns to an hour. Each harness thread records into its own and they are merged at the
//! end (adding histograms is exact: same buckets). A summary holds the percentiles the
//! report prints and a percentile curve for the plot.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency kept exactly; anything slower is recorded as this.
const MAX_NANOS: u64 = 3_600_000_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;
/// The percentile curve stops at 99.9999% (six nines) at most.
const CURVE_MAX_NINES: i32 = 6;

/// One latency kind on one thread (or merged over all).
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    inner: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        let inner = Histogram::new_with_bounds(1, MAX_NANOS, SIGNIFICANT_DIGITS)
            .expect("constant histogram bounds are valid");
        Self { inner }
    }

    pub fn record_nanos(&mut self, nanos: u64) {
        self.inner.saturating_record(nanos.clamp(1, MAX_NANOS));
    }

    pub fn record_duration(&mut self, d: Duration) {
        self.record_nanos(u64::try_from(d.as_nanos()).unwrap_or(MAX_NANOS));
    }

    /// Adds another thread's samples to these.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Same bounds on both sides, so adding cannot fail; saturate to be safe.
        if self.inner.add(&other.inner).is_err() {
            for v in other.inner.iter_recorded() {
                self.inner
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.inner.len()
    }

    /// Samples at or above `d`.
    pub fn count_at_least(&self, d: Duration) -> u64 {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(MAX_NANOS);
        self.count() - self.inner.count_between(0, nanos.saturating_sub(1))
    }

    /// The value at `percentile` (0–100), in microseconds.
    pub fn percentile_us(&self, percentile: f64) -> f64 {
        if self.count() == 0 {
            return 0.0;
        }
        self.inner.value_at_percentile(percentile) as f64 / 1000.0
    }

    pub fn reset(&mut self) {
        self.inner.reset();
    }

    pub fn summary(&self) -> LatencySummary {
        let empty = self.count() == 0;
        let us = |ns: u64| if empty { 0.0 } else { ns as f64 / 1000.0 };
        LatencySummary {
            count: self.count(),
            mean_us: if empty {
                0.0
            } else {
                self.inner.mean() / 1000.0
            },
            p50_us: self.percentile_us(50.0),
            p75_us: self.percentile_us(75.0),
            p90_us: self.percentile_us(90.0),
            p99_us: self.percentile_us(99.0),
            p999_us: self.percentile_us(99.9),
            p9999_us: self.percentile_us(99.99),
            max_us: us(self.inner.max()),
            curve: self.curve(),
        }
    }

    /// (percentile, µs) points for a "nines" plot: ten steps per decade of the tail
    /// (0, 10, ..., 90, 91, ..., 99, 99.1, ...) while at least one sample lies beyond, then
    /// the maximum.
    fn curve(&self) -> Vec<[f64; 2]> {
        let n = self.count() as f64;
        if n == 0.0 {
            return Vec::new();
        }
        let mut points: Vec<[f64; 2]> = Vec::new();
        'decades: for decade in 0..CURVE_MAX_NINES {
            // Step 0 of a decade is the last step of the one before.
            let first = if decade == 0 { 0 } else { 1 };
            for step in first..10 {
                let tail = 10f64.powi(-decade) * (1.0 - f64::from(step) / 10.0);
                if tail * n < 1.0 {
                    break 'decades;
                }
                let p = 100.0 * (1.0 - tail);
                points.push([p, self.percentile_us(p)]);
            }
        }
        let last = 100.0 * (1.0 - 1.0 / n);
        if points.last().is_none_or(|p| p[0] < last) {
            points.push([last, self.inner.max() as f64 / 1000.0]);
        }
        points
    }
}

/// The percentiles of one latency kind, as the report carries them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p75_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
    /// (percentile, µs) pairs for plotting; percentiles below 100.
    #[serde(default)]
    pub curve: Vec<[f64; 2]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_from_several_threads_merge_exactly() {
        let threads: Vec<std::thread::JoinHandle<LatencyHistogram>> = (0..4u64)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut h = LatencyHistogram::new();
                    // Thread t records 1000 samples of (t+1) ms.
                    for _ in 0..1000 {
                        h.record_duration(Duration::from_millis(t + 1));
                    }
                    h
                })
            })
            .collect();
        let mut merged = LatencyHistogram::new();
        for t in threads {
            merged.merge(&t.join().expect("thread"));
        }
        let s = merged.summary();
        assert_eq!(s.count, 4000);
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 1.0;
        assert!(close(s.p50_us, 2000.0), "p50 {}", s.p50_us);
        assert!(close(s.p75_us, 3000.0), "p75 {}", s.p75_us);
        assert!(close(s.p99_us, 4000.0), "p99 {}", s.p99_us);
        assert!(close(s.max_us, 4000.0), "max {}", s.max_us);
        assert!(close(s.mean_us, 2500.0), "mean {}", s.mean_us);
    }

    #[test]
    fn percentiles_are_ordered_and_the_curve_rises() {
        let mut h = LatencyHistogram::new();
        for i in 1..=100_000u64 {
            h.record_nanos(i * 1000);
        }
        let s = h.summary();
        let ps = [
            s.p50_us, s.p75_us, s.p90_us, s.p99_us, s.p999_us, s.p9999_us, s.max_us,
        ];
        assert!(ps.windows(2).all(|w| w[0] <= w[1]), "{ps:?}");
        assert!((s.p99_us - 99_000.0).abs() < 100.0, "p99 {}", s.p99_us);
        assert!(s.curve.len() > 20);
        assert!(s
            .curve
            .windows(2)
            .all(|w| w[0][0] < w[1][0] && w[0][1] <= w[1][1]));
        assert!(s.curve.last().is_some_and(|p| p[0] > 99.99));
    }

    #[test]
    fn an_empty_histogram_summarises_to_zeros() {
        let s = LatencyHistogram::new().summary();
        assert_eq!(s.count, 0);
        assert_eq!(s.max_us, 0.0);
        assert!(s.curve.is_empty());
    }

    #[test]
    fn counts_at_least_a_threshold() {
        let mut h = LatencyHistogram::new();
        h.record_duration(Duration::from_millis(1));
        h.record_duration(Duration::from_millis(100));
        assert_eq!(h.count_at_least(Duration::from_millis(50)), 1);
        assert_eq!(h.count_at_least(Duration::from_micros(1)), 2);
    }
}
