//! Sparse indexes of a segment: offset → file position, and timestamp → offset. Entries are
//! fixed-size big-endian records (Kafka's own layout), read and written with `zerocopy`.
//! Each segment keeps its entries in memory; a sealed segment's are written to its
//! `.index` / `.timeindex` files, an active segment's are rebuilt by the recovery scan.

use zerocopy::byteorder::big_endian::{I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `(relative offset, file position)` of a batch start.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct OffsetEntry {
    pub relative_offset: U32,
    pub position: U32,
}

/// `(max timestamp so far, relative offset of the batch that reached it)`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct TimeEntry {
    pub timestamp: I64,
    pub relative_offset: U32,
}

/// The in-memory indexes of one segment.
#[derive(Debug, Default, Clone)]
pub struct SegmentIndex {
    offsets: Vec<OffsetEntry>,
    times: Vec<TimeEntry>,
    bytes_since_entry: u64,
    max_timestamp: i64,
}

impl SegmentIndex {
    /// Records a batch that starts at `position`; adds entries every `interval` bytes.
    pub fn on_batch(
        &mut self,
        relative_offset: u32,
        position: u32,
        len: u64,
        max_timestamp: i64,
        interval: u64,
    ) {
        let first = self.offsets.is_empty();
        if first || self.bytes_since_entry >= interval {
            self.offsets.push(OffsetEntry {
                relative_offset: relative_offset.into(),
                position: position.into(),
            });
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += len;
        if self.times.is_empty() || max_timestamp > self.max_timestamp {
            self.max_timestamp = max_timestamp;
            self.times.push(TimeEntry {
                timestamp: max_timestamp.into(),
                relative_offset: relative_offset.into(),
            });
        }
    }

    /// File position of the last indexed batch starting at or before `relative_offset`.
    pub fn position_for(&self, relative_offset: u32) -> u32 {
        let i = self
            .offsets
            .partition_point(|e| e.relative_offset.get() <= relative_offset);
        if i == 0 {
            0
        } else {
            self.offsets[i - 1].position.get()
        }
    }

    /// Relative offset of the first indexed batch whose running max timestamp is at least
    /// `timestamp` (a batch at or after it holds the first record that late), stepping back one
    /// entry since timestamps need not increase between entries.
    pub fn relative_offset_for_time(&self, timestamp: i64) -> Option<u32> {
        let i = self
            .times
            .partition_point(|e| e.timestamp.get() < timestamp);
        if i == self.times.len() {
            return None;
        }
        Some(if i == 0 {
            0
        } else {
            self.times[i - 1].relative_offset.get()
        })
    }

    /// The max timestamp of the segment's first batch, if it has one.
    pub fn first_timestamp(&self) -> Option<i64> {
        self.times.first().map(|t| t.timestamp.get())
    }

    pub fn max_timestamp(&self) -> i64 {
        if self.times.is_empty() {
            -1
        } else {
            self.max_timestamp
        }
    }

    pub fn offset_bytes(&self) -> &[u8] {
        self.offsets.as_bytes()
    }

    pub fn time_bytes(&self) -> &[u8] {
        self.times.as_bytes()
    }

    /// Forgets the batches from `relative_offset` on, which started at `position` (a
    /// truncation cut the segment there).
    pub fn truncate(&mut self, relative_offset: u32, position: u32) {
        self.offsets.retain(|e| e.position.get() < position);
        self.times
            .retain(|e| e.relative_offset.get() < relative_offset);
        self.max_timestamp = self.times.last().map_or(-1, |t| t.timestamp.get());
        // The next batch gets an entry at once: cheaper than recounting the bytes since one.
        self.bytes_since_entry = u64::MAX / 2;
    }

    /// Rebuilds from index file contents; `None` if a file is not a whole number of entries.
    pub fn from_files(offset_file: &[u8], time_file: &[u8]) -> Option<Self> {
        let offsets = <[OffsetEntry]>::ref_from_bytes(offset_file).ok()?.to_vec();
        let times = <[TimeEntry]>::ref_from_bytes(time_file).ok()?.to_vec();
        let max_timestamp = times.last().map(|t| t.timestamp.get()).unwrap_or(-1);
        Some(Self {
            offsets,
            times,
            bytes_since_entry: 0,
            max_timestamp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_entry_at_or_before_offset() {
        let mut ix = SegmentIndex::default();
        for i in 0..10u32 {
            ix.on_batch(i * 10, i * 1000, 1000, i as i64, 4096);
        }
        // entries every 4096 bytes: batches 0, 5 (after 5000 bytes), ...
        assert_eq!(ix.position_for(0), 0);
        assert_eq!(ix.position_for(49), 0);
        assert_eq!(ix.position_for(55), 5000);
    }

    #[test]
    fn index_round_trips_through_file_bytes() {
        let mut ix = SegmentIndex::default();
        ix.on_batch(0, 0, 5000, 10, 4096);
        ix.on_batch(3, 5000, 5000, 20, 4096);
        let back = SegmentIndex::from_files(ix.offset_bytes(), ix.time_bytes()).unwrap();
        assert_eq!(back.position_for(3), 5000);
        assert_eq!(back.max_timestamp(), 20);
    }

    #[test]
    fn truncate_forgets_entries_from_the_cut() {
        let mut ix = SegmentIndex::default();
        for i in 0..10u32 {
            ix.on_batch(i * 10, i * 1000, 1000, 100 + i as i64, 1);
        }
        ix.truncate(50, 5000);
        assert_eq!(ix.position_for(99), 4000);
        assert_eq!(ix.max_timestamp(), 104);
        assert_eq!(ix.relative_offset_for_time(105), None);
        ix.on_batch(50, 5000, 10, 7, 4096);
        assert_eq!(
            ix.position_for(50),
            5000,
            "the next batch is indexed at once"
        );
    }

    #[test]
    fn torn_index_file_is_refused() {
        assert!(SegmentIndex::from_files(&[0u8; 7], &[]).is_none());
    }

    #[test]
    fn time_lookup_steps_back_one_entry() {
        let mut ix = SegmentIndex::default();
        ix.on_batch(0, 0, 10, 100, 1);
        ix.on_batch(5, 10, 10, 200, 1);
        ix.on_batch(9, 20, 10, 300, 1);
        assert_eq!(ix.relative_offset_for_time(50), Some(0));
        assert_eq!(ix.relative_offset_for_time(150), Some(0));
        assert_eq!(ix.relative_offset_for_time(250), Some(5));
        assert_eq!(ix.relative_offset_for_time(301), None);
    }
}
