//! The shard's housekeeping loop: every `log.retention.check.interval.ms` it gives each of
//! the shard's partitions one pass (roll an active segment older than `segment.ms`, delete
//! segments past retention), one partition at a time so the disk work of a pass stays
//! small next to produce traffic. It stops when the shard is dropped.

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

async fn run(shard: Weak<Shard>, interval: Duration) {
    loop {
        runtime::timeout(interval, futures::future::pending::<()>()).await;
        let Some(shard) = shard.upgrade() else { return };
        shard.housekeep().await;
    }
}
