//! Reading segments back: recovery at open (trust sealed segments, scan the active one batch
//! by batch, truncate at the first torn or corrupt batch, rebuild its index) and the disk side
//! of fetches and timestamp lookups.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;

use super::appender::SegmentAppender;
use super::index::SegmentIndex;
use super::segment::{self, Segment};
use super::LogError;
use crate::base::limits::RECOVERY_READ_CHUNK;
use crate::config::LogSettings;
use crate::protocol::batch::{self, BatchError};
use crate::runtime::{self, DmaFile};

pub(super) struct Recovered {
    pub segments: BTreeMap<i64, Segment>,
    pub next_offset: i64,
    pub log_start: i64,
    pub appender: Option<SegmentAppender>,
}

pub(super) async fn recover(dir: &Path, settings: &LogSettings) -> Result<Recovered, LogError> {
    let bases = segment::list_segments(dir)?;
    let mut segments = BTreeMap::new();
    let mut appender = None;
    let mut next_offset = bases.first().copied().unwrap_or(0);
    for (i, &base) in bases.iter().enumerate() {
        let is_last = i + 1 == bases.len();
        let path = segment::log_path(dir, base);
        let file = Rc::new(runtime::open_dma_rw(&path).await?);
        let sealed_index = if is_last { None } else { load_index(dir, base) };
        let seg = match sealed_index {
            Some(index) => {
                let size = file.file_size().await.map_err(std::io::Error::from)?;
                let next = bases[i + 1];
                Segment {
                    base_offset: base,
                    file: Some(file),
                    size,
                    next_offset: next,
                    index,
                    sealed: true,
                }
            }
            None => {
                let scan = scan_segment(&file, base, settings.index_interval_bytes).await?;
                let file_size = file.file_size().await.map_err(std::io::Error::from)?;
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
                if is_last {
                    let page_start = scan.valid_len - scan.valid_len % 4096;
                    let partial = if page_start == scan.valid_len {
                        Vec::new()
                    } else {
                        let r = file
                            .read_at(page_start, (scan.valid_len - page_start) as usize)
                            .await
                            .map_err(std::io::Error::from)?;
                        r.to_vec()
                    };
                    appender = Some(SegmentAppender::new(
                        base,
                        file.clone(),
                        scan.valid_len,
                        partial,
                    ));
                }
                Segment {
                    base_offset: base,
                    file: Some(file),
                    size: scan.valid_len,
                    next_offset: scan.next_offset,
                    index: scan.index,
                    sealed: !is_last,
                }
            }
        };
        next_offset = seg.next_offset;
        segments.insert(base, seg);
        if !is_last && next_offset != bases[i + 1] {
            // A sealed segment that ends short of the next one's base: keep what is there;
            // offsets stay unique because the next segment starts higher.
            tracing::warn!(
                base,
                next_offset,
                next_base = bases[i + 1],
                "gap between segments"
            );
        }
    }
    let log_start = bases.first().copied().unwrap_or(0);
    if segments.is_empty() {
        segments.insert(0, Segment::new(0));
    }
    Ok(Recovered {
        segments,
        next_offset,
        log_start,
        appender,
    })
}

fn load_index(dir: &Path, base: i64) -> Option<SegmentIndex> {
    let offsets = std::fs::read(segment::index_path(dir, base)).ok()?;
    let times = std::fs::read(segment::time_index_path(dir, base)).unwrap_or_default();
    SegmentIndex::from_files(&offsets, &times)
}

pub(super) struct Scan {
    pub valid_len: u64,
    pub next_offset: i64,
    pub index: SegmentIndex,
    pub stop_reason: String,
}

/// Walks a segment from the start, keeping batches while each is whole, valid and continues
/// the offsets of the one before.
pub(super) async fn scan_segment(
    file: &DmaFile,
    base: i64,
    interval: u64,
) -> Result<Scan, LogError> {
    let file_size = file.file_size().await.map_err(std::io::Error::from)?;
    let mut scan = Scan {
        valid_len: 0,
        next_offset: base,
        index: SegmentIndex::default(),
        stop_reason: String::from("end of file"),
    };
    let mut pos = 0u64;
    'chunks: while pos < file_size {
        let want = RECOVERY_READ_CHUNK.min((file_size - pos) as usize);
        let chunk = file
            .read_at(pos, want)
            .await
            .map_err(std::io::Error::from)?;
        let mut at = 0usize;
        while at < chunk.len() {
            let rest = &chunk[at..];
            match batch::validate(rest) {
                Ok((h, len)) => {
                    if h.base_offset.get() != scan.next_offset {
                        scan.stop_reason = format!(
                            "batch offset {} where {} was expected",
                            h.base_offset.get(),
                            scan.next_offset
                        );
                        break 'chunks;
                    }
                    let rel = (scan.next_offset - base) as u32;
                    scan.index.on_batch(
                        rel,
                        (pos as usize + at) as u32,
                        len as u64,
                        h.max_timestamp.get(),
                        interval,
                    );
                    scan.next_offset = h.last_offset() + 1;
                    at += len;
                    scan.valid_len = pos + at as u64;
                }
                Err(BatchError::Truncated(_)) | Err(BatchError::BadLength { .. })
                    if fits_in_file(rest, pos + at as u64, file_size) && at > 0 =>
                {
                    // The batch continues past this chunk: read again from its start.
                    pos += at as u64;
                    continue 'chunks;
                }
                Err(BatchError::BadLength { .. })
                    if fits_in_file(rest, pos, file_size) && at == 0 =>
                {
                    // A single batch bigger than the chunk: read it whole.
                    let total = batch::header(rest).map(|h| h.total_len()).unwrap_or(0);
                    let whole = file
                        .read_at(pos, total)
                        .await
                        .map_err(std::io::Error::from)?;
                    match batch::validate(&whole) {
                        Ok((h, len)) if h.base_offset.get() == scan.next_offset => {
                            let rel = (scan.next_offset - base) as u32;
                            scan.index.on_batch(
                                rel,
                                pos as u32,
                                len as u64,
                                h.max_timestamp.get(),
                                interval,
                            );
                            scan.next_offset = h.last_offset() + 1;
                            pos += len as u64;
                            scan.valid_len = pos;
                            continue 'chunks;
                        }
                        other => {
                            scan.stop_reason = format!("{:?}", other.err());
                            break 'chunks;
                        }
                    }
                }
                Err(e) => {
                    scan.stop_reason = e.to_string();
                    break 'chunks;
                }
            }
        }
        pos += at as u64;
    }
    Ok(scan)
}

/// Whether the batch at the front of `rest` (at file position `pos`) claims a length that
/// still lies inside the file: then it is cut by the read, not torn.
fn fits_in_file(rest: &[u8], pos: u64, file_size: u64) -> bool {
    match batch::header(rest) {
        Ok(h) => h.batch_length.get() > 0 && pos + h.total_len() as u64 <= file_size,
        Err(_) => pos + batch::HEADER_LEN as u64 <= file_size,
    }
}

/// Reads whole batches starting at the one holding `offset`, from `position` (an index entry
/// at or before it), stopping before `hw`, at about `max_bytes`.
pub(super) async fn read_batches(
    file: &DmaFile,
    position: u64,
    segment_end: u64,
    offset: i64,
    hw: i64,
    max_bytes: usize,
) -> Result<Bytes, LogError> {
    let mut pos = position;
    loop {
        if pos >= segment_end {
            return Ok(Bytes::new());
        }
        let want = (max_bytes + 64 * 1024).min((segment_end - pos) as usize);
        let chunk = file
            .read_at(pos, want)
            .await
            .map_err(std::io::Error::from)?;
        let mut at = 0usize;
        let mut start = None;
        let mut end = 0usize;
        while at < chunk.len() {
            let h = match batch::header(&chunk[at..]) {
                Ok(h) => h,
                Err(_) => break,
            };
            let len = h.total_len();
            if h.base_offset.get() >= hw {
                break;
            }
            if h.last_offset() < offset {
                at += len;
                continue;
            }
            if at + len > chunk.len() {
                if start.is_none() {
                    // The first wanted batch is larger than what we read: read it whole.
                    let whole = file
                        .read_at(pos + at as u64, len)
                        .await
                        .map_err(std::io::Error::from)?;
                    return Ok(Bytes::copy_from_slice(&whole));
                }
                break;
            }
            let s = *start.get_or_insert(at);
            if at + len - s > max_bytes && at > s {
                break;
            }
            at += len;
            end = at;
        }
        match start {
            Some(s) => return Ok(Bytes::copy_from_slice(&chunk[s..end])),
            None if at >= chunk.len() && at > 0 => pos += at as u64,
            None => return Ok(Bytes::new()),
        }
    }
}

/// Finds the first record at or after `timestamp` in the batches from `position`; returns
/// `(offset, timestamp)` of that record.
pub(super) async fn find_timestamp(
    file: &DmaFile,
    position: u64,
    segment_end: u64,
    hw: i64,
    timestamp: i64,
) -> Result<Option<(i64, i64)>, LogError> {
    let mut pos = position;
    while pos < segment_end {
        let head = file
            .read_at(pos, batch::HEADER_LEN.min((segment_end - pos) as usize))
            .await
            .map_err(std::io::Error::from)?;
        let h = match batch::header(&head) {
            Ok(h) => *h,
            Err(_) => return Ok(None),
        };
        if h.base_offset.get() >= hw {
            return Ok(None);
        }
        let len = h.total_len();
        if h.max_timestamp.get() >= timestamp {
            let whole = file.read_at(pos, len).await.map_err(std::io::Error::from)?;
            return Ok(first_record_at_or_after(
                Bytes::copy_from_slice(&whole),
                timestamp,
            ));
        }
        pos += len as u64;
    }
    Ok(None)
}

fn first_record_at_or_after(mut bytes: Bytes, timestamp: i64) -> Option<(i64, i64)> {
    use kafka_protocol::records::RecordBatchDecoder;
    let set = RecordBatchDecoder::decode(&mut bytes).ok()?;
    set.records
        .iter()
        .find(|r| r.timestamp >= timestamp && !r.control)
        .map(|r| (r.offset, r.timestamp))
}
