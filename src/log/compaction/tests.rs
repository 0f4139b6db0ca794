//! Compaction tests: newest value per key with offsets kept, tombstones through their delete
//! horizon, transactions, a small key map needing several passes, a crash inside the swap,
//! and reads across removed gaps.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::BytesMut;

use super::*;
use crate::config::CleanupPolicy;
use crate::protocol::batch::{build_marker, stamp_producer, ControlType};

/// A log directory whose swaps stop right after their commit point, as a crash would (the
/// swap runs on the blocking thread, so this is not a thread-local).
static CRASH_AFTER_SWAP_COMMIT: std::sync::Mutex<Option<std::path::PathBuf>> =
    std::sync::Mutex::new(None);

pub fn crash_injected(dir: &Path) -> bool {
    CRASH_AFTER_SWAP_COMMIT.lock().unwrap().as_deref() == Some(dir)
}

const NOW: i64 = 10_000_000;

fn compact_settings() -> LogSettings {
    LogSettings {
        segment_bytes: 600,
        index_interval_bytes: 128,
        cleanup: CleanupPolicy::COMPACT,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: 1_000,
        ..LogSettings::default()
    }
}

fn keyed(key: &str, value: Option<&str>) -> BytesMut {
    let rec = [(Some(key.as_bytes()), value.map(str::as_bytes))];
    BytesMut::from(&batch::build_batch(0, 1_000, &rec)[..])
}

async fn append(log: &Log, b: BytesMut) -> i64 {
    let a = log.append(b, 0).expect("append");
    log.wait_durable(a.last_offset).await.expect("durable");
    a.base_offset
}

/// Seals the active segment and waits for the flusher to have done it.
async fn seal(log: &Log) {
    log.roll();
    log.wait_flushed().await;
}

/// Every record of the log from offset 0: `(offset, key, value)`.
async fn records(log: &Log) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    let mut next = log.offsets().log_start;
    loop {
        let bytes = log.read(next, 4096).await.expect("read").to_bytes();
        if bytes.is_empty() {
            return out;
        }
        for item in batch::BatchIter::new(&bytes) {
            let (h, start, len) = item.expect("valid batch");
            next = h.last_offset() + 1;
            if h.is_control() {
                continue;
            }
            let d = DecodedBatch::decode(&bytes[start..start + len]).expect("decodes");
            for r in d.records {
                let text = |b: &bytes::Bytes| String::from_utf8_lossy(b).into_owned();
                out.push((
                    r.offset,
                    text(r.key.as_ref().unwrap()),
                    r.value.as_ref().map(text),
                ));
            }
        }
    }
}

fn input(now_ms: i64, stable_end: i64) -> CompactionInput<'static> {
    CompactionInput {
        now_ms,
        stable_end,
        aborted: &[],
    }
}

fn newest_per_key(
    all: &[(i64, String, Option<String>)],
) -> BTreeMap<String, (i64, Option<String>)> {
    let mut m = BTreeMap::new();
    for (o, k, v) in all {
        m.insert(k.clone(), (*o, v.clone()));
    }
    m
}

#[test]
fn compaction_keeps_the_newest_record_per_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), compact_settings()).await.unwrap();
        for round in 0..6 {
            for k in 0..5 {
                append(&log, keyed(&format!("k{k}"), Some(&format!("v{round}")))).await;
            }
        }
        let active_base = log.active_segment_base();
        let before = records(&log).await;
        let stats = log
            .compact(input(NOW, log.offsets().log_end))
            .await
            .unwrap()
            .expect("a pass ran");
        assert!(
            stats.segments_cleaned > 0 && stats.records_removed > 0,
            "{stats:?}"
        );
        let after = records(&log).await;
        let expected = newest_per_key(&before);
        // Records in the active segment stay as they are; the sealed part holds one per key.
        let sealed: Vec<_> = after.iter().filter(|r| r.0 < active_base).collect();
        let mut seen = std::collections::HashSet::new();
        for (o, k, v) in &sealed {
            assert!(seen.insert(k.clone()), "key {k} twice in sealed segments");
            assert!(
                before.contains(&(*o, k.clone(), v.clone())),
                "offset {o} kept as it was"
            );
        }
        assert_eq!(
            newest_per_key(&after),
            expected,
            "the newest value per key survives"
        );
        assert_eq!(log.offsets().log_end, 30, "offsets are never reused");
        log.close().await.unwrap();
        // After a restart the cleaned segments serve the same records.
        let log = Log::open(dir.path(), compact_settings()).await.unwrap();
        assert_eq!(records(&log).await, after);
        log.close().await.unwrap();
    });
}

#[test]
fn tombstones_stay_until_their_delete_horizon_then_go() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), compact_settings()).await.unwrap();
        for k in 0..4 {
            append(&log, keyed(&format!("k{k}"), Some("v"))).await;
        }
        append(&log, keyed("k1", None)).await;
        append(&log, keyed("k2", None)).await;
        seal(&log).await;
        let end = log.offsets().log_end;
        log.compact(input(NOW, end))
            .await
            .unwrap()
            .expect("first pass");
        let after_first = newest_per_key(&records(&log).await);
        assert_eq!(
            after_first.get("k1").map(|x| x.1.clone()),
            Some(None),
            "tombstone kept"
        );
        assert_eq!(after_first.len(), 4);
        // Nothing new and the horizon not reached: no pass is due.
        assert_eq!(log.compact(input(NOW + 500, end)).await.unwrap(), None);
        log.compact(input(NOW + 1_000, end))
            .await
            .unwrap()
            .expect("horizon passed");
        let keys: Vec<String> = records(&log).await.into_iter().map(|r| r.1).collect();
        assert_eq!(
            keys,
            vec!["k0".to_owned(), "k3".to_owned()],
            "deleted keys are gone"
        );
        log.close().await.unwrap();
    });
}

#[test]
fn aborted_data_goes_and_markers_stay_while_their_data_does() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), compact_settings()).await.unwrap();
        let txn = |key: &str, pid: i64, seq: i32| {
            let mut b = keyed(key, Some("t"));
            stamp_producer(&mut b, pid, 0, seq, true);
            b
        };
        let marker = |pid: i64, kind| BytesMut::from(&build_marker(pid, 0, 0, kind, 1_000)[..]);
        let aborted_first = append(&log, txn("a", 7, 0)).await; // aborted
        append(&log, txn("b", 8, 0)).await; // committed, later overwritten
        let abort_at = append(&log, marker(7, ControlType::Abort)).await;
        let commit8 = append(&log, marker(8, ControlType::Commit)).await;
        append(&log, txn("c", 9, 0)).await; // committed, stays
        let commit9 = append(&log, marker(9, ControlType::Commit)).await;
        append(&log, keyed("b", Some("plain"))).await;
        seal(&log).await;
        let aborted = [AbortedRange {
            producer_id: 7,
            first_offset: aborted_first,
            last_offset: abort_at,
        }];
        let end = log.offsets().log_end;
        let run = |now| CompactionInput {
            now_ms: now,
            stable_end: end,
            aborted: &aborted,
        };
        log.compact(run(NOW)).await.unwrap().expect("pass");
        let keys: Vec<String> = records(&log).await.into_iter().map(|r| r.1).collect();
        assert_eq!(
            keys,
            vec!["c".to_owned(), "b".to_owned()],
            "aborted 'a' and old 'b' gone"
        );
        let markers = markers_of(&log).await;
        assert_eq!(
            markers,
            vec![abort_at, commit8, commit9],
            "first pass keeps markers"
        );
        log.compact(run(NOW + 1_000))
            .await
            .unwrap()
            .expect("horizon pass");
        assert_eq!(
            markers_of(&log).await,
            vec![commit9],
            "only the marker with data left"
        );
        log.close().await.unwrap();
    });
}

async fn markers_of(log: &Log) -> Vec<i64> {
    let mut bytes = log.read(0, 1 << 20).await.unwrap().to_bytes();
    let mut out = Vec::new();
    let mut next = 0;
    loop {
        if bytes.is_empty() {
            return out;
        }
        for item in batch::BatchIter::new(&bytes) {
            let (h, _, _) = item.unwrap();
            next = h.last_offset() + 1;
            if h.is_control() {
                out.push(h.base_offset.get());
            }
        }
        bytes = log.read(next, 1 << 20).await.unwrap().to_bytes();
    }
}

#[test]
fn a_small_key_map_compacts_in_several_passes_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let mut s = compact_settings();
        s.cleaner.dedupe_buffer_bytes = 8 * MAP_ENTRY_BYTES; // room for 8 keys a pass
        let log = Log::open(dir.path(), s).await.unwrap();
        for round in 0..3 {
            for k in 0..12 {
                append(&log, keyed(&format!("k{k:02}"), Some(&format!("v{round}")))).await;
            }
        }
        seal(&log).await;
        let expected = newest_per_key(&records(&log).await);
        let end = log.offsets().log_end;
        let mut passes = 0;
        let mut now = NOW;
        while let Some(stats) = log.compact(input(now, end)).await.unwrap() {
            passes += 1;
            now += 1;
            assert!(passes < 20, "passes must make progress: {stats:?}");
        }
        assert!(passes >= 3, "8-key map over 36 records: {passes} passes");
        let after = records(&log).await;
        assert_eq!(after.len(), 12, "one record per key: {after:?}");
        assert_eq!(newest_per_key(&after), expected);
        log.close().await.unwrap();
    });
}

#[test]
fn a_crash_after_the_swap_commit_is_finished_at_open_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), compact_settings()).await.unwrap();
        for round in 0..4 {
            for k in 0..5 {
                append(&log, keyed(&format!("k{k}"), Some(&format!("v{round}")))).await;
            }
        }
        seal(&log).await;
        let expected = newest_per_key(&records(&log).await);
        *CRASH_AFTER_SWAP_COMMIT.lock().unwrap() = Some(dir.path().to_owned());
        let crashed = log.compact(input(NOW, log.offsets().log_end)).await;
        *CRASH_AFTER_SWAP_COMMIT.lock().unwrap() = None;
        assert!(crashed.is_err(), "the injected crash stops the pass");
        assert!(
            has_suffix(dir.path(), ".swap"),
            "the swap file is the commit point"
        );
        // A leftover from a pass that never committed is dropped at open too.
        std::fs::write(dir.path().join("00000000000000000099.log.cleaned"), b"junk").unwrap();
        log.close().await.unwrap();
        drop(log);
        let log = Log::open(dir.path(), compact_settings()).await.unwrap();
        assert!(!has_suffix(dir.path(), ".swap") && !has_suffix(dir.path(), ".cleaned"));
        assert_eq!(newest_per_key(&records(&log).await), expected);
        log.close().await.unwrap();
    });
}

fn has_suffix(dir: &Path, suffix: &str) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(suffix))
}

#[test]
fn a_read_inside_a_removed_gap_gets_the_next_batch() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), compact_settings()).await.unwrap();
        let old = append(&log, keyed("x", Some("old"))).await;
        let kept = append(&log, keyed("y", Some("y"))).await;
        append(&log, keyed("x", Some("new"))).await;
        seal(&log).await;
        // A reader that took the segment before the swap still reads the old file whole.
        let (file, written) = {
            let s = log.state.borrow();
            let seg = s.segments.values().next().unwrap();
            (seg.file.clone().unwrap(), seg.written)
        };
        log.compact(input(NOW, log.offsets().log_end))
            .await
            .unwrap()
            .expect("pass");
        let bytes = log.read(old, 4096).await.unwrap().to_bytes();
        let (h, _) = batch::validate(&bytes).unwrap();
        assert_eq!(
            h.base_offset.get(),
            kept,
            "offset {old} was removed: the next batch comes"
        );
        let stale = super::super::reader::read_batches(&file, 0, written, old, i64::MAX, 4096)
            .await
            .unwrap();
        assert_eq!(batch::validate(&stale).unwrap().0.base_offset.get(), old);
        log.close().await.unwrap();
    });
}

#[test]
fn compaction_skips_logs_that_are_not_compacted_or_too_young() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let mut s = compact_settings();
        s.cleanup = CleanupPolicy::DELETE;
        let log = Log::open(dir.path(), s.clone()).await.unwrap();
        append(&log, keyed("x", Some("1"))).await;
        append(&log, keyed("x", Some("2"))).await;
        seal(&log).await;
        let end = log.offsets().log_end;
        assert_eq!(
            log.compact(input(NOW, end)).await.unwrap(),
            None,
            "delete policy"
        );
        s.cleanup = CleanupPolicy::COMPACT;
        s.min_compaction_lag_ms = NOW; // records at ts 1000 are younger than the lag
        log.update_settings(s.clone());
        assert_eq!(log.compact(input(NOW, end)).await.unwrap(), None, "min lag");
        s.min_compaction_lag_ms = 0;
        log.update_settings(s);
        assert_eq!(
            log.compact(input(NOW, 1)).await.unwrap(),
            None,
            "past the stable end"
        );
        assert!(log.compact(input(NOW, end)).await.unwrap().is_some());
        log.close().await.unwrap();
    });
}
