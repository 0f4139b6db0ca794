//! One consumer group of the KIP-848 protocol (`group.protocol=consumer`), sans-io: members
//! heartbeat with ConsumerGroupHeartbeat, the coordinator computes the target assignment with a
//! server-side assignor ([`super::assignor`]) and hands each member its part in steps, so a
//! partition is never owned by two members at once:
//!
//! - any change of membership, subscriptions, assignor or partition counts bumps the *group
//!   epoch* and recomputes the target assignment (whose *assignment epoch* is then the group
//!   epoch);
//! - a member whose target lost partitions is first told its current assignment minus those
//!   and keeps its member epoch until a heartbeat shows it no longer owns them (revocation);
//! - then it moves to the assignment epoch and gets every target partition no other member
//!   still holds; those still held are added on later heartbeats, once released.
//!
//! Requests must carry the member's epoch (or, after a lost answer, its previous epoch with
//! owned partitions it was given); anything else is FENCED_MEMBER_EPOCH and the member
//! rejoins with epoch 0. Members that stop heartbeating for the session timeout are removed.
//! Membership is not persisted: after a coordinator restart members get UNKNOWN_MEMBER_ID
//! and rejoin (offsets are persisted by the coordinator's commit path as for classic groups).

use std::collections::{BTreeMap, BTreeSet};

use super::assignor::{self, Assignment, MemberSpec};
use crate::base::KafkaCode;

/// Member epoch a heartbeat carries to join.
pub const JOIN_EPOCH: i32 = 0;
/// Member epoch a heartbeat carries to leave.
pub const LEAVE_EPOCH: i32 = -1;
/// Member epoch a static member carries to leave temporarily (keeps its assignment).
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// Kafka's `group.consumer.*` broker settings.
#[derive(Debug, Clone)]
pub struct ConsumerGroupConfig {
    pub session_timeout_ms: i64,
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`.
    pub max_size: usize,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        Self {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: i32::MAX as usize,
        }
    }
}

/// A ConsumerGroupHeartbeat in plain terms (topic ids already resolved to names). `None`
/// fields mean "unchanged since the last heartbeat".
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed: Option<BTreeSet<String>>,
    pub server_assignor: Option<String>,
    /// The partitions the member owns now.
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

/// The answer to a heartbeat; `assignment` is `None` when the member's assignment did not
/// change since it was last sent.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatReply {
    pub error: KafkaCode,
    pub message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    pub assignment: Option<Assignment>,
}

impl HeartbeatReply {
    pub fn error(error: KafkaCode, member_id: &str, message: impl Into<String>) -> Self {
        Self {
            error,
            message: Some(message.into()),
            member_id: member_id.to_owned(),
            member_epoch: -1,
            heartbeat_interval_ms: 0,
            assignment: None,
        }
    }
}

/// One member as the coordinator sees it.
#[derive(Debug, Clone, Default)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: BTreeSet<String>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    /// What the member has been given and may own.
    pub assigned: Assignment,
    /// Partitions taken from it that it may still own until it says otherwise.
    pub revoking: Assignment,
    last_sent: Option<Assignment>,
    pub last_heartbeat_ms: i64,
}

/// The group's state as ConsumerGroupDescribe and ListGroups name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Assigning => "Assigning",
            Self::Reconciling => "Reconciling",
            Self::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ConsumerGroup {
    pub id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    /// The assignor that computed the target (the one the members name, else `uniform`).
    pub assignor: String,
    pub members: BTreeMap<String, ConsumerMember>,
    pub target: BTreeMap<String, Assignment>,
    /// Partition counts of the subscribed topics the target was computed from.
    partitions_seen: BTreeMap<String, i32>,
    /// Membership changed outside a heartbeat (a session expired): the next heartbeat
    /// recomputes the target.
    needs_assignment: bool,
}

impl ConsumerGroup {
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            assignor: assignor::ASSIGNORS[0].to_owned(),
            ..Self::default()
        }
    }

    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.assignment_epoch < self.group_epoch {
            ConsumerGroupState::Assigning
        } else if self.members.values().any(|m| !self.is_reconciled(m)) {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    fn is_reconciled(&self, m: &ConsumerMember) -> bool {
        m.member_epoch == self.assignment_epoch
            && m.revoking.is_empty()
            && self
                .target
                .get(&m.id)
                .map_or(m.assigned.is_empty(), |t| *t == m.assigned)
    }

    /// Handles one heartbeat. `partitions` are the partition counts of existing topics.
    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        partitions: &BTreeMap<String, i32>,
        config: &ConsumerGroupConfig,
        now: i64,
    ) -> HeartbeatReply {
        if hb.member_epoch == LEAVE_EPOCH || hb.member_epoch == STATIC_LEAVE_EPOCH {
            return self.leave(&hb, partitions);
        }
        if let Err(reply) = self.admit(&hb, config) {
            return reply;
        }
        let id = hb.member_id.clone();
        let changed = self.update_member(hb, now);
        if changed || self.needs_assignment || self.partitions_changed(partitions) {
            self.recompute_target(partitions);
        }
        let member = self.members.get(&id).cloned().unwrap_or_default();
        let updated = self.reconcile(member);
        let reply = HeartbeatReply {
            error: KafkaCode::None,
            message: None,
            member_id: id.clone(),
            member_epoch: updated.member_epoch,
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            assignment: None,
        };
        self.members.insert(id.clone(), updated);
        self.attach_assignment(&id, reply)
    }

    /// Checks the caller may heartbeat: a join, or a known member at its epoch (or at its
    /// previous epoch owning only what it was given: an answer got lost).
    fn admit(&self, hb: &Heartbeat, config: &ConsumerGroupConfig) -> Result<(), HeartbeatReply> {
        let fail = |code, msg: String| Err(HeartbeatReply::error(code, &hb.member_id, msg));
        if hb.member_id.is_empty() {
            return fail(KafkaCode::InvalidRequest, "MemberId can't be empty.".into());
        }
        if let Some(a) = &hb.server_assignor {
            if !assignor::ASSIGNORS.contains(&a.as_str()) {
                return fail(
                    KafkaCode::UnsupportedAssignor,
                    format!(
                        "ServerAssignor {a} is not supported. Supported assignors: uniform, range."
                    ),
                );
            }
        }
        let Some(m) = self.members.get(&hb.member_id) else {
            if hb.member_epoch != JOIN_EPOCH {
                return fail(
                    KafkaCode::UnknownMemberId,
                    format!(
                        "Member {} is not a member of group {}.",
                        hb.member_id, self.id
                    ),
                );
            }
            if self.members.len() >= config.max_size {
                return fail(
                    KafkaCode::GroupMaxSizeReached,
                    format!(
                        "The consumer group has reached its maximum capacity of {} members.",
                        config.max_size
                    ),
                );
            }
            if hb.subscribed.as_ref().is_none_or(BTreeSet::is_empty) {
                return fail(
                    KafkaCode::InvalidRequest,
                    "SubscribedTopicNames must be set in first request.".into(),
                );
            }
            return Ok(());
        };
        let owned_ok = |owned: &Option<Assignment>| {
            owned.as_ref().is_some_and(|o| {
                o.iter()
                    .all(|(t, ps)| ps.is_subset(m.assigned.get(t).unwrap_or(&BTreeSet::new())))
            })
        };
        let at_epoch = hb.member_epoch == m.member_epoch
            || (hb.member_epoch == m.previous_member_epoch && owned_ok(&hb.owned))
            || hb.member_epoch == JOIN_EPOCH;
        if !at_epoch {
            return fail(
                KafkaCode::FencedMemberEpoch,
                format!(
                    "The consumer group member has a smaller member epoch ({}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.",
                    hb.member_epoch, m.member_epoch
                ),
            );
        }
        Ok(())
    }

    /// Records what the heartbeat says; true if the target assignment must be recomputed.
    fn update_member(&mut self, hb: Heartbeat, now: i64) -> bool {
        let rejoin = hb.member_epoch == JOIN_EPOCH;
        let is_new = !self.members.contains_key(&hb.member_id);
        let m = self
            .members
            .entry(hb.member_id.clone())
            .or_insert_with(|| ConsumerMember {
                id: hb.member_id.clone(),
                ..ConsumerMember::default()
            });
        let mut changed = is_new;
        if rejoin && !is_new {
            // A fenced member rejoining has given up everything it had.
            m.assigned.clear();
            m.revoking.clear();
            m.member_epoch = 0;
            m.previous_member_epoch = 0;
            m.last_sent = None;
        }
        if let Some(s) = hb.subscribed {
            changed |= s != m.subscribed;
            m.subscribed = s;
        }
        if let Some(a) = hb.server_assignor {
            changed |= m.server_assignor.as_deref() != Some(a.as_str());
            m.server_assignor = Some(a);
        }
        if hb.rebalance_timeout_ms > 0 {
            m.rebalance_timeout_ms = hb.rebalance_timeout_ms;
        }
        if hb.instance_id.is_some() {
            m.instance_id = hb.instance_id;
        }
        if hb.rack_id.is_some() {
            m.rack_id = hb.rack_id;
        }
        m.client_id = hb.client_id;
        m.client_host = hb.client_host;
        m.last_heartbeat_ms = now;
        if let Some(owned) = hb.owned {
            // Revocation done once the member owns none of what was taken from it.
            if !m.revoking.is_empty() && disjoint(&owned, &m.revoking) {
                m.revoking.clear();
            }
        }
        changed
    }

    fn partitions_changed(&self, partitions: &BTreeMap<String, i32>) -> bool {
        self.subscribed_counts(partitions) != self.partitions_seen
    }

    fn subscribed_counts(&self, partitions: &BTreeMap<String, i32>) -> BTreeMap<String, i32> {
        let wanted: BTreeSet<&String> = self.members.values().flat_map(|m| &m.subscribed).collect();
        partitions
            .iter()
            .filter(|(t, _)| wanted.contains(t))
            .map(|(t, n)| (t.clone(), *n))
            .collect()
    }

    /// A new group epoch and the target assignment for it.
    fn recompute_target(&mut self, partitions: &BTreeMap<String, i32>) {
        self.group_epoch += 1;
        self.needs_assignment = false;
        self.assignor = self
            .members
            .values()
            .filter_map(|m| m.server_assignor.clone())
            .next()
            .unwrap_or_else(|| assignor::ASSIGNORS[0].to_owned());
        self.partitions_seen = self.subscribed_counts(partitions);
        let specs: Vec<MemberSpec> = self
            .members
            .values()
            .map(|m| MemberSpec {
                id: m.id.clone(),
                subscribed: m.subscribed.clone(),
            })
            .collect();
        self.target = assignor::assign(&self.assignor, &specs, &self.partitions_seen, &self.target);
        self.assignment_epoch = self.group_epoch;
    }

    /// Moves one member towards its target: revoke first, then take what is free.
    fn reconcile(&self, mut m: ConsumerMember) -> ConsumerMember {
        if !m.revoking.is_empty() {
            return m; // waiting for the member to let go
        }
        let target = self.target.get(&m.id).cloned().unwrap_or_default();
        let revoke = minus(&m.assigned, &target);
        if !revoke.is_empty() {
            m.assigned = intersect(&m.assigned, &target);
            m.revoking = revoke;
            return m;
        }
        let held_by_others = self.held_by_others(&m.id);
        let free = minus(&minus(&target, &m.assigned), &held_by_others);
        for (t, ps) in free {
            m.assigned.entry(t).or_default().extend(ps);
        }
        if m.member_epoch != self.assignment_epoch {
            m.previous_member_epoch = m.member_epoch;
            m.member_epoch = self.assignment_epoch;
        }
        m
    }

    fn held_by_others(&self, id: &str) -> Assignment {
        let mut held = Assignment::new();
        for other in self.members.values().filter(|o| o.id != id) {
            for a in [&other.assigned, &other.revoking] {
                for (t, ps) in a {
                    held.entry(t.clone()).or_default().extend(ps);
                }
            }
        }
        held
    }

    /// Puts the member's assignment in the reply when the member has not seen it yet.
    fn attach_assignment(&mut self, id: &str, mut reply: HeartbeatReply) -> HeartbeatReply {
        if let Some(m) = self.members.get_mut(id) {
            if m.last_sent.as_ref() != Some(&m.assigned) {
                reply.assignment = Some(m.assigned.clone());
                m.last_sent = Some(m.assigned.clone());
            }
        }
        reply
    }

    fn leave(&mut self, hb: &Heartbeat, partitions: &BTreeMap<String, i32>) -> HeartbeatReply {
        if self.members.remove(&hb.member_id).is_none() {
            return HeartbeatReply::error(
                KafkaCode::UnknownMemberId,
                &hb.member_id,
                format!(
                    "Member {} is not a member of group {}.",
                    hb.member_id, self.id
                ),
            );
        }
        self.recompute_target(partitions);
        HeartbeatReply {
            error: KafkaCode::None,
            message: None,
            member_id: hb.member_id.clone(),
            member_epoch: hb.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        }
    }

    /// Removes members silent for the session timeout; true if any was. The target is
    /// recomputed at the next heartbeat (which knows the partition counts).
    pub fn expire(&mut self, now: i64, config: &ConsumerGroupConfig) -> bool {
        let before = self.members.len();
        self.members
            .retain(|_, m| m.last_heartbeat_ms + config.session_timeout_ms > now);
        let expired = self.members.len() != before;
        if expired {
            self.group_epoch += 1;
            self.needs_assignment = true;
            let live: BTreeSet<String> = self.members.keys().cloned().collect();
            self.target.retain(|id, _| live.contains(id));
        }
        expired
    }

    /// When the next member's session runs out.
    pub fn next_deadline(&self, config: &ConsumerGroupConfig) -> Option<i64> {
        self.members
            .values()
            .map(|m| m.last_heartbeat_ms + config.session_timeout_ms)
            .min()
    }

    /// OffsetCommit from a member: it must be known and at its current epoch.
    pub fn validate_commit(&self, member_id: &str, epoch: i32) -> Result<(), KafkaCode> {
        let m = self
            .members
            .get(member_id)
            .ok_or(KafkaCode::UnknownMemberId)?;
        if epoch != m.member_epoch {
            return Err(KafkaCode::StaleMemberEpoch);
        }
        Ok(())
    }
}

fn disjoint(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .all(|(t, ps)| b.get(t).is_none_or(|other| ps.is_disjoint(other)))
}

fn minus(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(t, ps)| {
            let left: BTreeSet<i32> = match b.get(t) {
                Some(other) => ps.difference(other).copied().collect(),
                None => ps.clone(),
            };
            (!left.is_empty()).then(|| (t.clone(), left))
        })
        .collect()
}

fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(t, ps)| {
            let both: BTreeSet<i32> = ps.intersection(b.get(t)?).copied().collect();
            (!both.is_empty()).then(|| (t.clone(), both))
        })
        .collect()
}

#[cfg(test)]
#[path = "consumer_tests.rs"]
mod tests;
