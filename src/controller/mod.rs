//! The controller: the cluster's metadata (brokers, topics, partitions, their placement on
//! shards, leader epochs, configs), kept in a durable metadata log and published to every
//! shard as immutable snapshots. Runs on shard 0. It validates and commits metadata changes
//! (create and delete topics) and never calls back into the shards: they apply snapshots.
//!
//! A single node keeps its metadata in a local, durable record log (`metadata_log`); the
//! cluster work puts a Raft group behind the same interface (append a record, read committed
//! records, subscribe via the publish sink) without touching its users. Uses base, runtime.
//!
//! The cluster decisions are pure functions of a snapshot returning the records to commit,
//! for the controller leader to call (no I/O, no clock of their own):
//! - `placement::assign` — replicas and shards for new partitions;
//! - `registry::Registry` — `register`, `on_heartbeat`, `tick` (session-timeout fencing),
//!   `controlled_shutdown`;
//! - `election` — `on_fenced`, `on_unfenced`, `preferred_rebalance`, `elect_preferred`,
//!   `elect_unclean`;
//! - `alter::alter_partition` — a leader's ISR change (AlterPartition);
//! - `reassign` — `start`, `cancel`, `list` (KIP-455); completion happens in AlterPartition.
//!
//! `sim_tests` drives them together through seeded crashes, cuts and clock jumps.

mod admin;
pub mod alter;
pub mod change;
pub mod election;
mod metadata_log;
pub mod placement;
pub mod reassign;
pub mod registry;
mod snapshot;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod testkit;
mod validate;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use futures::future::LocalBoxFuture;
use futures::lock::Mutex;

use crate::base::{KafkaCode, KafkaError};
pub use admin::{AdminOp, AdminResults, ConfigChange, ConfigOp};
pub use metadata_log::{MetadataLog, MetadataRecord};
pub use snapshot::{BrokerInfo, ClusterSnapshot, PartitionInfo, TopicInfo};

/// Delivers a new snapshot to every shard; completes when all have applied it.
pub type PublishSink = Box<dyn Fn(Arc<ClusterSnapshot>) -> LocalBoxFuture<'static, ()>>;

/// A topic to create, as CreateTopics asks for it.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// -1: the broker default.
    pub num_partitions: i32,
    /// -1: the broker default.
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

/// The outcome of creating one topic.
#[derive(Debug, Clone)]
pub struct CreatedTopic {
    pub name: String,
    pub result: Result<TopicInfo, KafkaError>,
}

/// Defaults the controller applies to new topics.
#[derive(Debug, Clone)]
pub struct TopicDefaults {
    pub num_partitions: i32,
    pub replication_factor: i16,
}

pub struct Controller {
    log: MetadataLog,
    /// Held from a change's validation to its commit, so changes apply one at a time
    /// (each validated against the snapshot the one before it left) while the log's fsync
    /// runs off the reactor.
    changes: Mutex<()>,
    current: RefCell<Arc<ClusterSnapshot>>,
    defaults: TopicDefaults,
    publish: PublishSink,
}

impl Controller {
    /// Loads the metadata log in `meta_dir` and builds the first snapshot.
    pub fn open(
        meta_dir: &Path,
        broker: BrokerInfo,
        shards: usize,
        defaults: TopicDefaults,
        publish: PublishSink,
    ) -> std::io::Result<Controller> {
        let (log, records) = MetadataLog::open(meta_dir)?;
        // Placement spreads this broker's replicas over the shards it runs.
        let broker = BrokerInfo { shards, ..broker };
        let mut snapshot = ClusterSnapshot::empty(broker, log.cluster_id().to_owned());
        for r in records {
            snapshot.apply(&r);
        }
        Ok(Controller {
            log,
            changes: Mutex::new(()),
            current: RefCell::new(Arc::new(snapshot)),
            defaults,
            publish,
        })
    }

    pub fn snapshot(&self) -> Arc<ClusterSnapshot> {
        self.current.borrow().clone()
    }

    /// Sends the current snapshot to every shard (at start-up).
    pub async fn publish_current(&self) {
        let snap = self.snapshot();
        (self.publish)(snap).await;
    }

    /// Validates and (unless `validate_only`) commits new topics, then publishes.
    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<CreatedTopic> {
        let mut results = Vec::with_capacity(topics.len());
        let mut changed = false;
        let guard = self.changes.lock().await;
        for t in topics {
            let result = self.create_one(&t, validate_only).await;
            changed |= result.is_ok() && !validate_only;
            results.push(CreatedTopic {
                name: t.name,
                result,
            });
        }
        drop(guard);
        if changed {
            self.publish_current().await;
        }
        results
    }

    async fn create_one(&self, t: &NewTopic, validate_only: bool) -> Result<TopicInfo, KafkaError> {
        let snap = self.snapshot();
        validate::topic_name(&t.name)?;
        if snap.topics.contains_key(&t.name) {
            return Err(KafkaError::new(
                KafkaCode::TopicAlreadyExists,
                format!("Topic '{}' already exists.", t.name),
            ));
        }
        validate::no_collision(&t.name, snap.topics.keys())?;
        let partitions = match t.num_partitions {
            -1 => self.defaults.num_partitions,
            n => n,
        };
        validate::partitions(partitions)?;
        let rf = match t.replication_factor {
            -1 => self.defaults.replication_factor,
            n => n,
        };
        validate::replication_factor(rf, snap.live_brokers().count())?;
        validate::configs(&t.configs)?;
        let placed = placement::assign(
            &snap,
            placement::NewPartitions {
                first: 0,
                count: partitions,
                replication_factor: rf,
            },
            placement_random(),
        )?;
        let record = MetadataRecord::CreateTopic {
            name: t.name.clone(),
            topic_id: *uuid::Uuid::new_v4().as_bytes(),
            shards: placed.leader_shards(),
            replication_factor: rf,
            configs: t.configs.clone(),
            replicas: placed.replicas,
            replica_shards: placed.replica_shards,
        };
        if validate_only {
            let mut preview = (*snap).clone();
            preview.apply(&record);
            return Ok(preview.topics[&t.name].clone());
        }
        self.commit(record).await?;
        Ok(self.snapshot().topics[&t.name].clone())
    }

    /// Deletes topics by name; publishes once for all of them.
    pub async fn delete_topics(&self, names: Vec<String>) -> Vec<(String, Result<(), KafkaError>)> {
        let mut results = Vec::with_capacity(names.len());
        let mut changed = false;
        let guard = self.changes.lock().await;
        for name in names {
            let result = if self.snapshot().topics.contains_key(&name) {
                self.commit(MetadataRecord::DeleteTopic { name: name.clone() })
                    .await
            } else {
                Err(KafkaError::new(
                    KafkaCode::UnknownTopicOrPartition,
                    "This server does not host this topic-partition.",
                ))
            };
            changed |= result.is_ok();
            results.push((name, result));
        }
        drop(guard);
        if changed {
            self.publish_current().await;
        }
        results
    }

    /// Hands out the next block of `count` producer ids, durably, as `(first, count)`.
    pub async fn allocate_producer_ids(&self, count: i64) -> Result<(i64, i64), KafkaError> {
        let _guard = self.changes.lock().await;
        let first = self.snapshot().next_producer_id;
        self.commit(MetadataRecord::ProducerIds {
            next_producer_id: first + count,
        })
        .await?;
        Ok((first, count))
    }

    /// Appends a record durably, then applies it to a new snapshot. Callers hold `changes`.
    async fn commit(&self, record: MetadataRecord) -> Result<(), KafkaError> {
        self.log
            .append(&record)
            .await
            .map_err(|e| KafkaError::new(KafkaCode::KafkaStorageError, e.to_string()))?;
        let mut next = (*self.snapshot()).clone();
        next.apply(&record);
        *self.current.borrow_mut() = Arc::new(next);
        Ok(())
    }
}

/// The random number placement starts its round robin from (Kafka picks the first broker at
/// random so topics do not all lead on the same one).
fn placement_random() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// Kafka's topic-name rules, for callers that check a name before asking the controller.
pub fn validate_topic_name(name: &str) -> Result<(), KafkaError> {
    validate::topic_name(name)
}
