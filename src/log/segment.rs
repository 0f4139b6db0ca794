//! One segment of a partition log: `<base>.log` with its indexes, its size and where its
//! offsets end. The file handle is shared by the reader side and the appender.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::checkpoint::{self, remove_if_present};
use super::index::SegmentIndex;
use crate::runtime::DmaFile;

pub struct Segment {
    pub base_offset: i64,
    /// Created by the appender when the segment's first bytes are written.
    pub file: Option<Rc<DmaFile>>,
    /// Logical size: every byte assigned to this segment, written or not.
    pub size: u64,
    /// Bytes of this segment on disk (written by the flusher); reads never go past it.
    pub written: u64,
    /// Offset after this segment's last batch. For a sealed segment, the next one's base
    /// (compaction keeps offsets, so its last batch may end earlier).
    pub next_offset: i64,
    pub index: SegmentIndex,
    /// Sealed: no more appends, the file is trimmed and its index files are on disk.
    pub sealed: bool,
    /// Wall-clock time of the segment's first append in this process (segment.ms rolls by it;
    /// a recovered segment uses its first batch's timestamp instead).
    pub created_ms: Option<i64>,
}

impl Segment {
    pub fn new(base_offset: i64) -> Self {
        Self {
            base_offset,
            file: None,
            size: 0,
            written: 0,
            next_offset: base_offset,
            index: SegmentIndex::default(),
            sealed: false,
            created_ms: None,
        }
    }
}

pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

pub fn log_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.log", file_stem(base_offset)))
}

pub fn index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.index", file_stem(base_offset)))
}

pub fn time_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.timeindex", file_stem(base_offset)))
}

/// Every file that belongs to a segment: its log, its indexes and the aborted-transaction
/// index the partition keeps beside it (`.log` first, so a deletion cut short leaves index
/// files without a log, which the next open removes).
pub fn files_of(dir: &Path, base_offset: i64) -> [PathBuf; 4] {
    let stem = file_stem(base_offset);
    [
        log_path(dir, base_offset),
        index_path(dir, base_offset),
        time_index_path(dir, base_offset),
        dir.join(format!("{stem}.txnindex")),
    ]
}

/// Suffix of a file the cleaner is still writing; removed at open.
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a cleaned segment that replaces `<base>.log`: its presence is the commit point of
/// a swap, which opening the log finishes.
pub const SWAP_SUFFIX: &str = ".swap";

/// Finishes what a crash interrupted (blocking): a committed swap (`<base>.log.swap`) replaces
/// its segment, whose old index files go (the segment is rescanned); every `.cleaned` file
/// and temp file left by an unfinished write is removed; index files without their `.log`
/// (a deletion cut short) are removed.
pub fn finish_interrupted_swaps(dir: &Path) -> std::io::Result<()> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    let mut changed = false;
    for name in &names {
        let Some(log_name) = name.strip_suffix(SWAP_SUFFIX) else {
            continue;
        };
        let Some(base) = parse_base(log_name, ".log") else {
            continue;
        };
        remove_if_present(&index_path(dir, base))?;
        remove_if_present(&time_index_path(dir, base))?;
        std::fs::rename(dir.join(name), log_path(dir, base))?;
        changed = true;
    }
    let logs: std::collections::HashSet<i64> = list_segments(dir)?.into_iter().collect();
    for name in &names {
        let leftover = name.ends_with(CLEANED_SUFFIX) || name.ends_with(".tmp");
        let orphan_index = [".index", ".timeindex", ".txnindex"]
            .iter()
            .any(|ext| parse_base(name, ext).is_some_and(|b| !logs.contains(&b)));
        if leftover || orphan_index {
            remove_if_present(&dir.join(name))?;
            changed = true;
        }
    }
    if changed {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Where the cleaner writes the cleaned copy of a segment.
pub fn cleaned_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{}.log{CLEANED_SUFFIX}", file_stem(base)))
}

fn swap_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{}.log{SWAP_SUFFIX}", file_stem(base)))
}

/// Swaps a cleaned copy in for segment `base` (blocking): the rename to `.swap` is the commit
/// point; then the old index files go, the copy replaces the `.log`, and the new index files
/// (`offsets`, `times`) are written. A crash anywhere after the commit point is finished by
/// [`finish_interrupted_swaps`] at the next open; before it, the `.cleaned` copy is dropped.
pub fn commit_swap(
    dir: &Path,
    base: i64,
    cleaned: &Path,
    offsets: &[u8],
    times: &[u8],
) -> std::io::Result<()> {
    let swap = swap_path(dir, base);
    std::fs::rename(cleaned, &swap)?;
    checkpoint::sync_dir(dir)?;
    remove_if_present(&index_path(dir, base))?;
    remove_if_present(&time_index_path(dir, base))?;
    #[cfg(test)]
    if super::compaction::tests::crash_injected(dir) {
        return Err(std::io::Error::other(
            "injected crash after the swap commit",
        ));
    }
    std::fs::rename(&swap, log_path(dir, base))?;
    checkpoint::sync_dir(dir)?;
    checkpoint::write_atomically(&index_path(dir, base), offsets)?;
    checkpoint::write_atomically(&time_index_path(dir, base), times)
}

/// Appends `bytes` to a file (blocking), creating or emptying it first when `fresh`, and
/// fsyncs it when `sync`.
pub fn append_to_file(path: &Path, bytes: &[u8], sync: bool, fresh: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = if fresh {
        std::fs::File::create(path)?
    } else {
        std::fs::OpenOptions::new().append(true).open(path)?
    };
    f.write_all(bytes)?;
    if sync {
        f.sync_all()?;
    }
    Ok(())
}

fn parse_base(name: &str, ext: &str) -> Option<i64> {
    name.strip_suffix(ext)?.parse::<i64>().ok()
}

/// Base offsets of the `.log` files in `dir`, ascending.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<i64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(base) = parse_base(&name, ".log") {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}
