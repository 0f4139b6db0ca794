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
        let bytes = log.read(next, 1000).await.expect("read");
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
        let path = active_segment_file(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let damaged_from = match crash {
            Crash::Truncate(cut) => { let n = bytes.len().saturating_sub(cut); bytes.truncate(n); n }
            Crash::Flip(at) => {
                if bytes.is_empty() { 0 } else {
                    let i = (bytes.len() - 1) * at as usize / 1000;
                    bytes[i] ^= 0x5a;
                    i
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
