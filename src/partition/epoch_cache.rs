//! The leader-epoch cache of a partition (Kafka's `LeaderEpochFileCache`): for every leader
//! epoch that wrote to the log, the offset of its first batch. It answers OffsetForLeaderEpoch,
//! by which a follower finds where its log diverges from the leader's.
//!
//! Sans-io: the partition feeds it the epoch of each batch appended and the new end of each
//! truncation, and writes [`EpochCache::encode`] to the `leader-epoch-checkpoint` file when it
//! changed. The file is Kafka's format: a version line (`0`), a count line, then one
//! `epoch start_offset` line per entry.

/// Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// Name of the checkpoint file in the partition directory.
pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

const FORMAT_VERSION: &str = "0";

/// Epoch start offsets, epochs and offsets both strictly increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<(i32, i64)>,
}

impl EpochCache {
    /// Notes that a batch of `epoch` was appended at `offset`. A new epoch higher than every
    /// known one starts there; anything else (the same epoch, an older one, or a batch from
    /// before epochs were stamped, epoch < 0) changes nothing. True when an entry was added.
    pub fn on_batch(&mut self, epoch: i32, offset: i64) -> bool {
        if epoch < 0 || self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return false;
        }
        debug_assert!(
            self.entries
                .last()
                .is_none_or(|&(_, start)| start <= offset),
            "epoch {epoch} starts at {offset}, before the previous epoch's start"
        );
        // Two epochs starting at one offset: the older wrote nothing that is still there.
        self.entries.retain(|&(_, start)| start < offset);
        self.entries.push((epoch, offset));
        true
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|&(epoch, _)| epoch)
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// Forgets the epochs that start at or past `end` (the log was truncated there). True
    /// when something went.
    pub fn truncate_from_end(&mut self, end: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, start)| start < end);
        self.entries.len() != before
    }

    /// Forgets every epoch (the log was emptied). True when something went.
    pub fn clear(&mut self) -> bool {
        self.truncate_from_end(i64::MIN)
    }

    /// Kafka's answer to OffsetForLeaderEpoch for `requested`, with the log ending at
    /// `log_end`: the largest known epoch at or below it and the offset where the next
    /// known epoch starts (the log end for the latest epoch). An epoch below every known one
    /// gets itself and the first epoch's start; one above every known epoch, or any epoch
    /// when none is known, gets (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET).
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> (i32, i64) {
        const UNDEFINED: (i32, i64) = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        if requested == UNDEFINED_EPOCH {
            return UNDEFINED;
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end);
        }
        let higher = self
            .entries
            .partition_point(|&(epoch, _)| epoch <= requested);
        let Some(&(_, next_start)) = self.entries.get(higher) else {
            return UNDEFINED;
        };
        match higher.checked_sub(1).map(|i| self.entries[i]) {
            Some((floor, _)) => (floor, next_start),
            None => (requested, next_start),
        }
    }

    /// The checkpoint file's contents.
    pub fn encode(&self) -> String {
        let mut out = format!("{FORMAT_VERSION}\n{}\n", self.entries.len());
        for (epoch, start) in &self.entries {
            out.push_str(&format!("{epoch} {start}\n"));
        }
        out
    }

    /// Parses a checkpoint file; `None` when it is not one whole, well-ordered checkpoint.
    pub fn decode(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()? != FORMAT_VERSION {
            return None;
        }
        let count: usize = lines.next()?.trim().parse().ok()?;
        let mut entries = Vec::with_capacity(count.min(1024));
        for line in lines.by_ref().take(count) {
            let (epoch, start) = line.trim().split_once(' ')?;
            entries.push((epoch.parse().ok()?, start.parse().ok()?));
        }
        let ordered = entries
            .windows(2)
            .all(|w: &[(i32, i64)]| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
        (entries.len() == count && lines.next().is_none() && ordered).then_some(Self { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        let mut c = EpochCache::default();
        for &(e, o) in entries {
            c.on_batch(e, o);
        }
        c
    }

    #[test]
    fn only_a_new_higher_epoch_adds_an_entry() {
        let mut c = EpochCache::default();
        assert!(c.on_batch(0, 0));
        assert!(!c.on_batch(0, 5));
        assert!(c.on_batch(2, 10));
        assert!(
            !c.on_batch(1, 12),
            "an older epoch never starts after a newer one"
        );
        assert!(!c.on_batch(-1, 13), "unstamped batches are ignored");
        assert_eq!(c.entries(), &[(0, 0), (2, 10)]);
        assert!(c.on_batch(3, 10), "an epoch that wrote nothing is replaced");
        assert_eq!(c.entries(), &[(0, 0), (3, 10)]);
    }

    #[test]
    fn end_offsets_follow_kafka() {
        let c = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert_eq!(
            c.end_offset_for(5, 30),
            (5, 30),
            "latest epoch: the log end"
        );
        assert_eq!(c.end_offset_for(3, 30), (3, 20));
        assert_eq!(
            c.end_offset_for(4, 30),
            (3, 20),
            "unknown epoch: the one below"
        );
        assert_eq!(c.end_offset_for(1, 30), (1, 10));
        assert_eq!(
            c.end_offset_for(0, 30),
            (0, 0),
            "below every epoch: the first start"
        );
        assert_eq!(c.end_offset_for(6, 30), (-1, -1), "above every epoch");
        assert_eq!(c.end_offset_for(-1, 30), (-1, -1));
        assert_eq!(EpochCache::default().end_offset_for(0, 7), (-1, -1));
    }

    #[test]
    fn truncation_drops_epochs_starting_at_or_past_the_end() {
        let mut c = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert!(!c.truncate_from_end(25));
        assert!(c.truncate_from_end(20));
        assert_eq!(c.entries(), &[(1, 0), (3, 10)]);
        assert!(c.truncate_from_end(3));
        assert_eq!(c.entries(), &[(1, 0)]);
    }

    #[test]
    fn checkpoint_round_trips_and_damage_is_refused() {
        let c = cache(&[(1, 0), (3, 10)]);
        let text = c.encode();
        assert_eq!(text, "0\n2\n1 0\n3 10\n");
        assert_eq!(EpochCache::decode(&text), Some(c));
        assert_eq!(EpochCache::decode("0\n0\n"), Some(EpochCache::default()));
        for bad in [
            "",
            "1\n0\n",
            "0\n2\n1 0\n",
            "0\n1\n1 x\n",
            "0\n2\n3 0\n1 5\n",
        ] {
            assert_eq!(EpochCache::decode(bad), None, "{bad:?}");
        }
    }
}
