//! sluice: a Kafka-compatible, thread-per-core event streaming broker.
//!
//! Modules are layered (see DESIGN.md §2 and `tests/layering.rs`): each may use only the
//! modules listed before it here.

pub mod base;
pub mod config;
pub mod metrics;
pub mod runtime;
pub mod protocol;
pub mod client;
pub mod log;
pub mod partition;
pub mod shard;
pub mod controller;
pub mod router;
pub mod replication;
pub mod group;
pub mod txn;
pub mod server;
pub mod bench;
pub mod tune;
pub mod cli;
