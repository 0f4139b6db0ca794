//! Deterministic tests of the KIP-848 consumer group state machine, with a simulated client
//! that behaves as the Java consumer does: it adopts every assignment it is sent, reports what
//! it owns, and rejoins with epoch 0 when fenced.

use super::*;

const T: &str = "orders";

fn partitions(n: i32) -> BTreeMap<String, i32> {
    BTreeMap::from([(T.to_owned(), n)])
}

fn config() -> ConsumerGroupConfig {
    ConsumerGroupConfig::default()
}

/// A well-behaved member: owns exactly what it was last given.
struct Client {
    id: String,
    epoch: i32,
    owned: Assignment,
    assignor: Option<String>,
}

impl Client {
    fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            epoch: 0,
            owned: Assignment::new(),
            assignor: None,
        }
    }

    fn beat(
        &mut self,
        g: &mut ConsumerGroup,
        parts: &BTreeMap<String, i32>,
        now: i64,
    ) -> HeartbeatReply {
        let hb = Heartbeat {
            member_id: self.id.clone(),
            member_epoch: self.epoch,
            subscribed: Some(BTreeSet::from([T.to_owned()])),
            server_assignor: self.assignor.clone(),
            owned: Some(self.owned.clone()),
            rebalance_timeout_ms: 30_000,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            ..Heartbeat::default()
        };
        let reply = g.heartbeat(hb, parts, &config(), now);
        match reply.error {
            KafkaCode::None => {
                self.epoch = reply.member_epoch;
                if let Some(a) = &reply.assignment {
                    self.owned = a.clone();
                }
            }
            KafkaCode::FencedMemberEpoch | KafkaCode::UnknownMemberId => {
                self.epoch = 0;
                self.owned.clear();
            }
            _ => {}
        }
        reply
    }

    fn count(&self) -> usize {
        self.owned.values().map(BTreeSet::len).sum()
    }
}

/// No partition is owned (per the clients) or held (per the coordinator) by two members.
fn assert_exclusive(g: &ConsumerGroup, clients: &[&Client]) {
    let mut seen = BTreeSet::new();
    for c in clients {
        for (t, ps) in &c.owned {
            for p in ps {
                assert!(seen.insert((t.clone(), *p)), "{t}-{p} owned by two clients");
            }
        }
    }
    let mut held = BTreeSet::new();
    for m in g.members.values() {
        for a in [&m.assigned, &m.revoking] {
            for (t, ps) in a {
                for p in ps {
                    assert!(
                        held.insert((t.clone(), *p)),
                        "{t}-{p} held by two members: {g:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn first_member_gets_every_partition_at_epoch_one() {
    let mut g = ConsumerGroup::new("g");
    let mut a = Client::new("a");
    let r = a.beat(&mut g, &partitions(4), 0);
    assert_eq!(r.error, KafkaCode::None);
    assert_eq!(r.member_epoch, 1);
    assert_eq!(a.count(), 4);
    assert_eq!(g.state(), ConsumerGroupState::Stable);
    // Nothing changed: the next answer carries no assignment.
    assert_eq!(a.beat(&mut g, &partitions(4), 100).assignment, None);
}

#[test]
fn second_member_gets_its_half_only_after_the_first_revokes_it() {
    let p = partitions(4);
    let mut g = ConsumerGroup::new("g");
    let (mut a, mut b) = (Client::new("a"), Client::new("b"));
    a.beat(&mut g, &p, 0);
    let r = b.beat(&mut g, &p, 10);
    assert_eq!(r.member_epoch, 2, "the join bumps the group epoch");
    assert_eq!(b.count(), 0, "a still owns everything");
    assert_eq!(g.state(), ConsumerGroupState::Reconciling);
    assert_exclusive(&g, &[&a, &b]);
    // a is told to give up two partitions, at its old epoch.
    let r = a.beat(&mut g, &p, 20);
    assert_eq!((r.member_epoch, a.count()), (1, 2));
    assert_exclusive(&g, &[&a, &b]);
    // a reports it let them go: it moves to epoch 2.
    assert_eq!(a.beat(&mut g, &p, 30).member_epoch, 2);
    // b now gets the released partitions.
    b.beat(&mut g, &p, 40);
    assert_eq!((a.count(), b.count()), (2, 2));
    assert_exclusive(&g, &[&a, &b]);
    assert_eq!(g.state(), ConsumerGroupState::Stable);
}

#[test]
fn leaving_member_hands_its_partitions_to_the_other() {
    let p = partitions(4);
    let mut g = ConsumerGroup::new("g");
    let (mut a, mut b) = (Client::new("a"), Client::new("b"));
    for now in 0..6 {
        a.beat(&mut g, &p, now);
        b.beat(&mut g, &p, now);
    }
    assert_eq!((a.count(), b.count()), (2, 2));
    let leave = Heartbeat {
        member_id: "b".into(),
        member_epoch: LEAVE_EPOCH,
        ..Heartbeat::default()
    };
    let r = g.heartbeat(leave, &p, &config(), 10);
    assert_eq!((r.error, r.member_epoch), (KafkaCode::None, LEAVE_EPOCH));
    a.beat(&mut g, &p, 11);
    assert_eq!(a.count(), 4);
    assert_eq!(g.state(), ConsumerGroupState::Stable);
}

#[test]
fn wrong_epoch_is_fenced_and_unknown_member_is_refused() {
    let p = partitions(2);
    let mut g = ConsumerGroup::new("g");
    let mut a = Client::new("a");
    a.beat(&mut g, &p, 0);
    let stale = Heartbeat {
        member_id: "a".into(),
        member_epoch: 7,
        ..Heartbeat::default()
    };
    assert_eq!(
        g.heartbeat(stale, &p, &config(), 1).error,
        KafkaCode::FencedMemberEpoch
    );
    let stranger = Heartbeat {
        member_id: "zz".into(),
        member_epoch: 3,
        ..Heartbeat::default()
    };
    assert_eq!(
        g.heartbeat(stranger, &p, &config(), 1).error,
        KafkaCode::UnknownMemberId
    );
    // A fenced member rejoins with epoch 0 and gets its partitions back.
    a.epoch = 0;
    a.owned.clear();
    a.beat(&mut g, &p, 2);
    assert_eq!(a.count(), 2);
}

#[test]
fn unknown_assignor_is_refused() {
    let mut g = ConsumerGroup::new("g");
    let mut a = Client::new("a");
    a.assignor = Some("sticky-ish".into());
    assert_eq!(
        a.beat(&mut g, &partitions(1), 0).error,
        KafkaCode::UnsupportedAssignor
    );
    assert!(g.members.is_empty());
}

#[test]
fn range_assignor_is_used_when_members_ask_for_it() {
    let p = partitions(4);
    let mut g = ConsumerGroup::new("g");
    let (mut a, mut b) = (Client::new("a"), Client::new("b"));
    a.assignor = Some("range".into());
    b.assignor = Some("range".into());
    for now in 0..6 {
        a.beat(&mut g, &p, now);
        b.beat(&mut g, &p, now);
    }
    assert_eq!(g.assignor, "range");
    assert_eq!(a.owned[T], BTreeSet::from([0, 1]));
    assert_eq!(b.owned[T], BTreeSet::from([2, 3]));
}

#[test]
fn silent_member_expires_after_the_session_timeout() {
    let p = partitions(2);
    let mut g = ConsumerGroup::new("g");
    let (mut a, mut b) = (Client::new("a"), Client::new("b"));
    a.beat(&mut g, &p, 0);
    b.beat(&mut g, &p, 0);
    let timeout = config().session_timeout_ms;
    assert!(!g.expire(timeout - 1, &config()));
    a.beat(&mut g, &p, timeout - 1);
    assert!(
        g.expire(timeout, &config()),
        "b was silent for the session timeout"
    );
    assert_eq!(g.members.keys().collect::<Vec<_>>(), vec!["a"]);
    a.beat(&mut g, &p, timeout + 1);
    a.beat(&mut g, &p, timeout + 2);
    assert_eq!(a.count(), 2);
}

#[test]
fn more_partitions_bump_the_epoch_and_are_assigned() {
    let mut g = ConsumerGroup::new("g");
    let mut a = Client::new("a");
    a.beat(&mut g, &partitions(2), 0);
    let r = a.beat(&mut g, &partitions(3), 1);
    assert_eq!(r.member_epoch, 2);
    assert_eq!(a.count(), 3);
}

proptest::proptest! {
    /// Any interleaving of heartbeats, joins and leaves of up to four members keeps every
    /// partition with at most one member, and once everyone keeps heartbeating the group
    /// settles: Stable, every partition assigned, loads within one of each other.
    #[test]
    fn any_schedule_keeps_partitions_exclusive_and_settles(
        steps in proptest::collection::vec((0usize..4, 0u8..10), 1..80),
        n_partitions in 1i32..9,
    ) {
        let p = partitions(n_partitions);
        let mut g = ConsumerGroup::new("g");
        let mut clients: Vec<Client> = (0..4).map(|i| Client::new(&format!("m{i}"))).collect();
        let mut joined = [false; 4];
        for (now, (who, action)) in steps.into_iter().enumerate() {
            let now = now as i64;
            if action == 0 && joined[who] {
                let leave = Heartbeat { member_id: clients[who].id.clone(), member_epoch: LEAVE_EPOCH, ..Heartbeat::default() };
                g.heartbeat(leave, &p, &config(), now);
                clients[who].epoch = 0;
                clients[who].owned.clear();
                joined[who] = false;
            } else {
                clients[who].beat(&mut g, &p, now);
                joined[who] = true;
            }
            let refs: Vec<&Client> = clients.iter().collect();
            assert_exclusive(&g, &refs);
        }
        for round in 0..6 {
            for (i, c) in clients.iter_mut().enumerate() {
                if joined[i] {
                    c.beat(&mut g, &p, 1000 + round);
                }
            }
        }
        let refs: Vec<&Client> = clients.iter().collect();
        assert_exclusive(&g, &refs);
        if joined.iter().any(|j| *j) {
            proptest::prop_assert_eq!(g.state(), ConsumerGroupState::Stable);
            let total: usize = clients.iter().map(Client::count).sum();
            proptest::prop_assert_eq!(total, n_partitions as usize);
            let loads: Vec<usize> = clients.iter().zip(joined).filter(|(_, j)| *j).map(|(c, _)| c.count()).collect();
            proptest::prop_assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1);
        }
    }
}
