use std::time::{SystemTime, UNIX_EPOCH};

/// Where time comes from. State machines take a `Clock` so tests can drive time themselves.
pub trait Clock {
    /// Milliseconds since the Unix epoch, as Kafka timestamps are.
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}
