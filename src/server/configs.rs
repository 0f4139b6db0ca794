//! DescribeConfigs: a topic's own configs (set at creation) and Kafka's defaults for the
//! common ones, so `kafka-configs --describe`, admin clients and `sluice topic describe` see
//! them. Broker resources answer with no entries.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use super::handlers::Handlers;
use crate::base::{limits, KafkaCode};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

/// Kafka's defaults for the topic configs most tools look at.
fn defaults() -> Vec<(&'static str, String)> {
    vec![
        ("cleanup.policy", "delete".into()),
        ("compression.type", "producer".into()),
        ("delete.retention.ms", "86400000".into()),
        (
            "max.message.bytes",
            limits::DEFAULT_MESSAGE_MAX_BYTES.to_string(),
        ),
        ("message.timestamp.type", "CreateTime".into()),
        ("min.insync.replicas", "1".into()),
        ("retention.bytes", "-1".into()),
        ("retention.ms", limits::DEFAULT_RETENTION_MS.to_string()),
        ("segment.bytes", limits::DEFAULT_SEGMENT_BYTES.to_string()),
        ("unclean.leader.election.enable", "false".into()),
    ]
}

fn entry(name: &str, value: &str, source: i8) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default();
    e.name = StrBytes::from_string(name.to_owned());
    e.value = Some(StrBytes::from_string(value.to_owned()));
    e.config_source = source;
    e
}

impl Handlers {
    pub fn describe_configs(&self, req: DescribeConfigsRequest) -> ResponseKind {
        let snap = self.router.snapshot();
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
            match r.resource_type {
                RESOURCE_TOPIC => match snap.topics.get(r.resource_name.as_str()) {
                    Some(t) => {
                        for (k, v) in &t.configs {
                            if wanted(k) {
                                out.configs.push(entry(k, v, SOURCE_DYNAMIC_TOPIC));
                            }
                        }
                        for (k, v) in defaults() {
                            if !t.configs.contains_key(k) && wanted(k) {
                                out.configs.push(entry(k, &v, SOURCE_DEFAULT));
                            }
                        }
                    }
                    None => out.error_code = KafkaCode::UnknownTopicOrPartition.code(),
                },
                RESOURCE_BROKER => {}
                _ => {
                    out.error_code = KafkaCode::InvalidRequest.code();
                    out.error_message =
                        Some(StrBytes::from_static_str("unsupported resource type"));
                }
            }
            resp.results.push(out);
        }
        ResponseKind::DescribeConfigs(resp)
    }
}
