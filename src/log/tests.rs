//! Log tests: appends and reads, segment rolls, and recovery from torn or corrupt tails,
//! including a property test over random appends and crash points.

use std::path::Path;

use bytes::BytesMut;
use proptest::prelude::*;

use super::*;
use crate::runtime;

fn settings(segment_bytes: u64) -> LogSettings {
    LogSettings {
        segment_bytes,
        index_interval_bytes: 256,
        ..LogSettings::default()
    }
}

/// A batch of `n` records whose values identify it.
fn batch_of(tag: u32, n: usize, value_len: usize) -> BytesMut {
    let value = vec![(tag % 251) as u8; value_len];
    let key = tag.to_be_bytes();
    let recs: Vec<batch::SimpleRecord> =
        (0..n).map(|_| (Some(&key[..]), Some(&value[..]))).collect();
    BytesMut::from(&batch::build_batch(0, 1_000 + tag as i64, &recs)[..])
}

/// Reads the whole log from `from` and returns `(base_offset, record_count, tag)` per batch.
async fn read_all(log: &Log, from: i64) -> Vec<(i64, i32, u32)> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let bytes = log.read(next, 1000).await.expect("read").to_bytes();
        if bytes.is_empty() {
            return out;
        }
        for item in batch::BatchIter::new(&bytes) {
            let (h, start, len) = item.expect("served batches are valid");
            let raw = &bytes[start..start + len];
            // the key of the first record carries the tag: it sits right after the header
            let tag = tag_of(raw);
            out.push((h.base_offset.get(), h.record_count.get(), tag));
            next = h.last_offset() + 1;
        }
    }
}

fn tag_of(raw: &[u8]) -> u32 {
    let mut set = bytes::Bytes::copy_from_slice(raw);
    let decoded = kafka_protocol::records::RecordBatchDecoder::decode(&mut set).expect("decodes");
    let key = decoded.records[0].key.clone().expect("key");
    u32::from_be_bytes(key[..4].try_into().expect("4-byte key"))
}

async fn append_durably(log: &Log, b: BytesMut) -> Appended {
    let a = log.append(b, 0).expect("append");
    log.wait_durable(a.last_offset).await.expect("durable");
    a
}

/// What a crash leaves: no clean-shutdown marker.
fn forget_clean_shutdown(dir: &Path) {
    std::fs::remove_file(dir.join("clean-shutdown")).expect("a clean close leaves a marker");
}

fn active_segment_file(dir: &Path) -> std::path::PathBuf {
    let bases = segment::list_segments(dir).unwrap();
    segment::log_path(dir, *bases.last().unwrap())
}

#[test]
fn appends_get_dense_offsets_and_read_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(1 << 20)).await.unwrap();
        let a = append_durably(&log, batch_of(1, 3, 10)).await;
        let b = append_durably(&log, batch_of(2, 5, 10)).await;
        assert_eq!((a.base_offset, a.last_offset), (0, 2));
        assert_eq!((b.base_offset, b.last_offset), (3, 7));
        assert_eq!(log.offsets().high_watermark, 8);
        log.close().await.unwrap();
        let log = Log::open(dir.path(), settings(1 << 20)).await.unwrap();
        assert_eq!(log.offsets().log_end, 8);
        assert_eq!(read_all(&log, 0).await, vec![(0, 3, 1), (3, 5, 2)]);
        // a read from the middle of a batch returns that whole batch
        assert_eq!(read_all(&log, 5).await, vec![(3, 5, 2)]);
        log.close().await.unwrap();
    });
}

#[test]
fn freshly_created_segment_reads_back_from_disk() {
    // Guards the glommio poll-probe pitfall: the first DMA read of a new file must work.
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        runtime::prime_dma_probe(dir.path()).await.unwrap();
        let mut s = settings(1 << 20);
        s.tail_cache_bytes = 0;
        let log = Log::open(&dir.path().join("p"), s).await.unwrap();
        append_durably(&log, batch_of(9, 2, 100)).await;
        append_durably(&log, batch_of(10, 2, 100)).await;
        // the tail cache holds nothing once written, so this read goes to the file
        assert_eq!(read_all(&log, 0).await, vec![(0, 2, 9), (2, 2, 10)]);
        log.close().await.unwrap();
    });
}

#[test]
fn segments_roll_and_every_offset_is_found_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(2000)).await.unwrap();
        for tag in 0..40 {
            append_durably(&log, batch_of(tag, 2, 50)).await;
        }
        log.close().await.unwrap();
        assert!(segment::list_segments(dir.path()).unwrap().len() > 3);
        let log = Log::open(dir.path(), settings(2000)).await.unwrap();
        let all = read_all(&log, 0).await;
        assert_eq!(all.len(), 40);
        for (i, (base, count, tag)) in all.iter().enumerate() {
            assert_eq!((*base, *count, *tag), (2 * i as i64, 2, i as u32));
        }
        for offset in 0..80 {
            let first = read_all(&log, offset).await[0];
            assert!(
                first.0 <= offset && offset < first.0 + 2,
                "offset {offset} served {first:?}"
            );
        }
        log.close().await.unwrap();
    });
}

#[test]
fn recovery_truncates_torn_tail_batch() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(1 << 20)).await.unwrap();
        for tag in 0..5 {
            append_durably(&log, batch_of(tag, 1, 30)).await;
        }
        log.close().await.unwrap();
    });
    forget_clean_shutdown(dir.path());
    let path = active_segment_file(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 7).unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(1 << 20)).await.unwrap();
        assert_eq!(read_all(&log, 0).await.len(), 4);
        assert_eq!(log.offsets().log_end, 4);
        // appends continue right after the last whole batch
        let a = append_durably(&log, batch_of(77, 1, 30)).await;
        assert_eq!(a.base_offset, 4);
        log.close().await.unwrap();
    });
}

#[test]
fn recovery_stops_at_bad_crc_and_ignores_zero_padding() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(1 << 20)).await.unwrap();
        for tag in 0..6 {
            append_durably(&log, batch_of(tag, 1, 30)).await;
        }
        log.close().await.unwrap();
    });
    forget_clean_shutdown(dir.path());
    let path = active_segment_file(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let one = bytes.len() / 6;
    bytes[3 * one + 40] ^= 0xff; // inside the 4th batch's CRC-covered bytes
    bytes.extend_from_slice(&[0u8; 4096]); // padding a crash can leave behind
    std::fs::write(&path, &bytes).unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(1 << 20)).await.unwrap();
        assert_eq!(
            read_all(&log, 0)
                .await
                .iter()
                .map(|b| b.2)
                .collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        log.close().await.unwrap();
    });
    assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, 3 * one);
}

#[test]
fn sealed_segment_without_index_is_rescanned() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(1500)).await.unwrap();
        for tag in 0..20 {
            append_durably(&log, batch_of(tag, 1, 60)).await;
        }
        log.close().await.unwrap();
    });
    let first = segment::list_segments(dir.path()).unwrap()[0];
    std::fs::remove_file(segment::index_path(dir.path(), first)).unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(1500)).await.unwrap();
        assert_eq!(read_all(&log, 0).await.len(), 20);
        log.close().await.unwrap();
    });
}

#[test]
fn offset_out_of_range_past_log_end() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(1 << 20)).await.unwrap();
        append_durably(&log, batch_of(1, 2, 10)).await;
        assert!(matches!(
            log.read(3, 100).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert!(log.read(2, 100).await.unwrap().is_empty());
        log.close().await.unwrap();
    });
}

#[test]
fn time_lookup_finds_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(1 << 20)).await.unwrap();
        for tag in 0..5 {
            append_durably(&log, batch_of(tag, 1, 10)).await; // timestamps 1000..1004
        }
        assert_eq!(log.offset_for_timestamp(0).await.unwrap(), Some((0, 1000)));
        assert_eq!(
            log.offset_for_timestamp(1003).await.unwrap(),
            Some((3, 1003))
        );
        assert_eq!(log.offset_for_timestamp(5000).await.unwrap(), None);
        log.close().await.unwrap();
    });
}

/// What a crash does to the active segment's file.
#[derive(Debug, Clone)]
enum Crash {
    /// The file ends `cut` bytes earlier (a write that did not finish).
    Truncate(usize),
    /// A byte at `at` (fraction of the file, in thousandths) is flipped.
    Flip(u16),
    /// Zero padding past the end, as a direct write of a partial page leaves.
    Pad(usize),
}

fn crash_strategy() -> impl Strategy<Value = Crash> {
    prop_oneof![
        (1usize..400).prop_map(Crash::Truncate),
        (0u16..1000).prop_map(Crash::Flip),
        (1usize..8192).prop_map(Crash::Pad),
    ]
}

/// Whether byte `i` lies in the partitionLeaderEpoch field (bytes 12..16) of a batch of the
/// (otherwise intact) segment `bytes`.
fn flips_leader_epoch(bytes: &[u8], i: usize) -> bool {
    let mut start = 0usize;
    while start + batch::HEADER_LEN <= bytes.len() {
        if (start + 12..start + 16).contains(&i) {
            return true;
        }
        let Ok(h) = batch::header(&bytes[start..]) else {
            return false;
        };
        if start + h.total_len() > i || h.batch_length.get() <= 0 {
            return false;
        }
        start += h.total_len();
    }
    false
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the crash, recovery keeps exactly the batches that are whole and valid
    /// before the damage, in order, with dense offsets, and every kept offset is readable.
    #[test]
    fn recovery_keeps_exactly_the_whole_batches_before_a_crash(
        sizes in proptest::collection::vec((1usize..6, 1usize..300), 1..30),
        segment_bytes in 1500u64..20_000,
        crash in crash_strategy(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let ends: Vec<(u32, i64)> = runtime::block_on(async {
            let log = Log::open(dir.path(), settings(segment_bytes)).await.unwrap();
            let mut ends = Vec::new();
            for (tag, (n, len)) in sizes.iter().enumerate() {
                let a = append_durably(&log, batch_of(tag as u32, *n, *len)).await;
                ends.push((tag as u32, a.last_offset));
            }
            log.close().await.unwrap();
            ends
        });
        forget_clean_shutdown(dir.path());
        let path = active_segment_file(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let damaged_from = match crash {
            Crash::Truncate(cut) => { let n = bytes.len().saturating_sub(cut); bytes.truncate(n); n }
            Crash::Flip(at) => {
                if bytes.is_empty() { 0 } else {
                    let i = (bytes.len() - 1) * at as usize / 1000;
                    bytes[i] ^= 0x5a;
                    // partitionLeaderEpoch is covered by nothing (not the CRC, not offset
                    // continuity): a flip there is invisible, not damage
                    if flips_leader_epoch(&bytes, i) { bytes.len() } else { i }
                }
            }
            Crash::Pad(n) => { let l = bytes.len(); bytes.extend(std::iter::repeat_n(0u8, n)); l }
        };
        std::fs::write(&path, &bytes).unwrap();
        let base = segment::list_segments(dir.path()).unwrap().last().copied().unwrap();
        // batches of the active segment that end before the damage survive; later ones go
        let mut pos = 0usize;
        let mut expect_active = Vec::new();
        for item in batch::BatchIter::new(&bytes) {
            let Ok((h, start, len)) = item else { break };
            if start + len > damaged_from { break; }
            expect_active.push(h.base_offset.get());
            pos = start + len;
        }
        let _ = pos;
        let kept: Vec<(i64, i32, u32)> = runtime::block_on(async {
            let log = Log::open(dir.path(), settings(segment_bytes)).await.unwrap();
            let all = read_all(&log, 0).await;
            let end = log.offsets().log_end;
            prop_assert_eq!(end, all.last().map_or(0, |b| b.0 + b.1 as i64));
            // every kept offset is served by the batch that holds it
            for (b, n, _) in &all {
                let got = read_all(&log, b + *n as i64 - 1).await;
                prop_assert_eq!(got.first().map(|g| g.0), Some(*b));
            }
            log.close().await.unwrap();
            Ok(all)
        })?;
        // the sealed segments survive whole; the active one keeps its undamaged prefix
        let sealed: Vec<u32> = ends.iter().filter(|(_, last)| *last < base).map(|(t, _)| *t).collect();
        let kept_tags: Vec<u32> = kept.iter().map(|k| k.2).collect();
        prop_assert_eq!(&kept_tags[..sealed.len()], &sealed[..]);
        let active_kept: Vec<i64> = kept[sealed.len()..].iter().map(|k| k.0).collect();
        prop_assert_eq!(active_kept, expect_active);
        // offsets are dense
        for w in kept.windows(2) {
            prop_assert_eq!(w[0].0 + w[0].1 as i64, w[1].0);
        }
    }
}

/// A batch of exactly `len` bytes (a few records whose value length is searched for).
fn batch_exact(tag: u32, len: usize) -> BytesMut {
    for n in 1..=3 {
        for v in 0..len {
            let b = batch_of(tag, n, v);
            if b.len() == len {
                return b;
            }
            if b.len() > len {
                break;
            }
        }
    }
    panic!("no batch of exactly {len} bytes");
}

/// Issue 14 item 5: a fetch whose disk read skips batches before the wanted offset must not
/// come back empty when a skipped batch ends a few bytes short of the read chunk's end (a
/// consumer would poll that offset forever).
#[test]
fn read_after_skipped_batch_ending_near_chunk_end_returns_the_batch() {
    let max_bytes = 1000usize;
    let chunk = max_bytes + reader::FETCH_READ_SLACK;
    for gap in [1usize, 12, 30, 60, 61, 62] {
        let dir = tempfile::tempdir().unwrap();
        runtime::block_on(async {
            let mut s = settings(1 << 30);
            s.tail_cache_bytes = 0;
            s.index_interval_bytes = 1 << 30; // one index entry: every read skips from 0
            let log = Log::open(dir.path(), s).await.unwrap();
            let target = chunk - gap;
            let mut written = 0usize;
            let mut tag = 0;
            while target - written > 3000 {
                let b = batch_of(tag, 1, 1000);
                written += b.len();
                append_durably(&log, b).await;
                tag += 1;
            }
            append_durably(&log, batch_exact(tag, target - written)).await;
            let wanted = append_durably(&log, batch_of(500, 2, 100)).await;
            append_durably(&log, batch_of(501, 2, 100)).await;
            let got = read_all(&log, wanted.base_offset).await;
            assert_eq!(
                got.first().map(|b| (b.0, b.2)),
                Some((wanted.base_offset, 500)),
                "gap {gap}: read from {} gave {got:?}",
                wanted.base_offset
            );
            log.close().await.unwrap();
        });
    }
}

/// Issue 14 item 9: after a clean shutdown the active segment is trusted, not re-read: a
/// byte flipped inside it (same size) is not noticed, while after a crash (no marker) the
/// scan truncates at it.
#[test]
fn clean_restart_trusts_the_active_segment_and_a_crash_rescans_it() {
    let dir = tempfile::tempdir().unwrap();
    // The test batches are stamped in 1970: no segment.ms roll at the first append.
    let settings = |bytes| LogSettings {
        segment_ms: i64::MAX,
        ..settings(bytes)
    };
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(1 << 20)).await.unwrap();
        for tag in 0..6 {
            append_durably(&log, batch_of(tag, 1, 30)).await;
        }
        log.close().await.unwrap();
    });
    let path = active_segment_file(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let one = bytes.len() / 6;
    bytes[3 * one + 40] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(1 << 20)).await.unwrap();
        assert_eq!(log.offsets().log_end, 6, "the marker vouched for 6 batches");
        // appends continue after the trusted end and survive a crash-style reopen
        append_durably(&log, batch_of(6, 1, 30)).await;
        assert!(
            !dir.path().join("clean-shutdown").exists(),
            "the marker is consumed at open"
        );
        drop(log);
    });
    // no close: as after kill -9, the next open scans and stops at the flipped byte
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(1 << 20)).await.unwrap();
        assert_eq!(log.offsets().log_end, 3);
        log.close().await.unwrap();
    });
}

/// A clean restart keeps indexes: every offset of a multi-segment log is found again, and
/// the sealed segments and the active one keep their index files consistent.
#[test]
fn clean_restart_serves_every_offset_from_trusted_indexes() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(3000)).await.unwrap();
        for tag in 0..30 {
            append_durably(&log, batch_of(tag, 2, 60)).await;
        }
        log.close().await.unwrap();
        for round in 0..2i64 {
            let log = Log::open(dir.path(), settings(3000)).await.unwrap();
            assert_eq!(log.offsets().log_end, 60 + 2 * round);
            for offset in (0..60).step_by(7) {
                let first = read_all(&log, offset).await[0];
                assert!(
                    first.0 <= offset && offset < first.0 + 2,
                    "{offset}: {first:?}"
                );
            }
            append_durably(&log, batch_of(100 + round as u32, 2, 60)).await;
            log.close().await.unwrap();
        }
    });
}

/// Issue 14 item 3: a log never holds more than `max_pending_bytes` of batches that are not
/// durable yet; past it appends are refused until the flusher catches up.
#[test]
fn appends_past_the_pending_bound_are_refused_until_the_disk_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let mut s = settings(1 << 30);
        s.max_pending_bytes = 64 * 1024;
        let log = Log::open(dir.path(), s).await.unwrap();
        // No await between appends: the flusher cannot run, as under an acks=0 flood.
        let mut accepted = 0u64;
        let mut refused = None;
        for tag in 0..1000 {
            let b = batch_of(tag, 1, 1000);
            let len = b.len() as u64;
            match log.append(b, 0) {
                Ok(_) => accepted += len,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        assert!(
            matches!(refused, Some(LogError::Backlogged { limit: 65536, .. })),
            "{refused:?}"
        );
        assert!(accepted <= 64 * 1024, "{accepted} bytes pending");
        let next = batch_of(9999, 1, 1000);
        log.wait_for_room(next.len()).await;
        let a = log.append(next, 0).expect("room again");
        log.wait_durable(a.last_offset).await.unwrap();
        // one batch bigger than the bound is still accepted when nothing is pending
        let big = log
            .append(batch_of(10_000, 1, 100_000), 0)
            .expect("lone big batch");
        log.wait_durable(big.last_offset).await.unwrap();
        log.close().await.unwrap();
    });
}

/// Issue 14 item 8: a failed fdatasync in interval durability fails the log, as in fsync
/// durability: no more appends are accepted.
#[test]
fn failed_interval_sync_fails_the_log() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let mut s = settings(1 << 30);
        s.durability = crate::config::Durability::Interval;
        s.flush_interval = std::time::Duration::from_millis(1);
        let log = Log::open(dir.path(), s).await.unwrap();
        append_durably(&log, batch_of(1, 1, 10)).await;
        log.inject_sync_fault();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let outcome = match log.append(batch_of(2, 1, 10), 0) {
                Ok(a) => log.wait_durable(a.last_offset).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => {}
                Err(LogError::Storage(reason)) => {
                    assert!(reason.contains("fdatasync"), "{reason}");
                    break;
                }
                Err(e) => panic!("{e}"),
            }
            assert!(std::time::Instant::now() < deadline, "the log never failed");
            runtime::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(matches!(
            log.append(batch_of(3, 1, 10), 0),
            Err(LogError::Storage(_))
        ));
        assert!(log.close().await.is_err());
    });
}

/// Issue 14 item 8: blocking file-system calls stay off the reactor. In the log's async
/// code, `std::fs` and `sync_all` appear only inside `off_reactor` closures; the files whose
/// functions are all blocking helpers (called through `off_reactor`) are listed.
#[test]
fn blocking_file_calls_stay_off_the_reactor() {
    const BLOCKING_HELPERS: &[&str] = &["checkpoint.rs", "segment.rs"];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/log");
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // Subfolders hold tests only (`compaction/tests.rs`).
        if path.is_dir() || BLOCKING_HELPERS.contains(&name.as_str()) || name == "tests.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut in_helper = false;
        for (i, line) in text.lines().enumerate() {
            // Functions named here are blocking helpers called through off_reactor.
            if line.starts_with("fn take_inventory") || line.starts_with("fn load_index") {
                in_helper = true;
            } else if line.starts_with("fn ")
                || line.starts_with("pub")
                || line.starts_with("async")
            {
                in_helper = false;
            }
            if line.trim_start().starts_with("//") || line.contains("#[cfg(test)]") {
                continue;
            }
            let blocking = line.contains("std::fs::") || line.contains(".sync_all()");
            if blocking && !in_helper && !line.contains("off_reactor") {
                offenders.push(format!("{name}:{}: {}", i + 1, line.trim()));
            }
            if line.starts_with("mod tests") {
                break;
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "blocking calls on the reactor:\n{}",
        offenders.join("\n")
    );
}

fn log_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    names
}

/// Issue 10: size retention deletes whole old segments, moves the log start, and reads
/// below it are out of range, also after a restart.
#[test]
fn size_retention_deletes_old_segments_and_moves_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let mut s = settings(2000);
        s.retention_bytes = 4000;
        s.retention_ms = -1; // the test batches are stamped in 1970
        let log = Log::open(dir.path(), s.clone()).await.unwrap();
        for tag in 0..60 {
            append_durably(&log, batch_of(tag, 1, 100)).await;
        }
        let before = log_files(dir.path()).len();
        let deleted = log.enforce_retention(log.now_ms()).await.unwrap();
        assert!(deleted > 0 && deleted < before, "{deleted} of {before}");
        assert_eq!(log_files(dir.path()).len(), before - deleted);
        let start = log.offsets().log_start;
        assert!(start > 0);
        assert!(matches!(
            log.read(start - 1, 1000).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(
            read_all(&log, start).await.first().map(|b| b.0),
            Some(start)
        );
        let kept: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert!(
            kept >= 4000,
            "retention keeps at least retention.bytes: {kept}"
        );
        log.close().await.unwrap();
        let log = Log::open(dir.path(), s).await.unwrap();
        assert_eq!(log.offsets().log_start, start);
        log.close().await.unwrap();
    });
}

/// Issue 10: time retention deletes every segment whose newest record is older than
/// retention.ms, rolling the active segment when it expired too.
#[test]
fn time_retention_rolls_and_deletes_an_expired_log() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let mut s = settings(2000);
        s.retention_ms = 3_600_000;
        let log = Log::open(dir.path(), s).await.unwrap();
        for tag in 0..30 {
            append_durably(&log, batch_of(tag, 1, 100)).await; // timestamps ~1970
        }
        let end = log.offsets().log_end;
        log.enforce_retention(log.now_ms()).await.unwrap();
        assert_eq!(log.offsets().log_start, end, "everything expired");
        assert_eq!(
            log_files(dir.path()).len(),
            1,
            "only the new, empty active segment"
        );
        let a = append_durably(&log, batch_of(99, 1, 10)).await;
        assert_eq!(a.base_offset, end);
        assert_eq!(read_all(&log, end).await.len(), 1);
        log.close().await.unwrap();
    });
}

/// Issue 10: DeleteRecords moves the log start inside a segment (persisted), deletes the
/// segments wholly below it, and refuses offsets past the high watermark.
#[test]
fn delete_records_moves_the_start_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(2000)).await.unwrap();
        for tag in 0..40 {
            append_durably(&log, batch_of(tag, 1, 100)).await;
        }
        assert!(matches!(
            log.delete_records_before(41).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        let before = log_files(dir.path()).len();
        assert_eq!(log.delete_records_before(25).await.unwrap(), 25);
        assert!(log_files(dir.path()).len() < before);
        assert_eq!(
            log.delete_records_before(3).await.unwrap(),
            25,
            "never moves back"
        );
        assert!(matches!(
            log.read(24, 100).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(read_all(&log, 25).await[0].0, 25);
        log.close().await.unwrap();
        let log = Log::open(dir.path(), settings(2000)).await.unwrap();
        assert_eq!(log.offsets().log_start, 25);
        assert_eq!(log.delete_records_before(-1).await.unwrap(), 40);
        log.close().await.unwrap();
    });
}

/// Issue 10: segment.ms rolls the active segment at the next append once it is old enough.
#[test]
fn segment_ms_rolls_an_old_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let mut s = settings(1 << 30);
        s.segment_ms = 1;
        let log = Log::open(dir.path(), s).await.unwrap();
        append_durably(&log, batch_of(1, 1, 10)).await;
        runtime::sleep(std::time::Duration::from_millis(5)).await;
        append_durably(&log, batch_of(2, 1, 10)).await;
        assert_eq!(log_files(dir.path()).len(), 2);
        log.close().await.unwrap();
    });
}

/// Issue 10: with message.timestamp.type=LogAppendTime a stored batch carries the broker's
/// append time and the LogAppendTime attribute, with a valid CRC.
#[test]
fn log_append_time_stamps_stored_batches() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let mut s = settings(1 << 30);
        s.timestamp_type = crate::config::TimestampType::LogAppendTime;
        let log = Log::open(dir.path(), s).await.unwrap();
        let before = SystemClock.now_ms();
        append_durably(&log, batch_of(1, 2, 10)).await;
        let bytes = log.read(0, 1000).await.unwrap().to_bytes();
        let (h, _) = batch::validate(&bytes).expect("valid CRC");
        assert_eq!(h.attributes.get() & 0x08, 0x08);
        assert!(h.max_timestamp.get() >= before, "{}", h.max_timestamp.get());
        log.close().await.unwrap();
    });
}

#[test]
fn appends_within_the_group_commit_window_share_one_fdatasync() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let settings = LogSettings {
            group_commit_window: std::time::Duration::from_millis(500),
            ..settings(1 << 20)
        };
        let log = Log::open(dir.path(), settings).await.unwrap();
        let syncs = || {
            crate::metrics::local()
                .snapshot(0, None)
                .stages
                .iter()
                .find(|(s, _)| *s == crate::metrics::Stage::Fsync)
                .map_or(0, |(_, h)| h.count())
        };
        let before = syncs();
        let first = log.append(batch_of(1, 1, 10), 0).unwrap();
        // Without a window the flusher writes and syncs `first` during this pause.
        runtime::sleep(std::time::Duration::from_millis(5)).await;
        let second = log.append(batch_of(2, 1, 10), 0).unwrap();
        log.wait_durable(second.last_offset).await.unwrap();
        log.wait_durable(first.last_offset).await.unwrap();
        assert_eq!(syncs() - before, 1, "both appends share one fdatasync");
        log.close().await.unwrap();
    });
}

/// Every byte the log serves from `from`, batch after batch.
async fn read_bytes(log: &Log, from: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let bytes = log.read(next, 1 << 16).await.expect("read").to_bytes();
        let Some(end) = batch::BatchIter::new(&bytes)
            .map_while(Result::ok)
            .last()
            .map(|(h, _, _)| h.last_offset() + 1)
        else {
            return out;
        };
        out.extend_from_slice(&bytes);
        next = end;
    }
}

/// `n` batches appended by a leader in `epoch`, as a follower fetches them.
async fn leader_batches(dir: &Path, epoch: i32, tags: std::ops::Range<u32>) -> Vec<Bytes> {
    let leader = Log::open(dir, settings(1 << 20)).await.unwrap();
    for tag in tags {
        let a = leader.append(batch_of(tag, 2, 40), epoch).unwrap();
        leader.wait_durable(a.last_offset).await.unwrap();
    }
    let all = read_bytes(&leader, 0).await;
    leader.close().await.unwrap();
    let all = Bytes::from(all);
    batch::BatchIter::new(&all)
        .map(|b| b.unwrap())
        .map(|(_, start, len)| all.slice(start..start + len))
        .collect()
}

#[test]
fn replicated_batches_keep_their_offsets_and_bytes() {
    let (leader_dir, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    runtime::block_on(async {
        let fetched = leader_batches(leader_dir.path(), 4, 0..30).await;
        let log = Log::open(dir.path(), settings(2048)).await.unwrap();
        let mut last = -1;
        for b in &fetched {
            last = log.append_replicated(b.clone()).unwrap().last_offset;
        }
        log.wait_durable(last).await.unwrap();
        let expected: Vec<u8> = fetched.iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(read_bytes(&log, 0).await, expected);
        // Not at the log end: refused, nothing stored.
        let err = log.append_replicated(fetched[3].clone()).unwrap_err();
        assert!(matches!(
            err,
            LogError::OffsetOutOfRange {
                offset: 6,
                end: 60,
                ..
            }
        ));
        log.close().await.unwrap();
        let log = Log::open(dir.path(), settings(2048)).await.unwrap();
        assert_eq!(read_bytes(&log, 0).await, expected, "after reopen");
        let h = *batch::header(&read_bytes(&log, 58).await).unwrap();
        assert_eq!(
            h.partition_leader_epoch.get(),
            4,
            "the leader's epoch is kept"
        );
    });
}

#[test]
fn truncation_across_segments_then_a_divergent_tail_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(1024)).await.unwrap();
        for tag in 0..40 {
            append_durably(&log, batch_of(tag, 2, 40)).await;
        }
        let segments_before = segment::list_segments(dir.path()).unwrap().len();
        assert!(segments_before > 4, "{segments_before} segments");
        // Offset 21 is inside batch 10 ([20, 21]): that batch goes whole.
        assert_eq!(log.truncate_to(21).await.unwrap(), 20);
        assert_eq!(log.offsets().log_end, 20);
        assert!(log.offsets().high_watermark <= 20);
        let kept: Vec<u32> = read_all(&log, 0).await.iter().map(|b| b.2).collect();
        assert_eq!(kept, (0..10).collect::<Vec<_>>());
        assert!(segment::list_segments(dir.path()).unwrap().len() < segments_before);
        // A divergent tail goes where the old one was, across new rolls.
        for tag in 100..110 {
            let a = append_durably(&log, batch_of(tag, 2, 40)).await;
            assert_eq!(a.base_offset, 20 + 2 * (tag as i64 - 100));
        }
        let expect: Vec<u32> = (0..10).chain(100..110).collect();
        let tags = |v: Vec<(i64, i32, u32)>| v.iter().map(|b| b.2).collect::<Vec<_>>();
        assert_eq!(tags(read_all(&log, 0).await), expect);
        assert_eq!(
            log.truncate_to(1000).await.unwrap(),
            40,
            "past the end: no change"
        );
        log.close().await.unwrap();
        let log = Log::open(dir.path(), settings(1024)).await.unwrap();
        assert_eq!(
            tags(read_all(&log, 0).await),
            expect,
            "after a clean reopen"
        );
        // Truncate, then crash without a clean shutdown: recovery keeps the cut.
        assert_eq!(log.truncate_to(30).await.unwrap(), 30);
        append_durably(&log, batch_of(200, 2, 40)).await;
        log.close().await.unwrap();
        forget_clean_shutdown(dir.path());
        let log = Log::open(dir.path(), settings(1024)).await.unwrap();
        let expect: Vec<u32> = (0..10).chain(100..105).chain([200]).collect();
        assert_eq!(tags(read_all(&log, 0).await), expect, "after a crash");
        assert_eq!(log.offsets().log_end, 32);
    });
}

#[test]
fn truncation_to_a_segment_base_and_below_the_start() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(1024)).await.unwrap();
        for tag in 0..20 {
            append_durably(&log, batch_of(tag, 1, 100)).await;
        }
        let bases = segment::list_segments(dir.path()).unwrap();
        let cut = bases[2];
        assert_eq!(log.truncate_to(cut).await.unwrap(), cut);
        assert_eq!(
            *segment::list_segments(dir.path()).unwrap().last().unwrap(),
            cut
        );
        assert_eq!(log.read(cut, 100).await.unwrap().len(), 0);
        let a = append_durably(&log, batch_of(77, 1, 100)).await;
        assert_eq!(a.base_offset, cut);
        assert_eq!(read_all(&log, cut).await, vec![(cut, 1, 77)]);
        log.delete_records_before(3).await.unwrap();
        let err = log.truncate_to(2).await.unwrap_err();
        assert!(matches!(err, LogError::OffsetOutOfRange { .. }), "{err}");
        log.close().await.unwrap();
    });
}

#[test]
fn a_crash_midway_through_truncation_leaves_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(1024)).await.unwrap();
        for tag in 0..30 {
            append_durably(&log, batch_of(tag, 1, 100)).await;
        }
        log.close().await.unwrap();
    });
    // What a crash after the newest segment went, before the rest, leaves.
    let bases = segment::list_segments(dir.path()).unwrap();
    for p in segment::files_of(dir.path(), *bases.last().unwrap()) {
        let _ = std::fs::remove_file(p);
    }
    std::fs::remove_file(dir.path().join("clean-shutdown")).unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(1024)).await.unwrap();
        let end = log.offsets().log_end;
        assert_eq!(end, bases[bases.len() - 1]);
        let got: Vec<u32> = read_all(&log, 0).await.iter().map(|b| b.2).collect();
        assert_eq!(got, (0..end as u32).collect::<Vec<_>>());
        assert_eq!(log.truncate_to(5).await.unwrap(), 5);
        log.close().await.unwrap();
    });
}

#[test]
fn restart_empties_the_log_and_starts_it_at_the_leaders_start() {
    let (leader_dir, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    runtime::block_on(async {
        let fetched = leader_batches(leader_dir.path(), 2, 0..40).await;
        let log = Log::open(dir.path(), settings(1024)).await.unwrap();
        let mut last = -1;
        for b in &fetched[..5] {
            last = log.append_replicated(b.clone()).unwrap().last_offset;
        }
        log.wait_durable(last).await.unwrap();
        assert!(matches!(
            log.restart_at(10).await.unwrap_err(),
            LogError::OffsetOutOfRange { .. }
        ));
        // The leader's log starts at 60 (batch 30): nothing here is worth keeping.
        log.restart_at(60).await.unwrap();
        let o = log.offsets();
        assert_eq!((o.log_start, o.log_end), (60, 60));
        assert_eq!(segment::list_segments(dir.path()).unwrap(), vec![60]);
        assert_eq!(log.read(60, 1000).await.unwrap().len(), 0);
        for b in &fetched[30..] {
            last = log.append_replicated(b.clone()).unwrap().last_offset;
        }
        log.wait_durable(last).await.unwrap();
        let expected: Vec<u8> = fetched[30..].iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(read_bytes(&log, 60).await, expected);
        log.close().await.unwrap();
        let log = Log::open(dir.path(), settings(1024)).await.unwrap();
        let o = log.offsets();
        assert_eq!((o.log_start, o.log_end), (60, 80), "after a clean reopen");
        assert_eq!(read_bytes(&log, 60).await, expected);
        log.close().await.unwrap();
        forget_clean_shutdown(dir.path());
        let log = Log::open(dir.path(), settings(1024)).await.unwrap();
        assert_eq!(log.offsets().log_end, 80, "after a crash");
        assert_eq!(read_bytes(&log, 60).await, expected);
        log.close().await.unwrap();
    });
}

#[test]
fn a_crash_after_the_restarts_first_step_recovers_a_log_ending_at_the_new_start() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(1024)).await.unwrap();
        for tag in 0..10 {
            append_durably(&log, batch_of(tag, 1, 100)).await;
        }
        log.close().await.unwrap();
    });
    // The new empty segment is on disk; the old ones and the log start are not yet changed.
    std::fs::File::create(segment::log_path(dir.path(), 500)).unwrap();
    std::fs::remove_file(dir.path().join("clean-shutdown")).unwrap();
    runtime::block_on(async {
        let log = Log::open(dir.path(), settings(1024)).await.unwrap();
        assert_eq!(log.offsets().log_end, 500);
        let a = append_durably(&log, batch_of(77, 1, 100)).await;
        assert_eq!(a.base_offset, 500);
        // The restart, run again, finishes the job.
        log.restart_at(600).await.unwrap();
        assert_eq!(segment::list_segments(dir.path()).unwrap(), vec![600]);
        log.close().await.unwrap();
    });
}
