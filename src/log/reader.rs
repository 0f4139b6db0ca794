//! The one chunked batch reader of segment files. Recovery's scan, fetch reads, timestamp
//! lookups and the cleaner all walk a segment's batches through [`SegmentReader`].
//!
//! It reads a segment through a window of one chunk. Whenever a header or a batch is wanted
//! that does not lie wholly inside the window, it reads again from that position, so no layout
//! of batches against chunk boundaries can end a walk early: a walk ends only at the segment's
//! end, at bytes that cannot be a batch, or where its caller stops it.
//!
//! Contract: `end` never lies past the bytes really on disk (a segment's written size, or the
//! file size at recovery). glommio's unaligned reads past the end of a file return a buffer of
//! the asked length whose tail is not file data, so the reader must never ask for it.

use bytes::Bytes;

use super::LogError;
use crate::protocol::batch::{self, BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use crate::runtime::{DmaFile, ReadResult};

/// Slack read past `max_bytes` by a fetch, so the walk to the wanted offset and the batch that
/// straddles `max_bytes` usually come from the same read.
pub(super) const FETCH_READ_SLACK: usize = 64 * 1024;
/// Largest window a fetch walks through in one read (a bigger answer is read once, whole).
const FETCH_WINDOW_MAX: usize = 8 << 20;
/// Window of timestamp lookups, which read headers and then one batch.
const LOOKUP_WINDOW: usize = 64 * 1024;
/// The smallest `batchLength` a RecordBatch v2 can claim (a header with no records).
const MIN_BATCH_LENGTH: i32 = (HEADER_LEN - LOG_OVERHEAD) as i32;

/// What lies at a position of a segment.
#[derive(Debug, Clone, Copy)]
pub(super) enum At {
    /// A batch header whose claimed length ends at or before the segment's end. The batch
    /// itself is not validated: read it with [`SegmentReader::bytes`] and validate if needed.
    Batch { header: BatchHeader, len: usize },
    /// The segment ends exactly here.
    End,
    /// Bytes that cannot start a batch: a header cut by the end, zero padding, or a length
    /// below the minimum or past the end.
    Torn,
}

/// Reads one segment file through a window of `chunk` bytes. See the module docs.
pub(super) struct SegmentReader<'a> {
    file: &'a DmaFile,
    end: u64,
    chunk: usize,
    window_start: u64,
    window: Option<ReadResult>,
}

impl<'a> SegmentReader<'a> {
    pub fn new(file: &'a DmaFile, end: u64, chunk: usize) -> Self {
        Self {
            file,
            end,
            chunk: chunk.max(HEADER_LEN),
            window_start: 0,
            window: None,
        }
    }

    fn in_window(&self, pos: u64, len: usize) -> bool {
        self.window.as_ref().is_some_and(|w| {
            pos >= self.window_start && pos + len as u64 <= self.window_start + w.len() as u64
        })
    }

    /// The bytes `[pos, pos + len)`, from the window or from a new read that starts at `pos`.
    /// `pos + len` must not pass the end.
    pub async fn bytes(&mut self, pos: u64, len: usize) -> Result<&[u8], LogError> {
        if pos + len as u64 > self.end {
            return Err(LogError::Storage(format!(
                "read of {len} bytes at {pos} passes the segment end {}",
                self.end
            )));
        }
        if !self.in_window(pos, len) {
            let want = len.max(self.chunk).min((self.end - pos) as usize);
            let read = self
                .file
                .read_at(pos, want)
                .await
                .map_err(std::io::Error::from)?;
            if read.len() < len {
                return Err(LogError::Storage(format!(
                    "short read: {} of {len} bytes at {pos}",
                    read.len()
                )));
            }
            self.window = Some(read);
            self.window_start = pos;
        }
        let window = self.window.as_ref().expect("the window was just filled");
        let from = (pos - self.window_start) as usize;
        Ok(&window[from..from + len])
    }

    /// What starts at `pos`: a batch header (checked for a plausible length), the end, or torn
    /// bytes.
    pub async fn at(&mut self, pos: u64) -> Result<At, LogError> {
        if pos >= self.end {
            return Ok(At::End);
        }
        let left = self.end - pos;
        if left < HEADER_LEN as u64 {
            return Ok(At::Torn);
        }
        let raw = self.bytes(pos, HEADER_LEN).await?;
        let header = *batch::header(raw).map_err(|e| LogError::Storage(e.to_string()))?;
        let length = header.batch_length.get();
        if length < MIN_BATCH_LENGTH || header.total_len() as u64 > left {
            return Ok(At::Torn);
        }
        Ok(At::Batch {
            header,
            len: header.total_len(),
        })
    }
}

/// Reads whole batches from `position` (an index entry at or before `offset`) in a segment
/// whose written bytes end at `end`: it skips batches that end before `offset`, stops before
/// `hw`, and returns about `max_bytes` (at least the whole first batch when there is one).
pub(super) async fn read_batches(
    file: &DmaFile,
    position: u64,
    end: u64,
    offset: i64,
    hw: i64,
    max_bytes: usize,
) -> Result<Bytes, LogError> {
    let window = max_bytes
        .saturating_add(FETCH_READ_SLACK)
        .min(FETCH_WINDOW_MAX);
    let mut reader = SegmentReader::new(file, end, window);
    let mut pos = position;
    let mut first: Option<u64> = None;
    let mut stop = position;
    let mut prev_last = i64::MIN;
    while let At::Batch { header, len } = reader.at(pos).await? {
        let base = header.base_offset.get();
        // Offsets only grow along a segment (with gaps after compaction); anything else is
        // not data of this log.
        if base >= hw || base <= prev_last {
            break;
        }
        prev_last = header.last_offset();
        let next = pos + len as u64;
        if header.last_offset() < offset {
            pos = next;
            continue;
        }
        let start = *first.get_or_insert(pos);
        if next - start > max_bytes as u64 && pos > start {
            break;
        }
        stop = next;
        pos = next;
    }
    match first {
        None => Ok(Bytes::new()),
        Some(start) => {
            let bytes = reader.bytes(start, (stop - start) as usize).await?;
            Ok(Bytes::copy_from_slice(bytes))
        }
    }
}

/// Finds the first record with a timestamp at or after `timestamp` in the batches from
/// `position` below `hw`; returns that record's `(offset, timestamp)`.
pub(super) async fn find_timestamp(
    file: &DmaFile,
    position: u64,
    end: u64,
    hw: i64,
    timestamp: i64,
) -> Result<Option<(i64, i64)>, LogError> {
    let mut reader = SegmentReader::new(file, end, LOOKUP_WINDOW);
    let mut pos = position;
    while let At::Batch { header, len } = reader.at(pos).await? {
        if header.base_offset.get() >= hw {
            return Ok(None);
        }
        if header.max_timestamp.get() >= timestamp {
            let whole = Bytes::copy_from_slice(reader.bytes(pos, len).await?);
            if let Some(found) = first_record_at_or_after(whole, timestamp) {
                return Ok(Some(found));
            }
        }
        pos += len as u64;
    }
    Ok(None)
}

/// `(offset, timestamp)` of the first data record of a batch at or after `timestamp`. A
/// LogAppendTime batch stamps every record with the batch's max timestamp.
fn first_record_at_or_after(mut bytes: Bytes, timestamp: i64) -> Option<(i64, i64)> {
    use kafka_protocol::records::{RecordBatchDecoder, TimestampType};
    let set = RecordBatchDecoder::decode(&mut bytes).ok()?;
    set.records
        .iter()
        .filter(|r| !r.control)
        .map(|r| {
            let ts = match r.timestamp_type {
                TimestampType::LogAppend => set_max_timestamp(&set.records).unwrap_or(r.timestamp),
                TimestampType::Creation => r.timestamp,
            };
            (r.offset, ts)
        })
        .find(|(_, ts)| *ts >= timestamp)
}

fn set_max_timestamp(records: &[kafka_protocol::records::Record]) -> Option<i64> {
    records.iter().map(|r| r.timestamp).max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime;
    use proptest::prelude::*;

    /// Writes `sizes` batches back to back (values sized to hit each length roughly) and
    /// returns the file bytes and each batch's `(position, base, last)`.
    fn layout(sizes: &[(usize, usize)]) -> (Vec<u8>, Vec<(u64, i64, i64)>) {
        let mut bytes = Vec::new();
        let mut batches = Vec::new();
        let mut next = 0i64;
        for &(records, value_len) in sizes {
            let value = vec![7u8; value_len];
            let recs: Vec<batch::SimpleRecord> = (0..records)
                .map(|_| (Some(&b"k"[..]), Some(&value[..])))
                .collect();
            let b = batch::build_batch(next, 1000 + next, &recs);
            batches.push((bytes.len() as u64, next, next + records as i64 - 1));
            next += records as i64;
            bytes.extend_from_slice(&b);
        }
        (bytes, batches)
    }

    async fn dma_file(dir: &std::path::Path, bytes: &[u8]) -> DmaFile {
        let path = dir.join("seg.log");
        std::fs::write(&path, bytes).unwrap();
        runtime::open_dma_read(&path).await.unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever the batch sizes and the window, a read from any offset below the high
        /// watermark returns the batch holding it first, whole batches only, within
        /// `max_bytes` unless one batch alone is bigger.
        #[test]
        fn read_returns_the_batch_holding_any_offset_whatever_the_chunking(
            sizes in proptest::collection::vec((1usize..4, 0usize..700), 1..40),
            window in 61usize..3000,
            max_bytes in 0usize..4000,
            pick in 0usize..1000,
        ) {
            let (bytes, batches) = layout(&sizes);
            let dir = tempfile::tempdir().unwrap();
            let hw = batches.last().unwrap().2 + 1;
            let offset = (pick as i64 * hw) / 1000;
            let holding = batches.iter().find(|b| b.1 <= offset && offset <= b.2).copied().unwrap();
            runtime::block_on(async {
                let file = dma_file(dir.path(), &bytes).await;
                // The reader itself, at a window size the test picks.
                let mut reader = SegmentReader::new(&file, bytes.len() as u64, window);
                let mut pos = 0u64;
                let mut seen = Vec::new();
                while let At::Batch { header, len } = reader.at(pos).await.unwrap() {
                    let raw = reader.bytes(pos, len).await.unwrap();
                    prop_assert!(batch::validate(raw).is_ok());
                    seen.push((pos, header.base_offset.get(), header.last_offset()));
                    pos += len as u64;
                }
                prop_assert_eq!(&seen, &batches);
                // A fetch from position 0 (the worst case: everything before is skipped).
                let got = read_batches(&file, 0, bytes.len() as u64, offset, hw, max_bytes).await.unwrap();
                let first = batch::validate(&got).map(|(h, _)| h.base_offset.get());
                prop_assert_eq!(first, Ok(holding.1));
                let served: Vec<_> = batch::BatchIter::new(&got).collect::<Result<_, _>>().unwrap();
                let first_len = served[0].2;
                prop_assert!(got.len() <= max_bytes.max(first_len));
                Ok(())
            })?;
        }
    }

    #[test]
    fn zero_padding_and_short_tails_are_torn_not_errors() {
        let (mut bytes, _) = layout(&[(1, 10), (2, 20)]);
        let whole = bytes.len() as u64;
        bytes.extend_from_slice(&[0u8; 100]);
        let dir = tempfile::tempdir().unwrap();
        runtime::block_on(async {
            let file = dma_file(dir.path(), &bytes).await;
            let mut r = SegmentReader::new(&file, bytes.len() as u64, 64);
            assert!(matches!(r.at(whole).await.unwrap(), At::Torn));
            let mut r = SegmentReader::new(&file, whole + 30, 64);
            assert!(matches!(r.at(whole).await.unwrap(), At::Torn));
            let mut r = SegmentReader::new(&file, whole, 64);
            assert!(matches!(r.at(whole).await.unwrap(), At::End));
        });
    }
}
