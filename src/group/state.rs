//! One consumer group's state machine (Kafka's classic group protocol), sans-io: every
//! method takes the current time and returns what to answer. Requests that must wait (a
//! JoinGroup until the rebalance completes, a SyncGroup until the leader's assignment
//! arrives) are parked under a caller-chosen [`Token`] and answered later through
//! [`Output`]s. Assignment is the clients' business: the coordinator stores and hands out
//! opaque bytes, so eager and cooperative assignors alike work.
//!
//! States: Empty → PreparingRebalance → CompletingRebalance → Stable, back to Preparing on
//! any membership change, and Dead once deleted.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::records::{CommittedOffset, StoredGroup, StoredMember};
use crate::base::KafkaCode;

/// Identifies a parked request; the I/O shell maps it to a reply channel.
pub type Token = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Coordinator-wide settings (Kafka's `group.*` broker configs).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub initial_rebalance_delay_ms: i64,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub offsets_retention_ms: i64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// A JoinGroup, in plain terms.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// KIP-394 (JoinGroup v4+): a new member first gets MEMBER_ID_REQUIRED and its id.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinResult {
    pub error: KafkaCode,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only: (member id, instance id, metadata for the chosen protocol).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub fn error(code: KafkaCode, member_id: &str) -> Self {
        Self {
            error: code,
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_owned(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncResult {
    pub error: KafkaCode,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(code: KafkaCode) -> Self {
        Self {
            error: code,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// What the coordinator asks its I/O shell to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Join(Token, JoinResult),
    Sync(Token, SyncResult),
    /// Write the group's metadata record (None: a tombstone).
    PersistGroup(String, Option<StoredGroup>),
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub last_heartbeat_ms: i64,
    pub awaiting_join: Option<Token>,
    pub awaiting_sync: Option<Token>,
}

/// One group.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// In join order.
    pub members: Vec<Member>,
    /// Member ids handed out by MEMBER_ID_REQUIRED, with the time they lapse.
    pub pending: HashMap<String, i64>,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// Offsets committed inside open transactions, by producer id: they count once the
    /// transaction commits and vanish if it aborts.
    pub pending_txn: HashMap<i64, BTreeMap<(String, i32), CommittedOffset>>,
    pub rebalance_deadline_ms: i64,
    pub initial_delay_until_ms: i64,
    pub state_since_ms: i64,
}

impl Group {
    pub fn new(id: &str, now: i64) -> Self {
        Self {
            id: id.to_owned(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: Vec::new(),
            pending: HashMap::new(),
            offsets: BTreeMap::new(),
            pending_txn: HashMap::new(),
            rebalance_deadline_ms: 0,
            initial_delay_until_ms: 0,
            state_since_ms: now,
        }
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    pub fn member_for_instance(&self, instance: &str) -> Option<&Member> {
        self.members
            .iter()
            .find(|m| m.instance_id.as_deref() == Some(instance))
    }

    fn set_state(&mut self, state: GroupState, now: i64) {
        self.state = state;
        self.state_since_ms = now;
    }

    /// Whether a member with these protocols can join: same type, and a protocol every
    /// member supports.
    pub(super) fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .iter()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    /// The protocol every member supports with the most first-preference votes.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.first()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .iter()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let mut votes: HashMap<&String, usize> = HashMap::new();
        for m in &self.members {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                *votes.entry(n).or_default() += 1;
            }
        }
        candidates
            .iter()
            .max_by_key(|c| {
                (
                    votes.get(*c).copied().unwrap_or(0),
                    std::cmp::Reverse(candidates.iter().position(|x| x == *c)),
                )
            })
            .map(|c| (*c).clone())
    }

    /// The longest rebalance timeout among the members: how long a rebalance may wait.
    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .iter()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0) as i64
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.iter().all(|m| m.awaiting_join.is_some())
    }

    /// The record that persists this group.
    pub fn stored(&self) -> StoredGroup {
        StoredGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_since_ms,
            members: self
                .members
                .iter()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: self.chosen_metadata(m),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    fn chosen_metadata(&self, m: &Member) -> Bytes {
        let chosen = self.protocol.as_deref();
        m.protocols
            .iter()
            .find(|(n, _)| Some(n.as_str()) == chosen)
            .map(|(_, md)| md.clone())
            .unwrap_or_default()
    }

    fn join_result_for(&self, member_id: &str) -> JoinResult {
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinResult {
            error: KafkaCode::None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members: if is_leader {
                self.members
                    .iter()
                    .map(|m| (m.id.clone(), m.instance_id.clone(), self.chosen_metadata(m)))
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Starts (or restarts) a rebalance: parked syncs are told to rejoin.
    pub fn prepare_rebalance(&mut self, now: i64, config: &GroupConfig, out: &mut Vec<Output>) {
        for m in &mut self.members {
            if let Some(t) = m.awaiting_sync.take() {
                out.push(Output::Sync(
                    t,
                    SyncResult::error(KafkaCode::RebalanceInProgress),
                ));
            }
        }
        let was_empty = self.state == GroupState::Empty;
        let timeout = self.rebalance_timeout_ms();
        if self.state != GroupState::PreparingRebalance {
            self.rebalance_deadline_ms = now + timeout;
            self.set_state(GroupState::PreparingRebalance, now);
            if was_empty && config.initial_rebalance_delay_ms > 0 {
                self.initial_delay_until_ms = now + config.initial_rebalance_delay_ms.min(timeout);
            }
        } else if self.initial_delay_until_ms > now {
            // New members during the initial delay push it out, within the rebalance timeout.
            self.initial_delay_until_ms =
                (now + config.initial_rebalance_delay_ms).min(self.rebalance_deadline_ms);
        }
    }

    /// Completes the join phase if every member has rejoined (or `force`, at the deadline).
    pub fn maybe_complete_join(&mut self, now: i64, force: bool, out: &mut Vec<Output>) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if !force && (now < self.initial_delay_until_ms || !self.all_joined()) {
            return;
        }
        // Members that did not rejoin in time are out.
        self.members.retain(|m| m.awaiting_join.is_some());
        self.pending.clear();
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty, now);
            out.push(Output::PersistGroup(self.id.clone(), Some(self.stored())));
            return;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| self.member(l).is_none())
        {
            self.leader = Some(self.members[0].id.clone());
        }
        self.set_state(GroupState::CompletingRebalance, now);
        let timeout = self.rebalance_timeout_ms();
        self.rebalance_deadline_ms = now + timeout;
        let ids: Vec<String> = self.members.iter().map(|m| m.id.clone()).collect();
        for id in ids {
            let result = self.join_result_for(&id);
            let m = self.member_mut(&id).expect("listed above");
            m.last_heartbeat_ms = now;
            m.assignment = Bytes::new();
            if let Some(t) = m.awaiting_join.take() {
                out.push(Output::Join(t, result));
            }
        }
    }

    /// Removes a member, answering whatever it had parked, and rebalances the rest.
    pub fn remove_member(
        &mut self,
        id: &str,
        now: i64,
        config: &GroupConfig,
        out: &mut Vec<Output>,
    ) {
        let Some(pos) = self.members.iter().position(|m| m.id == id) else {
            return;
        };
        let m = self.members.remove(pos);
        if let Some(t) = m.awaiting_join {
            out.push(Output::Join(
                t,
                JoinResult::error(KafkaCode::UnknownMemberId, id),
            ));
        }
        if let Some(t) = m.awaiting_sync {
            out.push(Output::Sync(
                t,
                SyncResult::error(KafkaCode::UnknownMemberId),
            ));
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, config, out)
            }
            GroupState::PreparingRebalance => {}
            GroupState::Empty | GroupState::Dead => return,
        }
        self.maybe_complete_join(now, false, out);
    }

    pub(super) fn add_member(&mut self, m: Member, protocol_type: &str) {
        if self.members.is_empty() {
            self.protocol_type = Some(protocol_type.to_owned());
        }
        self.members.push(m);
    }
}
