//! Replication on one partition: acks=all waits for the in-sync followers, consumers see
//! only the high watermark, a follower appends its leader's batches as they are.

use super::isr::ReplicaLayout;
use super::*;
use crate::runtime;

async fn open(dir: &Path, min_insync: i32) -> Rc<Partition> {
    let settings = LogSettings {
        min_insync_replicas: min_insync,
        ..LogSettings::default()
    };
    Partition::open(
        dir,
        TopicPartition::new("t", 0),
        [1; 16],
        0,
        settings,
        1 << 20,
    )
    .await
    .expect("open")
}

fn records(n: usize) -> Bytes {
    let recs: Vec<batch::SimpleRecord> = (0..n).map(|_| (None, Some(&b"v"[..]))).collect();
    Bytes::from(batch::build_batch(0, 1_000, &recs))
}

fn leading(isr: &[i32], partition_epoch: i32) -> RoleChange {
    RoleChange::Leader(ReplicaLayout {
        local: 1,
        leader_epoch: 3,
        partition_epoch,
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
    })
}

#[test]
fn acks_all_is_answered_once_every_in_sync_follower_has_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let p = open(dir.path(), 2).await;
        p.set_role(leading(&[1, 2, 3], 0));
        let a = p.append(&records(4), Origin::Client, 0).unwrap().appended;
        let acked = runtime::spawn({
            let p = p.clone();
            async move { p.wait_acked(a, -1).await }
        });
        p.log.wait_durable(a.last_offset).await.unwrap();
        // Consumers see nothing yet; a follower reads up to the durable end.
        assert!(p
            .read(0, 1 << 20, Isolation::ReadUncommitted)
            .await
            .records
            .is_empty());
        let r = p.read_for_follower(2, 0, 1 << 20).await;
        assert!(!r.records.is_empty());
        assert_eq!(r.high_watermark, 0);
        p.on_follower_fetch(2, 4).unwrap();
        assert_eq!(p.high_watermark(), 0, "follower 3 has nothing yet");
        p.on_follower_fetch(3, 4).unwrap();
        assert_eq!(p.high_watermark(), 4);
        acked.await.unwrap();
        assert!(!p
            .read(0, 1 << 20, Isolation::ReadUncommitted)
            .await
            .records
            .is_empty());
        p.close().await.unwrap();
    });
}

#[test]
fn acks_all_fails_after_the_append_when_the_isr_shrinks_below_the_minimum() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let p = open(dir.path(), 2).await;
        p.set_role(leading(&[1, 2], 0));
        let a = p.append(&records(1), Origin::Client, 0).unwrap().appended;
        let acked = runtime::spawn({
            let p = p.clone();
            async move { p.wait_acked(a, -1).await }
        });
        p.log.wait_durable(a.last_offset).await.unwrap();
        p.set_role(leading(&[1], 1));
        let e = acked.await.unwrap_err();
        assert_eq!(e.code, KafkaCode::NotEnoughReplicasAfterAppend);
        // Before appending, the small ISR refuses acks=all but not acks=1.
        assert_eq!(
            p.check_in_sync(-1).unwrap_err().code,
            KafkaCode::NotEnoughReplicas
        );
        assert!(p.check_in_sync(1).is_ok());
        p.close().await.unwrap();
    });
}

#[test]
fn a_replica_that_stops_leading_refuses_produces_and_answers_waiting_acks() {
    let dir = tempfile::tempdir().unwrap();
    runtime::block_on(async {
        let p = open(dir.path(), 1).await;
        p.set_role(leading(&[1, 2], 0));
        let a = p.append(&records(1), Origin::Client, 0).unwrap().appended;
        let acked = runtime::spawn({
            let p = p.clone();
            async move { p.wait_acked(a, -1).await }
        });
        p.log.wait_durable(a.last_offset).await.unwrap();
        p.set_role(RoleChange::Follower {
            leader: 2,
            leader_epoch: 4,
        });
        assert_eq!(
            acked.await.unwrap_err().code,
            KafkaCode::NotLeaderOrFollower
        );
        let refused = p.append(&records(1), Origin::Client, 0).unwrap_err();
        assert_eq!(refused.code, KafkaCode::NotLeaderOrFollower);
        let read = p.read(0, 1 << 20, Isolation::ReadUncommitted).await;
        assert_eq!(read.error.unwrap().code, KafkaCode::NotLeaderOrFollower);
        p.close().await.unwrap();
    });
}

#[test]
fn a_follower_keeps_its_leaders_offsets_and_epochs_and_bounds_its_hw() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    runtime::block_on(async {
        let leader = open(leader_dir.path(), 1).await;
        leader.set_role(leading(&[1, 2], 0));
        for n in [2, 3] {
            let a = leader
                .append(&records(n), Origin::Client, 0)
                .unwrap()
                .appended;
            leader.log.wait_durable(a.last_offset).await.unwrap();
        }
        let follower = open(follower_dir.path(), 1).await;
        follower.set_role(RoleChange::Follower {
            leader: 1,
            leader_epoch: 3,
        });
        let fetched = leader.read_for_follower(2, 0, 1 << 20).await;
        let last = follower
            .append_replicated(fetched.records.to_bytes())
            .unwrap();
        assert_eq!(last.last_offset, 4);
        follower.log.wait_durable(last.last_offset).await.unwrap();
        follower.set_follower_high_watermark(100);
        assert_eq!(follower.high_watermark(), 5, "bounded by its own end");
        let mine = follower.log.read(0, 1 << 20).await.unwrap().to_bytes();
        assert_eq!(mine, fetched.records.to_bytes(), "byte for byte");
        let epochs: Vec<i32> = batch::BatchIter::new(&mine)
            .map(|b| b.unwrap().0.partition_leader_epoch.get())
            .collect();
        assert_eq!(epochs, vec![3, 3]);
        // The same batches again do not continue the log: refused, nothing appended twice.
        assert_eq!(
            follower
                .append_replicated(fetched.records.to_bytes())
                .unwrap_err()
                .code,
            KafkaCode::OffsetOutOfRange
        );
        assert_eq!(follower.log_end_offset(), 5);
        leader.close().await.unwrap();
        follower.close().await.unwrap();
    });
}
