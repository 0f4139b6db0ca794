//! The Kafka wire protocol, sans-io: frames, request decoding and response encoding (through
//! the `kafka-protocol` crate), the table of API versions the broker advertises, and zero-copy
//! views and validation of RecordBatch v2 headers. No async, no sockets: every function takes
//! bytes and returns bytes or values. Uses only `base`.

pub mod batch;
pub mod codec;
pub mod frame;
pub mod pieces;
pub mod refusal;
pub mod rewrite;
pub mod versions;

pub use kafka_protocol::messages;
pub use kafka_protocol::protocol::StrBytes;
pub use kafka_protocol::records;
