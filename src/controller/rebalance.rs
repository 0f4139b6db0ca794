//! Kafka's automatic preferred-leader rebalance (`auto.leader.rebalance.enable`): every
//! `leader.imbalance.check.interval.seconds`, the controller leader moves each partition's
//! leadership back to its preferred replica (the first) wherever that replica is alive and
//! in sync. As in KRaft, every imbalanced partition is moved, with no per-broker threshold
//! (`leader.imbalance.per.broker.percentage` is not read). The decision is
//! `election::preferred_rebalance`; this file only runs it on a timer.

use std::rc::{Rc, Weak};
use std::time::Duration;

use super::{election, Controller, Store};

impl Controller {
    /// One rebalance round on the leader; the number of leaderships moved.
    pub async fn rebalance_leaders(&self) -> usize {
        if !self.leads() {
            return 0;
        }
        let guard = self.changes.lock().await;
        let records = election::preferred_rebalance(&self.snapshot());
        let moved = records.len();
        if moved == 0 {
            return 0;
        }
        let result = self.commit_all(records).await;
        drop(guard);
        match result {
            Ok(()) => tracing::info!(moved, "leadership moved back to preferred replicas"),
            Err(e) => tracing::warn!(error = %e, "preferred leader rebalance failed"),
        }
        self.publish_current().await;
        moved
    }

    /// Runs `rebalance_leaders` every `interval` while the controller lives (quorum mode:
    /// a single node leads every partition already).
    pub fn start_leader_rebalance(self: &Rc<Self>, interval: Duration) {
        if matches!(self.store, Store::Local(_)) {
            return;
        }
        let weak: Weak<Controller> = Rc::downgrade(self);
        crate::runtime::detach(async move {
            loop {
                crate::runtime::sleep(interval).await;
                let Some(c) = weak.upgrade() else { return };
                c.rebalance_leaders().await;
            }
        });
    }
}
