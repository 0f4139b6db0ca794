//! The files a partition keeps beside its log for producer state:
//!
//! - `<offset>.snapshot`: the producer state as of log offset `offset` (every batch below it
//!   included), framed `[crc32c u32][json]`, written to a temporary name, fsynced and renamed.
//!   The two newest are kept; at open the newest one at or below the log end is loaded and
//!   the log tail after it is replayed.
//! - `<segment base>.txnindex`: the aborted transactions whose abort marker lies in that
//!   segment, one fixed-size big-endian entry each (producer id, first offset, last offset),
//!   written with `zerocopy`. Entries are appended when the marker is appended and fsynced
//!   before any snapshot that covers them is written, so entries below a loaded snapshot's
//!   offset are complete; later ones are rebuilt by the replay.
//! - `leader-epoch-checkpoint`: the leader-epoch cache ([`super::epoch_cache`]), written whole
//!   to a temporary name, fsynced, renamed, the directory fsynced.

use std::io::Write;
use std::path::{Path, PathBuf};

use zerocopy::byteorder::big_endian::I64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::epoch_cache::{self, EpochCache};
use super::producer_state::{AbortedTxn, ProducerSnapshot};

const SNAPSHOTS_KEPT: usize = 2;

fn snapshot_path(dir: &Path, next_offset: i64) -> PathBuf {
    dir.join(format!("{next_offset:020}.snapshot"))
}

fn txn_index_path(dir: &Path, segment_base: i64) -> PathBuf {
    dir.join(format!("{segment_base:020}.txnindex"))
}

/// Offsets named by files in `dir` with this extension, ascending.
fn offsets_with_extension(dir: &Path, ext: &str) -> std::io::Result<Vec<i64>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(offset) = name
            .strip_suffix(ext)
            .and_then(|stem| stem.parse::<i64>().ok())
        {
            found.push(offset);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Writes a snapshot durably and removes all but the newest [`SNAPSHOTS_KEPT`].
pub fn write_snapshot(dir: &Path, snap: &ProducerSnapshot) -> std::io::Result<()> {
    let json = serde_json::to_vec(snap).map_err(std::io::Error::other)?;
    let path = snapshot_path(dir, snap.next_offset);
    let tmp = path.with_extension("snapshot.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&crc32c::crc32c(&json).to_be_bytes())?;
        f.write_all(&json)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    let all = offsets_with_extension(dir, ".snapshot")?;
    for old in all.iter().rev().skip(SNAPSHOTS_KEPT) {
        let _ = std::fs::remove_file(snapshot_path(dir, *old));
    }
    Ok(())
}

/// The newest readable snapshot at or below `log_end`; snapshots past it (written before a
/// crash cut the log shorter) are removed.
pub fn load_snapshot(dir: &Path, log_end: i64) -> std::io::Result<Option<ProducerSnapshot>> {
    for offset in offsets_with_extension(dir, ".snapshot")?.into_iter().rev() {
        let path = snapshot_path(dir, offset);
        if offset > log_end {
            std::fs::remove_file(&path)?;
            continue;
        }
        let bytes = std::fs::read(&path)?;
        if let Some(snap) = decode_snapshot(&bytes) {
            return Ok(Some(snap));
        }
        tracing::warn!(path = %path.display(), "unreadable producer snapshot; trying an older one");
    }
    Ok(None)
}

fn decode_snapshot(bytes: &[u8]) -> Option<ProducerSnapshot> {
    let (crc, json) = bytes.split_first_chunk::<4>()?;
    if u32::from_be_bytes(*crc) != crc32c::crc32c(json) {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// Writes the leader-epoch checkpoint so that a crash leaves the old file or the new one.
pub fn write_epoch_checkpoint(dir: &Path, cache: &EpochCache) -> std::io::Result<()> {
    let path = dir.join(epoch_cache::CHECKPOINT_FILE);
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(cache.encode().as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The leader-epoch checkpoint, if a whole one is there (`None`: rebuild it from the log).
pub fn read_epoch_checkpoint(dir: &Path) -> std::io::Result<Option<EpochCache>> {
    match std::fs::read_to_string(dir.join(epoch_cache::CHECKPOINT_FILE)) {
        Ok(text) => Ok(EpochCache::decode(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(None),
        Err(e) => Err(e),
    }
}

/// One aborted transaction on disk.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct TxnIndexEntry {
    producer_id: I64,
    first_offset: I64,
    last_offset: I64,
}

/// Appends an aborted transaction to the index of the segment holding its marker.
pub fn append_aborted(dir: &Path, segment_base: i64, txn: &AbortedTxn) -> std::io::Result<()> {
    let entry = TxnIndexEntry {
        producer_id: txn.producer_id.into(),
        first_offset: txn.first_offset.into(),
        last_offset: txn.last_offset.into(),
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(txn_index_path(dir, segment_base))?
        .write_all(entry.as_bytes())
}

/// Makes every transaction index durable (before a snapshot that covers them).
pub fn sync_txn_indexes(dir: &Path) -> std::io::Result<()> {
    for base in offsets_with_extension(dir, ".txnindex")? {
        std::fs::File::open(txn_index_path(dir, base))?.sync_all()?;
    }
    Ok(())
}

/// Every aborted transaction whose marker lies below `below`, in marker order. Each index is
/// cut back to those entries (a torn last entry, or entries the replay from `below` will
/// write again), so later appends land on whole entries.
pub fn recover_aborted(dir: &Path, below: i64) -> std::io::Result<Vec<AbortedTxn>> {
    let entry_len = std::mem::size_of::<TxnIndexEntry>();
    let mut out = Vec::new();
    for base in offsets_with_extension(dir, ".txnindex")? {
        let path = txn_index_path(dir, base);
        let bytes = std::fs::read(&path)?;
        let whole = bytes.len() - bytes.len() % entry_len;
        let entries = <[TxnIndexEntry]>::ref_from_bytes(&bytes[..whole])
            .map_err(|_| std::io::Error::other("transaction index is not whole entries"))?;
        let kept: Vec<TxnIndexEntry> = entries
            .iter()
            .filter(|e| e.last_offset.get() < below)
            .copied()
            .collect();
        if kept.len() * entry_len != bytes.len() {
            let tmp = path.with_extension("txnindex.tmp");
            std::fs::write(&tmp, kept.as_bytes())?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)?;
        }
        out.extend(kept.iter().map(|e| AbortedTxn {
            producer_id: e.producer_id.get(),
            first_offset: e.first_offset.get(),
            last_offset: e.last_offset.get(),
        }));
    }
    out.sort_by_key(|t| t.last_offset);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(next_offset: i64) -> ProducerSnapshot {
        ProducerSnapshot {
            next_offset,
            producers: Vec::new(),
        }
    }

    #[test]
    fn newest_snapshot_within_the_log_is_loaded_and_later_ones_dropped() {
        let dir = tempfile::tempdir().unwrap();
        for o in [10, 20, 30] {
            write_snapshot(dir.path(), &snap(o)).unwrap();
        }
        // Only two are kept.
        assert_eq!(
            offsets_with_extension(dir.path(), ".snapshot").unwrap(),
            vec![20, 30]
        );
        let loaded = load_snapshot(dir.path(), 25).unwrap().unwrap();
        assert_eq!(loaded.next_offset, 20);
        assert_eq!(
            offsets_with_extension(dir.path(), ".snapshot").unwrap(),
            vec![20]
        );
    }

    #[test]
    fn corrupt_snapshot_falls_back_to_an_older_one() {
        let dir = tempfile::tempdir().unwrap();
        write_snapshot(dir.path(), &snap(10)).unwrap();
        write_snapshot(dir.path(), &snap(20)).unwrap();
        std::fs::write(snapshot_path(dir.path(), 20), b"garbage!").unwrap();
        assert_eq!(
            load_snapshot(dir.path(), 100).unwrap().unwrap().next_offset,
            10
        );
    }

    #[test]
    fn aborted_index_recovers_below_the_bound_and_cuts_a_torn_entry() {
        let dir = tempfile::tempdir().unwrap();
        let t = |p, f, l| AbortedTxn {
            producer_id: p,
            first_offset: f,
            last_offset: l,
        };
        append_aborted(dir.path(), 0, &t(1, 0, 5)).unwrap();
        append_aborted(dir.path(), 100, &t(2, 101, 120)).unwrap();
        append_aborted(dir.path(), 100, &t(3, 130, 140)).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(txn_index_path(dir.path(), 100))
            .unwrap();
        f.write_all(&[1, 2, 3]).unwrap();
        let all = recover_aborted(dir.path(), 130).unwrap();
        assert_eq!(all, vec![t(1, 0, 5), t(2, 101, 120)]);
        // The index was cut back to whole, kept entries: appends after it read back.
        append_aborted(dir.path(), 100, &t(4, 150, 160)).unwrap();
        let again = recover_aborted(dir.path(), 1000).unwrap();
        assert_eq!(again, vec![t(1, 0, 5), t(2, 101, 120), t(4, 150, 160)]);
    }
}
