//! One handler per API: each turns a decoded request into a response body, asking the router
//! for partition work and metadata. Error codes are mapped here, at the protocol edge.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::base::limits::MAX_FETCH_WAIT_MS;
use crate::base::{KafkaCode, KafkaError, Records, TopicPartition};
use crate::controller::{ClusterSnapshot, NewTopic, PartitionInfo, TopicInfo};
use crate::partition::Isolation;
use crate::protocol::codec;
use crate::protocol::pieces::FetchAnswer;
use crate::router::Router;
use crate::runtime;
use crate::shard::{FetchPart, OffsetQuery, Origin, ProducePart};

/// Settings the handlers need.
#[derive(Debug, Clone)]
pub struct HandlerSettings {
    pub auto_create_topics: bool,
    pub default_partitions: i32,
    pub default_replication_factor: i16,
    /// The broker's log settings (every topic config's default), for DescribeConfigs.
    pub log: crate::config::LogSettings,
    /// The broker's `fetch.max.bytes`: no fetch answer carries more record bytes, whatever
    /// the request asks (the first batch excepted, as in Kafka).
    pub fetch_max_bytes: usize,
    /// The replication throttle's rates (IncrementalAlterConfigs on this broker sets them).
    pub throttle_rates: std::sync::Arc<crate::replication::throttle::ThrottleRates>,
}

pub struct Handlers {
    pub router: Rc<Router>,
    pub settings: HandlerSettings,
    pub groups: crate::group::GroupSettings,
    pub txn: crate::txn::TxnSettings,
}

/// A response to send, or none (acks=0 produce).
pub type Reply = Option<ResponseKind>;

/// How long an acks=all produce may wait for its acknowledgement (`timeout_ms`). Kafka's
/// timeout covers the wait for the in-sync replicas, so acks=1 and acks=0 answer regardless;
/// 0 or less means no wait bound.
fn produce_timeout(acks: i16, timeout_ms: i32) -> Option<Duration> {
    (acks == -1 && timeout_ms > 0).then(|| Duration::from_millis(timeout_ms as u64))
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn uuid_of(id: &[u8; 16]) -> uuid::Uuid {
    uuid::Uuid::from_bytes(*id)
}

fn message(e: &KafkaError) -> Option<StrBytes> {
    (!e.message.is_empty()).then(|| StrBytes::from_string(e.message.clone()))
}

impl Handlers {
    pub fn api_versions(&self) -> ResponseKind {
        ResponseKind::ApiVersions(codec::api_versions_response(KafkaCode::None))
    }

    /// Creates the named topics with broker defaults (auto-creation); errors are ignored
    /// because the caller reports the topic's state from the snapshot afterwards.
    async fn auto_create(&self, names: Vec<String>) {
        let topics = names
            .into_iter()
            .filter(|n| crate::controller::validate_topic_name(n).is_ok())
            .map(|n| NewTopic {
                name: n,
                num_partitions: self.settings.default_partitions,
                replication_factor: self.settings.default_replication_factor,
                configs: BTreeMap::new(),
                assignments: Vec::new(),
            })
            .collect::<Vec<_>>();
        if !topics.is_empty() {
            self.router.create_topics(topics, false).await;
        }
    }

    pub async fn metadata(&self, req: MetadataRequest, version: i16) -> ResponseKind {
        let requested: Option<Vec<String>> = match &req.topics {
            None => None,
            Some(t) if t.is_empty() && version == 0 => None,
            Some(t) => Some(
                t.iter()
                    .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                    .collect(),
            ),
        };
        let allow_auto =
            self.settings.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
        if let (Some(names), true) = (&requested, allow_auto) {
            let snap = self.router.snapshot();
            let missing: Vec<String> = names
                .iter()
                .filter(|n| !snap.topics.contains_key(*n))
                .cloned()
                .collect();
            if !missing.is_empty() {
                self.auto_create(missing).await;
            }
        }
        let snap = self.router.snapshot();
        let mut resp = MetadataResponse::default();
        resp.brokers = snap
            .live_brokers()
            .map(|b| {
                let mut mb = MetadataResponseBroker::default();
                mb.node_id = BrokerId(b.node_id);
                mb.host = StrBytes::from_string(b.host.clone());
                mb.port = b.port;
                mb.rack = b.rack.clone().map(StrBytes::from_string);
                mb
            })
            .collect();
        resp.cluster_id = Some(StrBytes::from_string(snap.cluster_id.clone()));
        resp.controller_id = BrokerId(metadata_controller_id(&snap));
        resp.cluster_authorized_operations = i32::MIN;
        resp.topics = match requested {
            None => snap
                .topics
                .values()
                .map(|t| metadata_topic(&snap, t))
                .collect(),
            Some(names) => names
                .iter()
                .map(|n| metadata_topic_named(&snap, n))
                .collect(),
        };
        ResponseKind::Metadata(resp)
    }

    /// DescribeCluster: the alive brokers, and (v2, when asked) the fenced ones flagged.
    pub fn describe_cluster(&self, req: &DescribeClusterRequest) -> ResponseKind {
        let snap = self.router.snapshot();
        let mut resp = DescribeClusterResponse::default();
        resp.cluster_id = StrBytes::from_string(snap.cluster_id.clone());
        resp.controller_id = BrokerId(snap.controller_id);
        resp.endpoint_type = 1;
        resp.cluster_authorized_operations = i32::MIN;
        resp.brokers = snap
            .brokers
            .iter()
            .filter(|b| !b.fenced || req.include_fenced_brokers)
            .map(|b| {
                let mut d = DescribeClusterBroker::default();
                d.is_fenced = b.fenced;
                d.broker_id = BrokerId(b.node_id);
                d.host = StrBytes::from_string(b.host.clone());
                d.port = b.port;
                d.rack = b.rack.clone().map(StrBytes::from_string);
                d
            })
            .collect();
        ResponseKind::DescribeCluster(resp)
    }

    /// UnregisterBroker: the controller removes the broker's registration (its replicas
    /// stay assigned, offline); BROKER_ID_NOT_REGISTERED for an unknown id.
    pub async fn unregister_broker(&self, req: UnregisterBrokerRequest) -> ResponseKind {
        let mut resp = UnregisterBrokerResponse::default();
        if let Err(e) = self.router.unregister_broker(req.broker_id.0).await {
            resp.error_code = e.code.code();
            resp.error_message = message(&e);
        }
        ResponseKind::UnregisterBroker(resp)
    }

    /// Stage one of a produce (appends done in order); the returned future builds the reply,
    /// or a reason to close the connection (a failed acks=0 produce).
    pub async fn produce(
        &self,
        req: ProduceRequest,
    ) -> LocalBoxFuture<'static, Result<Reply, String>> {
        let acks = req.acks;
        let shape: Vec<(String, Vec<i32>)> = req
            .topic_data
            .iter()
            .map(|t| {
                (
                    t.name.0.to_string(),
                    t.partition_data.iter().map(|p| p.index).collect(),
                )
            })
            .collect();
        if !matches!(acks, -1..=1) {
            let err = KafkaError::new(KafkaCode::InvalidRequiredAcks, "");
            return Box::pin(
                async move { Ok(Some(produce_response(&shape, |_| Err(err.clone())))) },
            );
        }
        if self.settings.auto_create_topics {
            let snap = self.router.snapshot();
            let missing: Vec<String> = shape
                .iter()
                .map(|(t, _)| t.clone())
                .filter(|t| !snap.topics.contains_key(t))
                .collect();
            if !missing.is_empty() {
                self.auto_create(missing).await;
            }
        }
        let snap = self.router.snapshot();
        let mut parts = Vec::new();
        let mut early: BTreeMap<(String, i32), KafkaError> = BTreeMap::new();
        for t in req.topic_data {
            let topic = t.name.0.to_string();
            let valid = crate::controller::validate_topic_name(&topic);
            for p in t.partition_data {
                if let Err(e) = &valid {
                    early.insert((topic.clone(), p.index), e.clone());
                    continue;
                }
                if snap.partition(&topic, p.index).is_none() {
                    early.insert(
                        (topic.clone(), p.index),
                        KafkaCode::UnknownTopicOrPartition.into(),
                    );
                    continue;
                }
                match p.records {
                    Some(records) => parts.push(ProducePart {
                        tp: TopicPartition::new(topic.clone(), p.index),
                        records,
                        origin: Origin::Client,
                    }),
                    None => {
                        early.insert(
                            (topic.clone(), p.index),
                            KafkaError::new(KafkaCode::CorruptMessage, "no records"),
                        );
                    }
                }
            }
        }
        let keys: Vec<(String, i32)> = parts
            .iter()
            .map(|p| (p.tp.topic.clone(), p.tp.partition))
            .collect();
        let done = self.router.submit_produce(parts, acks).await;
        let timeout = produce_timeout(acks, req.timeout_ms);
        Box::pin(async move {
            let outcomes = match timeout {
                Some(t) => runtime::timeout(t, done).await,
                None => Some(done.await),
            };
            let Some(outcomes) = outcomes else {
                let err = KafkaError::new(
                    KafkaCode::RequestTimedOut,
                    "the produce was not acknowledged within its timeout_ms",
                );
                return Ok(Some(produce_response(&shape, |k| {
                    Err(early.get(k).cloned().unwrap_or_else(|| err.clone()))
                })));
            };
            if acks == 0 {
                let failed = !early.is_empty() || outcomes.iter().any(|o| o.error.is_some());
                // Kafka closes an acks=0 producer's connection on an error: with no answer
                // to read, the closed socket is how the client learns to refresh metadata.
                return if failed {
                    Err("an acks=0 produce failed".to_owned())
                } else {
                    Ok(None)
                };
            }
            let mut by_key: BTreeMap<(String, i32), Result<Produced, KafkaError>> =
                early.into_iter().map(|(k, e)| (k, Err(e))).collect();
            for (k, o) in keys.into_iter().zip(outcomes) {
                let r = match o.error {
                    Some(e) => Err(e),
                    None => Ok(Produced {
                        base_offset: o.base_offset,
                        log_start_offset: o.log_start_offset,
                        log_append_time_ms: o.log_append_time_ms,
                    }),
                };
                by_key.insert(k, r);
            }
            Ok(Some(produce_response(&shape, |k| {
                by_key
                    .get(k)
                    .cloned()
                    .unwrap_or(Err(KafkaCode::UnknownServerError.into()))
            })))
        })
    }

    /// Fetch: the response with its record sets beside it (see `protocol::pieces`).
    pub async fn fetch(&self, req: FetchRequest, version: i16) -> FetchAnswer {
        let snap = self.router.snapshot();
        let asked = if req.max_bytes <= 0 {
            usize::MAX
        } else {
            req.max_bytes as usize
        };
        let total_max = asked.min(self.settings.fetch_max_bytes);
        let isolation = Isolation::from_wire(req.isolation_level);
        let mut layout: Vec<(String, uuid::Uuid, Vec<i32>)> = Vec::new();
        let mut parts = Vec::new();
        for t in &req.topics {
            let topic = if version >= 13 {
                snap.topic_by_id(t.topic_id.as_bytes())
                    .map(|i| i.name.clone())
                    .unwrap_or_default()
            } else {
                t.topic.0.to_string()
            };
            let mut idx = Vec::new();
            for p in &t.partitions {
                idx.push(p.partition);
                parts.push(FetchPart {
                    tp: TopicPartition::new(topic.clone(), p.partition),
                    offset: p.fetch_offset,
                    max_bytes: (p.partition_max_bytes.max(0) as usize).min(total_max),
                    isolation,
                    replica_id: req.replica_id.0,
                });
            }
            layout.push((topic, t.topic_id, idx));
        }
        let max_wait =
            Duration::from_millis(req.max_wait_ms.clamp(0, MAX_FETCH_WAIT_MS as i32) as u64);
        let mut results = self
            .router
            .fetch(parts, req.min_bytes.max(0) as usize, max_wait)
            .await;
        // The whole response stays within max_bytes, though the first batch always goes out.
        let mut budget = total_max;
        let mut first = true;
        for r in results.iter_mut() {
            let len = r.records.len();
            if len > budget && !first {
                r.records = Records::new();
                continue;
            }
            if len > 0 {
                first = false;
            }
            budget = budget.saturating_sub(len);
        }
        let mut resp = FetchResponse::default();
        resp.session_id = 0;
        let mut records = Vec::with_capacity(results.len());
        let mut it = results.into_iter();
        for (topic, topic_id, idx) in layout {
            let mut tr = FetchableTopicResponse::default();
            tr.topic = name(&topic);
            tr.topic_id = topic_id;
            for p in idx {
                let r = it.next().expect("one result per part");
                let mut pd = fetch_response::PartitionData::default();
                pd.partition_index = p;
                pd.error_code = r.error.as_ref().map_or(0, |e| e.code.code());
                pd.high_watermark = r.high_watermark;
                pd.last_stable_offset = r.last_stable_offset;
                pd.log_start_offset = r.log_start_offset;
                pd.aborted_transactions = r.aborted.map(|list| {
                    list.iter()
                        .map(|t| {
                            let mut a = fetch_response::AbortedTransaction::default();
                            a.producer_id = ProducerId(t.producer_id);
                            a.first_offset = t.first_offset;
                            a
                        })
                        .collect()
                });
                pd.preferred_read_replica = BrokerId(-1);
                records.push(r.records);
                tr.partitions.push(pd);
            }
            resp.responses.push(tr);
        }
        FetchAnswer {
            response: resp,
            records,
        }
    }

    pub async fn list_offsets(&self, req: ListOffsetsRequest, version: i16) -> ResponseKind {
        let mut queries = Vec::new();
        let mut layout = Vec::new();
        for t in &req.topics {
            let topic = t.name.0.to_string();
            layout.push((
                topic.clone(),
                t.partitions
                    .iter()
                    .map(|p| p.partition_index)
                    .collect::<Vec<_>>(),
            ));
            for p in &t.partitions {
                queries.push(OffsetQuery {
                    tp: TopicPartition::new(topic.clone(), p.partition_index),
                    timestamp: p.timestamp,
                    isolation: Isolation::from_wire(req.isolation_level),
                });
            }
        }
        let snap = self.router.snapshot();
        let answers = self.router.list_offsets(queries).await;
        let mut it = answers.into_iter();
        let mut resp = ListOffsetsResponse::default();
        for (topic, idx) in layout {
            let mut tr = ListOffsetsTopicResponse::default();
            tr.name = name(&topic);
            for p in idx {
                let mut pr = ListOffsetsPartitionResponse::default();
                pr.partition_index = p;
                match it.next().expect("one answer per query") {
                    Ok((offset, ts)) => {
                        pr.offset = offset;
                        pr.timestamp = ts;
                        if version >= 4 {
                            pr.leader_epoch =
                                snap.partition(&topic, p).map_or(-1, |x| x.leader_epoch);
                        }
                    }
                    Err(e) => {
                        pr.error_code = e.code.code();
                        pr.offset = -1;
                        pr.timestamp = -1;
                        pr.leader_epoch = -1;
                    }
                }
                tr.partitions.push(pr);
            }
            resp.topics.push(tr);
        }
        ResponseKind::ListOffsets(resp)
    }

    pub async fn create_topics(&self, req: CreateTopicsRequest) -> ResponseKind {
        let mut resp = CreateTopicsResponse::default();
        let mut asks = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut duplicates = std::collections::HashSet::new();
        for t in &req.topics {
            if !seen.insert(t.name.0.to_string()) {
                duplicates.insert(t.name.0.to_string());
            }
        }
        for t in req.topics {
            let topic = t.name.0.to_string();
            if duplicates.contains(&topic) {
                continue;
            }
            let assignments = match assignments_of(&t) {
                Ok(a) => a,
                Err(e) => {
                    asks.push(Err((topic, e)));
                    continue;
                }
            };
            let configs = t
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect();
            asks.push(Ok(NewTopic {
                name: topic,
                num_partitions: t.num_partitions,
                replication_factor: t.replication_factor,
                configs,
                assignments,
            }));
        }
        let creatable: Vec<NewTopic> = asks
            .iter()
            .filter_map(|a| a.as_ref().ok().cloned())
            .collect();
        let mut created = self
            .router
            .create_topics(creatable, req.validate_only)
            .await
            .into_iter();
        for a in asks {
            let (topic, result) = match a {
                Ok(_) => {
                    let c = created.next().expect("one result per topic");
                    (c.name, c.result)
                }
                Err((topic, e)) => (topic, Err(e)),
            };
            resp.topics.push(create_result(&topic, result));
        }
        for d in duplicates {
            let e = KafkaError::new(
                KafkaCode::InvalidRequest,
                format!(
                    "Create topics request from client contains multiple entries for topic {d}"
                ),
            );
            resp.topics.push(create_result(&d, Err(e)));
        }
        ResponseKind::CreateTopics(resp)
    }

    pub async fn delete_topics(&self, req: DeleteTopicsRequest, version: i16) -> ResponseKind {
        let snap = self.router.snapshot();
        let mut names = Vec::new();
        let mut unknown_ids = Vec::new();
        if version >= 6 {
            for t in &req.topics {
                match (&t.name, snap.topic_by_id(t.topic_id.as_bytes())) {
                    (Some(n), _) => names.push(n.0.to_string()),
                    (None, Some(info)) => names.push(info.name.clone()),
                    (None, None) => unknown_ids.push(t.topic_id),
                }
            }
        } else {
            names = req.topic_names.iter().map(|n| n.0.to_string()).collect();
        }
        let ids: BTreeMap<String, uuid::Uuid> = names
            .iter()
            .filter_map(|n| {
                snap.topics
                    .get(n)
                    .map(|t| (n.clone(), uuid_of(&t.topic_id)))
            })
            .collect();
        let results = self.router.delete_topics(names).await;
        let mut resp = DeleteTopicsResponse::default();
        for (n, r) in results {
            let mut d = DeletableTopicResult::default();
            d.topic_id = ids.get(&n).copied().unwrap_or_default();
            d.name = Some(name(&n));
            if let Err(e) = r {
                d.error_code = e.code.code();
                d.error_message = message(&e);
            }
            resp.responses.push(d);
        }
        for id in unknown_ids {
            let mut d = DeletableTopicResult::default();
            d.topic_id = id;
            d.error_code = KafkaCode::UnknownTopicId.code();
            resp.responses.push(d);
        }
        ResponseKind::DeleteTopics(resp)
    }
}

/// A CreateTopics manual assignment as the brokers of partitions 0, 1, ...: the request's
/// partition indexes must be exactly those (Kafka's rule).
fn assignments_of(t: &CreatableTopic) -> Result<Vec<Vec<i32>>, KafkaError> {
    let mut by_index: Vec<(i32, Vec<i32>)> = t
        .assignments
        .iter()
        .map(|a| {
            (
                a.partition_index,
                a.broker_ids.iter().map(|b| b.0).collect(),
            )
        })
        .collect();
    by_index.sort_by_key(|(p, _)| *p);
    if by_index
        .iter()
        .enumerate()
        .any(|(i, (p, _))| *p != i as i32)
    {
        return Err(KafkaError::new(
            KafkaCode::InvalidReplicaAssignment,
            format!(
                "The manual partition assignment of topic {} must name partitions 0 to {} once each.",
                t.name.0,
                by_index.len().saturating_sub(1)
            ),
        ));
    }
    Ok(by_index.into_iter().map(|(_, brokers)| brokers).collect())
}

fn create_result(topic: &str, result: Result<TopicInfo, KafkaError>) -> CreatableTopicResult {
    let mut r = CreatableTopicResult::default();
    r.name = name(topic);
    match result {
        Ok(info) => {
            r.topic_id = uuid_of(&info.topic_id);
            r.num_partitions = info.partitions.len() as i32;
            r.replication_factor = info.replication_factor;
            r.configs = Some(
                info.configs
                    .iter()
                    .map(|(k, v)| {
                        let mut c = CreatableTopicConfigs::default();
                        c.name = StrBytes::from_string(k.clone());
                        c.value = Some(StrBytes::from_string(v.clone()));
                        c.config_source = 1;
                        c
                    })
                    .collect(),
            );
        }
        Err(e) => {
            r.error_code = e.code.code();
            r.error_message = message(&e);
            r.num_partitions = -1;
            r.replication_factor = -1;
        }
    }
    r
}

fn metadata_topic(snap: &ClusterSnapshot, t: &TopicInfo) -> MetadataResponseTopic {
    let mut mt = MetadataResponseTopic::default();
    mt.name = Some(name(&t.name));
    mt.topic_id = uuid_of(&t.topic_id);
    mt.is_internal = t.internal;
    mt.topic_authorized_operations = i32::MIN;
    mt.partitions = t
        .partitions
        .iter()
        .map(|p| metadata_partition(snap, p))
        .collect();
    mt
}

/// One partition as Metadata lists it: all replicas and the ISR, the replicas on brokers
/// that are not alive as offline, and LEADER_NOT_AVAILABLE (leader −1) while no live broker
/// leads it, as Kafka answers.
fn metadata_partition(snap: &ClusterSnapshot, p: &PartitionInfo) -> MetadataResponsePartition {
    let mut mp = MetadataResponsePartition::default();
    mp.partition_index = p.index;
    mp.leader_epoch = p.leader_epoch;
    mp.replica_nodes = p.replicas.iter().map(|&r| BrokerId(r)).collect();
    mp.isr_nodes = p.isr.iter().map(|&r| BrokerId(r)).collect();
    mp.offline_replicas = p
        .replicas
        .iter()
        .filter(|&&r| !snap.is_live(r))
        .map(|&r| BrokerId(r))
        .collect();
    if snap.is_live(p.leader) {
        mp.leader_id = BrokerId(p.leader);
    } else {
        mp.leader_id = BrokerId(-1);
        mp.error_code = KafkaCode::LeaderNotAvailable.code();
    }
    mp
}

fn metadata_topic_named(snap: &ClusterSnapshot, topic: &str) -> MetadataResponseTopic {
    if let Some(t) = snap.topics.get(topic) {
        return metadata_topic(snap, t);
    }
    let mut mt = MetadataResponseTopic::default();
    mt.name = Some(name(topic));
    mt.topic_authorized_operations = i32::MIN;
    mt.error_code = match crate::controller::validate_topic_name(topic) {
        Err(e) => e.code.code(),
        Ok(()) => KafkaCode::UnknownTopicOrPartition.code(),
    };
    mt
}

/// What a Produce response says of a partition that took its batch.
#[derive(Debug, Clone, Copy)]
struct Produced {
    base_offset: i64,
    log_start_offset: i64,
    log_append_time_ms: i64,
}

fn produce_response(
    shape: &[(String, Vec<i32>)],
    result: impl Fn(&(String, i32)) -> Result<Produced, KafkaError>,
) -> ResponseKind {
    let mut resp = ProduceResponse::default();
    for (topic, partitions) in shape {
        let mut tr = TopicProduceResponse::default();
        tr.name = name(topic);
        for &p in partitions {
            let mut pr = PartitionProduceResponse::default();
            pr.index = p;
            pr.log_append_time_ms = -1;
            match result(&(topic.clone(), p)) {
                Ok(done) => {
                    pr.base_offset = done.base_offset;
                    pr.log_start_offset = done.log_start_offset;
                    pr.log_append_time_ms = done.log_append_time_ms;
                }
                Err(e) => {
                    pr.error_code = e.code.code();
                    pr.error_message = message(&e);
                    pr.base_offset = -1;
                    pr.log_start_offset = -1;
                }
            }
            tr.partition_responses.push(pr);
        }
        resp.responses.push(tr);
    }
    ResponseKind::Produce(resp)
}

/// The controller a Metadata answer names: as in KRaft, any listed broker takes controller
/// requests (a non-leader forwards them), so while the Raft leader is not among the listed
/// brokers (or unknown) this broker names itself.
fn metadata_controller_id(snap: &crate::controller::ClusterSnapshot) -> i32 {
    if snap.brokers.iter().any(|b| b.node_id == snap.controller_id) {
        snap.controller_id
    } else {
        snap.local_node
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::MetadataRecord;

    /// Brokers 1–3 registered, 1 and 2 alive; topic t with p0 led by 1 and p1 by 3.
    fn cluster() -> ClusterSnapshot {
        let mut s = ClusterSnapshot::joining(1, "c".into());
        for node_id in 1..=3 {
            s.apply(&MetadataRecord::RegisterBroker {
                node_id,
                epoch: 1,
                host: format!("h{node_id}"),
                port: 9092,
                rack: Some("r".into()),
                shards: 1,
            });
        }
        for node_id in 1..=2 {
            s.apply(&MetadataRecord::UnfenceBroker { node_id, epoch: 1 });
        }
        s.apply(&MetadataRecord::CreateTopic {
            name: "t".into(),
            topic_id: [1; 16],
            shards: vec![0, 0],
            replication_factor: 2,
            configs: BTreeMap::new(),
            replicas: vec![vec![1, 3], vec![3, 2]],
            replica_shards: vec![vec![0, 0], vec![0, 0]],
        });
        s
    }

    #[test]
    fn metadata_partition_lists_real_replicas_and_no_leader_without_a_live_one() {
        let snap = cluster();
        let t = metadata_topic(&snap, &snap.topics["t"]);
        let p0 = &t.partitions[0];
        assert_eq!((p0.error_code, p0.leader_id), (0, BrokerId(1)));
        assert_eq!(p0.replica_nodes, vec![BrokerId(1), BrokerId(3)]);
        assert_eq!(p0.offline_replicas, vec![BrokerId(3)], "3 is fenced");
        let p1 = &t.partitions[1];
        assert_eq!(p1.error_code, KafkaCode::LeaderNotAvailable.code());
        assert_eq!(p1.leader_id, BrokerId(-1));
        assert_eq!(p1.isr_nodes, vec![BrokerId(3), BrokerId(2)]);
    }
}
