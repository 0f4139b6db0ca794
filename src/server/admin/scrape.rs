//! What a scrape gathers: every shard's metrics snapshot (asked through the router), the
//! partition offsets and replica state from the metadata snapshot and the owners, and the
//! lag of every consumer group's committed offsets.
//!
//! Replication does not exist yet: ISR size and replica count come from the metadata (one
//! replica each today), so under-replicated partitions are always zero until the cluster
//! work lands, and there is no replication latency histogram.

use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use futures::channel::oneshot;
use kafka_protocol::messages::ApiKey;
use serde_json::{json, Value};

use crate::base::TopicPartition;
use crate::controller::ClusterSnapshot;
use crate::metrics::text::{render_shards, Kind, PrometheusText};
use crate::metrics::{self, ShardSnapshot};
use crate::partition::Isolation;
use crate::router::Router;
use crate::runtime;
use crate::shard::OffsetQuery;

use super::SHARD_PING_TIMEOUT;

/// The Prometheus exposition of the whole broker.
pub async fn metrics(router: &Rc<Router>) -> String {
    let snap = router.snapshot();
    let shards = shard_snapshots(router, &snap).await;
    let mut t = PrometheusText::new();
    render_shards(&mut t, &shards, &api_name);
    let offsets = partition_offsets(router, &snap).await;
    render_replicas(&mut t, &snap, &offsets);
    render_lag(&mut t, router, &offsets).await;
    t.finish()
}

fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|_| key.to_string(), |k| format!("{k:?}"))
}

/// Asks every shard for its metrics; a shard that does not answer in time is left out.
async fn shard_snapshots(router: &Rc<Router>, snap: &ClusterSnapshot) -> Vec<ShardSnapshot> {
    let live: Arc<HashSet<[u8; 16]>> = Arc::new(snap.topics.values().map(|t| t.topic_id).collect());
    let mut out = Vec::with_capacity(router.shard_count());
    for shard in 0..router.shard_count() {
        let (tx, rx) = oneshot::channel();
        let live = live.clone();
        let ask = async {
            router
                .invoke_on(
                    shard,
                    Box::new(move || {
                        let _ = tx.send(metrics::local().snapshot(shard, Some(&live)));
                    }),
                )
                .await;
            rx.await.ok()
        };
        match runtime::timeout(SHARD_PING_TIMEOUT, ask).await.flatten() {
            Some(s) => out.push(s),
            None => tracing::warn!(shard, "shard did not answer the metrics scrape"),
        }
    }
    out
}

/// `(log start, high watermark)` of every partition, from the owners.
async fn partition_offsets(
    router: &Rc<Router>,
    snap: &ClusterSnapshot,
) -> BTreeMap<TopicPartition, (i64, i64)> {
    let tps: Vec<TopicPartition> = snap
        .topics
        .values()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.name.clone(), p.index))
        })
        .collect();
    let query = |ts: i64| -> Vec<OffsetQuery> {
        tps.iter()
            .map(|tp| OffsetQuery {
                tp: tp.clone(),
                timestamp: ts,
                isolation: Isolation::ReadUncommitted,
            })
            .collect()
    };
    let ends = router.list_offsets(query(-1)).await;
    let starts = router.list_offsets(query(-2)).await;
    tps.iter()
        .zip(starts.into_iter().zip(ends))
        .filter_map(|(tp, (s, e))| Some((tp.clone(), (s.ok()?.0, e.ok()?.0))))
        .collect()
}

fn render_replicas(
    t: &mut PrometheusText,
    snap: &ClusterSnapshot,
    offsets: &BTreeMap<TopicPartition, (i64, i64)>,
) {
    t.family(
        "sluice_partition_high_watermark",
        Kind::Gauge,
        "Offset below which records are visible to consumers.",
    );
    t.family(
        "sluice_partition_log_start_offset",
        Kind::Gauge,
        "First offset still in the log.",
    );
    t.family(
        "sluice_partition_replicas",
        Kind::Gauge,
        "Replicas assigned to the partition.",
    );
    t.family(
        "sluice_partition_isr_size",
        Kind::Gauge,
        "In-sync replicas of the partition.",
    );
    let mut under_replicated = 0u64;
    for topic in snap.topics.values() {
        for p in &topic.partitions {
            let index = p.index.to_string();
            let labels = [
                ("topic", topic.name.as_str()),
                ("partition", index.as_str()),
            ];
            if let Some((start, hw)) =
                offsets.get(&TopicPartition::new(topic.name.clone(), p.index))
            {
                t.sample("sluice_partition_high_watermark", &labels, *hw as f64);
                t.sample("sluice_partition_log_start_offset", &labels, *start as f64);
            }
            t.sample(
                "sluice_partition_replicas",
                &labels,
                p.replicas.len() as f64,
            );
            t.sample("sluice_partition_isr_size", &labels, p.isr.len() as f64);
            if p.isr.len() < p.replicas.len() {
                under_replicated += 1;
            }
        }
    }
    t.family(
        "sluice_under_replicated_partitions",
        Kind::Gauge,
        "Partitions with fewer in-sync replicas than replicas.",
    );
    t.sample(
        "sluice_under_replicated_partitions",
        &[],
        under_replicated as f64,
    );
}

/// Committed offset and lag (high watermark minus committed offset) per group and partition.
async fn render_lag(
    t: &mut PrometheusText,
    router: &Rc<Router>,
    offsets: &BTreeMap<TopicPartition, (i64, i64)>,
) {
    t.family(
        "sluice_consumer_group_committed_offset",
        Kind::Gauge,
        "Offset a consumer group committed for a partition.",
    );
    t.family(
        "sluice_consumer_group_lag",
        Kind::Gauge,
        "Records between a group's committed offset and the high watermark.",
    );
    for (group, _, _) in crate::group::list(router).await {
        let Ok(committed) = crate::group::fetch_offsets(router, group.clone(), None).await else {
            continue;
        };
        for ((topic, partition), offset, _pending) in committed {
            let Some(offset) = offset else { continue };
            let p = partition.to_string();
            let labels = [
                ("group", group.as_str()),
                ("topic", topic.as_str()),
                ("partition", p.as_str()),
            ];
            t.sample(
                "sluice_consumer_group_committed_offset",
                &labels,
                offset.offset as f64,
            );
            if let Some((_, hw)) = offsets.get(&TopicPartition::new(topic.clone(), partition)) {
                t.sample(
                    "sluice_consumer_group_lag",
                    &labels,
                    (hw - offset.offset).max(0) as f64,
                );
            }
        }
    }
}

/// The metadata snapshot as JSON: brokers, controller, topics and their partitions.
pub async fn cluster_state(router: &Rc<Router>) -> Value {
    let snap = router.snapshot();
    let topics: Vec<Value> = snap
        .topics
        .values()
        .map(|t| {
            let partitions: Vec<Value> = t
                .partitions
                .iter()
                .map(|p| {
                    json!({
                        "partition": p.index,
                        "leader": p.leader,
                        "leader_epoch": p.leader_epoch,
                        "replicas": p.replicas,
                        "isr": p.isr,
                        "shard": router.shard_of(p.shard),
                    })
                })
                .collect();
            json!({
                "name": t.name,
                "topic_id": uuid::Uuid::from_bytes(t.topic_id).to_string(),
                "internal": t.internal,
                "replication_factor": t.replication_factor,
                "configs": t.configs,
                "partitions": partitions,
            })
        })
        .collect();
    let brokers: Vec<Value> = snap
        .brokers
        .iter()
        .map(|b| {
            json!({
                "node_id": b.node_id,
                "host": b.host,
                "port": b.port,
                "rack": b.rack,
                "shards": b.shards,
                "epoch": b.epoch,
                "fenced": b.fenced,
            })
        })
        .collect();
    json!({
        "cluster_id": snap.cluster_id,
        "controller_id": snap.controller_id,
        "node_id": snap.local_node,
        "shards": router.shard_count(),
        "brokers": brokers,
        "topics": topics,
    })
}
