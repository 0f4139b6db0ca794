//! Broker settings: the TOML config file and command-line overrides, parsed into checked,
//! typed values. Every command-line flag of `sluice broker` has a key here of the same name
//! (dashes become underscores). Uses only `base`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::base::limits;

/// When an acknowledged batch is on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// A produce with acks=1/all is answered only after its batch is fdatasync'ed; concurrent
    /// appends share one fdatasync (group commit). The default.
    Fsync,
    /// A produce is answered once its batch is written (it survives a process crash);
    /// fdatasync runs every `flush_interval_ms` (like Kafka's `log.flush.interval.ms`).
    Interval,
}

/// Settings for one partition's log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    pub segment_bytes: u64,
    pub index_interval_bytes: u64,
    pub durability: Durability,
    pub flush_interval: Duration,
    pub tail_cache_bytes: usize,
    pub retention_ms: i64,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            segment_bytes: limits::DEFAULT_SEGMENT_BYTES,
            index_interval_bytes: limits::DEFAULT_INDEX_INTERVAL_BYTES,
            durability: Durability::Fsync,
            flush_interval: Duration::from_millis(100),
            tail_cache_bytes: limits::DEFAULT_TAIL_CACHE_BYTES,
            retention_ms: limits::DEFAULT_RETENTION_MS,
        }
    }
}

/// The whole broker configuration, checked.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub listen: SocketAddr,
    /// Host and port clients are told to connect to; defaults to the bound listen address.
    pub advertised_listener: Option<String>,
    pub data_dir: PathBuf,
    pub cores: usize,
    pub message_max_bytes: usize,
    pub socket_request_max_bytes: usize,
    pub auto_create_topics_enable: bool,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub log: LogSettings,
    pub group_initial_rebalance_delay_ms: i64,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    pub offsets_topic_num_partitions: i32,
    pub offsets_retention_minutes: i64,
    pub transaction_state_log_num_partitions: i32,
    pub transaction_max_timeout_ms: i32,
    pub transactional_id_expiration_ms: i64,
    pub producer_id_expiration_ms: i64,
    pub producer_id_expiration_check_interval_ms: u64,
    pub max_connections: usize,
    pub queued_max_request_bytes: usize,
    pub fetch_max_bytes: usize,
}

/// The file form: every key optional, absent keys take Kafka's defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub node_id: Option<i32>,
    pub listen: Option<String>,
    pub advertised_listener: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub cores: Option<usize>,
    pub message_max_bytes: Option<usize>,
    pub socket_request_max_bytes: Option<usize>,
    pub auto_create_topics_enable: Option<bool>,
    pub num_partitions: Option<i32>,
    pub default_replication_factor: Option<i16>,
    pub segment_bytes: Option<u64>,
    pub index_interval_bytes: Option<u64>,
    pub durability: Option<Durability>,
    pub flush_interval_ms: Option<u64>,
    pub tail_cache_bytes: Option<usize>,
    pub retention_ms: Option<i64>,
    pub group_initial_rebalance_delay_ms: Option<i64>,
    pub group_min_session_timeout_ms: Option<i32>,
    pub group_max_session_timeout_ms: Option<i32>,
    pub offsets_topic_num_partitions: Option<i32>,
    pub offsets_retention_minutes: Option<i64>,
    pub transaction_state_log_num_partitions: Option<i32>,
    pub transaction_max_timeout_ms: Option<i32>,
    pub transactional_id_expiration_ms: Option<i64>,
    pub producer_id_expiration_ms: Option<i64>,
    pub producer_id_expiration_check_interval_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub queued_max_request_bytes: Option<usize>,
    pub fetch_max_bytes: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid setting {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Layers `over` on top of `self`: every key set in `over` wins.
    pub fn overlay(self, over: ConfigFile) -> ConfigFile {
        macro_rules! pick {
            ($($f:ident),*) => { ConfigFile { $($f: over.$f.or(self.$f)),* } };
        }
        pick!(
            node_id,
            listen,
            advertised_listener,
            data_dir,
            cores,
            message_max_bytes,
            socket_request_max_bytes,
            auto_create_topics_enable,
            num_partitions,
            default_replication_factor,
            segment_bytes,
            index_interval_bytes,
            durability,
            flush_interval_ms,
            tail_cache_bytes,
            retention_ms,
            group_initial_rebalance_delay_ms,
            group_min_session_timeout_ms,
            group_max_session_timeout_ms,
            offsets_topic_num_partitions,
            offsets_retention_minutes,
            transaction_state_log_num_partitions,
            transaction_max_timeout_ms,
            transactional_id_expiration_ms,
            producer_id_expiration_ms,
            producer_id_expiration_check_interval_ms,
            max_connections,
            queued_max_request_bytes,
            fetch_max_bytes
        )
    }

    /// Checks every value and fills in defaults.
    pub fn resolve(self, available_cores: usize) -> Result<BrokerConfig, ConfigError> {
        let listen_text = self.listen.unwrap_or_else(|| "127.0.0.1:9092".to_owned());
        let listen = listen_text.parse().map_err(|e| ConfigError::Invalid {
            key: "listen",
            reason: format!("{listen_text:?} is not host:port ({e})"),
        })?;
        let cores = self.cores.unwrap_or(available_cores);
        check(
            "cores",
            cores >= 1 && cores <= available_cores.max(1) * 4,
            "must be at least 1",
        )?;
        let defaults = LogSettings::default();
        let log = LogSettings {
            segment_bytes: self.segment_bytes.unwrap_or(defaults.segment_bytes),
            index_interval_bytes: self
                .index_interval_bytes
                .unwrap_or(defaults.index_interval_bytes),
            durability: self.durability.unwrap_or(defaults.durability),
            flush_interval: self
                .flush_interval_ms
                .map(Duration::from_millis)
                .unwrap_or(defaults.flush_interval),
            tail_cache_bytes: self.tail_cache_bytes.unwrap_or(defaults.tail_cache_bytes),
            retention_ms: self.retention_ms.unwrap_or(defaults.retention_ms),
        };
        check(
            "segment_bytes",
            log.segment_bytes >= 14 && log.segment_bytes <= u32::MAX as u64,
            "must be between 14 and 4294967295",
        )?;
        let config = BrokerConfig {
            node_id: self.node_id.unwrap_or(1),
            listen,
            advertised_listener: self.advertised_listener,
            data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from("./data")),
            cores,
            message_max_bytes: self
                .message_max_bytes
                .unwrap_or(limits::DEFAULT_MESSAGE_MAX_BYTES),
            socket_request_max_bytes: self
                .socket_request_max_bytes
                .unwrap_or(limits::DEFAULT_SOCKET_REQUEST_MAX_BYTES),
            auto_create_topics_enable: self.auto_create_topics_enable.unwrap_or(true),
            num_partitions: self.num_partitions.unwrap_or(1),
            default_replication_factor: self.default_replication_factor.unwrap_or(1),
            log,
            group_initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms.unwrap_or(3000),
            group_min_session_timeout_ms: self.group_min_session_timeout_ms.unwrap_or(6000),
            group_max_session_timeout_ms: self.group_max_session_timeout_ms.unwrap_or(1_800_000),
            offsets_topic_num_partitions: self.offsets_topic_num_partitions.unwrap_or(50),
            offsets_retention_minutes: self.offsets_retention_minutes.unwrap_or(7 * 24 * 60),
            transaction_state_log_num_partitions: self
                .transaction_state_log_num_partitions
                .unwrap_or(50),
            transaction_max_timeout_ms: self.transaction_max_timeout_ms.unwrap_or(900_000),
            transactional_id_expiration_ms: self
                .transactional_id_expiration_ms
                .unwrap_or(7 * 24 * 3600 * 1000),
            producer_id_expiration_ms: self.producer_id_expiration_ms.unwrap_or(24 * 3600 * 1000),
            producer_id_expiration_check_interval_ms: self
                .producer_id_expiration_check_interval_ms
                .unwrap_or(600_000),
            max_connections: self
                .max_connections
                .unwrap_or(limits::DEFAULT_MAX_CONNECTIONS),
            queued_max_request_bytes: self
                .queued_max_request_bytes
                .unwrap_or(limits::DEFAULT_QUEUED_MAX_REQUEST_BYTES),
            fetch_max_bytes: self
                .fetch_max_bytes
                .unwrap_or(limits::DEFAULT_FETCH_MAX_BYTES),
        };
        check(
            "producer_id_expiration_check_interval_ms",
            config.producer_id_expiration_check_interval_ms >= 1,
            "must be at least 1",
        )?;
        check(
            "max_connections",
            config.max_connections >= 1,
            "must be at least 1",
        )?;
        check(
            "queued_max_request_bytes",
            config.queued_max_request_bytes >= config.socket_request_max_bytes.min(1 << 20),
            "must hold at least one request of 1 MiB (or socket_request_max_bytes if smaller)",
        )?;
        check(
            "fetch_max_bytes",
            config.fetch_max_bytes >= 1024,
            "must be at least 1024",
        )?;
        check(
            "transaction_state_log_num_partitions",
            config.transaction_state_log_num_partitions >= 1,
            "must be at least 1",
        )?;
        check(
            "transaction_max_timeout_ms",
            config.transaction_max_timeout_ms >= 1,
            "must be at least 1",
        )?;
        check(
            "transactional_id_expiration_ms",
            config.transactional_id_expiration_ms >= 1,
            "must be at least 1",
        )?;
        check(
            "producer_id_expiration_ms",
            config.producer_id_expiration_ms >= 1,
            "must be at least 1",
        )?;
        check(
            "offsets_topic_num_partitions",
            config.offsets_topic_num_partitions >= 1,
            "must be at least 1",
        )?;
        check(
            "group_initial_rebalance_delay_ms",
            config.group_initial_rebalance_delay_ms >= 0,
            "must not be negative",
        )?;
        check("node_id", config.node_id >= 0, "must not be negative")?;
        check(
            "num_partitions",
            config.num_partitions >= 1,
            "must be at least 1",
        )?;
        check(
            "message_max_bytes",
            config.message_max_bytes >= 64,
            "must be at least 64",
        )?;
        check(
            "socket_request_max_bytes",
            config.socket_request_max_bytes >= 1024,
            "must be at least 1024",
        )?;
        Ok(config)
    }
}

fn check(key: &'static str, ok: bool, reason: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key,
            reason: reason.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_kafka_defaults() {
        let c = ConfigFile::parse("").unwrap().resolve(2).unwrap();
        assert_eq!(c.listen.port(), 9092);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.cores, 2);
        assert_eq!(c.message_max_bytes, 1048588);
        assert_eq!(c.num_partitions, 1);
        assert_eq!(c.log.durability, Durability::Fsync);
        assert_eq!(c.log.segment_bytes, 1 << 30);
    }

    #[test]
    fn command_line_overlay_wins_over_file() {
        let file = ConfigFile::parse("cores = 1\nnode_id = 7").unwrap();
        let flags = ConfigFile {
            cores: Some(2),
            ..Default::default()
        };
        let c = file.overlay(flags).resolve(2).unwrap();
        assert_eq!((c.cores, c.node_id), (2, 7));
    }

    #[test]
    fn unknown_key_is_rejected() {
        assert!(ConfigFile::parse("no_such_key = 1").is_err());
    }

    #[test]
    fn bad_listen_address_names_the_key() {
        let err = ConfigFile::parse("listen = \"nowhere\"")
            .unwrap()
            .resolve(1)
            .unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");
    }
}

#[cfg(test)]
mod profile_tests {
    use super::*;

    #[test]
    fn every_tuning_profile_parses_and_resolves() {
        for (name, text) in [
            ("latency", include_str!("../../tuning/latency.toml")),
            ("balanced", include_str!("../../tuning/balanced.toml")),
            ("throughput", include_str!("../../tuning/throughput.toml")),
        ] {
            let file = ConfigFile::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            file.resolve(2).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
