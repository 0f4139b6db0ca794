//! Small files beside a partition's segments, and how they are written: the clean-shutdown
//! marker (a restart after a clean shutdown trusts the active segment instead of re-reading
//! and re-checking it), the log-start-offset checkpoint (where DeleteRecords moved the start),
//! and the cleaner's checkpoint. Each is written whole or not at all: a temp file, fsync,
//! rename, directory fsync.
//!
//! Every function here blocks (std::fs with fsync): callers run them on the shard's blocking
//! thread through [`crate::runtime::off_reactor`], never on the reactor.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use zerocopy::byteorder::big_endian::{I64, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Name of the clean-shutdown marker in a partition directory.
const CLEAN_SHUTDOWN: &str = "clean-shutdown";
/// Name of the log-start-offset checkpoint (Kafka keeps one per data dir; we keep one per
/// partition, since a partition's directory is all its shard owns).
const LOG_START: &str = "log-start-offset";
/// Name of the cleaner checkpoint (Kafka's `cleaner-offset-checkpoint`, per partition here).
const CLEANER: &str = "cleaner-offset-checkpoint";
/// Identifies a clean-shutdown marker ("SLCS").
const MARKER_MAGIC: u32 = 0x534c_4353;

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Makes the directory's entries (creations, renames, removals) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes a file that may not exist.
pub fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// What a clean shutdown recorded about the last segment: its base, its exact size and the
/// offset after its last batch. Recovery trusts that segment (and its index files) only if the
/// file is still exactly that size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanShutdown {
    pub base_offset: i64,
    pub size: u64,
    pub next_offset: i64,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct MarkerRecord {
    magic: U32,
    base_offset: I64,
    size: U64,
    next_offset: I64,
    crc: U32,
}

const MARKER_CRC_COVERS: usize = std::mem::size_of::<MarkerRecord>() - 4;

/// Writes the marker last in a clean shutdown, after the segment and its indexes are durable.
pub fn write_clean_shutdown(dir: &Path, marker: CleanShutdown) -> std::io::Result<()> {
    let mut rec = MarkerRecord {
        magic: MARKER_MAGIC.into(),
        base_offset: marker.base_offset.into(),
        size: marker.size.into(),
        next_offset: marker.next_offset.into(),
        crc: 0.into(),
    };
    rec.crc = crc32c::crc32c(&rec.as_bytes()[..MARKER_CRC_COVERS]).into();
    write_atomically(&dir.join(CLEAN_SHUTDOWN), rec.as_bytes())
}

/// Reads and removes the marker (durably), so a crash after this open cannot be mistaken for
/// a clean shutdown. `None` when there is none or it is damaged.
pub fn take_clean_shutdown(dir: &Path) -> std::io::Result<Option<CleanShutdown>> {
    let path = dir.join(CLEAN_SHUTDOWN);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    std::fs::remove_file(&path)?;
    sync_dir(dir)?;
    let Ok(rec) = MarkerRecord::read_from_bytes(&bytes) else {
        return Ok(None);
    };
    let crc_ok = crc32c::crc32c(&bytes[..MARKER_CRC_COVERS]) == rec.crc.get();
    if rec.magic.get() != MARKER_MAGIC || !crc_ok {
        return Ok(None);
    }
    Ok(Some(CleanShutdown {
        base_offset: rec.base_offset.get(),
        size: rec.size.get(),
        next_offset: rec.next_offset.get(),
    }))
}

/// Records that the log starts at `offset` (DeleteRecords, or retention inside a segment).
pub fn write_log_start(dir: &Path, offset: i64) -> std::io::Result<()> {
    write_offset(&dir.join(LOG_START), offset)
}

/// The recorded log start, if a valid checkpoint is there.
pub fn read_log_start(dir: &Path) -> std::io::Result<Option<i64>> {
    read_offset(&dir.join(LOG_START))
}

/// Records the cleaner's progress: the first offset no compaction pass has mapped yet.
pub fn write_cleaner_checkpoint(dir: &Path, offset: i64) -> std::io::Result<()> {
    write_offset(&dir.join(CLEANER), offset)
}

/// The cleaner's recorded progress, if a valid checkpoint is there.
pub fn read_cleaner_checkpoint(dir: &Path) -> std::io::Result<Option<i64>> {
    read_offset(&dir.join(CLEANER))
}

/// An offset file: the offset and its CRC32C, big-endian.
fn write_offset(path: &Path, offset: i64) -> std::io::Result<()> {
    let mut bytes = offset.to_be_bytes().to_vec();
    bytes.extend_from_slice(&crc32c::crc32c(&offset.to_be_bytes()).to_be_bytes());
    write_atomically(path, &bytes)
}

fn read_offset(path: &Path) -> std::io::Result<Option<i64>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (Some(offset), Some(crc)) = (bytes.get(..8), bytes.get(8..12)) else {
        return Ok(None);
    };
    if bytes.len() != 12 || crc32c::crc32c(offset).to_be_bytes() != crc {
        return Ok(None);
    }
    Ok(Some(i64::from_be_bytes(
        offset.try_into().expect("8 bytes"),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips_once_and_damage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let m = CleanShutdown {
            base_offset: 40,
            size: 12345,
            next_offset: 99,
        };
        write_clean_shutdown(dir.path(), m).unwrap();
        assert_eq!(take_clean_shutdown(dir.path()).unwrap(), Some(m));
        assert_eq!(take_clean_shutdown(dir.path()).unwrap(), None, "taken once");
        write_clean_shutdown(dir.path(), m).unwrap();
        let path = dir.path().join(CLEAN_SHUTDOWN);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(take_clean_shutdown(dir.path()).unwrap(), None);
    }

    #[test]
    fn log_start_round_trips_and_damage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_log_start(dir.path()).unwrap(), None);
        write_log_start(dir.path(), 777).unwrap();
        assert_eq!(read_log_start(dir.path()).unwrap(), Some(777));
        std::fs::write(dir.path().join(LOG_START), [0u8; 12]).unwrap();
        assert_eq!(read_log_start(dir.path()).unwrap(), None);
    }
}
