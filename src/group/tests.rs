//! Deterministic tests of the group coordinator: scripted scenarios and generated schedules
//! of joins, syncs, heartbeats, leaves, crashes (silence) and clock jumps, checking Kafka's
//! invariants after every step.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use proptest::prelude::*;

use super::coordinator::{Coordinator, MemberRef};
use super::records::CommittedOffset;
use super::state::{GroupConfig, GroupState, JoinRequest, JoinResult, Output, SyncResult};
use crate::base::KafkaCode;

const G: &str = "g";

fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

fn join_req(member_id: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_owned(),
        instance_id: instance.map(str::to_owned),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 20_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        require_known_member_id: true,
    }
}

/// Collects the answers a step produced, by token.
#[derive(Default)]
struct Answers {
    joins: HashMap<u64, JoinResult>,
    syncs: HashMap<u64, SyncResult>,
}

impl Answers {
    fn take(&mut self, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Join(t, r) => {
                    self.joins.insert(t, r);
                }
                Output::Sync(t, r) => {
                    self.syncs.insert(t, r);
                }
                Output::PersistGroup(..) => {}
            }
        }
    }
}

/// Joins a new dynamic member through the KIP-394 round trip; returns its member id.
fn new_member(c: &mut Coordinator, a: &mut Answers, token: u64, now: i64) -> String {
    a.take(c.join(token, G, join_req("", None), now));
    let r = a
        .joins
        .remove(&token)
        .expect("MEMBER_ID_REQUIRED comes at once");
    assert_eq!(r.error, KafkaCode::MemberIdRequired);
    a.take(c.join(token + 1, G, join_req(&r.member_id, None), now));
    r.member_id
}

fn who(c: &Coordinator, id: &str) -> MemberRef {
    MemberRef {
        generation: c.group(G).map_or(-1, |g| g.generation),
        member_id: id.to_owned(),
        instance_id: None,
    }
}

#[test]
fn single_member_joins_syncs_and_becomes_stable() {
    let mut c = Coordinator::new(config());
    let mut a = Answers::default();
    let id = new_member(&mut c, &mut a, 1, 0);
    let joined = a.joins.remove(&2).expect("sole member completes the join");
    assert_eq!(joined.error, KafkaCode::None);
    assert_eq!(joined.leader, id);
    assert_eq!(joined.generation, 1);
    assert_eq!(joined.members.len(), 1);
    a.take(c.sync(
        3,
        G,
        who(&c, &id),
        vec![(id.clone(), Bytes::from_static(b"p0"))],
        0,
    ));
    assert_eq!(a.syncs[&3].assignment, Bytes::from_static(b"p0"));
    assert_eq!(c.group(G).unwrap().state, GroupState::Stable);
    assert_eq!(c.heartbeat(G, who(&c, &id), 100), KafkaCode::None);
}

#[test]
fn second_member_triggers_rebalance_and_old_member_learns_by_heartbeat() {
    let mut c = Coordinator::new(config());
    let mut a = Answers::default();
    let m1 = new_member(&mut c, &mut a, 1, 0);
    a.take(c.sync(3, G, who(&c, &m1), vec![(m1.clone(), Bytes::new())], 0));
    let m2 = new_member(&mut c, &mut a, 10, 10);
    assert!(!a.joins.contains_key(&11), "waits for m1 to rejoin");
    assert_eq!(
        c.heartbeat(G, who(&c, &m1), 20),
        KafkaCode::RebalanceInProgress
    );
    a.take(c.join(12, G, join_req(&m1, None), 30));
    let (j1, j2) = (a.joins.remove(&12).unwrap(), a.joins.remove(&11).unwrap());
    assert_eq!(j1.generation, 2);
    assert_eq!(j2.generation, 2);
    assert_eq!(j1.leader, m1, "the leader stays the leader");
    assert!(j2.members.is_empty(), "followers get no member list");
    assert_eq!(j1.members.len(), 2);
    let _ = m2;
}

#[test]
fn stale_generation_commit_is_refused() {
    let mut c = Coordinator::new(config());
    let mut a = Answers::default();
    let m1 = new_member(&mut c, &mut a, 1, 0);
    a.take(c.sync(3, G, who(&c, &m1), vec![], 0));
    let stale = MemberRef {
        generation: 0,
        member_id: m1.clone(),
        instance_id: None,
    };
    let off = CommittedOffset {
        offset: 5,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp: 0,
    };
    assert_eq!(
        c.commit(G, &stale, vec![(("t".into(), 0), off.clone())], 1),
        Err(KafkaCode::IllegalGeneration)
    );
    let stored = c
        .commit(G, &who(&c, &m1), vec![(("t".into(), 0), off)], 1)
        .unwrap();
    // Not visible until the caller has made it durable.
    assert!(c.fetch_offsets(G, None).is_empty());
    c.apply_commit(G, &stored);
    assert_eq!(c.fetch_offsets(G, None)[0].1.as_ref().unwrap().offset, 5);
}

#[test]
fn transactional_offsets_count_only_after_the_commit_marker() {
    let mut c = Coordinator::new(config());
    let simple = MemberRef {
        generation: -1,
        member_id: String::new(),
        instance_id: None,
    };
    let off = |offset| CommittedOffset {
        offset,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp: 0,
    };
    let tp = ("t".to_string(), 0);
    let stored = c.commit(G, &simple, vec![(tp.clone(), off(7))], 0).unwrap();
    c.add_txn_offsets(G, 42, &stored);
    let fetched = c.fetch_offsets(G, Some(std::slice::from_ref(&tp)));
    assert_eq!((fetched[0].1.is_none(), fetched[0].2), (true, true));
    c.complete_txn(42, false);
    let fetched = c.fetch_offsets(G, Some(std::slice::from_ref(&tp)));
    assert_eq!((fetched[0].1.is_none(), fetched[0].2), (true, false));
    let stored = c.commit(G, &simple, vec![(tp.clone(), off(9))], 0).unwrap();
    c.add_txn_offsets(G, 42, &stored);
    c.complete_txn(42, true);
    let fetched = c.fetch_offsets(G, Some(&[tp]));
    assert_eq!(fetched[0].1.as_ref().map(|o| o.offset), Some(9));
    assert!(!fetched[0].2);
}

/// A KIP-848 member's commits go through the same durable-first path: nothing is visible
/// before `apply_commit`, and transactional ones only after the commit marker.
#[test]
fn consumer_group_member_commits_count_only_once_durable_or_committed() {
    use super::consumer::Heartbeat;
    use std::collections::{BTreeMap, BTreeSet};
    let mut c = Coordinator::new(config());
    let parts = BTreeMap::from([("t".to_owned(), 1)]);
    let hb = Heartbeat {
        member_id: "m1".into(),
        member_epoch: 0,
        subscribed: Some(BTreeSet::from(["t".to_owned()])),
        rebalance_timeout_ms: 30_000,
        ..Heartbeat::default()
    };
    let reply = c.consumer_heartbeat(G, hb, &parts, 0);
    assert_eq!(reply.error, KafkaCode::None);
    let member = MemberRef {
        generation: reply.member_epoch,
        member_id: reply.member_id.clone(),
        instance_id: None,
    };
    let off = |offset| CommittedOffset {
        offset,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp: 0,
    };
    let tp = ("t".to_string(), 0);
    let stored = c.commit(G, &member, vec![(tp.clone(), off(3))], 0).unwrap();
    assert!(c.fetch_offsets(G, None).is_empty());
    c.apply_commit(G, &stored);
    assert_eq!(c.fetch_offsets(G, None)[0].1.as_ref().unwrap().offset, 3);

    let stored = c.commit(G, &member, vec![(tp.clone(), off(8))], 0).unwrap();
    c.add_txn_offsets(G, 7, &stored);
    let fetched = c.fetch_offsets(G, Some(std::slice::from_ref(&tp)));
    assert_eq!(
        (fetched[0].1.as_ref().map(|o| o.offset), fetched[0].2),
        (Some(3), true)
    );
    c.complete_txn(7, true);
    let fetched = c.fetch_offsets(G, Some(&[tp]));
    assert_eq!(
        (fetched[0].1.as_ref().map(|o| o.offset), fetched[0].2),
        (Some(8), false)
    );

    let stale = MemberRef {
        generation: reply.member_epoch + 1,
        ..member
    };
    assert!(c
        .commit(G, &stale, vec![(("t".into(), 0), off(9))], 0)
        .is_err());
}

#[test]
fn silent_member_expires_after_session_timeout() {
    let mut c = Coordinator::new(config());
    let mut a = Answers::default();
    let m1 = new_member(&mut c, &mut a, 1, 0);
    a.take(c.sync(3, G, who(&c, &m1), vec![], 0));
    let (out, _) = c.tick(9_999);
    assert!(out.is_empty());
    assert_eq!(c.group(G).unwrap().members.len(), 1);
    let _ = c.tick(10_001);
    let g = c.group(G).unwrap();
    assert!(g.members.is_empty());
    assert_eq!(g.state, GroupState::Empty);
}

#[test]
fn static_member_rejoin_gets_old_assignment_without_rebalance() {
    let mut c = Coordinator::new(config());
    let mut a = Answers::default();
    a.take(c.join(1, G, join_req("", Some("i1")), 0));
    let leader = a.joins.remove(&1).unwrap();
    assert_eq!(
        leader.error,
        KafkaCode::None,
        "static members skip MEMBER_ID_REQUIRED"
    );
    a.take(c.join(2, G, join_req("", Some("i2")), 0));
    a.take(c.join(3, G, join_req(&leader.member_id, Some("i1")), 0));
    let j2 = a.joins.remove(&2).unwrap();
    let gen = c.group(G).unwrap().generation;
    let w = |id: &str, inst: &str| MemberRef {
        generation: gen,
        member_id: id.to_owned(),
        instance_id: Some(inst.to_owned()),
    };
    a.take(c.sync(4, G, w(&j2.member_id, "i2"), vec![], 0));
    a.take(c.sync(
        5,
        G,
        w(&leader.member_id, "i1"),
        vec![(j2.member_id.clone(), Bytes::from_static(b"p1"))],
        0,
    ));
    assert_eq!(a.syncs[&4].assignment, Bytes::from_static(b"p1"));
    // i2 restarts: new join with no member id
    a.take(c.join(6, G, join_req("", Some("i2")), 100));
    let back = a.joins.remove(&6).unwrap();
    assert_eq!(back.error, KafkaCode::None);
    assert_eq!(back.generation, gen, "no rebalance");
    assert_eq!(c.group(G).unwrap().state, GroupState::Stable);
    a.take(c.sync(7, G, w(&back.member_id, "i2"), vec![], 100));
    assert_eq!(a.syncs[&7].assignment, Bytes::from_static(b"p1"));
    // the old incarnation is fenced
    assert_eq!(
        c.heartbeat(G, w(&j2.member_id, "i2"), 100),
        KafkaCode::FencedInstanceId
    );
}

#[test]
fn session_timeout_outside_bounds_is_invalid() {
    let mut c = Coordinator::new(config());
    let mut req = join_req("", None);
    req.session_timeout_ms = 10;
    let out = c.join(1, G, req, 0);
    assert!(matches!(&out[0], Output::Join(1, r) if r.error == KafkaCode::InvalidSessionTimeout));
}

#[test]
fn non_empty_group_cannot_be_deleted() {
    let mut c = Coordinator::new(config());
    let mut a = Answers::default();
    let m1 = new_member(&mut c, &mut a, 1, 0);
    assert_eq!(c.delete_group(G), Err(KafkaCode::NonEmptyGroup));
    let (_, codes, _) = c.leave(G, vec![(m1, None)], 5);
    assert_eq!(codes, vec![KafkaCode::None]);
    assert!(c.delete_group(G).is_ok());
    assert_eq!(c.delete_group(G), Err(KafkaCode::GroupIdNotFound));
}

#[test]
fn initial_rebalance_delay_holds_the_first_join() {
    let mut c = Coordinator::new(GroupConfig {
        initial_rebalance_delay_ms: 300,
        ..GroupConfig::default()
    });
    let mut a = Answers::default();
    new_member(&mut c, &mut a, 1, 0);
    assert!(a.joins.is_empty(), "held by the initial delay");
    let (out, _) = c.tick(299);
    a.take(out);
    assert!(a.joins.is_empty());
    let (out, _) = c.tick(300);
    a.take(out);
    assert_eq!(a.joins[&2].error, KafkaCode::None);
}

#[test]
fn offsets_of_an_empty_group_expire_after_retention() {
    let mut c = Coordinator::new(GroupConfig {
        offsets_retention_ms: 1000,
        ..config()
    });
    let simple = MemberRef {
        generation: -1,
        member_id: String::new(),
        instance_id: None,
    };
    let off = CommittedOffset {
        offset: 3,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp: 0,
    };
    let stored = c
        .commit(G, &simple, vec![(("t".into(), 0), off)], 0)
        .unwrap();
    c.apply_commit(G, &stored);
    let (_, expired) = c.tick(500);
    assert!(expired.is_empty(), "not yet");
    let (_, expired) = c.tick(1001);
    assert_eq!(expired, vec![(G.to_string(), "t".to_string(), 0)]);
    assert!(c.fetch_offsets(G, None).is_empty());
}

/// One step of a generated schedule.
#[derive(Debug, Clone)]
enum Step {
    NewMember,
    Rejoin(usize),
    Sync(usize),
    Heartbeat(usize),
    Leave(usize),
    Advance(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => Just(Step::NewMember),
        3 => (0usize..6).prop_map(Step::Rejoin),
        4 => (0usize..6).prop_map(Step::Sync),
        3 => (0usize..6).prop_map(Step::Heartbeat),
        1 => (0usize..6).prop_map(Step::Leave),
        2 => (1i64..15_000).prop_map(Step::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Under any schedule: one generation at a time, answers only ever name the current or a
    /// past generation, every partition is assigned to at most one member of a generation,
    /// and a commit from a stale generation is never accepted.
    #[test]
    fn coordinator_invariants_hold_under_generated_schedules(steps in proptest::collection::vec(step(), 1..80)) {
        let mut c = Coordinator::new(config());
        let mut a = Answers::default();
        let mut now = 0i64;
        let mut token = 100u64;
        let mut ids: Vec<String> = Vec::new();
        let mut known_gen: HashMap<String, i32> = HashMap::new();
        let mut last_gen = 0;
        for s in steps {
            token += 2;
            match s {
                Step::NewMember => {
                    a.take(c.join(token, G, join_req("", None), now));
                    if let Some(r) = a.joins.remove(&token) {
                        if r.error == KafkaCode::MemberIdRequired {
                            ids.push(r.member_id.clone());
                            a.take(c.join(token + 1, G, join_req(&r.member_id, None), now));
                        }
                    }
                }
                Step::Rejoin(i) if !ids.is_empty() => {
                    let id = ids[i % ids.len()].clone();
                    a.take(c.join(token, G, join_req(&id, None), now));
                }
                Step::Sync(i) if !ids.is_empty() => {
                    let id = ids[i % ids.len()].clone();
                    let gen = known_gen.get(&id).copied().unwrap_or(-1);
                    let members: Vec<String> = c.group(G).map(|g| g.members.iter().map(|m| m.id.clone()).collect()).unwrap_or_default();
                    // the leader hands partition k to member k % n (3 partitions)
                    let assignment = members.iter().enumerate().map(|(k, m)| {
                        let parts: Vec<u8> = (0..3u8).filter(|p| (*p as usize) % members.len() == k).collect();
                        (m.clone(), Bytes::from(parts))
                    }).collect();
                    let w = MemberRef { generation: gen, member_id: id, instance_id: None };
                    a.take(c.sync(token, G, w, assignment, now));
                }
                Step::Heartbeat(i) if !ids.is_empty() => {
                    let id = ids[i % ids.len()].clone();
                    let gen = known_gen.get(&id).copied().unwrap_or(-1);
                    let _ = c.heartbeat(G, MemberRef { generation: gen, member_id: id, instance_id: None }, now);
                }
                Step::Leave(i) if !ids.is_empty() => {
                    let id = ids[i % ids.len()].clone();
                    let (_, _, out) = c.leave(G, vec![(id, None)], now);
                    a.take(out);
                }
                Step::Advance(ms) => {
                    now += ms;
                    let (out, _) = c.tick(now);
                    a.take(out);
                }
                _ => {}
            }
            let Some(g) = c.group(G) else { continue };
            prop_assert!(g.generation >= last_gen, "generation went back");
            last_gen = g.generation;
            for (_, r) in a.joins.drain() {
                if r.error == KafkaCode::None {
                    prop_assert!(r.generation <= g.generation);
                    known_gen.insert(r.member_id.clone(), r.generation);
                }
            }
            a.syncs.clear();
            if g.state == GroupState::Stable {
                let mut seen = HashSet::new();
                for m in &g.members {
                    for p in m.assignment.iter() {
                        prop_assert!(seen.insert(*p), "partition {} assigned twice in generation {}", p, g.generation);
                    }
                }
            }
            // a commit from a generation that is not the current one is refused
            if let Some(m) = g.members.first() {
                let stale = MemberRef { generation: g.generation - 1, member_id: m.id.clone(), instance_id: None };
                let off = CommittedOffset { offset: 1, leader_epoch: -1, metadata: String::new(), commit_timestamp: now };
                prop_assert!(c.clone_for_check().commit(G, &stale, vec![(("t".into(), 0), off)], now).is_err());
            }
        }
    }
}

impl Coordinator {
    /// A throwaway copy for probing without changing the schedule under test.
    fn clone_for_check(&self) -> Coordinator {
        let mut c = Coordinator::new(config());
        if let Some(g) = self.group(G) {
            c.insert_group_for_test(g.clone());
        }
        c
    }
}
