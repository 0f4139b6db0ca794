use super::*;
use crate::controller::testkit::{apply_all, cluster, fence, part, with_topic};

fn setup() -> ClusterSnapshot {
    let mut s = cluster(&[1, 2, 3]);
    with_topic(&mut s, "t", &[&[1, 2, 3]], &[("min.insync.replicas", "2")]);
    s
}

fn shrink_to(isr: &[i32]) -> AlterIsr {
    AlterIsr {
        broker_id: 1,
        broker_epoch: 1,
        topic: "t".into(),
        partition: 0,
        leader_epoch: 0,
        partition_epoch: 0,
        new_isr: isr.to_vec(),
    }
}

fn nobody_shutting_down(_: i32) -> bool {
    false
}

#[test]
fn leader_shrinks_and_expands_its_isr_in_its_own_leader_epoch() {
    let mut s = setup();
    let r = alter_partition(&s, &shrink_to(&[1, 2]), nobody_shutting_down)
        .unwrap()
        .unwrap();
    s.apply(&r);
    let p = part(&s, "t", 0);
    assert_eq!(
        (&p.isr, p.leader, p.leader_epoch, p.partition_epoch),
        (&vec![1, 2], 1, 0, 1)
    );
    let expand = AlterIsr {
        partition_epoch: 1,
        ..shrink_to(&[1, 2, 3])
    };
    let r = alter_partition(&s, &expand, nobody_shutting_down)
        .unwrap()
        .unwrap();
    s.apply(&r);
    assert_eq!(part(&s, "t", 0).isr, vec![1, 2, 3]);
    assert_eq!(part(&s, "t", 0).partition_epoch, 2);
}

#[test]
fn an_unchanged_isr_commits_nothing() {
    let s = setup();
    assert_eq!(
        alter_partition(&s, &shrink_to(&[1, 2, 3]), nobody_shutting_down),
        Ok(None)
    );
}

#[test]
fn stale_epochs_are_refused_with_kafkas_codes() {
    let s = setup();
    let code = |req: AlterIsr| {
        alter_partition(&s, &req, nobody_shutting_down)
            .unwrap_err()
            .code
    };
    let base = shrink_to(&[1, 2]);
    assert_eq!(
        code(AlterIsr {
            broker_epoch: 0,
            ..base.clone()
        }),
        KafkaCode::StaleBrokerEpoch
    );
    assert_eq!(
        code(AlterIsr {
            leader_epoch: 1,
            ..base.clone()
        }),
        KafkaCode::FencedLeaderEpoch
    );
    assert_eq!(
        code(AlterIsr {
            partition_epoch: 3,
            ..base.clone()
        }),
        KafkaCode::InvalidUpdateVersion
    );
    assert_eq!(
        code(AlterIsr {
            broker_id: 2,
            ..base.clone()
        }),
        KafkaCode::InvalidRequest,
        "only the leader alters the ISR"
    );
    assert_eq!(
        code(AlterIsr {
            partition: 4,
            ..base
        }),
        KafkaCode::UnknownTopicOrPartition
    );
}

#[test]
fn the_isr_must_be_distinct_replicas_holding_the_leader() {
    let s = setup();
    for isr in [vec![2, 3], vec![1, 4], vec![1, 1, 2], vec![]] {
        let err = alter_partition(&s, &shrink_to(&isr), nobody_shutting_down).unwrap_err();
        assert_eq!(err.code, KafkaCode::InvalidRequest, "{isr:?}");
    }
}

#[test]
fn a_fenced_or_departing_replica_cannot_join_the_isr() {
    let mut s = setup();
    let r = alter_partition(&s, &shrink_to(&[1, 2]), nobody_shutting_down)
        .unwrap()
        .unwrap();
    s.apply(&r);
    let expand = AlterIsr {
        partition_epoch: 1,
        ..shrink_to(&[1, 2, 3])
    };
    let err = alter_partition(&s, &expand, |b| b == 3).unwrap_err();
    assert_eq!(err.code, KafkaCode::IneligibleReplica);
    fence(&mut s, 3);
    let err = alter_partition(&s, &expand, nobody_shutting_down).unwrap_err();
    assert_eq!(err.code, KafkaCode::IneligibleReplica);
    // removing a fenced replica is always allowed: 2 is fenced later, and still leaves
    fence(&mut s, 2);
    let shrink = AlterIsr {
        partition_epoch: 1,
        ..shrink_to(&[1])
    };
    let r = alter_partition(&s, &shrink, nobody_shutting_down).unwrap();
    apply_all(&mut s, &r.into_iter().collect::<Vec<_>>());
    assert_eq!(part(&s, "t", 0).isr, vec![1]);
}

#[test]
fn isr_below_min_insync_replicas_is_accepted_and_reported() {
    let mut s = setup();
    assert!(!under_min_isr(&s, "t", 0, 1));
    let r = alter_partition(&s, &shrink_to(&[1]), nobody_shutting_down)
        .unwrap()
        .unwrap();
    s.apply(&r);
    assert!(under_min_isr(&s, "t", 0, 1), "topic says 2, the ISR is 1");
}
