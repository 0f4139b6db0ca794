//! The controller: the cluster's metadata (brokers, topics, partitions, their placement on
//! shards, leader epochs, configs), kept in a durable metadata log and published to every
//! shard as immutable snapshots. Runs on shard 0. It validates and commits metadata changes
//! (create and delete topics) and never calls back into the shards: they apply snapshots.
//!
//! A single node keeps its metadata in a local, durable record log (`metadata_log`); the
//! cluster work puts a Raft group behind the same interface (append a record, read committed
//! records, subscribe via the publish sink) without touching its users. A broker that is not
//! one of the voters is an observer (`observer`): it follows the committed metadata by
//! pulling it from the voters and forwards every change to the leader. Uses base, runtime.
//!
//! The cluster decisions are pure functions of a snapshot returning the records to commit,
//! for the controller leader to call (no I/O, no clock of their own):
//! - `placement::assign` — replicas and shards for new partitions;
//! - `registry::Registry` — `register`, `on_heartbeat`, `tick` (session-timeout fencing),
//!   `controlled_shutdown`;
//! - `election` — `on_fenced`, `on_unfenced`, `preferred_rebalance`, `elect_preferred`,
//!   `elect_unclean`;
//! - `alter::alter_partition` — a leader's ISR change (AlterPartition);
//! - `reassign` — `start`, `cancel`, `list` (KIP-455); completion happens in AlterPartition.
//!
//! `rebalance` runs `election::preferred_rebalance` on the leader's timer.
//!
//! `sim_tests` drives them together through seeded crashes, cuts and clock jumps.

mod admin;
pub mod alter;
mod brokers;
pub mod change;
pub mod election;
mod metadata_log;
mod observer;
pub mod placement;
mod quorum;
pub mod raft;
pub mod reassign;
mod rebalance;
pub mod registry;
mod snapshot;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod testkit;
mod validate;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use futures::future::LocalBoxFuture;
use futures::lock::Mutex;

use crate::base::{KafkaCode, KafkaError};
pub use admin::{AdminOp, AdminResults, ConfigChange, ConfigOp};
pub use metadata_log::{MetadataLog, MetadataRecord};
pub use quorum::{ControllerCommand, ControllerReply};
pub use snapshot::{BrokerInfo, ClusterSnapshot, PartitionInfo, TopicInfo};

/// Delivers a new snapshot to every shard; completes when all have applied it.
pub type PublishSink = Box<dyn Fn(Arc<ClusterSnapshot>) -> LocalBoxFuture<'static, ()>>;

/// How long a non-leader keeps trying to reach a leader for a forwarded command.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between two attempts while no leader is known.
const FORWARD_RETRY: Duration = Duration::from_millis(100);

/// A topic to create, as CreateTopics asks for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewTopic {
    pub name: String,
    /// -1: the broker default.
    pub num_partitions: i32,
    /// -1: the broker default.
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    /// A manual assignment: the brokers of each partition in order, preferred leader first
    /// (then `num_partitions` and `replication_factor` are -1). Empty: placed by the controller.
    #[serde(default)]
    pub assignments: Vec<Vec<i32>>,
}

/// The outcome of creating one topic.
#[derive(Debug, Clone)]
pub struct CreatedTopic {
    pub name: String,
    pub result: Result<TopicInfo, KafkaError>,
}

/// Defaults the controller applies to new topics.
#[derive(Debug, Clone)]
pub struct TopicDefaults {
    pub num_partitions: i32,
    pub replication_factor: i16,
}

/// Where committed metadata lives: the local log of a single node, the Raft quorum (this
/// broker a voter), or the quorum seen from outside (this broker an observer).
enum Store {
    Local(MetadataLog),
    Quorum(quorum::Quorum),
    Observer(observer::Observer),
}

pub struct Controller {
    store: Store,
    /// Held from a change's validation to its commit, so changes apply one at a time
    /// (each validated against the snapshot the one before it left) while the log's fsync
    /// runs off the reactor.
    changes: Mutex<()>,
    current: Rc<RefCell<Arc<ClusterSnapshot>>>,
    defaults: TopicDefaults,
    publish: Rc<PublishSink>,
    /// The broker registry while this voter leads (quorum mode only).
    sessions: RefCell<Option<brokers::Sessions>>,
    session_timeout_ms: Cell<u64>,
    /// The origin of the registry's clock.
    started: Instant,
}

impl Controller {
    /// Loads the metadata log in `meta_dir` and builds the first snapshot.
    pub fn open(
        meta_dir: &Path,
        broker: BrokerInfo,
        shards: usize,
        defaults: TopicDefaults,
        publish: PublishSink,
    ) -> std::io::Result<Controller> {
        let (log, records) = MetadataLog::open(meta_dir)?;
        // Placement spreads this broker's replicas over the shards it runs.
        let broker = BrokerInfo { shards, ..broker };
        let mut snapshot = ClusterSnapshot::empty(broker, log.cluster_id().to_owned());
        for r in records {
            snapshot.apply(&r);
        }
        Ok(Controller {
            store: Store::Local(log),
            changes: Mutex::new(()),
            current: Rc::new(RefCell::new(Arc::new(snapshot))),
            defaults,
            publish: Rc::new(publish),
            sessions: RefCell::new(None),
            session_timeout_ms: Cell::new(registry::DEFAULT_SESSION_TIMEOUT_MS),
            started: Instant::now(),
        })
    }

    /// Joins the Raft quorum `voters` as voter `broker.node_id` (its log in
    /// `<meta_dir>/raft`, its controller listener on `listen`). Metadata arrives as the
    /// quorum commits it; until a leader is elected the snapshot has no topics.
    pub fn open_quorum(
        meta_dir: &Path,
        broker: BrokerInfo,
        shards: usize,
        defaults: TopicDefaults,
        publish: PublishSink,
        voters: &[(u64, SocketAddr)],
        listen: SocketAddr,
    ) -> anyhow::Result<Rc<Controller>> {
        let id = broker.node_id as u64;
        let broker = BrokerInfo { shards, ..broker };
        let mut base = ClusterSnapshot::empty(broker, quorum::cluster_id(voters));
        base.controller_id = -1;
        let current = Rc::new(RefCell::new(Arc::new(base.clone())));
        let publish = Rc::new(publish);
        let machine = Rc::new(quorum::MetadataMachine {
            base,
            current: current.clone(),
            history: RefCell::new(Vec::new()),
            publish: publish.clone(),
            dirty: Cell::new(false),
            recent: RefCell::new(observer::RecentRecords::new(observer::RECENT_RECORDS)),
        });
        // The command handler needs the controller, which needs the running node.
        let slot: Rc<RefCell<Weak<Controller>>> = Rc::new(RefCell::new(Weak::new()));
        let handler_slot = slot.clone();
        let handler: raft::transport::CommandHandler = Rc::new(move |payload| {
            let controller = handler_slot.borrow().upgrade();
            Box::pin(async move {
                match controller {
                    Some(c) => c.answer_forwarded(&payload).await,
                    None => Vec::new(),
                }
            })
        });
        let (handle, server) = raft::start_voter(
            id,
            &meta_dir.join("raft"),
            voters,
            listen,
            machine.clone(),
            handler,
        )?;
        let controller = Rc::new(Controller {
            store: Store::Quorum(quorum::Quorum {
                id,
                handle,
                voters: voters.iter().copied().collect(),
                machine,
                next_request: Cell::new(1),
                _server: server,
            }),
            changes: Mutex::new(()),
            current,
            defaults,
            publish,
            sessions: RefCell::new(None),
            session_timeout_ms: Cell::new(registry::DEFAULT_SESSION_TIMEOUT_MS),
            started: Instant::now(),
        });
        *slot.borrow_mut() = Rc::downgrade(&controller);
        Ok(controller)
    }

    /// Follows the Raft quorum `voters` as observer `broker.node_id` (see `observer`): no
    /// Raft log and no controller listener of its own; its copy of the metadata lives in
    /// `<meta_dir>/observer`, so a restart serves it at once and resumes from it.
    pub fn open_observer(
        meta_dir: &Path,
        broker: BrokerInfo,
        shards: usize,
        defaults: TopicDefaults,
        publish: PublishSink,
        voters: &[(u64, SocketAddr)],
    ) -> anyhow::Result<Rc<Controller>> {
        use anyhow::Context;
        anyhow::ensure!(
            !voters.is_empty(),
            "an observer needs the controller voters"
        );
        let broker = BrokerInfo { shards, ..broker };
        let mut base = ClusterSnapshot::empty(broker, quorum::cluster_id(voters));
        base.controller_id = -1;
        let current = Rc::new(RefCell::new(Arc::new(base.clone())));
        let publish = Rc::new(publish);
        let dir = meta_dir.join("observer");
        let observer =
            observer::Observer::start(&dir, voters, base, current.clone(), publish.clone())
                .with_context(|| format!("opening the observer metadata in {}", dir.display()))?;
        Ok(Rc::new(Controller {
            store: Store::Observer(observer),
            changes: Mutex::new(()),
            current,
            defaults,
            publish,
            sessions: RefCell::new(None),
            session_timeout_ms: Cell::new(registry::DEFAULT_SESSION_TIMEOUT_MS),
            started: Instant::now(),
        }))
    }

    /// True when this process may validate and commit changes itself (a single node, or
    /// the Raft leader once it has applied its predecessors' records; never an observer).
    pub fn leads(&self) -> bool {
        match &self.store {
            Store::Local(_) => true,
            Store::Quorum(q) => q.leads(),
            Store::Observer(_) => false,
        }
    }

    /// Whether this broker is an observer (not a controller voter).
    pub fn is_observer(&self) -> bool {
        matches!(self.store, Store::Observer(_))
    }

    pub fn snapshot(&self) -> Arc<ClusterSnapshot> {
        self.current.borrow().clone()
    }

    /// Sends the current snapshot to every shard (at start-up).
    pub async fn publish_current(&self) {
        let snap = self.snapshot();
        (self.publish)(snap).await;
    }

    /// Validates and (unless `validate_only`) commits new topics, then publishes.
    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<CreatedTopic> {
        if !validate_only && !self.leads() {
            return self.forward_create_topics(topics).await;
        }
        let mut results = Vec::with_capacity(topics.len());
        let mut changed = false;
        let guard = self.changes.lock().await;
        for t in topics {
            let result = self.create_one(&t, validate_only).await;
            changed |= result.is_ok() && !validate_only;
            results.push(CreatedTopic {
                name: t.name,
                result,
            });
        }
        drop(guard);
        if changed {
            self.publish_current().await;
        }
        results
    }

    async fn create_one(&self, t: &NewTopic, validate_only: bool) -> Result<TopicInfo, KafkaError> {
        let snap = self.snapshot();
        validate::topic_name(&t.name)?;
        if snap.topics.contains_key(&t.name) {
            return Err(KafkaError::new(
                KafkaCode::TopicAlreadyExists,
                format!("Topic '{}' already exists.", t.name),
            ));
        }
        validate::no_collision(&t.name, snap.topics.keys())?;
        validate::configs(&t.configs)?;
        let (placed, rf) = match t.assignments.is_empty() {
            true => self.place_new_topic(&snap, t)?,
            false => manual_placement(&snap, t)?,
        };
        let record = MetadataRecord::CreateTopic {
            name: t.name.clone(),
            topic_id: *uuid::Uuid::new_v4().as_bytes(),
            shards: placed.leader_shards(),
            replication_factor: rf,
            configs: t.configs.clone(),
            replicas: placed.replicas,
            replica_shards: placed.replica_shards,
        };
        if validate_only {
            let mut preview = (*snap).clone();
            preview.apply(&record);
            return Ok(preview.topics[&t.name].clone());
        }
        self.commit(record).await?;
        Ok(self.snapshot().topics[&t.name].clone())
    }

    /// The controller's placement of `t`: its partition count and RF, or the defaults.
    fn place_new_topic(
        &self,
        snap: &ClusterSnapshot,
        t: &NewTopic,
    ) -> Result<(placement::Assignment, i16), KafkaError> {
        let partitions = match t.num_partitions {
            -1 => self.defaults.num_partitions,
            n => n,
        };
        validate::partitions(partitions)?;
        let rf = match t.replication_factor {
            -1 => self.defaults.replication_factor,
            n => n,
        };
        validate::replication_factor(rf, snap.live_brokers().count())?;
        let placed = placement::assign(
            snap,
            placement::NewPartitions {
                first: 0,
                count: partitions,
                replication_factor: rf,
            },
            placement_random(),
        )?;
        Ok((placed, rf))
    }

    /// Deletes topics by name; publishes once for all of them.
    pub async fn delete_topics(&self, names: Vec<String>) -> Vec<(String, Result<(), KafkaError>)> {
        if !self.leads() {
            let cmd = ControllerCommand::DeleteTopics {
                names: names.clone(),
            };
            return self.forward_results(cmd, names).await;
        }
        let mut results = Vec::with_capacity(names.len());
        let mut changed = false;
        let guard = self.changes.lock().await;
        for name in names {
            let result = if self.snapshot().topics.contains_key(&name) {
                self.commit(MetadataRecord::DeleteTopic { name: name.clone() })
                    .await
            } else {
                Err(KafkaError::new(
                    KafkaCode::UnknownTopicOrPartition,
                    "This server does not host this topic-partition.",
                ))
            };
            changed |= result.is_ok();
            results.push((name, result));
        }
        drop(guard);
        if changed {
            self.publish_current().await;
        }
        results
    }

    /// Hands out the next block of `count` producer ids, durably, as `(first, count)`.
    pub async fn allocate_producer_ids(&self, count: i64) -> Result<(i64, i64), KafkaError> {
        if !self.leads() {
            return match self
                .forward(ControllerCommand::AllocateProducerIds { count })
                .await
            {
                ControllerReply::ProducerIds { result, .. } => result,
                _ => Err(not_controller()),
            };
        }
        let _guard = self.changes.lock().await;
        let first = self.snapshot().next_producer_id;
        self.commit(MetadataRecord::ProducerIds {
            next_producer_id: first + count,
        })
        .await?;
        Ok((first, count))
    }

    /// Appends a record durably, then applies it to a new snapshot. Callers hold `changes`.
    async fn commit(&self, record: MetadataRecord) -> Result<(), KafkaError> {
        let q = match &self.store {
            Store::Local(log) => {
                log.append(&record)
                    .await
                    .map_err(|e| KafkaError::new(KafkaCode::KafkaStorageError, e.to_string()))?;
                let mut next = (*self.snapshot()).clone();
                next.apply(&record);
                *self.current.borrow_mut() = Arc::new(next);
                return Ok(());
            }
            Store::Quorum(q) => q,
            Store::Observer(_) => return Err(not_controller()),
        };
        let data = serde_json::to_vec(&record)
            .map_err(|e| KafkaError::new(KafkaCode::UnknownServerError, e.to_string()))?;
        // Resolves once the record is applied to `current` (by the quorum's machine).
        match q.handle.propose(data).await {
            Ok(_) => Ok(()),
            Err(raft::ProposeError::NotLeader { .. }) => Err(not_controller()),
            Err(raft::ProposeError::Storage(e)) => {
                Err(KafkaError::new(KafkaCode::KafkaStorageError, e))
            }
        }
    }

    /// Runs a forwarded command here (this is the leader) and returns the reply.
    async fn execute(&self, command: ControllerCommand) -> ControllerReply {
        if let ControllerCommand::FetchMetadata { since, max_wait_ms } = command {
            // Every voter answers observers, leader or not.
            return self
                .answer_fetch(since, Duration::from_millis(max_wait_ms))
                .await;
        }
        if !self.leads() {
            return ControllerReply::NotController {
                leader: self.controller_leader(),
            };
        }
        let results = match command {
            ControllerCommand::CreateTopics { topics } => self
                .create_topics(topics, false)
                .await
                .into_iter()
                .map(|t| (t.name, t.result.map(|_| ())))
                .collect(),
            ControllerCommand::DeleteTopics { names } => self.delete_topics(names).await,
            ControllerCommand::Admin { op } => self.run_admin(op).await,
            ControllerCommand::AllocateProducerIds { count } => {
                let result = self.allocate_producer_ids(count).await;
                return ControllerReply::ProducerIds {
                    result,
                    index: self.applied_index(),
                };
            }
            ControllerCommand::AlterPartition {
                broker_id,
                broker_epoch,
                topic,
                partition,
                leader_epoch,
                partition_epoch,
                new_isr,
            } => {
                let req = alter::AlterIsr {
                    broker_id,
                    broker_epoch,
                    topic,
                    partition,
                    leader_epoch,
                    partition_epoch,
                    new_isr,
                };
                let result = self.execute_alter_partition(req).await;
                return ControllerReply::Broker {
                    result,
                    index: self.applied_index(),
                };
            }
            ControllerCommand::FetchMetadata { since, max_wait_ms } => {
                return self
                    .answer_fetch(since, Duration::from_millis(max_wait_ms))
                    .await
            }
            broker @ (ControllerCommand::RegisterBroker { .. }
            | ControllerCommand::Heartbeat { .. }
            | ControllerCommand::ControlledShutdown { .. }
            | ControllerCommand::UnregisterBroker { .. }) => {
                let result = self.execute_broker(broker).await;
                return ControllerReply::Broker {
                    result,
                    index: self.applied_index(),
                };
            }
        };
        ControllerReply::Results {
            results,
            index: self.applied_index(),
        }
    }

    /// `execute` behind a box: it calls the public operations, which may forward again.
    fn execute_boxed(&self, command: ControllerCommand) -> LocalBoxFuture<'_, ControllerReply> {
        Box::pin(self.execute(command))
    }

    /// Answers a command another voter forwarded (a kind 1 payload) with a kind 2 payload.
    async fn answer_forwarded(&self, payload: &[u8]) -> Vec<u8> {
        let (id, reply) = match serde_json::from_slice::<quorum::CommandEnvelope>(payload) {
            Ok(env) => (env.id, self.execute(env.command).await),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable forwarded controller command");
                (0, ControllerReply::NotController { leader: -1 })
            }
        };
        serde_json::to_vec(&quorum::ReplyEnvelope { id, reply }).unwrap_or_default()
    }

    /// A voter's answer to an observer's `FetchMetadata`: waits up to `max_wait` for an
    /// entry applied after `since`, then sends what it has.
    async fn answer_fetch(&self, since: u64, max_wait: Duration) -> ControllerReply {
        let Store::Quorum(q) = &self.store else {
            return ControllerReply::NotController {
                leader: self.controller_leader(),
            };
        };
        let status = &q.handle.status;
        if status.applied.get() <= since {
            let wait = max_wait.min(observer::FETCH_WAIT * 10);
            crate::runtime::timeout(wait, status.wait_applied(since + 1)).await;
        }
        // Read together, with no await between: the delta is exactly what `applied` covers.
        let applied = status.applied.get();
        let delta = if applied > since {
            q.machine.delta_since(since)
        } else if q.leads() {
            // A ready leader has applied every index any voter ever applied, so an observer
            // past it holds another history (the quorum was rebuilt): it gets everything.
            observer::MetadataDelta::Snapshot(quorum::compact_records(&q.machine.history.borrow()))
        } else {
            observer::MetadataDelta::Records(Vec::new())
        };
        ControllerReply::Metadata {
            leader: q.leader_id(),
            applied,
            delta,
        }
    }

    /// Where forwarded commands go and how far this broker applied (voters and observers).
    fn follower(&self) -> Option<(&raft::node::NodeStatus, &Cell<u64>)> {
        match &self.store {
            Store::Local(_) => None,
            Store::Quorum(q) => Some((&q.handle.status, &q.next_request)),
            Store::Observer(o) => Some((&o.status, &o.next_request)),
        }
    }

    /// The voter to send a forwarded command to, if one is known.
    fn forward_target(&self) -> Option<(u64, SocketAddr)> {
        match &self.store {
            Store::Local(_) => None,
            Store::Quorum(q) => q.leader_addr(),
            Store::Observer(o) => o.target(),
        }
    }

    /// Sends `command` to the leader (or runs it here once this voter leads), retrying
    /// through leader changes for up to `FORWARD_TIMEOUT`; then waits until this broker has
    /// applied what the leader had, so the caller sees the change in its snapshot.
    async fn forward(&self, command: ControllerCommand) -> ControllerReply {
        let Some((status, next_request)) = self.follower() else {
            return self.execute_boxed(command).await;
        };
        let deadline = Instant::now() + FORWARD_TIMEOUT;
        loop {
            if self.leads() {
                return self.execute_boxed(command).await;
            }
            if let Some((leader, addr)) = self.forward_target() {
                let id = next_request.replace(next_request.get() + 1);
                let envelope = quorum::CommandEnvelope {
                    id,
                    command: command.clone(),
                };
                let payload = serde_json::to_vec(&envelope).unwrap_or_default();
                let left = deadline.saturating_duration_since(Instant::now());
                let sent = raft::transport::request(addr, &payload, left);
                let known = self.controller_leader();
                let Some(answer) = self.unless_leader_changes(known, sent).await else {
                    tracing::debug!(leader, "controller leader changed: forwarding again");
                    continue;
                };
                match answer {
                    Ok(bytes) => match serde_json::from_slice::<quorum::ReplyEnvelope>(&bytes) {
                        Ok(env) if !matches!(env.reply, ControllerReply::NotController { .. }) => {
                            let reached = status.wait_applied(env.reply.index());
                            let left = deadline.saturating_duration_since(Instant::now());
                            crate::runtime::timeout(left.max(FORWARD_RETRY), reached).await;
                            return env.reply;
                        }
                        Ok(env) => {
                            if let (Store::Observer(o), ControllerReply::NotController { leader }) =
                                (&self.store, &env.reply)
                            {
                                o.heard_leader(*leader);
                            }
                        }
                        Err(e) => tracing::warn!(leader, error = %e, "unreadable controller reply"),
                    },
                    Err(e) => {
                        tracing::debug!(leader, error = %e, "forwarding to the controller failed")
                    }
                }
            }
            if Instant::now() >= deadline {
                return ControllerReply::NotController {
                    leader: self.controller_leader(),
                };
            }
            crate::runtime::sleep(FORWARD_RETRY).await;
        }
    }

    /// `fut`, or None as soon as the leader this broker knows is no longer `known`: a
    /// stopped (SIGSTOP, partitioned) leader keeps its connections open, and a request to it
    /// would otherwise wait out its whole timeout while the new leader fences this broker
    /// for the heartbeats it never got.
    async fn unless_leader_changes<T>(
        &self,
        known: i32,
        fut: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        let changed = async {
            while !self.leads() && self.controller_leader() == known {
                crate::runtime::sleep(FORWARD_RETRY).await;
            }
        };
        match futures::future::select(std::pin::pin!(fut), std::pin::pin!(changed)).await {
            futures::future::Either::Left((out, _)) => Some(out),
            futures::future::Either::Right(_) => None,
        }
    }

    /// Forwards a command answered per topic; `names` label the errors if no leader answers.
    async fn forward_results(
        &self,
        command: ControllerCommand,
        names: Vec<String>,
    ) -> AdminResults {
        match self.forward(command).await {
            ControllerReply::Results { results, .. } => results,
            _ => names
                .into_iter()
                .map(|n| (n, Err(not_controller())))
                .collect(),
        }
    }

    async fn forward_create_topics(&self, topics: Vec<NewTopic>) -> Vec<CreatedTopic> {
        let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
        let results = self
            .forward_results(ControllerCommand::CreateTopics { topics }, names)
            .await;
        let snap = self.snapshot();
        results
            .into_iter()
            .map(|(name, result)| {
                let result = result
                    .and_then(|()| snap.topics.get(&name).cloned().ok_or_else(not_controller));
                CreatedTopic { name, result }
            })
            .collect()
    }

    fn applied_index(&self) -> u64 {
        match &self.store {
            Store::Local(_) => 0,
            Store::Quorum(q) => q.handle.status.applied.get(),
            Store::Observer(o) => o.status.applied.get(),
        }
    }

    /// The current Raft leader (-1: none known); a single node is its own controller.
    pub fn controller_leader(&self) -> i32 {
        match &self.store {
            Store::Local(_) => self.snapshot().controller_id,
            Store::Quorum(q) => q.leader_id(),
            Store::Observer(o) => o.leader_id(),
        }
    }
}

fn not_controller() -> KafkaError {
    KafkaError::new(
        KafkaCode::NotController,
        "This is not the correct controller for this cluster.",
    )
}

/// A topic's manual assignment, checked (see [`validate::manual_assignment`]), with each
/// replica on its broker's least loaded shard.
fn manual_placement(
    snap: &ClusterSnapshot,
    t: &NewTopic,
) -> Result<(placement::Assignment, i16), KafkaError> {
    if t.num_partitions != -1 || t.replication_factor != -1 {
        return Err(KafkaError::new(
            KafkaCode::InvalidRequest,
            "Both numPartitions or replicationFactor and replicasAssignments were set. \
             Both cannot be used at the same time.",
        ));
    }
    let rf = validate::manual_assignment(&t.assignments, |b| snap.is_live(b))?;
    let replica_shards = t
        .assignments
        .iter()
        .map(|brokers| {
            brokers
                .iter()
                .map(|&b| placement::least_loaded_shard(snap, b))
                .collect()
        })
        .collect();
    let placed = placement::Assignment {
        replicas: t.assignments.clone(),
        replica_shards,
    };
    Ok((placed, rf))
}

/// A leader's ISR change for one partition (Kafka's AlterPartition), made against the
/// partition epoch it saw; a controller that moved past that epoch refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartition {
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

impl Controller {
    /// Commits an ISR change proposed by a partition's leader (this broker), through the
    /// controller leader; it takes effect when the snapshot carrying it arrives. A single
    /// node has no followers, so its partitions never propose one.
    pub async fn alter_partition(&self, change: AlterPartition) -> Result<(), KafkaError> {
        if matches!(self.store, Store::Local(_)) {
            return Err(KafkaError::new(
                KafkaCode::InvalidRequest,
                "a single node has no followers to change the ISR with",
            ));
        }
        let snap = self.snapshot();
        let broker_epoch = snap.broker(snap.local_node).map_or(-1, |b| b.epoch);
        let command = ControllerCommand::AlterPartition {
            broker_id: snap.local_node,
            broker_epoch,
            topic: change.topic,
            partition: change.partition,
            leader_epoch: change.leader_epoch,
            partition_epoch: change.partition_epoch,
            new_isr: change.isr,
        };
        match self.forward(command).await {
            ControllerReply::Broker { result, .. } => result.map(|_| ()),
            _ => Err(not_controller()),
        }
    }
}

/// The random number placement starts its round robin from (Kafka picks the first broker at
/// random so topics do not all lead on the same one).
fn placement_random() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// Kafka's topic-name rules, for callers that check a name before asking the controller.
pub fn validate_topic_name(name: &str) -> Result<(), KafkaError> {
    validate::topic_name(name)
}
