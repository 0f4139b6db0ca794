use super::*;
use crate::controller::alter::{alter_partition, AlterIsr};
use crate::controller::testkit::{cluster, part, with_topic};

fn setup() -> ClusterSnapshot {
    let mut s = cluster(&[1, 2, 3, 4]);
    with_topic(&mut s, "t", &[&[1, 2, 3]], &[]);
    s
}

/// The leader's AlterPartition putting `isr` in place.
fn leader_sets_isr(s: &mut ClusterSnapshot, isr: &[i32]) {
    let p = part(s, "t", 0);
    let req = AlterIsr {
        broker_id: p.leader,
        broker_epoch: 1,
        topic: "t".into(),
        partition: 0,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        new_isr: isr.to_vec(),
    };
    if let Some(r) = alter_partition(s, &req, |_| false).unwrap() {
        s.apply(&r);
    }
}

#[test]
fn reassignment_adds_then_completes_when_the_new_replica_is_in_sync() {
    let mut s = setup();
    let r = start(&s, "t", 0, &[2, 3, 4]).unwrap().unwrap();
    s.apply(&r);
    let p = part(&s, "t", 0);
    assert_eq!(p.replicas, vec![2, 3, 4, 1]);
    assert_eq!((&p.adding, &p.removing), (&vec![4], &vec![1]));
    assert_eq!(
        (p.leader, p.leader_epoch),
        (1, 0),
        "adding a replica keeps the leader epoch"
    );
    assert_eq!(list(&s).len(), 1);
    // broker 4 catches up: the leader's ISR expansion completes the move
    leader_sets_isr(&mut s, &[1, 2, 3, 4]);
    let p = part(&s, "t", 0);
    assert_eq!(p.replicas, vec![2, 3, 4]);
    assert_eq!(p.isr, vec![2, 3, 4]);
    assert_eq!(
        p.leader, 2,
        "the old leader left: the first target replica in sync leads"
    );
    assert!(p.adding.is_empty() && p.removing.is_empty());
    assert!(p.leader_epoch > 0);
    assert!(list(&s).is_empty());
}

#[test]
fn cancelling_goes_back_to_the_original_replicas() {
    let mut s = setup();
    let r = start(&s, "t", 0, &[4, 2, 3]).unwrap().unwrap();
    s.apply(&r);
    let r = cancel(&s, "t", 0).unwrap();
    s.apply(&r);
    let p = part(&s, "t", 0);
    // as in Kafka, the original replicas come back in their order during the move
    assert_eq!(
        (&p.replicas, &p.isr, p.leader),
        (&vec![2, 3, 1], &vec![1, 2, 3], 1)
    );
    assert!(p.adding.is_empty() && p.removing.is_empty());
    assert_eq!(
        cancel(&s, "t", 0).unwrap_err().code,
        KafkaCode::NoReassignmentInProgress
    );
}

#[test]
fn shrinking_to_in_sync_replicas_completes_at_once() {
    let mut s = setup();
    let r = start(&s, "t", 0, &[3, 2]).unwrap().unwrap();
    s.apply(&r);
    let p = part(&s, "t", 0);
    assert_eq!(
        (&p.replicas, &p.isr, p.leader),
        (&vec![3, 2], &vec![2, 3], 3)
    );
    assert!(p.adding.is_empty() && p.removing.is_empty());
}

#[test]
fn a_new_target_replaces_the_one_in_progress() {
    let mut s = setup();
    let r = start(&s, "t", 0, &[1, 2, 4]).unwrap().unwrap();
    s.apply(&r);
    let r = start(&s, "t", 0, &[1, 2, 3]).unwrap().unwrap();
    s.apply(&r);
    let p = part(&s, "t", 0);
    assert_eq!(p.replicas, vec![1, 2, 3]);
    assert!(p.adding.is_empty() && p.removing.is_empty());
}

#[test]
fn bad_targets_are_refused() {
    let s = setup();
    for target in [vec![], vec![1, 1], vec![1, 9]] {
        let err = start(&s, "t", 0, &target).unwrap_err();
        assert_eq!(err.code, KafkaCode::InvalidReplicaAssignment, "{target:?}");
    }
    assert_eq!(
        start(&s, "t", 5, &[1]).unwrap_err().code,
        KafkaCode::UnknownTopicOrPartition
    );
    assert_eq!(start(&s, "t", 0, &[1, 2, 3]), Ok(None), "already there");
}

#[test]
fn new_replicas_go_to_the_least_loaded_shard_of_their_broker() {
    let mut s = setup();
    with_topic(&mut s, "u", &[&[4]], &[]);
    let r = start(&s, "t", 0, &[1, 2, 3, 4]).unwrap().unwrap();
    s.apply(&r);
    let p = part(&s, "t", 0);
    assert_eq!(p.shard_on(4), Some(1), "broker 4's shard 0 holds u-0");
}

#[test]
fn replacing_a_move_whose_only_in_sync_replica_it_drops_is_refused() {
    use crate::controller::change::{Bump, Next};
    let mut s = setup();
    let r = start(&s, "t", 0, &[2, 3, 4]).unwrap().unwrap();
    s.apply(&r);
    // only the replica being added is in sync (an unclean election made it leader)
    let mut next = Next::of(part(&s, "t", 0));
    next.isr = vec![4];
    next.leader = 4;
    s.apply(&next.record("t", part(&s, "t", 0), Bump::LeaderAndPartition));
    let err = start(&s, "t", 0, &[1, 2, 3]).unwrap_err();
    assert_eq!(err.code, KafkaCode::InvalidReplicaAssignment);
    // a target keeping it is fine
    let r = start(&s, "t", 0, &[4, 1, 2]).unwrap().unwrap();
    s.apply(&r);
    assert_eq!(part(&s, "t", 0).isr, vec![4]);
}
