//! Compaction (`cleanup.policy` containing `compact`): keeps the newest record per key in the
//! sealed segments of a log, as Kafka's log cleaner does.
//!
//! A pass ([`Log::compact`]) works on the *cleanable* segments: the sealed ones (never the
//! active segment) wholly below the caller's stable end (the last stable offset, so no
//! undecided transaction is touched) whose newest record is older than
//! `min.compaction.lag.ms`. It runs only when the dirty part (past the cleaner checkpoint,
//! i.e. not yet seen by a pass) is at least `min.cleanable.dirty.ratio` of them, when a
//! record is older than `max.compaction.lag.ms`, or when a delete horizon it set has passed.
//!
//! 1. **Map.** The dirty batches are read and each key's newest offset goes into an
//!    [`OffsetMap`] of 16-byte key digests, sized by `log.cleaner.dedupe.buffer.size` (per
//!    shard). When it is full the pass maps up to a batch boundary only; the next pass goes on
//!    from there.
//! 2. **Copy.** Every cleanable segment that holds mapped offsets is copied batch by batch
//!    into `<base>.log.cleaned`, keeping a record unless the map holds a newer offset of its
//!    key, it has no key, it belongs to an aborted transaction (the caller lists them), or it
//!    is a tombstone past its delete horizon. A tombstone seen for the first time gets a
//!    horizon of now + `delete.retention.ms`, stored in its batch as Kafka does (KIP-534).
//!    A transaction marker goes the same way once no data of its transaction is left.
//!    Batches keep offsets, producer id/epoch/base sequence and their last offset
//!    ([`crate::protocol::rewrite`]); untouched batches are copied byte for byte.
//! 3. **Swap**, crash-safely: the `.cleaned` file is fsynced, renamed to `<base>.log.swap`
//!    (the commit point), the old index files go, the swap file replaces `<base>.log`, the new
//!    index files are written. Opening the log finishes a swap found on disk and drops a
//!    `.cleaned` one ([`super::segment::finish_interrupted_swaps`]). In memory the segment
//!    then points at the new file; reads already holding the old one keep reading it (its
//!    inode lives while open), and a read of an offset in a removed gap gets the next batch.
//!
//! I/O is throttled to `log.cleaner.io.max.bytes.per.second` (bytes read plus written), so
//! a pass yields the disk to produce traffic. A pass holds the log's maintenance lock, so it
//! never overlaps retention deleting segments.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::rc::Rc;

use super::checkpoint;
use super::index::SegmentIndex;
use super::reader::{At, SegmentReader};
use super::segment;
use super::{Log, LogError};
use crate::base::limits::RECOVERY_READ_CHUNK;
use crate::config::LogSettings;
use crate::protocol::batch::{self, BatchHeader};
use crate::protocol::rewrite::{self, DecodedBatch, Rebuild, Record};
use crate::runtime::{self, DmaFile, Throttle};

/// Memory one map entry costs: a 16-byte digest, an 8-byte offset and the hash table's
/// control bytes and spare room.
pub const MAP_ENTRY_BYTES: u64 = 32;
/// Bytes gathered before the cleaned copy is written out.
const WRITE_CHUNK: usize = 1 << 20;

/// A transaction that was aborted: its producer and the offsets from its first record to its
/// abort marker. The partition keeps these; the cleaner drops the data they cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedRange {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// What a pass is given by its caller.
#[derive(Debug, Clone, Copy)]
pub struct CompactionInput<'a> {
    pub now_ms: i64,
    /// Nothing at or past this offset is compacted (the last stable offset).
    pub stable_end: i64,
    /// Aborted transactions, in any order.
    pub aborted: &'a [AbortedRange],
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub segments_cleaned: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    pub batches_removed: u64,
    /// The cleaner checkpoint after the pass.
    pub mapped_up_to: i64,
}

/// The cleaner's memory of a log between passes.
#[derive(Debug, Default)]
pub(super) struct CleanerState {
    /// First offset not yet mapped (loaded from the checkpoint on first use).
    first_dirty: Option<i64>,
    /// Earliest delete horizon a pass set that has not passed yet.
    next_horizon: Option<i64>,
}

/// Key digest → newest offset, bounded to `capacity` entries. Keys are hashed, not stored.
pub struct OffsetMap {
    map: HashMap<u128, i64>,
    capacity: usize,
}

impl OffsetMap {
    /// A map using at most about `bytes` of memory.
    pub fn with_budget(bytes: u64, expected: usize) -> Self {
        let capacity = (bytes / MAP_ENTRY_BYTES).max(1) as usize;
        Self {
            map: HashMap::with_capacity(expected.min(capacity)),
            capacity,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Whether `n` more keys surely fit.
    pub fn has_room(&self, n: usize) -> bool {
        self.map.len() + n <= self.capacity
    }

    pub fn put(&mut self, key: &[u8], offset: i64) {
        let slot = self.map.entry(digest(key)).or_insert(offset);
        *slot = (*slot).max(offset);
    }

    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.map.get(&digest(key)).copied()
    }
}

/// A 128-bit digest of a key: two independent SipHash values. A collision would drop a record,
/// so the digest is as wide as Kafka's MD5 one.
fn digest(key: &[u8]) -> u128 {
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0x5a)) << 64) | u128::from(half(0xa5))
}

/// A cleanable segment as the pass sees it.
#[derive(Clone)]
struct Cleanable {
    base: i64,
    next_offset: i64,
    size: u64,
    file: Rc<DmaFile>,
    first_timestamp: Option<i64>,
}

/// Which segments a pass may clean: the sealed prefix below `stable_end` and older than the
/// minimum lag.
fn cleanable_prefix(log: &Log, settings: &LogSettings, input: &CompactionInput) -> Vec<Cleanable> {
    let s = log.state.borrow();
    let newest_allowed = input.now_ms.saturating_sub(settings.min_compaction_lag_ms);
    s.segments
        .values()
        .take_while(|seg| seg.sealed && seg.next_offset <= input.stable_end)
        .take_while(|seg| seg.index.max_timestamp() <= newest_allowed)
        .map_while(|seg| {
            Some(Cleanable {
                base: seg.base_offset,
                next_offset: seg.next_offset,
                size: seg.written,
                file: seg.file.clone()?,
                first_timestamp: seg.index.first_timestamp(),
            })
        })
        .collect()
}

/// Whether the pass is due: enough dirty bytes, a record past `max.compaction.lag.ms`, or a
/// delete horizon passed.
fn pass_due(
    segments: &[Cleanable],
    first_dirty: i64,
    settings: &LogSettings,
    next_horizon: Option<i64>,
    now_ms: i64,
) -> bool {
    let total: u64 = segments.iter().map(|s| s.size).sum();
    let dirty_segments = segments.iter().filter(|s| s.next_offset > first_dirty);
    let dirty: u64 = dirty_segments.clone().map(|s| s.size).sum();
    if dirty == 0 && next_horizon.is_none_or(|h| now_ms < h) {
        return false;
    }
    let ratio = if total == 0 {
        0.0
    } else {
        dirty as f64 / total as f64
    };
    let overdue = dirty_segments
        .filter_map(|s| s.first_timestamp)
        .any(|ts| now_ms.saturating_sub(ts) > settings.max_compaction_lag_ms);
    let horizon_passed = next_horizon.is_some_and(|h| now_ms >= h);
    ratio >= settings.min_cleanable_dirty_ratio || overdue || horizon_passed
}

impl Log {
    /// One compaction pass (see the module docs). `None` when the log is not compacted or
    /// nothing was due.
    pub async fn compact(
        &self,
        input: CompactionInput<'_>,
    ) -> Result<Option<CompactionStats>, LogError> {
        let settings = self.settings();
        if !settings.cleanup.compact {
            return Ok(None);
        }
        let _maintenance = self.maintenance.lock().await;
        let segments = cleanable_prefix(self, &settings, &input);
        let Some(last) = segments.last() else {
            return Ok(None);
        };
        let end = last.next_offset;
        let first_dirty = self.first_dirty(segments[0].base).await?;
        let next_horizon = self.cleaner.borrow().next_horizon;
        if !pass_due(
            &segments,
            first_dirty,
            &settings,
            next_horizon,
            input.now_ms,
        ) {
            return Ok(None);
        }
        tracing::info!(dir = %self.dir.display(), first_dirty, end, "compacting log");
        let throttle = Throttle::new(settings.cleaner.io_max_bytes_per_second);
        let log_end = self.offsets().log_end;
        let mut pass = Pass::new(&settings, input, first_dirty, end, log_end, &throttle);
        pass.build_map(&segments).await?;
        let map_end = pass.map_end;
        for seg in segments.iter().filter(|s| s.base < map_end) {
            self.clean_segment(&mut pass, seg).await?;
        }
        let mapped_up_to = pass.map_end.max(first_dirty);
        let dir = self.dir.clone();
        runtime::off_reactor(move || checkpoint::write_cleaner_checkpoint(&dir, mapped_up_to))
            .await?;
        {
            let mut c = self.cleaner.borrow_mut();
            c.first_dirty = Some(mapped_up_to);
            c.next_horizon = pass.horizons.iter().copied().min();
        }
        pass.stats.mapped_up_to = mapped_up_to;
        tracing::info!(
            dir = %self.dir.display(),
            segments = pass.stats.segments_cleaned,
            records_removed = pass.stats.records_removed,
            bytes_read = pass.stats.bytes_read,
            bytes_written = pass.stats.bytes_written,
            mapped_up_to,
            "compacted log"
        );
        Ok(Some(pass.stats))
    }

    /// The cleaner checkpoint, read from disk on first use.
    async fn first_dirty(&self, first_base: i64) -> Result<i64, LogError> {
        if let Some(known) = self.cleaner.borrow().first_dirty {
            return Ok(known.max(first_base));
        }
        let dir = self.dir.clone();
        let stored =
            runtime::off_reactor(move || checkpoint::read_cleaner_checkpoint(&dir)).await?;
        let first = stored.unwrap_or(first_base).max(first_base);
        self.cleaner.borrow_mut().first_dirty = Some(first);
        Ok(first)
    }

    /// Copies one segment without what the pass drops, then swaps the copy in.
    async fn clean_segment(&self, pass: &mut Pass<'_>, seg: &Cleanable) -> Result<(), LogError> {
        let cleaned_path = segment::cleaned_path(&self.dir, seg.base);
        let mut out = CleanedWriter::create(cleaned_path.clone()).await?;
        let mut index = SegmentIndex::default();
        let interval = pass.settings.index_interval_bytes;
        let mut reader = SegmentReader::new(&seg.file, seg.size, RECOVERY_READ_CHUNK);
        let mut pos = 0u64;
        while let At::Batch { header, len } = reader.at(pos).await? {
            let raw = reader.bytes(pos, len).await?.to_vec();
            pos += len as u64;
            pass.throttle.take(len as u64).await;
            pass.stats.bytes_read += len as u64;
            let at_log_end = pos == seg.size && seg.next_offset >= pass.log_end;
            let kept = match pass.filter_batch(&header, &raw)? {
                Some(kept) => kept,
                // The log's last batch stays, emptied, so that consumers reading to the end
                // reach it (an empty batch moves their position past its last offset).
                None if at_log_end => empty_batch(&header, &raw)?,
                None => {
                    pass.stats.batches_removed += 1;
                    continue;
                }
            };
            let (h, _) = batch::validate(&kept).map_err(|e| LogError::Storage(e.to_string()))?;
            let relative = (h.base_offset.get() - seg.base) as u32;
            index.on_batch(
                relative,
                out.len() as u32,
                kept.len() as u64,
                h.max_timestamp.get(),
                interval,
            );
            pass.throttle.take(kept.len() as u64).await;
            pass.stats.bytes_written += kept.len() as u64;
            out.push(&kept).await?;
        }
        out.finish().await?;
        self.swap_in(seg, cleaned_path, index).await?;
        pass.stats.segments_cleaned += 1;
        Ok(())
    }

    /// Replaces a segment by its cleaned copy, on disk and then in memory (see the module
    /// docs for the order and what a crash at each step leaves).
    async fn swap_in(
        &self,
        seg: &Cleanable,
        cleaned: PathBuf,
        index: SegmentIndex,
    ) -> Result<(), LogError> {
        let dir = self.dir.clone();
        let base = seg.base;
        let (offsets, times) = (index.offset_bytes().to_vec(), index.time_bytes().to_vec());
        runtime::off_reactor(move || segment::commit_swap(&dir, base, &cleaned, &offsets, &times))
            .await?;
        let file = Rc::new(runtime::open_dma_read(&segment::log_path(&self.dir, base)).await?);
        let size = file.file_size().await.map_err(std::io::Error::from)?;
        let mut s = self.state.borrow_mut();
        s.tail.drop_below(seg.next_offset);
        if let Some(current) = s.segments.get_mut(&base) {
            current.file = Some(file);
            current.size = size;
            current.written = size;
            current.index = index;
        }
        Ok(())
    }
}

/// Writes the cleaned copy of a segment in chunks, on the blocking thread.
struct CleanedWriter {
    path: PathBuf,
    buf: Vec<u8>,
    flushed: u64,
}

impl CleanedWriter {
    async fn create(path: PathBuf) -> Result<Self, LogError> {
        let p = path.clone();
        runtime::off_reactor(move || segment::append_to_file(&p, &[], false, true)).await?;
        Ok(Self {
            path,
            buf: Vec::with_capacity(WRITE_CHUNK),
            flushed: 0,
        })
    }

    fn len(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    async fn push(&mut self, bytes: &[u8]) -> Result<(), LogError> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= WRITE_CHUNK {
            self.write_out(false).await?;
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<(), LogError> {
        self.write_out(true).await
    }

    async fn write_out(&mut self, sync: bool) -> Result<(), LogError> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(WRITE_CHUNK));
        self.flushed += chunk.len() as u64;
        let path = self.path.clone();
        runtime::off_reactor(move || segment::append_to_file(&path, &chunk, sync, false)).await?;
        Ok(())
    }
}

/// One pass's plan and running state.
struct Pass<'a> {
    settings: &'a LogSettings,
    input: CompactionInput<'a>,
    first_dirty: i64,
    /// The log's end when the pass began.
    log_end: i64,
    /// The map covers `[first_dirty, map_end)`; records at or past it are kept as they are.
    map_end: i64,
    map: OffsetMap,
    throttle: &'a Throttle,
    /// Per producer: whether its current transaction still has data after this pass.
    txn_has_data: HashMap<i64, bool>,
    /// Delete horizons set or seen that have not passed.
    horizons: Vec<i64>,
    stats: CompactionStats,
}

impl<'a> Pass<'a> {
    fn new(
        settings: &'a LogSettings,
        input: CompactionInput<'a>,
        first_dirty: i64,
        end: i64,
        log_end: i64,
        throttle: &'a Throttle,
    ) -> Self {
        let expected = (end - first_dirty).clamp(0, i64::from(i32::MAX)) as usize;
        Self {
            settings,
            input,
            first_dirty,
            log_end,
            map_end: end,
            map: OffsetMap::with_budget(settings.cleaner.dedupe_buffer_bytes, expected),
            throttle,
            txn_has_data: HashMap::new(),
            horizons: Vec::new(),
            stats: CompactionStats::default(),
        }
    }

    fn aborted(&self, h: &BatchHeader) -> bool {
        h.is_transactional()
            && !h.is_control()
            && self.input.aborted.iter().any(|a| {
                a.producer_id == h.producer_id.get()
                    && a.first_offset <= h.base_offset.get()
                    && h.base_offset.get() <= a.last_offset
            })
    }

    /// Maps every key of the dirty batches to its newest offset, stopping at a batch boundary
    /// when the map is full (`map_end` then says where).
    async fn build_map(&mut self, segments: &[Cleanable]) -> Result<(), LogError> {
        for seg in segments.iter().filter(|s| s.next_offset > self.first_dirty) {
            let mut reader = SegmentReader::new(&seg.file, seg.size, RECOVERY_READ_CHUNK);
            let mut pos = 0u64;
            while let At::Batch { header, len } = reader.at(pos).await? {
                pos += len as u64;
                if header.last_offset() < self.first_dirty || header.is_control() {
                    continue;
                }
                let count = header.record_count.get().max(0) as usize;
                if !self.map.has_room(count) && !self.map.is_empty() {
                    self.map_end = header.base_offset.get();
                    return Ok(());
                }
                self.throttle.take(len as u64).await;
                if self.aborted(&header) {
                    continue;
                }
                let decoded = decode(reader.bytes(pos - len as u64, len).await?)?;
                for r in decoded
                    .records
                    .iter()
                    .filter(|r| r.offset >= self.first_dirty)
                {
                    if let Some(key) = &r.key {
                        self.map.put(key, r.offset);
                    }
                }
            }
        }
        Ok(())
    }

    /// What of one batch survives: `None` to drop it whole, else the bytes to write (the
    /// original ones when nothing changes).
    fn filter_batch(&mut self, h: &BatchHeader, raw: &[u8]) -> Result<Option<Vec<u8>>, LogError> {
        if h.base_offset.get() >= self.map_end {
            // Not mapped yet: a transaction here still counts as having data.
            if !h.is_control() {
                self.note_data(h, h.record_count.get() > 0);
            }
            return Ok(Some(raw.to_vec()));
        }
        if h.is_control() {
            return self.filter_marker(h, raw);
        }
        if self.aborted(h) {
            self.stats.records_removed += h.record_count.get().max(0) as u64;
            return Ok(None);
        }
        let decoded = decode(raw)?;
        let horizon = decoded.delete_horizon();
        let now = self.input.now_ms;
        let mut kept: Vec<Record> = Vec::with_capacity(decoded.records.len());
        for r in &decoded.records {
            if self.keeps(r, horizon, now) {
                kept.push(r.clone());
            }
        }
        let removed = decoded.records.len() - kept.len();
        self.stats.records_removed += removed as u64;
        self.note_data(h, !kept.is_empty());
        if kept.is_empty() {
            return Ok(None);
        }
        let has_tombstone = kept.iter().any(|r| r.value.is_none());
        let new_horizon = match (has_tombstone, horizon) {
            (false, _) => None,
            (true, Some(h)) => Some(h),
            (true, None) => Some(now.saturating_add(self.settings.delete_retention_ms)),
        };
        if let Some(h) = new_horizon {
            self.horizons.push(h);
        }
        if removed == 0 && new_horizon == horizon {
            return Ok(Some(raw.to_vec()));
        }
        let how = Rebuild {
            codec: h.compression(),
            delete_horizon: new_horizon,
        };
        rewrite::rebuild(&decoded.header, &kept, how)
            .map(Some)
            .map_err(|e| LogError::Storage(e.to_string()))
    }

    /// Whether a record of a mapped batch stays.
    fn keeps(&self, r: &Record, horizon: Option<i64>, now: i64) -> bool {
        let Some(key) = &r.key else {
            return false; // a compacted topic's record without a key (Kafka drops it too)
        };
        if self.map.get(key).is_some_and(|newest| newest > r.offset) {
            return false;
        }
        let tombstone_expired = r.value.is_none() && horizon.is_some_and(|h| now >= h);
        !tombstone_expired
    }

    fn note_data(&mut self, h: &BatchHeader, has_data: bool) {
        if h.is_transactional() && has_data {
            self.txn_has_data.insert(h.producer_id.get(), true);
        }
    }

    /// A transaction marker stays while its transaction has data left (or, when it has none,
    /// until its delete horizon passes).
    fn filter_marker(&mut self, h: &BatchHeader, raw: &[u8]) -> Result<Option<Vec<u8>>, LogError> {
        let had_data = self
            .txn_has_data
            .remove(&h.producer_id.get())
            .unwrap_or(false);
        if had_data || batch::read_marker(raw).is_none() {
            return Ok(Some(raw.to_vec()));
        }
        let decoded = decode(raw)?;
        match decoded.delete_horizon() {
            Some(horizon) if self.input.now_ms >= horizon => {
                self.stats.records_removed += 1;
                Ok(None)
            }
            Some(horizon) => {
                self.horizons.push(horizon);
                Ok(Some(raw.to_vec()))
            }
            None => {
                let horizon = self
                    .input
                    .now_ms
                    .saturating_add(self.settings.delete_retention_ms);
                self.horizons.push(horizon);
                let how = Rebuild {
                    codec: h.compression(),
                    delete_horizon: Some(horizon),
                };
                rewrite::rebuild(&decoded.header, &decoded.records, how)
                    .map(Some)
                    .map_err(|e| LogError::Storage(e.to_string()))
            }
        }
    }
}

/// A batch with its header's offsets and producer but no records (a control batch stays
/// whole).
fn empty_batch(h: &BatchHeader, raw: &[u8]) -> Result<Vec<u8>, LogError> {
    if h.is_control() {
        return Ok(raw.to_vec());
    }
    let how = Rebuild {
        codec: h.compression(),
        delete_horizon: None,
    };
    rewrite::rebuild(h, &[], how).map_err(|e| LogError::Storage(e.to_string()))
}

fn decode(raw: &[u8]) -> Result<DecodedBatch, LogError> {
    DecodedBatch::decode(raw).map_err(|e| LogError::Storage(format!("cleaner: {e}")))
}

#[cfg(test)]
pub(super) mod tests;
