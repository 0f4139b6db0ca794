//! Topic configuration and lifecycle APIs: DescribeConfigs (topics and the broker, with
//! Kafka's names, values, sources and synonyms), AlterConfigs and IncrementalAlterConfigs
//! (topics; the broker's configs are static, read from its config file, except the
//! replication throttle rates, which IncrementalAlterConfigs on this broker's BROKER resource
//! sets for this process: see `replication::throttle`), CreatePartitions
//! (increase only) and DeleteRecords. Values are checked by `config::topic` rules in the
//! controller; a bad one is refused with INVALID_CONFIG and Kafka's message.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response as incremental;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, CreatePartitionsRequest, CreatePartitionsResponse,
    DeleteRecordsRequest, DeleteRecordsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use super::handlers::Handlers;
use crate::base::{KafkaCode, KafkaError, TopicPartition};
use crate::config::{self, DescribedConfig};
use crate::controller::{AdminOp, AdminResults, ConfigChange, ConfigOp};
use crate::replication::throttle::{ThrottleRates, FOLLOWER_RATE, LEADER_RATE};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn described(c: &DescribedConfig, synonyms: bool) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default();
    e.name = text(c.name);
    e.value = Some(text(&c.value));
    e.config_source = c.source as i8;
    e.read_only = c.read_only;
    if synonyms {
        e.synonyms = c
            .synonyms
            .iter()
            .map(|(name, value, source)| {
                let mut s = DescribeConfigsSynonym::default();
                s.name = text(name);
                s.value = Some(text(value));
                s.source = *source as i8;
                s
            })
            .collect();
    }
    e
}

/// A (topic or broker) resource's failure: code and message.
fn fail(code: KafkaCode, message: &str) -> KafkaError {
    KafkaError::new(code, message.to_owned())
}

/// Errors for resources the alter APIs do not change here (the broker, other types).
fn not_alterable(resource_type: i8) -> KafkaError {
    match resource_type {
        RESOURCE_BROKER => fail(
            KafkaCode::InvalidRequest,
            "Broker configs are static in sluice: set them in the broker's config file",
        ),
        _ => fail(KafkaCode::InvalidRequest, "unsupported resource type"),
    }
}

impl Handlers {
    pub fn describe_configs(&self, req: DescribeConfigsRequest) -> ResponseKind {
        let snap = self.router.snapshot();
        let node_id = snap.local_node.to_string();
        let mut resp = DescribeConfigsResponse::default();
        for r in req.resources {
            let mut out = DescribeConfigsResult::default();
            out.resource_type = r.resource_type;
            out.resource_name = r.resource_name.clone();
            let wanted = |name: &str| {
                r.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            let found = match r.resource_type {
                RESOURCE_TOPIC => match snap.topics.get(r.resource_name.as_str()) {
                    Some(t) => Ok(config::describe_topic(&self.settings.log, &t.configs)),
                    None => Err(fail(
                        KafkaCode::UnknownTopicOrPartition,
                        "This server does not host this topic-partition.",
                    )),
                },
                RESOURCE_BROKER
                    if r.resource_name.is_empty() || r.resource_name.as_str() == node_id =>
                {
                    let mut all = config::describe_broker(
                        &self.settings.log,
                        self.settings.log.max_message_bytes,
                    );
                    all.extend(self.throttle_configs());
                    all.sort_by_key(|c| c.name);
                    Ok(all)
                }
                RESOURCE_BROKER => Err(fail(
                    KafkaCode::InvalidRequest,
                    "Unexpected broker id, expected this broker's node id",
                )),
                _ => Err(fail(KafkaCode::InvalidRequest, "unsupported resource type")),
            };
            match found {
                Ok(configs) => {
                    out.configs = configs
                        .iter()
                        .filter(|c| wanted(c.name))
                        .map(|c| described(c, req.include_synonyms))
                        .collect()
                }
                Err(e) => {
                    out.error_code = e.code.code();
                    out.error_message = Some(text(&e.message));
                }
            }
            resp.results.push(out);
        }
        ResponseKind::DescribeConfigs(resp)
    }

    /// Runs the topic changes of an alter request; answers every resource in request order
    /// as (type, name, result).
    async fn alter(
        &self,
        resources: Vec<(i8, StrBytes, Result<ConfigChange, KafkaError>)>,
        validate_only: bool,
    ) -> Vec<(i8, StrBytes, Result<(), KafkaError>)> {
        let changes: Vec<(String, ConfigChange)> = resources
            .iter()
            .filter(|(t, _, c)| *t == RESOURCE_TOPIC && c.is_ok())
            .filter_map(|(_, name, c)| Some((name.to_string(), c.clone().ok()?)))
            .collect();
        let mut results = self
            .router
            .admin(AdminOp::AlterConfigs {
                changes,
                validate_only,
            })
            .await
            .into_iter();
        resources
            .into_iter()
            .map(|(t, name, change)| {
                let result = match (t, change) {
                    (RESOURCE_TOPIC, Ok(_)) => results
                        .next()
                        .map_or(Err(KafkaCode::UnknownServerError.into()), |r| r.1),
                    (_, Err(e)) => Err(e),
                    (RESOURCE_BROKER, Ok(ConfigChange::Incremental(ops))) => {
                        self.alter_broker(name.as_str(), &ops, validate_only)
                    }
                    (other, Ok(_)) => Err(not_alterable(other)),
                };
                (t, name, result)
            })
            .collect()
    }

    pub async fn alter_configs(&self, req: AlterConfigsRequest) -> ResponseKind {
        let resources = req
            .resources
            .into_iter()
            .map(|r| {
                let configs: BTreeMap<String, String> = r
                    .configs
                    .into_iter()
                    .filter_map(|c| Some((c.name.to_string(), c.value?.to_string())))
                    .collect();
                let change = match r.resource_type {
                    RESOURCE_TOPIC => Ok(ConfigChange::Replace(configs)),
                    other => Err(not_alterable(other)),
                };
                (r.resource_type, r.resource_name, change)
            })
            .collect();
        let mut resp = AlterConfigsResponse::default();
        for (t, name, result) in self.alter(resources, req.validate_only).await {
            let mut out = AlterConfigsResourceResponse::default();
            out.resource_type = t;
            out.resource_name = name;
            if let Err(e) = result {
                out.error_code = e.code.code();
                out.error_message = Some(text(&e.message));
            }
            resp.responses.push(out);
        }
        ResponseKind::AlterConfigs(resp)
    }

    pub async fn incremental_alter_configs(
        &self,
        req: IncrementalAlterConfigsRequest,
    ) -> ResponseKind {
        let resources = req
            .resources
            .into_iter()
            .map(|r| {
                let ops: Result<Vec<(String, ConfigOp, Option<String>)>, KafkaError> = r
                    .configs
                    .into_iter()
                    .map(|c| {
                        let op = ConfigOp::from_wire(c.config_operation).ok_or_else(|| {
                            fail(
                                KafkaCode::InvalidRequest,
                                &format!("unknown config operation {}", c.config_operation),
                            )
                        })?;
                        Ok((c.name.to_string(), op, c.value.map(|v| v.to_string())))
                    })
                    .collect();
                let change = match r.resource_type {
                    RESOURCE_TOPIC | RESOURCE_BROKER => ops.map(ConfigChange::Incremental),
                    other => Err(not_alterable(other)),
                };
                (r.resource_type, r.resource_name, change)
            })
            .collect();
        let mut resp = IncrementalAlterConfigsResponse::default();
        for (t, name, result) in self.alter(resources, req.validate_only).await {
            let mut out = incremental::AlterConfigsResourceResponse::default();
            out.resource_type = t;
            out.resource_name = name;
            if let Err(e) = result {
                out.error_code = e.code.code();
                out.error_message = Some(text(&e.message));
            }
            resp.responses.push(out);
        }
        ResponseKind::IncrementalAlterConfigs(resp)
    }

    /// The throttle rates as DescribeConfigs shows them (dynamic once set at run time).
    fn throttle_configs(&self) -> Vec<DescribedConfig> {
        let rates = &self.settings.throttle_rates;
        [
            (LEADER_RATE, rates.leader()),
            (FOLLOWER_RATE, rates.follower()),
        ]
        .into_iter()
        .map(|(name, value)| {
            let source = if rates.is_dynamic(name) {
                config::ConfigSource::DynamicBroker
            } else {
                config::ConfigSource::StaticBroker
            };
            DescribedConfig {
                name,
                value: value.to_string(),
                source,
                read_only: false,
                synonyms: vec![(name, value.to_string(), source)],
            }
        })
        .collect()
    }

    /// IncrementalAlterConfigs on this broker: only the throttle rates change (SET or
    /// DELETE); every op is checked before any applies.
    fn alter_broker(
        &self,
        name: &str,
        ops: &[(String, ConfigOp, Option<String>)],
        validate_only: bool,
    ) -> Result<(), KafkaError> {
        if name != self.router.snapshot().local_node.to_string() {
            return Err(fail(
                KafkaCode::InvalidRequest,
                "Unexpected broker id, expected this broker's node id",
            ));
        }
        let mut checked = Vec::with_capacity(ops.len());
        for (config, op, value) in ops {
            let value = match op {
                ConfigOp::Set => value.as_deref(),
                ConfigOp::Delete => None,
                ConfigOp::Append | ConfigOp::Subtract => {
                    return Err(fail(
                        KafkaCode::InvalidConfig,
                        &format!(
                            "Config value append/subtract is not allowed for config key: {config}"
                        ),
                    ))
                }
            };
            let parsed = ThrottleRates::check(config, value)
                .map_err(|m| fail(KafkaCode::InvalidConfig, &m))?;
            checked.push((config.as_str(), parsed));
        }
        if !validate_only {
            for (config, value) in checked {
                self.settings.throttle_rates.set(config, value);
            }
        }
        Ok(())
    }

    pub async fn create_partitions(&self, req: CreatePartitionsRequest) -> ResponseKind {
        let mut resp = CreatePartitionsResponse::default();
        let mut asked = Vec::new();
        for t in &req.topics {
            if t.assignments.is_some() {
                let mut out = CreatePartitionsTopicResult::default();
                out.name = t.name.clone();
                out.error_code = KafkaCode::InvalidReplicaAssignment.code();
                out.error_message = Some(text(
                    "Manual partition assignment is not supported; partitions are placed by the broker",
                ));
                resp.results.push(out);
            } else {
                asked.push((t.name.to_string(), t.count));
            }
        }
        let results: AdminResults = self
            .router
            .admin(AdminOp::CreatePartitions {
                topics: asked,
                validate_only: req.validate_only,
            })
            .await;
        for (name, result) in results {
            let mut out = CreatePartitionsTopicResult::default();
            out.name = kafka_protocol::messages::TopicName(text(&name));
            if let Err(e) = result {
                out.error_code = e.code.code();
                out.error_message = Some(text(&e.message));
            }
            resp.results.push(out);
        }
        ResponseKind::CreatePartitions(resp)
    }

    pub async fn delete_records(&self, req: DeleteRecordsRequest) -> ResponseKind {
        let mut parts = Vec::new();
        for t in &req.topics {
            for p in &t.partitions {
                parts.push((
                    TopicPartition::new(t.name.to_string(), p.partition_index),
                    p.offset,
                ));
            }
        }
        let mut answers = self.router.delete_records(parts).await.into_iter();
        let mut resp = DeleteRecordsResponse::default();
        for t in req.topics {
            let mut topic = DeleteRecordsTopicResult::default();
            topic.name = t.name;
            for p in t.partitions {
                let mut out = DeleteRecordsPartitionResult::default();
                out.partition_index = p.partition_index;
                match answers
                    .next()
                    .unwrap_or(Err(KafkaCode::UnknownServerError.into()))
                {
                    Ok(low) => out.low_watermark = low,
                    Err(e) => {
                        out.low_watermark = -1;
                        out.error_code = e.code.code();
                    }
                }
                topic.partitions.push(out);
            }
            resp.topics.push(topic);
        }
        ResponseKind::DeleteRecords(resp)
    }
}
