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
    p.wait_acked(a.appended, 1).await?;
    Ok(a)
}

/// `(base offset, record count, is control)` of every batch a read returns from 0.
async fn batches(p: &Partition, isolation: Isolation) -> (Vec<(i64, i32, bool)>, ReadResult) {
    let r = p.read(0, 1 << 20, isolation).await;
    let list = batch::BatchIter::new(&r.records.to_bytes())
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

/// Everything a replica reads from `from` (past the high watermark), as one buffer.
async fn replica_bytes(p: &Partition, from: i64) -> Bytes {
    p.read_for_replica(from, 1 << 20).await.records.to_bytes()
}

/// A leader in `epoch` with a plain batch, an aborted transaction and an open one.
async fn leader_with_transactions(dir: &Path, epoch: i32) -> Rc<Partition> {
    let p = open(dir).await;
    p.set_leader_epoch(epoch);
    append_durably(&p, produced(-1, -1, -1, 2, false))
        .await
        .unwrap(); // 0-1
    append_durably(&p, produced(5, 0, 0, 2, true))
        .await
        .unwrap(); // 2-3
    let m = p.write_marker(5, 0, 0, ControlType::Abort, 0).unwrap(); // 4
    p.wait_acked(m, -1).await.unwrap();
    append_durably(&p, produced(6, 0, 0, 3, true))
        .await
        .unwrap(); // 5-7, open
    p
}

#[test]
fn leader_appends_carry_the_leader_epoch_and_the_cache_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let p = open(dir.path()).await;
        p.set_leader_epoch(3);
        append_durably(&p, produced(-1, -1, -1, 2, false))
            .await
            .unwrap(); // 0-1
        p.set_leader_epoch(5);
        append_durably(&p, produced(-1, -1, -1, 1, false))
            .await
            .unwrap(); // 2
        let epochs: Vec<i32> = batch::BatchIter::new(&replica_bytes(&p, 0).await)
            .map(|b| b.unwrap().0.partition_leader_epoch.get())
            .collect();
        assert_eq!(epochs, vec![3, 5]);
        assert_eq!(p.epoch_entries(), vec![(3, 0), (5, 2)]);
        assert_eq!(p.end_offset_for_epoch(3), (3, 2));
        assert_eq!(p.end_offset_for_epoch(4), (3, 2));
        assert_eq!(p.end_offset_for_epoch(5), (5, 3));
        assert_eq!(p.end_offset_for_epoch(9), (-1, -1));
        p.close().await.unwrap();
        let text = std::fs::read_to_string(dir.path().join("leader-epoch-checkpoint")).unwrap();
        assert_eq!(text, "0\n2\n3 0\n5 2\n");

        let p = open(dir.path()).await;
        assert_eq!(p.epoch_entries(), vec![(3, 0), (5, 2)], "after reopen");
        p.close().await.unwrap();
        // A lost checkpoint is rebuilt from the log.
        std::fs::remove_file(dir.path().join("leader-epoch-checkpoint")).unwrap();
        let p = open(dir.path()).await;
        assert_eq!(p.epoch_entries(), vec![(3, 0), (5, 2)], "rebuilt");
        assert!(dir.path().join("leader-epoch-checkpoint").exists());
        p.close().await.unwrap();
    });
}

#[test]
fn follower_append_stores_identical_bytes_and_the_leaders_transaction_state() {
    let (leader_dir, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    runtime::block_on(async {
        let leader = leader_with_transactions(leader_dir.path(), 7).await;
        let fetched = replica_bytes(&leader, 0).await;
        let f = open(dir.path()).await;
        f.set_leader_epoch(7);
        let a = f.append_replicated(fetched.clone()).unwrap();
        assert_eq!((a.base_offset, a.last_offset), (0, 7));
        f.wait_acked(a, 1).await.unwrap();
        assert_eq!(replica_bytes(&f, 0).await, fetched, "byte for byte");
        assert_eq!(f.epoch_entries(), vec![(7, 0)]);
        // Producer state as on the leader: the open transaction holds the LSO, the aborted
        // one is listed, and idempotence knows the producers.
        assert_eq!(f.last_stable_offset(), 5);
        let r = f.read(0, 1 << 20, Isolation::ReadCommitted).await;
        assert_eq!(
            r.aborted.unwrap(),
            leader
                .read(0, 1 << 20, Isolation::ReadCommitted)
                .await
                .aborted
                .unwrap()
        );
        let mut pids: Vec<i64> = f.producers().iter().map(|v| v.producer_id).collect();
        pids.sort_unstable();
        assert_eq!(pids, vec![5, 6]);
        // A fetch that does not continue at the log end, or a corrupt one, stores nothing.
        let again = f.append_replicated(fetched.clone()).unwrap_err();
        assert_eq!(again.code, KafkaCode::OffsetOutOfRange);
        assert_eq!(f.log_end_offset(), 8);
        leader.close().await.unwrap();
        f.close().await.unwrap();
        // The follower's state survives its restart.
        let f = open(dir.path()).await;
        assert_eq!(f.last_stable_offset(), 5);
        assert_eq!(f.epoch_entries(), vec![(7, 0)]);
        f.close().await.unwrap();
    });
}

#[test]
fn corrupt_replicated_batches_are_refused_whole() {
    let (leader_dir, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    runtime::block_on(async {
        let leader = leader_with_transactions(leader_dir.path(), 1).await;
        let fetched = replica_bytes(&leader, 0).await;
        leader.close().await.unwrap();
        let f = open(dir.path()).await;
        let mut bad = fetched.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff; // inside the last batch's CRC range
        let err = f.append_replicated(Bytes::from(bad)).unwrap_err();
        assert_eq!(err.code, KafkaCode::CorruptMessage);
        assert_eq!(f.log_end_offset(), 0, "nothing appended");
        f.close().await.unwrap();
    });
}

#[test]
fn truncation_then_a_divergent_tail_rebuilds_epochs_and_producer_state() {
    let (leader_dir, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    runtime::block_on(async {
        let leader = leader_with_transactions(leader_dir.path(), 2).await;
        let fetched = replica_bytes(&leader, 0).await;
        leader.close().await.unwrap();
        // The old leader (epoch 2) has everything; then it appended alone in epoch 3.
        let f = open(dir.path()).await;
        f.append_replicated(fetched).unwrap();
        f.set_leader_epoch(3);
        append_durably(&f, produced(8, 0, 0, 2, false))
            .await
            .unwrap(); // 8-9, epoch 3
        assert_eq!(f.epoch_entries(), vec![(2, 0), (3, 8)]);
        // The new leader's epoch 2 ended at 4 (it never had offsets 4..): cut there.
        assert_eq!(f.truncate_to(4).await.unwrap(), 4);
        assert_eq!(f.log_end_offset(), 4);
        assert_eq!(f.epoch_entries(), vec![(2, 0)]);
        assert_eq!(f.end_offset_for_epoch(2), (2, 4));
        // Producer 5's transaction lost its abort marker: it is open again; 6 and 8 are gone.
        assert_eq!(f.last_stable_offset(), 2);
        let pids: Vec<i64> = f.producers().iter().map(|v| v.producer_id).collect();
        assert_eq!(pids, vec![5]);
        assert!(f
            .read(0, 1 << 20, Isolation::ReadCommitted)
            .await
            .aborted
            .unwrap()
            .is_empty());
        // The new leader's tail (epoch 4) follows.
        let new_leader_dir = tempfile::tempdir().unwrap();
        let nl = open(new_leader_dir.path()).await;
        nl.set_leader_epoch(2);
        for _ in 0..2 {
            append_durably(&nl, produced(-1, -1, -1, 2, false))
                .await
                .unwrap(); // 0-3
        }
        nl.set_leader_epoch(4);
        append_durably(&nl, produced(9, 0, 0, 3, false))
            .await
            .unwrap(); // 4-6
        let tail = replica_bytes(&nl, 4).await;
        let a = f.append_replicated(tail.clone()).unwrap();
        f.wait_acked(a, 1).await.unwrap();
        assert_eq!(f.epoch_entries(), vec![(2, 0), (4, 4)]);
        assert_eq!(replica_bytes(&f, 4).await, tail);
        nl.close().await.unwrap();
        f.close().await.unwrap();
        let f = open(dir.path()).await;
        assert_eq!(f.epoch_entries(), vec![(2, 0), (4, 4)], "after reopen");
        assert_eq!(f.log_end_offset(), 7);
        let mut pids: Vec<i64> = f.producers().iter().map(|v| v.producer_id).collect();
        pids.sort_unstable();
        assert_eq!(pids, vec![5, 9]);
        f.close().await.unwrap();
    });
}

#[test]
fn a_replicated_partition_serves_up_to_the_high_watermark_it_is_told() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let p = open(dir.path()).await;
        append_durably(&p, produced(-1, -1, -1, 2, false))
            .await
            .unwrap(); // 0-1
        assert_eq!(p.high_watermark(), 2, "single replica: the durable end");
        p.set_replicated(true);
        assert_eq!(p.high_watermark(), 2, "what was exposed stays exposed");
        append_durably(&p, produced(-1, -1, -1, 3, false))
            .await
            .unwrap(); // 2-4
        assert_eq!(p.offsets().high_watermark, 2);
        let (seen, r) = batches(&p, Isolation::ReadUncommitted).await;
        assert_eq!((seen.len(), r.high_watermark), (1, 2));
        assert_eq!(
            p.read_for_replica(0, 1 << 20).await.records.len(),
            replica_bytes(&p, 0).await.len()
        );
        assert_eq!(
            batch::BatchIter::new(&replica_bytes(&p, 0).await).count(),
            2,
            "followers see past it"
        );
        let waiting = p.data_arrival();
        p.set_high_watermark(5);
        assert!(waiting.await.is_ok(), "a long poll wakes when the HW moves");
        assert_eq!(p.high_watermark(), 5);
        p.set_high_watermark(3);
        assert_eq!(p.high_watermark(), 5, "monotonic");
        p.set_high_watermark(50);
        assert_eq!(p.high_watermark(), 5, "capped by the durable end");
        append_durably(&p, produced(-1, -1, -1, 1, false))
            .await
            .unwrap(); // 5
        assert_eq!(p.high_watermark(), 6);
        assert_eq!(p.truncate_to(2).await.unwrap(), 2);
        assert_eq!(p.high_watermark(), 2, "capped at the truncation");
        p.set_replicated(false);
        assert_eq!(p.high_watermark(), 2);
        p.close().await.unwrap();
    });
}
