//! One partition's on-disk log: segments of RecordBatch v2 bytes, sparse indexes, the O_DIRECT
//! appender with group commit, the tail cache, recovery at open. It knows batches, not
//! requests; it assigns offsets, keeps them dense and in order, and says what is durable.
//!
//! Shape: a [`Log`] is owned by one shard and shared between that shard's tasks through `Rc`.
//! `append` is synchronous (it assigns offsets and queues the bytes), so appends happen in the
//! order they are called. One flusher task per log writes queued bytes in order, fdatasyncs
//! per the durability policy, then advances the durable end and wakes whoever waits on it.
//! State sits in a `RefCell` that is never borrowed across an `.await`.
//!
//! The durable end is also the high watermark a single-replica partition exposes: a consumer
//! never sees a batch that a crash could still take away.

mod appender;
pub mod index;
mod recovery;
mod segment;
mod tail_cache;

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;

use crate::base::{Clock, SystemClock};
use crate::config::{Durability, LogSettings};
use crate::protocol::batch;
use crate::runtime;

use appender::SegmentAppender;
use segment::Segment;
use tail_cache::{CachedBatch, TailCache};

/// Errors of the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("offset {offset} is outside the log [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("storage error: {0}")]
    Storage(String),
    #[error("the log is closed")]
    Closed,
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

struct PendingWrite {
    segment_base: i64,
    bytes: Bytes,
    last_offset: i64,
}

struct State {
    segments: BTreeMap<i64, Segment>,
    next_offset: i64,
    durable_end: i64,
    log_start: i64,
    pending: VecDeque<PendingWrite>,
    tail: TailCache,
    ack_waiters: Vec<(i64, oneshot::Sender<Result<(), LogError>>)>,
    data_waiters: Vec<oneshot::Sender<()>>,
    failed: Option<String>,
    closing: bool,
}

/// A partition log. See the module docs for its contract.
pub struct Log {
    dir: PathBuf,
    settings: LogSettings,
    state: RefCell<State>,
    wake_flusher: RefCell<mpsc::Sender<()>>,
    flusher_done: RefCell<Option<oneshot::Receiver<()>>>,
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering the active segment, and starts its
    /// flusher on the current shard.
    pub async fn open(dir: &Path, settings: LogSettings) -> Result<Rc<Log>, LogError> {
        std::fs::create_dir_all(dir)?;
        let recovered = recovery::recover(dir, &settings).await?;
        let (tx, rx) = mpsc::channel(1);
        let (done_tx, done_rx) = oneshot::channel();
        let log = Rc::new(Log {
            dir: dir.to_owned(),
            state: RefCell::new(State {
                segments: recovered.segments,
                next_offset: recovered.next_offset,
                durable_end: recovered.next_offset,
                log_start: recovered.log_start,
                pending: VecDeque::new(),
                tail: TailCache::new(settings.tail_cache_bytes),
                ack_waiters: Vec::new(),
                data_waiters: Vec::new(),
                failed: None,
                closing: false,
            }),
            settings,
            wake_flusher: RefCell::new(tx),
            flusher_done: RefCell::new(Some(done_rx)),
        });
        let flusher = Flusher {
            log: Rc::downgrade(&log),
            appender: recovered.appender,
            wake: rx,
        };
        runtime::detach(flusher.run(done_tx));
        if log.settings.durability == Durability::Interval {
            runtime::detach(interval_syncer(Rc::downgrade(&log)));
        }
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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
    /// hold exactly one batch that passed [`batch::validate`].
    pub fn append(
        &self,
        mut batch_bytes: BytesMut,
        leader_epoch: i32,
    ) -> Result<Appended, LogError> {
        let mut s = self.state.borrow_mut();
        if let Some(reason) = &s.failed {
            return Err(LogError::Storage(reason.clone()));
        }
        if s.closing {
            return Err(LogError::Closed);
        }
        let base_offset = s.next_offset;
        batch::assign_offsets(&mut batch_bytes, base_offset, leader_epoch);
        let header = *batch::header(&batch_bytes).map_err(|e| LogError::Storage(e.to_string()))?;
        let last_offset = header.last_offset();
        let len = batch_bytes.len() as u64;
        let bytes = batch_bytes.freeze();
        let segment_bytes = self.settings.segment_bytes;
        let active_base = roll_if_full(&mut s, len, segment_bytes);
        let interval = self.settings.index_interval_bytes;
        let seg = s
            .segments
            .get_mut(&active_base)
            .expect("active segment exists");
        let relative = (base_offset - seg.base_offset) as u32;
        seg.index.on_batch(
            relative,
            seg.size as u32,
            len,
            header.max_timestamp.get(),
            interval,
        );
        seg.size += len;
        seg.next_offset = last_offset + 1;
        s.next_offset = last_offset + 1;
        s.tail.push(CachedBatch {
            base_offset,
            last_offset,
            bytes: bytes.clone(),
        });
        s.pending.push_back(PendingWrite {
            segment_base: active_base,
            bytes,
            last_offset,
        });
        drop(s);
        // A full channel already holds a wake-up; the flusher drains everything queued.
        let _ = self.wake_flusher.borrow_mut().try_send(());
        Ok(Appended {
            base_offset,
            last_offset,
        })
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

    /// Long polls parked on this log (for metrics and tests).
    pub fn data_waiters(&self) -> usize {
        self.state.borrow().data_waiters.len()
    }

    /// Reads whole batches from `offset`, below the high watermark, about `max_bytes` of them
    /// (at least one whole batch when any is there).
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, LogError> {
        self.read_below(offset, max_bytes, i64::MAX).await
    }

    /// As [`Log::read`], but no batch at or past `upper` either (a last stable offset).
    pub async fn read_below(
        &self,
        offset: i64,
        max_bytes: usize,
        upper: i64,
    ) -> Result<Bytes, LogError> {
        let (file, position, segment_end, hw) = {
            let s = self.state.borrow();
            let hw = s.durable_end.min(upper.max(s.log_start));
            if offset < s.log_start || offset > s.next_offset {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    start: s.log_start,
                    end: s.next_offset,
                });
            }
            if offset >= hw {
                return Ok(Bytes::new());
            }
            if s.tail.covers(offset) {
                return Ok(s.tail.read(offset, hw, max_bytes));
            }
            let (_, seg) =
                s.segments.range(..=offset).next_back().ok_or_else(|| {
                    LogError::Storage(format!("no segment holds offset {offset}"))
                })?;
            let file = seg
                .file
                .clone()
                .ok_or_else(|| LogError::Storage("segment file missing".into()))?;
            let position = seg.index.position_for((offset - seg.base_offset) as u32);
            (file, position as u64, seg.size, hw)
        };
        recovery::read_batches(&file, position, segment_end, offset, hw, max_bytes).await
    }

    /// The offset of the first record with timestamp >= `timestamp`, if any.
    pub async fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        let candidates: Vec<(Rc<crate::runtime::DmaFile>, u64, u64, i64)> = {
            let s = self.state.borrow();
            s.segments
                .values()
                .filter(|seg| seg.index.max_timestamp() >= timestamp && seg.file.is_some())
                .filter_map(|seg| {
                    let rel = seg.index.relative_offset_for_time(timestamp)?;
                    let pos = seg.index.position_for(rel);
                    Some((seg.file.clone()?, pos as u64, seg.size, s.durable_end))
                })
                .take(1)
                .collect()
        };
        for (file, pos, end, hw) in candidates {
            if let Some(found) = recovery::find_timestamp(&file, pos, end, hw, timestamp).await? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Flushes everything queued, syncs, stops the flusher and trims the active segment.
    pub async fn close(&self) -> Result<(), LogError> {
        self.state.borrow_mut().closing = true;
        let _ = self.wake_flusher.borrow_mut().try_send(());
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
        std::fs::remove_dir_all(&self.dir)?;
        Ok(())
    }

    /// Wall-clock now, for callers that stamp records (LogAppendTime, retention).
    pub fn now_ms(&self) -> i64 {
        SystemClock.now_ms()
    }

    fn take_pending(&self) -> (Vec<PendingWrite>, bool) {
        let mut s = self.state.borrow_mut();
        (s.pending.drain(..).collect(), s.closing)
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

    fn attach_file(&self, base: i64, file: Rc<crate::runtime::DmaFile>) {
        if let Some(seg) = self.state.borrow_mut().segments.get_mut(&base) {
            seg.file = Some(file);
        }
    }

    fn mark_sealed(&self, base: i64) {
        if let Some(seg) = self.state.borrow_mut().segments.get_mut(&base) {
            seg.sealed = true;
        }
    }

    /// Advances the durable end and wakes acks and long polls that it satisfies.
    fn advance_durable(&self, end: i64) {
        let mut s = self.state.borrow_mut();
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

    fn fail(&self, reason: String) {
        let mut s = self.state.borrow_mut();
        tracing::error!(dir = %self.dir.display(), %reason, "log failed; refusing further appends");
        s.failed = Some(reason.clone());
        for (_, tx) in s.ack_waiters.drain(..) {
            let _ = tx.send(Err(LogError::Storage(reason.clone())));
        }
    }
}

/// Starts a new active segment when the next batch would not fit; returns the active base.
fn roll_if_full(s: &mut State, len: u64, segment_bytes: u64) -> i64 {
    let (&base, active) = s.segments.iter().next_back().expect("a log has a segment");
    if active.size == 0 || active.size + len <= segment_bytes {
        return base;
    }
    let new_base = s.next_offset;
    s.segments.insert(new_base, Segment::new(new_base));
    new_base
}

/// The task that writes queued batches in order and makes them durable.
struct Flusher {
    log: std::rc::Weak<Log>,
    appender: Option<SegmentAppender>,
    wake: mpsc::Receiver<()>,
}

impl Flusher {
    async fn run(mut self, done: oneshot::Sender<()>) {
        loop {
            let Some(log) = self.log.upgrade() else { break };
            let (writes, closing) = log.take_pending();
            if !writes.is_empty() {
                if let Err(e) = self.flush(&log, writes).await {
                    log.fail(e.to_string());
                }
                continue;
            }
            if closing {
                if let Some(app) = &self.appender {
                    if let Err(e) = app.seal().await {
                        log.fail(e.to_string());
                    }
                }
                break;
            }
            drop(log);
            if self.wake.next().await.is_none() {
                break;
            }
        }
        let _ = done.send(());
    }

    async fn flush(&mut self, log: &Log, writes: Vec<PendingWrite>) -> std::io::Result<()> {
        let mut i = 0;
        let mut last_offset = -1;
        while i < writes.len() {
            let base = writes[i].segment_base;
            let group_end = writes[i..]
                .iter()
                .position(|w| w.segment_base != base)
                .map_or(writes.len(), |n| i + n);
            self.switch_segment(log, base).await?;
            let chunks: Vec<Bytes> = writes[i..group_end]
                .iter()
                .map(|w| w.bytes.clone())
                .collect();
            let app = self.appender.as_mut().expect("switch_segment opened one");
            app.write(&chunks).await?;
            last_offset = writes[group_end - 1].last_offset;
            i = group_end;
        }
        if log.settings.durability == Durability::Fsync {
            if let Some(app) = &self.appender {
                app.sync().await?;
            }
        }
        log.advance_durable(last_offset + 1);
        Ok(())
    }

    /// Makes `base` the segment being written: seals the previous one, creates the new file.
    async fn switch_segment(&mut self, log: &Log, base: i64) -> std::io::Result<()> {
        if self
            .appender
            .as_ref()
            .is_some_and(|a| a.base_offset == base)
        {
            return Ok(());
        }
        if let Some(old) = self.appender.take() {
            old.seal().await?;
            let (offsets, times) = log.segment_index_bytes(old.base_offset);
            write_index_file(&segment::time_index_path(&log.dir, old.base_offset), &times).await?;
            write_index_file(&segment::index_path(&log.dir, old.base_offset), &offsets).await?;
            log.mark_sealed(old.base_offset);
        }
        let file = Rc::new(runtime::open_dma_rw(&segment::log_path(&log.dir, base)).await?);
        log.attach_file(base, file.clone());
        self.appender = Some(SegmentAppender::new(base, file, 0, Vec::new()));
        sync_dir(&log.dir)?;
        Ok(())
    }
}

/// Writes a sealed segment's index; the offset index goes last, so its presence means the
/// segment was sealed whole (recovery scans a segment without one).
async fn write_index_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// In `interval` durability, fdatasyncs the active segment every `flush_interval`.
async fn interval_syncer(log: std::rc::Weak<Log>) {
    loop {
        let Some(strong) = log.upgrade() else { return };
        let every = strong.settings.flush_interval;
        let file = {
            let s = strong.state.borrow();
            if s.closing {
                return;
            }
            s.segments
                .values()
                .next_back()
                .and_then(|seg| seg.file.clone())
        };
        drop(strong);
        if let Some(file) = file {
            if let Err(e) = file.fdatasync().await {
                tracing::warn!(error = %e, "interval fdatasync failed");
            }
        }
        runtime::sleep(every).await;
    }
}

#[cfg(test)]
mod tests;
