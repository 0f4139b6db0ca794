//! Producer state of one partition (KIP-98), sans-io: for every producer id that wrote here,
//! its epoch, the sequence ranges and offsets of its last five batches, and its open
//! transaction. It decides whether an idempotent batch is new, a retry of one already stored
//! (answered with the original offsets, never appended twice), out of order, or from a fenced
//! epoch; it tracks open transactions so the partition can compute its last stable offset, and
//! turns markers into aborted-transaction entries.
//!
//! Contract: `check_append` then, only if the batch is appended, `on_append` with the offsets
//! the log gave it; both on the partition's owner shard, in append order. The state can be
//! rebuilt from the log alone by replaying batches (`on_append` / `on_marker`), which is what
//! recovery does after loading the last snapshot ([`ProducerSnapshot`]).

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::base::{KafkaCode, KafkaError};
use crate::protocol::batch::{self, BatchHeader, ControlType};

/// Batches per producer whose sequence ranges are remembered for duplicate detection: the
/// most a producer may have in flight (`max.in.flight.requests.per.connection` ≤ 5).
pub const BATCHES_PER_PRODUCER: usize = 5;

/// One stored batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

/// What the partition knows of one producer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
    /// Broker time of the producer's last write here (expiry counts from it).
    pub last_append_ms: i64,
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction on this partition.
    pub txn_first_offset: Option<i64>,
}

impl ProducerEntry {
    fn new(epoch: i16) -> Self {
        Self {
            epoch,
            batches: VecDeque::new(),
            last_append_ms: 0,
            coordinator_epoch: -1,
            txn_first_offset: None,
        }
    }

    fn last_seq(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }

    fn duplicate_of(&self, first_seq: i32, last_seq: i32) -> Option<BatchMeta> {
        self.batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            .copied()
    }

    /// A higher epoch starts the producer's sequences over.
    fn move_to_epoch(&mut self, epoch: i16) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
    }
}

/// An aborted transaction as read_committed fetches report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
}

/// The verdict on an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendCheck {
    /// Not seen before: append it.
    New,
    /// A retry of a batch already in the log, at these offsets.
    Duplicate(BatchMeta),
}

/// The identity and sequence range of a batch, taken from its header before offsets exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchIdentity {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
    pub transactional: bool,
}

impl BatchIdentity {
    pub fn of(h: &BatchHeader) -> Self {
        Self {
            producer_id: h.producer_id.get(),
            epoch: h.producer_epoch.get(),
            first_seq: h.base_sequence.get(),
            last_seq: h.last_sequence(),
            transactional: h.is_transactional(),
        }
    }

    fn idempotent(&self) -> bool {
        self.producer_id >= 0
    }
}

/// All producers of one partition.
#[derive(Debug, Default, Clone)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: first offset → producer id.
    ongoing: BTreeMap<i64, i64>,
}

impl ProducerStateTable {
    /// Decides what to do with a batch a producer sent.
    pub fn check_append(&self, b: &BatchIdentity) -> Result<AppendCheck, KafkaError> {
        if !b.idempotent() {
            return Ok(AppendCheck::New);
        }
        let Some(entry) = self.producers.get(&b.producer_id) else {
            if b.first_seq != 0 {
                return Err(KafkaError::new(
                    KafkaCode::UnknownProducerId,
                    format!(
                        "Found no record of producerId={} on the broker; its first batch here has sequence {}",
                        b.producer_id, b.first_seq
                    ),
                ));
            }
            return Ok(AppendCheck::New);
        };
        if b.epoch < entry.epoch {
            return Err(KafkaError::new(
                KafkaCode::InvalidProducerEpoch,
                format!(
                    "Epoch of producer {} is {}, which is smaller than the last seen epoch {}",
                    b.producer_id, b.epoch, entry.epoch
                ),
            ));
        }
        if b.epoch == entry.epoch {
            if let Some(original) = entry.duplicate_of(b.first_seq, b.last_seq) {
                return Ok(AppendCheck::Duplicate(original));
            }
        }
        self.check_sequence(entry, b)?;
        if !b.transactional && entry.txn_first_offset.is_some() {
            return Err(KafkaError::new(
                KafkaCode::InvalidTxnState,
                format!(
                    "Expected transactional write from producer {} with an open transaction",
                    b.producer_id
                ),
            ));
        }
        Ok(AppendCheck::New)
    }

    /// Checks a batch a coordinator writes (transactional offset commits): no sequence
    /// numbers, but a fenced epoch is still refused.
    pub fn check_coordinator_append(&self, b: &BatchIdentity) -> Result<(), KafkaError> {
        match self.producers.get(&b.producer_id) {
            Some(entry) if b.idempotent() && b.epoch < entry.epoch => Err(KafkaError::new(
                KafkaCode::InvalidProducerEpoch,
                format!(
                    "Epoch of producer {} is {}, which is smaller than the last seen epoch {}",
                    b.producer_id, b.epoch, entry.epoch
                ),
            )),
            _ => Ok(()),
        }
    }

    fn check_sequence(&self, entry: &ProducerEntry, b: &BatchIdentity) -> Result<(), KafkaError> {
        let expected = if b.epoch != entry.epoch {
            0
        } else {
            batch::increment_sequence(entry.last_seq(), 1)
        };
        // A producer known only from a marker has no batch in this epoch: it starts at 0.
        if b.first_seq == expected {
            return Ok(());
        }
        Err(KafkaError::new(
            KafkaCode::OutOfOrderSequenceNumber,
            format!(
                "Out of order sequence number for producer {} (epoch {}): {} (incoming seq. number), {} (current end sequence number)",
                b.producer_id,
                b.epoch,
                b.first_seq,
                entry.last_seq()
            ),
        ))
    }

    /// Records a batch the log accepted at `[base_offset, last_offset]`.
    pub fn on_append(&mut self, b: &BatchIdentity, base_offset: i64, last_offset: i64, now: i64) {
        if !b.idempotent() {
            return;
        }
        let entry = self
            .producers
            .entry(b.producer_id)
            .or_insert_with(|| ProducerEntry::new(b.epoch));
        entry.move_to_epoch(b.epoch);
        entry.batches.push_back(BatchMeta {
            first_seq: b.first_seq,
            last_seq: b.last_seq,
            base_offset,
            last_offset,
        });
        while entry.batches.len() > BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
        entry.last_append_ms = now;
        if b.transactional && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(base_offset);
            self.ongoing.insert(base_offset, b.producer_id);
        }
    }

    /// Checks a marker the transaction coordinator is about to write.
    pub fn check_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), KafkaError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if epoch < entry.epoch {
            return Err(KafkaError::new(
                KafkaCode::InvalidProducerEpoch,
                format!(
                    "Marker epoch {epoch} of producer {producer_id} is older than {}",
                    entry.epoch
                ),
            ));
        }
        if coordinator_epoch < entry.coordinator_epoch {
            return Err(KafkaError::new(
                KafkaCode::TransactionCoordinatorFenced,
                format!(
                    "Marker from coordinator epoch {coordinator_epoch} is older than {}",
                    entry.coordinator_epoch
                ),
            ));
        }
        Ok(())
    }

    /// Records a marker written at `offset`; an abort of an open transaction yields the entry
    /// read_committed fetches need.
    pub fn on_marker(
        &mut self,
        producer_id: i64,
        epoch: i16,
        coordinator_epoch: i32,
        kind: ControlType,
        offset: i64,
        now: i64,
    ) -> Option<AbortedTxn> {
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry::new(epoch));
        entry.move_to_epoch(epoch.max(entry.epoch));
        entry.coordinator_epoch = entry.coordinator_epoch.max(coordinator_epoch);
        entry.last_append_ms = now;
        let first_offset = entry.txn_first_offset.take()?;
        self.ongoing.remove(&first_offset);
        (kind == ControlType::Abort).then_some(AbortedTxn {
            producer_id,
            first_offset,
            last_offset: offset,
        })
    }

    /// The first offset of the oldest open transaction: the last stable offset bound.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Removes producers idle for `expiration_ms` that have no open transaction
    /// (`producer.id.expiration.ms`). Returns how many were removed.
    pub fn expire(&mut self, now: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| e.txn_first_offset.is_some() || now - e.last_append_ms < expiration_ms);
        before - self.producers.len()
    }

    pub fn producer(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every producer, for DescribeProducers.
    pub fn producers(&self) -> impl Iterator<Item = (&i64, &ProducerEntry)> {
        self.producers.iter()
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The state as of log offset `next_offset`, to be written to disk.
    pub fn snapshot(&self, next_offset: i64) -> ProducerSnapshot {
        ProducerSnapshot {
            next_offset,
            producers: self
                .producers
                .iter()
                .map(|(id, e)| (*id, e.clone()))
                .collect(),
        }
    }

    pub fn from_snapshot(snap: ProducerSnapshot) -> Self {
        let mut table = Self::default();
        for (id, entry) in snap.producers {
            if let Some(first) = entry.txn_first_offset {
                table.ongoing.insert(first, id);
            }
            table.producers.insert(id, entry);
        }
        table
    }
}

/// The producer state of a partition as of an offset: every batch below `next_offset` is in
/// it, none at or above.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerSnapshot {
    pub next_offset: i64,
    pub producers: Vec<(i64, ProducerEntry)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(pid: i64, epoch: i16, first: i32, last: i32) -> BatchIdentity {
        BatchIdentity {
            producer_id: pid,
            epoch,
            first_seq: first,
            last_seq: last,
            transactional: false,
        }
    }

    fn txn(pid: i64, epoch: i16, first: i32, last: i32) -> BatchIdentity {
        BatchIdentity {
            transactional: true,
            ..id(pid, epoch, first, last)
        }
    }

    fn code(r: Result<AppendCheck, KafkaError>) -> KafkaCode {
        r.unwrap_err().code
    }

    #[test]
    fn retried_batch_is_a_duplicate_with_its_original_offsets() {
        let mut t = ProducerStateTable::default();
        let b = id(1, 0, 0, 9);
        assert_eq!(t.check_append(&b), Ok(AppendCheck::New));
        t.on_append(&b, 100, 109, 0);
        match t.check_append(&b).unwrap() {
            AppendCheck::Duplicate(m) => assert_eq!((m.base_offset, m.last_offset), (100, 109)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut t = ProducerStateTable::default();
        for i in 0..6 {
            let b = id(1, 0, i * 10, i * 10 + 9);
            t.on_append(&b, i as i64 * 10, i as i64 * 10 + 9, 0);
        }
        // The first batch fell out of the window: its retry is out of order now.
        assert_eq!(
            code(t.check_append(&id(1, 0, 0, 9))),
            KafkaCode::OutOfOrderSequenceNumber
        );
        assert!(matches!(
            t.check_append(&id(1, 0, 10, 19)),
            Ok(AppendCheck::Duplicate(_))
        ));
    }

    #[test]
    fn gap_in_sequence_is_out_of_order() {
        let mut t = ProducerStateTable::default();
        t.on_append(&id(1, 0, 0, 4), 0, 4, 0);
        assert_eq!(
            code(t.check_append(&id(1, 0, 6, 7))),
            KafkaCode::OutOfOrderSequenceNumber
        );
        assert_eq!(t.check_append(&id(1, 0, 5, 7)), Ok(AppendCheck::New));
    }

    #[test]
    fn unknown_producer_must_start_at_sequence_zero() {
        let t = ProducerStateTable::default();
        assert_eq!(
            code(t.check_append(&id(9, 0, 42, 43))),
            KafkaCode::UnknownProducerId
        );
        assert_eq!(t.check_append(&id(9, 0, 0, 1)), Ok(AppendCheck::New));
    }

    #[test]
    fn stale_epoch_is_refused_and_new_epoch_restarts_sequences() {
        let mut t = ProducerStateTable::default();
        t.on_append(&id(1, 3, 0, 4), 0, 4, 0);
        assert_eq!(
            code(t.check_append(&id(1, 2, 5, 6))),
            KafkaCode::InvalidProducerEpoch
        );
        assert_eq!(
            code(t.check_append(&id(1, 4, 5, 6))),
            KafkaCode::OutOfOrderSequenceNumber
        );
        assert_eq!(t.check_append(&id(1, 4, 0, 1)), Ok(AppendCheck::New));
    }

    #[test]
    fn sequence_wraps_from_i32_max_to_zero() {
        let mut t = ProducerStateTable::default();
        t.on_append(&id(1, 0, i32::MAX - 1, i32::MAX), 0, 1, 0);
        assert_eq!(t.check_append(&id(1, 0, 0, 3)), Ok(AppendCheck::New));
    }

    #[test]
    fn open_transactions_bound_the_stable_offset_until_their_marker() {
        let mut t = ProducerStateTable::default();
        t.on_append(&txn(1, 0, 0, 1), 10, 11, 0);
        t.on_append(&txn(2, 0, 0, 0), 12, 12, 0);
        t.on_append(&txn(1, 0, 2, 3), 13, 14, 0);
        assert_eq!(t.first_unstable_offset(), Some(10));
        assert_eq!(t.on_marker(1, 0, 0, ControlType::Commit, 15, 0), None);
        assert_eq!(t.first_unstable_offset(), Some(12));
        let aborted = t.on_marker(2, 0, 0, ControlType::Abort, 16, 0).unwrap();
        assert_eq!((aborted.first_offset, aborted.last_offset), (12, 16));
        assert_eq!(t.first_unstable_offset(), None);
    }

    #[test]
    fn non_transactional_write_inside_a_transaction_is_invalid_txn_state() {
        let mut t = ProducerStateTable::default();
        t.on_append(&txn(1, 0, 0, 1), 0, 1, 0);
        assert_eq!(
            code(t.check_append(&id(1, 0, 2, 2))),
            KafkaCode::InvalidTxnState
        );
    }

    #[test]
    fn marker_with_a_bumped_epoch_fences_the_old_one() {
        let mut t = ProducerStateTable::default();
        t.on_append(&txn(1, 0, 0, 1), 0, 1, 0);
        t.on_marker(1, 1, 0, ControlType::Abort, 2, 0);
        assert_eq!(
            code(t.check_append(&txn(1, 0, 2, 3))),
            KafkaCode::InvalidProducerEpoch
        );
        assert_eq!(t.check_append(&txn(1, 1, 0, 0)), Ok(AppendCheck::New));
        assert!(t.check_marker(1, 0, 0).is_err());
        assert!(t.check_marker(1, 1, 0).is_ok());
    }

    #[test]
    fn idle_producers_expire_but_not_inside_a_transaction() {
        let mut t = ProducerStateTable::default();
        t.on_append(&id(1, 0, 0, 0), 0, 0, 1_000);
        t.on_append(&txn(2, 0, 0, 0), 1, 1, 1_000);
        assert_eq!(t.expire(1_000 + 500, 1_000), 0);
        assert_eq!(t.expire(1_000 + 1_000, 1_000), 1);
        assert!(t.producer(1).is_none() && t.producer(2).is_some());
    }

    #[test]
    fn snapshot_round_trip_keeps_open_transactions() {
        let mut t = ProducerStateTable::default();
        t.on_append(&txn(1, 0, 0, 1), 5, 6, 0);
        t.on_append(&id(2, 0, 0, 0), 7, 7, 0);
        let snap = t.snapshot(8);
        let json = serde_json::to_vec(&snap).unwrap();
        let back = ProducerStateTable::from_snapshot(serde_json::from_slice(&json).unwrap());
        assert_eq!(back.first_unstable_offset(), Some(5));
        assert!(matches!(
            back.check_append(&id(2, 0, 0, 0)),
            Ok(AppendCheck::Duplicate(_))
        ));
    }
}
