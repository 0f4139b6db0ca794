//! Topic configs: Kafka's topic-level names layered over the broker's [`LogSettings`], each
//! value checked by Kafka's rules, and the describe view (value, source, synonyms) that
//! DescribeConfigs answers with.
//!
//! A topic's config map holds only what was set on the topic (at creation or by
//! Alter/IncrementalAlterConfigs); everything else takes the broker's value, which is what
//! Kafka calls the default. Each topic name has one broker synonym (`retention.ms` →
//! `log.retention.ms`), listed with the broker's value when synonyms are asked for.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{CleanupPolicy, CompressionType, LogSettings, TimestampType};

/// A config value Kafka's rules refuse; the caller answers INVALID_CONFIG with the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidConfig {
    pub message: String,
}

/// Where a described value comes from (Kafka's DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic = 1,
    DynamicBroker = 2,
    StaticBroker = 4,
    Default = 5,
}

/// One described config: its value, source and synonyms (most specific first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedConfig {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
    pub read_only: bool,
    pub synonyms: Vec<(&'static str, String, ConfigSource)>,
}

/// Topic-level configs sluice describes: Kafka's name, the broker synonym.
const TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "log.cleanup.policy"),
    ("compression.type", "compression.type"),
    ("delete.retention.ms", "log.cleaner.delete.retention.ms"),
    ("flush.messages", "log.flush.interval.messages"),
    ("flush.ms", "log.flush.interval.ms"),
    ("index.interval.bytes", "log.index.interval.bytes"),
    ("max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms"),
    ("max.message.bytes", "message.max.bytes"),
    ("message.timestamp.type", "log.message.timestamp.type"),
    (
        "min.cleanable.dirty.ratio",
        "log.cleaner.min.cleanable.ratio",
    ),
    ("min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms"),
    ("min.insync.replicas", "min.insync.replicas"),
    ("retention.bytes", "log.retention.bytes"),
    ("retention.ms", "log.retention.ms"),
    ("segment.bytes", "log.segment.bytes"),
    ("segment.ms", "log.roll.ms"),
    (
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
    ),
];

/// Names of the topic configs sluice describes and applies.
pub fn topic_config_names() -> impl Iterator<Item = &'static str> {
    TOPIC_CONFIGS.iter().map(|(n, _)| *n)
}

/// The broker's value of a topic config (what a topic without its own value gets).
fn broker_value(broker: &LogSettings, name: &str) -> String {
    match name {
        "cleanup.policy" => broker.cleanup.kafka_name().to_owned(),
        "compression.type" => broker.compression.kafka_name().to_owned(),
        "delete.retention.ms" => broker.delete_retention_ms.to_string(),
        "flush.messages" => broker.flush_messages.min(i64::MAX as u64).to_string(),
        "flush.ms" => (broker.flush_interval.as_millis() as i64).to_string(),
        "index.interval.bytes" => broker.index_interval_bytes.to_string(),
        "max.compaction.lag.ms" => broker.max_compaction_lag_ms.to_string(),
        "max.message.bytes" => broker.max_message_bytes.to_string(),
        "message.timestamp.type" => broker.timestamp_type.kafka_name().to_owned(),
        "min.cleanable.dirty.ratio" => broker.min_cleanable_dirty_ratio.to_string(),
        "min.compaction.lag.ms" => broker.min_compaction_lag_ms.to_string(),
        "min.insync.replicas" => broker.min_insync_replicas.to_string(),
        "retention.bytes" => broker.retention_bytes.to_string(),
        "retention.ms" => broker.retention_ms.to_string(),
        "segment.bytes" => broker.segment_bytes.to_string(),
        "segment.ms" => broker.segment_ms.to_string(),
        "unclean.leader.election.enable" => "false".to_owned(),
        _ => String::new(),
    }
}

/// Every topic config with its value for a topic whose own configs are `configs`.
pub fn describe_topic(
    broker: &LogSettings,
    configs: &BTreeMap<String, String>,
) -> Vec<DescribedConfig> {
    // The replication throttle's replica lists (no broker synonym), when the topic sets them.
    let throttles = THROTTLED_REPLICAS.iter().filter_map(|&name| {
        let v = configs.get(name)?;
        Some(DescribedConfig {
            name,
            value: v.clone(),
            source: ConfigSource::DynamicTopic,
            read_only: false,
            synonyms: vec![(name, v.clone(), ConfigSource::DynamicTopic)],
        })
    });
    let mut out: Vec<DescribedConfig> = TOPIC_CONFIGS
        .iter()
        .map(|&(name, synonym)| {
            let default = (synonym, broker_value(broker, name), ConfigSource::Default);
            match configs.get(name) {
                Some(v) => DescribedConfig {
                    name,
                    value: v.clone(),
                    source: ConfigSource::DynamicTopic,
                    read_only: false,
                    synonyms: vec![(name, v.clone(), ConfigSource::DynamicTopic), default],
                },
                None => DescribedConfig {
                    name,
                    value: default.1.clone(),
                    source: ConfigSource::Default,
                    read_only: false,
                    synonyms: vec![default],
                },
            }
        })
        .chain(throttles)
        .collect();
    out.sort_by_key(|c| c.name);
    out
}

/// Topic configs naming the replicas the replication throttle applies to.
const THROTTLED_REPLICAS: &[&str] = &[
    "follower.replication.throttled.replicas",
    "leader.replication.throttled.replicas",
];

/// The broker's log cleaner settings (broker-wide, no topic-level name): Kafka's name, value.
fn cleaner_configs(broker: &LogSettings) -> [(&'static str, String); 3] {
    let c = &broker.cleaner;
    [
        ("log.cleaner.backoff.ms", c.backoff_ms.to_string()),
        (
            "log.cleaner.dedupe.buffer.size",
            c.broker_dedupe_buffer_bytes.to_string(),
        ),
        (
            "log.cleaner.io.max.bytes.per.second",
            c.io_max_bytes_per_second.to_string(),
        ),
    ]
}

/// The broker's own log configs (Kafka's broker names), as DescribeConfigs shows a broker:
/// the synonyms of the topic configs, and the cleaner's. They are read-only: sluice takes
/// them from its config file at start.
pub fn describe_broker(broker: &LogSettings, message_max_bytes: usize) -> Vec<DescribedConfig> {
    let cleaner = cleaner_configs(broker).map(|(name, value)| static_broker(name, value));
    let mut out: Vec<DescribedConfig> = TOPIC_CONFIGS
        .iter()
        .filter(|(name, synonym)| name != synonym || *name == "compression.type")
        .map(|&(name, synonym)| {
            let value = match name {
                "max.message.bytes" => message_max_bytes.to_string(),
                _ => broker_value(broker, name),
            };
            static_broker(synonym, value)
        })
        .chain(cleaner)
        .collect();
    out.sort_by_key(|c| c.name);
    out
}

fn static_broker(name: &'static str, value: String) -> DescribedConfig {
    DescribedConfig {
        name,
        value: value.clone(),
        source: ConfigSource::StaticBroker,
        read_only: true,
        synonyms: vec![(name, value, ConfigSource::StaticBroker)],
    }
}

fn invalid(name: &str, value: &str, why: &str) -> InvalidConfig {
    InvalidConfig {
        message: format!("Invalid value {value} for configuration {name}: {why}"),
    }
}

fn long(name: &str, value: &str, min: i64) -> Result<i64, InvalidConfig> {
    let v: i64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(name, value, "Not a number of type LONG"))?;
    if v < min {
        return Err(invalid(
            name,
            value,
            &format!("Value must be at least {min}"),
        ));
    }
    Ok(v)
}

fn int(name: &str, value: &str, min: i64) -> Result<i64, InvalidConfig> {
    let v: i32 = value
        .trim()
        .parse()
        .map_err(|_| invalid(name, value, "Not a number of type INT"))?;
    long(name, &v.to_string(), min)
}

fn cleanup_policy(value: &str) -> Result<CleanupPolicy, InvalidConfig> {
    let mut policy = CleanupPolicy {
        delete: false,
        compact: false,
    };
    for part in value.split(',').map(str::trim) {
        match part {
            "delete" => policy.delete = true,
            "compact" => policy.compact = true,
            _ => {
                return Err(invalid(
                    "cleanup.policy",
                    value,
                    "String must be one of: compact, delete",
                ))
            }
        }
    }
    Ok(policy)
}

fn compression(value: &str) -> Result<CompressionType, InvalidConfig> {
    Ok(match value.trim() {
        "producer" => CompressionType::Producer,
        "uncompressed" | "none" => CompressionType::Uncompressed,
        "gzip" => CompressionType::Gzip,
        "snappy" => CompressionType::Snappy,
        "lz4" => CompressionType::Lz4,
        "zstd" => CompressionType::Zstd,
        _ => {
            return Err(invalid(
                "compression.type",
                value,
                "String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer",
            ))
        }
    })
}

/// Applies one topic config to `s`, checking it. Names sluice stores but does not act on
/// (Kafka's other topic configs) are accepted as they are.
fn apply(s: &mut LogSettings, name: &str, value: &str) -> Result<(), InvalidConfig> {
    match name {
        "cleanup.policy" => s.cleanup = cleanup_policy(value)?,
        "compression.type" => s.compression = compression(value)?,
        "delete.retention.ms" => s.delete_retention_ms = long(name, value, 0)?,
        "flush.messages" => s.flush_messages = long(name, value, 1)? as u64,
        "flush.ms" => s.flush_interval = Duration::from_millis(long(name, value, 0)? as u64),
        "index.interval.bytes" => s.index_interval_bytes = int(name, value, 0)? as u64,
        "max.compaction.lag.ms" => s.max_compaction_lag_ms = long(name, value, 1)?,
        "max.message.bytes" => s.max_message_bytes = int(name, value, 0)? as usize,
        "message.timestamp.type" => {
            s.timestamp_type = match value.trim() {
                "CreateTime" => TimestampType::CreateTime,
                "LogAppendTime" => TimestampType::LogAppendTime,
                _ => {
                    return Err(invalid(
                        name,
                        value,
                        "String must be one of: CreateTime, LogAppendTime",
                    ))
                }
            }
        }
        "min.cleanable.dirty.ratio" => {
            let v: f64 = value
                .trim()
                .parse()
                .map_err(|_| invalid(name, value, "Not a number of type DOUBLE"))?;
            if !(0.0..=1.0).contains(&v) {
                return Err(invalid(name, value, "Value must be between 0 and 1"));
            }
            s.min_cleanable_dirty_ratio = v;
        }
        "min.compaction.lag.ms" => s.min_compaction_lag_ms = long(name, value, 0)?,
        "min.insync.replicas" => s.min_insync_replicas = int(name, value, 1)? as i32,
        "retention.bytes" => s.retention_bytes = long(name, value, -1)?,
        "retention.ms" => s.retention_ms = long(name, value, -1)?,
        "segment.bytes" => s.segment_bytes = int(name, value, 14)? as u64,
        "segment.ms" => s.segment_ms = long(name, value, 1)?,
        // Checked and stored; it takes effect with replication (issue 9), where a leader may
        // be elected from outside the ISR. A single-replica partition has no other candidate.
        "unclean.leader.election.enable" if !matches!(value.trim(), "true" | "false") => {
            return Err(invalid(
                name,
                value,
                "Expected value to be either true or false",
            ));
        }
        _ => {}
    }
    Ok(())
}

/// The settings of a topic's logs: the broker's, with the topic's own configs over them.
pub fn topic_settings(
    broker: &LogSettings,
    configs: &BTreeMap<String, String>,
) -> Result<LogSettings, InvalidConfig> {
    let mut s = broker.clone();
    for (name, value) in configs {
        apply(&mut s, name, value)?;
    }
    Ok(s)
}

/// Checks one topic config value by Kafka's rules.
pub fn check_topic_config(name: &str, value: &str) -> Result<(), InvalidConfig> {
    apply(&mut LogSettings::default(), name, value)
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
    fn topic_configs_override_the_broker() {
        let broker = LogSettings::default();
        let s = topic_settings(
            &broker,
            &map(&[
                ("retention.ms", "1000"),
                ("cleanup.policy", "compact,delete"),
                ("compression.type", "zstd"),
                ("message.timestamp.type", "LogAppendTime"),
                ("segment.bytes", "1048576"),
                ("max.message.bytes", "2000"),
            ]),
        )
        .unwrap();
        assert_eq!(s.retention_ms, 1000);
        assert_eq!(
            s.cleanup,
            CleanupPolicy {
                delete: true,
                compact: true
            }
        );
        assert_eq!(s.compression, CompressionType::Zstd);
        assert_eq!(s.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(s.segment_bytes, 1 << 20);
        assert_eq!(s.max_message_bytes, 2000);
        assert_eq!(s.retention_bytes, broker.retention_bytes);
    }

    #[test]
    fn bad_values_are_refused_with_kafka_messages() {
        let e = check_topic_config("retention.ms", "soon").unwrap_err();
        assert_eq!(
            e.message,
            "Invalid value soon for configuration retention.ms: Not a number of type LONG"
        );
        let e = check_topic_config("segment.bytes", "10").unwrap_err();
        assert!(e.message.contains("at least 14"), "{e}");
        assert!(check_topic_config("retention.ms", "-2").is_err());
        assert!(check_topic_config("retention.ms", "-1").is_ok());
        assert!(check_topic_config("cleanup.policy", "shred").is_err());
        assert!(check_topic_config("compression.type", "brotli").is_err());
        assert!(check_topic_config("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(check_topic_config("segment.bytes", "4294967296").is_err());
    }

    #[test]
    fn describe_marks_sources_and_synonyms() {
        let broker = LogSettings::default();
        let d = describe_topic(&broker, &map(&[("retention.ms", "5")]));
        let r = d.iter().find(|c| c.name == "retention.ms").unwrap();
        assert_eq!(
            (r.value.as_str(), r.source),
            ("5", ConfigSource::DynamicTopic)
        );
        assert_eq!(r.synonyms[1].0, "log.retention.ms");
        assert_eq!(r.synonyms[1].1, "604800000");
        let seg = d.iter().find(|c| c.name == "segment.bytes").unwrap();
        assert_eq!(seg.source, ConfigSource::Default);
        assert_eq!(seg.value, "1073741824");
        let b = describe_broker(&broker, 1048588);
        assert!(b.iter().any(|c| c.name == "log.retention.ms"));
        assert!(b
            .iter()
            .any(|c| c.name == "message.max.bytes" && c.value == "1048588"));
    }

    #[test]
    fn broker_describes_the_cleaner_settings_with_the_whole_dedupe_buffer() {
        let mut broker = LogSettings::default();
        broker.cleaner.dedupe_buffer_bytes = 1000;
        broker.cleaner.broker_dedupe_buffer_bytes = 2000;
        broker.cleaner.io_max_bytes_per_second = 1048576.0;
        broker.cleaner.backoff_ms = 250;
        let b = describe_broker(&broker, 1048588);
        let value = |name: &str| b.iter().find(|c| c.name == name).map(|c| c.value.clone());
        assert_eq!(
            value("log.cleaner.dedupe.buffer.size").as_deref(),
            Some("2000")
        );
        assert_eq!(
            value("log.cleaner.io.max.bytes.per.second").as_deref(),
            Some("1048576")
        );
        assert_eq!(value("log.cleaner.backoff.ms").as_deref(), Some("250"));
    }
}
