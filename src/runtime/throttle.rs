//! Pacing I/O to a byte rate: the log cleaner's `log.cleaner.io.max.bytes.per.second` and the
//! replication throttle (`follower.replication.throttled.rate`). Bytes are counted against
//! the time since the start of the window; a long pause banks at most `BURST` of credit, so a
//! throttle that idled does not let a burst through afterwards.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The most credit an idle throttle keeps.
const BURST: Duration = Duration::from_secs(1);

/// Paces I/O to `rate` bytes per second (not finite or ≤ 0: unlimited).
pub struct Throttle {
    rate: Cell<f64>,
    started: Cell<Instant>,
    bytes: Cell<f64>,
}

impl Throttle {
    pub fn new(bytes_per_second: f64) -> Self {
        Self {
            rate: Cell::new(bytes_per_second),
            started: Cell::new(Instant::now()),
            bytes: Cell::new(0.0),
        }
    }

    fn limited(&self) -> bool {
        let r = self.rate.get();
        r > 0.0 && r.is_finite()
    }

    pub fn rate(&self) -> f64 {
        self.rate.get()
    }

    /// A new rate, counted from now.
    pub fn set_rate(&self, bytes_per_second: f64) {
        if bytes_per_second != self.rate.get() {
            self.rate.set(bytes_per_second);
            self.started.set(Instant::now());
            self.bytes.set(0.0);
        }
    }

    /// Counts `n` bytes of I/O done.
    pub fn record(&self, n: u64) {
        if !self.limited() {
            return;
        }
        let now = Instant::now();
        let due = Duration::from_secs_f64(self.bytes.get() / self.rate.get());
        let elapsed = now - self.started.get();
        if elapsed > due + BURST {
            // Idle for a while: restart the window with at most BURST of credit.
            self.started.set(now - BURST);
            self.bytes.set(0.0);
        }
        self.bytes.set(self.bytes.get() + n as f64);
    }

    /// How long until the bytes counted so far are within the rate (zero: now).
    pub fn delay(&self) -> Duration {
        if !self.limited() {
            return Duration::ZERO;
        }
        let due = Duration::from_secs_f64(self.bytes.get() / self.rate.get());
        due.saturating_sub(self.started.get().elapsed())
    }

    /// Counts `n` bytes and sleeps for as long as the I/O is ahead of its rate.
    pub async fn take(&self, n: u64) {
        self.record(n);
        let wait = self.delay();
        if wait.is_zero() {
            super::yield_now().await;
        } else {
            super::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_over_the_rate_must_wait_and_an_unlimited_throttle_never_does() {
        let t = Throttle::new(1000.0);
        t.record(500);
        assert!(t.delay() <= Duration::from_millis(500));
        t.record(10_000);
        assert!(t.delay() > Duration::from_secs(9));
        t.set_rate(f64::INFINITY);
        t.record(1 << 40);
        assert_eq!(t.delay(), Duration::ZERO);
    }
}
