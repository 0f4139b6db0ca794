//! Opening a log from its directory. Sealed segments are trusted (their index files are
//! written last, when they are sealed). The last segment is trusted too after a clean
//! shutdown whose marker still matches it; otherwise it is scanned batch by batch (length,
//! CRC32C, offsets that only grow) through the shared [`SegmentReader`], truncated at the first
//! torn or corrupt batch, and its index rebuilt. Interrupted segment swaps of the cleaner are
//! finished or undone first.
//!
//! Directory work (listing, index files, the marker) runs on the blocking thread; segment
//! files are read with DMA.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::appender::SegmentAppender;
use super::checkpoint::{self, CleanShutdown};
use super::index::SegmentIndex;
use super::reader::{At, SegmentReader};
use super::segment::{self, Segment};
use super::LogError;
use crate::base::limits::RECOVERY_READ_CHUNK;
use crate::config::LogSettings;
use crate::protocol::batch;
use crate::runtime::{self, DmaFile};

const PAGE: u64 = 4096;

pub(super) struct Recovered {
    pub segments: BTreeMap<i64, Segment>,
    pub next_offset: i64,
    pub log_start: i64,
    pub appender: Option<SegmentAppender>,
    /// Whether the last segment was trusted thanks to a clean-shutdown marker.
    pub clean: bool,
}

/// What the directory holds, read on the blocking thread.
struct Inventory {
    bases: Vec<i64>,
    /// Index files of every segment but the last, and of the last one after a clean shutdown.
    indexes: HashMap<i64, SegmentIndex>,
    marker: Option<CleanShutdown>,
    log_start: Option<i64>,
}

fn take_inventory(dir: &Path) -> std::io::Result<Inventory> {
    std::fs::create_dir_all(dir)?;
    segment::finish_interrupted_swaps(dir)?;
    let bases = segment::list_segments(dir)?;
    let marker = checkpoint::take_clean_shutdown(dir)?;
    let mut indexes = HashMap::new();
    for (i, &base) in bases.iter().enumerate() {
        let is_last = i + 1 == bases.len();
        if is_last && marker.is_none_or(|m| m.base_offset != base) {
            continue;
        }
        if let Some(index) = load_index(dir, base) {
            indexes.insert(base, index);
        }
    }
    if let Some(&last) = bases.last() {
        // An active segment's index files exist only between a clean shutdown and the next
        // open: remove them, so that only sealed segments ever have index files on disk.
        if marker.is_some() {
            checkpoint::remove_if_present(&segment::index_path(dir, last))?;
            checkpoint::remove_if_present(&segment::time_index_path(dir, last))?;
            checkpoint::sync_dir(dir)?;
        }
    }
    Ok(Inventory {
        bases,
        indexes,
        marker,
        log_start: checkpoint::read_log_start(dir)?,
    })
}

fn load_index(dir: &Path, base: i64) -> Option<SegmentIndex> {
    let offsets = std::fs::read(segment::index_path(dir, base)).ok()?;
    let times = std::fs::read(segment::time_index_path(dir, base)).unwrap_or_default();
    SegmentIndex::from_files(&offsets, &times)
}

pub(super) async fn recover(dir: &Path, settings: &LogSettings) -> Result<Recovered, LogError> {
    let owned: PathBuf = dir.to_owned();
    let mut inventory = runtime::off_reactor(move || take_inventory(&owned)).await?;
    let bases = inventory.bases.clone();
    let mut segments = BTreeMap::new();
    let mut appender = None;
    let mut clean = false;
    let mut next_offset = bases.first().copied().unwrap_or(0);
    for (i, &base) in bases.iter().enumerate() {
        let is_last = i + 1 == bases.len();
        let path = segment::log_path(dir, base);
        let file = Rc::new(runtime::open_dma_rw(&path).await?);
        let file_size = file.file_size().await.map_err(std::io::Error::from)?;
        let trusted = inventory.indexes.remove(&base);
        let mut seg = match (trusted, is_last) {
            (Some(index), false) => {
                let next = bases[i + 1];
                sealed_segment(base, file, file_size, next, index)
            }
            (Some(index), true)
                if inventory
                    .marker
                    .is_some_and(|m| m.size == file_size && m.next_offset >= base) =>
            {
                clean = true;
                let next = inventory.marker.map_or(base, |m| m.next_offset);
                let mut seg = sealed_segment(base, file, file_size, next, index);
                seg.sealed = false;
                seg.with_first_batch_time()
            }
            _ => scanned_segment(&path, base, file, file_size, is_last, settings).await?,
        };
        if is_last {
            appender = Some(appender_at_end(&seg).await?);
        }
        if !is_last && seg.next_offset > bases[i + 1] {
            return Err(LogError::Storage(format!(
                "segment {base} holds offsets up to {} past the next segment's base {}",
                seg.next_offset - 1,
                bases[i + 1]
            )));
        }
        // A sealed segment may end short of the next one's base: the cleaner removes records
        // and keeps offsets, so the next segment still starts where it did. Its offsets run
        // to that base (see `Segment::next_offset`), so reads step over the gap.
        next_offset = if is_last {
            seg.next_offset
        } else {
            bases[i + 1]
        };
        if !is_last {
            seg.next_offset = next_offset;
        }
        segments.insert(base, seg);
    }
    let first_base = bases.first().copied().unwrap_or(0);
    let log_start = inventory
        .log_start
        .map_or(first_base, |s| s.clamp(first_base, next_offset));
    if segments.is_empty() {
        segments.insert(0, Segment::new(0));
    }
    Ok(Recovered {
        segments,
        next_offset,
        log_start,
        appender,
        clean,
    })
}

fn sealed_segment(
    base: i64,
    file: Rc<DmaFile>,
    size: u64,
    next_offset: i64,
    index: SegmentIndex,
) -> Segment {
    Segment {
        base_offset: base,
        file: Some(file),
        size,
        written: size,
        next_offset,
        index,
        sealed: true,
        created_ms: None,
    }
}

/// Scans a segment without trusted index files, truncating it at the first bad batch.
async fn scanned_segment(
    path: &Path,
    base: i64,
    file: Rc<DmaFile>,
    file_size: u64,
    is_last: bool,
    settings: &LogSettings,
) -> Result<Segment, LogError> {
    // The active segment is never compacted, so its offsets are dense; a sealed one being
    // rescanned may have the cleaner's gaps.
    let dense = is_last;
    let scan = scan_segment(&file, file_size, base, settings.index_interval_bytes, dense).await?;
    if scan.valid_len < file_size {
        tracing::warn!(
            segment = %path.display(),
            kept = scan.valid_len,
            dropped = file_size - scan.valid_len,
            reason = %scan.stop_reason,
            "truncating torn or corrupt tail"
        );
        file.truncate(scan.valid_len)
            .await
            .map_err(std::io::Error::from)?;
        file.fdatasync().await.map_err(std::io::Error::from)?;
    }
    Ok(Segment {
        base_offset: base,
        file: Some(file),
        size: scan.valid_len,
        written: scan.valid_len,
        next_offset: scan.next_offset,
        index: scan.index,
        sealed: !is_last,
        created_ms: None,
    }
    .with_first_batch_time())
}

impl Segment {
    /// A recovered segment's age for `segment.ms` counts from its first batch's timestamp,
    /// as Kafka's does.
    fn with_first_batch_time(mut self) -> Self {
        self.created_ms = self.index.first_timestamp();
        self
    }
}

/// An appender that continues after the last whole batch of `seg`.
pub(super) async fn appender_at_end(seg: &Segment) -> Result<SegmentAppender, LogError> {
    let file = seg
        .file
        .clone()
        .ok_or_else(|| LogError::Storage("recovered segment has no file".into()))?;
    let end = seg.size;
    let page_start = end - end % PAGE;
    let partial = if page_start == end {
        Vec::new()
    } else {
        let r = file
            .read_at(page_start, (end - page_start) as usize)
            .await
            .map_err(std::io::Error::from)?;
        r.to_vec()
    };
    Ok(SegmentAppender::new(seg.base_offset, file, end, partial))
}

pub(super) struct Scan {
    pub valid_len: u64,
    pub next_offset: i64,
    pub index: SegmentIndex,
    pub stop_reason: String,
}

/// Walks a segment from the start, keeping batches while each is whole, valid (CRC32C) and
/// continues the offsets of the one before: right after it when `dense`, anywhere after it
/// otherwise (a compacted segment has gaps). `baseOffset` is not covered by the CRC, so
/// density is what catches a damaged one in the active segment.
pub(super) async fn scan_segment(
    file: &DmaFile,
    file_size: u64,
    base: i64,
    interval: u64,
    dense: bool,
) -> Result<Scan, LogError> {
    let mut reader = SegmentReader::new(file, file_size, RECOVERY_READ_CHUNK);
    let mut scan = Scan {
        valid_len: 0,
        next_offset: base,
        index: SegmentIndex::default(),
        stop_reason: String::from("end of file"),
    };
    loop {
        let pos = scan.valid_len;
        let (header, len) = match reader.at(pos).await? {
            At::End => break,
            At::Torn => {
                scan.stop_reason = format!("no whole batch header or length at {pos}");
                break;
            }
            At::Batch { header, len } => (header, len),
        };
        let batch_base = header.base_offset.get();
        let misplaced = if dense {
            batch_base != scan.next_offset
        } else {
            batch_base < scan.next_offset
        };
        if misplaced || header.last_offset() - base > u32::MAX as i64 {
            scan.stop_reason = format!(
                "batch offset {batch_base} where {} was expected",
                scan.next_offset
            );
            break;
        }
        if let Err(e) = batch::validate(reader.bytes(pos, len).await?) {
            scan.stop_reason = e.to_string();
            break;
        }
        scan.index.on_batch(
            (batch_base - base) as u32,
            pos as u32,
            len as u64,
            header.max_timestamp.get(),
            interval,
        );
        scan.next_offset = header.last_offset() + 1;
        scan.valid_len = pos + len as u64;
    }
    Ok(scan)
}
