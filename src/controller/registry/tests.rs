use super::*;
use crate::controller::testkit::{apply_all, cluster, part, with_topic};

fn reg(node_id: i32) -> Registration {
    Registration {
        node_id,
        host: format!("h{node_id}"),
        port: 9092,
        rack: None,
        shards: 2,
    }
}

/// Three alive brokers (epoch 1) with topic t: p0 on [1, 2, 3], p1 on [2, 3, 1].
fn setup() -> (Registry, ClusterSnapshot) {
    let mut s = cluster(&[1, 2, 3]);
    with_topic(&mut s, "t", &[&[1, 2, 3], &[2, 3, 1]], &[]);
    (Registry::new(DEFAULT_SESSION_TIMEOUT_MS), s)
}

#[test]
fn registered_broker_is_unfenced_by_a_heartbeat_once_its_logs_are_ready() {
    let mut r = Registry::new(DEFAULT_SESSION_TIMEOUT_MS);
    let mut s = ClusterSnapshot::joining(1, "c".into());
    let recs = r.register(reg(1), 5, 0, &s).unwrap();
    apply_all(&mut s, &recs);
    assert!(!s.is_live(1));
    assert!(r.on_heartbeat(1, 5, 100, false, &s).unwrap().is_empty());
    let recs = r.on_heartbeat(1, 5, 200, true, &s).unwrap();
    assert_eq!(
        recs,
        vec![MetadataRecord::UnfenceBroker {
            node_id: 1,
            epoch: 5
        }]
    );
    apply_all(&mut s, &recs);
    assert!(s.is_live(1));
    assert!(r.on_heartbeat(1, 5, 300, true, &s).unwrap().is_empty());
}

#[test]
fn heartbeat_with_an_old_epoch_or_from_an_unknown_broker_is_refused() {
    let (mut r, s) = setup();
    let err = r.on_heartbeat(1, 0, 10, true, &s).unwrap_err();
    assert_eq!(err.code, KafkaCode::StaleBrokerEpoch);
    let err = r.on_heartbeat(9, 1, 10, true, &s).unwrap_err();
    assert_eq!(err.code, KafkaCode::BrokerIdNotRegistered);
    let err = r.register(reg(2), 1, 10, &s).unwrap_err();
    assert_eq!(err.code, KafkaCode::StaleBrokerEpoch, "an epoch must grow");
}

#[test]
fn broker_silent_past_the_session_timeout_is_fenced_and_loses_its_leaderships() {
    let (mut r, mut s) = setup();
    assert!(r.tick(0, &s).is_empty(), "sessions start at the first tick");
    for b in [1, 3] {
        r.on_heartbeat(b, 1, 9000, true, &s).unwrap();
    }
    assert!(
        r.tick(9000, &s).is_empty(),
        "exactly the timeout is not past it"
    );
    let recs = r.tick(9001, &s);
    assert_eq!(
        recs[0],
        MetadataRecord::FenceBroker {
            node_id: 2,
            epoch: 1
        }
    );
    apply_all(&mut s, &recs);
    assert!(!s.is_live(2));
    assert_eq!(part(&s, "t", 1).leader, 3);
    assert_eq!(part(&s, "t", 0).isr, vec![1, 3]);
    assert!(r.tick(9002, &s).is_empty(), "fenced once");
    // it comes back
    let recs = r.on_heartbeat(2, 1, 9500, true, &s).unwrap();
    apply_all(&mut s, &recs);
    assert!(s.is_live(2));
}

#[test]
fn two_brokers_expiring_together_are_fenced_in_turn() {
    let (mut r, mut s) = setup();
    r.tick(0, &s);
    r.on_heartbeat(3, 1, 20_000, true, &s).unwrap();
    let recs = r.tick(20_000, &s);
    apply_all(&mut s, &recs);
    assert_eq!(s.live_brokers().count(), 1);
    for p in 0..2 {
        assert_eq!(part(&s, "t", p).leader, 3);
        assert_eq!(part(&s, "t", p).isr, vec![3]);
    }
}

#[test]
fn a_new_controller_leader_gives_every_broker_a_fresh_session() {
    let (_, s) = setup();
    let mut fresh = Registry::new(DEFAULT_SESSION_TIMEOUT_MS);
    assert!(fresh.tick(1_000_000, &s).is_empty());
    assert!(fresh.tick(1_009_000, &s).is_empty());
    // all three fenced: 3 FenceBroker, and each fencing changes both partitions
    assert_eq!(fresh.tick(1_009_001, &s).len(), 3 + 3 * 2);
}

#[test]
fn a_clock_jumping_back_fences_nobody() {
    let (mut r, s) = setup();
    r.tick(50_000, &s);
    assert!(r.tick(10, &s).is_empty());
}

#[test]
fn controlled_shutdown_moves_leadership_and_keeps_the_broker_fenced_until_it_registers() {
    let (mut r, mut s) = setup();
    let recs = r.controlled_shutdown(2, 1, &s).unwrap();
    apply_all(&mut s, &recs);
    assert_eq!(part(&s, "t", 1).leader, 3);
    assert!(!s.is_live(2));
    assert!(r.on_heartbeat(2, 1, 10, true, &s).unwrap().is_empty());
    assert!(!s.is_live(2));
    let recs = r.register(reg(2), 40, 20, &s).unwrap();
    apply_all(&mut s, &recs);
    let recs = r.on_heartbeat(2, 40, 30, true, &s).unwrap();
    apply_all(&mut s, &recs);
    assert!(s.is_live(2));
    assert_eq!(
        r.controlled_shutdown(2, 1, &s).unwrap_err().code,
        KafkaCode::StaleBrokerEpoch
    );
}

#[test]
fn re_registration_moves_what_the_old_incarnation_led() {
    let (mut r, mut s) = setup();
    let recs = r.register(reg(1), 50, 0, &s).unwrap();
    apply_all(&mut s, &recs);
    assert_eq!(s.broker(1).map(|b| (b.epoch, b.fenced)), Some((50, true)));
    assert_eq!(part(&s, "t", 0).leader, 2);
    assert!(!part(&s, "t", 0).isr.contains(&1));
}

#[test]
fn unregistering_moves_leaderships_and_removes_the_broker_but_not_its_replicas() {
    let (mut r, mut s) = setup();
    let err = r.unregister(9, &s).unwrap_err();
    assert_eq!(err.code, KafkaCode::BrokerIdNotRegistered);
    let recs = r.unregister(2, &s).unwrap();
    assert_eq!(
        recs.last(),
        Some(&MetadataRecord::UnregisterBroker {
            node_id: 2,
            epoch: 1
        })
    );
    apply_all(&mut s, &recs);
    assert!(s.broker(2).is_none());
    let p1 = part(&s, "t", 1);
    assert_eq!(p1.replicas, vec![2, 3, 1], "the assignment keeps it");
    assert_eq!(
        p1.leader, 3,
        "its leadership moved to the next in-sync replica"
    );
    assert!(!p1.isr.contains(&2));
    assert!(!part(&s, "t", 0).isr.contains(&2));
    let again = r.unregister(2, &s).unwrap_err();
    assert_eq!(again.code, KafkaCode::BrokerIdNotRegistered);
    let stale = r.on_heartbeat(2, 1, 10, true, &s).unwrap_err();
    assert_eq!(stale.code, KafkaCode::BrokerIdNotRegistered);
}
