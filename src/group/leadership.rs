//! Which partitions of a coordinator's internal topic (`__consumer_offsets`,
//! `__transaction_state`) this shard coordinates: the ones placed on it whose leader is this
//! broker. A coordinator serves a key only once the key's partition is loaded here (replayed
//! from its log); meanwhile it answers COORDINATOR_LOAD_IN_PROGRESS, and for a partition it
//! does not lead NOT_COORDINATOR, so the client looks the coordinator up again (Kafka's
//! answers during a coordinator move). [`Ownership`] is the sans-io bookkeeping; [`follow`]
//! drives it from the snapshots this shard applies.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use futures::StreamExt;

use crate::base::KafkaCode;
use crate::controller::ClusterSnapshot;
use crate::router::Router;
use crate::runtime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    InProgress,
    Ready,
}

/// The partitions a coordinator holds, and whether each is loaded yet.
#[derive(Debug, Default)]
pub struct Ownership {
    held: BTreeMap<i32, Load>,
}

/// What a new set of led partitions changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Newly led: to be loaded, then marked with [`Ownership::loaded`].
    pub gained: Vec<i32>,
    /// No longer led: their keys must be dropped from the coordinator.
    pub lost: Vec<i32>,
}

impl Ownership {
    /// Takes `led` as the partitions this coordinator now leads.
    pub fn offer(&mut self, led: &BTreeSet<i32>) -> Change {
        let lost: Vec<i32> = self
            .held
            .keys()
            .filter(|p| !led.contains(p))
            .copied()
            .collect();
        for p in &lost {
            self.held.remove(p);
        }
        let gained: Vec<i32> = led
            .iter()
            .filter(|p| !self.held.contains_key(p))
            .copied()
            .collect();
        for p in &gained {
            self.held.insert(*p, Load::InProgress);
        }
        Change { gained, lost }
    }

    /// `partition` is replayed: its keys are served from now on (if it is still held).
    pub fn loaded(&mut self, partition: i32) {
        if let Some(l) = self.held.get_mut(&partition) {
            *l = Load::Ready;
        }
    }

    /// Whether a key of `partition` may be served here now, as the Kafka error to answer.
    pub fn check(&self, partition: i32) -> Result<(), KafkaCode> {
        match self.held.get(&partition) {
            Some(Load::Ready) => Ok(()),
            Some(Load::InProgress) => Err(KafkaCode::CoordinatorLoadInProgress),
            None => Err(KafkaCode::NotCoordinator),
        }
    }

    pub fn holds(&self, partition: i32) -> bool {
        self.held.contains_key(&partition)
    }
}

/// Whether this broker leads `partition` of `topic`: the partition's leader is the local
/// broker. Any shard can tell; which shard owns it is [`led_here`]'s business.
pub fn led_by_this_broker(snap: &ClusterSnapshot, topic: &str, partition: i32) -> bool {
    snap.partition(topic, partition)
        .is_some_and(|p| p.leader == snap.local_node)
}

/// The partitions of `topic` this shard coordinates in `snap`.
pub fn led_here(router: &Router, snap: &ClusterSnapshot, topic: &str) -> BTreeSet<i32> {
    let Some(t) = snap.topics.get(topic) else {
        return BTreeSet::new();
    };
    t.partitions
        .iter()
        .filter(|p| router.owns(p.shard) && led_by_this_broker(snap, topic, p.index))
        .map(|p| p.index)
        .collect()
}

/// A coordinator's shell as [`follow`] sees it.
pub trait Coordinates: 'static {
    fn ownership(&self) -> &std::cell::RefCell<Ownership>;
    /// Replays `partition` into the coordinator.
    fn load(self: Rc<Self>, partition: i32) -> LocalBoxFuture<'static, ()>;
    /// Drops every key of `partition` from the coordinator and fails its waiting requests.
    fn unload(&self, partition: i32);
}

/// Applies the current snapshot (loading what this shard leads) before returning, then keeps
/// following the snapshots this shard applies until the shell is gone.
pub async fn follow<C: Coordinates>(router: &Rc<Router>, topic: &'static str, shell: &Rc<C>) {
    let mut snapshots = router.watch_snapshots();
    apply(router, topic, shell, &router.snapshot()).await;
    let router = Rc::downgrade(router);
    let weak = Rc::downgrade(shell);
    runtime::detach(async move {
        while let Some(snap) = snapshots.next().await {
            let (Some(router), Some(shell)) = (router.upgrade(), weak.upgrade()) else {
                return;
            };
            apply(&router, topic, &shell, &snap).await;
        }
    });
}

async fn apply<C: Coordinates>(
    router: &Router,
    topic: &str,
    shell: &Rc<C>,
    snap: &ClusterSnapshot,
) {
    let led = led_here(router, snap, topic);
    let change = shell.ownership().borrow_mut().offer(&led);
    for p in change.lost {
        tracing::info!(topic, partition = p, "coordinator partition moved away");
        shell.unload(p);
    }
    for p in change.gained {
        shell.clone().load(p).await;
        shell.ownership().borrow_mut().loaded(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ps: &[i32]) -> BTreeSet<i32> {
        ps.iter().copied().collect()
    }

    #[test]
    fn gained_partitions_load_before_they_serve() {
        let mut o = Ownership::default();
        let c = o.offer(&set(&[1, 2]));
        assert_eq!(c.gained, vec![1, 2]);
        assert_eq!(o.check(1), Err(KafkaCode::CoordinatorLoadInProgress));
        o.loaded(1);
        assert_eq!(o.check(1), Ok(()));
        assert_eq!(o.check(2), Err(KafkaCode::CoordinatorLoadInProgress));
        assert_eq!(o.check(3), Err(KafkaCode::NotCoordinator));
    }

    #[test]
    fn lost_partitions_stop_serving_and_a_late_load_does_not_revive_them() {
        let mut o = Ownership::default();
        o.offer(&set(&[1, 2]));
        o.loaded(1);
        let c = o.offer(&set(&[2, 3]));
        assert_eq!(
            c,
            Change {
                gained: vec![3],
                lost: vec![1]
            }
        );
        assert_eq!(o.check(1), Err(KafkaCode::NotCoordinator));
        o.loaded(1);
        assert_eq!(o.check(1), Err(KafkaCode::NotCoordinator));
        // Held all along: not reloaded.
        assert!(o.offer(&set(&[2, 3])).gained.is_empty());
    }
}
