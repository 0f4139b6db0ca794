//! Every bound the broker keeps, named in one place. Configurable limits have their defaults
//! here and their setting in `config/`.

/// Kafka's `message.max.bytes` default: the largest record batch a produce may carry.
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1024 * 1024 + 12;
/// Kafka's `socket.request.max.bytes` default: the largest request frame accepted.
pub const DEFAULT_SOCKET_REQUEST_MAX_BYTES: usize = 100 * 1024 * 1024;
/// Kafka's `segment.bytes` default.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1024 * 1024 * 1024;
/// Kafka's `index.interval.bytes` default.
pub const DEFAULT_INDEX_INTERVAL_BYTES: u64 = 4096;
/// Kafka's `retention.ms` default (7 days).
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// Per-partition bytes of recent batches kept in memory for tail fetches.
pub const DEFAULT_TAIL_CACHE_BYTES: usize = 8 * 1024 * 1024;
/// Requests one connection may have accepted but not yet answered.
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 64;
/// Messages a cross-shard channel holds before the sender waits.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;
/// Longest a fetch may park waiting for data, whatever the client asks.
pub const MAX_FETCH_WAIT_MS: i64 = 30_000;
/// Kafka's limit on topic name length.
pub const MAX_TOPIC_NAME_LEN: usize = 249;
/// Most partitions one topic may be created with.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 100_000;
/// Size of one disk read when scanning a segment at recovery.
pub const RECOVERY_READ_CHUNK: usize = 1024 * 1024;
/// Broker-wide cap on open client connections (Kafka's `max.connections`; Kafka leaves it
/// unbounded): past it, new connections are closed at once, so a connection storm cannot
/// exhaust file descriptors and per-connection buffers.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Broker-wide cap on the bytes of requests read but not yet answered (Kafka's
/// `queued.max.request.bytes`, unbounded in Kafka), split evenly between shards. A connection
/// whose next request does not fit waits before reading more, so TCP pushes back.
pub const DEFAULT_QUEUED_MAX_REQUEST_BYTES: usize = 512 * 1024 * 1024;
/// Kafka's broker `fetch.max.bytes` default: the most record bytes one fetch response carries,
/// whatever the request asks.
pub const DEFAULT_FETCH_MAX_BYTES: usize = 55 * 1024 * 1024;
