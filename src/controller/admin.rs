//! Topic changes after creation: configs (AlterConfigs replaces a topic's set,
//! IncrementalAlterConfigs edits it), added partitions (CreatePartitions, increase only) and
//! leader elections (ElectLeaders, preferred or unclean) and partition reassignments
//! (AlterPartitionReassignments, through `reassign`). Each is checked by Kafka's rules,
//! committed as one metadata record per change and published once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::snapshot::TopicInfo;
use super::{election, placement, reassign, validate, Controller, MetadataRecord};
use crate::base::{KafkaCode, KafkaError};

/// IncrementalAlterConfigs operations (Kafka's `AlterConfigOp.OpType` ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigOp {
    Set,
    Delete,
    Append,
    Subtract,
}

impl ConfigOp {
    pub fn from_wire(op: i8) -> Option<ConfigOp> {
        Some(match op {
            0 => ConfigOp::Set,
            1 => ConfigOp::Delete,
            2 => ConfigOp::Append,
            3 => ConfigOp::Subtract,
            _ => return None,
        })
    }
}

/// How one topic's configs change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ConfigChange {
    /// AlterConfigs: the topic's configs become exactly these.
    Replace(BTreeMap<String, String>),
    /// IncrementalAlterConfigs: each (name, op, value) applied in order.
    Incremental(Vec<(String, ConfigOp, Option<String>)>),
}

/// A topic change the controller runs for an admin request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminOp {
    AlterConfigs {
        changes: Vec<(String, ConfigChange)>,
        validate_only: bool,
    },
    /// (topic, new total partition count).
    CreatePartitions {
        topics: Vec<(String, i32)>,
        validate_only: bool,
    },
    /// ElectLeaders for these (topic, partition)s: the preferred replica, or (unclean) any
    /// alive replica for a partition without a leader.
    ElectLeaders {
        unclean: bool,
        partitions: Vec<(String, i32)>,
    },
    /// AlterPartitionReassignments: (topic, partition, target replicas); `None` cancels
    /// the partition's reassignment in progress. One result per move, named by its topic.
    Reassign {
        moves: Vec<(String, i32, Option<Vec<i32>>)>,
    },
}

impl AdminOp {
    /// The topic each result is for, in order.
    pub fn names(&self) -> Vec<String> {
        match self {
            AdminOp::AlterConfigs { changes, .. } => changes.iter().map(|c| c.0.clone()).collect(),
            AdminOp::CreatePartitions { topics, .. } => {
                topics.iter().map(|t| t.0.clone()).collect()
            }
            AdminOp::ElectLeaders { partitions, .. } => {
                partitions.iter().map(|p| p.0.clone()).collect()
            }
            AdminOp::Reassign { moves } => moves.iter().map(|m| m.0.clone()).collect(),
        }
    }

    fn validate_only(&self) -> bool {
        match self {
            AdminOp::AlterConfigs { validate_only, .. }
            | AdminOp::CreatePartitions { validate_only, .. } => *validate_only,
            AdminOp::ElectLeaders { .. } | AdminOp::Reassign { .. } => false,
        }
    }
}

/// One result per topic (or partition) named in the op, in order.
pub type AdminResults = Vec<(String, Result<(), KafkaError>)>;

/// Config names whose values are lists (APPEND and SUBTRACT apply to them).
const LIST_CONFIGS: &[&str] = &[
    "cleanup.policy",
    "follower.replication.throttled.replicas",
    "leader.replication.throttled.replicas",
];

fn unknown_topic() -> KafkaError {
    KafkaError::new(
        KafkaCode::UnknownTopicOrPartition,
        "This server does not host this topic-partition.",
    )
}

fn invalid_config(message: String) -> KafkaError {
    KafkaError::new(KafkaCode::InvalidConfig, message)
}

/// A list config's current items: the topic's value, or Kafka's default.
fn list_items(configs: &BTreeMap<String, String>, name: &str) -> Vec<String> {
    let current = configs.get(name).cloned().unwrap_or_else(|| match name {
        "cleanup.policy" => "delete".to_owned(),
        _ => String::new(),
    });
    current
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The configs a topic has after `change`.
pub fn changed_configs(
    current: &BTreeMap<String, String>,
    change: &ConfigChange,
) -> Result<BTreeMap<String, String>, KafkaError> {
    let ops = match change {
        ConfigChange::Replace(all) => return Ok(all.clone()),
        ConfigChange::Incremental(ops) => ops,
    };
    let mut next = current.clone();
    for (name, op, value) in ops {
        let value = value.clone().unwrap_or_default();
        match op {
            ConfigOp::Set => {
                next.insert(name.clone(), value);
            }
            ConfigOp::Delete => {
                next.remove(name);
            }
            ConfigOp::Append | ConfigOp::Subtract => {
                if !LIST_CONFIGS.contains(&name.as_str()) {
                    return Err(invalid_config(format!(
                        "Config value append/subtract is not allowed for config key: {name}"
                    )));
                }
                let mut items = list_items(&next, name);
                for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let present = items.iter().any(|i| i == item);
                    match op {
                        ConfigOp::Append if !present => items.push(item.to_owned()),
                        ConfigOp::Subtract => items.retain(|i| i != item),
                        _ => {}
                    }
                }
                next.insert(name.clone(), items.join(","));
            }
        }
    }
    Ok(next)
}

impl Controller {
    /// Runs an admin topic change; publishes once if anything was committed.
    pub async fn run_admin(&self, op: AdminOp) -> AdminResults {
        if !op.validate_only() && !self.leads() {
            let names = op.names();
            return self
                .forward_results(super::ControllerCommand::Admin { op }, names)
                .await;
        }
        // Each change is validated against the snapshot the one before it left.
        let guard = self.changes.lock().await;
        let (results, changed) = match op {
            AdminOp::AlterConfigs {
                changes,
                validate_only,
            } => self.alter_configs(changes, validate_only).await,
            AdminOp::CreatePartitions {
                topics,
                validate_only,
            } => self.create_partitions(topics, validate_only).await,
            AdminOp::ElectLeaders {
                unclean,
                partitions,
            } => self.elect_leaders(unclean, partitions).await,
            AdminOp::Reassign { moves } => self.reassign(moves).await,
        };
        drop(guard);
        if changed {
            self.publish_current().await;
        }
        results
    }

    async fn elect_leaders(
        &self,
        unclean: bool,
        partitions: Vec<(String, i32)>,
    ) -> (AdminResults, bool) {
        let mut changed = false;
        let mut results = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            let snap = self.snapshot();
            let record = if unclean {
                election::elect_unclean(&snap, &topic, partition)
            } else {
                election::elect_preferred(&snap, &topic, partition)
            };
            let result = match record {
                Ok(r) => self.commit(r).await,
                Err(e) => Err(e),
            };
            changed |= result.is_ok();
            results.push((topic, result));
        }
        (results, changed)
    }

    async fn alter_configs(
        &self,
        changes: Vec<(String, ConfigChange)>,
        validate_only: bool,
    ) -> (AdminResults, bool) {
        let mut changed = false;
        let mut results = Vec::with_capacity(changes.len());
        for (name, change) in changes {
            let result = self.alter_one(&name, &change, validate_only).await;
            changed |= result.is_ok() && !validate_only;
            results.push((name, result));
        }
        (results, changed)
    }

    async fn alter_one(
        &self,
        name: &str,
        change: &ConfigChange,
        validate_only: bool,
    ) -> Result<(), KafkaError> {
        let snap = self.snapshot();
        let topic = snap.topics.get(name).ok_or_else(unknown_topic)?;
        let configs = changed_configs(&topic.configs, change)?;
        validate::configs(&configs)?;
        if validate_only || configs == topic.configs {
            return Ok(());
        }
        self.commit(MetadataRecord::AlterTopicConfigs {
            name: name.to_owned(),
            configs,
        })
        .await
    }

    async fn create_partitions(
        &self,
        topics: Vec<(String, i32)>,
        validate_only: bool,
    ) -> (AdminResults, bool) {
        let mut changed = false;
        let mut results = Vec::with_capacity(topics.len());
        for (name, count) in topics {
            let result = self.add_partitions(&name, count, validate_only).await;
            changed |= result.is_ok() && !validate_only;
            results.push((name, result));
        }
        (results, changed)
    }

    async fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), KafkaError> {
        let snap = self.snapshot();
        let topic = snap.topics.get(name).ok_or_else(unknown_topic)?;
        let current = topic.partitions.len() as i32;
        if count == current {
            return Err(KafkaError::new(
                KafkaCode::InvalidPartitions,
                format!("Topic already has {current} partitions."),
            ));
        }
        if count < current {
            return Err(KafkaError::new(
                KafkaCode::InvalidPartitions,
                format!(
                    "Topic currently has {current} partitions, which is higher than the requested {count}."
                ),
            ));
        }
        validate::partitions(count)?;
        if validate_only {
            return Ok(());
        }
        let placed = placement::assign(
            &snap,
            placement::NewPartitions {
                first: current,
                count: count - current,
                replication_factor: replication_factor_of(topic),
            },
            super::placement_random(),
        )?;
        self.commit(MetadataRecord::CreatePartitions {
            name: name.to_owned(),
            shards: placed.leader_shards(),
            replicas: placed.replicas,
            replica_shards: placed.replica_shards,
        })
        .await
    }
}

impl Controller {
    /// Starts or cancels each move in turn, each against the snapshot the one before left.
    /// Callers (`run_admin`) hold `changes`.
    async fn reassign(&self, moves: Vec<(String, i32, Option<Vec<i32>>)>) -> (AdminResults, bool) {
        let mut changed = false;
        let mut results = Vec::with_capacity(moves.len());
        for (topic, partition, target) in moves {
            let snap = self.snapshot();
            let record = match &target {
                Some(target) => reassign::start(&snap, &topic, partition, target),
                None => reassign::cancel(&snap, &topic, partition).map(Some),
            };
            let result = match record {
                Ok(Some(record)) => self.commit(record).await,
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            changed |= result.is_ok();
            results.push((topic, result));
        }
        (results, changed)
    }
}

/// New partitions get as many replicas as the topic's first partition has (Kafka's rule for
/// CreatePartitions without an assignment), or the topic's replication factor.
fn replication_factor_of(topic: &TopicInfo) -> i16 {
    topic
        .partitions
        .first()
        .map_or(topic.replication_factor, |p| p.replicas.len() as i16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn incremental_ops_edit_the_topic_configs() {
        let current = map(&[("retention.ms", "10"), ("segment.bytes", "1000")]);
        let change = ConfigChange::Incremental(vec![
            ("retention.ms".into(), ConfigOp::Set, Some("20".into())),
            ("segment.bytes".into(), ConfigOp::Delete, None),
            (
                "cleanup.policy".into(),
                ConfigOp::Append,
                Some("compact".into()),
            ),
        ]);
        let next = changed_configs(&current, &change).unwrap();
        assert_eq!(
            next,
            map(&[("retention.ms", "20"), ("cleanup.policy", "delete,compact")])
        );
        let change = ConfigChange::Incremental(vec![(
            "cleanup.policy".into(),
            ConfigOp::Subtract,
            Some("delete".into()),
        )]);
        let next = changed_configs(&next, &change).unwrap();
        assert_eq!(next["cleanup.policy"], "compact");
    }

    #[test]
    fn append_to_a_scalar_config_is_invalid() {
        let change = ConfigChange::Incremental(vec![(
            "retention.ms".into(),
            ConfigOp::Append,
            Some("1".into()),
        )]);
        let e = changed_configs(&BTreeMap::new(), &change).unwrap_err();
        assert_eq!(e.code, KafkaCode::InvalidConfig);
    }

    #[test]
    fn alter_configs_replaces_the_whole_set() {
        let change = ConfigChange::Replace(map(&[("retention.ms", "5")]));
        let next = changed_configs(&map(&[("segment.bytes", "1000")]), &change).unwrap();
        assert_eq!(next, map(&[("retention.ms", "5")]));
    }
}
