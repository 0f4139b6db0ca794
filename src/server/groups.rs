//! Handlers of the consumer-group APIs: they translate Kafka messages to the group
//! coordinator's plain requests (`crate::group`) and its answers back, per version.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::handlers::Handlers;
use crate::base::{Clock, KafkaCode, SystemClock};
use crate::controller::{BrokerInfo, ClusterSnapshot};
use crate::group::{self, CommittedOffset, GroupSettings, JoinRequest, MemberRef};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn opt(v: Option<String>) -> Option<StrBytes> {
    v.map(StrBytes::from_string)
}

fn group_id(g: &str) -> GroupId {
    GroupId(s(g))
}

impl Handlers {
    pub async fn find_coordinator(
        &self,
        req: FindCoordinatorRequest,
        version: i16,
        settings: &GroupSettings,
    ) -> ResponseKind {
        let keys: Vec<String> = if version >= 4 {
            req.coordinator_keys.iter().map(|k| k.to_string()).collect()
        } else {
            vec![req.key.to_string()]
        };
        let (error, topic) = match req.key_type {
            0 => (
                group::ensure_offsets_topic(&self.router, settings)
                    .await
                    .err(),
                group::OFFSETS_TOPIC,
            ),
            1 => (
                crate::txn::ensure_state_topic(&self.router, &self.txn)
                    .await
                    .err(),
                crate::txn::TXN_STATE_TOPIC,
            ),
            _ => (Some(KafkaCode::InvalidRequest), group::OFFSETS_TOPIC),
        };
        let snap = self.router.snapshot();
        let locate = |key: &str| match error {
            Some(code) => Err(code),
            None => coordinator_of(&snap, topic, key),
        };
        let mut resp = FindCoordinatorResponse::default();
        if version >= 4 {
            resp.coordinators = keys
                .into_iter()
                .map(|k| {
                    let mut c = Coordinator::default();
                    match locate(&k) {
                        Ok(b) => {
                            c.node_id = BrokerId(b.node_id);
                            c.host = s(&b.host);
                            c.port = b.port;
                        }
                        Err(code) => {
                            c.node_id = BrokerId(-1);
                            c.error_code = code.code();
                        }
                    }
                    c.key = StrBytes::from_string(k);
                    c
                })
                .collect();
        } else {
            match keys.first().map(|k| locate(k)) {
                Some(Ok(b)) => {
                    resp.node_id = BrokerId(b.node_id);
                    resp.host = s(&b.host);
                    resp.port = b.port;
                }
                Some(Err(code)) => {
                    resp.node_id = BrokerId(-1);
                    resp.error_code = code.code();
                }
                None => {
                    resp.node_id = BrokerId(-1);
                    resp.error_code = KafkaCode::InvalidRequest.code();
                }
            }
        }
        ResponseKind::FindCoordinator(resp)
    }

    pub async fn join_group(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client_id: String,
        client_host: String,
    ) -> ResponseKind {
        let join = JoinRequest {
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.map(|i| i.to_string()),
            client_id,
            client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: if version >= 1 {
                req.rebalance_timeout_ms
            } else {
                req.session_timeout_ms
            },
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .into_iter()
                .map(|p| (p.name.to_string(), p.metadata))
                .collect(),
            require_known_member_id: version >= 4,
        };
        let r = group::join(&self.router, req.group_id.0.to_string(), join).await;
        let mut resp = JoinGroupResponse::default();
        resp.error_code = r.error.code();
        resp.generation_id = r.generation;
        if version >= 7 {
            resp.protocol_type = opt(r.protocol_type);
        }
        resp.protocol_name = if version >= 7 {
            opt(r.protocol_name)
        } else {
            Some(s(&r.protocol_name.unwrap_or_default()))
        };
        resp.leader = StrBytes::from_string(r.leader);
        resp.member_id = StrBytes::from_string(r.member_id);
        resp.members = r
            .members
            .into_iter()
            .map(|(id, instance, metadata)| {
                let mut m = JoinGroupResponseMember::default();
                m.member_id = StrBytes::from_string(id);
                if version >= 5 {
                    m.group_instance_id = opt(instance);
                }
                m.metadata = metadata;
                m
            })
            .collect();
        ResponseKind::JoinGroup(resp)
    }

    pub async fn sync_group(&self, req: SyncGroupRequest, version: i16) -> ResponseKind {
        let who = MemberRef {
            generation: req.generation_id,
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.map(|i| i.to_string()),
        };
        let assignments = req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect();
        let r = group::sync(&self.router, req.group_id.0.to_string(), who, assignments).await;
        let mut resp = SyncGroupResponse::default();
        resp.error_code = r.error.code();
        if version >= 5 {
            resp.protocol_type = opt(r.protocol_type);
            resp.protocol_name = opt(r.protocol_name);
        }
        resp.assignment = r.assignment;
        ResponseKind::SyncGroup(resp)
    }

    pub async fn heartbeat(&self, req: HeartbeatRequest) -> ResponseKind {
        let who = MemberRef {
            generation: req.generation_id,
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.map(|i| i.to_string()),
        };
        let code = group::heartbeat(&self.router, req.group_id.0.to_string(), who).await;
        let mut resp = HeartbeatResponse::default();
        resp.error_code = code.code();
        ResponseKind::Heartbeat(resp)
    }

    pub async fn leave_group(&self, req: LeaveGroupRequest, version: i16) -> ResponseKind {
        let leaving: Vec<(String, Option<String>)> = if version >= 3 {
            req.members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(|i| i.to_string()),
                    )
                })
                .collect()
        } else {
            vec![(req.member_id.to_string(), None)]
        };
        let result = group::leave(&self.router, req.group_id.0.to_string(), leaving.clone()).await;
        let mut resp = LeaveGroupResponse::default();
        match result {
            Err(code) => resp.error_code = code.code(),
            Ok(codes) if version >= 3 => {
                resp.members = leaving
                    .into_iter()
                    .zip(codes)
                    .map(|((id, inst), code)| {
                        let mut m = MemberResponse::default();
                        m.member_id = StrBytes::from_string(id);
                        m.group_instance_id = opt(inst);
                        m.error_code = code.code();
                        m
                    })
                    .collect();
            }
            Ok(codes) => resp.error_code = codes.first().copied().unwrap_or(KafkaCode::None).code(),
        }
        ResponseKind::LeaveGroup(resp)
    }

    pub async fn offset_commit(&self, req: OffsetCommitRequest) -> ResponseKind {
        let now = SystemClock.now_ms();
        let who = MemberRef {
            generation: req.generation_id_or_member_epoch,
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.map(|i| i.to_string()),
        };
        let snap = self.router.snapshot();
        let mut layout = Vec::new();
        let mut offsets = Vec::new();
        let mut unknown = Vec::new();
        for t in &req.topics {
            let topic = t.name.0.to_string();
            for p in &t.partitions {
                layout.push((topic.clone(), p.partition_index));
                if snap.partition(&topic, p.partition_index).is_none() {
                    unknown.push(layout.len() - 1);
                    continue;
                }
                offsets.push((
                    (topic.clone(), p.partition_index),
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p
                            .committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                        commit_timestamp: now,
                    },
                ));
            }
        }
        let mut codes = group::commit(&self.router, req.group_id.0.to_string(), who, offsets)
            .await
            .into_iter();
        let mut resp = OffsetCommitResponse::default();
        let mut current: Option<OffsetCommitResponseTopic> = None;
        for (i, (topic, p)) in layout.into_iter().enumerate() {
            let code = if unknown.contains(&i) {
                KafkaCode::UnknownTopicOrPartition
            } else {
                codes.next().unwrap_or(KafkaCode::UnknownServerError)
            };
            if current.as_ref().is_none_or(|c| c.name.0.as_str() != topic) {
                if let Some(c) = current.take() {
                    resp.topics.push(c);
                }
                let mut c = OffsetCommitResponseTopic::default();
                c.name = TopicName(s(&topic));
                current = Some(c);
            }
            let mut pr = OffsetCommitResponsePartition::default();
            pr.partition_index = p;
            pr.error_code = code.code();
            current.as_mut().expect("set above").partitions.push(pr);
        }
        if let Some(c) = current {
            resp.topics.push(c);
        }
        ResponseKind::OffsetCommit(resp)
    }

    pub async fn offset_fetch(&self, req: OffsetFetchRequest, version: i16) -> ResponseKind {
        let mut resp = OffsetFetchResponse::default();
        if version >= 8 {
            for g in req.groups {
                let wanted = g.topics.map(|ts| {
                    ts.iter()
                        .flat_map(|t| {
                            t.partition_indexes
                                .iter()
                                .map(move |p| (t.name.0.to_string(), *p))
                        })
                        .collect::<Vec<_>>()
                });
                let mut rg = OffsetFetchResponseGroup::default();
                rg.group_id = g.group_id.clone();
                match group::fetch_offsets(&self.router, g.group_id.0.to_string(), wanted).await {
                    Err(code) => rg.error_code = code.code(),
                    Ok(found) => {
                        rg.topics = group_by_topic(
                            found,
                            req.require_stable,
                            |t| {
                                let mut r = OffsetFetchResponseTopics::default();
                                r.name = TopicName(s(&t));
                                r
                            },
                            |rt, p, o, code| {
                                let mut pr = OffsetFetchResponsePartitions::default();
                                pr.partition_index = p;
                                pr.error_code = code.code();
                                fill(
                                    &mut pr.committed_offset,
                                    &mut pr.committed_leader_epoch,
                                    &mut pr.metadata,
                                    o,
                                );
                                rt.partitions.push(pr);
                            },
                        )
                    }
                }
                resp.groups.push(rg);
            }
            return ResponseKind::OffsetFetch(resp);
        }
        let wanted = req.topics.map(|ts| {
            ts.iter()
                .flat_map(|t| {
                    t.partition_indexes
                        .iter()
                        .map(move |p| (t.name.0.to_string(), *p))
                })
                .collect::<Vec<_>>()
        });
        match group::fetch_offsets(&self.router, req.group_id.0.to_string(), wanted).await {
            Err(code) => resp.error_code = if version >= 2 { code.code() } else { 0 },
            Ok(found) => {
                resp.topics = group_by_topic(
                    found,
                    version >= 7 && req.require_stable,
                    |t| {
                        let mut r = OffsetFetchResponseTopic::default();
                        r.name = TopicName(s(&t));
                        r
                    },
                    |rt, p, o, code| {
                        let mut pr = OffsetFetchResponsePartition::default();
                        pr.partition_index = p;
                        pr.error_code = code.code();
                        fill(
                            &mut pr.committed_offset,
                            &mut pr.committed_leader_epoch,
                            &mut pr.metadata,
                            o,
                        );
                        rt.partitions.push(pr);
                    },
                )
            }
        }
        ResponseKind::OffsetFetch(resp)
    }

    pub async fn describe_groups(&self, req: DescribeGroupsRequest) -> ResponseKind {
        let mut resp = DescribeGroupsResponse::default();
        for g in req.groups {
            let mut d = DescribedGroup::default();
            d.group_id = g.clone();
            match group::describe(&self.router, g.0.to_string()).await {
                Err(code) => d.error_code = code.code(),
                Ok(desc) => {
                    d.group_state = s(desc.state.name());
                    d.protocol_type = StrBytes::from_string(desc.protocol_type);
                    d.protocol_data = StrBytes::from_string(desc.protocol);
                    d.members = desc
                        .members
                        .into_iter()
                        .map(|(id, inst, client, host, md, asg)| {
                            let mut m = DescribedGroupMember::default();
                            m.member_id = StrBytes::from_string(id);
                            m.group_instance_id = opt(inst);
                            m.client_id = StrBytes::from_string(client);
                            m.client_host = StrBytes::from_string(host);
                            m.member_metadata = md;
                            m.member_assignment = asg;
                            m
                        })
                        .collect();
                }
            }
            resp.groups.push(d);
        }
        ResponseKind::DescribeGroups(resp)
    }

    pub async fn list_groups(&self, req: ListGroupsRequest, version: i16) -> ResponseKind {
        let filter: Vec<String> = if version >= 4 {
            req.states_filter.iter().map(|s| s.to_lowercase()).collect()
        } else {
            Vec::new()
        };
        let mut resp = ListGroupsResponse::default();
        for (id, protocol_type, state) in group::list(&self.router).await {
            if !filter.is_empty() && !filter.contains(&state.to_lowercase()) {
                continue;
            }
            let mut g = ListedGroup::default();
            g.group_id = group_id(&id);
            g.protocol_type = StrBytes::from_string(protocol_type);
            if version >= 4 {
                g.group_state = s(state);
            }
            resp.groups.push(g);
        }
        ResponseKind::ListGroups(resp)
    }

    pub async fn delete_groups(&self, req: DeleteGroupsRequest) -> ResponseKind {
        let mut resp = DeleteGroupsResponse::default();
        for g in req.groups_names {
            let code = group::delete_group(&self.router, g.0.to_string()).await;
            let mut r = DeletableGroupResult::default();
            r.group_id = g;
            r.error_code = code.code();
            resp.results.push(r);
        }
        ResponseKind::DeleteGroups(resp)
    }

    pub async fn offset_delete(&self, req: OffsetDeleteRequest) -> ResponseKind {
        let partitions: Vec<(String, i32)> = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.name.0.to_string(), p.partition_index))
            })
            .collect();
        let mut resp = OffsetDeleteResponse::default();
        match group::delete_offsets(&self.router, req.group_id.0.to_string(), partitions.clone())
            .await
        {
            Err(code) => resp.error_code = code.code(),
            Ok(codes) => {
                for ((topic, p), code) in partitions.into_iter().zip(codes) {
                    if resp
                        .topics
                        .last()
                        .is_none_or(|t: &OffsetDeleteResponseTopic| t.name.0.as_str() != topic)
                    {
                        let mut t = OffsetDeleteResponseTopic::default();
                        t.name = TopicName(s(&topic));
                        resp.topics.push(t);
                    }
                    let mut pr = OffsetDeleteResponsePartition::default();
                    pr.partition_index = p;
                    pr.error_code = code.code();
                    resp.topics
                        .last_mut()
                        .expect("pushed above")
                        .partitions
                        .push(pr);
                }
            }
        }
        ResponseKind::OffsetDelete(resp)
    }
}

/// Offsets not committed read as -1 with no metadata, as Kafka answers.
fn fill(
    offset: &mut i64,
    epoch: &mut i32,
    metadata: &mut Option<StrBytes>,
    o: Option<CommittedOffset>,
) {
    match o {
        Some(o) => {
            *offset = o.offset;
            *epoch = o.leader_epoch;
            *metadata = Some(StrBytes::from_string(o.metadata));
        }
        None => {
            *offset = -1;
            *epoch = -1;
            *metadata = Some(s(""));
        }
    }
}

/// Groups `(topic, partition)` answers by topic, in first-seen order.
/// Groups offsets by topic; with `require_stable`, a partition an open transaction holds an
/// offset for is answered UNSTABLE_OFFSET_COMMIT (the consumer retries) instead.
fn group_by_topic<T>(
    found: Vec<((String, i32), Option<CommittedOffset>, bool)>,
    require_stable: bool,
    new_topic: impl Fn(String) -> T,
    mut add: impl FnMut(&mut T, i32, Option<CommittedOffset>, KafkaCode),
) -> Vec<T> {
    let mut out: Vec<(String, T)> = Vec::new();
    for ((topic, p), o, unstable) in found {
        let (o, code) = if unstable && require_stable {
            (None, KafkaCode::UnstableOffsetCommit)
        } else {
            (o, KafkaCode::None)
        };
        if out.last().is_none_or(|(t, _)| *t != topic) {
            let t = new_topic(topic.clone());
            out.push((topic, t));
        }
        add(&mut out.last_mut().expect("pushed").1, p, o, code);
    }
    out.into_iter().map(|(_, t)| t).collect()
}

/// The KIP-848 consumer group protocol: ConsumerGroupHeartbeat and ConsumerGroupDescribe.
/// Topics travel by id on the wire and by name in the coordinator.
impl Handlers {
    pub async fn consumer_group_heartbeat(
        &self,
        req: ConsumerGroupHeartbeatRequest,
        version: i16,
        client_id: String,
        client_host: String,
    ) -> ResponseKind {
        let group = req.group_id.0.to_string();
        let mut member_id = req.member_id.to_string();
        if version == 0 && member_id.is_empty() && req.member_epoch == group::consumer::JOIN_EPOCH {
            // v0: the coordinator names new members (v1 clients name themselves).
            member_id = uuid::Uuid::new_v4().to_string();
        }
        let reply = if req.subscribed_topic_regex.is_some() {
            group::HeartbeatReply::error(
                KafkaCode::InvalidRequest,
                &member_id,
                "SubscribedTopicRegex is not supported by this broker; subscribe by topic names.",
            )
        } else {
            let hb = self.heartbeat_in_names(req, member_id, client_id, client_host);
            group::consumer_heartbeat(&self.router, group, hb).await
        };
        ResponseKind::ConsumerGroupHeartbeat(self.heartbeat_reply(reply))
    }

    fn heartbeat_in_names(
        &self,
        req: ConsumerGroupHeartbeatRequest,
        member_id: String,
        client_id: String,
        client_host: String,
    ) -> group::Heartbeat {
        let snap = self.router.snapshot();
        let name_of: std::collections::HashMap<uuid::Uuid, &str> = snap
            .topics
            .values()
            .map(|t| (uuid::Uuid::from_bytes(t.topic_id), t.name.as_str()))
            .collect();
        let owned = req.topic_partitions.map(|tps| {
            let mut a = group::assignor::Assignment::new();
            for tp in tps {
                // A topic deleted meanwhile is simply no longer owned.
                if let Some(name) = name_of.get(&tp.topic_id) {
                    a.entry(name.to_string())
                        .or_default()
                        .extend(tp.partitions.iter().copied());
                }
            }
            a
        });
        group::Heartbeat {
            member_id,
            member_epoch: req.member_epoch,
            instance_id: req.instance_id.map(|i| i.to_string()),
            rack_id: req.rack_id.map(|r| r.to_string()),
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            subscribed: req
                .subscribed_topic_names
                .map(|ts| ts.iter().map(|t| t.0.to_string()).collect()),
            server_assignor: req.server_assignor.map(|a| a.to_string()),
            owned,
            client_id,
            client_host,
        }
    }

    fn heartbeat_reply(&self, reply: group::HeartbeatReply) -> ConsumerGroupHeartbeatResponse {
        let mut resp = ConsumerGroupHeartbeatResponse::default();
        resp.error_code = reply.error.code();
        resp.error_message = opt(reply.message);
        resp.member_id = Some(StrBytes::from_string(reply.member_id));
        resp.member_epoch = reply.member_epoch;
        resp.heartbeat_interval_ms = reply.heartbeat_interval_ms;
        resp.assignment = reply.assignment.map(|a| {
            let mut out = consumer_group_heartbeat_response::Assignment::default();
            out.topic_partitions = self
                .topic_ids(&a)
                .into_iter()
                .map(|(id, _, ps)| {
                    let mut tp = consumer_group_heartbeat_response::TopicPartitions::default();
                    tp.topic_id = id;
                    tp.partitions = ps;
                    tp
                })
                .collect();
            out
        });
        resp
    }

    /// `(topic id, name, partitions)` of an assignment; topics gone from the metadata are left
    /// out.
    fn topic_ids(&self, a: &group::assignor::Assignment) -> Vec<(uuid::Uuid, String, Vec<i32>)> {
        let snap = self.router.snapshot();
        a.iter()
            .filter_map(|(name, ps)| {
                let t = snap.topics.get(name)?;
                Some((
                    uuid::Uuid::from_bytes(t.topic_id),
                    name.clone(),
                    ps.iter().copied().collect(),
                ))
            })
            .collect()
    }

    pub async fn consumer_group_describe(
        &self,
        req: ConsumerGroupDescribeRequest,
        version: i16,
    ) -> ResponseKind {
        let mut resp = ConsumerGroupDescribeResponse::default();
        for id in req.group_ids {
            let name = id.0.to_string();
            let mut d = consumer_group_describe_response::DescribedGroup::default();
            d.group_id = id;
            d.authorized_operations = i32::MIN;
            match group::consumer_describe(&self.router, name.clone()).await {
                Ok(g) => self.describe_consumer_group(&mut d, &g, version),
                Err(code) => {
                    d.error_code = code.code();
                    if code == KafkaCode::GroupIdNotFound {
                        d.error_message = Some(s(&format!("Group {name} not found.")));
                    }
                }
            }
            resp.groups.push(d);
        }
        ResponseKind::ConsumerGroupDescribe(resp)
    }

    fn describe_consumer_group(
        &self,
        d: &mut consumer_group_describe_response::DescribedGroup,
        g: &group::ConsumerGroup,
        version: i16,
    ) {
        d.group_state = s(g.state().name());
        d.group_epoch = g.group_epoch;
        d.assignment_epoch = g.assignment_epoch;
        d.assignor_name = s(&g.assignor);
        let assignment = |a: &group::assignor::Assignment| {
            let mut out = consumer_group_describe_response::Assignment::default();
            out.topic_partitions = self
                .topic_ids(a)
                .into_iter()
                .map(|(id, name, ps)| {
                    let mut tp = consumer_group_describe_response::TopicPartitions::default();
                    tp.topic_id = id;
                    tp.topic_name = TopicName(StrBytes::from_string(name));
                    tp.partitions = ps;
                    tp
                })
                .collect();
            out
        };
        let empty = group::assignor::Assignment::new();
        d.members = g
            .members
            .values()
            .map(|m| {
                let mut out = consumer_group_describe_response::Member::default();
                out.member_id = s(&m.id);
                out.instance_id = opt(m.instance_id.clone());
                out.rack_id = opt(m.rack_id.clone());
                out.member_epoch = m.member_epoch;
                out.client_id = s(&m.client_id);
                out.client_host = s(&m.client_host);
                out.subscribed_topic_names = m.subscribed.iter().map(|t| TopicName(s(t))).collect();
                out.assignment = assignment(&m.assigned);
                out.target_assignment = assignment(g.target.get(&m.id).unwrap_or(&empty));
                if version >= 1 {
                    out.member_type = 1; // a consumer-protocol member (0 would be classic)
                }
                out
            })
            .collect();
    }
}

/// The broker leading the partition of `topic` that coordinates `key` (Kafka's placement of
/// groups and transactional ids), or COORDINATOR_NOT_AVAILABLE while it has no leader.
fn coordinator_of<'a>(
    snap: &'a ClusterSnapshot,
    topic: &str,
    key: &str,
) -> Result<&'a BrokerInfo, KafkaCode> {
    let partitions = snap
        .topics
        .get(topic)
        .map_or(0, |t| t.partitions.len() as i32);
    if partitions == 0 {
        return Err(KafkaCode::CoordinatorNotAvailable);
    }
    let p = group::records::partition_for(key, partitions);
    let leader = snap.partition(topic, p).map_or(-1, |info| info.leader);
    snap.brokers
        .iter()
        .find(|b| b.node_id == leader)
        .ok_or(KafkaCode::CoordinatorNotAvailable)
}
