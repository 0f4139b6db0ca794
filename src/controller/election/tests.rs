use super::*;
use crate::controller::testkit::{apply_all, cluster, fence, part, unfence, with_topic};

fn three_replicas() -> ClusterSnapshot {
    let mut s = cluster(&[1, 2, 3]);
    with_topic(&mut s, "t", &[&[1, 2, 3], &[2, 3, 1]], &[]);
    s
}

#[test]
fn fenced_leader_is_replaced_by_the_next_in_sync_replica_in_order() {
    let mut s = three_replicas();
    fence(&mut s, 1);
    let records = on_fenced(&s, 1);
    assert_eq!(records.len(), 2, "p0 loses its leader, p1 a follower");
    apply_all(&mut s, &records);
    let p0 = part(&s, "t", 0);
    assert_eq!((p0.leader, &p0.isr), (2, &vec![2, 3]));
    assert_eq!((p0.leader_epoch, p0.partition_epoch), (1, 1));
    let p1 = part(&s, "t", 1);
    assert_eq!(
        (p1.leader, &p1.isr),
        (2, &vec![2, 3]),
        "a fenced follower leaves the ISR"
    );
    assert_eq!(
        (p1.leader_epoch, p1.partition_epoch),
        (0, 1),
        "the same leader keeps its epoch"
    );
}

#[test]
fn fencing_works_on_the_snapshot_before_the_fence_record_too() {
    let s = three_replicas();
    let mut after = s.clone();
    fence(&mut after, 1);
    assert_eq!(on_fenced(&s, 1), on_fenced(&after, 1));
}

#[test]
fn last_in_sync_replica_stays_in_the_isr_and_leads_again_when_back() {
    let mut s = cluster(&[1, 2]);
    with_topic(&mut s, "t", &[&[1, 2]], &[]);
    fence(&mut s, 2);
    let r = on_fenced(&s, 2);
    apply_all(&mut s, &r);
    fence(&mut s, 1);
    let r = on_fenced(&s, 1);
    apply_all(&mut s, &r);
    let p = part(&s, "t", 0);
    assert_eq!((p.leader, &p.isr), (NO_LEADER, &vec![1]));
    // broker 2 returns first: it is not in the ISR, so unclean election off keeps no leader
    assert!(on_unfenced(&s, 2).is_empty());
    unfence(&mut s, 2);
    // broker 1 returns: it has the committed records and leads again
    let r = on_unfenced(&s, 1);
    apply_all(&mut s, &r);
    unfence(&mut s, 1);
    let p = part(&s, "t", 0);
    // epochs: 0, kept when follower 2 left, 1 leaderless, 2 led by 1 again
    assert_eq!((p.leader, &p.isr, p.leader_epoch), (1, &vec![1], 2));
}

#[test]
fn unclean_election_happens_only_when_the_topic_enables_it() {
    for (enabled, leader, isr) in [("false", NO_LEADER, vec![1]), ("true", 2, vec![2])] {
        let mut s = cluster(&[1, 2]);
        with_topic(
            &mut s,
            "t",
            &[&[1, 2]],
            &[(UNCLEAN_LEADER_ELECTION, enabled)],
        );
        // broker 2 drops out of the ISR (as the leader's AlterPartition would say)
        let mut next = Next::of(part(&s, "t", 0));
        next.isr = vec![1];
        let r = next.record("t", part(&s, "t", 0), Bump::PartitionOnly);
        s.apply(&r);
        fence(&mut s, 1);
        let r = on_fenced(&s, 1);
        apply_all(&mut s, &r);
        let p = part(&s, "t", 0);
        assert_eq!((p.leader, &p.isr), (leader, &isr), "unclean {enabled}");
    }
}

#[test]
fn controlled_shutdown_moves_every_leadership_off_the_broker() {
    let mut s = three_replicas();
    let r = controlled_shutdown(&s, 2);
    apply_all(&mut s, &r);
    assert_eq!(part(&s, "t", 1).leader, 3);
    assert_eq!(part(&s, "t", 0).leader, 1);
    for p in 0..2 {
        assert!(!part(&s, "t", p).isr.contains(&2));
    }
}

#[test]
fn preferred_rebalance_moves_leadership_back_once_the_preferred_replica_is_in_sync() {
    let mut s = three_replicas();
    fence(&mut s, 1);
    let r = on_fenced(&s, 1);
    apply_all(&mut s, &r);
    unfence(&mut s, 1);
    assert!(
        preferred_rebalance(&s).is_empty(),
        "1 is not in the ISR yet"
    );
    assert_eq!(
        elect_preferred(&s, "t", 0).unwrap_err().code,
        KafkaCode::PreferredLeaderNotAvailable
    );
    // 1 catches up: the leader adds it back to the ISR
    let mut next = Next::of(part(&s, "t", 0));
    next.isr = vec![2, 3, 1];
    let r = next.record("t", part(&s, "t", 0), Bump::PartitionOnly);
    s.apply(&r);
    let r = preferred_rebalance(&s);
    assert_eq!(r.len(), 1);
    apply_all(&mut s, &r);
    assert_eq!(part(&s, "t", 0).leader, 1);
    assert_eq!(
        elect_preferred(&s, "t", 0).unwrap_err().code,
        KafkaCode::ElectionNotNeeded
    );
    assert_eq!(
        elect_preferred(&s, "nope", 0).unwrap_err().code,
        KafkaCode::UnknownTopicOrPartition
    );
}

#[test]
fn explicit_unclean_election_picks_an_alive_replica_for_a_leaderless_partition() {
    let mut s = cluster(&[1, 2]);
    with_topic(&mut s, "t", &[&[1, 2]], &[]);
    assert_eq!(
        elect_unclean(&s, "t", 0).unwrap_err().code,
        KafkaCode::ElectionNotNeeded
    );
    let mut next = Next::of(part(&s, "t", 0));
    next.isr = vec![1];
    let r = next.record("t", part(&s, "t", 0), Bump::PartitionOnly);
    s.apply(&r);
    fence(&mut s, 1);
    let r = on_fenced(&s, 1);
    apply_all(&mut s, &r);
    assert_eq!(part(&s, "t", 0).leader, NO_LEADER);
    let r = elect_unclean(&s, "t", 0).unwrap();
    s.apply(&r);
    assert_eq!(
        (part(&s, "t", 0).leader, &part(&s, "t", 0).isr),
        (2, &vec![2])
    );
}
