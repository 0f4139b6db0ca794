//! Broker settings: the TOML config file and command-line overrides, parsed into checked,
//! typed values. Every command-line flag of `sluice broker` has a key here of the same name
//! (dashes become underscores). Uses only `base`.
//!
//! Settings come in layers, each over the one before: the built-in defaults (the balanced
//! profile), a tuning profile (`tuning/*.toml`, embedded in the binary and chosen with
//! `--profile` or the `profile` key), the `--config` file, then the command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::base::limits;

mod topic;
pub use topic::{
    check_topic_config, describe_broker, describe_topic, topic_config_names, topic_settings,
    ConfigSource, DescribedConfig, InvalidConfig,
};

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

/// Kafka `cleanup.policy`: what housekeeping does with old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Delete whole segments past `retention.ms` / beyond `retention.bytes`.
    pub delete: bool,
    /// Keep only the newest record per key in sealed segments.
    pub compact: bool,
}

impl CleanupPolicy {
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };
    pub const COMPACT: CleanupPolicy = CleanupPolicy {
        delete: false,
        compact: true,
    };

    /// Kafka's spelling: `delete`, `compact` or `compact,delete`.
    pub fn kafka_name(self) -> &'static str {
        match (self.compact, self.delete) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            _ => "delete",
        }
    }
}

/// Kafka `compression.type` of a topic: keep the producer's codec, or store in this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionType {
    pub fn kafka_name(self) -> &'static str {
        match self {
            Self::Producer => "producer",
            Self::Uncompressed => "uncompressed",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }

    /// The codec id in a batch's attributes, or `None` for `producer`.
    pub fn codec(self) -> Option<u8> {
        match self {
            Self::Producer => None,
            Self::Uncompressed => Some(0),
            Self::Gzip => Some(1),
            Self::Snappy => Some(2),
            Self::Lz4 => Some(3),
            Self::Zstd => Some(4),
        }
    }
}

/// Kafka `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

impl TimestampType {
    pub fn kafka_name(self) -> &'static str {
        match self {
            Self::CreateTime => "CreateTime",
            Self::LogAppendTime => "LogAppendTime",
        }
    }
}

/// The broker's cleaner (compaction) budget, shared by the logs of a shard.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanerSettings {
    /// Kafka `log.cleaner.dedupe.buffer.size`: memory for the key→offset map of one cleaning
    /// pass. The broker's value is split between the shards; this is one shard's share.
    pub dedupe_buffer_bytes: u64,
    /// The broker-wide `log.cleaner.dedupe.buffer.size` as configured (before the split),
    /// which is what DescribeConfigs reports.
    pub broker_dedupe_buffer_bytes: u64,
    /// Kafka `log.cleaner.io.max.bytes.per.second`: read plus write rate of a cleaning pass,
    /// per shard.
    pub io_max_bytes_per_second: f64,
    /// Kafka `log.cleaner.backoff.ms`: pause between cleaning checks.
    pub backoff_ms: i64,
}

impl Default for CleanerSettings {
    fn default() -> Self {
        Self {
            dedupe_buffer_bytes: limits::DEFAULT_CLEANER_DEDUPE_BUFFER_BYTES,
            broker_dedupe_buffer_bytes: limits::DEFAULT_CLEANER_DEDUPE_BUFFER_BYTES,
            io_max_bytes_per_second: limits::DEFAULT_CLEANER_IO_BYTES_PER_SECOND,
            backoff_ms: limits::DEFAULT_CLEANER_BACKOFF_MS,
        }
    }
}

/// Settings for one partition's log: the broker's defaults with the topic's configs layered
/// over them (see [`topic_settings`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    /// Kafka `segment.bytes`.
    pub segment_bytes: u64,
    /// Kafka `segment.ms`: the active segment rolls once it is this old, full or not.
    pub segment_ms: i64,
    /// Kafka `index.interval.bytes`.
    pub index_interval_bytes: u64,
    /// Fsync: every flush is fdatasync'ed before it is acknowledged (`flush.messages=1`).
    /// Interval: synced every `flush_interval` or `flush_messages` records.
    pub durability: Durability,
    /// Kafka `flush.ms` in interval durability.
    pub flush_interval: Duration,
    /// Kafka `flush.messages` in interval durability (`u64::MAX`: by time only).
    pub flush_messages: u64,
    pub tail_cache_bytes: usize,
    /// Kafka `retention.ms` (-1: forever).
    pub retention_ms: i64,
    /// Kafka `retention.bytes` (-1: unlimited).
    pub retention_bytes: i64,
    /// Kafka `cleanup.policy`.
    pub cleanup: CleanupPolicy,
    /// Kafka `delete.retention.ms`: how long tombstones (and finished transaction markers)
    /// stay after compaction first reaches them.
    pub delete_retention_ms: i64,
    /// Kafka `min.compaction.lag.ms`: records younger than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// Kafka `max.compaction.lag.ms`: a log with records older than this is compacted
    /// whatever its dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// Kafka `min.cleanable.dirty.ratio`.
    pub min_cleanable_dirty_ratio: f64,
    /// Kafka `max.message.bytes`: the largest batch an append may carry.
    pub max_message_bytes: usize,
    /// Kafka `min.insync.replicas`: an `acks=all` produce is refused with NOT_ENOUGH_REPLICAS
    /// while fewer replicas are in sync (a single-replica partition has one).
    pub min_insync_replicas: i32,
    /// Kafka `compression.type`.
    pub compression: CompressionType,
    /// Kafka `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// Bytes a partition's log may hold appended but not yet durable; see
    /// [`limits::DEFAULT_MAX_PENDING_BYTES`].
    pub max_pending_bytes: u64,
    /// The shard's cleaner budget (broker-wide settings, not per topic).
    pub cleaner: CleanerSettings,
    /// In `fsync` durability, how long the flusher lets appends gather after the first one
    /// arrives before it writes and fdatasyncs them together (zero: flush at once; appends
    /// arriving during a flush still share the next one).
    pub group_commit_window: Duration,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            segment_bytes: limits::DEFAULT_SEGMENT_BYTES,
            segment_ms: limits::DEFAULT_SEGMENT_MS,
            index_interval_bytes: limits::DEFAULT_INDEX_INTERVAL_BYTES,
            durability: Durability::Fsync,
            flush_interval: Duration::from_millis(100),
            flush_messages: u64::MAX,
            tail_cache_bytes: limits::DEFAULT_TAIL_CACHE_BYTES,
            retention_ms: limits::DEFAULT_RETENTION_MS,
            retention_bytes: -1,
            cleanup: CleanupPolicy::DELETE,
            delete_retention_ms: limits::DEFAULT_DELETE_RETENTION_MS,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            max_message_bytes: limits::DEFAULT_MESSAGE_MAX_BYTES,
            min_insync_replicas: 1,
            compression: CompressionType::Producer,
            timestamp_type: TimestampType::CreateTime,
            max_pending_bytes: limits::DEFAULT_MAX_PENDING_BYTES,
            cleaner: CleanerSettings::default(),
            group_commit_window: Duration::ZERO,
        }
    }
}

/// How each shard's executor divides its core and waits for work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeSettings {
    /// Scheduler shares (1–1000) of the task queue that runs produce requests and the log
    /// flushers (disk writes and fdatasync).
    pub produce_shares: usize,
    /// Scheduler shares (1–1000) of the task queue that runs fetch requests and long polls.
    pub fetch_shares: usize,
    /// How long an idle shard keeps polling its io_uring rings before it sleeps: a completion
    /// or message arriving within it is seen without a wake-up, at the cost of a busy core.
    pub spin_before_park: Duration,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            produce_shares: limits::MAX_TASK_SHARES,
            fetch_shares: limits::MAX_TASK_SHARES,
            spin_before_park: Duration::ZERO,
        }
    }
}

/// Kernel socket buffer sizes of accepted connections (Kafka's `socket.send.buffer.bytes`
/// and `socket.receive.buffer.bytes`); `None` keeps the kernel's own, auto-tuned sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SocketBuffers {
    pub send_bytes: Option<usize>,
    pub receive_bytes: Option<usize>,
}

/// The tuning profiles shipped in `tuning/`, embedded so that `--profile` works wherever the
/// binary is copied.
pub const PROFILES: [(&str, &str); 3] = [
    ("latency", include_str!("../../tuning/latency.toml")),
    ("balanced", include_str!("../../tuning/balanced.toml")),
    ("throughput", include_str!("../../tuning/throughput.toml")),
];

/// The text of a built-in profile.
pub fn profile_text(name: &str) -> Option<&'static str> {
    PROFILES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The cleaner settings of one shard: the broker's dedupe buffer split between `cores` shards.
fn resolve_cleaner(file: &ConfigFile, cores: usize) -> Result<CleanerSettings, ConfigError> {
    let defaults = CleanerSettings::default();
    let total = file
        .log_cleaner_dedupe_buffer_size
        .unwrap_or(defaults.dedupe_buffer_bytes);
    let io = file
        .log_cleaner_io_max_bytes_per_second
        .unwrap_or(defaults.io_max_bytes_per_second);
    let backoff_ms = file.log_cleaner_backoff_ms.unwrap_or(defaults.backoff_ms);
    check(
        "log_cleaner_dedupe_buffer_size",
        total >= 1024 * cores as u64,
        "must be at least 1024 per shard",
    )?;
    check(
        "log_cleaner_io_max_bytes_per_second",
        io > 0.0,
        "must be positive",
    )?;
    check(
        "log_cleaner_backoff_ms",
        backoff_ms >= 1,
        "must be at least 1",
    )?;
    Ok(CleanerSettings {
        dedupe_buffer_bytes: total / cores.max(1) as u64,
        broker_dedupe_buffer_bytes: total,
        io_max_bytes_per_second: io,
        backoff_ms,
    })
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
    /// Kafka `log.retention.check.interval.ms`: how often each shard's housekeeping pass
    /// applies retention and `segment.ms` to its logs.
    pub retention_check_interval_ms: i64,
    pub group_initial_rebalance_delay_ms: i64,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    pub offsets_topic_num_partitions: i32,
    /// Kafka `offsets.topic.replication.factor` (default 3), capped at the number of brokers
    /// registered when the topic is created, so a single node needs no setting.
    pub offsets_topic_replication_factor: i16,
    pub offsets_retention_minutes: i64,
    pub runtime: RuntimeSettings,
    pub socket_buffers: SocketBuffers,
    /// A long poll woken by data that does not yet reach the fetch's `min_bytes` waits this
    /// long (within its `max_wait`) before reading again, so a trickle of small appends is
    /// read once rather than once per append. Zero: read again at once.
    pub fetch_debounce: Duration,
    /// Where the Prometheus metrics and the admin HTTP API listen; `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    pub transaction_state_log_num_partitions: i32,
    /// Kafka `transaction.state.log.replication.factor` (default 3), capped like
    /// `offsets_topic_replication_factor`.
    pub transaction_state_log_replication_factor: i16,
    pub transaction_max_timeout_ms: i32,
    pub transactional_id_expiration_ms: i64,
    pub producer_id_expiration_ms: i64,
    pub producer_id_expiration_check_interval_ms: u64,
    pub max_connections: usize,
    pub queued_max_request_bytes: usize,
    pub fetch_max_bytes: usize,
    /// The controller quorum (`--controller-voters id@host:port,...`); empty: a single node
    /// with its local metadata log.
    pub controller_voters: Vec<ControllerVoter>,
    /// Where this voter's controller listener binds [default: its address in the voters].
    pub controller_listen: Option<SocketAddr>,
    /// Kafka `broker.rack`.
    pub rack: Option<String>,
    /// Kafka `broker.heartbeat.interval.ms`.
    pub broker_heartbeat_interval_ms: u64,
    /// Kafka `broker.session.timeout.ms`.
    pub broker_session_timeout_ms: u64,
    /// Kafka `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// Kafka `auto.leader.rebalance.enable`.
    pub auto_leader_rebalance_enable: bool,
    /// Kafka `leader.imbalance.check.interval.seconds`.
    pub leader_imbalance_check_interval_seconds: u64,
    /// Kafka `leader.replication.throttled.rate` / `follower.replication.throttled.rate`
    /// (bytes/s for the whole broker, for the replicas the topics name as throttled); a
    /// dynamic broker config (IncrementalAlterConfigs) overrides them.
    pub leader_replication_throttled_rate: u64,
    pub follower_replication_throttled_rate: u64,
}

/// One controller voter: its node id and controller address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerVoter {
    pub id: i32,
    pub addr: SocketAddr,
}

impl BrokerConfig {
    /// This broker's controller address when it is a voter.
    pub fn own_voter(&self) -> Option<&ControllerVoter> {
        self.controller_voters.iter().find(|v| v.id == self.node_id)
    }

    /// A member of a cluster whose node id is not among the voters: it follows the
    /// quorum's metadata as an observer (KRaft's `process.roles=broker`).
    pub fn is_observer(&self) -> bool {
        !self.controller_voters.is_empty() && self.own_voter().is_none()
    }
}

/// Parses `id@host:port,id@host:port,...` (Kafka's `controller.quorum.voters`).
pub fn parse_controller_voters(text: &str) -> Result<Vec<ControllerVoter>, String> {
    use std::net::ToSocketAddrs;
    let mut voters: Vec<ControllerVoter> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('@')
            .ok_or_else(|| format!("{item:?} is not id@host:port"))?;
        let id: i32 = id
            .parse()
            .map_err(|_| format!("{item:?}: the node id {id:?} is not a number"))?;
        if id < 0 {
            return Err(format!("{item:?}: the node id must not be negative"));
        }
        let addr = addr
            .to_socket_addrs()
            .map_err(|e| format!("{item:?}: {addr:?} is not host:port ({e})"))?
            .next()
            .ok_or_else(|| format!("{item:?}: {addr:?} resolves to no address"))?;
        if voters.iter().any(|v| v.id == id) {
            return Err(format!("node id {id} is listed twice"));
        }
        voters.push(ControllerVoter { id, addr });
    }
    if voters.is_empty() {
        return Err("no voters listed".into());
    }
    Ok(voters)
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
    pub retention_bytes: Option<i64>,
    pub segment_ms: Option<i64>,
    pub retention_check_interval_ms: Option<i64>,
    pub max_pending_bytes: Option<u64>,
    pub group_initial_rebalance_delay_ms: Option<i64>,
    pub group_min_session_timeout_ms: Option<i32>,
    pub group_max_session_timeout_ms: Option<i32>,
    pub offsets_topic_num_partitions: Option<i32>,
    pub offsets_topic_replication_factor: Option<i16>,
    pub offsets_retention_minutes: Option<i64>,
    /// A built-in profile the rest of this file (and the flags) layer over.
    pub profile: Option<String>,
    pub group_commit_window_us: Option<u64>,
    pub produce_shares: Option<usize>,
    pub fetch_shares: Option<usize>,
    pub spin_before_park_us: Option<u64>,
    pub socket_send_buffer_bytes: Option<i32>,
    pub socket_receive_buffer_bytes: Option<i32>,
    pub fetch_debounce_ms: Option<u64>,
    pub metrics_listen: Option<String>,
    pub transaction_state_log_num_partitions: Option<i32>,
    pub transaction_state_log_replication_factor: Option<i16>,
    pub transaction_max_timeout_ms: Option<i32>,
    pub transactional_id_expiration_ms: Option<i64>,
    pub producer_id_expiration_ms: Option<i64>,
    pub producer_id_expiration_check_interval_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub queued_max_request_bytes: Option<usize>,
    pub fetch_max_bytes: Option<usize>,
    pub replica_lag_time_max_ms: Option<i64>,
    /// Kafka `log.cleaner.dedupe.buffer.size` (whole broker; each shard gets its share).
    pub log_cleaner_dedupe_buffer_size: Option<u64>,
    /// Kafka `log.cleaner.io.max.bytes.per.second` (per shard).
    pub log_cleaner_io_max_bytes_per_second: Option<f64>,
    /// Kafka `log.cleaner.backoff.ms`.
    pub log_cleaner_backoff_ms: Option<i64>,
    pub controller_voters: Option<String>,
    pub controller_listen: Option<String>,
    pub rack: Option<String>,
    pub broker_heartbeat_interval_ms: Option<u64>,
    pub broker_session_timeout_ms: Option<u64>,
    pub auto_leader_rebalance_enable: Option<bool>,
    pub leader_imbalance_check_interval_seconds: Option<u64>,
    pub leader_replication_throttled_rate: Option<u64>,
    pub follower_replication_throttled_rate: Option<u64>,
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
    #[error("unknown profile {0:?}: choose latency, balanced or throughput")]
    UnknownProfile(String),
    #[error("profile {name}: {source}")]
    BadProfile {
        name: String,
        source: Box<toml::de::Error>,
    },
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

    /// A built-in profile as a config layer.
    pub fn profile(name: &str) -> Result<Self, ConfigError> {
        let text = profile_text(name).ok_or_else(|| ConfigError::UnknownProfile(name.into()))?;
        Self::parse(text).map_err(|source| ConfigError::BadProfile {
            name: name.into(),
            source: Box::new(source),
        })
    }

    /// The layers of a broker's settings: the profile named by the flags (or else by the
    /// file), then the file, then the flags.
    pub fn layered(file: ConfigFile, flags: ConfigFile) -> Result<ConfigFile, ConfigError> {
        let base = match flags.profile.as_deref().or(file.profile.as_deref()) {
            Some(name) => Self::profile(name)?,
            None => ConfigFile::default(),
        };
        Ok(base.overlay(file).overlay(flags))
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
            retention_bytes,
            segment_ms,
            retention_check_interval_ms,
            max_pending_bytes,
            group_initial_rebalance_delay_ms,
            group_min_session_timeout_ms,
            group_max_session_timeout_ms,
            offsets_topic_num_partitions,
            offsets_topic_replication_factor,
            offsets_retention_minutes,
            profile,
            group_commit_window_us,
            produce_shares,
            fetch_shares,
            spin_before_park_us,
            socket_send_buffer_bytes,
            socket_receive_buffer_bytes,
            fetch_debounce_ms,
            metrics_listen,
            transaction_state_log_num_partitions,
            transaction_state_log_replication_factor,
            transaction_max_timeout_ms,
            transactional_id_expiration_ms,
            producer_id_expiration_ms,
            producer_id_expiration_check_interval_ms,
            max_connections,
            queued_max_request_bytes,
            fetch_max_bytes,
            replica_lag_time_max_ms,
            log_cleaner_dedupe_buffer_size,
            log_cleaner_io_max_bytes_per_second,
            log_cleaner_backoff_ms,
            controller_voters,
            controller_listen,
            rack,
            broker_heartbeat_interval_ms,
            broker_session_timeout_ms,
            auto_leader_rebalance_enable,
            leader_imbalance_check_interval_seconds,
            leader_replication_throttled_rate,
            follower_replication_throttled_rate
        )
    }

    /// The controller quorum and this voter's listen address, checked.
    fn resolve_controller(
        file: &ConfigFile,
    ) -> Result<(Vec<ControllerVoter>, Option<SocketAddr>), ConfigError> {
        let voters = match file.controller_voters.as_deref().map(str::trim) {
            None | Some("") => Vec::new(),
            Some(text) => parse_controller_voters(text).map_err(|reason| ConfigError::Invalid {
                key: "controller_voters",
                reason,
            })?,
        };
        let listen = match &file.controller_listen {
            None => None,
            Some(text) => Some(text.parse().map_err(|e| ConfigError::Invalid {
                key: "controller_listen",
                reason: format!("{text:?} is not host:port ({e})"),
            })?),
        };
        if listen.is_some() && voters.is_empty() {
            return Err(ConfigError::Invalid {
                key: "controller_listen",
                reason: "needs controller_voters".into(),
            });
        }
        Ok((voters, listen))
    }

    /// Checks every value and fills in defaults.
    pub fn resolve(self, available_cores: usize) -> Result<BrokerConfig, ConfigError> {
        let runtime = resolve_runtime(&self)?;
        let listen_text = self
            .listen
            .clone()
            .unwrap_or_else(|| "127.0.0.1:9092".to_owned());
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
            retention_bytes: self.retention_bytes.unwrap_or(defaults.retention_bytes),
            segment_ms: self.segment_ms.unwrap_or(defaults.segment_ms),
            max_message_bytes: self.message_max_bytes.unwrap_or(defaults.max_message_bytes),
            max_pending_bytes: self.max_pending_bytes.unwrap_or(defaults.max_pending_bytes),
            group_commit_window: self
                .group_commit_window_us
                .map(Duration::from_micros)
                .unwrap_or(defaults.group_commit_window),
            cleaner: resolve_cleaner(&self, cores)?,
            ..defaults
        };
        check(
            "max_pending_bytes",
            log.max_pending_bytes >= 1024 * 1024,
            "must be at least 1048576",
        )?;
        check(
            "retention_ms",
            log.retention_ms >= -1,
            "must be at least -1",
        )?;
        check(
            "retention_bytes",
            log.retention_bytes >= -1,
            "must be at least -1",
        )?;
        check("segment_ms", log.segment_ms >= 1, "must be at least 1")?;
        let retention_check_interval_ms = self
            .retention_check_interval_ms
            .unwrap_or(limits::DEFAULT_RETENTION_CHECK_INTERVAL_MS);
        check(
            "retention_check_interval_ms",
            retention_check_interval_ms >= 1,
            "must be at least 1",
        )?;
        check(
            "group_commit_window_us",
            log.group_commit_window <= limits::MAX_GROUP_COMMIT_WINDOW,
            "must be at most 100000 (100 ms)",
        )?;
        let socket_buffers = SocketBuffers {
            send_bytes: socket_buffer("socket_send_buffer_bytes", self.socket_send_buffer_bytes)?,
            receive_bytes: socket_buffer(
                "socket_receive_buffer_bytes",
                self.socket_receive_buffer_bytes,
            )?,
        };
        let metrics_listen = match &self.metrics_listen {
            None => None,
            Some(text) => Some(text.parse().map_err(|e| ConfigError::Invalid {
                key: "metrics_listen",
                reason: format!("{text:?} is not host:port ({e})"),
            })?),
        };
        let fetch_debounce = Duration::from_millis(self.fetch_debounce_ms.unwrap_or(0));
        check(
            "fetch_debounce_ms",
            fetch_debounce.as_millis() <= limits::MAX_FETCH_WAIT_MS as u128,
            "must be at most 30000",
        )?;
        check(
            "segment_bytes",
            log.segment_bytes >= 14 && log.segment_bytes <= u32::MAX as u64,
            "must be between 14 and 4294967295",
        )?;
        let (controller_voters, controller_listen) = Self::resolve_controller(&self)?;
        let config = BrokerConfig {
            controller_voters,
            controller_listen,
            rack: self.rack.clone().filter(|r| !r.is_empty()),
            broker_heartbeat_interval_ms: self.broker_heartbeat_interval_ms.unwrap_or(2000),
            broker_session_timeout_ms: self.broker_session_timeout_ms.unwrap_or(9000),
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
            retention_check_interval_ms,
            group_initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms.unwrap_or(3000),
            group_min_session_timeout_ms: self.group_min_session_timeout_ms.unwrap_or(6000),
            group_max_session_timeout_ms: self.group_max_session_timeout_ms.unwrap_or(1_800_000),
            offsets_topic_num_partitions: self.offsets_topic_num_partitions.unwrap_or(50),
            offsets_topic_replication_factor: self.offsets_topic_replication_factor.unwrap_or(3),
            offsets_retention_minutes: self.offsets_retention_minutes.unwrap_or(7 * 24 * 60),
            runtime,
            socket_buffers,
            fetch_debounce,
            metrics_listen,
            transaction_state_log_num_partitions: self
                .transaction_state_log_num_partitions
                .unwrap_or(50),
            transaction_state_log_replication_factor: self
                .transaction_state_log_replication_factor
                .unwrap_or(3),
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
            replica_lag_time_max_ms: self.replica_lag_time_max_ms.unwrap_or(30_000),
            auto_leader_rebalance_enable: self.auto_leader_rebalance_enable.unwrap_or(true),
            leader_imbalance_check_interval_seconds: self
                .leader_imbalance_check_interval_seconds
                .unwrap_or(300),
            leader_replication_throttled_rate: self
                .leader_replication_throttled_rate
                .unwrap_or(i64::MAX as u64),
            follower_replication_throttled_rate: self
                .follower_replication_throttled_rate
                .unwrap_or(i64::MAX as u64),
        };
        check(
            "leader_imbalance_check_interval_seconds",
            config.leader_imbalance_check_interval_seconds >= 1,
            "must be at least 1",
        )?;
        check(
            "replica_lag_time_max_ms",
            config.replica_lag_time_max_ms >= 1,
            "must be at least 1",
        )?;
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
            "offsets_topic_replication_factor",
            config.offsets_topic_replication_factor >= 1,
            "must be at least 1",
        )?;
        check(
            "transaction_state_log_replication_factor",
            config.transaction_state_log_replication_factor >= 1,
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
            "broker_heartbeat_interval_ms",
            config.broker_heartbeat_interval_ms >= 1,
            "must be at least 1",
        )?;
        check(
            "broker_session_timeout_ms",
            config.broker_session_timeout_ms > config.broker_heartbeat_interval_ms,
            "must be greater than broker_heartbeat_interval_ms",
        )?;
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

fn resolve_runtime(file: &ConfigFile) -> Result<RuntimeSettings, ConfigError> {
    let defaults = RuntimeSettings::default();
    let runtime = RuntimeSettings {
        produce_shares: file.produce_shares.unwrap_or(defaults.produce_shares),
        fetch_shares: file.fetch_shares.unwrap_or(defaults.fetch_shares),
        spin_before_park: file
            .spin_before_park_us
            .map(Duration::from_micros)
            .unwrap_or(defaults.spin_before_park),
    };
    let shares_ok = |s: usize| (1..=limits::MAX_TASK_SHARES).contains(&s);
    check(
        "produce_shares",
        shares_ok(runtime.produce_shares),
        "must be between 1 and 1000",
    )?;
    check(
        "fetch_shares",
        shares_ok(runtime.fetch_shares),
        "must be between 1 and 1000",
    )?;
    check(
        "spin_before_park_us",
        runtime.spin_before_park <= limits::MAX_SPIN_BEFORE_PARK,
        "must be at most 10000 (10 ms)",
    )?;
    Ok(runtime)
}

/// Kafka's convention: -1 keeps the operating system's default; otherwise at least 1 KiB.
fn socket_buffer(key: &'static str, value: Option<i32>) -> Result<Option<usize>, ConfigError> {
    match value {
        None | Some(-1) => Ok(None),
        Some(n)
            if (limits::MIN_SOCKET_BUFFER_BYTES..=i32::MAX as usize)
                .contains(&usize::try_from(n).unwrap_or(0)) =>
        {
            Ok(Some(n as usize))
        }
        Some(_) => Err(ConfigError::Invalid {
            key,
            reason: "must be -1 (the kernel's default) or at least 1024".into(),
        }),
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

    #[test]
    fn a_node_outside_the_voters_is_an_observer() {
        let voters = "controller_voters = \"1@127.0.0.1:9093,2@127.0.0.1:9094\"";
        let voter = ConfigFile::parse(&format!("node_id = 2\n{voters}"))
            .unwrap()
            .resolve(1)
            .unwrap();
        assert!(voter.own_voter().is_some() && !voter.is_observer());
        let observer = ConfigFile::parse(&format!("node_id = 4\n{voters}"))
            .unwrap()
            .resolve(1)
            .unwrap();
        assert!(observer.own_voter().is_none() && observer.is_observer());
        let single = ConfigFile::parse("node_id = 4")
            .unwrap()
            .resolve(1)
            .unwrap();
        assert!(!single.is_observer());
    }
}

#[cfg(test)]
mod profile_tests;
