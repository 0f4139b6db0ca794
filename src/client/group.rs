//! Consumer-group membership for the client (Kafka's classic protocol, protocol type
//! `consumer`, the `range` assignor): find the coordinator, join (with the KIP-394 member-id
//! round trip), compute the assignment when elected leader, sync, heartbeat in the
//! background, commit and fetch offsets, leave. It does not fetch records: the caller hands
//! the assignment to a [`super::Consumer`] and seeks it to the committed offsets.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::cluster::Client;
use super::conn::Connection;
use super::error::{ClientError, KafkaApiError};
use crate::base::TopicPartition;
use crate::runtime::{self, Task};

const MEMBER_ID_REQUIRED: i16 = 79;
const REBALANCE_IN_PROGRESS: i16 = 27;
const ASSIGNOR: &str = "range";

/// Membership settings (the Java client's names).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub group_id: String,
    /// `group.instance.id` (static membership).
    pub instance_id: Option<String>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
}

impl GroupConfig {
    pub fn new(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            instance_id: None,
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
        }
    }
}

/// A member of one consumer group.
pub struct GroupMember {
    client: Client,
    config: GroupConfig,
    topics: Vec<String>,
    member_id: String,
    generation: i32,
    coordinator: Option<Connection>,
    rejoin: Rc<Cell<bool>>,
    heartbeat: Option<Task<()>>,
}

fn api_error(code: i16, what: &str) -> ClientError {
    ClientError::Kafka(KafkaApiError::new(code, None, what.to_owned()))
}

impl GroupMember {
    pub fn new(client: Client, config: GroupConfig, topics: Vec<String>) -> Self {
        Self {
            client,
            config,
            topics,
            member_id: String::new(),
            generation: -1,
            coordinator: None,
            rejoin: Rc::new(Cell::new(true)),
            heartbeat: None,
        }
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// Whether the group is rebalancing (or the member fell out) and `join` must run again.
    pub fn needs_rejoin(&self) -> bool {
        self.rejoin.get()
    }

    async fn coordinator(&mut self) -> Result<Connection, ClientError> {
        if let Some(c) = &self.coordinator {
            if !c.is_broken() {
                return Ok(c.clone());
            }
        }
        let group = self.config.group_id.clone();
        let client = self.client.clone();
        let node = self
            .client
            .retry(|| {
                let (client, group) = (client.clone(), group.clone());
                async move { find_coordinator(&client, &group).await }
            })
            .await?;
        let conn = self.client.node_conn(node).await?;
        self.coordinator = Some(conn.clone());
        Ok(conn)
    }

    /// Joins (or rejoins) the group and returns this member's partitions.
    pub async fn join(&mut self) -> Result<Vec<TopicPartition>, ClientError> {
        self.heartbeat = None;
        loop {
            let conn = self.coordinator().await?;
            let joined = self.join_once(&conn).await?;
            match joined.error_code {
                0 => {}
                MEMBER_ID_REQUIRED => {
                    self.member_id = joined.member_id.to_string();
                    continue;
                }
                REBALANCE_IN_PROGRESS => continue,
                25 | 22 => {
                    // Unknown member or stale generation: start over as a new member.
                    self.member_id.clear();
                    self.generation = -1;
                    continue;
                }
                14..=16 => {
                    self.coordinator = None;
                    runtime::sleep(self.client.config().retry_backoff).await;
                    continue;
                }
                code => {
                    return Err(api_error(
                        code,
                        &format!("joining group '{}'", self.config.group_id),
                    ))
                }
            }
            self.member_id = joined.member_id.to_string();
            self.generation = joined.generation_id;
            let assignments = if joined.leader == joined.member_id {
                self.assign(&joined).await?
            } else {
                Vec::new()
            };
            let synced = self.sync(&conn, assignments).await?;
            match synced.error_code {
                0 => {}
                REBALANCE_IN_PROGRESS | 22 => continue,
                25 => {
                    self.member_id.clear();
                    continue;
                }
                code => {
                    return Err(api_error(
                        code,
                        &format!("syncing group '{}'", self.config.group_id),
                    ))
                }
            }
            self.rejoin.set(false);
            self.start_heartbeat(conn);
            return Ok(decode_assignment(&synced.assignment));
        }
    }

    async fn join_once(&self, conn: &Connection) -> Result<JoinGroupResponse, ClientError> {
        let mut req = JoinGroupRequest::default();
        req.group_id = GroupId(StrBytes::from_string(self.config.group_id.clone()));
        req.session_timeout_ms = self.config.session_timeout.as_millis() as i32;
        req.rebalance_timeout_ms = self.config.rebalance_timeout.as_millis() as i32;
        req.member_id = StrBytes::from_string(self.member_id.clone());
        req.group_instance_id = self.config.instance_id.clone().map(StrBytes::from_string);
        req.protocol_type = StrBytes::from_static_str("consumer");
        let mut p = JoinGroupRequestProtocol::default();
        p.name = StrBytes::from_static_str(ASSIGNOR);
        p.metadata = encode_subscription(&self.topics);
        req.protocols = vec![p];
        let version = conn.version(ApiKey::JoinGroup)?;
        // A join waits for the whole group to rejoin: allow the rebalance timeout.
        let timeout = self.config.rebalance_timeout + Duration::from_secs(5);
        conn.send_at(&req, version, timeout).await?.await
    }

    /// The leader's job: spread each topic's partitions over its subscribers (range).
    async fn assign(
        &self,
        joined: &JoinGroupResponse,
    ) -> Result<Vec<(String, Bytes)>, ClientError> {
        let mut subscriptions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in &joined.members {
            subscriptions.insert(m.member_id.to_string(), decode_subscription(&m.metadata));
        }
        let mut counts = HashMap::new();
        for topic in subscriptions.values().flatten() {
            if !counts.contains_key(topic) {
                let info = self.client.retry(|| self.client.topic(topic)).await?;
                counts.insert(topic.clone(), info.partitions.len() as i32);
            }
        }
        Ok(range_assign(&subscriptions, &counts)
            .into_iter()
            .map(|(member, parts)| (member, encode_assignment(&parts)))
            .collect())
    }

    async fn sync(
        &self,
        conn: &Connection,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<SyncGroupResponse, ClientError> {
        let mut req = SyncGroupRequest::default();
        req.group_id = GroupId(StrBytes::from_string(self.config.group_id.clone()));
        req.generation_id = self.generation;
        req.member_id = StrBytes::from_string(self.member_id.clone());
        req.group_instance_id = self.config.instance_id.clone().map(StrBytes::from_string);
        req.protocol_type = Some(StrBytes::from_static_str("consumer"));
        req.protocol_name = Some(StrBytes::from_static_str(ASSIGNOR));
        req.assignments = assignments
            .into_iter()
            .map(|(m, a)| {
                let mut s = SyncGroupRequestAssignment::default();
                s.member_id = StrBytes::from_string(m);
                s.assignment = a;
                s
            })
            .collect();
        let version = conn.version(ApiKey::SyncGroup)?;
        let timeout = self.config.rebalance_timeout + Duration::from_secs(5);
        let mut resp = conn.send_at(&req, version, timeout).await?.await?;
        if version < 5 {
            resp.protocol_name = None;
        }
        Ok(resp)
    }

    fn start_heartbeat(&mut self, conn: Connection) {
        let mut req = HeartbeatRequest::default();
        req.group_id = GroupId(StrBytes::from_string(self.config.group_id.clone()));
        req.generation_id = self.generation;
        req.member_id = StrBytes::from_string(self.member_id.clone());
        req.group_instance_id = self.config.instance_id.clone().map(StrBytes::from_string);
        let rejoin = self.rejoin.clone();
        let every = self.config.heartbeat_interval;
        self.heartbeat = Some(runtime::spawn(async move {
            loop {
                runtime::sleep(every).await;
                match conn.request(&req).await {
                    Ok(r) if r.error_code == 0 => {}
                    _ => {
                        rejoin.set(true);
                        return;
                    }
                }
            }
        }));
    }

    /// Commits `offsets` (the next offset to read, per partition) for this generation.
    pub async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<(), ClientError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut req = OffsetCommitRequest::default();
        req.group_id = GroupId(StrBytes::from_string(self.config.group_id.clone()));
        req.generation_id_or_member_epoch = self.generation;
        req.member_id = StrBytes::from_string(self.member_id.clone());
        req.group_instance_id = self.config.instance_id.clone().map(StrBytes::from_string);
        req.topics = commit_topics(offsets);
        let conn = self.coordinator().await?;
        let resp = conn.request(&req).await?;
        for t in resp.topics {
            for p in t.partitions {
                if p.error_code == REBALANCE_IN_PROGRESS || p.error_code == 22 || p.error_code == 25
                {
                    self.rejoin.set(true);
                }
                if p.error_code != 0 {
                    return Err(api_error(
                        p.error_code,
                        &format!("committing {}-{}", t.name.0, p.partition_index),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The committed offset of each partition that has one.
    pub async fn committed(
        &mut self,
        tps: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>, ClientError> {
        let conn = self.coordinator().await?;
        fetch_committed(&conn, &self.config.group_id, Some(tps)).await
    }

    /// Leaves the group so its partitions move at once rather than after the session timeout.
    pub async fn leave(&mut self) {
        self.heartbeat = None;
        if self.member_id.is_empty() || self.config.instance_id.is_some() {
            return;
        }
        let Some(conn) = self.coordinator.clone() else {
            return;
        };
        let mut req = LeaveGroupRequest::default();
        req.group_id = GroupId(StrBytes::from_string(self.config.group_id.clone()));
        req.member_id = StrBytes::from_string(self.member_id.clone());
        let mut m = kafka_protocol::messages::leave_group_request::MemberIdentity::default();
        m.member_id = req.member_id.clone();
        req.members = vec![m];
        let version = conn.version(ApiKey::LeaveGroup).unwrap_or(0);
        if version < 3 {
            req.members.clear();
        } else {
            req.member_id = StrBytes::default();
        }
        let _ = conn.request_at(&req, version).await;
    }
}

/// The node coordinating `group`.
pub async fn find_coordinator(client: &Client, group: &str) -> Result<i32, ClientError> {
    find_coordinator_of(client, group, 0).await
}

/// The node coordinating `key`: a group (`key_type` 0) or a transactional id (1).
pub async fn find_coordinator_of(
    client: &Client,
    key: &str,
    key_type: i8,
) -> Result<i32, ClientError> {
    let group = key;
    let conn = client.any_conn().await?;
    let version = conn.version(ApiKey::FindCoordinator)?;
    let mut req = FindCoordinatorRequest::default();
    req.key_type = key_type;
    if version >= 4 {
        req.coordinator_keys = vec![StrBytes::from_string(group.to_owned())];
    } else {
        req.key = StrBytes::from_string(group.to_owned());
    }
    let resp = conn.request_at(&req, version).await?;
    let (code, node) = match resp.coordinators.first() {
        Some(c) if version >= 4 => (c.error_code, c.node_id.0),
        _ => (resp.error_code, resp.node_id.0),
    };
    if code != 0 {
        return Err(api_error(
            code,
            &format!("finding the coordinator of '{group}'"),
        ));
    }
    Ok(node)
}

/// Committed offsets of `group` for `tps`, or for every partition when `tps` is `None`
/// (partitions with none are left out).
pub async fn fetch_committed(
    conn: &Connection,
    group: &str,
    tps: Option<&[TopicPartition]>,
) -> Result<HashMap<TopicPartition, i64>, ClientError> {
    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_owned()));
    req.topics = tps.map(|tps| {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in tps {
            by_topic
                .entry(tp.topic.as_str())
                .or_default()
                .push(tp.partition);
        }
        by_topic
            .into_iter()
            .map(|(t, ps)| {
                let mut r = OffsetFetchRequestTopic::default();
                r.name = TopicName(StrBytes::from_string(t.to_owned()));
                r.partition_indexes = ps;
                r
            })
            .collect()
    });
    // v8+ batches groups in another layout; v7 is enough for one group, and "every
    // partition" (null topics) needs v2+.
    let version = conn.version(ApiKey::OffsetFetch)?.clamp(2, 7);
    let resp = conn.request_at(&req, version).await?;
    if resp.error_code != 0 {
        return Err(api_error(
            resp.error_code,
            &format!("fetching offsets of group '{group}'"),
        ));
    }
    let mut out = HashMap::new();
    for t in resp.topics {
        for p in t.partitions {
            if p.error_code == 0 && p.committed_offset >= 0 {
                out.insert(
                    TopicPartition::new(t.name.0.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    Ok(out)
}

/// OffsetCommit topics for `offsets`, grouped by topic.
pub fn commit_topics(offsets: &[(TopicPartition, i64)]) -> Vec<OffsetCommitRequestTopic> {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (tp, offset) in offsets {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = tp.partition;
        p.committed_offset = *offset;
        p.committed_metadata = Some(StrBytes::from_static_str(""));
        by_topic.entry(tp.topic.as_str()).or_default().push(p);
    }
    by_topic
        .into_iter()
        .map(|(t, ps)| {
            let mut r = OffsetCommitRequestTopic::default();
            r.name = TopicName(StrBytes::from_string(t.to_owned()));
            r.partitions = ps;
            r
        })
        .collect()
}

/// The range assignor: per topic, sorted partitions split over the sorted subscribers, the
/// first `count % members` getting one extra.
pub fn range_assign(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partitions: &HashMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut out: BTreeMap<String, Vec<TopicPartition>> = subscriptions
        .keys()
        .map(|m| (m.clone(), Vec::new()))
        .collect();
    let mut topics: Vec<&String> = subscriptions.values().flatten().collect();
    topics.sort();
    topics.dedup();
    for topic in topics {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, ts)| ts.contains(topic))
            .map(|(m, _)| m)
            .collect();
        let count = partitions.get(topic).copied().unwrap_or(0).max(0);
        let (each, extra) = (count / members.len() as i32, count % members.len() as i32);
        let mut next = 0;
        for (i, m) in members.iter().enumerate() {
            let n = each + i32::from((i as i32) < extra);
            for p in next..next + n {
                out.get_mut(*m)
                    .expect("listed")
                    .push(TopicPartition::new(topic.clone(), p));
            }
            next += n;
        }
    }
    out
}

/// Subscription metadata, consumer protocol v0 (version prefix, then the struct).
pub fn encode_subscription(topics: &[String]) -> Bytes {
    let mut s = ConsumerProtocolSubscription::default();
    s.topics = topics
        .iter()
        .map(|t| StrBytes::from_string(t.clone()))
        .collect();
    let mut b = BytesMut::new();
    b.put_i16(0);
    s.encode(&mut b, 0).expect("v0 subscription encodes");
    b.freeze()
}

pub fn decode_subscription(metadata: &Bytes) -> Vec<String> {
    let mut b = metadata.clone();
    if b.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([b[0], b[1]]).clamp(0, 3);
    bytes::Buf::advance(&mut b, 2);
    ConsumerProtocolSubscription::decode(&mut b, version)
        .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

pub fn encode_assignment(parts: &[TopicPartition]) -> Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in parts {
        by_topic
            .entry(tp.topic.as_str())
            .or_default()
            .push(tp.partition);
    }
    let mut a = ConsumerProtocolAssignment::default();
    a.assigned_partitions = by_topic
        .into_iter()
        .map(|(t, ps)| {
            let mut x = AssignedPartitions::default();
            x.topic = TopicName(StrBytes::from_string(t.to_owned()));
            x.partitions = ps;
            x
        })
        .collect();
    let mut b = BytesMut::new();
    b.put_i16(0);
    a.encode(&mut b, 0).expect("v0 assignment encodes");
    b.freeze()
}

pub fn decode_assignment(bytes: &Bytes) -> Vec<TopicPartition> {
    let mut b = bytes.clone();
    if b.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([b[0], b[1]]).clamp(0, 3);
    bytes::Buf::advance(&mut b, 2);
    ConsumerProtocolAssignment::decode(&mut b, version)
        .map(|a| {
            a.assigned_partitions
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(move |p| TopicPartition::new(t.topic.0.to_string(), *p))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_gives_extra_partitions_to_the_first_members() {
        let mut subs = BTreeMap::new();
        subs.insert("a".to_string(), vec!["t".to_string()]);
        subs.insert("b".to_string(), vec!["t".to_string()]);
        subs.insert("c".to_string(), vec!["t".to_string(), "u".to_string()]);
        let counts: HashMap<String, i32> = [("t".to_string(), 5), ("u".to_string(), 2)]
            .into_iter()
            .collect();
        let out = range_assign(&subs, &counts);
        let parts = |m: &str| {
            out[m]
                .iter()
                .map(|tp| (tp.topic.clone(), tp.partition))
                .collect::<Vec<_>>()
        };
        assert_eq!(parts("a"), vec![("t".into(), 0), ("t".into(), 1)]);
        assert_eq!(parts("b"), vec![("t".into(), 2), ("t".into(), 3)]);
        assert_eq!(
            parts("c"),
            vec![("t".into(), 4), ("u".into(), 0), ("u".into(), 1)]
        );
    }

    #[test]
    fn more_members_than_partitions_leaves_some_idle() {
        let subs: BTreeMap<String, Vec<String>> = (0..4)
            .map(|i| (format!("m{i}"), vec!["t".to_string()]))
            .collect();
        let counts: HashMap<String, i32> = [("t".to_string(), 3)].into_iter().collect();
        let out = range_assign(&subs, &counts);
        assert_eq!(out.values().filter(|v| v.is_empty()).count(), 1);
        assert_eq!(out.values().map(Vec::len).sum::<usize>(), 3);
    }

    #[test]
    fn subscription_and_assignment_round_trip() {
        let topics = vec!["a".to_string(), "b".to_string()];
        assert_eq!(decode_subscription(&encode_subscription(&topics)), topics);
        let parts = vec![
            TopicPartition::new("a", 0),
            TopicPartition::new("a", 2),
            TopicPartition::new("b", 1),
        ];
        assert_eq!(decode_assignment(&encode_assignment(&parts)), parts);
        assert!(decode_assignment(&Bytes::new()).is_empty());
    }
}
