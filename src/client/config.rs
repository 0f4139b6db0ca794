//! The client's settings, named and defaulted as the Java client names them
//! (`linger.ms`, `batch.size`, `acks`, ...), each settable from a `key=value` string so the
//! CLI's `-X key=value` reaches every one. Also the client's own fixed bounds.

use std::time::Duration;

use super::error::ClientError;
use super::retry::{Backoff, RetryPolicy};

/// Requests one connection may have sent and not yet seen answered.
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 64;
/// Largest response frame the client accepts (a fetch answer is bounded by `fetch.max.bytes`).
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Settings every client (producer, consumer, admin) shares.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `bootstrap.servers`: host:port pairs, any of which leads to the cluster.
    pub bootstrap_servers: Vec<String>,
    pub client_id: String,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// How long metadata-dependent calls keep retrying retriable errors.
    pub default_api_timeout: Duration,
    /// Whether a Metadata request may create a missing topic (Kafka's
    /// `allow.auto.create.topics`). Off: a missing topic is an error the user sees.
    pub allow_auto_create_topics: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: vec!["localhost:9092".into()],
            client_id: "sluice".into(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1000),
            default_api_timeout: Duration::from_secs(60),
            allow_auto_create_topics: false,
        }
    }
}

impl ClientConfig {
    /// A config for a comma-separated `host:port` list.
    pub fn with_bootstrap(servers: &str) -> Result<Self, ClientError> {
        let list: Vec<String> = servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if list.is_empty() {
            return Err(ClientError::Config(
                "no bootstrap server given (expected host:port)".into(),
            ));
        }
        Ok(Self {
            bootstrap_servers: list,
            ..Self::default()
        })
    }

    /// The retry policy for metadata and admin calls.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff {
                initial: self.retry_backoff,
                max: self.retry_backoff_max,
            },
            max_retries: u32::MAX,
            deadline: self.default_api_timeout,
        }
    }

    /// Sets a shared setting by its Kafka name; `Ok(false)` if the name is not a shared one.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, ClientError> {
        match key {
            "bootstrap.servers" => {
                self.bootstrap_servers = Self::with_bootstrap(value)?.bootstrap_servers
            }
            "client.id" => self.client_id = value.to_owned(),
            "request.timeout.ms" => self.request_timeout = millis(key, value)?,
            "socket.connection.setup.timeout.ms" => self.connect_timeout = millis(key, value)?,
            "retry.backoff.ms" => self.retry_backoff = millis(key, value)?,
            "retry.backoff.max.ms" => self.retry_backoff_max = millis(key, value)?,
            "default.api.timeout.ms" => self.default_api_timeout = millis(key, value)?,
            "allow.auto.create.topics" => self.allow_auto_create_topics = boolean(key, value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// How many replicas must have a batch before the broker answers a produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    None,
    Leader,
    All,
}

impl Acks {
    pub fn wire(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Leader => 1,
            Self::All => -1,
        }
    }

    pub fn parse(s: &str) -> Result<Self, ClientError> {
        match s {
            "0" => Ok(Self::None),
            "1" => Ok(Self::Leader),
            "all" | "-1" => Ok(Self::All),
            _ => Err(ClientError::Config(format!(
                "acks must be 0, 1 or all, not '{s}'"
            ))),
        }
    }
}

/// A batch compression codec; the discriminant is Kafka's attribute value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Compression {
    pub fn parse(s: &str) -> Result<Self, ClientError> {
        match s {
            "none" | "uncompressed" => Ok(Self::None),
            "gzip" => Ok(Self::Gzip),
            "snappy" => Ok(Self::Snappy),
            "lz4" => Ok(Self::Lz4),
            "zstd" => Ok(Self::Zstd),
            _ => Err(ClientError::Config(format!(
                "compression must be none, gzip, snappy, lz4 or zstd, not '{s}'"
            ))),
        }
    }

    /// From the low three bits of a batch's attributes.
    pub fn from_attributes(attributes: i16) -> Option<Self> {
        match attributes & 0x07 {
            0 => Some(Self::None),
            1 => Some(Self::Gzip),
            2 => Some(Self::Snappy),
            3 => Some(Self::Lz4),
            4 => Some(Self::Zstd),
            _ => None,
        }
    }
}

/// Producer settings (Java names in the field docs).
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub client: ClientConfig,
    /// `acks`
    pub acks: Acks,
    /// `compression.type`
    pub compression: Compression,
    /// `linger.ms`: how long a batch waits for more records before it is sent.
    pub linger: Duration,
    /// `batch.size`: uncompressed bytes at which a partition's batch is sent.
    pub batch_size: usize,
    /// `max.in.flight.requests.per.connection`
    pub max_in_flight: usize,
    /// `retries`
    pub retries: u32,
    /// `delivery.timeout.ms`: from `send` to a delivery report, retries included.
    pub delivery_timeout: Duration,
    /// `max.request.size`: largest record and largest produce request.
    pub max_request_size: usize,
    /// `buffer.memory`: bytes of unsent records before `send` waits.
    pub buffer_memory: usize,
    /// `max.block.ms`: how long `send` waits for metadata or buffer space.
    pub max_block: Duration,
    /// `enable.idempotence`: batches carry a producer id and sequences, so the broker stores
    /// a retried batch once. Implies acks=all and at most 5 requests in flight. Off by
    /// default here (Kafka's Java client turns it on): `Producer::init` must run first.
    pub idempotence: bool,
    /// `transactional.id`: makes the producer transactional (and idempotent).
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms`: how long the coordinator lets a transaction stay open before
    /// it aborts it (Kafka's default, 60 s).
    pub transaction_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            acks: Acks::All,
            compression: Compression::None,
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            max_in_flight: 5,
            retries: u32::MAX,
            delivery_timeout: Duration::from_secs(120),
            max_request_size: 1024 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            max_block: Duration::from_secs(60),
            idempotence: false,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
        }
    }
}

impl ProducerConfig {
    /// Sets any producer (or shared) setting by its Kafka name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ClientError> {
        if self.client.set(key, value)? {
            return Ok(());
        }
        match key {
            "acks" | "request.required.acks" => self.acks = Acks::parse(value)?,
            "compression.type" | "compression.codec" => {
                self.compression = Compression::parse(value)?
            }
            "linger.ms" => self.linger = millis(key, value)?,
            "batch.size" => self.batch_size = positive(key, value)?,
            "max.in.flight.requests.per.connection" | "max.in.flight" => {
                self.max_in_flight =
                    positive::<usize>(key, value)?.min(MAX_IN_FLIGHT_PER_CONNECTION)
            }
            "retries" => self.retries = number(key, value)?,
            "delivery.timeout.ms" | "message.timeout.ms" => {
                self.delivery_timeout = millis(key, value)?
            }
            "max.request.size" => self.max_request_size = positive(key, value)?,
            "buffer.memory" => self.buffer_memory = positive(key, value)?,
            "max.block.ms" => self.max_block = millis(key, value)?,
            "enable.idempotence" => self.idempotence = boolean(key, value)?,
            "transactional.id" => {
                self.transactional_id = Some(value.to_owned()).filter(|v| !v.is_empty())
            }
            "transaction.timeout.ms" => self.transaction_timeout = millis(key, value)?,
            _ => return Err(unknown("producer", key)),
        }
        Ok(())
    }

    /// The retry policy for produce requests.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            deadline: self.delivery_timeout,
            max_retries: self.retries,
            ..self.client.retry_policy()
        }
    }
}

/// Where a consumer starts when it has no valid position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
    None,
}

impl OffsetReset {
    pub fn parse(s: &str) -> Result<Self, ClientError> {
        match s {
            "earliest" | "smallest" | "beginning" => Ok(Self::Earliest),
            "latest" | "largest" | "end" => Ok(Self::Latest),
            "none" | "error" => Ok(Self::None),
            _ => Err(ClientError::Config(format!(
                "auto.offset.reset must be earliest, latest or none, not '{s}'"
            ))),
        }
    }
}

/// Consumer settings (Java names in the field docs).
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub client: ClientConfig,
    /// `auto.offset.reset`
    pub auto_offset_reset: OffsetReset,
    /// `fetch.min.bytes`
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes`
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes`
    pub max_partition_fetch_bytes: i32,
    /// `fetch.max.wait.ms`
    pub fetch_max_wait: Duration,
    /// `max.poll.records`
    pub max_poll_records: usize,
    /// `check.crcs`
    pub check_crcs: bool,
    /// `isolation.level`: 0 read_uncommitted, 1 read_committed. With read_committed the
    /// broker stops fetches at the last stable offset and the consumer drops the records of
    /// aborted transactions.
    pub isolation_level: i8,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            auto_offset_reset: OffsetReset::Latest,
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            fetch_max_wait: Duration::from_millis(500),
            max_poll_records: 500,
            check_crcs: true,
            isolation_level: 0,
        }
    }
}

impl ConsumerConfig {
    /// Sets any consumer (or shared) setting by its Kafka name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ClientError> {
        if self.client.set(key, value)? {
            return Ok(());
        }
        match key {
            "auto.offset.reset" => self.auto_offset_reset = OffsetReset::parse(value)?,
            "fetch.min.bytes" => self.fetch_min_bytes = positive(key, value)?,
            "fetch.max.bytes" => self.fetch_max_bytes = positive(key, value)?,
            "max.partition.fetch.bytes" => self.max_partition_fetch_bytes = positive(key, value)?,
            "fetch.max.wait.ms" => self.fetch_max_wait = millis(key, value)?,
            "max.poll.records" => self.max_poll_records = positive(key, value)?,
            "check.crcs" => self.check_crcs = boolean(key, value)?,
            "isolation.level" => {
                self.isolation_level = match value {
                    "read_uncommitted" => 0,
                    "read_committed" => 1,
                    _ => {
                        return Err(ClientError::Config(format!(
                        "isolation.level must be read_uncommitted or read_committed, not '{value}'"
                    )))
                    }
                }
            }
            "group.id" | "enable.auto.commit" | "auto.commit.interval.ms" => {
                return Err(ClientError::Config(format!(
                    "{key}: consumer groups are not supported yet"
                )))
            }
            _ => return Err(unknown("consumer", key)),
        }
        Ok(())
    }
}

fn unknown(kind: &str, key: &str) -> ClientError {
    ClientError::Config(format!("unknown {kind} setting '{key}'"))
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ClientError> {
    value
        .trim()
        .parse()
        .map_err(|_| ClientError::Config(format!("{key} must be a number, not '{value}'")))
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(
    key: &str,
    value: &str,
) -> Result<T, ClientError> {
    let n: T = number(key, value)?;
    if n <= T::default() {
        return Err(ClientError::Config(format!(
            "{key} must be larger than 0, not '{value}'"
        )));
    }
    Ok(n)
}

fn millis(key: &str, value: &str) -> Result<Duration, ClientError> {
    Ok(Duration::from_millis(number(key, value)?))
}

fn boolean(key: &str, value: &str) -> Result<bool, ClientError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ClientError::Config(format!(
            "{key} must be true or false, not '{value}'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_settings_parse_by_kafka_name() {
        let mut c = ProducerConfig::default();
        c.set("acks", "1").unwrap();
        c.set("compression.type", "zstd").unwrap();
        c.set("linger.ms", "20").unwrap();
        c.set("batch.size", "1000").unwrap();
        c.set("client.id", "me").unwrap();
        assert_eq!(c.acks, Acks::Leader);
        assert_eq!(c.compression, Compression::Zstd);
        assert_eq!(c.linger, Duration::from_millis(20));
        assert_eq!(c.batch_size, 1000);
        assert_eq!(c.client.client_id, "me");
    }

    #[test]
    fn bad_settings_are_named_in_the_error() {
        let mut c = ProducerConfig::default();
        assert_eq!(
            c.set("nope", "1").unwrap_err().to_string(),
            "unknown producer setting 'nope'"
        );
        assert!(c
            .set("batch.size", "0")
            .unwrap_err()
            .to_string()
            .contains("larger than 0"));
        assert!(c
            .set("acks", "2")
            .unwrap_err()
            .to_string()
            .contains("0, 1 or all"));
    }

    #[test]
    fn bootstrap_list_is_split_on_commas() {
        let c = ClientConfig::with_bootstrap("a:1, b:2,").unwrap();
        assert_eq!(c.bootstrap_servers, vec!["a:1", "b:2"]);
        assert!(ClientConfig::with_bootstrap(" , ").is_err());
    }
}
