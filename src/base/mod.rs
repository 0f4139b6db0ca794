//! Foundation types shared by every module: identifiers, offsets, limits, the clock and the
//! Kafka error codes. Uses nothing else in the crate; everything else may use it.

mod clock;
mod error;
mod ids;
pub mod limits;

pub use clock::{Clock, SystemClock};
pub use error::{KafkaCode, KafkaError};
pub use ids::{NodeId, ShardId, TopicPartition};
