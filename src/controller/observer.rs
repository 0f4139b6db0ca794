//! Brokers that are not controller voters (KRaft's observers): they hold no Raft log and
//! take no part in elections; they follow the metadata the quorum committed by pulling it
//! from the voters, and reach the leader for changes like a non-leader voter does.
//!
//! How they follow: a long poll over the controller transport, KRaft-like. The observer
//! sends `FetchMetadata { since }` (the voter applied index it has everything up to) to a
//! voter — the leader when it knows it, else the next voter in turn — which answers once it
//! has applied something after `since` (or after `FETCH_WAIT`) with the records after
//! `since`, or with the whole metadata (compacted records) when it no longer holds them
//! all, plus its applied index and the leader it knows. Any voter can answer: committed
//! entries are the same at the same index on every voter, so switching voters after a
//! failure loses or repeats nothing. An observer past the leader's own applied index holds
//! the history of another quorum (the voters were rebuilt from scratch): the leader sends it
//! everything, which replaces what it had. This was chosen over making observers raft-rs learners
//! because a learner needs a configuration change committed by the leader for every
//! observer (and undoing it when one goes away for good), its own Raft log, and care so a
//! restart does not add it twice; pulling needs none of that, and the voters' retained tail
//! plus the snapshot fallback keep the answer bounded.
//!
//! Restart: after applying an answer the observer writes the compacted records and its
//! position to `<meta>/observer/metadata.json` (temp file, fsync, rename, off the reactor),
//! so it serves the metadata it had at once and resumes from that position.
//!
//! `RecentRecords` (a voter's retained tail) and `Observed` (an observer's state) are pure;
//! `Observer` is the thin I/O shell around them.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::quorum::{compact_records, CommandEnvelope, ControllerCommand, ControllerReply};
use super::raft::node::NodeStatus;
use super::raft::transport;
use super::{ClusterSnapshot, MetadataRecord, PublishSink};
use crate::runtime;

/// How long a voter holds a fetch that has nothing new to answer.
pub const FETCH_WAIT: Duration = Duration::from_millis(1000);
/// How long past `FETCH_WAIT` an observer waits for an answer before trying another voter.
const FETCH_GRACE: Duration = Duration::from_secs(4);
/// Pause after a failed fetch before the next voter is asked.
const FETCH_RETRY: Duration = Duration::from_millis(100);
/// Records a voter keeps for observers beyond its compacted history.
pub const RECENT_RECORDS: usize = 4096;

/// What a voter sends an observer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataDelta {
    /// The records applied after the observer's `since`, in order.
    Records(Vec<MetadataRecord>),
    /// The whole metadata (compacted records): the voter no longer holds every record
    /// after `since`.
    Snapshot(Vec<MetadataRecord>),
}

/// A voter's last applied records with their Raft indexes: every record with an index
/// above `floor` is held (up to a bound; older ones fall off and raise the floor).
#[derive(Debug, Clone)]
pub struct RecentRecords {
    floor: u64,
    records: VecDeque<(u64, MetadataRecord)>,
    cap: usize,
}

impl RecentRecords {
    pub fn new(cap: usize) -> Self {
        Self {
            floor: 0,
            records: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// The record applied at `index`.
    pub fn push(&mut self, index: u64, record: MetadataRecord) {
        if self.records.len() == self.cap {
            if let Some((dropped, _)) = self.records.pop_front() {
                self.floor = dropped;
            }
        }
        self.records.push_back((index, record));
    }

    /// The state was replaced by a snapshot taken at `index`: nothing before it is held.
    pub fn reset(&mut self, index: u64) {
        self.floor = index;
        self.records.clear();
    }

    /// Every held record after `since`, or `None` when some of them are no longer held.
    pub fn since(&self, since: u64) -> Option<Vec<MetadataRecord>> {
        if since < self.floor {
            return None;
        }
        Some(
            self.records
                .iter()
                .filter(|(i, _)| *i > since)
                .map(|(_, r)| r.clone())
                .collect(),
        )
    }
}

/// An observer's metadata: the snapshot it serves, the records that rebuild it, and the
/// voter applied index it holds everything up to.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The snapshot before any record: this broker and the cluster id.
    base: ClusterSnapshot,
    pub snapshot: ClusterSnapshot,
    history: Vec<MetadataRecord>,
    pub applied: u64,
}

/// What `Observed::apply` changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// Records were applied (they must be persisted).
    pub records: bool,
    /// The snapshot changed (records, or the leader): publish it.
    pub snapshot: bool,
}

impl Observed {
    pub fn new(base: ClusterSnapshot) -> Self {
        Self {
            snapshot: base.clone(),
            base,
            history: Vec::new(),
            applied: 0,
        }
    }

    /// Restores what `persisted` holds (from `Persisted::encode`).
    pub fn restore(&mut self, persisted: Persisted) {
        self.applied = persisted.applied;
        self.replace(persisted.records);
    }

    /// Applies a voter's answer: its `delta` up to its applied index `applied`, and the
    /// leader it knows. Records not past what this observer holds (a voter behind the one
    /// asked before) only update the leader. A snapshot always replaces the state, even at
    /// a lower index: the leader sends one to an observer past its own applied index, which
    /// then holds the history of another quorum (one rebuilt from scratch).
    pub fn apply(&mut self, applied: u64, leader: i32, delta: MetadataDelta) -> Applied {
        let mut done = Applied::default();
        match delta {
            MetadataDelta::Records(records) if applied > self.applied => {
                for r in records {
                    self.snapshot.apply(&r);
                    self.history.push(r);
                    done.records = true;
                }
                self.applied = applied;
            }
            MetadataDelta::Records(_) => {}
            MetadataDelta::Snapshot(records) => {
                self.replace(records);
                self.applied = applied;
                done.records = true;
            }
        }
        if self.snapshot.controller_id != leader {
            self.snapshot.controller_id = leader;
            self.snapshot.version += 1;
            done.snapshot = true;
        }
        done.snapshot |= done.records;
        done
    }

    /// The state to write down: compacted records and the position (compacting the
    /// history in memory too).
    pub fn persisted(&mut self) -> Persisted {
        self.history = compact_records(&self.history);
        Persisted {
            applied: self.applied,
            records: self.history.clone(),
        }
    }

    /// Rebuilds the snapshot from `records`, newer than the one it replaces.
    fn replace(&mut self, records: Vec<MetadataRecord>) {
        let mut next = self.base.clone();
        for r in &records {
            next.apply(r);
        }
        next.version = next.version.max(self.snapshot.version) + 1;
        next.controller_id = self.snapshot.controller_id;
        self.snapshot = next;
        self.history = records;
    }
}

/// An observer's metadata on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    pub applied: u64,
    pub records: Vec<MetadataRecord>,
}

const STATE_FILE: &str = "metadata.json";

/// Reads the persisted state in `dir`, if any; an unreadable file is ignored (the
/// observer fetches everything again).
pub fn load(dir: &Path) -> Option<Persisted> {
    let bytes = std::fs::read(dir.join(STATE_FILE)).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(), "unreadable observer metadata ignored");
            None
        }
    }
}

/// Writes `state` to `dir` durably: a temp file, fsynced, renamed over the old one.
fn store(dir: &Path, state: &Persisted) -> std::io::Result<()> {
    use std::io::Write;
    let json = serde_json::to_vec(state).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&json)?;
    f.sync_data()?;
    std::fs::rename(&tmp, dir.join(STATE_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// An observer's place in the cluster: the voters, the leader it last heard of and how far
/// it applied (in `status`), and the task that follows the metadata.
pub struct Observer {
    pub voters: Vec<(u64, SocketAddr)>,
    pub status: Rc<NodeStatus>,
    pub next_request: Cell<u64>,
    /// The voter asked next when no leader is known.
    next_voter: Cell<usize>,
    _follow: runtime::Task<()>,
}

impl Observer {
    /// Starts following the quorum `voters`, from the state persisted in `dir` if any;
    /// `current` is the snapshot the controller reads, `publish` hands new ones to shards.
    pub fn start(
        dir: &Path,
        voters: &[(u64, SocketAddr)],
        base: ClusterSnapshot,
        current: Rc<RefCell<Arc<ClusterSnapshot>>>,
        publish: Rc<PublishSink>,
    ) -> std::io::Result<Observer> {
        std::fs::create_dir_all(dir)?;
        let mut state = Observed::new(base);
        if let Some(p) = load(dir) {
            tracing::info!(
                applied = p.applied,
                records = p.records.len(),
                "observer resumes from its persisted metadata"
            );
            state.restore(p);
        }
        *current.borrow_mut() = Arc::new(state.snapshot.clone());
        let status = Rc::new(NodeStatus::default());
        status.set_applied(state.applied, 0);
        let follower = Follower {
            dir: dir.to_owned(),
            voters: voters.to_vec(),
            status: status.clone(),
            current,
            publish,
        };
        Ok(Observer {
            voters: voters.to_vec(),
            status,
            next_request: Cell::new(1),
            next_voter: Cell::new(0),
            _follow: runtime::spawn(follower.run(state)),
        })
    }

    /// The voter to send a command to: the leader if known, else the voters in turn (one
    /// that is not the leader answers with the leader it knows).
    pub fn target(&self) -> Option<(u64, SocketAddr)> {
        let leader = self.status.leader.get();
        if let Some(&(id, addr)) = self.voters.iter().find(|(id, _)| *id == leader) {
            return Some((id, addr));
        }
        let i = self.next_voter.get();
        self.next_voter.set(i.wrapping_add(1));
        self.voters.get(i % self.voters.len().max(1)).copied()
    }

    /// A voter named `leader` as the leader (-1: it knows none).
    pub fn heard_leader(&self, leader: i32) {
        if leader > 0 {
            self.status.leader.set(leader as u64);
        }
    }

    pub fn leader_id(&self) -> i32 {
        match self.status.leader.get() {
            0 => -1,
            id => id as i32,
        }
    }
}

/// The task state of an observer: asks the voters for metadata, applies, persists and
/// publishes it.
struct Follower {
    dir: PathBuf,
    voters: Vec<(u64, SocketAddr)>,
    status: Rc<NodeStatus>,
    current: Rc<RefCell<Arc<ClusterSnapshot>>>,
    publish: Rc<PublishSink>,
}

impl Follower {
    async fn run(self, mut state: Observed) {
        let mut turn = 0usize;
        let mut request_id = 0u64;
        loop {
            let leader = self.status.leader.get();
            let (voter, addr) = match self.voters.iter().find(|(id, _)| *id == leader) {
                Some(&v) => v,
                None => {
                    turn = turn.wrapping_add(1);
                    self.voters[turn % self.voters.len()]
                }
            };
            request_id += 1;
            let envelope = CommandEnvelope {
                id: request_id,
                command: ControllerCommand::FetchMetadata {
                    since: state.applied,
                    max_wait_ms: FETCH_WAIT.as_millis() as u64,
                },
            };
            let payload = serde_json::to_vec(&envelope).unwrap_or_default();
            let answer = transport::request(addr, &payload, FETCH_WAIT + FETCH_GRACE).await;
            let reply = answer.ok().and_then(|bytes| {
                serde_json::from_slice::<super::quorum::ReplyEnvelope>(&bytes).ok()
            });
            match reply.map(|r| r.reply) {
                Some(ControllerReply::Metadata {
                    leader,
                    applied,
                    delta,
                }) => self.take(&mut state, applied, leader, delta).await,
                _ => {
                    tracing::debug!(voter, %addr, "metadata fetch failed; trying another voter");
                    if self.status.leader.get() == voter {
                        // It may be gone: find the leader through the others.
                        self.status.leader.set(0);
                    }
                    runtime::sleep(FETCH_RETRY).await;
                }
            }
        }
    }

    /// Applies one answer: persists new records, publishes a changed snapshot, then moves
    /// the applied position (waking commands forwarded from here that wait for it).
    async fn take(&self, state: &mut Observed, applied: u64, leader: i32, delta: MetadataDelta) {
        let done = state.apply(applied, leader, delta);
        let known = if leader > 0 { leader as u64 } else { 0 };
        if self.status.leader.replace(known) != known {
            tracing::info!(leader, "observer: controller leader changed");
        }
        if done.records {
            let persisted = state.persisted();
            let dir = self.dir.clone();
            if let Err(e) = runtime::off_reactor(move || store(&dir, &persisted)).await {
                tracing::warn!(error = %e, "observer: writing the metadata failed");
            }
        }
        if done.snapshot {
            let snapshot = Arc::new(state.snapshot.clone());
            *self.current.borrow_mut() = snapshot.clone();
            (self.publish)(snapshot).await;
        }
        self.status.set_applied(state.applied, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::BrokerInfo;
    use std::collections::BTreeMap;

    fn topic(name: &str) -> MetadataRecord {
        MetadataRecord::CreateTopic {
            name: name.into(),
            topic_id: [1; 16],
            shards: vec![0],
            replication_factor: 1,
            configs: BTreeMap::new(),
            replicas: vec![vec![1]],
            replica_shards: vec![vec![0]],
        }
    }

    fn base() -> ClusterSnapshot {
        let broker = BrokerInfo {
            node_id: 4,
            host: "h".into(),
            port: 1,
            rack: None,
            shards: 1,
            epoch: 0,
            fenced: false,
        };
        let mut s = ClusterSnapshot::empty(broker, "c".into());
        s.controller_id = -1;
        s
    }

    #[test]
    fn recent_records_answer_from_the_floor_and_fall_back_below_it() {
        let mut r = RecentRecords::new(2);
        assert_eq!(r.since(0), Some(vec![]));
        r.push(3, topic("a"));
        r.push(5, topic("b"));
        assert_eq!(r.since(0), Some(vec![topic("a"), topic("b")]));
        assert_eq!(r.since(3), Some(vec![topic("b")]));
        assert_eq!(r.since(5), Some(vec![]));
        r.push(8, topic("c"));
        assert_eq!(r.since(2), None, "index 3 fell off");
        assert_eq!(r.since(3), Some(vec![topic("b"), topic("c")]));
        r.reset(20);
        assert_eq!(r.since(8), None);
        assert_eq!(r.since(20), Some(vec![]));
    }

    #[test]
    fn observed_applies_records_snapshots_and_leaders_in_order() {
        let mut o = Observed::new(base());
        let done = o.apply(4, 2, MetadataDelta::Records(vec![topic("a")]));
        assert_eq!(
            done,
            Applied {
                records: true,
                snapshot: true
            }
        );
        assert_eq!((o.applied, o.snapshot.controller_id), (4, 2));
        assert!(o.snapshot.topics.contains_key("a"));
        let v = o.snapshot.version;

        // A voter behind: nothing applied, nothing lost.
        let done = o.apply(3, 2, MetadataDelta::Records(vec![]));
        assert_eq!(done, Applied::default());
        assert_eq!(o.applied, 4);

        // A new leader alone still changes the snapshot.
        let done = o.apply(4, 3, MetadataDelta::Records(vec![]));
        assert!(done.snapshot && !done.records);
        assert!(o.snapshot.version > v);

        // A snapshot replaces everything, with a newer version.
        let v = o.snapshot.version;
        let done = o.apply(9, 3, MetadataDelta::Snapshot(vec![topic("b")]));
        assert!(done.records);
        assert!(o.snapshot.version > v);
        assert_eq!(o.snapshot.topics.keys().collect::<Vec<_>>(), vec!["b"]);
        assert_eq!(o.snapshot.local_node, 4);
        assert_eq!(o.snapshot.controller_id, 3);

        // A leader behind this observer: another history, which replaces this one.
        let done = o.apply(2, 1, MetadataDelta::Snapshot(vec![topic("c")]));
        assert!(done.records);
        assert_eq!(o.applied, 2);
        assert_eq!(o.snapshot.topics.keys().collect::<Vec<_>>(), vec!["c"]);

        // What is persisted restores the same topics at the same position.
        let p = o.persisted();
        let mut again = Observed::new(base());
        again.restore(serde_json::from_slice(&serde_json::to_vec(&p).unwrap()).unwrap());
        assert_eq!(again.applied, 2);
        assert_eq!(again.snapshot.topics, o.snapshot.topics);
    }

    fn broker(node_id: i32) -> BrokerInfo {
        BrokerInfo {
            node_id,
            host: "127.0.0.1".into(),
            port: 9000 + node_id,
            rack: None,
            shards: 1,
            epoch: 0,
            fenced: false,
        }
    }

    fn defaults() -> crate::controller::TopicDefaults {
        crate::controller::TopicDefaults {
            num_partitions: 1,
            replication_factor: 1,
        }
    }

    fn no_publish() -> PublishSink {
        Box::new(|_| Box::pin(async {}))
    }

    #[test]
    fn an_observer_follows_a_voter_forwards_changes_and_restarts_from_its_copy() {
        use crate::controller::registry::Registration;
        use crate::controller::{Controller, NewTopic};
        let (vdir, odir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        runtime::block_on(async {
            let addr = runtime::probe_listen("127.0.0.1:0".parse().unwrap()).unwrap();
            let voters = [(1, addr)];
            let voter = Controller::open_quorum(
                vdir.path(),
                broker(1),
                1,
                defaults(),
                no_publish(),
                &voters,
                addr,
            )
            .unwrap();
            for _ in 0..100 {
                if voter.leads() {
                    break;
                }
                runtime::sleep(Duration::from_millis(50)).await;
            }
            assert!(voter.leads());
            let observer = Controller::open_observer(
                odir.path(),
                broker(4),
                1,
                defaults(),
                no_publish(),
                &voters,
            )
            .unwrap();
            assert!(observer.is_observer() && !observer.leads());
            let reg = Registration {
                node_id: 4,
                host: "127.0.0.1".into(),
                port: 9004,
                rack: None,
                shards: 1,
            };
            let epoch = observer.register_broker(reg, 7).await.unwrap();
            observer.broker_heartbeat(4, epoch).await.unwrap();
            // The forwarded command returns once the observer applied its outcome.
            assert!(observer.snapshot().is_live(4));
            assert_eq!(observer.controller_leader(), 1);
            let topic = NewTopic {
                name: "t".into(),
                num_partitions: 2,
                replication_factor: 1,
                configs: BTreeMap::new(),
                assignments: Vec::new(),
            };
            let created = observer.create_topics(vec![topic], false).await;
            assert_eq!(
                created[0].result.as_ref().map(|t| t.partitions.len()),
                Ok(2)
            );
            assert!(voter.snapshot().topics.contains_key("t"));
            assert!(!vdir.path().join("observer").exists());
            assert!(
                !odir.path().join("raft").exists(),
                "an observer has no raft log"
            );

            drop(observer);
            let again = Controller::open_observer(
                odir.path(),
                broker(4),
                1,
                defaults(),
                no_publish(),
                &voters,
            )
            .unwrap();
            assert!(
                again.snapshot().topics.contains_key("t"),
                "served from its persisted copy before any fetch"
            );
            voter.delete_topics(vec!["t".into()]).await;
            for _ in 0..100 {
                if !again.snapshot().topics.contains_key("t") {
                    break;
                }
                runtime::sleep(Duration::from_millis(20)).await;
            }
            assert!(
                !again.snapshot().topics.contains_key("t"),
                "and follows on from it"
            );
        });
    }

    /// A voter of `voters` on `dir`, once it leads.
    async fn leading_voter(
        dir: &Path,
        voters: &[(u64, SocketAddr)],
    ) -> Rc<crate::controller::Controller> {
        let addr = voters[0].1;
        let voter = crate::controller::Controller::open_quorum(
            dir,
            broker(1),
            1,
            defaults(),
            no_publish(),
            voters,
            addr,
        )
        .unwrap();
        for _ in 0..100 {
            if voter.leads() {
                return voter;
            }
            runtime::sleep(Duration::from_millis(50)).await;
        }
        panic!("the voter never led");
    }

    #[test]
    fn an_observer_ahead_of_a_rebuilt_quorum_takes_its_history() {
        use crate::controller::{Controller, NewTopic};
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        runtime::block_on(async {
            let addr = runtime::probe_listen("127.0.0.1:0".parse().unwrap()).unwrap();
            let voters = [(1, addr)];
            let old = leading_voter(dirs[0].path(), &voters).await;
            for name in ["a", "b", "c"] {
                let t = NewTopic {
                    name: name.into(),
                    num_partitions: 1,
                    replication_factor: 1,
                    configs: BTreeMap::new(),
                    assignments: Vec::new(),
                };
                assert!(old.create_topics(vec![t], false).await[0].result.is_ok());
            }
            let o = Controller::open_observer(
                dirs[2].path(),
                broker(4),
                1,
                defaults(),
                no_publish(),
                &voters,
            )
            .unwrap();
            for _ in 0..100 {
                if o.snapshot().topics.len() == 3 {
                    break;
                }
                runtime::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(o.snapshot().topics.len(), 3);
            drop((o, old));
            // The quorum starts again from an empty log, at the same address.
            let fresh = leading_voter(dirs[1].path(), &voters).await;
            assert!(fresh.snapshot().topics.is_empty());
            let o = Controller::open_observer(
                dirs[2].path(),
                broker(4),
                1,
                defaults(),
                no_publish(),
                &voters,
            )
            .unwrap();
            assert_eq!(o.snapshot().topics.len(), 3, "its persisted copy first");
            for _ in 0..100 {
                if o.snapshot().topics.is_empty() {
                    break;
                }
                runtime::sleep(Duration::from_millis(20)).await;
            }
            assert!(
                o.snapshot().topics.is_empty(),
                "then the new quorum's history"
            );
        });
    }

    #[test]
    fn persisted_state_survives_a_rewrite_and_garbage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), None);
        let p = Persisted {
            applied: 7,
            records: vec![topic("a")],
        };
        store(dir.path(), &p).unwrap();
        store(dir.path(), &p).unwrap();
        assert_eq!(load(dir.path()), Some(p));
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        assert_eq!(load(dir.path()), None);
    }
}
