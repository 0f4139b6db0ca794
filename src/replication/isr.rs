//! The ISR proposer: each leader's wanted ISR change (see `partition::isr`) goes to the
//! controller as AlterPartition; it takes effect when a snapshot carries it. A refused or
//! lost proposal is made again at a later check.

use std::rc::Weak;
use std::time::Duration;

use crate::controller::AlterPartition;
use crate::router::Router;
use crate::runtime;

/// The most time between two ISR checks. Kafka checks for lagging followers every half
/// `replica.lag.time.max.ms`; this also bounds how long a caught-up follower waits to be
/// proposed back.
const MAX_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// How often the leaders on a shard are checked.
pub fn check_interval(lag_max: Duration) -> Duration {
    (lag_max / 2).clamp(Duration::from_millis(1), MAX_CHECK_INTERVAL)
}

/// Checks every leader on this shard each `every`, and proposes what is due.
pub async fn propose_changes(router: Weak<Router>, every: Duration) {
    loop {
        runtime::sleep(every).await;
        let Some(router) = router.upgrade() else {
            return;
        };
        let local = router.snapshot().local_node;
        for p in router.local_shard().open_partitions() {
            let Some(proposal) = p.poll_isr_proposal() else {
                continue;
            };
            let change = AlterPartition {
                topic: p.tp.topic.clone(),
                partition: p.tp.partition,
                leader: local,
                leader_epoch: proposal.leader_epoch,
                partition_epoch: proposal.partition_epoch,
                isr: proposal.isr,
            };
            if let Err(e) = router.alter_partition(change).await {
                tracing::debug!(partition = %p.tp, error = %e, "ISR change refused");
                p.isr_proposal_refused();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_come_at_half_the_lag_limit_or_more_often() {
        assert_eq!(
            check_interval(Duration::from_millis(30_000)),
            MAX_CHECK_INTERVAL
        );
        assert_eq!(
            check_interval(Duration::from_millis(200)),
            Duration::from_millis(100)
        );
    }
}
