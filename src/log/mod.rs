//! One partition's on-disk log: segments of RecordBatch v2 bytes, sparse indexes, the O_DIRECT
//! appender with group commit, the tail cache, recovery at open. It knows batches, not
//! requests; it assigns offsets, keeps them in order, and says what is durable.
//!
//! Shape: a [`Log`] is owned by one shard and shared between that shard's tasks through `Rc`.
//! `append` is synchronous (it assigns offsets and queues the bytes), so appends happen in the
//! order they are called. One flusher task per log writes queued bytes in order, fdatasyncs
//! per the durability policy, then advances the durable end and wakes whoever waits on it.
//! State sits in a `RefCell` that is never borrowed across an `.await`. Blocking file-system
//! calls (index files, directory syncs, markers) run on the shard's blocking thread, never on
//! its reactor.
//! Woken after a quiet spell, the flusher first waits the settings' `group_commit_window`
//! (if any) so that more appends join the same write and sync.
//!
//! The durable end is also the high watermark a single-replica partition exposes: a consumer
//! never sees a batch that a crash could still take away.
//!
//! Bounds: a log holds at most `max_pending_bytes` of appended batches that are not yet
//! durable (written, and synced in fsync durability). Past it, [`Log::append`] refuses with
//! [`LogError::Backlogged`] instead of queueing: memory stays bounded under `acks=0` floods,
//! and the caller maps the refusal to a retriable Kafka error (or, if it can wait, awaits
//! [`Log::wait_for_room`] before appending). A batch is always accepted when nothing is
//! pending, so a single batch larger than the bound still goes through. The tail cache holds
//! every pending batch plus at most `tail_cache_bytes` of durable ones.
//!
//! Copies: an appended batch is stored as a copy of its 61-byte header (where the offsets,
//! the leader epoch and a LogAppendTime are written) followed by the producer's bytes after
//! the header, which stay in the request's buffer, uncopied (`base::Records`). The flusher
//! copies both into the O_DIRECT buffer (the one user-space copy of record bytes), and reads
//! from the tail cache hand out the same pieces. The price: a cached batch keeps the read
//! buffer it arrived in (up to 64 KiB, shared with its neighbours) alive until it leaves the
//! cache, so the cache's real footprint can exceed `tail_cache_bytes` for partitions with
//! small, sparse batches.
//!
//! Clean shutdown: [`Log::close`] seals the active segment, writes its index files and then a
//! clean-shutdown marker; the next open trusts that segment instead of re-reading it. After a
//! crash there is no marker and the active segment is scanned.

mod appender;
mod checkpoint;
mod compaction;
mod flusher;
pub mod index;
mod reader;
mod recovery;
mod replica;
mod retention;
mod segment;
mod tail_cache;

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use crate::base::Records;
use futures::channel::{mpsc, oneshot};

use crate::base::{Clock, SystemClock};
use crate::config::LogSettings;
use crate::protocol::batch;
use crate::runtime::{self, DmaFile};

use appender::SegmentAppender;
pub use compaction::{AbortedRange, CompactionInput, CompactionStats};
use flusher::{Flusher, PendingWrite};
use segment::Segment;
use tail_cache::{CachedBatch, TailCache};

/// Errors of the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("offset {offset} is outside the log [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error(
        "the log holds {pending} bytes not yet durable, at its bound of {limit} \
         (max_pending_bytes); retry once the disk catches up"
    )]
    Backlogged { pending: u64, limit: u64 },
    #[error("storage error: {0}")]
    Storage(String),
    #[error("the log is closed")]
    Closed,
    #[error("the log is being truncated")]
    Truncating,
}

impl From<std::io::Error> for LogError {
    fn from(e: std::io::Error) -> Self {
        LogError::Storage(e.to_string())
    }
}

/// What an append was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker's append time, when the topic stamps batches with it
    /// (`message.timestamp.type=LogAppendTime`): the Produce response reports it.
    pub log_append_time: Option<i64>,
}

/// Offsets of the log right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOffsets {
    pub log_start: i64,
    /// Offset the next append gets.
    pub log_end: i64,
    /// Everything below is durable and visible to consumers.
    pub high_watermark: i64,
}

struct State {
    segments: BTreeMap<i64, Segment>,
    next_offset: i64,
    durable_end: i64,
    log_start: i64,
    pending: VecDeque<PendingWrite>,
    /// Bytes appended but not yet durable (queued, being written, or awaiting fdatasync).
    pending_bytes: u64,
    tail: TailCache,
    ack_waiters: Vec<(i64, oneshot::Sender<Result<(), LogError>>)>,
    data_waiters: Vec<oneshot::Sender<()>>,
    room_waiters: Vec<oneshot::Sender<()>>,
    /// Writes queued so far and writes the flusher has finished, for [`Log::wait_flushed`].
    queued_writes: u64,
    flushed_writes: u64,
    flush_waiters: Vec<(u64, oneshot::Sender<()>)>,
    failed: Option<String>,
    closing: bool,
    /// A truncation is under way: appends are refused until it is done.
    truncating: bool,
    /// An appender the flusher must continue with (a truncation moved the active end).
    new_appender: Option<SegmentAppender>,
}

/// A partition log. See the module docs for its contract.
pub struct Log {
    dir: PathBuf,
    settings: RefCell<LogSettings>,
    state: RefCell<State>,
    wake_flusher: RefCell<mpsc::Sender<()>>,
    flusher_done: RefCell<Option<oneshot::Receiver<()>>>,
    /// Tells the interval syncer that the settings changed.
    settings_changed: RefCell<mpsc::Sender<()>>,
    /// Held while segments are deleted or swapped by the cleaner, so those never overlap.
    maintenance: futures::lock::Mutex<()>,
    /// What the cleaner remembers between compaction passes.
    cleaner: RefCell<compaction::CleanerState>,
    /// Makes the next interval fdatasync fail (fault injection).
    #[cfg(test)]
    sync_fault: std::cell::Cell<bool>,
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering the active segment, and starts its
    /// flusher on the current shard.
    pub async fn open(dir: &Path, settings: LogSettings) -> Result<Rc<Log>, LogError> {
        let recovered = recovery::recover(dir, &settings).await?;
        if recovered.clean {
            tracing::debug!(dir = %dir.display(), "clean shutdown: active segment trusted");
        }
        let (tx, rx) = mpsc::channel(1);
        let (done_tx, done_rx) = oneshot::channel();
        let (changed_tx, changed_rx) = mpsc::channel(1);
        let log = Rc::new(Log {
            dir: dir.to_owned(),
            state: RefCell::new(State {
                segments: recovered.segments,
                next_offset: recovered.next_offset,
                durable_end: recovered.next_offset,
                log_start: recovered.log_start,
                pending: VecDeque::new(),
                pending_bytes: 0,
                tail: TailCache::new(settings.tail_cache_bytes),
                ack_waiters: Vec::new(),
                data_waiters: Vec::new(),
                room_waiters: Vec::new(),
                queued_writes: 0,
                flushed_writes: 0,
                flush_waiters: Vec::new(),
                failed: None,
                closing: false,
                truncating: false,
                new_appender: None,
            }),
            settings: RefCell::new(settings),
            wake_flusher: RefCell::new(tx),
            flusher_done: RefCell::new(Some(done_rx)),
            settings_changed: RefCell::new(changed_tx),
            maintenance: futures::lock::Mutex::new(()),
            cleaner: RefCell::new(compaction::CleanerState::default()),
            #[cfg(test)]
            sync_fault: std::cell::Cell::new(false),
        });
        let flusher = Flusher::new(Rc::downgrade(&log), recovered.appender, rx);
        runtime::spawn_in(runtime::TaskClass::Produce, flusher.run(done_tx)).detach();
        runtime::detach(flusher::interval_syncer(Rc::downgrade(&log), changed_rx));
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The settings in force.
    pub fn settings(&self) -> LogSettings {
        self.settings.borrow().clone()
    }

    /// Applies new settings (a topic's configs changed). Segment size and time, retention,
    /// cleanup, durability and bounds take effect from the next append or housekeeping pass.
    pub fn update_settings(&self, settings: LogSettings) {
        self.state
            .borrow_mut()
            .tail
            .set_budget(settings.tail_cache_bytes);
        *self.settings.borrow_mut() = settings;
        let _ = self.settings_changed.borrow_mut().try_send(());
    }

    /// Base offset of the segment appends go to now (it changes when the log rolls).
    pub fn active_segment_base(&self) -> i64 {
        let s = self.state.borrow();
        s.segments.keys().next_back().copied().unwrap_or(0)
    }

    pub fn offsets(&self) -> LogOffsets {
        let s = self.state.borrow();
        LogOffsets {
            log_start: s.log_start,
            log_end: s.next_offset,
            high_watermark: s.durable_end,
        }
    }

    /// Assigns offsets to one validated batch and queues it for writing. `batch_bytes` must
    /// hold exactly one batch that passed [`batch::validate`]. Refuses with
    /// [`LogError::Backlogged`] when the pending bound is reached (see the module docs).
    pub fn append(
        &self,
        batch_bytes: impl Into<Bytes>,
        leader_epoch: i32,
    ) -> Result<Appended, LogError> {
        let batch_bytes: Bytes = batch_bytes.into();
        let mut s = self.state.borrow_mut();
        if let Some(refused) = self.refusal(&s, batch_bytes.len() as u64) {
            return Err(refused);
        }
        let settings = self.settings.borrow();
        let base_offset = s.next_offset;
        let now = SystemClock.now_ms();
        let (stored, log_append_time) =
            stamp(batch_bytes, base_offset, leader_epoch, &settings, now)?;
        let header =
            *batch::header(&stored.pieces()[0]).map_err(|e| LogError::Storage(e.to_string()))?;
        queue_batch(&mut s, &settings, &header, stored, now);
        drop(s);
        drop(settings);
        self.wake_flusher();
        Ok(Appended {
            base_offset,
            last_offset: header.last_offset(),
            log_append_time,
        })
    }

    /// Why an append cannot be taken now, if it cannot: the log failed, is closing or
    /// truncating, or `len` more bytes would pass the pending bound.
    fn refusal(&self, s: &State, len: u64) -> Option<LogError> {
        if let Some(reason) = &s.failed {
            return Some(LogError::Storage(reason.clone()));
        }
        if s.closing {
            return Some(LogError::Closed);
        }
        if s.truncating {
            return Some(LogError::Truncating);
        }
        let limit = self.settings.borrow().max_pending_bytes;
        if s.pending_bytes > 0 && s.pending_bytes + len > limit {
            return Some(LogError::Backlogged {
                pending: s.pending_bytes,
                limit,
            });
        }
        None
    }

    fn wake_flusher(&self) {
        // A full channel already holds a wake-up; the flusher drains everything queued.
        let _ = self.wake_flusher.borrow_mut().try_send(());
    }

    /// Completes once the log has room for a batch of `len` bytes (nothing pending, or room
    /// under the bound), or it failed or closed.
    pub async fn wait_for_room(&self, len: usize) {
        loop {
            if self.room_or_wait(len as u64).await {
                return;
            }
        }
    }

    /// True when there is room now; otherwise waits for the next release and says false.
    async fn room_or_wait(&self, len: u64) -> bool {
        let rx = {
            let mut s = self.state.borrow_mut();
            let limit = self.settings.borrow().max_pending_bytes;
            let room = s.pending_bytes == 0 || s.pending_bytes + len <= limit;
            if room || s.failed.is_some() || s.closing {
                return true;
            }
            let (tx, rx) = oneshot::channel();
            s.room_waiters.push(tx);
            rx
        };
        rx.await.is_err()
    }

    /// Completes once the flusher has handled everything queued so far (written it, synced
    /// it per the policy, sealed and started segments for rolls), or the log failed.
    pub async fn wait_flushed(&self) {
        let rx = {
            let mut s = self.state.borrow_mut();
            if s.flushed_writes >= s.queued_writes || s.failed.is_some() {
                return;
            }
            let (tx, rx) = oneshot::channel();
            let target = s.queued_writes;
            s.flush_waiters.push((target, tx));
            rx
        };
        let _ = rx.await;
    }

    /// Completes once `last_offset` is durable (per the durability policy).
    pub async fn wait_durable(&self, last_offset: i64) -> Result<(), LogError> {
        let rx = {
            let mut s = self.state.borrow_mut();
            if s.durable_end > last_offset {
                return Ok(());
            }
            if let Some(reason) = &s.failed {
                return Err(LogError::Storage(reason.clone()));
            }
            let (tx, rx) = oneshot::channel();
            s.ack_waiters.push((last_offset, tx));
            rx
        };
        rx.await.unwrap_or(Err(LogError::Closed))
    }

    /// A receiver that fires the next time the high watermark moves.
    pub fn data_arrival(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut s = self.state.borrow_mut();
        // Long polls that timed out drop their receiver; on an idle log nothing else would
        // ever clear their senders.
        s.data_waiters.retain(|w| !w.is_canceled());
        s.data_waiters.push(tx);
        rx
    }

    /// Wakes the long polls parked on this log: what they may see moved without the durable
    /// end moving (a replicated partition's high watermark was advanced).
    pub fn notify_data_arrival(&self) {
        for tx in self.state.borrow_mut().data_waiters.drain(..) {
            let _ = tx.send(());
        }
    }

    /// Long polls parked on this log (for metrics and tests).
    pub fn data_waiters(&self) -> usize {
        self.state.borrow().data_waiters.len()
    }

    /// Reads whole batches from `offset`, below the high watermark, about `max_bytes` of them
    /// (at least one whole batch when any is there).
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Records, LogError> {
        self.read_below(offset, max_bytes, i64::MAX).await
    }

    /// As [`Log::read`], but no batch at or past `upper` either (a last stable offset).
    pub async fn read_below(
        &self,
        offset: i64,
        max_bytes: usize,
        upper: i64,
    ) -> Result<Records, LogError> {
        {
            let s = self.state.borrow();
            if offset < s.log_start || offset > s.next_offset {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    start: s.log_start,
                    end: s.next_offset,
                });
            }
        }
        let mut from = offset;
        loop {
            let (file, position, written, segment_end, hw) = {
                let s = self.state.borrow();
                let hw = s.durable_end.min(upper.max(s.log_start));
                if from >= hw {
                    return Ok(Records::new());
                }
                if s.tail.covers(from) {
                    return Ok(s.tail.read(from, hw, max_bytes));
                }
                let (_, seg) =
                    s.segments.range(..=from).next_back().ok_or_else(|| {
                        LogError::Storage(format!("no segment holds offset {from}"))
                    })?;
                let file = seg
                    .file
                    .clone()
                    .ok_or_else(|| LogError::Storage("segment file missing".into()))?;
                let position = seg.index.position_for((from - seg.base_offset) as u32);
                (file, position as u64, seg.written, seg.next_offset, hw)
            };
            let bytes = reader::read_batches(&file, position, written, from, hw, max_bytes).await?;
            // Empty with data still ahead: compaction emptied the rest of this segment, so
            // the next batch is in a later one.
            if !bytes.is_empty() || segment_end >= hw || segment_end <= from {
                return Ok(bytes.into());
            }
            from = segment_end;
        }
    }

    /// The offset of the first record with timestamp >= `timestamp`, if any.
    pub async fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        let candidates: Vec<(Rc<DmaFile>, u64, u64, i64)> = {
            let s = self.state.borrow();
            s.segments
                .values()
                .filter(|seg| seg.index.max_timestamp() >= timestamp && seg.file.is_some())
                .filter_map(|seg| {
                    let rel = seg.index.relative_offset_for_time(timestamp)?;
                    let pos = seg.index.position_for(rel);
                    Some((seg.file.clone()?, pos as u64, seg.written, s.durable_end))
                })
                .collect()
        };
        let log_start = self.offsets().log_start;
        for (file, pos, end, hw) in candidates {
            if let Some(found) = reader::find_timestamp(&file, pos, end, hw, timestamp).await? {
                return Ok(Some((found.0.max(log_start), found.1)));
            }
        }
        Ok(None)
    }

    /// Flushes everything queued, syncs, stops the flusher, trims the active segment and
    /// leaves a clean-shutdown marker.
    pub async fn close(&self) -> Result<(), LogError> {
        self.state.borrow_mut().closing = true;
        self.wake_flusher();
        let _ = self.settings_changed.borrow_mut().try_send(());
        let done = self.flusher_done.borrow_mut().take();
        if let Some(done) = done {
            let _ = done.await;
        }
        let failed = self.state.borrow().failed.clone();
        match failed {
            Some(reason) => Err(LogError::Storage(reason)),
            None => Ok(()),
        }
    }

    /// Closes the log and removes its directory.
    pub async fn delete(&self) -> Result<(), LogError> {
        let _ = self.close().await;
        let dir = self.dir.clone();
        runtime::off_reactor(move || std::fs::remove_dir_all(dir)).await?;
        Ok(())
    }

    /// Wall-clock now, for callers that stamp records (LogAppendTime, retention).
    pub fn now_ms(&self) -> i64 {
        SystemClock.now_ms()
    }

    #[cfg(test)]
    fn inject_sync_fault(&self) {
        self.sync_fault.set(true);
    }

    /// The queued writes, whether the log is closing, and an appender to continue with
    /// instead of the flusher's own (after a truncation).
    fn take_pending(&self) -> (Vec<PendingWrite>, bool, Option<SegmentAppender>) {
        let mut s = self.state.borrow_mut();
        let replacement = s.new_appender.take();
        (s.pending.drain(..).collect(), s.closing, replacement)
    }

    fn segment_index_bytes(&self, base: i64) -> (Vec<u8>, Vec<u8>) {
        let s = self.state.borrow();
        s.segments
            .get(&base)
            .map(|seg| {
                (
                    seg.index.offset_bytes().to_vec(),
                    seg.index.time_bytes().to_vec(),
                )
            })
            .unwrap_or_default()
    }

    fn segment_next_offset(&self, base: i64) -> Option<i64> {
        self.state
            .borrow()
            .segments
            .get(&base)
            .map(|s| s.next_offset)
    }

    fn attach_file(&self, base: i64, file: Rc<DmaFile>) {
        if let Some(seg) = self.state.borrow_mut().segments.get_mut(&base) {
            seg.file = Some(file);
        }
    }

    fn set_written(&self, base: i64, written: u64) {
        if let Some(seg) = self.state.borrow_mut().segments.get_mut(&base) {
            seg.written = written;
        }
    }

    fn mark_sealed(&self, base: i64) {
        if let Some(seg) = self.state.borrow_mut().segments.get_mut(&base) {
            seg.sealed = true;
        }
    }

    /// Advances the durable end past `writes` flushed writes holding `released` bytes, and
    /// wakes acks, long polls, appenders waiting for room and flush waiters it satisfies.
    fn advance_durable(&self, end: i64, released: u64, writes: u64) {
        let mut s = self.state.borrow_mut();
        s.flushed_writes += writes;
        let flushed = s.flushed_writes;
        let (done, waiting): (Vec<_>, Vec<_>) = s
            .flush_waiters
            .drain(..)
            .partition(|(target, _)| *target <= flushed);
        s.flush_waiters = waiting;
        for (_, tx) in done {
            let _ = tx.send(());
        }
        s.pending_bytes = s.pending_bytes.saturating_sub(released);
        for tx in s.room_waiters.drain(..) {
            let _ = tx.send(());
        }
        if end <= s.durable_end {
            return;
        }
        s.durable_end = end;
        let (done, waiting): (Vec<_>, Vec<_>) =
            s.ack_waiters.drain(..).partition(|(last, _)| *last < end);
        s.ack_waiters = waiting;
        for (_, tx) in done {
            let _ = tx.send(Ok(()));
        }
        for tx in s.data_waiters.drain(..) {
            let _ = tx.send(());
        }
        s.tail.evict(end);
    }

    /// Refuses every further append and fails every waiting ack: the disk lost data or the
    /// ability to make it durable, and acknowledging anything more would lie.
    fn fail(&self, reason: String) {
        let mut s = self.state.borrow_mut();
        tracing::error!(dir = %self.dir.display(), %reason, "log failed; refusing further appends");
        s.failed = Some(reason.clone());
        for (_, tx) in s.ack_waiters.drain(..) {
            let _ = tx.send(Err(LogError::Storage(reason.clone())));
        }
        for tx in s.room_waiters.drain(..) {
            let _ = tx.send(());
        }
        for (_, tx) in s.flush_waiters.drain(..) {
            let _ = tx.send(());
        }
    }
}

/// Kafka's `message.timestamp.type=LogAppendTime`: data batches get the broker's append
/// time (control batches keep theirs, as in Kafka). Returns the time stamped, if any.
/// The batch as stored: a copy of its header with the offsets, the leader epoch and (for a
/// LogAppendTime topic) the broker's timestamp written in, then the producer's bytes after
/// the header, untouched and not copied. Also the LogAppendTime stamped, if any.
fn stamp(
    batch_bytes: Bytes,
    base_offset: i64,
    leader_epoch: i32,
    settings: &LogSettings,
    now: i64,
) -> Result<(Records, Option<i64>), LogError> {
    let bad = |e: batch::BatchError| LogError::Storage(e.to_string());
    let split = batch::HEADER_LEN.min(batch_bytes.len());
    let mut head = BytesMut::from(&batch_bytes[..split]);
    let body = batch_bytes.slice(split..);
    batch::assign_offsets(&mut head, base_offset, leader_epoch);
    let append_time = settings.timestamp_type == crate::config::TimestampType::LogAppendTime
        && !batch::header(&head).map_err(bad)?.is_control();
    if append_time {
        batch::set_log_append_time_split(&mut head, &body, now);
    }
    let mut stored = Records::from(head.freeze());
    stored.push(body);
    Ok((stored, append_time.then_some(now)))
}

/// Puts one offset-stamped batch into the active segment (rolling first if due), the tail
/// cache and the flusher's queue.
fn queue_batch(
    s: &mut State,
    settings: &LogSettings,
    header: &batch::BatchHeader,
    bytes: Records,
    now: i64,
) {
    let len = bytes.len() as u64;
    let base_offset = header.base_offset.get();
    let last_offset = header.last_offset();
    let active_base = roll_if_due(s, len, settings, now);
    let seg = s
        .segments
        .get_mut(&active_base)
        .expect("active segment exists");
    seg.created_ms.get_or_insert(now);
    let relative = (base_offset - seg.base_offset) as u32;
    seg.index.on_batch(
        relative,
        seg.size as u32,
        len,
        header.max_timestamp.get(),
        settings.index_interval_bytes,
    );
    seg.size += len;
    seg.next_offset = last_offset + 1;
    s.next_offset = last_offset + 1;
    s.pending_bytes += len;
    s.tail.push(CachedBatch {
        base_offset,
        last_offset,
        bytes: bytes.clone(),
    });
    s.pending.push_back(PendingWrite {
        segment_base: active_base,
        bytes,
        last_offset,
        records: header.record_count.get().max(0) as u64,
    });
    s.queued_writes += 1;
}

/// Starts a new active segment when the next batch would not fit (`segment.bytes`) or the
/// active one is older than `segment.ms`; returns the active base.
fn roll_if_due(s: &mut State, len: u64, settings: &LogSettings, now: i64) -> i64 {
    let (&base, active) = s.segments.iter().next_back().expect("a log has a segment");
    let full = active.size + len > settings.segment_bytes;
    let old = active
        .created_ms
        .is_some_and(|created| now - created >= settings.segment_ms);
    if active.size == 0 || !(full || old) {
        return base;
    }
    let new_base = s.next_offset;
    s.segments.insert(new_base, Segment::new(new_base));
    new_base
}

#[cfg(test)]
mod tests;
