//! The state of one transactional id, as Kafka's transaction coordinator keeps it and as it is
//! stored in `__transaction_state`.

use std::collections::BTreeSet;

/// A transaction's state. The numbers are the ones Kafka writes to `__transaction_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnStatus {
    /// No transaction open; the producer has an id and epoch.
    Empty = 0,
    /// Partitions have been added; records may be in them.
    Ongoing = 1,
    /// The commit is decided and durable; markers are being written.
    PrepareCommit = 2,
    /// The abort is decided and durable; markers are being written.
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    /// Expired and removed.
    Dead = 6,
    PrepareEpochFence = 7,
}

impl TxnStatus {
    pub fn from_byte(b: i8) -> Option<Self> {
        Some(match b {
            0 => Self::Empty,
            1 => Self::Ongoing,
            2 => Self::PrepareCommit,
            3 => Self::PrepareAbort,
            4 => Self::CompleteCommit,
            5 => Self::CompleteAbort,
            6 => Self::Dead,
            7 => Self::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name ListTransactions and DescribeTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Ongoing => "Ongoing",
            Self::PrepareCommit => "PrepareCommit",
            Self::PrepareAbort => "PrepareAbort",
            Self::CompleteCommit => "CompleteCommit",
            Self::CompleteAbort => "CompleteAbort",
            Self::Dead => "Dead",
            Self::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// Markers are being written: the outcome is decided but not yet complete.
    pub fn is_preparing(self) -> bool {
        matches!(self, Self::PrepareCommit | Self::PrepareAbort)
    }

    /// No transaction is open or being completed.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            Self::Empty | Self::CompleteCommit | Self::CompleteAbort | Self::Dead
        )
    }
}

/// A transactional id's producer and its current transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The id before the last change of producer id (epoch exhaustion), or -1.
    pub prev_producer_id: i64,
    pub epoch: i16,
    /// The epoch before the last bump, so a retried InitProducerId is recognised, or -1.
    pub last_epoch: i16,
    pub timeout_ms: i32,
    pub status: TxnStatus,
    pub partitions: BTreeSet<(String, i32)>,
    pub start_ms: i64,
    pub update_ms: i64,
}

impl TxnMetadata {
    pub fn new(transactional_id: &str, producer_id: i64, timeout_ms: i32, now: i64) -> Self {
        Self {
            transactional_id: transactional_id.to_owned(),
            producer_id,
            prev_producer_id: -1,
            epoch: 0,
            last_epoch: -1,
            timeout_ms,
            status: TxnStatus::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            update_ms: now,
        }
    }
}
