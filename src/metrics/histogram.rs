//! A latency histogram of one stage on one shard: HDR (`hdrhistogram`) in microseconds, two
//! significant digits (1% resolution, about 20 KiB), from 1 µs to a minute, plus the exact
//! sum Prometheus wants (HDR keeps only bucketed values).

use std::time::Duration;

use hdrhistogram::Histogram;

const LOWEST_US: u64 = 1;
/// Slower samples are recorded as this.
const HIGHEST_US: u64 = 60_000_000;
const SIGNIFICANT_DIGITS: u8 = 2;

#[derive(Debug, Clone)]
pub struct StageHistogram {
    hist: Histogram<u64>,
    sum_us: u64,
}

impl Default for StageHistogram {
    fn default() -> Self {
        Self {
            hist: Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
                .expect("constant histogram bounds are valid"),
            sum_us: 0,
        }
    }
}

impl StageHistogram {
    pub fn record(&mut self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(HIGHEST_US);
        let us = us.clamp(LOWEST_US, HIGHEST_US);
        self.hist.saturating_record(us);
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// Adds another shard's samples (same layout, so exact).
    pub fn merge(&mut self, other: &StageHistogram) {
        if self.hist.add(&other.hist).is_err() {
            for v in other.hist.iter_recorded() {
                self.hist
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }

    /// Samples at or below `seconds` (a Prometheus bucket's `le`).
    pub fn count_at_most(&self, seconds: f64) -> u64 {
        let us = (seconds * 1e6).floor() as u64;
        if us < LOWEST_US {
            return 0;
        }
        self.hist.count_between(0, us.min(HIGHEST_US))
    }

    /// The value at quantile `q` (0–1), in seconds; 0 when empty.
    pub fn quantile_seconds(&self, q: f64) -> f64 {
        if self.count() == 0 {
            return 0.0;
        }
        self.hist.value_at_quantile(q) as f64 / 1e6
    }
}
