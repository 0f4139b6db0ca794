//! Recent batches of a partition kept in memory, so consumers near the head are served
//! without touching the disk. Holds every batch not yet written (those cannot be read from
//! disk) plus written ones up to a byte budget; the oldest written batches leave first.

use std::collections::VecDeque;

use crate::base::Records;

#[derive(Debug, Clone)]
pub struct CachedBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub bytes: Records,
}

#[derive(Debug, Default)]
pub struct TailCache {
    batches: VecDeque<CachedBatch>,
    bytes: usize,
    budget: usize,
}

impl TailCache {
    pub fn new(budget: usize) -> Self {
        Self {
            batches: VecDeque::new(),
            bytes: 0,
            budget,
        }
    }

    /// Changes the budget of durable bytes kept (settings changed); applied at the next evict.
    pub fn set_budget(&mut self, budget: usize) {
        self.budget = budget;
    }

    pub fn push(&mut self, batch: CachedBatch) {
        debug_assert!(
            self.batches
                .back()
                .is_none_or(|b| b.last_offset < batch.base_offset),
            "tail cache batches must be in offset order"
        );
        self.bytes += batch.bytes.len();
        self.batches.push_back(batch);
    }

    /// Drops the oldest batches while over budget, never one at or past `written_end`.
    pub fn evict(&mut self, written_end: i64) {
        while self.bytes > self.budget {
            match self.batches.front() {
                Some(b) if b.last_offset < written_end => {
                    self.bytes -= b.bytes.len();
                    self.batches.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Drops every batch that ends before `offset` (the cleaner rewrote the segments below
    /// it, so the disk, not this copy, is what readers must see). Only written batches can
    /// lie there: the cleaner touches sealed segments only.
    pub fn drop_below(&mut self, offset: i64) {
        while let Some(b) = self.batches.front() {
            if b.last_offset >= offset {
                break;
            }
            self.bytes -= b.bytes.len();
            self.batches.pop_front();
        }
    }

    /// Drops every batch that ends at or past `offset` (a truncation cut the log there).
    pub fn drop_from(&mut self, offset: i64) {
        while let Some(b) = self.batches.back() {
            if b.last_offset < offset {
                break;
            }
            self.bytes -= b.bytes.len();
            self.batches.pop_back();
        }
    }

    /// Whether a read from `offset` can be answered from memory.
    pub fn covers(&self, offset: i64) -> bool {
        self.batches
            .front()
            .is_some_and(|b| b.base_offset <= offset)
    }

    /// Whole batches holding offsets from `offset` up to (not including) `end`, at most
    /// `max_bytes` unless the first batch alone is larger (Kafka returns it whole anyway).
    /// The batches' own pieces are returned: nothing is copied.
    pub fn read(&self, offset: i64, end: i64, max_bytes: usize) -> Records {
        let start = self.batches.partition_point(|b| b.last_offset < offset);
        let mut out = Records::new();
        for b in self.batches.range(start..) {
            if b.last_offset >= end {
                break;
            }
            if !out.is_empty() && out.len() + b.bytes.len() > max_bytes {
                break;
            }
            out.extend(&b.bytes);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn batch(base: i64, last: i64, len: usize) -> CachedBatch {
        CachedBatch {
            base_offset: base,
            last_offset: last,
            bytes: Bytes::from(vec![base as u8; len]).into(),
        }
    }

    #[test]
    fn read_stops_at_end_and_max_bytes_but_returns_one_whole_batch() {
        let mut c = TailCache::new(1 << 20);
        c.push(batch(0, 4, 100));
        c.push(batch(5, 9, 100));
        c.push(batch(10, 14, 100));
        assert_eq!(c.read(0, 15, 250).len(), 200);
        assert_eq!(c.read(6, 15, 10).len(), 100);
        assert_eq!(c.read(0, 10, 1000).len(), 200);
        assert_eq!(c.read(15, 15, 1000).len(), 0);
    }

    #[test]
    fn unwritten_batches_are_never_evicted() {
        let mut c = TailCache::new(50);
        c.push(batch(0, 4, 100));
        c.push(batch(5, 9, 100));
        c.evict(5);
        assert!(!c.covers(0));
        assert!(c.covers(5));
        c.evict(0);
        assert!(c.covers(5));
    }
}
