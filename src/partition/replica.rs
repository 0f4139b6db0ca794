//! The replica side of a partition: appending batches fetched from the leader, truncating a
//! divergent tail, the leader-epoch cache and the high watermark a replicated partition is
//! told.
//!
//! Contract: a follower's fetcher is the only writer of a follower partition, and it awaits
//! each [`Partition::truncate_to`] before appending again (the log refuses appends while it
//! truncates; producer state is rebuilt after the log is cut).

use bytes::Bytes;

use super::epoch_cache::EpochCache;
use super::producer_state::BatchIdentity;
use super::{
    corrupt, persist, recover_producer_state, storage_error, Appended, Partition, ReadResult,
    REPLAY_READ_BYTES,
};
use crate::base::{KafkaCode, KafkaError, Records};
use crate::log::{Log, LogError};
use crate::protocol::batch;

impl Partition {
    /// Appends batches fetched from the leader with their offsets and leader epochs as they
    /// are. The first must start at the local log end and each next one right after the one
    /// before (else OFFSET_OUT_OF_RANGE, nothing appended); each must be whole with a good
    /// CRC (else CORRUPT_MESSAGE, nothing appended). No producer checks are made (the leader
    /// made them); producer state, transaction outcomes, aborted transactions and the epoch
    /// cache are updated as on the leader. Durable per the log's durability policy: await
    /// [`Partition::wait_acked`] with acks 1 for that. Empty input appends nothing and
    /// answers the empty range at the log end. If the log refuses a batch midway (its
    /// pending bound), the batches before it stay appended: the log end says where the next
    /// fetch continues.
    pub fn append_replicated(&self, batches: Bytes) -> Result<Appended, KafkaError> {
        let log_end = self.log.offsets().log_end;
        let ranges = self.check_replicated(&batches, log_end)?;
        let mut appended = Appended {
            base_offset: log_end,
            last_offset: log_end - 1,
            log_append_time: None,
        };
        let now = self.log.now_ms();
        for (i, (start, len)) in ranges.into_iter().enumerate() {
            let one = batches.slice(start..start + len);
            let header = *batch::header(&one).map_err(corrupt)?;
            let stored = self
                .log
                .append_replicated(one.clone())
                .map_err(storage_error)?;
            self.note_epoch(header.partition_leader_epoch.get(), stored.base_offset);
            self.on_replicated_batch(&header, &one, now);
            self.snapshot_on_roll();
            if i == 0 {
                appended.base_offset = stored.base_offset;
            }
            appended.last_offset = stored.last_offset;
        }
        Ok(appended)
    }

    /// Checks fetched batches before any is appended: whole, CRC-valid, contiguous from
    /// `log_end`. Returns each batch's `(start, len)`.
    fn check_replicated(
        &self,
        batches: &Bytes,
        log_end: i64,
    ) -> Result<Vec<(usize, usize)>, KafkaError> {
        let mut ranges = Vec::new();
        let mut expected = log_end;
        for item in batch::BatchIter::new(batches) {
            let (h, start, len) = item.map_err(corrupt)?;
            if h.base_offset.get() != expected {
                return Err(KafkaError::new(
                    KafkaCode::OffsetOutOfRange,
                    format!(
                        "replicated batch at offset {} where {expected} was expected in {}",
                        h.base_offset.get(),
                        self.tp
                    ),
                ));
            }
            expected = h.last_offset() + 1;
            ranges.push((start, len));
        }
        Ok(ranges)
    }

    /// Producer state after a fetched batch: data batches as appended, markers as decided.
    fn on_replicated_batch(&self, header: &batch::BatchHeader, raw: &[u8], now: i64) {
        let offset = header.base_offset.get();
        if !header.is_control() {
            let id = BatchIdentity::of(header);
            let mut st = self.txn.borrow_mut();
            st.producers
                .on_append(&id, offset, header.last_offset(), now);
            return;
        }
        let Some((kind, coordinator_epoch)) = batch::read_marker(raw) else {
            return;
        };
        let (pid, epoch) = (header.producer_id.get(), header.producer_epoch.get());
        let aborted = self.txn.borrow_mut().producers.on_marker(
            pid,
            epoch,
            coordinator_epoch,
            kind,
            offset,
            now,
        );
        if let Some(txn) = aborted {
            self.record_abort(txn);
        }
    }

    /// Notes a batch of `epoch` appended at `offset`; a new epoch is checkpointed.
    pub(super) fn note_epoch(&self, epoch: i32, offset: i64) {
        if !self.epochs.borrow_mut().on_batch(epoch, offset) {
            return;
        }
        let cache = self.epochs.borrow().clone();
        self.chain_disk_write("leader-epoch checkpoint", move |dir| {
            persist::write_epoch_checkpoint(dir, &cache)
        });
    }

    /// Cuts the log back to end at or below `offset` (the batch holding it goes whole), with
    /// its indexes, the epoch cache, producer state and aborted transactions; the told high
    /// watermark is capped at the new end. Returns the new log end. Crash-safe: a crash
    /// midway leaves a prefix of the old log, recovered at the next open. `offset` below the
    /// log start is refused with OFFSET_OUT_OF_RANGE.
    pub async fn truncate_to(&self, offset: i64) -> Result<i64, KafkaError> {
        // A crash before the new epoch checkpoint is written is harmless: the open drops
        // epochs starting past the log end it recovers.
        //
        // No snapshot write may land after the producer state is rebuilt below.
        self.snapshots_written().await;
        let new_end = self.log.truncate_to(offset).await.map_err(storage_error)?;
        let cut = self.epochs.borrow_mut().truncate_from_end(new_end);
        self.rebuild_after_cut(cut).await?;
        let told = self.told_high_watermark.get();
        self.told_high_watermark.set(told.min(new_end));
        Ok(new_end)
    }

    /// Empties a follower's log and starts it at `offset`, the leader's log start, which is
    /// past this log's end (Kafka's `truncateFullyAndStartAt`): with the epoch cache, producer
    /// state and aborted transactions it held. Refused (NOT_LEADER_OR_FOLLOWER) unless the
    /// partition follows a leader: a leader's log is never emptied.
    pub async fn restart_at(&self, offset: i64) -> Result<(), KafkaError> {
        if self.following().is_none() {
            return Err(KafkaError::new(
                KafkaCode::NotLeaderOrFollower,
                "only a follower's log is restarted at the leader's log start",
            ));
        }
        self.snapshots_written().await;
        self.log.restart_at(offset).await.map_err(storage_error)?;
        // No snapshot reaches the new start, and the log is empty: a fresh producer state.
        let cleared = self.epochs.borrow_mut().clear();
        self.rebuild_after_cut(cleared).await?;
        self.told_high_watermark.set(offset);
        Ok(())
    }

    /// After the log lost its tail (or everything): checkpoints the epoch cache if it
    /// changed, then rebuilds producer state and aborted transactions from what is left.
    async fn rebuild_after_cut(&self, epochs_changed: bool) -> Result<(), KafkaError> {
        if epochs_changed {
            let cache = self.epochs.borrow().clone();
            self.chain_disk_write("leader-epoch checkpoint", move |dir| {
                persist::write_epoch_checkpoint(dir, &cache)
            });
        }
        self.snapshots_written().await;
        let mut epochs = self.epochs.borrow().clone();
        let txn = recover_producer_state(&self.log, self.log.dir(), &mut epochs)
            .await
            .map_err(storage_error)?;
        *self.txn.borrow_mut() = txn;
        Ok(())
    }

    /// Kafka's OffsetForLeaderEpoch answer for `epoch`: the largest epoch at or below it this
    /// log knows and the offset where the next one starts (the log end for the latest), or
    /// (-1, -1) when nothing fits (see [`EpochCache::end_offset_for`]).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let log_end = self.log.offsets().log_end;
        self.epochs.borrow().end_offset_for(epoch, log_end)
    }

    /// The leader-epoch cache's entries, `(epoch, start offset)`.
    pub fn epoch_entries(&self) -> Vec<(i32, i64)> {
        self.epochs.borrow().entries().to_vec()
    }

    /// The offset the next append gets.
    pub fn log_end_offset(&self) -> i64 {
        self.log.offsets().log_end
    }

    /// The offset below which every batch is durable on this replica.
    pub fn durable_end_offset(&self) -> i64 {
        self.log.offsets().high_watermark
    }

    /// Whether other replicas exist (replication factor > 1). Turned on, the high watermark
    /// is what [`Partition::set_high_watermark`] says, capped by the durable end, and never
    /// lower than what this replica already exposed on its own; turned off, it is the
    /// durable end again.
    pub fn set_replicated(&self, replicated: bool) {
        if replicated && !self.replicated.get() {
            let floor = self.exposed_high_watermark.get();
            self.told_high_watermark
                .set(self.told_high_watermark.get().max(floor));
        }
        self.replicated.set(replicated);
    }

    pub fn is_replicated(&self) -> bool {
        self.replicated.get()
    }

    /// Tells a replicated partition its high watermark (the leader's ISR logic, or a
    /// follower's fetcher from the leader's answer). Monotonic: a lower value is ignored.
    /// Long polls wake when what they may see grows.
    pub fn set_high_watermark(&self, high_watermark: i64) {
        let before = self.high_watermark();
        let told = self.told_high_watermark.get().max(high_watermark);
        self.told_high_watermark.set(told);
        if self.high_watermark() > before {
            self.log.notify_data_arrival();
        }
    }

    /// What consumers may read up to: the durable end for a single replica, the told high
    /// watermark capped by the durable end for a replicated partition.
    pub fn high_watermark(&self) -> i64 {
        let durable = self.log.offsets().high_watermark;
        if !self.replicated.get() {
            self.exposed_high_watermark.set(durable);
            return durable;
        }
        self.told_high_watermark.get().min(durable)
    }

    /// Reads for a follower's fetch: every durable batch from `offset`, past the high
    /// watermark (a follower copies what the leader has, not what is committed).
    pub async fn read_for_replica(&self, offset: i64, max_bytes: usize) -> ReadResult {
        let offsets = self.offsets();
        let mut result = ReadResult {
            error: None,
            high_watermark: offsets.high_watermark,
            last_stable_offset: self.last_stable_offset(),
            log_start_offset: offsets.log_start,
            records: Records::new(),
            aborted: None,
        };
        match self.log.read(offset, max_bytes).await {
            Ok(records) => result.records = records,
            Err(e) => result.error = Some(storage_error(e)),
        }
        result
    }
}

/// Rebuilds the leader-epoch cache from the whole log (its checkpoint is missing).
pub(super) async fn scan_epochs(log: &Log) -> Result<EpochCache, LogError> {
    let offsets = log.offsets();
    let mut epochs = EpochCache::default();
    let mut next = offsets.log_start;
    while next < offsets.log_end {
        let bytes = log.read(next, REPLAY_READ_BYTES).await?.to_bytes();
        if bytes.is_empty() {
            break;
        }
        for item in batch::BatchIter::new(&bytes) {
            let (h, _, _) = item.map_err(|e| LogError::Storage(e.to_string()))?;
            if h.last_offset() >= next {
                epochs.on_batch(h.partition_leader_epoch.get(), h.base_offset.get());
                next = h.last_offset() + 1;
            }
        }
    }
    Ok(epochs)
}
