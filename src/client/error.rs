//! The client's errors: one enum whose `Display` is a sentence a person can act on (the CLI
//! prints it after `Error: `), and the classification the retry policy needs (retriable or
//! not, whether the metadata is stale).

use std::fmt;

/// A Kafka error code returned by a broker, with the broker's message if it sent one and what
/// the client was doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaApiError {
    pub code: i16,
    pub message: Option<String>,
    /// What the request was about, e.g. "topic 'orders' partition 3".
    pub context: String,
}

impl KafkaApiError {
    pub fn new(code: i16, message: Option<String>, context: impl Into<String>) -> Self {
        let message = message.filter(|m| !m.trim().is_empty());
        Self {
            code,
            message,
            context: context.into(),
        }
    }

    /// Kafka's name for the code, e.g. `NOT_LEADER_OR_FOLLOWER`.
    pub fn name(&self) -> &'static str {
        code_info(self.code).0
    }
}

impl fmt::Display for KafkaApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = &self.message {
            return f.write_str(m);
        }
        let (name, text, _) = code_info(self.code);
        if self.context.is_empty() {
            write!(f, "{text} ({name})")
        } else {
            write!(f, "{}: {text} ({name})", self.context)
        }
    }
}

/// Everything that can go wrong in the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {addrs} ({reason}) — is the broker running?")]
    Unreachable { addrs: String, reason: String },
    #[error("lost the connection to {peer}: {reason}")]
    Disconnected { peer: String, reason: String },
    #[error("{api} request to {peer} got no answer within {ms} ms")]
    RequestTimeout { peer: String, api: String, ms: u64 },
    #[error("{0}")]
    Kafka(KafkaApiError),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("topic '{topic}' has {count} partitions, so there is no partition {partition}")]
    UnknownPartition {
        topic: String,
        partition: i32,
        count: usize,
    },
    #[error("{peer} does not support {what}")]
    Unsupported { peer: String, what: String },
    #[error("unexpected answer from {peer}: {reason}")]
    Protocol { peer: String, reason: String },
    #[error("corrupt records in {tp}: {reason}")]
    CorruptRecords { tp: String, reason: String },
    #[error("{0}")]
    Config(String),
    #[error("a record of {size} bytes is larger than max.request.size ({max} bytes)")]
    RecordTooLarge { size: usize, max: usize },
    #[error("offset {offset} is out of range for {tp} and auto.offset.reset is none")]
    OffsetOutOfRange { tp: String, offset: i64 },
    #[error("{0}")]
    TimedOut(String),
    #[error("the {0} is closed")]
    Closed(&'static str),
}

impl ClientError {
    /// Whether trying again (after a backoff, maybe on fresh metadata) can succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Disconnected { .. } | Self::RequestTimeout { .. } => {
                true
            }
            Self::Kafka(e) => code_info(e.code).2,
            _ => false,
        }
    }

    /// Whether the error means our view of leaders or brokers is out of date.
    pub fn needs_metadata_refresh(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Disconnected { .. } | Self::RequestTimeout { .. } => {
                true
            }
            Self::Kafka(e) => matches!(e.code, 3 | 5 | 6 | 41 | 74 | 75 | 100),
            _ => false,
        }
    }

    /// The Kafka error code, if a broker returned one.
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            Self::Kafka(e) => Some(e.code),
            _ => None,
        }
    }

    /// A broker's error code as a `Result`: `Ok(())` for 0.
    pub fn check(
        code: i16,
        message: Option<String>,
        context: impl FnOnce() -> String,
    ) -> Result<(), Self> {
        if code == 0 {
            return Ok(());
        }
        Err(Self::Kafka(KafkaApiError::new(code, message, context())))
    }
}

/// (name, description, retriable) for the Kafka error codes a client meets.
fn code_info(code: i16) -> (&'static str, &'static str, bool) {
    match code {
        -1 => (
            "UNKNOWN_SERVER_ERROR",
            "the broker hit an unexpected error",
            false,
        ),
        1 => (
            "OFFSET_OUT_OF_RANGE",
            "the offset is outside the partition's log",
            false,
        ),
        2 => (
            "CORRUPT_MESSAGE",
            "the record batch failed its CRC or is malformed",
            true,
        ),
        3 => (
            "UNKNOWN_TOPIC_OR_PARTITION",
            "the topic or partition does not exist",
            false,
        ),
        4 => ("INVALID_FETCH_SIZE", "the fetch size is invalid", false),
        5 => (
            "LEADER_NOT_AVAILABLE",
            "the partition has no leader right now",
            true,
        ),
        6 => (
            "NOT_LEADER_OR_FOLLOWER",
            "the broker is not the partition's leader",
            true,
        ),
        7 => (
            "REQUEST_TIMED_OUT",
            "the broker timed out the request",
            true,
        ),
        8 => ("BROKER_NOT_AVAILABLE", "the broker is not available", false),
        10 => (
            "MESSAGE_TOO_LARGE",
            "the batch is larger than the broker accepts (message.max.bytes)",
            false,
        ),
        13 => (
            "NETWORK_EXCEPTION",
            "the broker lost a connection while handling the request",
            true,
        ),
        14 => (
            "COORDINATOR_LOAD_IN_PROGRESS",
            "the coordinator is loading",
            true,
        ),
        15 => (
            "COORDINATOR_NOT_AVAILABLE",
            "the coordinator is not available",
            true,
        ),
        16 => ("NOT_COORDINATOR", "the broker is not the coordinator", true),
        17 => (
            "INVALID_TOPIC_EXCEPTION",
            "the topic name is invalid",
            false,
        ),
        18 => (
            "RECORD_LIST_TOO_LARGE",
            "the request is larger than the broker accepts",
            false,
        ),
        19 => (
            "NOT_ENOUGH_REPLICAS",
            "fewer in-sync replicas than min.insync.replicas",
            true,
        ),
        20 => (
            "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            "written, but fewer in-sync replicas than required",
            true,
        ),
        21 => ("INVALID_REQUIRED_ACKS", "acks must be 0, 1 or all", false),
        29 => (
            "TOPIC_AUTHORIZATION_FAILED",
            "not authorized to access the topic",
            false,
        ),
        31 => (
            "CLUSTER_AUTHORIZATION_FAILED",
            "not authorized for this cluster action",
            false,
        ),
        32 => (
            "INVALID_TIMESTAMP",
            "a record's timestamp is out of the accepted range",
            false,
        ),
        35 => (
            "UNSUPPORTED_VERSION",
            "the broker does not support this request version",
            false,
        ),
        36 => ("TOPIC_ALREADY_EXISTS", "the topic already exists", false),
        37 => (
            "INVALID_PARTITIONS",
            "the partition count is invalid",
            false,
        ),
        38 => (
            "INVALID_REPLICATION_FACTOR",
            "the replication factor is invalid",
            false,
        ),
        39 => (
            "INVALID_REPLICA_ASSIGNMENT",
            "the replica assignment is invalid",
            false,
        ),
        40 => ("INVALID_CONFIG", "a topic config is invalid", false),
        41 => ("NOT_CONTROLLER", "the broker is not the controller", true),
        42 => (
            "INVALID_REQUEST",
            "the broker found the request invalid",
            false,
        ),
        43 => (
            "UNSUPPORTED_FOR_MESSAGE_FORMAT",
            "not supported by the message format",
            false,
        ),
        45 => (
            "OUT_OF_ORDER_SEQUENCE_NUMBER",
            "the broker received a batch out of sequence",
            false,
        ),
        46 => (
            "DUPLICATE_SEQUENCE_NUMBER",
            "the broker already has this batch",
            false,
        ),
        47 => (
            "INVALID_PRODUCER_EPOCH",
            "the producer's epoch is stale",
            false,
        ),
        48 => (
            "INVALID_TXN_STATE",
            "the transaction is not in a state for this request",
            false,
        ),
        49 => (
            "INVALID_PRODUCER_ID_MAPPING",
            "the producer id does not match the transactional id",
            false,
        ),
        50 => (
            "INVALID_TRANSACTION_TIMEOUT",
            "the transaction timeout is out of the broker's range",
            false,
        ),
        51 => (
            "CONCURRENT_TRANSACTIONS",
            "the previous transaction of this id is still completing",
            true,
        ),
        56 => ("KAFKA_STORAGE_ERROR", "the broker had a disk error", true),
        59 => (
            "UNKNOWN_PRODUCER_ID",
            "the broker no longer knows this producer",
            false,
        ),
        73 => (
            "TOPIC_DELETION_DISABLED",
            "topic deletion is disabled on the broker",
            false,
        ),
        74 => (
            "FENCED_LEADER_EPOCH",
            "the leader epoch is older than the broker's",
            true,
        ),
        75 => (
            "UNKNOWN_LEADER_EPOCH",
            "the leader epoch is newer than the broker's",
            true,
        ),
        78 => (
            "OFFSET_NOT_AVAILABLE",
            "the offset is not available yet",
            true,
        ),
        85 => (
            "NO_REASSIGNMENT_IN_PROGRESS",
            "no reassignment of the partition is in progress",
            false,
        ),
        87 => (
            "INVALID_RECORD",
            "the broker refused a record as invalid",
            false,
        ),
        90 => (
            "PRODUCER_FENCED",
            "a newer producer with the same transactional id took over",
            false,
        ),
        100 => ("UNKNOWN_TOPIC_ID", "the topic id does not exist", true),
        102 => (
            "BROKER_ID_NOT_REGISTERED",
            "no broker with this id is registered with the controller",
            false,
        ),
        _ => (
            "UNKNOWN_ERROR_CODE",
            "the broker returned an error code this client does not know",
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_message_is_shown_as_is() {
        let e = ClientError::Kafka(KafkaApiError::new(
            38,
            Some("Replication factor: 2 larger than available brokers: 1.".into()),
            "topic 'a'",
        ));
        assert_eq!(
            e.to_string(),
            "Replication factor: 2 larger than available brokers: 1."
        );
        assert!(!e.is_retriable());
    }

    #[test]
    fn code_without_message_names_context_and_code() {
        let e = ClientError::Kafka(KafkaApiError::new(6, None, "topic 't' partition 0"));
        assert_eq!(
            e.to_string(),
            "topic 't' partition 0: the broker is not the partition's leader (NOT_LEADER_OR_FOLLOWER)"
        );
        assert!(e.is_retriable());
        assert!(e.needs_metadata_refresh());
    }

    #[test]
    fn unreachable_reads_as_a_hint() {
        let e = ClientError::Unreachable {
            addrs: "localhost:9092".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach localhost:9092 (connection refused) — is the broker running?"
        );
    }
}
