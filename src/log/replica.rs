//! What a follower does to its log: append batches fetched from the leader with their offsets
//! and leader epochs as the leader assigned them, and truncate a divergent tail.
//!
//! Truncation is crash-safe by its order on disk: segments past the cut go newest first (each
//! `.log` before its indexes, the directory synced after each), then the segment holding the
//! cut loses its index files (it becomes the active segment, which recovery scans) and is cut
//! to the position of the first batch that reaches the target. A crash at any point leaves a
//! prefix of the old log, which the next open recovers like any other; the follower then
//! asks the leader again and truncates the rest.
//!
//! In memory the log is cut first, so no read started afterwards serves a batch that is
//! going; a failure on disk after that fails the log.

use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;

use super::appender::SegmentAppender;
use super::checkpoint::{self, remove_if_present};
use super::reader::{At, SegmentReader};
use super::segment::{self, Segment};
use super::{queue_batch, recovery, Appended, Log, LogError};
use crate::base::{Clock, SystemClock};
use crate::protocol::batch;
use crate::runtime::{self, DmaFile};

/// Window of the walk that finds a truncation's byte position.
const CUT_WINDOW: usize = 64 * 1024;

/// Where a truncation cuts: in segment `base`, at byte `position`, leaving `new_end` as the
/// log end (the base of the first batch that reaches the target).
struct Cut {
    base: i64,
    position: u64,
    new_end: i64,
    file: Rc<DmaFile>,
}

impl Log {
    /// Appends one batch fetched from the leader, keeping its offsets and leader epoch (the
    /// caller validated it, CRC included). It must start at the log end: a batch elsewhere is
    /// refused with [`LogError::OffsetOutOfRange`] and nothing is appended.
    pub fn append_replicated(&self, batch_bytes: Bytes) -> Result<Appended, LogError> {
        let header = *batch::header(&batch_bytes).map_err(|e| LogError::Storage(e.to_string()))?;
        let mut s = self.state.borrow_mut();
        if let Some(refused) = self.refusal(&s, batch_bytes.len() as u64) {
            return Err(refused);
        }
        let base_offset = header.base_offset.get();
        if base_offset != s.next_offset {
            return Err(LogError::OffsetOutOfRange {
                offset: base_offset,
                start: s.log_start,
                end: s.next_offset,
            });
        }
        let settings = self.settings.borrow();
        queue_batch(
            &mut s,
            &settings,
            &header,
            batch_bytes.into(),
            SystemClock.now_ms(),
        );
        drop(settings);
        drop(s);
        self.wake_flusher();
        Ok(Appended {
            base_offset,
            last_offset: header.last_offset(),
            log_append_time: None,
        })
    }

    /// Cuts the log back so that it ends at or below `offset`: the batch holding `offset`
    /// goes whole, with everything after it. Returns the new log end (`offset` when it falls
    /// on a batch boundary; nothing changes when `offset` is at or past the end). Appends are
    /// refused ([`LogError::Truncating`]) while it runs. `offset` below the log start is
    /// refused with [`LogError::OffsetOutOfRange`].
    pub async fn truncate_to(&self, offset: i64) -> Result<i64, LogError> {
        let _maintenance = self.maintenance.lock().await;
        {
            let mut s = self.state.borrow_mut();
            if let Some(reason) = &s.failed {
                return Err(LogError::Storage(reason.clone()));
            }
            if s.closing {
                return Err(LogError::Closed);
            }
            if offset >= s.next_offset {
                return Ok(s.next_offset);
            }
            if offset < s.log_start {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    start: s.log_start,
                    end: s.next_offset,
                });
            }
            s.truncating = true;
        }
        let result = self.truncate_quiesced(offset).await;
        self.state.borrow_mut().truncating = false;
        result
    }

    /// The truncation once appends are refused: waits for the flusher to finish what is
    /// queued, finds the cut, applies it in memory, then on disk.
    async fn truncate_quiesced(&self, offset: i64) -> Result<i64, LogError> {
        self.wait_flushed().await;
        if let Some(reason) = self.state.borrow().failed.clone() {
            return Err(LogError::Storage(reason));
        }
        let cut = self.find_cut(offset).await?;
        let removed = self.cut_in_memory(&cut);
        if let Err(e) = self.cut_on_disk(&cut, removed).await {
            self.fail(format!("truncation to {offset} failed: {e}"));
            return Err(e);
        }
        tracing::info!(dir = %self.dir.display(), offset, new_end = cut.new_end, "log truncated");
        Ok(cut.new_end)
    }

    /// Finds the first batch whose last offset reaches `offset`, walking from the nearest
    /// index entry of the segment that holds it.
    async fn find_cut(&self, offset: i64) -> Result<Cut, LogError> {
        let (base, file, start, written) = {
            let s = self.state.borrow();
            let (&base, seg) =
                s.segments.range(..=offset).next_back().ok_or_else(|| {
                    LogError::Storage(format!("no segment holds offset {offset}"))
                })?;
            let file = seg
                .file
                .clone()
                .ok_or_else(|| LogError::Storage("segment file missing".into()))?;
            let start = seg.index.position_for((offset - base) as u32);
            (base, file, start as u64, seg.written)
        };
        let mut reader = SegmentReader::new(&file, written, CUT_WINDOW);
        let mut pos = start;
        let mut end_of_previous = None;
        let new_end = loop {
            match reader.at(pos).await? {
                At::Batch { header, .. } if header.last_offset() >= offset => {
                    break header.base_offset.get();
                }
                At::Batch { header, len } => {
                    end_of_previous = Some(header.last_offset() + 1);
                    pos += len as u64;
                }
                // A compacted segment may end before its successor's base.
                At::End => break end_of_previous.unwrap_or(offset),
                At::Torn => {
                    return Err(LogError::Storage(format!(
                        "segment {base} holds no whole batch at {pos}"
                    )))
                }
            }
        };
        Ok(Cut {
            base,
            position: pos,
            new_end,
            file,
        })
    }

    /// Applies the cut to segments, offsets and the tail cache; returns the bases of the
    /// segments that went.
    fn cut_in_memory(&self, cut: &Cut) -> Vec<i64> {
        let mut s = self.state.borrow_mut();
        let removed: Vec<i64> = s.segments.split_off(&(cut.base + 1)).into_keys().collect();
        let seg = s
            .segments
            .get_mut(&cut.base)
            .expect("the cut segment exists");
        seg.index
            .truncate((cut.new_end - cut.base) as u32, cut.position as u32);
        seg.size = cut.position;
        seg.written = cut.position;
        seg.next_offset = cut.new_end;
        seg.sealed = false;
        s.next_offset = cut.new_end;
        s.durable_end = s.durable_end.min(cut.new_end);
        s.tail.drop_from(cut.new_end);
        removed
    }

    /// Applies the cut to the files (see the module docs for the order) and hands the
    /// flusher an appender at the new end.
    async fn cut_on_disk(&self, cut: &Cut, removed: Vec<i64>) -> Result<(), LogError> {
        let dir = self.dir.clone();
        let base = cut.base;
        runtime::off_reactor(move || remove_past_cut(&dir, &removed, base)).await?;
        cut.file
            .truncate(cut.position)
            .await
            .map_err(std::io::Error::from)?;
        cut.file.fdatasync().await.map_err(std::io::Error::from)?;
        let mut active = Segment::new(base);
        active.file = Some(cut.file.clone());
        active.size = cut.position;
        let appender = recovery::appender_at_end(&active).await?;
        self.state.borrow_mut().new_appender = Some(appender);
        Ok(())
    }
}

impl Log {
    /// Empties the log and starts it again, empty, at `offset` past its end (Kafka's
    /// `truncateFullyAndStartAt`): a follower whose whole log ends before the leader's log
    /// start can keep none of it and must fetch from there. An empty log may also restart
    /// below its end: the leader's start can fall inside a batch, which comes whole, from its
    /// base. Appends are refused ([`LogError::Truncating`]) while it runs; any other `offset`
    /// at or below the log end is refused with [`LogError::OffsetOutOfRange`].
    ///
    /// Crash-safe by its order on disk: the new empty segment first (a log with a gap before
    /// its last segment recovers as one ending at `offset`), then the log-start checkpoint,
    /// then the old segments, oldest first.
    pub async fn restart_at(&self, offset: i64) -> Result<(), LogError> {
        let _maintenance = self.maintenance.lock().await;
        {
            let mut s = self.state.borrow_mut();
            if let Some(reason) = &s.failed {
                return Err(LogError::Storage(reason.clone()));
            }
            if s.closing {
                return Err(LogError::Closed);
            }
            let empty = s.log_start == s.next_offset;
            if offset <= s.next_offset && !(empty && offset < s.next_offset) {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    start: s.log_start,
                    end: s.next_offset,
                });
            }
            s.truncating = true;
        }
        let result = self.restart_quiesced(offset).await;
        self.state.borrow_mut().truncating = false;
        result
    }

    async fn restart_quiesced(&self, offset: i64) -> Result<(), LogError> {
        self.wait_flushed().await;
        if let Some(reason) = self.state.borrow().failed.clone() {
            return Err(LogError::Storage(reason));
        }
        let dir = self.dir.clone();
        let file = Rc::new(runtime::open_dma_rw(&segment::log_path(&dir, offset)).await?);
        runtime::off_reactor(move || checkpoint::sync_dir(&dir)).await?;
        let old = self.restart_in_memory(offset, file.clone());
        self.state.borrow_mut().new_appender =
            Some(SegmentAppender::new(offset, file, 0, Vec::new()));
        let dir = self.dir.clone();
        let on_disk = runtime::off_reactor(move || {
            checkpoint::write_log_start(&dir, offset)?;
            for base in old {
                for path in segment::files_of(&dir, base) {
                    remove_if_present(&path)?;
                }
            }
            checkpoint::sync_dir(&dir)
        })
        .await;
        if let Err(e) = on_disk {
            self.fail(format!("restarting the log at {offset} failed: {e}"));
            return Err(e.into());
        }
        tracing::info!(dir = %self.dir.display(), offset, "log emptied and restarted");
        Ok(())
    }

    /// Replaces every segment with an empty one at `offset`; returns the old segments' bases.
    fn restart_in_memory(&self, offset: i64, file: Rc<DmaFile>) -> Vec<i64> {
        let mut s = self.state.borrow_mut();
        let mut active = Segment::new(offset);
        active.file = Some(file);
        let old = std::mem::replace(&mut s.segments, [(offset, active)].into());
        s.next_offset = offset;
        s.durable_end = offset;
        s.log_start = offset;
        s.tail.drop_from(i64::MIN);
        old.into_keys().collect()
    }
}

/// Removes the segments past a cut, newest first, then the index files of the segment that
/// becomes active (blocking).
fn remove_past_cut(dir: &Path, removed: &[i64], kept: i64) -> std::io::Result<()> {
    for &base in removed.iter().rev() {
        for path in segment::files_of(dir, base) {
            remove_if_present(&path)?;
        }
        checkpoint::sync_dir(dir)?;
    }
    remove_if_present(&segment::index_path(dir, kept))?;
    remove_if_present(&segment::time_index_path(dir, kept))?;
    checkpoint::sync_dir(dir)
}
