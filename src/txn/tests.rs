//! Deterministic tests of the transaction coordinator: its answers one request at a time, and
//! generated schedules (replayable from proptest's seed) of concurrent producer instances
//! sharing transactional ids, producer crashes, coordinator restarts, failed state writes,
//! clock jumps and late markers, run against the real partition producer state. After every
//! schedule the invariants of exactly-once hold for a read_committed reader: a transaction
//! the client saw commit is visible in full, one that aborted or failed never is, one whose
//! outcome the client did not learn is all or nothing, and no transaction is left open.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use proptest::prelude::*;

use super::coordinator::*;
use super::state::{TxnMetadata, TxnStatus};
use crate::base::KafkaCode;
use crate::partition::producer_state::{AppendCheck, BatchIdentity, ProducerStateTable};
use crate::protocol::batch::ControlType;

const TIMEOUT_MS: i32 = 10_000;

fn config() -> TxnConfig {
    TxnConfig {
        max_timeout_ms: 900_000,
        id_expiration_ms: 7 * 24 * 3600 * 1000,
    }
}

/// Runs a decision as the shell would, every state write succeeding.
fn durable<R>(c: &mut TxnCoordinator, d: Decision<R>) -> (Result<R, KafkaCode>, Option<MarkerJob>) {
    match d {
        Decision::Reply(r) => (r, None),
        Decision::Persist(t, r) => {
            let job = c.persisted(&t.txn_id, true);
            (r, job)
        }
        Decision::NeedsProducerId => panic!("needs a producer id"),
    }
}

fn init(c: &mut TxnCoordinator, id: &str, fresh: i64, now: i64) -> ProducerRef {
    let d = match c.init_producer_id(id, TIMEOUT_MS, None, None, now) {
        Decision::NeedsProducerId => c.init_producer_id(id, TIMEOUT_MS, None, Some(fresh), now),
        d => d,
    };
    durable(c, d).0.expect("init")
}

#[test]
fn first_init_allocates_and_a_second_instance_bumps_the_epoch() {
    let mut c = TxnCoordinator::new(config());
    let a = init(&mut c, "t", 100, 0);
    assert_eq!((a.producer_id, a.epoch), (100, 0));
    let b = init(&mut c, "t", 999, 1);
    assert_eq!((b.producer_id, b.epoch), (100, 1));
    // The old instance is fenced.
    let d = c.add_partitions("t", a, &[("x".into(), 0)], 2);
    assert_eq!(durable(&mut c, d).0, Err(KafkaCode::ProducerFenced));
}

#[test]
fn timeout_over_the_maximum_is_refused() {
    let mut c = TxnCoordinator::new(config());
    let d = c.init_producer_id("t", 900_001, None, Some(1), 0);
    assert_eq!(
        d,
        Decision::Reply(Err(KafkaCode::InvalidTransactionTimeout))
    );
}

#[test]
fn commit_writes_markers_then_completes() {
    let mut c = TxnCoordinator::new(config());
    let p = init(&mut c, "t", 1, 0);
    let d = c.add_partitions("t", p, &[("x".into(), 0), ("y".into(), 1)], 1);
    assert_eq!(durable(&mut c, d).0, Ok(()));
    assert_eq!(c.get("t").unwrap().status, TxnStatus::Ongoing);
    let d = c.end_txn("t", p, true, 2);
    let (r, job) = durable(&mut c, d);
    assert_eq!(r, Ok(()));
    let job = job.expect("markers to write");
    assert!(job.commit);
    assert_eq!(job.partitions.len(), 2);
    // Until the markers are written the id is busy.
    let d = c.add_partitions("t", p, &[("x".into(), 0)], 3);
    assert_eq!(d, Decision::Reply(Err(KafkaCode::ConcurrentTransactions)));
    let t = c.markers_written("t", 4).unwrap();
    assert_eq!(t.to.status, TxnStatus::CompleteCommit);
    c.persisted("t", true);
    // A retried commit is answered OK; an abort now is INVALID_TXN_STATE.
    assert_eq!(c.end_txn("t", p, true, 5), Decision::Reply(Ok(())));
    assert_eq!(
        c.end_txn("t", p, false, 5),
        Decision::Reply(Err(KafkaCode::InvalidTxnState))
    );
}

#[test]
fn open_transaction_past_its_timeout_is_aborted_with_a_bumped_epoch() {
    let mut c = TxnCoordinator::new(config());
    let p = init(&mut c, "t", 1, 0);
    let d = c.add_partitions("t", p, &[("x".into(), 0)], 100);
    durable(&mut c, d).0.unwrap();
    assert!(c.tick(100 + i64::from(TIMEOUT_MS)).is_empty());
    let due = c.tick(101 + i64::from(TIMEOUT_MS));
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].to.status, TxnStatus::PrepareAbort);
    assert_eq!(due[0].to.epoch, 1);
    let job = c.persisted("t", true).unwrap();
    assert!(!job.commit && job.epoch == 1);
    assert_eq!(
        c.end_txn("t", p, true, 20_000),
        Decision::Reply(Err(KafkaCode::ProducerFenced))
    );
}

#[test]
fn failed_state_write_leaves_the_old_state() {
    let mut c = TxnCoordinator::new(config());
    let p = init(&mut c, "t", 1, 0);
    let d = c.add_partitions("t", p, &[("x".into(), 0)], 1);
    assert!(matches!(d, Decision::Persist(..)));
    assert_eq!(c.persisted("t", false), None);
    assert_eq!(c.get("t").unwrap().status, TxnStatus::Empty);
}

#[test]
fn idle_ids_expire() {
    let mut c = TxnCoordinator::new(TxnConfig {
        id_expiration_ms: 1000,
        ..config()
    });
    init(&mut c, "t", 1, 0);
    let due = c.tick(1000);
    assert_eq!(due[0].to.status, TxnStatus::Dead);
    c.persisted("t", true);
    assert!(c.get("t").is_none());
}

#[test]
fn list_filters_by_state_and_producer() {
    let mut c = TxnCoordinator::new(config());
    let a = init(&mut c, "a", 1, 0);
    init(&mut c, "b", 2, 0);
    let d = c.add_partitions("a", a, &[("x".into(), 0)], 1);
    durable(&mut c, d).0.unwrap();
    let ongoing = c.list(&["Ongoing".into()], &[], -1, 2);
    assert_eq!(ongoing.len(), 1);
    assert_eq!(ongoing[0].txn_id, "a");
    assert_eq!(c.list(&[], &[2], -1, 2)[0].txn_id, "b");
    assert_eq!(c.list(&[], &[], -1, 2).len(), 2);
}

// ---------------------------------------------------------------------------------------
// Generated schedules.

const IDS: usize = 2;
const PARTITIONS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    /// A new producer instance for transactional id `id` (a restart after a crash, or a
    /// second instance running at the same time; the old one keeps acting as a zombie).
    NewInstance {
        id: usize,
    },
    Send {
        instance: usize,
        partition: usize,
        records: u8,
    },
    End {
        instance: usize,
        commit: bool,
    },
    /// The shell writes the markers of one decided transaction.
    DeliverMarkers,
    ClockJump {
        ms: u16,
    },
    /// The next state write fails.
    FailNextWrite,
    /// The coordinator restarts: state rebuilt from what was written, markers re-derived.
    CoordinatorRestart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..IDS).prop_map(|id| Op::NewInstance { id }),
        6 => (0..6usize, 0..PARTITIONS, 1..4u8)
            .prop_map(|(instance, partition, records)| Op::Send { instance, partition, records }),
        3 => (0..6usize, any::<bool>()).prop_map(|(instance, commit)| Op::End { instance, commit }),
        3 => Just(Op::DeliverMarkers),
        1 => (0..15_000u16).prop_map(|ms| Op::ClockJump { ms }),
        1 => Just(Op::FailNextWrite),
        1 => Just(Op::CoordinatorRestart),
    ]
}

/// What the client knows of a transaction's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Committed,
    /// Aborted, fenced, timed out or refused: its records must never be visible.
    NotCommitted,
    /// The client never learned (a commit whose answer was lost, or still open at the end).
    Unknown,
}

#[derive(Debug, Clone)]
enum Entry {
    Data { producer_id: i64, txn: u64 },
    Marker { producer_id: i64, commit: bool },
}

#[derive(Default)]
struct PartitionModel {
    producers: ProducerStateTable,
    log: Vec<Entry>,
}

impl PartitionModel {
    fn next_offset(&self) -> i64 {
        self.log.len() as i64
    }
}

struct Instance {
    txn_id: String,
    producer: Option<ProducerRef>,
    txn: Option<u64>,
    added: BTreeSet<usize>,
    sequences: HashMap<usize, i32>,
}

struct Sim {
    coordinator: TxnCoordinator,
    /// Every state record written, in order: what a restart reads back.
    written: Vec<(String, Option<TxnMetadata>)>,
    partitions: Vec<PartitionModel>,
    jobs: VecDeque<MarkerJob>,
    instances: Vec<Instance>,
    outcomes: BTreeMap<u64, Outcome>,
    now: i64,
    next_producer_id: i64,
    next_txn: u64,
    fail_next_write: bool,
}

impl Sim {
    fn new() -> Self {
        Self {
            coordinator: TxnCoordinator::new(config()),
            written: Vec::new(),
            partitions: (0..PARTITIONS).map(|_| PartitionModel::default()).collect(),
            jobs: VecDeque::new(),
            instances: Vec::new(),
            outcomes: BTreeMap::new(),
            now: 0,
            next_producer_id: 1000,
            next_txn: 1,
            fail_next_write: false,
        }
    }

    fn write(&mut self, t: Transition) -> bool {
        let ok = !std::mem::take(&mut self.fail_next_write);
        if ok {
            let value = (t.to.status != TxnStatus::Dead).then(|| t.to.clone());
            self.written.push((t.txn_id.clone(), value));
        }
        if let Some(job) = self.coordinator.persisted(&t.txn_id, ok) {
            self.jobs.push_back(job);
        }
        ok
    }

    fn run<R>(&mut self, d: Decision<R>) -> Result<R, KafkaCode> {
        match d {
            Decision::Reply(r) => r,
            Decision::Persist(t, r) => {
                if self.write(t) {
                    r
                } else {
                    Err(KafkaCode::KafkaStorageError)
                }
            }
            Decision::NeedsProducerId => unreachable!("handled by init"),
        }
    }

    fn new_instance(&mut self, id: usize) {
        let txn_id = format!("tx-{id}");
        let mut fresh = None;
        let producer = loop {
            let d = self
                .coordinator
                .init_producer_id(&txn_id, TIMEOUT_MS, None, fresh, self.now);
            if d == Decision::NeedsProducerId {
                self.next_producer_id += 1;
                fresh = Some(self.next_producer_id);
                continue;
            }
            break self.run(d).ok();
        };
        self.instances.push(Instance {
            txn_id,
            producer,
            txn: None,
            added: BTreeSet::new(),
            sequences: HashMap::new(),
        });
    }

    fn send(&mut self, i: usize, partition: usize, records: u8) {
        let Some(inst) = self.instances.get(i) else {
            return;
        };
        let Some(producer) = inst.producer else {
            return;
        };
        let txn_id = inst.txn_id.clone();
        if !inst.added.contains(&partition) {
            let d = self.coordinator.add_partitions(
                &txn_id,
                producer,
                &[(format!("p{partition}"), partition as i32)],
                self.now,
            );
            if self.run(d).is_err() {
                return;
            }
            let inst = &mut self.instances[i];
            inst.added.insert(partition);
            if inst.txn.is_none() {
                inst.txn = Some(self.next_txn);
                self.outcomes.insert(self.next_txn, Outcome::Unknown);
                self.next_txn += 1;
            }
        }
        let inst = &mut self.instances[i];
        let Some(txn) = inst.txn else { return };
        let seq = *inst.sequences.get(&partition).unwrap_or(&0);
        let id = BatchIdentity {
            producer_id: producer.producer_id,
            epoch: producer.epoch,
            first_seq: seq,
            last_seq: seq + i32::from(records) - 1,
            transactional: true,
        };
        let part = &mut self.partitions[partition];
        if part.producers.check_append(&id) != Ok(AppendCheck::New) {
            return;
        }
        let base = part.next_offset();
        for _ in 0..records {
            part.log.push(Entry::Data {
                producer_id: producer.producer_id,
                txn,
            });
        }
        part.producers
            .on_append(&id, base, part.next_offset() - 1, self.now);
        inst.sequences.insert(partition, seq + i32::from(records));
    }

    fn end(&mut self, i: usize, commit: bool) {
        let Some(inst) = self.instances.get(i) else {
            return;
        };
        let (Some(producer), Some(txn)) = (inst.producer, inst.txn) else {
            return;
        };
        let txn_id = inst.txn_id.clone();
        let d = self
            .coordinator
            .end_txn(&txn_id, producer, commit, self.now);
        let outcome = match self.run(d) {
            Ok(()) if commit => Outcome::Committed,
            Ok(()) => Outcome::NotCommitted,
            // Busy: the client retries later.
            Err(KafkaCode::ConcurrentTransactions) => return,
            // A failed state write: the decision may or may not be durable... it is not:
            // a failed write leaves the old state, so the transaction is still open.
            Err(KafkaCode::KafkaStorageError) => return,
            Err(_) => Outcome::NotCommitted,
        };
        self.outcomes.insert(txn, outcome);
        let inst = &mut self.instances[i];
        inst.txn = None;
        inst.added.clear();
    }

    fn deliver_markers(&mut self) {
        let Some(job) = self.jobs.pop_front() else {
            return;
        };
        let kind = if job.commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        };
        for (_, p) in &job.partitions {
            let part = &mut self.partitions[*p as usize];
            if part
                .producers
                .check_marker(job.producer_id, job.epoch, 0)
                .is_err()
            {
                continue;
            }
            let offset = part.next_offset();
            part.log.push(Entry::Marker {
                producer_id: job.producer_id,
                commit: job.commit,
            });
            part.producers
                .on_marker(job.producer_id, job.epoch, 0, kind, offset, self.now);
        }
        if let Some(t) = self.coordinator.markers_written(&job.txn_id, self.now) {
            self.write(t);
        }
    }

    fn tick(&mut self) {
        for t in self.coordinator.tick(self.now) {
            self.write(t);
        }
    }

    fn restart_coordinator(&mut self) {
        let mut fresh = TxnCoordinator::new(config());
        for (id, meta) in &self.written {
            fresh.load(id.clone(), meta.clone());
        }
        self.coordinator = fresh;
        self.jobs = self.coordinator.unfinished().into();
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::NewInstance { id } => self.new_instance(id),
            Op::Send {
                instance,
                partition,
                records,
            } => self.send(instance, partition, records),
            Op::End { instance, commit } => self.end(instance, commit),
            Op::DeliverMarkers => self.deliver_markers(),
            Op::ClockJump { ms } => {
                self.now += i64::from(ms);
                self.tick();
            }
            Op::FailNextWrite => self.fail_next_write = true,
            Op::CoordinatorRestart => self.restart_coordinator(),
        }
    }

    /// Lets every open transaction time out and every marker be written.
    fn settle(&mut self) {
        self.fail_next_write = false;
        for _ in 0..10 {
            while !self.jobs.is_empty() {
                self.deliver_markers();
            }
            self.now += i64::from(TIMEOUT_MS) + 1;
            self.tick();
        }
        while !self.jobs.is_empty() {
            self.deliver_markers();
        }
    }

    /// Records of each transaction a read_committed reader sees, and those it does not.
    fn visibility(&self) -> BTreeMap<u64, (usize, usize)> {
        let mut seen: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
        for part in &self.partitions {
            let mut open: HashMap<i64, Vec<u64>> = HashMap::new();
            for e in &part.log {
                match e {
                    Entry::Data { producer_id, txn } => {
                        open.entry(*producer_id).or_default().push(*txn)
                    }
                    Entry::Marker {
                        producer_id,
                        commit,
                    } => {
                        for txn in open.remove(producer_id).unwrap_or_default() {
                            let v = seen.entry(txn).or_default();
                            if *commit {
                                v.0 += 1;
                            } else {
                                v.1 += 1;
                            }
                        }
                    }
                }
            }
            for txn in open.into_values().flatten() {
                seen.entry(txn).or_default().1 += 1;
            }
        }
        seen
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn exactly_once_invariants_hold_under_generated_schedules(
        ops in proptest::collection::vec(op(), 1..80)
    ) {
        let mut sim = Sim::new();
        for id in 0..IDS {
            sim.new_instance(id);
        }
        for op in &ops {
            sim.apply(op);
        }
        sim.settle();
        for (p, part) in sim.partitions.iter().enumerate() {
            prop_assert_eq!(
                part.producers.first_unstable_offset(),
                None,
                "partition {} has a transaction left open", p
            );
        }
        let seen = sim.visibility();
        for (txn, outcome) in &sim.outcomes {
            let (visible, hidden) = seen.get(txn).copied().unwrap_or_default();
            match outcome {
                Outcome::Committed => prop_assert_eq!(hidden, 0, "committed txn {} partly hidden", txn),
                Outcome::NotCommitted => prop_assert_eq!(visible, 0, "failed txn {} visible", txn),
                Outcome::Unknown => prop_assert!(
                    visible == 0 || hidden == 0,
                    "txn {} half visible: {} visible, {} hidden", txn, visible, hidden
                ),
            }
        }
    }
}

#[test]
fn a_marker_for_a_partition_the_cluster_still_has_is_retried() {
    use super::marker_error_is_final;
    // Opening at start or moving: retried until it lands.
    assert!(!marker_error_is_final(
        KafkaCode::UnknownTopicOrPartition,
        true
    ));
    // Deleted: Kafka drops the marker too.
    assert!(marker_error_is_final(
        KafkaCode::UnknownTopicOrPartition,
        false
    ));
    assert!(marker_error_is_final(KafkaCode::InvalidProducerEpoch, true));
    assert!(!marker_error_is_final(KafkaCode::NotLeaderOrFollower, true));
}
