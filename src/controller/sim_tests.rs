//! A seeded, deterministic simulation of the controller's sans-io logic (registry,
//! election, AlterPartition, placement) driving a model of brokers that produce, fetch and
//! replicate, through random crashes, restarts, network cuts (lost heartbeats and
//! fetches), clock jumps, controlled shutdowns, controller failovers and preferred-leader
//! rebalances.
//!
//! Invariants checked after every step: a partition's leader is in its ISR and alive, or
//! −1; the ISR is a non-empty set of replicas; leader and partition epochs never go back; a
//! clean-only topic never gets a leader from outside its ISR; and no committed record is
//! lost: whatever a leader ever counted below its high watermark (min log end over its
//! ISR) stays a prefix of every later leader's log.
//!
//! The model's brokers see the metadata only while connected, so a cut-off leader keeps
//! acting on its stale view, as a real one would. Each seed is one run; a failure names the
//! seed, and `SLUICE_SIM_SEED=<seed>` replays just it (`SLUICE_SIM_SEEDS=<n>` runs more).

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::alter::{alter_partition, AlterIsr};
use super::change::NO_LEADER;
use super::election;
use super::placement::{self, NewPartitions};
use super::reassign;
use super::registry::{Registration, Registry, DEFAULT_SESSION_TIMEOUT_MS};
use super::snapshot::ClusterSnapshot;
use super::MetadataRecord;

type Tp = (String, i32);
/// A log entry: a unique record id and the leader epoch it was written in.
type Entry = (u64, i32);

const BROKERS: i32 = 4;
const STEPS: usize = 400;
const CLEAN_TOPIC: &str = "clean";
const UNCLEAN_TOPIC: &str = "unclean";

struct Node {
    id: i32,
    up: bool,
    connected: bool,
    epoch: i64,
    view: ClusterSnapshot,
    logs: BTreeMap<Tp, Vec<Entry>>,
    /// As a leader: each follower's log end, from its fetches, by leader epoch.
    follower_leo: BTreeMap<(Tp, i32), (i32, usize)>,
}

struct Sim {
    rng: StdRng,
    now: u64,
    /// The Raft index of the last committed record (broker epochs are indexes).
    index: i64,
    ctrl: ClusterSnapshot,
    registry: Registry,
    nodes: Vec<Node>,
    /// The longest committed prefix seen per partition of the clean topic.
    committed: BTreeMap<Tp, Vec<Entry>>,
    next_record: u64,
    /// Reassignments that ended (completed or cancelled), to show the runs reach them.
    moves_ended: usize,
    /// The ISR a leader's AlterPartition being committed asks for: its new members caught
    /// up, so the same change may elect one of them (completing a reassignment).
    asked_isr: Vec<i32>,
    trace: Vec<String>,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(seed),
            now: 0,
            index: 0,
            ctrl: ClusterSnapshot::joining(-1, "sim".into()),
            registry: Registry::new(DEFAULT_SESSION_TIMEOUT_MS),
            nodes: (1..=BROKERS)
                .map(|id| Node {
                    id,
                    up: true,
                    connected: true,
                    epoch: 0,
                    view: ClusterSnapshot::joining(id, "sim".into()),
                    logs: BTreeMap::new(),
                    follower_leo: BTreeMap::new(),
                })
                .collect(),
            committed: BTreeMap::new(),
            next_record: 0,
            moves_ended: 0,
            asked_isr: Vec::new(),
            trace: Vec::new(),
        };
        for i in 0..sim.nodes.len() {
            sim.register(i);
            sim.heartbeat(i);
        }
        let random = sim.rng.gen();
        for (name, unclean) in [(CLEAN_TOPIC, "false"), (UNCLEAN_TOPIC, "true")] {
            sim.create_topic(name, unclean, random);
        }
        sim.publish();
        sim
    }

    fn create_topic(&mut self, name: &str, unclean: &str, random: u64) {
        let new = NewPartitions {
            first: 0,
            count: 3,
            replication_factor: 3,
        };
        let placed = placement::assign(&self.ctrl, new, random).expect("enough live brokers");
        self.commit(vec![MetadataRecord::CreateTopic {
            name: name.into(),
            topic_id: [name.len() as u8; 16],
            shards: placed.leader_shards(),
            replication_factor: 3,
            configs: [(
                election::UNCLEAN_LEADER_ELECTION.to_string(),
                unclean.to_string(),
            )]
            .into(),
            replicas: placed.replicas,
            replica_shards: placed.replica_shards,
        }]);
    }

    /// Commits `records` in order, checking each partition change as it applies.
    fn commit(&mut self, records: Vec<MetadataRecord>) {
        for r in records {
            self.index += 1;
            self.trace
                .push(format!("t={} #{} {r:?}", self.now, self.index));
            self.check_change(&r);
            self.count_moves(&r);
            self.ctrl.apply(&r);
        }
        self.check_snapshot();
    }

    /// Connected, running brokers learn the committed metadata.
    fn publish(&mut self) {
        for n in self.nodes.iter_mut().filter(|n| n.up && n.connected) {
            let mut view = self.ctrl.clone();
            view.local_node = n.id;
            n.view = view;
        }
    }

    fn register(&mut self, i: usize) {
        let reg = Registration {
            node_id: self.nodes[i].id,
            host: "h".into(),
            port: 9092,
            rack: None,
            shards: 1,
        };
        let epoch = self.index + 1;
        let records = self
            .registry
            .register(reg, epoch, self.now, &self.ctrl)
            .expect("a new registration has a higher epoch");
        self.nodes[i].epoch = epoch;
        self.commit(records);
    }

    fn heartbeat(&mut self, i: usize) {
        let (id, epoch) = (self.nodes[i].id, self.nodes[i].epoch);
        if let Ok(records) = self
            .registry
            .on_heartbeat(id, epoch, self.now, true, &self.ctrl)
        {
            self.commit(records);
        }
    }

    fn step(&mut self) {
        match self.rng.gen_range(0..100) {
            0..=2 => self.crash(),
            3..=5 => self.restart(),
            6..=8 => self.toggle_network(),
            9 => self.controlled_shutdown(),
            10 => self.registry = Registry::new(DEFAULT_SESSION_TIMEOUT_MS),
            11 => {
                let records = election::preferred_rebalance(&self.ctrl);
                self.commit(records);
            }
            12 => self.now = self.now.saturating_sub(self.rng.gen_range(0..5_000)),
            13 => self.now += 20_000,
            14 => self.reassign(),
            15 => self.cancel_reassignment(),
            _ => {}
        }
        self.now += self.rng.gen_range(0..1_500);
        for i in 0..self.nodes.len() {
            if self.nodes[i].up && self.nodes[i].connected && self.rng.gen_bool(0.8) {
                self.heartbeat(i);
            }
        }
        let records = self.registry.tick(self.now, &self.ctrl);
        self.commit(records);
        self.publish();
        self.replicate();
        self.publish();
    }

    fn pick(&mut self) -> usize {
        self.rng.gen_range(0..self.nodes.len())
    }

    fn crash(&mut self) {
        let i = self.pick();
        self.trace
            .push(format!("t={} crash {}", self.now, self.nodes[i].id));
        self.nodes[i].up = false;
    }

    fn restart(&mut self) {
        let i = self.pick();
        if self.nodes[i].up {
            return;
        }
        self.trace
            .push(format!("t={} restart {}", self.now, self.nodes[i].id));
        let n = &mut self.nodes[i];
        n.up = true;
        n.follower_leo.clear();
        if n.connected {
            self.register(i);
        }
    }

    fn toggle_network(&mut self) {
        let i = self.pick();
        let n = &mut self.nodes[i];
        n.connected = !n.connected;
        self.trace.push(format!(
            "t={} node {} connected={}",
            self.now, n.id, n.connected
        ));
        // A broker that was cut off while restarting registers once it can.
        if n.connected && n.up && self.ctrl.broker(n.id).is_none_or(|b| b.epoch != n.epoch) {
            self.register(i);
        }
    }

    /// Moves a partition to 3 random brokers (KIP-455); it completes through AlterPartition.
    fn reassign(&mut self) {
        let topic = self.random_topic();
        let partition = self.rng.gen_range(0..3);
        let mut target: Vec<i32> = (1..=BROKERS).collect();
        target.remove(self.rng.gen_range(0..target.len()));
        let k = self.rng.gen_range(0..target.len());
        target.rotate_left(k);
        if let Ok(Some(r)) = reassign::start(&self.ctrl, topic, partition, &target) {
            self.commit(vec![r]);
        }
    }

    fn cancel_reassignment(&mut self) {
        let topic = self.random_topic();
        let partition = self.rng.gen_range(0..3);
        if let Ok(r) = reassign::cancel(&self.ctrl, topic, partition) {
            self.commit(vec![r]);
        }
    }

    fn random_topic(&mut self) -> &'static str {
        if self.rng.gen_bool(0.5) {
            CLEAN_TOPIC
        } else {
            UNCLEAN_TOPIC
        }
    }

    fn controlled_shutdown(&mut self) {
        let i = self.pick();
        let (id, epoch, reachable) = {
            let n = &self.nodes[i];
            (n.id, n.epoch, n.up && n.connected)
        };
        if !reachable {
            return;
        }
        if let Ok(records) = self.registry.controlled_shutdown(id, epoch, &self.ctrl) {
            self.commit(records);
        }
        self.nodes[i].up = false;
    }

    /// Leaders take produces; followers fetch; leaders move their HW and ask for ISR
    /// changes.
    fn replicate(&mut self) {
        let tps: Vec<Tp> = self
            .ctrl
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.index)))
            .collect();
        for tp in tps {
            for i in 0..self.nodes.len() {
                self.produce(i, &tp);
            }
            for i in 0..self.nodes.len() {
                self.fetch(i, &tp);
            }
            for i in 0..self.nodes.len() {
                self.lead(i, &tp);
            }
        }
    }

    /// The node's own view of `tp`: (leader, leader epoch), if it knows the partition.
    fn view_of(&self, i: usize, tp: &Tp) -> Option<(i32, i32)> {
        let p = self.nodes[i].view.partition(&tp.0, tp.1)?;
        Some((p.leader, p.leader_epoch))
    }

    fn produce(&mut self, i: usize, tp: &Tp) {
        let id = self.nodes[i].id;
        let Some((leader, epoch)) = self.view_of(i, tp) else {
            return;
        };
        if !self.nodes[i].up || leader != id || !self.rng.gen_bool(0.5) {
            return;
        }
        self.next_record += 1;
        let entry = (self.next_record, epoch);
        self.nodes[i]
            .logs
            .entry(tp.clone())
            .or_default()
            .push(entry);
    }

    /// A follower fetches from the leader it knows, if both are up and connected and the
    /// leader is in the same leader epoch: it truncates its divergent tail (what
    /// OffsetForLeaderEpoch gives) and copies the leader's log.
    fn fetch(&mut self, i: usize, tp: &Tp) {
        let Some((leader, epoch)) = self.view_of(i, tp) else {
            return;
        };
        let me = &self.nodes[i];
        let in_replicas = me
            .view
            .partition(&tp.0, tp.1)
            .is_some_and(|p| p.replicas.contains(&me.id));
        if !me.up || !me.connected || leader == me.id || leader == NO_LEADER || !in_replicas {
            return;
        }
        let Some(l) = self.nodes.iter().position(|n| n.id == leader) else {
            return;
        };
        let ln = &self.nodes[l];
        if !ln.up || !ln.connected || self.view_of(l, tp) != Some((leader, epoch)) {
            return;
        }
        let leader_log = ln.logs.get(tp).cloned().unwrap_or_default();
        let id = self.nodes[i].id;
        let log = self.nodes[i].logs.entry(tp.clone()).or_default();
        let common = log
            .iter()
            .zip(&leader_log)
            .take_while(|(a, b)| a == b)
            .count();
        log.truncate(common);
        log.extend_from_slice(&leader_log[common..]);
        let leo = log.len();
        self.nodes[l]
            .follower_leo
            .insert((tp.clone(), id), (epoch, leo));
    }

    /// A leader computes its high watermark over its ISR and, when connected, asks the
    /// controller to shrink lagging followers out or take caught-up ones in.
    fn lead(&mut self, i: usize, tp: &Tp) {
        let n = &self.nodes[i];
        let Some(p) = n.view.partition(&tp.0, tp.1).cloned() else {
            return;
        };
        if !n.up || p.leader != n.id {
            return;
        }
        let (id, epoch, connected) = (n.id, n.epoch, n.connected);
        let own = n.logs.get(tp).cloned().unwrap_or_default();
        let leo: BTreeMap<i32, usize> = p
            .replicas
            .iter()
            .map(|&b| {
                let known = match n.follower_leo.get(&(tp.clone(), b)) {
                    Some((e, leo)) if *e == p.leader_epoch => *leo,
                    _ => 0,
                };
                (b, if b == id { own.len() } else { known })
            })
            .collect();
        let hw = p.isr.iter().map(|b| leo[b]).min().unwrap_or(0);
        if tp.0 == CLEAN_TOPIC {
            self.record_committed(tp, &own[..hw.min(own.len())]);
        }
        if !connected || !self.rng.gen_bool(0.3) {
            return;
        }
        let mut isr = Vec::new();
        for &b in &p.isr {
            if b == id || leo[&b] == own.len() || self.rng.gen_bool(0.7) {
                isr.push(b);
            }
        }
        for &b in &p.replicas {
            if !isr.contains(&b) && leo[&b] >= hw && leo[&b] == own.len() {
                isr.push(b);
            }
        }
        let req = AlterIsr {
            broker_id: id,
            broker_epoch: epoch,
            topic: tp.0.clone(),
            partition: tp.1,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: isr,
        };
        let registry = &self.registry;
        if let Ok(Some(r)) = alter_partition(&self.ctrl, &req, |b| registry.is_shutting_down(b)) {
            self.asked_isr = req.new_isr;
            self.commit(vec![r]);
            self.asked_isr.clear();
            // The leader counts the new ISR at once (Kafka's "maximal ISR").
            self.publish();
        }
    }

    fn record_committed(&mut self, tp: &Tp, prefix: &[Entry]) {
        let known = self.committed.entry(tp.clone()).or_default();
        let shared = known.len().min(prefix.len());
        assert_eq!(
            known[..shared],
            prefix[..shared],
            "committed records of {tp:?} diverged"
        );
        if prefix.len() > known.len() {
            *known = prefix.to_vec();
        }
    }

    fn count_moves(&mut self, r: &MetadataRecord) {
        let MetadataRecord::PartitionChange {
            topic,
            partition,
            adding,
            removing,
            ..
        } = r
        else {
            return;
        };
        let moving = |p: &super::PartitionInfo| !p.adding.is_empty() || !p.removing.is_empty();
        let was_moving = self.ctrl.partition(topic, *partition).is_some_and(moving);
        if was_moving && adding.is_empty() && removing.is_empty() {
            self.moves_ended += 1;
        }
    }

    /// Checks a partition change against the partition's state before it.
    fn check_change(&self, r: &MetadataRecord) {
        let MetadataRecord::PartitionChange {
            topic,
            partition,
            leader,
            leader_epoch,
            partition_epoch,
            ..
        } = r
        else {
            return;
        };
        let Some(before) = self.ctrl.partition(topic, *partition) else {
            return;
        };
        assert!(
            *leader_epoch >= before.leader_epoch,
            "leader epoch went back: {r:?}"
        );
        assert!(
            *partition_epoch > before.partition_epoch,
            "partition epoch did not grow: {r:?}"
        );
        let new_leader = *leader != NO_LEADER && *leader != before.leader;
        if new_leader && topic == CLEAN_TOPIC {
            let in_sync = before.isr.contains(leader) || self.asked_isr.contains(leader);
            assert!(in_sync, "unclean election while off: {r:?}");
        }
        if new_leader {
            assert!(
                *leader_epoch > before.leader_epoch,
                "new leader, same epoch: {r:?}"
            );
        }
    }

    fn check_snapshot(&self) {
        for t in self.ctrl.topics.values() {
            for p in &t.partitions {
                let where_ = format!("{}-{}", t.name, p.index);
                assert!(!p.isr.is_empty(), "{where_}: empty ISR");
                assert!(
                    p.isr.iter().all(|b| p.replicas.contains(b)),
                    "{where_}: ISR outside replicas"
                );
                if p.leader != NO_LEADER {
                    assert!(
                        p.isr.contains(&p.leader),
                        "{where_}: leader outside the ISR"
                    );
                    assert!(
                        self.ctrl.is_live(p.leader),
                        "{where_}: leader {} fenced",
                        p.leader
                    );
                }
            }
        }
        self.check_no_committed_loss();
    }

    /// Every leader the controller names holds all committed records of the clean topic.
    fn check_no_committed_loss(&self) {
        for (tp, committed) in &self.committed {
            let Some(p) = self.ctrl.partition(&tp.0, tp.1) else {
                continue;
            };
            let Some(leader) = self.nodes.iter().find(|n| n.id == p.leader) else {
                continue;
            };
            let log = leader.logs.get(tp).map_or(&[][..], Vec::as_slice);
            assert!(
                log.len() >= committed.len() && log[..committed.len()] == committed[..],
                "{tp:?}: leader {} lacks committed records ({} committed, log {})",
                leader.id,
                committed.len(),
                log.len()
            );
        }
    }
}

fn run(seed: u64) -> Sim {
    let mut sim = Sim::new(seed);
    for _ in 0..STEPS {
        sim.step();
    }
    sim
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("SLUICE_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let count = std::env::var("SLUICE_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    (0..count).collect()
}

#[test]
fn controller_invariants_hold_under_crashes_cuts_and_clock_jumps() {
    let mut elections = 0usize;
    let mut committed = 0usize;
    let mut moves = 0usize;
    for seed in seeds() {
        let outcome = std::panic::catch_unwind(|| run(seed));
        match outcome {
            Ok(sim) => {
                elections += sim
                    .ctrl
                    .topics
                    .values()
                    .flat_map(|t| &t.partitions)
                    .map(|p| p.leader_epoch as usize)
                    .sum::<usize>();
                committed += sim.committed.values().map(Vec::len).sum::<usize>();
                moves += sim.moves_ended;
            }
            Err(_) => panic!(
                "controller simulation failed for seed {seed}; replay with SLUICE_SIM_SEED={seed} cargo test --lib sim_tests -- --nocapture"
            ),
        }
    }
    eprintln!(
        "simulation: {elections} leader epochs, {committed} committed records, {moves} reassignments ended"
    );
    // The runs must exercise something: leaders moved, records committed, replicas moved.
    assert!(
        elections > 0 && committed > 0 && moves > 0,
        "{elections} elections, {committed} committed, {moves} moves"
    );
}

impl Drop for Sim {
    /// A replayed seed that fails prints the end of its trace.
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("SLUICE_SIM_SEED").is_some() {
            let from = self.trace.len().saturating_sub(300);
            for line in &self.trace[from..] {
                eprintln!("{line}");
            }
        }
    }
}
