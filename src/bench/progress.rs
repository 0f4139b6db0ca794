//! The live progress line: once a second, on stderr, what every harness thread did in the
//! last second (records/s, MB/s, p50/p99 of the latencies, errors) and the phase of the run.

use std::time::Duration;

use super::latency::LatencyHistogram;
use super::plan::{Counts, Tick};

/// What arrived from the threads since the last line.
#[derive(Default)]
pub struct Interval {
    counts: Counts,
    produce: LatencyHistogram,
    end_to_end: LatencyHistogram,
}

impl Interval {
    pub fn add(&mut self, tick: &Tick) {
        self.counts.add(&tick.counts);
        self.produce.merge(&tick.produce);
        self.end_to_end.merge(&tick.end_to_end);
    }

    /// The line for `seconds` of elapsed time in `phase`, then starts a new interval.
    pub fn line(&mut self, at: Duration, phase: &str, seconds: f64) -> String {
        let s = seconds.max(1e-3);
        let c = self.counts;
        let mut line = format!("[{:>5.0}s {phase:<7}]", at.as_secs_f64());
        if c.produced > 0 || self.produce.count() > 0 {
            line += &format!(
                " produce {:>9.0} rec/s {:>8.1} MB/s p50 {} p99 {} |",
                c.produced as f64 / s,
                c.produced_bytes as f64 / s / 1e6,
                ms(self.produce.percentile_us(50.0)),
                ms(self.produce.percentile_us(99.0)),
            );
        }
        if c.consumed > 0 || self.end_to_end.count() > 0 {
            line += &format!(
                " consume {:>9.0} rec/s {:>8.1} MB/s",
                c.consumed as f64 / s,
                c.consumed_bytes as f64 / s / 1e6,
            );
            if self.end_to_end.count() > 0 {
                line += &format!(
                    " e2e p50 {} p99 {}",
                    ms(self.end_to_end.percentile_us(50.0)),
                    ms(self.end_to_end.percentile_us(99.0)),
                );
            }
            line += " |";
        }
        line += &format!(" errors {}", c.errors);
        *self = Self::default();
        line
    }
}

/// Microseconds as a short millisecond figure.
fn ms(us: f64) -> String {
    if us < 10_000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{:.0}ms", us / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_rates_percentiles_and_errors() {
        let mut produce = LatencyHistogram::new();
        produce.record_duration(Duration::from_micros(1500));
        let tick = Tick {
            counts: Counts {
                produced: 2000,
                produced_bytes: 2_000_000,
                errors: 1,
                ..Counts::default()
            },
            produce,
            end_to_end: LatencyHistogram::new(),
        };
        let mut i = Interval::default();
        i.add(&tick);
        let line = i.line(Duration::from_secs(3), "measure", 2.0);
        assert!(line.contains("1000 rec/s"), "{line}");
        assert!(line.contains("1.0 MB/s"), "{line}");
        assert!(line.contains("p50 1.50ms"), "{line}");
        assert!(line.contains("errors 1"), "{line}");
        assert!(!line.contains("consume"), "{line}");
        assert!(i.line(Duration::ZERO, "x", 1.0).contains("errors 0"));
    }
}
