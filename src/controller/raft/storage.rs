//! The durable Raft log of one voter: `<data>/meta/raft/raft.log`, the raft-rs `Storage` the
//! node reads from, and the file it is rebuilt from at start.
//!
//! The file is a sequence of frames `[len u32 BE][crc32c u32 BE][kind u8][protobuf bytes]`
//! (the CRC covers kind and body). Replaying them in order rebuilds the state: an entry
//! replaces every entry from its index on (a new leader's log overwriting a stale tail), a
//! snapshot drops all entries it covers, a hard state or conf state replaces the last one. A
//! torn or corrupt frame ends the replay and is cut off (a crash mid-write).
//!
//! Writes go through [`DiskStorage::persist`]: one buffer, written and fsynced on the shard's
//! blocking thread, and only then applied to the in-memory state raft-rs reads, so nothing
//! raft may act on (a vote, an acknowledged entry) is lost by a crash. Taking a snapshot
//! rewrites the file (snapshot, remaining entries, hard state) through a temporary file and
//! a rename, so the log stays bounded.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::runtime;

const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_CONF_STATE: u8 = 3;
const KIND_SNAPSHOT: u8 = 4;

/// The largest frame replay accepts (a snapshot of the whole metadata is the biggest).
const MAX_FRAME_BYTES: usize = 256 << 20;

/// The in-memory state raft-rs reads. Invariant: `entries` are contiguous and the first one
/// (if any) has index `snapshot.metadata.index + 1`.
#[derive(Debug, Default, Clone)]
struct Core {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    entries: Vec<Entry>,
}

impl Core {
    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn first_index(&self) -> u64 {
        self.snapshot_index() + 1
    }

    fn last_index(&self) -> u64 {
        self.snapshot_index() + self.entries.len() as u64
    }

    /// Appends `ents`, replacing every entry from the first one's index on.
    fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        if first.index <= self.snapshot_index() {
            // Entries a snapshot already covers: keep only what lies beyond it.
            let skip = (self.snapshot_index() + 1 - first.index) as usize;
            if skip >= ents.len() {
                return;
            }
            return self.append(&ents[skip..]);
        }
        assert!(
            first.index <= self.last_index() + 1,
            "raft log gap: appending index {} after last index {}",
            first.index,
            self.last_index()
        );
        let keep = (first.index - self.first_index()) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(ents);
    }

    /// Replaces everything up to the snapshot's index with it.
    fn apply_snapshot(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        let dropped = index.saturating_sub(self.snapshot_index()) as usize;
        if index > self.last_index() || self.term_at(index) != Some(snapshot.get_metadata().term) {
            self.entries.clear();
        } else {
            self.entries.drain(..dropped.min(self.entries.len()));
        }
        self.conf_state = snapshot.get_metadata().get_conf_state().clone();
        if self.hard_state.commit < index {
            self.hard_state.commit = index;
        }
        if self.hard_state.term < snapshot.get_metadata().term {
            self.hard_state.term = snapshot.get_metadata().term;
        }
        self.snapshot = snapshot;
    }

    fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index() {
            return Some(self.snapshot.get_metadata().term);
        }
        if index < self.first_index() || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - self.first_index()) as usize].term)
    }

    /// Applies one frame; `false` if its kind is unknown or its body does not parse.
    fn replay(&mut self, kind: u8, body: &[u8]) -> bool {
        match kind {
            KIND_ENTRY => match Entry::parse_from_bytes(body) {
                Ok(e) => self.append(&[e]),
                Err(_) => return false,
            },
            KIND_HARD_STATE => match HardState::parse_from_bytes(body) {
                Ok(hs) => self.hard_state = hs,
                Err(_) => return false,
            },
            KIND_CONF_STATE => match ConfState::parse_from_bytes(body) {
                Ok(cs) => self.conf_state = cs,
                Err(_) => return false,
            },
            KIND_SNAPSHOT => match Snapshot::parse_from_bytes(body) {
                Ok(snap) => self.apply_snapshot(snap),
                Err(_) => return false,
            },
            _ => return false,
        }
        true
    }
}

/// What one `Ready` asks to make durable, in the order it is written.
#[derive(Debug, Default)]
pub struct Persist {
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
}

impl Persist {
    fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.entries.is_empty() && self.hard_state.is_none()
    }
}

/// A voter's Raft log: raft-rs reads it through `raft::Storage`; the node writes it with
/// [`DiskStorage::persist`] and [`DiskStorage::compact`], one call at a time.
pub struct DiskStorage {
    dir: PathBuf,
    file: File,
    core: Core,
}

impl DiskStorage {
    /// Opens (or creates) the log in `dir`. A new log starts with `voters` as its
    /// configuration; an existing one keeps what it recorded.
    pub fn open(dir: &Path, voters: &[u64]) -> std::io::Result<DiskStorage> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("raft.log");
        let mut bytes = Vec::new();
        if path.exists() {
            File::open(&path)?.read_to_end(&mut bytes)?;
        }
        let fresh = bytes.is_empty();
        let mut core = Core::default();
        let valid_len = replay_frames(&bytes, &mut core);
        if valid_len < bytes.len() {
            tracing::warn!(
                kept = valid_len,
                dropped = bytes.len() - valid_len,
                "raft log: truncating torn tail"
            );
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        file.set_len(valid_len as u64)?;
        file.sync_all()?;
        let mut storage = DiskStorage {
            dir: dir.to_owned(),
            file,
            core,
        };
        if fresh {
            let conf = ConfState {
                voters: voters.to_vec(),
                ..Default::default()
            };
            let mut buf = Vec::new();
            encode_frame(&mut buf, KIND_CONF_STATE, &conf)?;
            storage.file.write_all(&buf)?;
            storage.file.sync_data()?;
            storage.core.conf_state = conf;
        }
        Ok(storage)
    }

    /// The snapshot the log starts from (empty data before the first one).
    pub fn snapshot_ref(&self) -> &Snapshot {
        &self.core.snapshot
    }

    pub fn hard_state(&self) -> &HardState {
        &self.core.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.core.conf_state
    }

    /// Makes `p` durable (written and fsynced), then visible to raft-rs.
    pub async fn persist(&mut self, p: Persist) -> std::io::Result<()> {
        if p.is_empty() {
            return Ok(());
        }
        if let Some(snapshot) = p.snapshot {
            // A received snapshot replaces the log: rewrite it rather than grow it.
            let mut next = self.core.clone();
            next.apply_snapshot(snapshot);
            next.append(&p.entries);
            if let Some(hs) = p.hard_state {
                next.hard_state = hs;
            }
            return self.rewrite(next).await;
        }
        let mut buf = Vec::new();
        for e in &p.entries {
            encode_frame(&mut buf, KIND_ENTRY, e)?;
        }
        if let Some(hs) = &p.hard_state {
            encode_frame(&mut buf, KIND_HARD_STATE, hs)?;
        }
        let mut file = self.file.try_clone()?;
        runtime::off_reactor(move || {
            file.write_all(&buf)?;
            file.sync_data()
        })
        .await?;
        self.core.append(&p.entries);
        if let Some(hs) = p.hard_state {
            self.core.hard_state = hs;
        }
        Ok(())
    }

    /// Records the commit index (it can always be learned again, so this is not fsynced).
    pub fn set_commit(&mut self, commit: u64) -> std::io::Result<()> {
        let mut hs = self.core.hard_state.clone();
        if hs.commit >= commit {
            return Ok(());
        }
        hs.commit = commit;
        let mut buf = Vec::new();
        encode_frame(&mut buf, KIND_HARD_STATE, &hs)?;
        self.file.write_all(&buf)?;
        self.core.hard_state = hs;
        Ok(())
    }

    /// Replaces the entries up to `index` (applied) by a snapshot holding `data`.
    pub async fn compact(&mut self, index: u64, data: Vec<u8>) -> std::io::Result<()> {
        let Some(term) = self.core.term_at(index) else {
            return Ok(());
        };
        if index <= self.core.snapshot_index() {
            return Ok(());
        }
        let mut snapshot = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.core.conf_state.clone());
        let mut next = self.core.clone();
        next.apply_snapshot(snapshot);
        self.rewrite(next).await
    }

    /// Writes `next` as a new file (snapshot, entries, conf state, hard state), swaps it in
    /// by rename, then makes it the in-memory state.
    async fn rewrite(&mut self, next: Core) -> std::io::Result<()> {
        let mut buf = Vec::new();
        encode_frame(&mut buf, KIND_SNAPSHOT, &next.snapshot)?;
        for e in &next.entries {
            encode_frame(&mut buf, KIND_ENTRY, e)?;
        }
        encode_frame(&mut buf, KIND_CONF_STATE, &next.conf_state)?;
        encode_frame(&mut buf, KIND_HARD_STATE, &next.hard_state)?;
        let dir = self.dir.clone();
        let file = runtime::off_reactor(move || -> std::io::Result<File> {
            let tmp = dir.join("raft.log.tmp");
            let path = dir.join("raft.log");
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            File::open(&dir)?.sync_all()?;
            OpenOptions::new().append(true).open(&path)
        })
        .await?;
        self.file = file;
        self.core = next;
        Ok(())
    }
}

impl raft::Storage for DiskStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.core.hard_state.clone(),
            self.core.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.core.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.core.last_index() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let first = self.core.first_index();
        let mut ents = self.core.entries[(low - first) as usize..(high - first) as usize].to_vec();
        raft::util::limit_size(&mut ents, max_size.into());
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.core.snapshot_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.core
            .term_at(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.core.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.core.last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.core.snapshot_index() < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.core.snapshot.clone())
    }
}

fn encode_frame(buf: &mut Vec<u8>, kind: u8, msg: &dyn protobuf::Message) -> std::io::Result<()> {
    let body = msg.write_to_bytes().map_err(std::io::Error::other)?;
    let mut crc = crc32c::crc32c(&[kind]);
    crc = crc32c::crc32c_append(crc, &body);
    buf.extend_from_slice(&((body.len() + 1) as u32).to_be_bytes());
    buf.extend_from_slice(&crc.to_be_bytes());
    buf.push(kind);
    buf.extend_from_slice(&body);
    Ok(())
}

/// Replays every whole, intact frame into `core`; returns the length they cover.
fn replay_frames(bytes: &[u8], core: &mut Core) -> usize {
    let mut pos = 0;
    while bytes.len() - pos >= 9 {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into().expect("4 bytes"));
        if len == 0 || len > MAX_FRAME_BYTES {
            break;
        }
        let Some(body) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32c::crc32c(body) != crc || !core.replay(body[0], &body[1..]) {
            break;
        }
        pos += 8 + len;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage as _;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Default::default()
        }
    }

    fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..Default::default()
        }
    }

    fn persist(s: &mut DiskStorage, entries: Vec<Entry>, hs: Option<HardState>) {
        runtime::block_on(s.persist(Persist {
            snapshot: None,
            entries,
            hard_state: hs,
        }))
        .unwrap();
    }

    #[test]
    fn restart_keeps_entries_hard_state_and_voters() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = DiskStorage::open(dir.path(), &[1, 2, 3]).unwrap();
            persist(
                &mut s,
                vec![entry(1, 1, b"a"), entry(2, 1, b"b")],
                Some(hard_state(1, 2, 1)),
            );
            // a new leader overwrites index 2
            persist(&mut s, vec![entry(2, 2, b"c")], Some(hard_state(2, 3, 2)));
        }
        let s = DiskStorage::open(dir.path(), &[9]).unwrap();
        let state = s.initial_state().unwrap();
        assert_eq!(state.hard_state, hard_state(2, 3, 2));
        assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (1, 2));
        let ents = s
            .entries(1, 3, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(ents, vec![entry(1, 1, b"a"), entry(2, 2, b"c")]);
    }

    #[test]
    fn torn_tail_is_cut_and_later_writes_survive() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = DiskStorage::open(dir.path(), &[1]).unwrap();
            persist(&mut s, vec![entry(1, 1, b"a")], Some(hard_state(1, 1, 1)));
            persist(&mut s, vec![entry(2, 1, b"b")], None);
        }
        let path = dir.path().join("raft.log");
        let len = std::fs::metadata(&path).unwrap().len();
        // a crash mid-write: the last frame loses its final bytes
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        drop(f);
        {
            let mut s = DiskStorage::open(dir.path(), &[1]).unwrap();
            assert_eq!(s.last_index().unwrap(), 1);
            persist(&mut s, vec![entry(2, 1, b"z")], None);
        }
        let s = DiskStorage::open(dir.path(), &[1]).unwrap();
        assert_eq!(s.last_index().unwrap(), 2);
        assert_eq!(s.term(2).unwrap(), 1);
        let ents = s
            .entries(2, 3, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(ents[0].data.as_ref(), b"z");
    }

    #[test]
    fn compaction_keeps_later_entries_and_the_snapshot_across_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = DiskStorage::open(dir.path(), &[1, 2]).unwrap();
            let ents = (1..=5).map(|i| entry(i, 1, &[i as u8])).collect();
            persist(&mut s, ents, Some(hard_state(1, 1, 5)));
            runtime::block_on(s.compact(3, b"state@3".to_vec())).unwrap();
            assert_eq!(s.first_index().unwrap(), 4);
            assert!(matches!(
                s.entries(2, 4, None, GetEntriesContext::empty(false)),
                Err(raft::Error::Store(StorageError::Compacted))
            ));
            persist(&mut s, vec![entry(6, 2, b"six")], None);
        }
        let s = DiskStorage::open(dir.path(), &[1, 2]).unwrap();
        assert_eq!(s.snapshot(0, 2).unwrap().data.as_ref(), b"state@3");
        assert_eq!(s.term(3).unwrap(), 1);
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (4, 6));
        assert_eq!(s.initial_state().unwrap().hard_state.commit, 5);
        assert_eq!(s.conf_state().voters, vec![1, 2]);
    }

    #[test]
    fn a_received_snapshot_replaces_a_diverging_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = DiskStorage::open(dir.path(), &[1, 2, 3]).unwrap();
        persist(&mut s, vec![entry(1, 1, b"a"), entry(2, 1, b"b")], None);
        let mut snap = Snapshot {
            data: b"leader state".to_vec().into(),
            ..Default::default()
        };
        snap.mut_metadata().index = 10;
        snap.mut_metadata().term = 3;
        snap.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        runtime::block_on(s.persist(Persist {
            snapshot: Some(snap),
            entries: vec![entry(11, 3, b"x")],
            hard_state: Some(hard_state(3, 0, 10)),
        }))
        .unwrap();
        drop(s);
        let s = DiskStorage::open(dir.path(), &[1, 2, 3]).unwrap();
        assert_eq!(
            (s.first_index().unwrap(), s.last_index().unwrap()),
            (11, 11)
        );
        assert_eq!(s.term(10).unwrap(), 3);
        assert_eq!(s.snapshot_ref().data.as_ref(), b"leader state");
    }
}
