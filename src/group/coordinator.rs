//! The coordinator of the groups one shard hosts: routes each request to its group's state
//! machine, creates groups on first join, expires sessions and offsets on `tick`, and
//! rebuilds its state from `__consumer_offsets` records at start. Sans-io like the state
//! machine: time comes in as arguments, persistence goes out as [`Output`]s and return values.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::consumer::{ConsumerGroup, ConsumerGroupConfig, Heartbeat, HeartbeatReply};
use super::records::{CommittedOffset, OffsetsRecord};
use super::state::{
    Group, GroupConfig, GroupState, JoinRequest, JoinResult, Member, Output, SyncResult, Token,
};
use crate::base::KafkaCode;

/// A partition as `(topic, index)`.
pub type PartitionKey = (String, i32);
/// Offsets to commit (or committed), by partition.
pub type OffsetCommits = Vec<(PartitionKey, CommittedOffset)>;

/// Identifies the caller of a heartbeat, sync, commit or leave.
#[derive(Debug, Clone)]
pub struct MemberRef {
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
}

/// A group's description (DescribeGroups).
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

pub struct Coordinator {
    /// Classic groups; also the holder of every group's committed offsets, consumer groups'
    /// included (a group id has one set of offsets whatever protocol its members speak).
    groups: HashMap<String, Group>,
    /// KIP-848 consumer groups (`group.protocol=consumer`).
    consumer_groups: HashMap<String, ConsumerGroup>,
    config: GroupConfig,
    consumer_config: ConsumerGroupConfig,
    next_member: u64,
}

impl Coordinator {
    pub fn new(config: GroupConfig) -> Self {
        Self {
            groups: HashMap::new(),
            consumer_groups: HashMap::new(),
            config,
            consumer_config: ConsumerGroupConfig::default(),
            next_member: 0,
        }
    }

    /// ConsumerGroupHeartbeat. A group id that a classic group with members holds is not a
    /// consumer group; an empty classic group (offsets only) is taken over.
    pub fn consumer_heartbeat(
        &mut self,
        group_id: &str,
        hb: Heartbeat,
        partitions: &BTreeMap<String, i32>,
        now: i64,
    ) -> HeartbeatReply {
        if group_id.is_empty() {
            return HeartbeatReply::error(
                KafkaCode::InvalidGroupId,
                &hb.member_id,
                "GroupId can't be empty.",
            );
        }
        if self.classic_in_use(group_id) {
            return HeartbeatReply::error(
                KafkaCode::GroupIdNotFound,
                &hb.member_id,
                format!("Group {group_id} is not a consumer group."),
            );
        }
        self.consumer_groups
            .entry(group_id.to_owned())
            .or_insert_with(|| ConsumerGroup::new(group_id))
            .heartbeat(hb, partitions, &self.consumer_config, now)
    }

    /// The consumer group `group_id` (ConsumerGroupDescribe); GROUP_ID_NOT_FOUND for a classic
    /// group or none.
    pub fn consumer_group(&self, group_id: &str) -> Result<&ConsumerGroup, KafkaCode> {
        self.consumer_groups
            .get(group_id)
            .ok_or(KafkaCode::GroupIdNotFound)
    }

    /// `(group, state)` of every consumer group.
    pub fn list_consumer_groups(&self) -> Vec<(String, &'static str)> {
        let mut v: Vec<_> = self
            .consumer_groups
            .values()
            .map(|g| (g.id.clone(), g.state().name()))
            .collect();
        v.sort();
        v
    }

    pub fn heartbeat_interval_ms(&self) -> i32 {
        self.consumer_config.heartbeat_interval_ms
    }

    fn classic_in_use(&self, group_id: &str) -> bool {
        self.groups
            .get(group_id)
            .is_some_and(|g| !matches!(g.state, GroupState::Empty | GroupState::Dead))
    }

    fn consumer_in_use(&self, group_id: &str) -> bool {
        self.consumer_groups
            .get(group_id)
            .is_some_and(|g| !g.members.is_empty())
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    /// Forgets every group `gone` names (their offsets partition moved to another broker,
    /// whose coordinator reloads them from the log).
    pub fn unload(&mut self, gone: impl Fn(&str) -> bool) {
        self.groups.retain(|id, _| !gone(id));
        self.consumer_groups.retain(|id, _| !gone(id));
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_member += 1;
        format!("{client_id}-{}", uuid::Uuid::new_v4())
    }

    /// Applies a record read back from `__consumer_offsets` at start-up; `txn_producer` is
    /// the producer id of a transactional offset commit (pending until its marker).
    pub fn load(&mut self, record: OffsetsRecord, txn_producer: Option<i64>, now: i64) {
        match record {
            OffsetsRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                let g = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group, now));
                match (value, txn_producer) {
                    (Some(v), Some(pid)) => {
                        g.pending_txn
                            .entry(pid)
                            .or_default()
                            .insert((topic, partition), v);
                    }
                    (Some(v), None) => {
                        g.offsets.insert((topic, partition), v);
                    }
                    (None, _) => {
                        g.offsets.remove(&(topic, partition));
                    }
                }
            }
            OffsetsRecord::Group { group, value } => match value {
                Some(v) => {
                    let g = self
                        .groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, now));
                    // Members come back by rejoining; the generation keeps counting up.
                    g.generation = v.generation;
                    g.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
                }
                None => {
                    self.groups.remove(&group);
                }
            },
        }
    }

    pub fn join(
        &mut self,
        token: Token,
        group_id: &str,
        req: JoinRequest,
        now: i64,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        if self.consumer_in_use(group_id) {
            out.push(Output::Join(
                token,
                JoinResult::error(KafkaCode::InconsistentGroupProtocol, &req.member_id),
            ));
            return out;
        }
        let reply = |out: &mut Vec<Output>, code: KafkaCode, id: &str| {
            out.push(Output::Join(token, JoinResult::error(code, id)));
        };
        if group_id.is_empty() {
            reply(&mut out, KafkaCode::InvalidGroupId, &req.member_id);
            return out;
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            reply(&mut out, KafkaCode::InvalidSessionTimeout, &req.member_id);
            return out;
        }
        if !req.member_id.is_empty() && !self.groups.contains_key(group_id) {
            reply(&mut out, KafkaCode::UnknownMemberId, &req.member_id);
            return out;
        }
        let new_id = if req.member_id.is_empty() {
            Some(self.new_member_id(&req.client_id))
        } else {
            None
        };
        let config = self.config.clone();
        let g = self
            .groups
            .entry(group_id.to_owned())
            .or_insert_with(|| Group::new(group_id, now));
        if g.state == GroupState::Dead {
            reply(&mut out, KafkaCode::CoordinatorNotAvailable, &req.member_id);
            return out;
        }
        let known = !req.member_id.is_empty() && g.member(&req.member_id).is_some();
        if !known && !g.supports(&req.protocol_type, &req.protocols) {
            reply(
                &mut out,
                KafkaCode::InconsistentGroupProtocol,
                &req.member_id,
            );
            return out;
        }
        if let Some(new_id) = new_id {
            join_unknown(g, token, new_id, req, now, &config, &mut out);
        } else {
            join_known(g, token, req, now, &config, &mut out);
        }
        out
    }

    pub fn sync(
        &mut self,
        token: Token,
        group_id: &str,
        who: MemberRef,
        assignments: Vec<(String, Bytes)>,
        now: i64,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        let Some(g) = self.groups.get_mut(group_id) else {
            out.push(Output::Sync(
                token,
                SyncResult::error(KafkaCode::UnknownMemberId),
            ));
            return out;
        };
        if let Err(code) = check_member(g, &who) {
            out.push(Output::Sync(token, SyncResult::error(code)));
            return out;
        }
        match g.state {
            GroupState::PreparingRebalance => {
                out.push(Output::Sync(
                    token,
                    SyncResult::error(KafkaCode::RebalanceInProgress),
                ));
            }
            GroupState::Stable => {
                let m = g.member(&who.member_id).expect("checked");
                let result = SyncResult {
                    error: KafkaCode::None,
                    protocol_type: g.protocol_type.clone(),
                    protocol_name: g.protocol.clone(),
                    assignment: m.assignment.clone(),
                };
                out.push(Output::Sync(token, result));
            }
            GroupState::CompletingRebalance => {
                let is_leader = g.leader.as_deref() == Some(who.member_id.as_str());
                if let Some(m) = g.members.iter_mut().find(|m| m.id == who.member_id) {
                    m.awaiting_sync = Some(token);
                    m.last_heartbeat_ms = now;
                }
                if is_leader {
                    let by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in &mut g.members {
                        m.assignment = by_member.get(&m.id).cloned().unwrap_or_default();
                    }
                    g.state = GroupState::Stable;
                    g.state_since_ms = now;
                    let (pt, pn) = (g.protocol_type.clone(), g.protocol.clone());
                    for m in &mut g.members {
                        if let Some(t) = m.awaiting_sync.take() {
                            out.push(Output::Sync(
                                t,
                                SyncResult {
                                    error: KafkaCode::None,
                                    protocol_type: pt.clone(),
                                    protocol_name: pn.clone(),
                                    assignment: m.assignment.clone(),
                                },
                            ));
                        }
                    }
                    out.push(Output::PersistGroup(g.id.clone(), Some(g.stored())));
                }
            }
            GroupState::Empty | GroupState::Dead => {
                out.push(Output::Sync(
                    token,
                    SyncResult::error(KafkaCode::UnknownMemberId),
                ));
            }
        }
        out
    }

    pub fn heartbeat(&mut self, group_id: &str, who: MemberRef, now: i64) -> KafkaCode {
        let Some(g) = self.groups.get_mut(group_id) else {
            return KafkaCode::UnknownMemberId;
        };
        if let Err(code) = check_member(g, &who) {
            return code;
        }
        if let Some(m) = g.members.iter_mut().find(|m| m.id == who.member_id) {
            m.last_heartbeat_ms = now;
        }
        match g.state {
            GroupState::PreparingRebalance => KafkaCode::RebalanceInProgress,
            GroupState::CompletingRebalance | GroupState::Stable => KafkaCode::None,
            GroupState::Empty | GroupState::Dead => KafkaCode::UnknownMemberId,
        }
    }

    /// LeaveGroup for several members; returns the group error and one code per member.
    pub fn leave(
        &mut self,
        group_id: &str,
        leaving: Vec<(String, Option<String>)>,
        now: i64,
    ) -> (KafkaCode, Vec<KafkaCode>, Vec<Output>) {
        let mut out = Vec::new();
        let Some(g) = self.groups.get_mut(group_id) else {
            return (
                KafkaCode::None,
                vec![KafkaCode::UnknownMemberId; leaving.len()],
                out,
            );
        };
        let config = self.config.clone();
        let mut codes = Vec::with_capacity(leaving.len());
        for (member_id, instance_id) in leaving {
            let target = match (&instance_id, member_id.is_empty()) {
                (Some(inst), true) => g.member_for_instance(inst).map(|m| m.id.clone()),
                (Some(inst), false) => match g.member_for_instance(inst) {
                    Some(m) if m.id != member_id => {
                        codes.push(KafkaCode::FencedInstanceId);
                        continue;
                    }
                    Some(m) => Some(m.id.clone()),
                    None => None,
                },
                (None, _) => g.member(&member_id).map(|m| m.id.clone()),
            };
            match target {
                Some(id) => {
                    g.remove_member(&id, now, &config, &mut out);
                    codes.push(KafkaCode::None);
                }
                None => codes.push(KafkaCode::UnknownMemberId),
            }
        }
        (KafkaCode::None, codes, out)
    }

    /// Checks an OffsetCommit (or a TxnOffsetCommit). Nothing is recorded yet: the caller
    /// persists the offsets and then calls [`Coordinator::apply_commit`] (or
    /// [`Coordinator::add_txn_offsets`]), so OffsetFetch never sees an offset that is not
    /// durable. Returns the offsets to persist.
    pub fn commit(
        &mut self,
        group_id: &str,
        who: &MemberRef,
        offsets: OffsetCommits,
        now: i64,
    ) -> Result<OffsetCommits, KafkaCode> {
        if group_id.is_empty() {
            return Err(KafkaCode::InvalidGroupId);
        }
        let simple = who.generation < 0 && who.member_id.is_empty();
        if let Some(cg) = self.consumer_groups.get(group_id) {
            if !cg.members.is_empty() {
                if simple {
                    return Err(KafkaCode::UnknownMemberId);
                }
                cg.validate_commit(&who.member_id, who.generation)?;
                // The classic table holds a consumer group's offsets; make sure its entry
                // exists so apply_commit / add_txn_offsets find it once the write is durable.
                self.groups
                    .entry(group_id.to_owned())
                    .or_insert_with(|| Group::new(group_id, now));
                return Ok(offsets);
            }
        }
        let g = self
            .groups
            .entry(group_id.to_owned())
            .or_insert_with(|| Group::new(group_id, now));
        match g.state {
            GroupState::Dead => return Err(KafkaCode::CoordinatorNotAvailable),
            GroupState::Empty if simple => {}
            GroupState::CompletingRebalance => return Err(KafkaCode::RebalanceInProgress),
            _ => check_member(g, who)?,
        }
        if !simple {
            if let Some(m) = g.members.iter_mut().find(|m| m.id == who.member_id) {
                m.last_heartbeat_ms = now;
            }
        }
        Ok(offsets)
    }

    /// Records offsets whose commit is durable.
    pub fn apply_commit(&mut self, group_id: &str, offsets: &OffsetCommits) {
        if let Some(g) = self.groups.get_mut(group_id) {
            for (k, v) in offsets {
                g.offsets.insert(k.clone(), v.clone());
            }
        }
    }

    /// Records offsets a transaction committed durably (they count when it commits).
    pub fn add_txn_offsets(&mut self, group_id: &str, producer_id: i64, offsets: &OffsetCommits) {
        if let Some(g) = self.groups.get_mut(group_id) {
            let pending = g.pending_txn.entry(producer_id).or_default();
            for (k, v) in offsets {
                pending.insert(k.clone(), v.clone());
            }
        }
    }

    /// A transaction of `producer_id` ended: its offsets become committed, or are dropped.
    pub fn complete_txn(&mut self, producer_id: i64, commit: bool) {
        for g in self.groups.values_mut() {
            let Some(pending) = g.pending_txn.remove(&producer_id) else {
                continue;
            };
            if commit {
                g.offsets.extend(pending);
            }
        }
    }

    /// Committed offsets of `group` for the partitions asked (all when `None`), with whether
    /// an open transaction holds an offset for that partition (OffsetFetch's
    /// UNSTABLE_OFFSET_COMMIT when the caller requires stable offsets).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        wanted: Option<&[(String, i32)]>,
    ) -> Vec<((String, i32), Option<CommittedOffset>, bool)> {
        let Some(g) = self.groups.get(group_id) else {
            return wanted
                .map(|list| list.iter().map(|k| (k.clone(), None, false)).collect())
                .unwrap_or_default();
        };
        let unstable = |k: &(String, i32)| g.pending_txn.values().any(|p| p.contains_key(k));
        match wanted {
            Some(list) => list
                .iter()
                .map(|k| (k.clone(), g.offsets.get(k).cloned(), unstable(k)))
                .collect(),
            None => g
                .offsets
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone()), unstable(k)))
                .collect(),
        }
    }

    pub fn describe(&self, group_id: &str) -> GroupDescription {
        let Some(g) = self.groups.get(group_id) else {
            return GroupDescription {
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            };
        };
        let stored = g.stored();
        GroupDescription {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if g.state == GroupState::Stable {
                g.protocol.clone().unwrap_or_default()
            } else {
                String::new()
            },
            members: stored
                .members
                .into_iter()
                .map(|m| {
                    (
                        m.member_id,
                        m.instance_id,
                        m.client_id,
                        m.client_host,
                        m.subscription,
                        m.assignment,
                    )
                })
                .collect(),
        }
    }

    /// `(group, protocol type, state name)` of every live group; a consumer group shows as
    /// protocol type `consumer` with its KIP-848 state.
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let mut v: Vec<_> = self
            .groups
            .values()
            .filter(|g| g.state != GroupState::Dead && !self.consumer_groups.contains_key(&g.id))
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state.name(),
                )
            })
            .collect();
        v.extend(
            self.list_consumer_groups()
                .into_iter()
                .map(|(id, state)| (id, "consumer".to_owned(), state)),
        );
        v.sort();
        v
    }

    /// Deletes an empty group; returns the offsets whose tombstones must be written.
    pub fn delete_group(&mut self, group_id: &str) -> Result<Vec<(String, i32)>, KafkaCode> {
        if self.consumer_in_use(group_id) {
            return Err(KafkaCode::NonEmptyGroup);
        }
        let was_consumer = self.consumer_groups.remove(group_id).is_some();
        if was_consumer && !self.groups.contains_key(group_id) {
            return Ok(Vec::new());
        }
        let g = self
            .groups
            .get(group_id)
            .ok_or(KafkaCode::GroupIdNotFound)?;
        match g.state {
            GroupState::Dead => Err(KafkaCode::GroupIdNotFound),
            GroupState::Empty => {
                let keys = g.offsets.keys().cloned().collect();
                self.groups.remove(group_id);
                Ok(keys)
            }
            _ => Err(KafkaCode::NonEmptyGroup),
        }
    }

    /// OffsetDelete: refused for topics the group's members subscribe to.
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        partitions: &[(String, i32)],
        subscribed: impl Fn(&Bytes, &str) -> bool,
    ) -> Result<Vec<KafkaCode>, KafkaCode> {
        let g = self
            .groups
            .get_mut(group_id)
            .ok_or(KafkaCode::GroupIdNotFound)?;
        let mut codes = Vec::new();
        for (topic, p) in partitions {
            let in_use = g
                .members
                .iter()
                .any(|m| m.protocols.iter().any(|(_, md)| subscribed(md, topic)));
            if in_use {
                codes.push(KafkaCode::GroupSubscribedToTopic);
            } else {
                g.offsets.remove(&(topic.clone(), *p));
                codes.push(KafkaCode::None);
            }
        }
        Ok(codes)
    }

    /// Advances time: expires sessions and pending ids, completes rebalances whose wait is
    /// over, and returns expired offsets of empty groups (to tombstone) with the outputs.
    pub fn tick(&mut self, now: i64) -> (Vec<Output>, Vec<(String, String, i32)>) {
        let mut out = Vec::new();
        let mut expired = Vec::new();
        for cg in self.consumer_groups.values_mut() {
            cg.expire(now, &self.consumer_config);
        }
        let config = self.config.clone();
        for g in self.groups.values_mut() {
            g.pending.retain(|_, deadline| *deadline > now);
            let dead: Vec<String> = g
                .members
                .iter()
                .filter(|m| {
                    m.awaiting_join.is_none()
                        && m.last_heartbeat_ms + m.session_timeout_ms as i64 <= now
                })
                .map(|m| m.id.clone())
                .collect();
            for id in dead {
                g.remove_member(&id, now, &config, &mut out);
            }
            match g.state {
                GroupState::PreparingRebalance => {
                    let force = now >= g.rebalance_deadline_ms;
                    g.maybe_complete_join(now, force, &mut out);
                }
                GroupState::CompletingRebalance if now >= g.rebalance_deadline_ms => {
                    // The leader never sent the assignment: start over without the silent.
                    let silent: Vec<String> = g
                        .members
                        .iter()
                        .filter(|m| m.awaiting_sync.is_none())
                        .map(|m| m.id.clone())
                        .collect();
                    for id in silent {
                        g.remove_member(&id, now, &config, &mut out);
                    }
                    g.prepare_rebalance(now, &config, &mut out);
                }
                GroupState::Empty => {
                    let horizon = now - config.offsets_retention_ms;
                    if g.state_since_ms < horizon {
                        let old: Vec<(String, i32)> = g
                            .offsets
                            .iter()
                            .filter(|(_, v)| v.commit_timestamp < horizon)
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in old {
                            g.offsets.remove(&k);
                            expired.push((g.id.clone(), k.0, k.1));
                        }
                    }
                }
                _ => {}
            }
        }
        (out, expired)
    }

    /// Earliest time something may happen without a request arriving.
    pub fn next_deadline(&self) -> Option<i64> {
        let mut next: Option<i64> = None;
        let mut consider = |t: i64| next = Some(next.map_or(t, |n: i64| n.min(t)));
        for cg in self.consumer_groups.values() {
            if let Some(t) = cg.next_deadline(&self.consumer_config) {
                consider(t);
            }
        }
        for g in self.groups.values() {
            for m in &g.members {
                if m.awaiting_join.is_none() {
                    consider(m.last_heartbeat_ms + m.session_timeout_ms as i64);
                }
            }
            for d in g.pending.values() {
                consider(*d);
            }
            match g.state {
                GroupState::PreparingRebalance => {
                    consider(g.rebalance_deadline_ms);
                    if g.initial_delay_until_ms > 0 {
                        consider(g.initial_delay_until_ms);
                    }
                }
                GroupState::CompletingRebalance => consider(g.rebalance_deadline_ms),
                _ => {}
            }
        }
        next
    }

    #[cfg(test)]
    pub(super) fn insert_group_for_test(&mut self, g: Group) {
        self.groups.insert(g.id.clone(), g);
    }

    /// Committed offsets by group, for tools.
    pub fn offsets_of(&self, group_id: &str) -> BTreeMap<(String, i32), CommittedOffset> {
        self.groups
            .get(group_id)
            .map(|g| g.offsets.clone())
            .unwrap_or_default()
    }
}

fn check_member(g: &Group, who: &MemberRef) -> Result<(), KafkaCode> {
    if let Some(inst) = &who.instance_id {
        if let Some(m) = g.member_for_instance(inst) {
            if m.id != who.member_id {
                return Err(KafkaCode::FencedInstanceId);
            }
        }
    }
    if g.member(&who.member_id).is_none() {
        return Err(KafkaCode::UnknownMemberId);
    }
    if who.generation != g.generation {
        return Err(KafkaCode::IllegalGeneration);
    }
    Ok(())
}

fn new_member(id: String, req: &JoinRequest, now: i64) -> Member {
    Member {
        id,
        instance_id: req.instance_id.clone(),
        client_id: req.client_id.clone(),
        client_host: req.client_host.clone(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        protocols: req.protocols.clone(),
        assignment: Bytes::new(),
        last_heartbeat_ms: now,
        awaiting_join: None,
        awaiting_sync: None,
    }
}

/// A join without a member id: a static member coming back, a new static member, or a new
/// dynamic member (which first gets MEMBER_ID_REQUIRED under KIP-394).
fn join_unknown(
    g: &mut Group,
    token: Token,
    new_id: String,
    req: JoinRequest,
    now: i64,
    config: &GroupConfig,
    out: &mut Vec<Output>,
) {
    if let Some(inst) = req.instance_id.clone() {
        if let Some(old) = g.member_for_instance(&inst).map(|m| m.id.clone()) {
            rejoin_static(g, token, &old, new_id, req, now, config, out);
            return;
        }
    } else if req.require_known_member_id {
        g.pending
            .insert(new_id.clone(), now + req.session_timeout_ms as i64);
        out.push(Output::Join(
            token,
            JoinResult::error(KafkaCode::MemberIdRequired, &new_id),
        ));
        return;
    }
    let mut m = new_member(new_id, &req, now);
    m.awaiting_join = Some(token);
    g.add_member(m, &req.protocol_type);
    g.prepare_rebalance(now, config, out);
    g.maybe_complete_join(now, false, out);
}

/// KIP-345: a restarted static member takes over its old member id's place. In a stable
/// group with unchanged protocols it gets its old assignment back without a rebalance.
#[allow(clippy::too_many_arguments)]
fn rejoin_static(
    g: &mut Group,
    token: Token,
    old: &str,
    new_id: String,
    req: JoinRequest,
    now: i64,
    config: &GroupConfig,
    out: &mut Vec<Output>,
) {
    let stable = g.state == GroupState::Stable;
    let was_leader = g.leader.as_deref() == Some(old);
    let m = g.member_mut_by_id(old).expect("found by instance");
    let same = m.protocols == req.protocols;
    if let Some(t) = m.awaiting_join.take() {
        out.push(Output::Join(
            t,
            JoinResult::error(KafkaCode::FencedInstanceId, old),
        ));
    }
    if let Some(t) = m.awaiting_sync.take() {
        out.push(Output::Sync(
            t,
            SyncResult::error(KafkaCode::FencedInstanceId),
        ));
    }
    m.id = new_id.clone();
    m.client_id = req.client_id.clone();
    m.client_host = req.client_host.clone();
    m.session_timeout_ms = req.session_timeout_ms;
    m.rebalance_timeout_ms = req.rebalance_timeout_ms;
    m.last_heartbeat_ms = now;
    if was_leader {
        g.leader = Some(new_id.clone());
    }
    if stable && same && !was_leader {
        out.push(Output::Join(token, g.join_result_for_member(&new_id)));
        out.push(Output::PersistGroup(g.id.clone(), Some(g.stored())));
        return;
    }
    let m = g.member_mut_by_id(&new_id).expect("renamed above");
    m.protocols = req.protocols;
    m.awaiting_join = Some(token);
    g.prepare_rebalance(now, config, out);
    g.maybe_complete_join(now, false, out);
}

/// A join from a member id the group knows (or handed out as pending).
fn join_known(
    g: &mut Group,
    token: Token,
    req: JoinRequest,
    now: i64,
    config: &GroupConfig,
    out: &mut Vec<Output>,
) {
    let id = req.member_id.clone();
    if let Some(inst) = &req.instance_id {
        if g.member_for_instance(inst).is_some_and(|m| m.id != id) {
            out.push(Output::Join(
                token,
                JoinResult::error(KafkaCode::FencedInstanceId, &id),
            ));
            return;
        }
    }
    if g.pending.remove(&id).is_some() {
        let mut m = new_member(id, &req, now);
        m.awaiting_join = Some(token);
        g.add_member(m, &req.protocol_type);
        g.prepare_rebalance(now, config, out);
        g.maybe_complete_join(now, false, out);
        return;
    }
    let is_leader = g.leader.as_deref() == Some(id.as_str());
    let state = g.state;
    let Some(m) = g.member_mut_by_id(&id) else {
        out.push(Output::Join(
            token,
            JoinResult::error(KafkaCode::UnknownMemberId, &id),
        ));
        return;
    };
    let same = m.protocols == req.protocols;
    m.last_heartbeat_ms = now;
    m.session_timeout_ms = req.session_timeout_ms;
    m.rebalance_timeout_ms = req.rebalance_timeout_ms;
    m.protocols = req.protocols;
    if let Some(old) = m.awaiting_join.replace(token) {
        out.push(Output::Join(
            old,
            JoinResult::error(KafkaCode::UnknownMemberId, &id),
        ));
    }
    let unchanged_follower =
        same && !is_leader && matches!(state, GroupState::Stable | GroupState::CompletingRebalance);
    if unchanged_follower {
        let m = g.member_mut_by_id(&id).expect("found above");
        m.awaiting_join = None;
        out.push(Output::Join(token, g.join_result_for_member(&id)));
        return;
    }
    g.prepare_rebalance(now, config, out);
    g.maybe_complete_join(now, false, out);
}

impl Group {
    fn member_mut_by_id(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    fn join_result_for_member(&self, id: &str) -> JoinResult {
        let mut r = JoinResult::error(KafkaCode::None, id);
        r.generation = self.generation;
        r.protocol_type = self.protocol_type.clone();
        r.protocol_name = self.protocol.clone();
        r.leader = self.leader.clone().unwrap_or_default();
        r
    }
}
