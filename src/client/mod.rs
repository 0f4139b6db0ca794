//! A Kafka client on sluice's runtime: the producer, consumer and admin client behind the
//! `sluice` command line, the benchmark and (later) the follower fetchers. It speaks plain
//! Kafka, so it works against any Kafka-compatible broker, not only sluice.
//!
//! Layers, lowest first: [`conn`] (one TCP connection: framing, pipelining, correlation ids,
//! ApiVersions negotiation), [`cluster`] (bootstrap, metadata cache, one connection per broker,
//! retries), then [`producer`], [`consumer`] and [`admin`]. Pure pieces live in their own
//! files and are unit-tested without a broker: the murmur2 partitioner, the retry policy,
//! batch encoding ([`batch`]) and decoding ([`decode`]), version negotiation.
//!
//! Uses `base`, `protocol` and `runtime` only. Everything is single-threaded: a client lives
//! on the shard (executor) that created it, and no `RefCell` borrow is held across an await.

pub mod admin;
pub mod batch;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod consumer;
pub mod decode;
pub mod error;
pub mod group;
pub mod group_admin;
pub mod metadata;
pub mod murmur2;
mod notify;
pub mod producer;
pub mod reassign_admin;
pub mod retry;
mod rng;
pub mod txn_admin;
pub mod versions;

pub use admin::{
    Admin, ClusterDescription, ConfigAlteration, ConfigEntry, ConfigResource, NewTopic,
};
pub use cluster::Client;
pub use config::{Acks, ClientConfig, Compression, ConsumerConfig, OffsetReset, ProducerConfig};
pub use consumer::Consumer;
pub use decode::{ConsumerRecord, Header, TimestampType};
pub use error::{ClientError, KafkaApiError};
pub use metadata::{BrokerInfo, ClusterMetadata, PartitionInfo, TopicInfo};
pub use producer::{DeliveryFuture, Producer, ProducerRecord, RecordMetadata};
