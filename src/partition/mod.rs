//! A partition: its log plus the replica and producer state around it. It turns a produce's
//! raw record bytes into validated, offset-assigned appends, and answers reads bounded by what
//! consumers may see: the high watermark for read_uncommitted, the last stable offset (LSO)
//! and the aborted transactions in range for read_committed.
//!
//! A compacted topic (`cleanup.policy` with `compact`) refuses a client batch holding a record
//! without a key, as Kafka does: the keys are read for that check, nothing else is decoded.
//!
//! Producer state ([`producer_state`]) makes idempotent produces exactly-once: a retried batch
//! is answered with its original offsets and never appended twice; out-of-order sequences and
//! stale epochs are refused. Transaction markers, written here on the coordinator's behalf,
//! close open transactions; aborts are indexed per segment ([`persist`]). The state survives
//! restarts: a snapshot is written whenever the log rolls a segment and at close, and the log
//! after the newest usable snapshot is replayed at open.
//!
//! A single-replica partition's high watermark is the log's durable end. A replicated one
//! (see [`Partition::set_replicated`]) is told its high watermark by the replication layer
//! ([`Partition::set_high_watermark`]), capped by its own durable end; reads, the LSO and
//! DeleteRecords use it. The follower side ([`replica`]) appends batches fetched from the
//! leader as they are, truncates a divergent tail, and keeps the leader-epoch cache
//! ([`epoch_cache`]) that OffsetForLeaderEpoch answers from. Uses base, config, protocol,
//! runtime, log.
//!
//! Leadership ([`leadership`], [`isr`]): a leader tracks its followers' fetches and tells
//! itself the high watermark they allow; acks=all waits for it.

pub mod epoch_cache;
mod persist;
pub mod producer_state;
mod replica;
pub mod isr;
mod leadership;

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use crate::base::{KafkaCode, KafkaError, Records, TopicPartition};
use crate::config::LogSettings;
use crate::log::{AbortedRange, CompactionInput, CompactionStats, Log, LogError, LogOffsets};
use crate::protocol::batch::{self, ControlType};
use crate::protocol::rewrite;
use crate::runtime;

pub use crate::log::Appended;
use epoch_cache::EpochCache;
pub use leadership::{ReplicaRole, RoleChange, DEFAULT_REPLICA_LAG_TIME_MAX_MS};
use producer_state::ProducerStateTable;
pub use producer_state::{AbortedTxn, AppendCheck, BatchIdentity, ProducerEntry};

/// Which records a reader may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Everything below the high watermark.
    #[default]
    ReadUncommitted,
    /// Everything below the last stable offset; aborted transactions are listed.
    ReadCommitted,
}

impl Isolation {
    /// From the Kafka wire value (0 read_uncommitted, 1 read_committed).
    pub fn from_wire(level: i8) -> Self {
        if level == 1 {
            Self::ReadCommitted
        } else {
            Self::ReadUncommitted
        }
    }
}

/// Who wrote a batch: a client (every producer rule applies) or a coordinator of this
/// broker writing its own records (transactional offset commits carry a producer id and
/// epoch but no sequence numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    #[default]
    Client,
    Coordinator,
}

/// Bytes read from the log per step when replaying producer state.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// A partition owned by this shard.
pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: [u8; 16],
    leader_epoch: Cell<i32>,
    log: Rc<Log>,
    /// The topic's `max.message.bytes` (changes with its configs).
    message_max_bytes: std::cell::Cell<usize>,
    /// The topic's `min.insync.replicas` (changes with its configs).
    min_insync_replicas: Cell<i32>,
    txn: RefCell<TxnState>,
    /// Leader, follower or the only replica (see [`replica`]).
    replica: RefCell<ReplicaRole>,
    /// Woken when the high watermark moves or the role changes.
    hw_waiters: RefCell<Vec<futures::channel::oneshot::Sender<()>>>,
    /// Feeds the durable end to the ISR state while this replica leads followers.
    durable_watch: RefCell<Option<runtime::Task<()>>>,
    /// The broker's `replica.lag.time.max.ms`.
    replica_lag_max_ms: Cell<i64>,
    /// Leader epochs and where each started in the log.
    epochs: RefCell<EpochCache>,
    /// Whether other replicas exist: then the high watermark is told, not the durable end.
    replicated: Cell<bool>,
    /// The high watermark last told (replicated partitions; capped by the durable end when
    /// used).
    told_high_watermark: Cell<i64>,
    /// The high watermark last exposed while single-replica (the floor once replicated).
    exposed_high_watermark: Cell<i64>,
}

/// Producer state and aborted transactions, with the segment the last snapshot was taken in.
struct TxnState {
    producers: ProducerStateTable,
    /// Aborted transactions, in marker order.
    aborted: Vec<AbortedTxn>,
    snapshot_segment: i64,
    /// The snapshot being written, if any.
    snapshot_write: Option<runtime::Task<()>>,
}

/// The result of reading a partition for a fetch.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    pub error: Option<KafkaError>,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub records: Records,
    /// read_committed only: aborted transactions overlapping the records returned.
    pub aborted: Option<Vec<AbortedTxn>>,
}

/// A produce's append: where its records are, and whether it was a retry already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceAppend {
    pub appended: Appended,
    pub duplicate: bool,
}

/// One producer as DescribeProducers reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerView {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    pub txn_start_offset: i64,
}

impl Partition {
    pub async fn open(
        dir: &Path,
        tp: TopicPartition,
        topic_id: [u8; 16],
        leader_epoch: i32,
        settings: LogSettings,
        message_max_bytes: usize,
    ) -> Result<Rc<Partition>, LogError> {
        let min_insync = settings.min_insync_replicas;
        let log = Log::open(dir, settings).await?;
        let stored_epochs = persist::read_epoch_checkpoint(dir)?;
        let mut epochs = match stored_epochs.clone() {
            Some(cache) => cache,
            None => replica::scan_epochs(&log).await?,
        };
        let offsets = log.offsets();
        epochs.truncate_from_end(offsets.log_end);
        let txn = recover_producer_state(&log, dir, &mut epochs).await?;
        if stored_epochs.as_ref() != Some(&epochs) {
            let (dir, cache) = (dir.to_owned(), epochs.clone());
            runtime::off_reactor(move || persist::write_epoch_checkpoint(&dir, &cache)).await?;
        }
        Ok(Rc::new(Partition {
            tp,
            topic_id,
            leader_epoch: Cell::new(leader_epoch),
            log,
            message_max_bytes: std::cell::Cell::new(message_max_bytes),
            min_insync_replicas: Cell::new(min_insync),
            txn: RefCell::new(txn),
            replica: RefCell::new(ReplicaRole::Single),
            hw_waiters: RefCell::new(Vec::new()),
            durable_watch: RefCell::new(None),
            replica_lag_max_ms: Cell::new(DEFAULT_REPLICA_LAG_TIME_MAX_MS),
            epochs: RefCell::new(epochs),
            replicated: Cell::new(false),
            told_high_watermark: Cell::new(offsets.log_start),
            exposed_high_watermark: Cell::new(offsets.log_start),
        }))
    }

    /// The epoch stamped on batches appended from now on.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.get()
    }

    /// A new leader epoch from the metadata (same log).
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.leader_epoch.set(epoch);
    }

    /// The log's offsets, with this partition's high watermark.
    pub fn offsets(&self) -> LogOffsets {
        LogOffsets {
            high_watermark: self.high_watermark(),
            ..self.log.offsets()
        }
    }

    /// The last stable offset: below it every transaction is decided.
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        let unstable = self.txn.borrow().producers.first_unstable_offset();
        unstable.map_or(hw, |first| first.min(hw))
    }

    /// Kafka's check before an `acks=all` append: refused with NOT_ENOUGH_REPLICAS (nothing
    /// appended) while fewer replicas than `min.insync.replicas` are in sync. `acks` 0 and 1
    /// do not wait for other replicas and are never refused for it.
    pub fn check_in_sync(&self, acks: i16) -> Result<(), KafkaError> {
        let (isr, min) = (self.in_sync_replicas(), self.min_insync_replicas.get());
        if acks != -1 || isr >= min {
            return Ok(());
        }
        Err(KafkaError::new(
            KafkaCode::NotEnoughReplicas,
            format!(
                "The size of the current ISR {isr} is insufficient to satisfy the min.isr \
                 requirement of {min} for partition {}",
                self.tp
            ),
        ))
    }

    /// Validates the one batch of a produce and appends it, unless it is a retry of a batch
    /// already stored (then its original offsets are returned). Synchronous, so appends from
    /// one connection keep their order.
    pub fn append(
        &self,
        records: &Bytes,
        origin: Origin,
        now: i64,
    ) -> Result<ProduceAppend, KafkaError> {
        if !self.is_leader() {
            return Err(leadership::not_leader(&self.tp));
        }
        let (start, len) = self.single_batch(records)?;
        let header = *batch::header(&records[start..]).map_err(corrupt)?;
        let identity = BatchIdentity::of(&header);
        let check = match origin {
            Origin::Client => {
                batch::check_client_batch(&header)
                    .map_err(|e| KafkaError::new(KafkaCode::InvalidRecord, e.to_string()))?;
                self.check_keys_if_compacted(&records[start..start + len])?;
                self.txn.borrow().producers.check_append(&identity)?
            }
            Origin::Coordinator => {
                self.txn
                    .borrow()
                    .producers
                    .check_coordinator_append(&identity)?;
                AppendCheck::New
            }
        };
        if let AppendCheck::Duplicate(original) = check {
            return Ok(ProduceAppend {
                appended: Appended {
                    base_offset: original.base_offset,
                    last_offset: original.last_offset,
                    // Kafka answers a duplicate without the original's append time.
                    log_append_time: None,
                },
                duplicate: true,
            });
        }
        let bytes = self.in_topic_codec(&header, &records.slice(start..start + len))?;
        let appended = self
            .log
            .append(bytes, self.leader_epoch.get())
            .map_err(storage_error)?;
        self.note_epoch(self.leader_epoch.get(), appended.base_offset);
        self.txn.borrow_mut().producers.on_append(
            &identity,
            appended.base_offset,
            appended.last_offset,
            now,
        );
        self.snapshot_on_roll();
        Ok(ProduceAppend {
            appended,
            duplicate: false,
        })
    }

    /// Writes a transaction marker for `producer_id` (on the transaction coordinator's
    /// behalf) and records the transaction's outcome.
    pub fn write_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        coordinator_epoch: i32,
        kind: ControlType,
        now: i64,
    ) -> Result<Appended, KafkaError> {
        if !self.is_leader() {
            return Err(leadership::not_leader(&self.tp));
        }
        self.txn
            .borrow()
            .producers
            .check_marker(producer_id, epoch, coordinator_epoch)?;
        let marker = batch::build_marker(producer_id, epoch, coordinator_epoch, kind, now);
        let appended = self
            .log
            .append(Bytes::from(marker), self.leader_epoch.get())
            .map_err(storage_error)?;
        self.note_epoch(self.leader_epoch.get(), appended.base_offset);
        let aborted = self.txn.borrow_mut().producers.on_marker(
            producer_id,
            epoch,
            coordinator_epoch,
            kind,
            appended.base_offset,
            now,
        );
        if let Some(txn) = aborted {
            self.record_abort(txn);
        }
        self.snapshot_on_roll();
        Ok(appended)
    }

    /// A compacted topic keeps the newest record per key, so a record without a key has no
    /// place in it: Kafka refuses the whole batch with INVALID_RECORD. Only compacted topics
    /// pay for reading the keys.
    fn check_keys_if_compacted(&self, raw: &[u8]) -> Result<(), KafkaError> {
        if !self.log.settings().cleanup.compact {
            return Ok(());
        }
        match rewrite::every_record_has_a_key(raw) {
            Ok(true) => Ok(()),
            Ok(false) => Err(KafkaError::new(
                KafkaCode::InvalidRecord,
                format!(
                    "Compacted topic cannot accept message without key in topic partition {}.",
                    self.tp
                ),
            )),
            Err(e) => Err(KafkaError::new(KafkaCode::CorruptMessage, e.to_string())),
        }
    }

    /// The batch as the topic stores it: recompressed when the topic's `compression.type` is
    /// a codec other than the batch's (offsets, sequences and timestamps kept, the CRC
    /// computed again), as sent otherwise (`producer`, or the codec already matches).
    fn in_topic_codec(
        &self,
        header: &batch::BatchHeader,
        raw: &Bytes,
    ) -> Result<Bytes, KafkaError> {
        let wanted = self.log.settings().compression.codec();
        let Some(codec) = wanted.filter(|c| *c != header.compression() && !header.is_control())
        else {
            return Ok(raw.clone());
        };
        let bad =
            |e: rewrite::RecordsError| KafkaError::new(KafkaCode::CorruptMessage, e.to_string());
        let decoded = rewrite::DecodedBatch::decode(raw).map_err(bad)?;
        let how = rewrite::Rebuild {
            codec,
            delete_horizon: None,
        };
        let rebuilt = rewrite::rebuild(&decoded.header, &decoded.records, how).map_err(bad)?;
        Ok(Bytes::from(rebuilt))
    }

    fn record_abort(&self, txn: AbortedTxn) {
        let segment = self.log.active_segment_base();
        if let Err(e) = persist::append_aborted(self.log.dir(), segment, &txn) {
            tracing::error!(partition = %self.tp, error = %e, "writing the transaction index failed");
        }
        self.txn.borrow_mut().aborted.push(txn);
    }

    /// The one batch a produce may carry for a partition (Produce v3 and later).
    fn single_batch(&self, records: &Bytes) -> Result<(usize, usize), KafkaError> {
        let mut it = batch::BatchIter::new(records);
        let (h, start, len) = match it.next() {
            Some(Ok(found)) => found,
            Some(Err(e)) => {
                return Err(classify_batch_error(
                    records.len(),
                    self.message_max_bytes.get(),
                    e,
                ))
            }
            None => {
                return Err(KafkaError::new(
                    KafkaCode::InvalidRecord,
                    "produce carried no record batch",
                ))
            }
        };
        if len > self.message_max_bytes.get() {
            return Err(KafkaError::new(
                KafkaCode::MessageTooLarge,
                format!(
                    "The record batch is {len} bytes, larger than the maximum allowed size {}",
                    self.message_max_bytes.get()
                ),
            ));
        }
        if start + len != records.len() {
            return Err(KafkaError::new(
                KafkaCode::InvalidRecord,
                "Produce requests with version 3 and above must contain exactly one record batch per partition",
            ));
        }
        debug_assert_eq!(h.total_len(), len);
        Ok((start, len))
    }

    /// Writes a producer-state snapshot when the log has rolled to a new segment since the
    /// last one, so a restart replays at most about one segment.
    fn snapshot_on_roll(&self) {
        let segment = self.log.active_segment_base();
        let snapshot = {
            let mut st = self.txn.borrow_mut();
            if st.snapshot_segment == segment {
                return;
            }
            st.snapshot_segment = segment;
            st.producers.snapshot(self.log.offsets().log_end)
        };
        self.chain_disk_write("producer snapshot", move |dir| {
            persist::sync_txn_indexes(dir)?;
            persist::write_snapshot(dir, &snapshot)
        });
    }

    /// Runs `work` on the partition directory off the reactor, after every write chained
    /// before it: so a producer snapshot at offset N is on disk only after every epoch
    /// checkpoint for epochs starting below N, and a restart that replays from N misses none.
    fn chain_disk_write<F>(&self, what: &'static str, work: F)
    where
        F: FnOnce(&Path) -> std::io::Result<()> + Send + 'static,
    {
        let dir = self.log.dir().to_owned();
        let tp = self.tp.clone();
        let previous = self.txn.borrow_mut().snapshot_write.take();
        let write = runtime::spawn(async move {
            if let Some(previous) = previous {
                previous.await;
            }
            if let Err(e) = runtime::off_reactor(move || work(&dir)).await {
                tracing::warn!(partition = %tp, error = %e, "{what} write failed");
            }
        });
        self.txn.borrow_mut().snapshot_write = Some(write);
    }

    /// Completes once every snapshot started so far is on disk.
    pub async fn snapshots_written(&self) {
        let pending = self.txn.borrow_mut().snapshot_write.take();
        if let Some(write) = pending {
            write.await;
        }
    }

    /// Waits until `appended` is as safe as `acks` asks.
    pub async fn wait_acked(&self, appended: Appended, acks: i16) -> Result<(), KafkaError> {
        if acks == 0 {
            return Ok(());
        }
        if acks == -1 {
            return self.wait_replicated(appended).await;
        }
        self.log
            .wait_durable(appended.last_offset)
            .await
            .map_err(storage_error)
    }

    pub async fn read(&self, offset: i64, max_bytes: usize, isolation: Isolation) -> ReadResult {
        if !self.is_leader() {
            return ReadResult {
                error: Some(leadership::not_leader(&self.tp)),
                high_watermark: -1,
                last_stable_offset: -1,
                log_start_offset: -1,
                ..ReadResult::default()
            };
        }
        let offsets = self.offsets();
        let lso = self.last_stable_offset();
        let mut result = ReadResult {
            error: None,
            high_watermark: offsets.high_watermark,
            last_stable_offset: lso,
            log_start_offset: offsets.log_start,
            records: Records::new(),
            aborted: None,
        };
        let read = match isolation {
            Isolation::ReadUncommitted => {
                let hw = offsets.high_watermark;
                self.log.read_below(offset, max_bytes, hw).await
            }
            Isolation::ReadCommitted => self.log.read_below(offset, max_bytes, lso).await,
        };
        match read {
            Ok(records) => result.records = records,
            Err(e) => result.error = Some(storage_error(e)),
        }
        if isolation == Isolation::ReadCommitted {
            let upper = end_of_batches(&result.records).unwrap_or(lso);
            result.aborted = Some(self.aborted_between(offset, upper));
        }
        result
    }

    /// Aborted transactions with data in `[from, upper)`.
    fn aborted_between(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let st = self.txn.borrow();
        let first = st.aborted.partition_point(|t| t.last_offset < from);
        st.aborted[first..]
            .iter()
            .filter(|t| t.first_offset < upper)
            .copied()
            .collect()
    }

    /// Long polls parked on this partition.
    pub fn data_waiters(&self) -> usize {
        self.log.data_waiters()
    }

    /// Fires when the high watermark next moves (or the role changes).
    pub fn data_arrival(&self) -> futures::channel::oneshot::Receiver<()> {
        self.hw_arrival()
    }

    /// Fires when the durable end next moves: what a follower's long poll waits for.
    pub fn durable_arrival(&self) -> futures::channel::oneshot::Receiver<()> {
        self.log.data_arrival()
    }

    /// A follower's read: whole batches from `offset` up to the durable end (not the HW),
    /// with the HW to pass on. Only a leader serves it.
    pub async fn read_for_follower(
        &self,
        follower: i32,
        offset: i64,
        max_bytes: usize,
    ) -> ReadResult {
        if let Err(e) = self.on_follower_fetch(follower, offset) {
            return ReadResult {
                error: Some(e),
                high_watermark: -1,
                last_stable_offset: -1,
                log_start_offset: -1,
                ..ReadResult::default()
            };
        }
        self.read_for_replica(offset, max_bytes).await
    }

    /// Offset and timestamp of the first record at or after `timestamp`.
    pub async fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, KafkaError> {
        self.log
            .offset_for_timestamp(timestamp)
            .await
            .map_err(storage_error)
    }

    /// The producers this partition knows, for DescribeProducers.
    pub fn producers(&self) -> Vec<ProducerView> {
        let st = self.txn.borrow();
        st.producers
            .producers()
            .map(|(id, e)| ProducerView {
                producer_id: *id,
                epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: e.last_append_ms,
                coordinator_epoch: e.coordinator_epoch,
                txn_start_offset: e.txn_first_offset.unwrap_or(-1),
            })
            .collect()
    }

    /// Forgets producers idle past `expiration_ms` (`producer.id.expiration.ms`).
    pub fn expire_producers(&self, now: i64, expiration_ms: i64) -> usize {
        self.txn.borrow_mut().producers.expire(now, expiration_ms)
    }

    /// Flushes the log, then writes a snapshot at its end so a clean restart replays nothing.
    pub async fn close(&self) -> Result<(), KafkaError> {
        self.retire();
        self.log.close().await.map_err(storage_error)?;
        self.snapshots_written().await;
        let snapshot = self
            .txn
            .borrow()
            .producers
            .snapshot(self.log.offsets().log_end);
        write_snapshot(self.log.dir().to_owned(), snapshot)
            .await
            .map_err(|e| KafkaError::new(KafkaCode::KafkaStorageError, e.to_string()))
    }

    /// The settings of this partition's log.
    pub fn settings(&self) -> LogSettings {
        self.log.settings()
    }

    /// Applies a topic's changed configs to this partition's log.
    pub fn update_settings(&self, settings: LogSettings) {
        self.message_max_bytes.set(settings.max_message_bytes);
        self.min_insync_replicas.set(settings.min_insync_replicas);
        self.log.update_settings(settings);
    }

    /// One housekeeping pass (segment.ms rolls, retention); segments deleted.
    pub async fn housekeep(&self, now_ms: i64) -> Result<usize, KafkaError> {
        self.log.housekeep(now_ms).await.map_err(storage_error)
    }

    /// One compaction pass of this partition's log (nothing unless its `cleanup.policy`
    /// compacts and a pass is due). Only what lies below the last stable offset is touched,
    /// and the data of aborted transactions goes.
    pub async fn compact(&self, now_ms: i64) -> Result<Option<CompactionStats>, KafkaError> {
        let stable_end = self.last_stable_offset();
        let aborted: Vec<AbortedRange> = self
            .txn
            .borrow()
            .aborted
            .iter()
            .map(|t| AbortedRange {
                producer_id: t.producer_id,
                first_offset: t.first_offset,
                last_offset: t.last_offset,
            })
            .collect();
        let input = CompactionInput {
            now_ms,
            stable_end,
            aborted: &aborted,
        };
        self.log.compact(input).await.map_err(storage_error)
    }

    /// DeleteRecords: moves the log start to `offset` (-1: the high watermark); returns the
    /// new low watermark.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, KafkaError> {
        let hw = self.high_watermark();
        if offset > hw {
            return Err(KafkaError::new(
                KafkaCode::OffsetOutOfRange,
                format!("offset {offset} is past the high watermark {hw}"),
            ));
        }
        let offset = if offset == -1 { hw } else { offset };
        self.log
            .delete_records_before(offset)
            .await
            .map_err(storage_error)
    }

    pub async fn delete(&self) -> Result<(), KafkaError> {
        self.retire();
        self.log.delete().await.map_err(storage_error)
    }
}

/// Makes the transaction indexes durable, then writes the snapshot, off the reactor.
async fn write_snapshot(
    dir: PathBuf,
    snapshot: producer_state::ProducerSnapshot,
) -> std::io::Result<()> {
    runtime::off_reactor(move || {
        persist::sync_txn_indexes(&dir)?;
        persist::write_snapshot(&dir, &snapshot)
    })
    .await
}

/// Loads the newest usable snapshot and replays the log after it.
/// Notes every replayed batch's leader epoch in `epochs` (a crash may have lost the last
/// checkpoint writes).
async fn recover_producer_state(
    log: &Log,
    dir: &Path,
    epochs: &mut EpochCache,
) -> Result<TxnState, LogError> {
    let offsets = log.offsets();
    let snapshot = persist::load_snapshot(dir, offsets.log_end)?;
    let (mut producers, from) = match snapshot {
        Some(s) if s.next_offset >= offsets.log_start => {
            let from = s.next_offset;
            (ProducerStateTable::from_snapshot(s), from)
        }
        _ => (ProducerStateTable::default(), offsets.log_start),
    };
    let mut aborted = persist::recover_aborted(dir, from)?;
    let now = log.now_ms();
    let mut next = from;
    while next < offsets.log_end {
        let bytes = log.read(next, REPLAY_READ_BYTES).await?.to_bytes();
        if bytes.is_empty() {
            break;
        }
        for item in batch::BatchIter::new(&bytes) {
            let (h, start, len) = item.map_err(|e| LogError::Storage(e.to_string()))?;
            if h.last_offset() < next {
                continue;
            }
            next = h.last_offset() + 1;
            epochs.on_batch(h.partition_leader_epoch.get(), h.base_offset.get());
            if !h.is_control() {
                let id = BatchIdentity::of(h);
                producers.on_append(&id, h.base_offset.get(), h.last_offset(), now);
                continue;
            }
            let Some((kind, coordinator_epoch)) = batch::read_marker(&bytes[start..start + len])
            else {
                continue;
            };
            let (pid, epoch) = (h.producer_id.get(), h.producer_epoch.get());
            let offset = h.base_offset.get();
            if let Some(txn) = producers.on_marker(pid, epoch, coordinator_epoch, kind, offset, now)
            {
                persist::append_aborted(dir, log.active_segment_base(), &txn)?;
                aborted.push(txn);
            }
        }
    }
    Ok(TxnState {
        producers,
        aborted,
        snapshot_segment: log.active_segment_base(),
        snapshot_write: None,
    })
}

/// The offset after the last batch in `records`, if there is one.
/// The offset after the last whole batch of `records` (stored batches: headers only read).
fn end_of_batches(records: &Records) -> Option<i64> {
    let mut head = [0u8; batch::HEADER_LEN];
    let (mut pos, mut end) = (0usize, None);
    while records.copy_at(pos, &mut head) {
        let h = batch::header(&head).ok()?;
        let total = h.total_len();
        if total < batch::HEADER_LEN || pos + total > records.len() {
            break;
        }
        end = Some(h.last_offset() + 1);
        pos += total;
    }
    end
}

fn corrupt(e: batch::BatchError) -> KafkaError {
    KafkaError::new(KafkaCode::CorruptMessage, e.to_string())
}

fn classify_batch_error(total: usize, max: usize, e: batch::BatchError) -> KafkaError {
    if total > max {
        return KafkaError::new(
            KafkaCode::MessageTooLarge,
            format!("The request included {total} bytes of records, larger than the maximum allowed size {max}"),
        );
    }
    corrupt(e)
}

fn storage_error(e: LogError) -> KafkaError {
    match e {
        LogError::OffsetOutOfRange { .. } => {
            KafkaError::new(KafkaCode::OffsetOutOfRange, e.to_string())
        }
        // Retriable: the producer backs off and retries once the disk caught up.
        LogError::Backlogged { .. } => KafkaError::new(KafkaCode::RequestTimedOut, e.to_string()),
        other => KafkaError::new(KafkaCode::KafkaStorageError, other.to_string()),
    }
}

#[cfg(test)]
mod leadership_tests;
#[cfg(test)]
mod tests;
