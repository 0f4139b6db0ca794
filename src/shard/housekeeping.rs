//! The shard's housekeeping loop: every `log.retention.check.interval.ms` it gives each of
//! the shard's partitions one pass (roll an active segment older than `segment.ms`, delete
//! segments past retention), one partition at a time so the disk work of a pass stays
//! small next to produce traffic. It stops when the shard is dropped.
//!
//! The cleaner loop is its twin for compaction: every `log.cleaner.backoff.ms` it offers each
//! partition a compaction pass (the log decides whether one is due), one at a time, so a
//! shard's cleaner I/O never exceeds one log's throttled rate.

use std::rc::{Rc, Weak};
use std::time::Duration;

use super::Shard;
use crate::base::{Clock, SystemClock};
use crate::partition::Partition;
use crate::runtime;

impl Shard {
    /// Starts this shard's housekeeping loop, one pass every `interval`.
    pub fn start_housekeeping(self: &Rc<Self>, interval: Duration) {
        runtime::detach(run(Rc::downgrade(self), interval));
    }

    /// One housekeeping pass over every partition of this shard; segments deleted.
    pub async fn housekeep(&self) -> usize {
        let partitions: Vec<Rc<Partition>> = self.partitions.borrow().values().cloned().collect();
        let mut deleted = 0;
        for p in partitions {
            match p.housekeep(SystemClock.now_ms()).await {
                Ok(n) => deleted += n,
                Err(e) => tracing::warn!(partition = %p.tp, error = %e, "housekeeping failed"),
            }
            runtime::yield_now().await;
        }
        deleted
    }
}

impl Shard {
    /// Starts this shard's cleaner loop, one round every `backoff`.
    pub fn start_cleaner(self: &Rc<Self>, backoff: Duration) {
        runtime::detach(run_cleaner(Rc::downgrade(self), backoff));
    }

    /// One cleaner round over every partition of this shard; logs compacted.
    pub async fn compact_all(&self) -> usize {
        let partitions: Vec<Rc<Partition>> = self.partitions.borrow().values().cloned().collect();
        let mut compacted = 0;
        for p in partitions {
            match p.compact(SystemClock.now_ms()).await {
                Ok(Some(_)) => compacted += 1,
                Ok(None) => {}
                Err(e) => tracing::warn!(partition = %p.tp, error = %e, "compaction failed"),
            }
            runtime::yield_now().await;
        }
        compacted
    }
}

async fn run_cleaner(shard: Weak<Shard>, backoff: Duration) {
    loop {
        runtime::timeout(backoff, futures::future::pending::<()>()).await;
        let Some(shard) = shard.upgrade() else { return };
        shard.compact_all().await;
    }
}

async fn run(shard: Weak<Shard>, interval: Duration) {
    loop {
        runtime::timeout(interval, futures::future::pending::<()>()).await;
        let Some(shard) = shard.upgrade() else { return };
        shard.housekeep().await;
    }
}
