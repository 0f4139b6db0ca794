//! The tasks that make a log durable: the flusher, which writes queued batches in order, seals
//! a segment when the next one starts and fdatasyncs per the durability policy, and the
//! interval syncer of `interval` durability. A failed write or sync fails the log (no further
//! appends are accepted), in either durability mode.

use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;

use super::appender::SegmentAppender;
use super::checkpoint::{self, CleanShutdown};
use super::segment;
use super::Log;
use crate::base::Records;
use crate::config::Durability;
use crate::runtime;

/// Bytes of one append, queued for the flusher. Empty bytes ask only for a roll: the flusher
/// seals the active segment and starts `segment_base`.
pub(super) struct PendingWrite {
    pub segment_base: i64,
    pub bytes: Records,
    pub last_offset: i64,
    /// Records in the batch (for `flush.messages`).
    pub records: u64,
}

/// The task that writes queued batches in order and makes them durable.
pub(super) struct Flusher {
    log: Weak<Log>,
    appender: Option<SegmentAppender>,
    wake: mpsc::Receiver<()>,
    /// Records written since the last fdatasync (interval durability's `flush.messages`).
    unsynced_records: u64,
}

impl Flusher {
    pub fn new(
        log: Weak<Log>,
        appender: Option<SegmentAppender>,
        wake: mpsc::Receiver<()>,
    ) -> Self {
        Self {
            log,
            appender,
            wake,
            unsynced_records: 0,
        }
    }

    pub async fn run(mut self, done: oneshot::Sender<()>) {
        loop {
            let Some(log) = self.log.upgrade() else { break };
            let (writes, closing, replacement) = log.take_pending();
            if let Some(appender) = replacement {
                // A truncation moved the active end; the old appender's file and partial
                // page no longer describe it.
                self.appender = Some(appender);
            }
            if !writes.is_empty() {
                let released: u64 = writes.iter().map(|w| w.bytes.len() as u64).sum();
                let last = writes.last().map_or(-1, |w| w.last_offset);
                let count = writes.len() as u64;
                match self.flush(&log, writes).await {
                    Ok(()) => log.advance_durable(last + 1, released, count),
                    Err(e) => log.fail(e.to_string()),
                }
                continue;
            }
            if closing {
                if let Err(e) = self.shut_down_cleanly(&log).await {
                    log.fail(e.to_string());
                }
                break;
            }
            drop(log);
            if self.wake.next().await.is_none() {
                break;
            }
            self.gather().await;
        }
        let _ = done.send(());
    }

    /// Group commit: after the first append of a quiet spell wakes the flusher, waits
    /// `group_commit_window` so that appends arriving meanwhile share its write and sync.
    async fn gather(&self) {
        let window = match self.log.upgrade() {
            Some(log) if !log.state.borrow().closing => log.settings.borrow().group_commit_window,
            _ => return,
        };
        if !window.is_zero() {
            runtime::sleep(window).await;
        }
    }

    /// Writes `writes` in order, switching segments where they do, and syncs if the durability
    /// policy asks for it.
    async fn flush(&mut self, log: &Log, writes: Vec<PendingWrite>) -> std::io::Result<()> {
        self.unsynced_records += writes.iter().map(|w| w.records).sum::<u64>();
        let mut i = 0;
        while i < writes.len() {
            let base = writes[i].segment_base;
            let group_end = writes[i..]
                .iter()
                .position(|w| w.segment_base != base)
                .map_or(writes.len(), |n| i + n);
            self.switch_segment(log, base).await?;
            let chunks: Vec<Bytes> = writes[i..group_end]
                .iter()
                .flat_map(|w| w.bytes.pieces().iter().cloned())
                .collect();
            let app = self.appender.as_mut().expect("switch_segment opened one");
            if !chunks.is_empty() {
                app.write(&chunks).await?;
            }
            log.set_written(base, app.logical_end());
            i = group_end;
        }
        let (durability, flush_messages) = {
            let settings = log.settings.borrow();
            (settings.durability, settings.flush_messages)
        };
        let sync_now = durability == Durability::Fsync || self.unsynced_records >= flush_messages;
        if sync_now {
            if let Some(app) = &self.appender {
                app.sync().await?;
            }
            self.unsynced_records = 0;
        }
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
            write_indexes(log, old.base_offset).await?;
            log.mark_sealed(old.base_offset);
        }
        let file = Rc::new(runtime::open_dma_rw(&segment::log_path(&log.dir, base)).await?);
        log.attach_file(base, file.clone());
        self.appender = Some(SegmentAppender::new(base, file, 0, Vec::new()));
        let dir = log.dir.clone();
        runtime::off_reactor(move || checkpoint::sync_dir(&dir)).await
    }

    /// Seals the active segment, writes its index files, then the clean-shutdown marker.
    async fn shut_down_cleanly(&mut self, log: &Log) -> std::io::Result<()> {
        let Some(app) = &self.appender else {
            return Ok(());
        };
        app.seal().await?;
        let base = app.base_offset;
        write_indexes(log, base).await?;
        let marker = CleanShutdown {
            base_offset: base,
            size: app.logical_end(),
            next_offset: log.segment_next_offset(base).unwrap_or(base),
        };
        let dir = log.dir.clone();
        runtime::off_reactor(move || checkpoint::write_clean_shutdown(&dir, marker)).await
    }
}

/// Writes a segment's index files; the offset index goes last, so its presence means the
/// segment was sealed whole (recovery scans a segment without one).
async fn write_indexes(log: &Log, base: i64) -> std::io::Result<()> {
    let (offsets, times) = log.segment_index_bytes(base);
    let dir: PathBuf = log.dir.clone();
    runtime::off_reactor(move || write_index_files(&dir, base, &offsets, &times)).await
}

fn write_index_files(dir: &Path, base: i64, offsets: &[u8], times: &[u8]) -> std::io::Result<()> {
    checkpoint::write_atomically(&segment::time_index_path(dir, base), times)?;
    checkpoint::write_atomically(&segment::index_path(dir, base), offsets)
}

/// In `interval` durability, fdatasyncs the active segment every `flush_interval`; a failed
/// sync fails the log, as in fsync durability. In `fsync` durability it waits for a settings
/// change (the flusher syncs every write).
pub(super) async fn interval_syncer(log: Weak<Log>, mut changed: mpsc::Receiver<()>) {
    loop {
        let (durability, every, file) = {
            let Some(strong) = log.upgrade() else { return };
            let s = strong.state.borrow();
            if s.closing || s.failed.is_some() {
                return;
            }
            let settings = strong.settings.borrow();
            let file = s
                .segments
                .values()
                .next_back()
                .and_then(|seg| seg.file.clone());
            (settings.durability, settings.flush_interval, file)
        };
        if durability != Durability::Interval {
            if changed.next().await.is_none() {
                return;
            }
            continue;
        }
        if let Some(file) = file {
            let started = std::time::Instant::now();
            let synced = sync_file(&log, &file).await;
            crate::metrics::record_stage(crate::metrics::Stage::Fsync, started.elapsed());
            if let Err(e) = synced {
                if let Some(strong) = log.upgrade() {
                    strong.fail(format!("interval fdatasync failed: {e}"));
                }
                return;
            }
        }
        let _ = runtime::timeout(every, changed.next()).await;
    }
}

async fn sync_file(log: &Weak<Log>, file: &runtime::DmaFile) -> std::io::Result<()> {
    #[cfg(test)]
    if log.upgrade().is_some_and(|l| l.sync_fault.take()) {
        return Err(std::io::Error::other("injected fault"));
    }
    let _ = log;
    file.fdatasync().await.map_err(std::io::Error::from)
}
