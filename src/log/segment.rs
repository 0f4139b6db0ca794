//! One segment of a partition log: `<base>.log` with its indexes, its size and where its
//! offsets end. The file handle is shared by the reader side and the appender.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::index::SegmentIndex;
use crate::runtime::DmaFile;

pub struct Segment {
    pub base_offset: i64,
    /// Created by the appender when the segment's first bytes are written.
    pub file: Option<Rc<DmaFile>>,
    /// Logical size: every byte assigned to this segment, written or not.
    pub size: u64,
    /// Offset after this segment's last batch.
    pub next_offset: i64,
    pub index: SegmentIndex,
    /// Max timestamp of this segment's batches (retention by time uses it).
    pub sealed: bool,
}

impl Segment {
    pub fn new(base_offset: i64) -> Self {
        Self {
            base_offset,
            file: None,
            size: 0,
            next_offset: base_offset,
            index: SegmentIndex::default(),
            sealed: false,
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

/// Base offsets of the `.log` files in `dir`, ascending.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<i64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".log") {
            if let Ok(base) = stem.parse::<i64>() {
                bases.push(base);
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}
