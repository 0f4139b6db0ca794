//! Leadership and following: the only replica, a leader tracking its followers
//! (an [`IsrState`]), or a follower told its high watermark by its leader.
//!
//! What consumers may read ends at the high watermark (HW). The only replica's HW is its
//! durable end, as before replication. A leader's HW comes from its [`IsrState`], fed by its
//! followers' fetches and by its own durable end (a watcher task follows the log's durable
//! end while it leads). A follower's HW is min(leader's HW, its own log end).
//!
//! Waiters on the HW (acks=all produces, consumers' long polls) are woken whenever the HW
//! moves or the replica's layout changes, and look again.

use std::rc::{Rc, Weak};

use futures::channel::oneshot;

use super::isr::{IsrProposal, IsrState, ReplicaLayout};
use super::{storage_error, Appended, Partition};
use crate::base::{Clock, KafkaCode, KafkaError, SystemClock};
use crate::runtime;

/// What this replica is for its partition.
#[derive(Debug, Clone)]
pub enum ReplicaRole {
    /// No other replica: the HW is the durable end.
    Single,
    Leader(IsrState),
    Follower {
        leader: i32,
    },
}

/// The role the metadata gives a replica, with the layout a leader tracks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleChange {
    Leader(ReplicaLayout),
    Follower { leader: i32, leader_epoch: i32 },
}

/// The `replica.lag.time.max.ms` default (Kafka's).
pub const DEFAULT_REPLICA_LAG_TIME_MAX_MS: i64 = 30_000;

impl Partition {
    /// Whether this replica leads (alone or with followers).
    pub fn is_leader(&self) -> bool {
        !matches!(&*self.replica.borrow(), ReplicaRole::Follower { .. })
    }

    /// The leader this replica follows, if it follows.
    pub fn following(&self) -> Option<i32> {
        match &*self.replica.borrow() {
            ReplicaRole::Follower { leader } => Some(*leader),
            _ => None,
        }
    }

    /// Applies a role from the metadata. A leader with followers tracks them (starting from
    /// the HW it knew) and follows its own durable end; a single-replica leader needs
    /// neither. A follower keeps the HW it had, bounded by its log end.
    pub fn set_role(self: &Rc<Self>, change: RoleChange) {
        let now = SystemClock.now_ms();
        let hw = self.high_watermark();
        let durable = self.durable_end_offset();
        self.set_replicated(match &change {
            RoleChange::Leader(layout) => layout.replicas.len() > 1,
            RoleChange::Follower { .. } => true,
        });
        let (epoch, watch) = {
            let mut role = self.replica.borrow_mut();
            match change {
                RoleChange::Leader(layout) if layout.replicas.len() <= 1 => {
                    let epoch = layout.leader_epoch;
                    *role = ReplicaRole::Single;
                    (epoch, false)
                }
                RoleChange::Leader(layout) => {
                    let epoch = layout.leader_epoch;
                    let same_leadership = matches!(&*role, ReplicaRole::Leader(isr)
                        if isr.layout().leader_epoch == layout.leader_epoch);
                    match &mut *role {
                        ReplicaRole::Leader(isr) if same_leadership => {
                            isr.on_layout(layout, now);
                        }
                        _ => {
                            let lag = self.replica_lag_max_ms.get();
                            *role =
                                ReplicaRole::Leader(IsrState::new(layout, durable, hw, lag, now));
                        }
                    }
                    (epoch, true)
                }
                RoleChange::Follower {
                    leader,
                    leader_epoch,
                } => {
                    *role = ReplicaRole::Follower { leader };
                    (leader_epoch, false)
                }
            }
        };
        self.set_leader_epoch(epoch);
        self.publish_leader_hw();
        if watch {
            self.watch_durable_end();
        } else {
            self.durable_watch.borrow_mut().take();
        }
        self.wake_hw_waiters();
    }

    /// While this replica leads with followers, a task feeds its durable end to the ISR
    /// state (the HW may move with it). Started once per leadership.
    fn watch_durable_end(self: &Rc<Self>) {
        if self.durable_watch.borrow().is_some() {
            return;
        }
        let me: Weak<Partition> = Rc::downgrade(self);
        let task = runtime::spawn(async move {
            loop {
                let arrival = {
                    let Some(p) = me.upgrade() else { return };
                    p.on_durable_end();
                    p.log.data_arrival()
                };
                if arrival.await.is_err() {
                    return;
                }
            }
        });
        *self.durable_watch.borrow_mut() = Some(task);
    }

    fn on_durable_end(&self) {
        let end = self.durable_end_offset();
        let moved = match &mut *self.replica.borrow_mut() {
            ReplicaRole::Leader(isr) => isr.on_leader_end(end),
            _ => false,
        };
        if moved {
            self.publish_leader_hw();
        }
    }

    /// Tells the partition the HW its followers allow (a leader with followers), and wakes
    /// whoever waits on it.
    fn publish_leader_hw(&self) {
        let hw = match &*self.replica.borrow() {
            ReplicaRole::Leader(isr) => Some(isr.high_watermark()),
            _ => None,
        };
        if let Some(hw) = hw {
            self.set_high_watermark(hw);
        }
        self.wake_hw_waiters();
    }

    /// A follower's fetch at `offset` (its log end): recorded when this replica leads,
    /// refused otherwise. The HW may move.
    pub fn on_follower_fetch(&self, follower: i32, offset: i64) -> Result<(), KafkaError> {
        let now = SystemClock.now_ms();
        let end = self.durable_end_offset();
        let moved = match &mut *self.replica.borrow_mut() {
            ReplicaRole::Leader(isr) => {
                isr.on_leader_end(end);
                isr.on_follower_fetch(follower, offset, now)
            }
            ReplicaRole::Single => false,
            ReplicaRole::Follower { .. } => return Err(not_leader(&self.tp)),
        };
        if moved {
            self.publish_leader_hw();
        }
        Ok(())
    }

    /// A follower learns its leader's HW (bounded by what it has itself).
    pub fn set_follower_high_watermark(&self, leader_hw: i64) {
        if self.following().is_none() {
            return;
        }
        let before = self.high_watermark();
        self.set_high_watermark(leader_hw.min(self.log_end_offset()));
        if self.high_watermark() != before {
            self.wake_hw_waiters();
        }
    }

    /// The ISR change this leader wants made now, if any (see [`IsrState::poll_proposal`]).
    pub fn poll_isr_proposal(&self) -> Option<IsrProposal> {
        let now = SystemClock.now_ms();
        match &mut *self.replica.borrow_mut() {
            ReplicaRole::Leader(isr) => {
                isr.set_lag_max_ms(self.replica_lag_max_ms.get());
                isr.poll_proposal(now)
            }
            _ => None,
        }
    }

    /// The controller refused (or never got) the last proposal.
    pub fn isr_proposal_refused(&self) {
        if let ReplicaRole::Leader(isr) = &mut *self.replica.borrow_mut() {
            isr.proposal_refused();
        }
    }

    /// Sets `replica.lag.time.max.ms` (a broker config).
    pub fn set_replica_lag_max_ms(&self, ms: i64) {
        self.replica_lag_max_ms.set(ms);
    }

    /// Replicas in the committed ISR (1 for the only replica).
    pub fn in_sync_replicas(&self) -> i32 {
        match &*self.replica.borrow() {
            ReplicaRole::Leader(isr) => isr.isr().len() as i32,
            _ => 1,
        }
    }

    /// A receiver that fires the next time the HW moves or the role changes.
    pub fn hw_arrival(&self) -> oneshot::Receiver<()> {
        if matches!(&*self.replica.borrow(), ReplicaRole::Single) {
            return self.log.data_arrival();
        }
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.hw_waiters.borrow_mut();
        waiters.retain(|w| !w.is_canceled());
        waiters.push(tx);
        rx
    }

    /// This replica stops serving (closed, or its replica left this broker): it no longer
    /// leads, so acks=all produces waiting on its HW are answered NOT_LEADER_OR_FOLLOWER at
    /// once instead of when their timeout runs out.
    pub(super) fn retire(&self) {
        *self.replica.borrow_mut() = ReplicaRole::Follower { leader: -1 };
        self.durable_watch.borrow_mut().take();
        self.wake_hw_waiters();
    }

    pub(super) fn wake_hw_waiters(&self) {
        let waiters = std::mem::take(&mut *self.hw_waiters.borrow_mut());
        for w in waiters {
            let _ = w.send(());
        }
    }

    /// acks=all: waits until the HW passes `appended` (the in-sync replicas have it). Fails
    /// with NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR that got it there is smaller than
    /// `min.insync.replicas` (it shrank meanwhile), NOT_LEADER_OR_FOLLOWER when leadership
    /// moved. Timing out is the produce's own timeout (REQUEST_TIMED_OUT, in the server).
    pub(super) async fn wait_replicated(&self, appended: Appended) -> Result<(), KafkaError> {
        self.log
            .wait_durable(appended.last_offset)
            .await
            .map_err(storage_error)?;
        loop {
            let arrival = {
                if !self.is_leader() {
                    return Err(not_leader(&self.tp));
                }
                if self.high_watermark() <= appended.last_offset {
                    self.hw_arrival()
                } else {
                    // Kafka's order: the HW passed, but the ISR that got it there may be
                    // smaller than the topic asks for.
                    let (isr, min) = (self.in_sync_replicas(), self.min_insync_replicas.get());
                    if isr >= min {
                        return Ok(());
                    }
                    return Err(KafkaError::new(
                        KafkaCode::NotEnoughReplicasAfterAppend,
                        format!(
                            "The size of the current ISR {isr} is insufficient to satisfy \
                             the min.isr requirement of {min} for partition {}",
                            self.tp
                        ),
                    ));
                }
            };
            if arrival.await.is_err() {
                return Err(not_leader(&self.tp));
            }
        }
    }
}

pub(super) fn not_leader(tp: &crate::base::TopicPartition) -> KafkaError {
    KafkaError::new(
        KafkaCode::NotLeaderOrFollower,
        format!("This broker is not the leader of {tp}"),
    )
}
