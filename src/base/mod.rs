//! Foundation types shared by every module: identifiers, limits, the clock and the Kafka
//! error codes. Offsets are plain `i64`s, as on the wire (a newtype would be converted back at
//! every protocol boundary). Uses nothing else in the crate; everything else may use it.

mod clock;
mod error;
mod ids;
pub mod limits;
mod records;

pub use clock::{Clock, SystemClock};
pub use error::{KafkaCode, KafkaError};
pub use ids::{NodeId, ShardId, TopicPartition};
pub use records::Records;
