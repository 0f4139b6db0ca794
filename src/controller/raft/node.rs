//! One Raft voter driven from a task on the controller shard: a raft-rs `RawNode` fed with
//! ticks (every 100 ms), messages from the transport and proposals, and its `Ready`s handled
//! in the order raft-rs requires: make the snapshot, entries and hard state durable, then
//! send messages, then apply committed entries to the state machine, then advance.
//!
//! A proposal resolves once its entry is committed *and applied* (so the proposer reads its
//! own change), or fails with [`ProposeError::NotLeader`] when this voter is not (or stops
//! being) the leader, or its entry was replaced by another leader's. Every
//! `SNAPSHOT_INTERVAL` applied entries the state machine's snapshot replaces the log prefix.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use raft::prelude::{Entry, EntryType, Message, RawNode};
use raft::StateRole;

use super::storage::{DiskStorage, Persist};
use super::transport::Transport;
use crate::runtime;

pub const TICK: Duration = Duration::from_millis(100);
const ELECTION_TICK: usize = 10;
const HEARTBEAT_TICK: usize = 1;
/// Applied entries between two snapshots of the state machine.
pub const SNAPSHOT_INTERVAL: u64 = 1000;

/// What the replicated log drives: committed entries in order, snapshots to restore.
pub trait StateMachine {
    /// Applies the committed entry at `index`.
    fn apply(&self, index: u64, data: &[u8]);
    /// The whole state, to stand in for the entries up to the last applied one.
    fn snapshot_data(&self) -> Vec<u8>;
    /// Replaces the state with a snapshot taken at `index`.
    fn restore(&self, index: u64, data: &[u8]);
    /// The leader is now `leader` (0: unknown).
    fn leader_changed(&self, leader: u64);
    /// Called after each round of ready handling (publishing the state if it changed).
    fn applied(&self) -> LocalBoxFuture<'static, ()>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposeError {
    /// Not the leader (any more); `leader` is the one this voter knows of (0: none).
    NotLeader {
        leader: u64,
    },
    Storage(String),
}

enum Event {
    Tick,
    Message(Message),
    Propose {
        data: Vec<u8>,
        done: oneshot::Sender<Result<u64, ProposeError>>,
    },
}

/// The shared view of the node other tasks read: who leads, how far this voter applied.
#[derive(Default)]
pub struct NodeStatus {
    pub leader: Cell<u64>,
    pub is_leader: Cell<bool>,
    /// The term of the last applied entry: once it is the leader's own term, the leader
    /// has applied everything earlier leaders committed, so it may validate new changes.
    pub applied_term: Cell<u64>,
    pub term: Cell<u64>,
    pub applied: Cell<u64>,
    /// Woken whenever `applied` moves.
    waiters: std::cell::RefCell<Vec<(u64, oneshot::Sender<()>)>>,
}

impl NodeStatus {
    /// True when this voter leads and has applied an entry of its own term.
    pub fn is_ready_leader(&self) -> bool {
        self.is_leader.get() && self.applied_term.get() == self.term.get()
    }

    /// Completes once `index` is applied here (at once if it already is).
    pub async fn wait_applied(&self, index: u64) {
        if self.applied.get() >= index {
            return;
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut waiters = self.waiters.borrow_mut();
            // Waiters that gave up (a timed-out long poll) go, so a quiet log does not pile
            // them up.
            waiters.retain(|(_, tx)| !tx.is_canceled());
            waiters.push((index, tx));
        }
        let _ = rx.await;
    }

    /// Moves the applied index (and its term), waking whoever waits for it.
    pub fn set_applied(&self, index: u64, term: u64) {
        self.applied.set(index);
        self.applied_term.set(term);
        let mut waiters = self.waiters.borrow_mut();
        let (ready, waiting): (Vec<_>, Vec<_>) = waiters.drain(..).partition(|(i, _)| *i <= index);
        *waiters = waiting;
        drop(waiters);
        for (_, tx) in ready {
            let _ = tx.send(());
        }
    }
}

/// The handle the controller holds: propose records, read the status.
#[derive(Clone)]
pub struct RaftHandle {
    pub id: u64,
    events: mpsc::UnboundedSender<Event>,
    pub status: Rc<NodeStatus>,
}

impl RaftHandle {
    /// Proposes `data`; resolves with its index once it is committed and applied here.
    pub async fn propose(&self, data: Vec<u8>) -> Result<u64, ProposeError> {
        let (done, rx) = oneshot::channel();
        if self
            .events
            .unbounded_send(Event::Propose { data, done })
            .is_err()
        {
            return Err(ProposeError::NotLeader { leader: 0 });
        }
        rx.await
            .unwrap_or(Err(ProposeError::NotLeader { leader: 0 }))
    }

    /// The inbox the transport delivers raft messages to.
    pub fn message_inbox(&self) -> mpsc::UnboundedSender<Message> {
        let (tx, mut rx) = mpsc::unbounded::<Message>();
        let events = self.events.clone();
        runtime::detach(async move {
            while let Some(m) = rx.next().await {
                if events.unbounded_send(Event::Message(m)).is_err() {
                    return;
                }
            }
        });
        tx
    }
}

/// A proposal waiting for its entry to apply.
struct Pending {
    term: u64,
    done: oneshot::Sender<Result<u64, ProposeError>>,
}

struct Node {
    raw: RawNode<DiskStorage>,
    transport: Transport,
    sm: Rc<dyn StateMachine>,
    status: Rc<NodeStatus>,
    pending: BTreeMap<u64, Pending>,
    last_snapshot: u64,
}

/// Starts voter `id` over `storage`, restoring the state machine from its snapshot first.
/// The node runs until the returned handle and every clone of it are dropped.
pub fn start(
    id: u64,
    storage: DiskStorage,
    transport: Transport,
    sm: Rc<dyn StateMachine>,
) -> raft::Result<RaftHandle> {
    let snap = storage.snapshot_ref();
    let snap_index = snap.get_metadata().index;
    if snap_index > 0 {
        sm.restore(snap_index, &snap.data);
    }
    let config = raft::Config {
        id,
        election_tick: ELECTION_TICK,
        heartbeat_tick: HEARTBEAT_TICK,
        pre_vote: true,
        check_quorum: true,
        applied: snap_index,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        ..Default::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let raw = RawNode::new(&config, storage, &logger)?;
    let status = Rc::new(NodeStatus::default());
    status.set_applied(snap_index, raw.store().snapshot_ref().get_metadata().term);
    let (events_tx, events_rx) = mpsc::unbounded();
    let ticks = events_tx.clone();
    runtime::detach(async move {
        loop {
            runtime::sleep(TICK).await;
            if ticks.unbounded_send(Event::Tick).is_err() {
                return;
            }
        }
    });
    let node = Node {
        raw,
        transport,
        sm,
        status: status.clone(),
        pending: BTreeMap::new(),
        last_snapshot: snap_index,
    };
    runtime::detach(node.run(events_rx));
    Ok(RaftHandle {
        id,
        events: events_tx,
        status,
    })
}

impl Node {
    async fn run(mut self, mut events: mpsc::UnboundedReceiver<Event>) {
        while let Some(event) = events.next().await {
            self.handle(event);
            // Take whatever else is queued before the (fsyncing) ready round.
            while let Ok(event) = events.try_recv() {
                self.handle(event);
            }
            if let Err(e) = self.on_ready().await {
                // The log cannot be written: acting on unpersisted state would break Raft's
                // guarantees, so this voter stops taking part.
                tracing::error!(error = %e, "controller raft log write failed; voter stops");
                self.fail_pending(ProposeError::Storage(e.to_string()));
                return;
            }
        }
        // Handle dropped (shutdown): fail whoever still waits.
        self.fail_pending(ProposeError::NotLeader { leader: 0 });
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick => {
                self.raw.tick();
            }
            Event::Message(m) => {
                if let Err(e) = self.raw.step(m) {
                    tracing::debug!(error = %e, "raft step refused a message");
                }
            }
            Event::Propose { data, done } => self.propose(data, done),
        }
    }

    fn propose(&mut self, data: Vec<u8>, done: oneshot::Sender<Result<u64, ProposeError>>) {
        if self.raw.raft.state != StateRole::Leader {
            let leader = self.raw.raft.leader_id;
            let _ = done.send(Err(ProposeError::NotLeader { leader }));
            return;
        }
        if self.raw.propose(vec![], data).is_err() {
            let leader = self.raw.raft.leader_id;
            let _ = done.send(Err(ProposeError::NotLeader { leader }));
            return;
        }
        let index = self.raw.raft.raft_log.last_index();
        let term = self.raw.raft.term;
        self.pending.insert(index, Pending { term, done });
    }

    async fn on_ready(&mut self) -> std::io::Result<()> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        if let Some(ss) = ready.ss() {
            self.role_changed(ss.leader_id, ss.raft_state);
        }
        let snapshot = (!ready.snapshot().is_empty()).then(|| ready.snapshot().clone());
        let persist = Persist {
            snapshot: snapshot.clone(),
            entries: ready.take_entries(),
            hard_state: ready.hs().cloned(),
        };
        self.raw.mut_store().persist(persist).await?;
        if let Some(snap) = snapshot {
            let meta = snap.get_metadata();
            self.sm.restore(meta.index, &snap.data);
            self.status.set_applied(meta.index, meta.term);
            self.last_snapshot = meta.index;
        }
        self.send(ready.take_messages());
        self.send(ready.take_persisted_messages());
        self.apply(ready.take_committed_entries());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit)?;
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries());
        self.raw.advance_apply();
        self.sm.applied().await;
        self.maybe_snapshot().await
    }

    fn role_changed(&mut self, leader: u64, role: StateRole) {
        let was_leader = self.status.is_leader.get();
        self.status.is_leader.set(role == StateRole::Leader);
        self.status.term.set(self.raw.raft.term);
        if was_leader && role != StateRole::Leader {
            self.fail_pending(ProposeError::NotLeader { leader });
        }
        if self.status.leader.get() != leader {
            tracing::info!(
                leader,
                term = self.raw.raft.term,
                "controller leader changed"
            );
            self.status.leader.set(leader);
            self.sm.leader_changed(leader);
        }
    }

    fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            self.transport.send(m);
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        let Some(last) = entries.last().map(|e| (e.index, e.term)) else {
            return;
        };
        for e in &entries {
            if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                self.sm.apply(e.index, &e.data);
            }
            self.resolve(e.index, e.term);
        }
        self.status.set_applied(last.0, last.1);
        self.status.term.set(self.raw.raft.term);
    }

    /// Answers the proposal at `index`: applied if its term matches, else replaced.
    fn resolve(&mut self, index: u64, term: u64) {
        // Proposals at lower indexes were dropped without an entry (a lost leadership).
        let stale: Vec<u64> = self.pending.range(..index).map(|(i, _)| *i).collect();
        for i in stale {
            if let Some(p) = self.pending.remove(&i) {
                let leader = self.raw.raft.leader_id;
                let _ = p.done.send(Err(ProposeError::NotLeader { leader }));
            }
        }
        if let Some(p) = self.pending.remove(&index) {
            let result = if p.term == term {
                Ok(index)
            } else {
                Err(ProposeError::NotLeader {
                    leader: self.raw.raft.leader_id,
                })
            };
            let _ = p.done.send(result);
        }
    }

    fn fail_pending(&mut self, error: ProposeError) {
        for (_, p) in std::mem::take(&mut self.pending) {
            let _ = p.done.send(Err(error.clone()));
        }
    }

    async fn maybe_snapshot(&mut self) -> std::io::Result<()> {
        let applied = self.status.applied.get();
        if applied < self.last_snapshot + SNAPSHOT_INTERVAL {
            return Ok(());
        }
        let data = self.sm.snapshot_data();
        self.raw.mut_store().compact(applied, data).await?;
        self.last_snapshot = applied;
        tracing::debug!(index = applied, "controller snapshot taken");
        Ok(())
    }
}
