//! Partition tests: idempotent retries, transactions and read_committed, and producer state
//! across clean and unclean restarts.

use super::*;
use crate::config::CleanupPolicy;
use crate::runtime;

fn settings() -> LogSettings {
    LogSettings {
        segment_bytes: 4096,
        ..LogSettings::default()
    }
}

async fn open(dir: &Path) -> Rc<Partition> {
    Partition::open(
        dir,
        TopicPartition::new("t", 0),
        [1; 16],
        0,
        settings(),
        1 << 20,
    )
    .await
    .expect("open")
}

/// A batch of `n` records from producer `pid` starting at sequence `seq`.
fn produced(pid: i64, epoch: i16, seq: i32, n: usize, transactional: bool) -> Bytes {
    let value = format!("p{pid}-s{seq}");
    let recs: Vec<batch::SimpleRecord> = (0..n).map(|_| (None, Some(value.as_bytes()))).collect();
    let mut b = batch::build_batch(0, 1_000, &recs);
    batch::stamp_producer(&mut b, pid, epoch, seq, transactional);
    Bytes::from(b)
}

async fn append_durably(p: &Partition, records: Bytes) -> Result<ProduceAppend, KafkaError> {
    let a = p.append(&records, Origin::Client, 0)?;
    p.wait_acked(a.appended, -1).await?;
    Ok(a)
}

/// `(base offset, record count, is control)` of every batch a read returns from 0.
async fn batches(p: &Partition, isolation: Isolation) -> (Vec<(i64, i32, bool)>, ReadResult) {
    let r = p.read(0, 1 << 20, isolation).await;
    let list = batch::BatchIter::new(&r.records)
        .map(|b| b.expect("valid"))
        .map(|(h, _, _)| (h.base_offset.get(), h.record_count.get(), h.is_control()))
        .collect();
    (list, r)
}

#[test]
fn retried_batch_gets_its_original_offsets_and_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let p = open(dir.path()).await;
        let first = append_durably(&p, produced(7, 0, 0, 3, false))
            .await
            .unwrap();
        let retry = append_durably(&p, produced(7, 0, 0, 3, false))
            .await
            .unwrap();
        assert!(!first.duplicate && retry.duplicate);
        assert_eq!(retry.appended, first.appended);
        assert_eq!(p.offsets().log_end, 3);
        let next = append_durably(&p, produced(7, 0, 3, 2, false))
            .await
            .unwrap();
        assert_eq!(next.appended.base_offset, 3);
        p.close().await.unwrap();
    });
}

#[test]
fn out_of_order_and_fenced_batches_are_refused_without_appending() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let p = open(dir.path()).await;
        append_durably(&p, produced(7, 1, 0, 3, false))
            .await
            .unwrap();
        let gap = p
            .append(&produced(7, 1, 5, 1, false), Origin::Client, 0)
            .unwrap_err();
        assert_eq!(gap.code, KafkaCode::OutOfOrderSequenceNumber);
        let stale = p
            .append(&produced(7, 0, 3, 1, false), Origin::Client, 0)
            .unwrap_err();
        assert_eq!(stale.code, KafkaCode::InvalidProducerEpoch);
        let unknown = p
            .append(&produced(8, 0, 9, 1, false), Origin::Client, 0)
            .unwrap_err();
        assert_eq!(unknown.code, KafkaCode::UnknownProducerId);
        assert_eq!(p.offsets().log_end, 3);
        p.close().await.unwrap();
    });
}

#[test]
fn two_batches_for_one_partition_and_client_markers_are_invalid_record() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let p = open(dir.path()).await;
        let mut two = produced(-1, -1, -1, 1, false).to_vec();
        two.extend_from_slice(&produced(-1, -1, -1, 1, false));
        let err = p.append(&Bytes::from(two), Origin::Client, 0).unwrap_err();
        assert_eq!(err.code, KafkaCode::InvalidRecord);
        let marker = batch::build_marker(1, 0, 0, ControlType::Commit, 0);
        let err = p
            .append(&Bytes::from(marker), Origin::Client, 0)
            .unwrap_err();
        assert_eq!(err.code, KafkaCode::InvalidRecord);
        assert_eq!(p.offsets().log_end, 0);
        p.close().await.unwrap();
    });
}

#[test]
fn compacted_partition_refuses_a_batch_with_a_keyless_record_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let p = open(dir.path()).await;
        let keyless = produced(-1, -1, -1, 2, false);
        let keyed = Bytes::from(batch::build_batch(
            0,
            1_000,
            &[(Some(b"k1"), Some(b"v")), (Some(b"k2"), None)],
        ));
        let half_keyed = Bytes::from(batch::build_batch(
            0,
            1_000,
            &[(Some(b"k1"), Some(b"v")), (None, Some(b"v"))],
        ));
        for (compact, delete) in [(true, false), (true, true)] {
            p.update_settings(LogSettings {
                cleanup: CleanupPolicy { delete, compact },
                ..settings()
            });
            let before = p.offsets().log_end;
            for refused in [&keyless, &half_keyed] {
                let err = p.append(refused, Origin::Client, 0).unwrap_err();
                assert_eq!(err.code, KafkaCode::InvalidRecord);
                assert_eq!(
                    err.message,
                    "Compacted topic cannot accept message without key in topic partition t-0."
                );
            }
            assert_eq!(p.offsets().log_end, before, "a refused batch was stored");
            append_durably(&p, keyed.clone()).await.unwrap();
        }
        p.update_settings(settings());
        append_durably(&p, keyless).await.unwrap();
        assert_eq!(p.offsets().log_end, 6);
        p.close().await.unwrap();
    });
}

#[test]
fn read_committed_stops_at_open_transactions_and_lists_aborted_ones() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let p = open(dir.path()).await;
        append_durably(&p, produced(-1, -1, -1, 2, false))
            .await
            .unwrap(); // 0-1
        append_durably(&p, produced(5, 0, 0, 2, true))
            .await
            .unwrap(); // 2-3, open
        append_durably(&p, produced(-1, -1, -1, 1, false))
            .await
            .unwrap(); // 4
        assert_eq!(p.last_stable_offset(), 2);
        let (committed, r) = batches(&p, Isolation::ReadCommitted).await;
        assert_eq!(committed, vec![(0, 2, false)]);
        assert_eq!((r.last_stable_offset, r.high_watermark), (2, 5));
        let (uncommitted, _) = batches(&p, Isolation::ReadUncommitted).await;
        assert_eq!(uncommitted.len(), 3);

        let marker = p.write_marker(5, 0, 0, ControlType::Abort, 0).unwrap();
        p.wait_acked(marker, -1).await.unwrap();
        assert_eq!(p.last_stable_offset(), 6);
        let (all, r) = batches(&p, Isolation::ReadCommitted).await;
        assert_eq!(all.len(), 4);
        let aborted = r.aborted.unwrap();
        assert_eq!(
            aborted,
            vec![AbortedTxn {
                producer_id: 5,
                first_offset: 2,
                last_offset: 5
            }]
        );
        // A read past the aborted range lists nothing.
        assert!(p
            .read(6, 1 << 20, Isolation::ReadCommitted)
            .await
            .aborted
            .unwrap()
            .is_empty());
        p.close().await.unwrap();
    });
}

#[test]
fn producer_state_and_aborts_survive_clean_and_unclean_restarts() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let p = open(dir.path()).await;
        append_durably(&p, produced(7, 0, 0, 2, false))
            .await
            .unwrap();
        append_durably(&p, produced(9, 0, 0, 1, true))
            .await
            .unwrap();
        let m = p.write_marker(9, 0, 0, ControlType::Abort, 0).unwrap();
        p.wait_acked(m, -1).await.unwrap();
        append_durably(&p, produced(9, 0, 1, 1, true))
            .await
            .unwrap(); // open again
        p.close().await.unwrap();
        drop(p);

        // Clean restart: the snapshot written at close is loaded.
        let p = open(dir.path()).await;
        assert!(
            p.append(&produced(7, 0, 0, 2, false), Origin::Client, 0)
                .unwrap()
                .duplicate
        );
        assert_eq!(p.last_stable_offset(), 4);
        let r = p.read(0, 1 << 20, Isolation::ReadCommitted).await;
        assert_eq!(r.aborted.unwrap().len(), 1);
        append_durably(&p, produced(7, 0, 2, 1, false))
            .await
            .unwrap();
        // Unclean stop: no close, so no snapshot at the end; the tail is replayed.
        drop(p);

        let p = open(dir.path()).await;
        assert!(
            p.append(&produced(7, 0, 2, 1, false), Origin::Client, 0)
                .unwrap()
                .duplicate
        );
        assert_eq!(p.last_stable_offset(), 4);
        let r = p.read(0, 1 << 20, Isolation::ReadCommitted).await;
        assert_eq!(r.aborted.unwrap().len(), 1);
        p.close().await.unwrap();
    });
}

#[test]
fn snapshots_follow_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let p = open(dir.path()).await;
        for seq in 0..40 {
            append_durably(&p, produced(3, 0, seq * 4, 4, false))
                .await
                .unwrap();
        }
        p.snapshots_written().await;
        let snapshots = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".snapshot")
            })
            .count();
        assert!(snapshots >= 1, "no snapshot after several segment rolls");
        p.close().await.unwrap();
    });
}

#[test]
fn long_polls_that_time_out_leave_nothing_behind_on_an_idle_partition() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let p = open(dir.path()).await;
        let live = p.data_arrival();
        for _ in 0..10_000 {
            // A long poll that parks, then times out and drops its receiver.
            drop(p.data_arrival());
        }
        assert!(p.data_waiters() <= 2, "{} waiters", p.data_waiters());
        append_durably(&p, produced(-1, -1, -1, 1, false))
            .await
            .unwrap();
        assert_eq!(live.await, Ok(()), "the parked poll still hears the append");
    });
}
