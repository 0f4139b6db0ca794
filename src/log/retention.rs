//! Retention and DeleteRecords: moving a log's start offset and deleting whole segments.
//!
//! Retention (`cleanup.policy` containing `delete`) deletes the oldest segments while each is
//! past `retention.ms` (its largest timestamp is older) or while the log without it still
//! holds `retention.bytes`; it also deletes segments wholly below the log start offset that
//! DeleteRecords moved. Only a prefix of the log goes, and only sealed segments: when the
//! active segment itself is past retention the log rolls first and the next pass deletes it,
//! as Kafka does. Offsets below the new start are out of range for fetches.
//!
//! A deletion persists the new log start first, then removes the segment files (a crash in
//! between leaves files that the checkpoint already puts below the start). Deletions and
//! cleaner swaps take the log's maintenance lock, so they never touch the same segment at once.

use std::path::PathBuf;

use super::checkpoint;
use super::flusher::PendingWrite;
use super::segment::{self, Segment};
use super::{Log, LogError};
use crate::config::LogSettings;
use crate::runtime;

/// What retention needs to know about one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SegmentSummary {
    pub base: i64,
    pub next_offset: i64,
    pub size: u64,
    /// Largest timestamp of its batches, -1 when it has none.
    pub max_timestamp: i64,
    pub sealed: bool,
}

/// The outcome of one retention decision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Deletion {
    /// Bases of the sealed segments to delete, oldest first.
    pub bases: Vec<i64>,
    /// The active segment is past retention: roll it so the next pass can delete it.
    pub roll_active: bool,
}

/// Decides which of `segments` (oldest first, the active one last) retention deletes now.
pub(super) fn plan(
    segments: &[SegmentSummary],
    settings: &LogSettings,
    log_start: i64,
    now_ms: i64,
) -> Deletion {
    let total: u64 = segments.iter().map(|s| s.size).sum();
    let by_size = settings.cleanup.delete && settings.retention_bytes >= 0;
    let by_time = settings.cleanup.delete && settings.retention_ms >= 0;
    let mut excess = total as i128 - settings.retention_bytes as i128;
    let mut out = Deletion::default();
    for seg in segments {
        let below_start = seg.sealed && seg.next_offset <= log_start;
        let expired = by_time && seg.size > 0 && now_ms - seg.max_timestamp > settings.retention_ms;
        let oversize = by_size && seg.size > 0 && excess - seg.size as i128 >= 0;
        if !(below_start || expired || oversize) {
            break;
        }
        if !seg.sealed {
            out.roll_active = expired || oversize;
            break;
        }
        excess -= seg.size as i128;
        out.bases.push(seg.base);
    }
    out
}

impl Log {
    fn segment_summaries(&self) -> (Vec<SegmentSummary>, i64) {
        let s = self.state.borrow();
        let summaries = s
            .segments
            .values()
            .map(|seg| SegmentSummary {
                base: seg.base_offset,
                next_offset: seg.next_offset,
                size: seg.size,
                max_timestamp: seg.index.max_timestamp(),
                sealed: seg.sealed,
            })
            .collect();
        (summaries, s.log_start)
    }

    /// One housekeeping pass at `now_ms`: rolls an active segment older than `segment.ms`
    /// (so an idle log's data can age out), then applies retention. Returns how many
    /// segments were deleted.
    pub async fn housekeep(&self, now_ms: i64) -> Result<usize, LogError> {
        if self.active_segment_expired(now_ms) {
            self.roll();
        }
        self.enforce_retention(now_ms).await
    }

    /// Whether the active segment holds data and is older than `segment.ms`.
    fn active_segment_expired(&self, now_ms: i64) -> bool {
        let segment_ms = self.settings.borrow().segment_ms;
        let s = self.state.borrow();
        s.segments.values().next_back().is_some_and(|a| {
            a.size > 0
                && a.created_ms
                    .is_some_and(|created| now_ms - created >= segment_ms)
        })
    }

    /// One retention pass at `now_ms`: deletes whole segments past `retention.ms`, beyond
    /// `retention.bytes` or below the log start. Returns how many segments went.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let _maintenance = self.maintenance.lock().await;
        let (summaries, log_start) = self.segment_summaries();
        let mut deletion = plan(&summaries, &self.settings.borrow(), log_start, now_ms);
        if deletion.roll_active && self.roll() {
            // Once the flusher has sealed it, the expired segment is deleted like the others.
            self.wait_flushed().await;
            let (summaries, log_start) = self.segment_summaries();
            deletion = plan(&summaries, &self.settings.borrow(), log_start, now_ms);
        }
        if deletion.bases.is_empty() {
            return Ok(0);
        }
        let next_start = self.start_after(deletion.bases.last().copied());
        self.move_log_start(next_start).await?;
        self.delete_segments(&deletion.bases).await
    }

    /// Kafka DeleteRecords: makes `offset` (-1: the high watermark) the log start, deleting
    /// the segments wholly below it. Returns the new log start (the low watermark).
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        let _maintenance = self.maintenance.lock().await;
        let (target, log_start) = {
            let s = self.state.borrow();
            let target = if offset == -1 { s.durable_end } else { offset };
            if target < 0 || target > s.durable_end {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    start: s.log_start,
                    end: s.durable_end,
                });
            }
            (target, s.log_start)
        };
        if target <= log_start {
            return Ok(log_start);
        }
        self.move_log_start(target).await?;
        let (summaries, _) = self.segment_summaries();
        let below: Vec<i64> = summaries
            .iter()
            .take_while(|s| s.sealed && s.next_offset <= target)
            .map(|s| s.base)
            .collect();
        self.delete_segments(&below).await?;
        Ok(target)
    }

    /// The log start once the segments up to `last_deleted` are gone: the next segment's base.
    fn start_after(&self, last_deleted: Option<i64>) -> i64 {
        let s = self.state.borrow();
        let next = last_deleted
            .and_then(|b| s.segments.range(b + 1..).next().map(|(&base, _)| base))
            .unwrap_or(s.next_offset);
        next.max(s.log_start)
    }

    /// Persists, then publishes, a higher log start.
    async fn move_log_start(&self, start: i64) -> Result<(), LogError> {
        if start <= self.state.borrow().log_start {
            return Ok(());
        }
        let dir = self.dir.clone();
        runtime::off_reactor(move || checkpoint::write_log_start(&dir, start)).await?;
        let mut s = self.state.borrow_mut();
        s.log_start = s.log_start.max(start);
        Ok(())
    }

    /// Removes sealed segments (the caller holds the maintenance lock): from memory first, so
    /// no new read finds them, then their files. Reads in flight keep their open file.
    async fn delete_segments(&self, bases: &[i64]) -> Result<usize, LogError> {
        let removed: Vec<Segment> = {
            let mut s = self.state.borrow_mut();
            let last = s.segments.keys().next_back().copied();
            bases
                .iter()
                .filter(|b| Some(**b) != last)
                .filter_map(|b| match s.segments.get(b) {
                    Some(seg) if seg.sealed => s.segments.remove(b),
                    _ => None,
                })
                .collect()
        };
        let paths: Vec<PathBuf> = removed
            .iter()
            .flat_map(|seg| segment::files_of(&self.dir, seg.base_offset))
            .collect();
        let count = removed.len();
        drop(removed);
        let dir = self.dir.clone();
        runtime::off_reactor(move || {
            for p in &paths {
                checkpoint::remove_if_present(p)?;
            }
            checkpoint::sync_dir(&dir)
        })
        .await?;
        if count > 0 {
            tracing::info!(dir = %self.dir.display(), segments = count, "deleted segments");
        }
        Ok(count)
    }

    /// Seals the active segment and starts a new one at the log end (for `segment.ms` on an
    /// idle log, and before retention deletes an expired active segment). False when the
    /// active segment is empty or the log is closing or failed.
    pub fn roll(&self) -> bool {
        let mut s = self.state.borrow_mut();
        if s.closing || s.failed.is_some() || s.truncating {
            return false;
        }
        let active_empty = s.segments.values().next_back().is_none_or(|a| a.size == 0);
        if active_empty {
            return false;
        }
        let new_base = s.next_offset;
        s.segments.insert(new_base, Segment::new(new_base));
        s.pending.push_back(PendingWrite {
            segment_base: new_base,
            bytes: Default::default(),
            last_offset: new_base - 1,
            records: 0,
        });
        s.queued_writes += 1;
        drop(s);
        self.wake_flusher();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CleanupPolicy;

    fn seg(base: i64, next: i64, size: u64, ts: i64, sealed: bool) -> SegmentSummary {
        SegmentSummary {
            base,
            next_offset: next,
            size,
            max_timestamp: ts,
            sealed,
        }
    }

    fn settings(ms: i64, bytes: i64) -> LogSettings {
        LogSettings {
            retention_ms: ms,
            retention_bytes: bytes,
            ..LogSettings::default()
        }
    }

    #[test]
    fn time_retention_deletes_the_expired_prefix_only() {
        let segs = [
            seg(0, 10, 100, 1_000, true),
            seg(10, 20, 100, 5_000, true),
            seg(20, 30, 100, 1_000, true), // old, but behind a young one
            seg(30, 35, 50, 9_000, false),
        ];
        let d = plan(&segs, &settings(3_000, -1), 0, 7_000);
        assert_eq!(d.bases, vec![0]);
        assert!(!d.roll_active);
        let d = plan(&segs, &settings(3_000, -1), 0, 20_000);
        assert_eq!(d.bases, vec![0, 10, 20]);
        assert!(d.roll_active, "the active segment expired too");
    }

    #[test]
    fn size_retention_keeps_at_least_retention_bytes() {
        let segs = [
            seg(0, 10, 100, 0, true),
            seg(10, 20, 100, 0, true),
            seg(20, 30, 100, 0, true),
            seg(30, 35, 50, 0, false),
        ];
        // 350 bytes, keep 200: deleting 100 leaves 250, another 100 leaves 150 < 200
        let d = plan(&segs, &settings(-1, 200), 0, 0);
        assert_eq!(d.bases, vec![0]);
        let d = plan(&segs, &settings(-1, 0), 0, 0);
        assert_eq!(d.bases, vec![0, 10, 20]);
        assert!(d.roll_active);
    }

    #[test]
    fn compact_only_topics_keep_everything_but_what_lies_below_the_start() {
        let segs = [seg(0, 10, 100, 0, true), seg(10, 20, 100, 0, false)];
        let mut s = settings(1, 1);
        s.cleanup = CleanupPolicy::COMPACT;
        assert_eq!(plan(&segs, &s, 0, 1_000_000), Deletion::default());
        assert_eq!(plan(&segs, &s, 12, 1_000_000).bases, vec![0]);
    }
}
