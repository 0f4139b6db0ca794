//! The router: maps each partition to its owner shard using the current metadata snapshot,
//! splits a multi-partition request into one message per shard, sends it (the only place a
//! request leaves this core), and merges the answers. It also carries controller requests to
//! shard 0 and snapshots from the controller to every shard. Uses base, shard, controller.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};
use futures::future::{join_all, select_all, LocalBoxFuture};
use futures::StreamExt;

use crate::base::{KafkaCode, KafkaError, TopicPartition};
use crate::controller::{
    AdminOp, AdminResults, AlterPartition, ClusterSnapshot, Controller, CreatedTopic, NewTopic,
};
use crate::metrics::ShardMetrics;
use crate::partition::{ProducerView, ReadResult};
use crate::runtime::{self, MeshReceivers, MeshSenders};
use crate::shard::{
    Desired, EpochAnswer, EpochQuery, FetchPart, MarkerPart, OffsetAnswer, OffsetQuery, Placement,
    ProduceOutcome, ProducePart, Role, Shard, ShardRequest,
};

/// The shard that runs the controller.
pub const CONTROLLER_SHARD: usize = 0;

/// Producer ids a shard takes from the controller at a time (Kafka's block size).
const PRODUCER_ID_BLOCK: i64 = 1000;

/// Everything that crosses between cores.
pub enum MeshMessage {
    Shard(ShardRequest),
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
        reply: oneshot::Sender<Vec<CreatedTopic>>,
    },
    DeleteTopics {
        names: Vec<String>,
        reply: oneshot::Sender<Vec<(String, Result<(), KafkaError>)>>,
    },
    /// A topic change after creation (configs, partitions), for the controller.
    Admin {
        op: AdminOp,
        reply: oneshot::Sender<AdminResults>,
    },
    Snapshot {
        snapshot: Arc<ClusterSnapshot>,
        applied: oneshot::Sender<()>,
    },
    AllocateProducerIds {
        reply: oneshot::Sender<Result<(i64, i64), KafkaError>>,
    },
    /// Removes a broker's registration (UnregisterBroker), for the controller.
    UnregisterBroker {
        node_id: i32,
        reply: oneshot::Sender<Result<(), KafkaError>>,
    },
    /// A leader's ISR change, for the controller.
    AlterPartition {
        change: AlterPartition,
        reply: oneshot::Sender<Result<(), KafkaError>>,
    },
    /// Runs a closure on the receiving shard (Redpanda's `invoke_on`): how modules above the
    /// router (groups, transactions) reach state that lives on another core.
    Invoke(Box<dyn FnOnce() + Send>),
}

/// This shard's router.
pub struct Router {
    me: usize,
    shards: usize,
    senders: MeshSenders<MeshMessage>,
    local: Rc<Shard>,
    snapshot: RefCell<Arc<ClusterSnapshot>>,
    controller: RefCell<Option<Rc<Controller>>>,
    metrics: Rc<ShardMetrics>,
    snapshot_seen: RefCell<Option<oneshot::Sender<()>>>,
    /// See `BrokerConfig::fetch_debounce`.
    fetch_debounce: Cell<Duration>,
    metadata_queue: mpsc::UnboundedSender<PendingSnapshot>,
    /// Who follows the snapshots applied on this shard (see [`Router::watch_snapshots`]).
    watchers: RefCell<Vec<mpsc::UnboundedSender<Arc<ClusterSnapshot>>>>,
}

/// A snapshot waiting for this shard's metadata task, and who waits for it.
type PendingSnapshot = (Arc<ClusterSnapshot>, oneshot::Sender<()>);

impl Router {
    pub fn new(
        senders: MeshSenders<MeshMessage>,
        shards: usize,
        local: Rc<Shard>,
        initial: Arc<ClusterSnapshot>,
        metrics: Rc<ShardMetrics>,
    ) -> (Rc<Router>, oneshot::Receiver<()>) {
        let (first_tx, first_rx) = oneshot::channel();
        let (metadata_queue, queued) = mpsc::unbounded();
        let router = Rc::new(Router {
            me: senders.me(),
            shards,
            senders,
            local,
            snapshot: RefCell::new(initial),
            controller: RefCell::new(None),
            metrics,
            snapshot_seen: RefCell::new(Some(first_tx)),
            fetch_debounce: Cell::new(Duration::ZERO),
            metadata_queue,
            watchers: RefCell::new(Vec::new()),
        });
        runtime::detach(Self::apply_snapshots(Rc::downgrade(&router), queued));
        (router, first_rx)
    }

    /// How long a long poll woken below its `min_bytes` waits before reading again.
    pub fn set_fetch_debounce(&self, debounce: Duration) {
        self.fetch_debounce.set(debounce);
    }

    pub fn set_controller(&self, controller: Rc<Controller>) {
        *self.controller.borrow_mut() = Some(controller);
    }

    pub fn snapshot(&self) -> Arc<ClusterSnapshot> {
        self.snapshot.borrow().clone()
    }

    pub fn metrics(&self) -> &ShardMetrics {
        &self.metrics
    }

    /// Drains every peer's channel into this shard. Messages from one peer are handled in the
    /// order sent: produces append before the next message is looked at.
    pub fn serve_mesh(self: &Rc<Self>, receivers: MeshReceivers<MeshMessage>) {
        for (_, mut stream) in receivers.streams() {
            let me = Rc::downgrade(self);
            runtime::detach(async move {
                while let Some(msg) = stream.next().await {
                    let Some(router) = me.upgrade() else { break };
                    router.handle_message(msg);
                }
            });
        }
    }

    fn handle_message(self: &Rc<Self>, msg: MeshMessage) {
        match msg {
            MeshMessage::Shard(req) => self.local.dispatch(req),
            MeshMessage::CreateTopics {
                topics,
                validate_only,
                reply,
            } => {
                let me = self.clone();
                runtime::detach(async move {
                    let _ = reply.send(me.create_topics(topics, validate_only).await);
                });
            }
            MeshMessage::DeleteTopics { names, reply } => {
                let me = self.clone();
                runtime::detach(async move {
                    let _ = reply.send(me.delete_topics(names).await);
                });
            }
            MeshMessage::Admin { op, reply } => {
                let me = self.clone();
                runtime::detach(async move {
                    let _ = reply.send(me.admin(op).await);
                });
            }
            MeshMessage::Invoke(work) => work(),
            MeshMessage::AllocateProducerIds { reply } => {
                let me = self.clone();
                runtime::detach(async move {
                    let _ = reply.send(me.allocate_producer_ids_here().await);
                });
            }
            MeshMessage::AlterPartition { change, reply } => {
                let me = self.clone();
                runtime::detach(async move {
                    let _ = reply.send(me.alter_partition_here(change).await);
                });
            }
            MeshMessage::UnregisterBroker { node_id, reply } => {
                let me = self.clone();
                runtime::detach(async move {
                    let _ = reply.send(me.unregister_broker_here(node_id).await);
                });
            }
            MeshMessage::Snapshot { snapshot, applied } => self.queue_snapshot(snapshot, applied),
        }
    }

    /// Queues a snapshot for this shard's metadata task; `applied` completes once it (or a
    /// newer one) is in effect here.
    fn queue_snapshot(&self, snapshot: Arc<ClusterSnapshot>, applied: oneshot::Sender<()>) {
        if let Err(e) = self.metadata_queue.unbounded_send((snapshot, applied)) {
            // The task is gone only at shutdown; whoever waits is told by the dropped sender.
            drop(e);
        }
    }

    /// The one task that applies snapshots on this shard, in arrival order; a snapshot not
    /// newer than the applied one is skipped (its waiter is answered: what it asked for is
    /// already in effect). Partitions open before the snapshot becomes visible here.
    async fn apply_snapshots(
        me: Weak<Router>,
        mut queue: mpsc::UnboundedReceiver<PendingSnapshot>,
    ) {
        while let Some((snapshot, applied)) = queue.next().await {
            let Some(router) = me.upgrade() else { break };
            router.apply_snapshot(snapshot).await;
            let _ = applied.send(());
        }
    }

    async fn apply_snapshot(&self, snapshot: Arc<ClusterSnapshot>) {
        let local = snapshot.local_node;
        let here = snapshot
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter(move |p| p.local_replica() && self.owns(p.shard))
                    .map(move |p| {
                        let role = if p.leader == local {
                            Role::Leader
                        } else {
                            Role::Follower { leader: p.leader }
                        };
                        let placement = Placement {
                            topic_id: t.topic_id,
                            leader_epoch: p.leader_epoch,
                            partition_epoch: p.partition_epoch,
                            role,
                            local,
                            replicas: p.replicas.clone(),
                            isr: p.isr.clone(),
                        };
                        (TopicPartition::new(t.name.clone(), p.index), placement)
                    })
            })
            .collect();
        // A partition this broker still holds (on another shard) is stopped; one whose
        // replica left this broker (a reassignment) or whose topic is gone is deleted.
        let exists = |tp: &TopicPartition, id: &[u8; 16]| {
            snapshot.topics.get(&tp.topic).is_some_and(|t| {
                t.topic_id == *id
                    && snapshot
                        .partition(&tp.topic, tp.partition)
                        .is_some_and(|p| p.local_replica())
            })
        };
        let desired = Desired {
            version: snapshot.version,
            here,
            exists: &exists,
        };
        let configs = snapshot
            .topics
            .values()
            .map(|t| (t.name.clone(), Arc::new(t.configs.clone())))
            .collect();
        self.local.set_topic_configs(snapshot.version, configs);
        if !self.local.apply_metadata(desired).await {
            return;
        }
        *self.snapshot.borrow_mut() = snapshot.clone();
        self.watchers
            .borrow_mut()
            .retain(|w| w.unbounded_send(snapshot.clone()).is_ok());
        if let Some(first) = self.snapshot_seen.borrow_mut().take() {
            let _ = first.send(());
        }
    }

    /// Every snapshot this shard applies from now on, once its partitions are open here (how
    /// the coordinators follow the leadership of their internal topics' partitions).
    pub fn watch_snapshots(&self) -> mpsc::UnboundedReceiver<Arc<ClusterSnapshot>> {
        let (tx, rx) = mpsc::unbounded();
        self.watchers.borrow_mut().push(tx);
        rx
    }

    /// The publish sink the controller uses: every shard applies, then this completes.
    pub fn publisher(
        router: Weak<Router>,
    ) -> impl Fn(Arc<ClusterSnapshot>) -> LocalBoxFuture<'static, ()> {
        move |snapshot| {
            let router = router.clone();
            Box::pin(async move {
                let Some(router) = router.upgrade() else {
                    return;
                };
                let mut acks = Vec::new();
                for shard in 0..router.shards {
                    if shard == router.me {
                        continue;
                    }
                    let (tx, rx) = oneshot::channel();
                    let msg = MeshMessage::Snapshot {
                        snapshot: snapshot.clone(),
                        applied: tx,
                    };
                    if router.senders.send_to(shard, msg).await.is_ok() {
                        acks.push(rx);
                    }
                }
                let (tx, rx) = oneshot::channel();
                router.queue_snapshot(snapshot, tx);
                acks.push(rx);
                join_all(acks).await;
            })
        }
    }

    /// Number of shards in this process.
    pub fn shard_count(&self) -> usize {
        self.shards
    }

    /// The shard that runs a partition placed on `placed_shard` (placement may name more
    /// shards than this run has).
    pub fn shard_of(&self, placed_shard: usize) -> usize {
        placed_shard % self.shards
    }

    /// Whether a partition placed on `placed_shard` lives on this shard.
    pub fn owns(&self, placed_shard: usize) -> bool {
        self.shard_of(placed_shard) == self.me
    }

    /// Runs `work` on `shard`: directly when it is this one, else over the mesh.
    pub async fn invoke_on(&self, shard: usize, work: Box<dyn FnOnce() + Send>) {
        if shard == self.me {
            work();
            return;
        }
        ShardMetrics::bump(&self.metrics.cross_shard_hops);
        if self
            .senders
            .send_to(shard, MeshMessage::Invoke(work))
            .await
            .is_err()
        {
            tracing::error!(shard, "mesh peer is gone");
        }
    }

    fn owner(&self, snap: &ClusterSnapshot, tp: &TopicPartition) -> Option<usize> {
        snap.partition(&tp.topic, tp.partition)
            .map(|p| p.shard % self.shards)
    }

    /// Hands `req` to `shard`: locally by a direct call, else over the mesh.
    async fn send(&self, shard: usize, req: ShardRequest) {
        if shard == self.me {
            self.local.dispatch(req);
            return;
        }
        self.metrics
            .cross_shard_hops
            .set(self.metrics.cross_shard_hops.get() + 1);
        if self
            .senders
            .send_to(shard, MeshMessage::Shard(req))
            .await
            .is_err()
        {
            tracing::error!(shard, "mesh peer is gone");
        }
    }

    /// Stage one of a produce: every part is appended (in order) by its owner before this
    /// returns; the returned future completes when each part is acknowledged per `acks`.
    pub async fn submit_produce(
        &self,
        parts: Vec<ProducePart>,
        acks: i16,
    ) -> LocalBoxFuture<'static, Vec<ProduceOutcome>> {
        let snap = self.snapshot();
        let n = parts.len();
        let mut per_shard: BTreeMap<usize, (Vec<usize>, Vec<ProducePart>)> = BTreeMap::new();
        let mut outcomes: Vec<Option<ProduceOutcome>> = vec![None; n];
        for (i, part) in parts.into_iter().enumerate() {
            match self.owner(&snap, &part.tp) {
                Some(shard) => {
                    let entry = per_shard.entry(shard).or_default();
                    entry.0.push(i);
                    entry.1.push(part);
                }
                None => outcomes[i] = Some(failed_produce(KafkaCode::UnknownTopicOrPartition)),
            }
        }
        let mut pending = Vec::new();
        for (shard, (indexes, parts)) in per_shard {
            let (tx, rx) = oneshot::channel();
            self.send(
                shard,
                ShardRequest::Produce {
                    parts,
                    acks,
                    reply: tx,
                },
            )
            .await;
            pending.push((indexes, rx));
        }
        Box::pin(async move {
            for (indexes, rx) in pending {
                let answers = rx.await.unwrap_or_default();
                for (k, i) in indexes.into_iter().enumerate() {
                    outcomes[i] = Some(
                        answers
                            .get(k)
                            .cloned()
                            .unwrap_or_else(|| failed_produce(KafkaCode::UnknownServerError)),
                    );
                }
            }
            outcomes
                .into_iter()
                .map(|o| o.expect("every part answered"))
                .collect()
        })
    }

    /// Reads every part once from its owner, in request order.
    pub async fn fetch_once(&self, parts: &[FetchPart]) -> Vec<ReadResult> {
        let snap = self.snapshot();
        let mut results: Vec<Option<ReadResult>> = vec![None; parts.len()];
        let mut per_shard: BTreeMap<usize, (Vec<usize>, Vec<FetchPart>)> = BTreeMap::new();
        for (i, part) in parts.iter().enumerate() {
            match self.owner(&snap, &part.tp) {
                Some(shard) => {
                    let e = per_shard.entry(shard).or_default();
                    e.0.push(i);
                    e.1.push(part.clone());
                }
                None => results[i] = Some(unknown_read()),
            }
        }
        let mut pending = Vec::new();
        for (shard, (indexes, parts)) in per_shard {
            let (tx, rx) = oneshot::channel();
            self.send(shard, ShardRequest::Fetch { parts, reply: tx })
                .await;
            pending.push((indexes, rx));
        }
        for (indexes, rx) in pending {
            let answers = rx.await.unwrap_or_default();
            for (k, i) in indexes.into_iter().enumerate() {
                results[i] = Some(answers.get(k).cloned().unwrap_or_else(unknown_read));
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(unknown_read))
            .collect()
    }

    /// A fetch with Kafka's long-poll: answers once `min_bytes` are there, on an error, or
    /// at `max_wait`; in between it parks on the owners' data-arrival notices.
    pub async fn fetch(
        &self,
        parts: Vec<FetchPart>,
        min_bytes: usize,
        max_wait: Duration,
    ) -> Vec<ReadResult> {
        let deadline = Instant::now() + max_wait;
        loop {
            let results = self.fetch_once(&parts).await;
            let bytes: usize = results.iter().map(|r| r.records.len()).sum();
            let errored = results.iter().any(|r| r.error.is_some());
            let now = Instant::now();
            // min_bytes 0 answers at once, whatever is there (Kafka's fetch.min.bytes=0).
            if bytes >= min_bytes || errored || now >= deadline || parts.is_empty() {
                return results;
            }
            self.wait_for_data(&parts, deadline - now).await;
            let left = deadline.saturating_duration_since(Instant::now());
            let debounce = self.fetch_debounce.get().min(left);
            if !debounce.is_zero() {
                runtime::sleep(debounce).await;
            }
            if Instant::now() >= deadline {
                return self.fetch_once(&parts).await;
            }
        }
    }

    async fn wait_for_data(&self, parts: &[FetchPart], max_wait: Duration) {
        let snap = self.snapshot();
        let mut per_shard: BTreeMap<usize, Vec<FetchPart>> = BTreeMap::new();
        for part in parts {
            if let Some(shard) = self.owner(&snap, &part.tp) {
                per_shard.entry(shard).or_default().push(part.clone());
            }
        }
        let mut waits = Vec::new();
        for (shard, parts) in per_shard {
            let (tx, rx) = oneshot::channel();
            self.send(
                shard,
                ShardRequest::WaitForData {
                    parts,
                    max_wait,
                    reply: tx,
                },
            )
            .await;
            waits.push(rx);
        }
        if waits.is_empty() {
            runtime::sleep(max_wait).await;
            return;
        }
        // The first owner to see data ends the wait; dropping the others cancels theirs.
        let _ = runtime::timeout(max_wait, select_all(waits)).await;
    }

    /// OffsetForLeaderEpoch: each partition's end offset for an epoch, asked of its owner.
    pub async fn epoch_end_offsets(&self, queries: Vec<EpochQuery>) -> Vec<EpochAnswer> {
        self.scatter(
            queries,
            |q| &q.tp,
            |queries, reply| ShardRequest::EpochEndOffsets { queries, reply },
        )
        .await
    }

    pub async fn list_offsets(&self, queries: Vec<OffsetQuery>) -> Vec<OffsetAnswer> {
        self.scatter(
            queries,
            |q| &q.tp,
            |queries, reply| ShardRequest::ListOffsets { queries, reply },
        )
        .await
    }

    /// Splits `items` by the shard owning each one's partition, sends every shard its share
    /// at once, and puts the answers back in item order: an item no shard owns gets
    /// UNKNOWN_TOPIC_OR_PARTITION, one its shard did not answer UNKNOWN_SERVER_ERROR.
    async fn scatter<I, A: Clone>(
        &self,
        items: Vec<I>,
        tp_of: impl Fn(&I) -> &TopicPartition,
        request: impl Fn(Vec<I>, oneshot::Sender<Vec<Result<A, KafkaError>>>) -> ShardRequest,
    ) -> Vec<Result<A, KafkaError>> {
        let snap = self.snapshot();
        let mut results: Vec<Option<Result<A, KafkaError>>> = vec![None; items.len()];
        let mut per_shard: BTreeMap<usize, (Vec<usize>, Vec<I>)> = BTreeMap::new();
        for (i, item) in items.into_iter().enumerate() {
            match self.owner(&snap, tp_of(&item)) {
                Some(shard) => {
                    let e = per_shard.entry(shard).or_default();
                    e.0.push(i);
                    e.1.push(item);
                }
                None => results[i] = Some(Err(KafkaCode::UnknownTopicOrPartition.into())),
            }
        }
        let mut pending = Vec::new();
        for (shard, (indexes, items)) in per_shard {
            let (tx, rx) = oneshot::channel();
            self.send(shard, request(items, tx)).await;
            pending.push((indexes, rx));
        }
        for (indexes, rx) in pending {
            let answers = rx.await.unwrap_or_default();
            for (k, i) in indexes.into_iter().enumerate() {
                results[i] = Some(
                    answers
                        .get(k)
                        .cloned()
                        .unwrap_or(Err(KafkaCode::UnknownServerError.into())),
                );
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(KafkaCode::UnknownServerError.into())))
            .collect()
    }

    /// Creates topics through the controller (on shard 0).
    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<CreatedTopic> {
        let controller = self.controller.borrow().clone();
        if let Some(c) = controller {
            return c.create_topics(topics, validate_only).await;
        }
        let (tx, rx) = oneshot::channel();
        let msg = MeshMessage::CreateTopics {
            topics: topics.clone(),
            validate_only,
            reply: tx,
        };
        let _ = self.senders.send_to(CONTROLLER_SHARD, msg).await;
        rx.await.unwrap_or_else(|_| {
            topics
                .into_iter()
                .map(|t| CreatedTopic {
                    name: t.name,
                    result: Err(KafkaCode::NotController.into()),
                })
                .collect()
        })
    }

    /// Deletes topics through the controller (on shard 0).
    pub async fn delete_topics(&self, names: Vec<String>) -> Vec<(String, Result<(), KafkaError>)> {
        let controller = self.controller.borrow().clone();
        if let Some(c) = controller {
            return c.delete_topics(names).await;
        }
        let (tx, rx) = oneshot::channel();
        let msg = MeshMessage::DeleteTopics {
            names: names.clone(),
            reply: tx,
        };
        let _ = self.senders.send_to(CONTROLLER_SHARD, msg).await;
        rx.await.unwrap_or_else(|_| {
            names
                .into_iter()
                .map(|n| (n, Err(KafkaCode::NotController.into())))
                .collect()
        })
    }

    /// Runs a topic change (configs, partitions, reassignments) through the controller (on shard 0).
    pub async fn admin(&self, op: AdminOp) -> AdminResults {
        let controller = self.controller.borrow().clone();
        if let Some(c) = controller {
            return c.run_admin(op).await;
        }
        let names = op.names();
        let (tx, rx) = oneshot::channel();
        let _ = self
            .senders
            .send_to(CONTROLLER_SHARD, MeshMessage::Admin { op, reply: tx })
            .await;
        rx.await.unwrap_or_else(|_| {
            names
                .into_iter()
                .map(|n| (n, Err(KafkaCode::NotController.into())))
                .collect()
        })
    }

    /// DeleteRecords: each partition's owner moves its log start; one answer per part, in
    /// order (the new low watermark or an error).
    pub async fn delete_records(
        &self,
        parts: Vec<(TopicPartition, i64)>,
    ) -> Vec<Result<i64, KafkaError>> {
        let snap = self.snapshot();
        let mut out = Vec::with_capacity(parts.len());
        for (tp, offset) in parts {
            let Some(shard) = self.owner(&snap, &tp) else {
                out.push(Err(KafkaCode::UnknownTopicOrPartition.into()));
                continue;
            };
            let (tx, rx) = oneshot::channel();
            self.send(
                shard,
                ShardRequest::DeleteRecords {
                    parts: vec![(tp, offset)],
                    reply: tx,
                },
            )
            .await;
            let answer = rx.await.ok().and_then(|mut v| v.pop());
            out.push(answer.unwrap_or(Err(KafkaCode::UnknownServerError.into())));
        }
        out
    }

    /// A block of producer ids from the controller, as `(first, count)`.
    pub async fn allocate_producer_ids(&self) -> Result<(i64, i64), KafkaError> {
        if self.controller.borrow().is_some() {
            return self.allocate_producer_ids_here().await;
        }
        let (tx, rx) = oneshot::channel();
        let msg = MeshMessage::AllocateProducerIds { reply: tx };
        let _ = self.senders.send_to(CONTROLLER_SHARD, msg).await;
        rx.await
            .unwrap_or_else(|_| Err(KafkaCode::CoordinatorNotAvailable.into()))
    }

    /// Proposes a leader's ISR change to the controller; it takes effect when a snapshot
    /// carries it.
    pub async fn alter_partition(&self, change: AlterPartition) -> Result<(), KafkaError> {
        if self.controller.borrow().is_some() {
            return self.alter_partition_here(change).await;
        }
        let (tx, rx) = oneshot::channel();
        let msg = MeshMessage::AlterPartition { change, reply: tx };
        let _ = self.senders.send_to(CONTROLLER_SHARD, msg).await;
        rx.await
            .unwrap_or_else(|_| Err(KafkaCode::NotController.into()))
    }

    async fn alter_partition_here(&self, change: AlterPartition) -> Result<(), KafkaError> {
        let controller = self.controller.borrow().clone();
        match controller {
            Some(c) => c.alter_partition(change).await,
            None => Err(KafkaCode::NotController.into()),
        }
    }

    /// Removes broker `node_id`'s registration through the controller (on shard 0).
    pub async fn unregister_broker(&self, node_id: i32) -> Result<(), KafkaError> {
        if self.controller.borrow().is_some() {
            return self.unregister_broker_here(node_id).await;
        }
        let (tx, rx) = oneshot::channel();
        let msg = MeshMessage::UnregisterBroker { node_id, reply: tx };
        let _ = self.senders.send_to(CONTROLLER_SHARD, msg).await;
        rx.await
            .unwrap_or_else(|_| Err(KafkaCode::NotController.into()))
    }

    async fn unregister_broker_here(&self, node_id: i32) -> Result<(), KafkaError> {
        let controller = self.controller.borrow().clone();
        match controller {
            Some(c) => c.unregister_broker(node_id).await,
            None => Err(KafkaCode::NotController.into()),
        }
    }

    /// This shard's partitions (for the replication tasks).
    pub fn local_shard(&self) -> &Rc<Shard> {
        &self.local
    }

    async fn allocate_producer_ids_here(&self) -> Result<(i64, i64), KafkaError> {
        let controller = self.controller.borrow().clone();
        match controller {
            Some(c) => c.allocate_producer_ids(PRODUCER_ID_BLOCK).await,
            None => Err(KafkaCode::NotController.into()),
        }
    }

    /// Writes transaction markers to their partitions' owners; one result per marker, in
    /// order, once each is durable.
    pub async fn write_markers(&self, markers: Vec<MarkerPart>) -> Vec<Result<(), KafkaError>> {
        self.scatter(
            markers,
            |m| &m.tp,
            |markers, reply| ShardRequest::WriteMarkers { markers, reply },
        )
        .await
    }

    /// The producers of each partition (DescribeProducers), in order.
    pub async fn describe_producers(
        &self,
        tps: Vec<TopicPartition>,
    ) -> Vec<Result<Vec<ProducerView>, KafkaError>> {
        let snap = self.snapshot();
        let mut out = Vec::with_capacity(tps.len());
        for tp in tps {
            let Some(shard) = self.owner(&snap, &tp) else {
                out.push(Err(KafkaCode::UnknownTopicOrPartition.into()));
                continue;
            };
            let (tx, rx) = oneshot::channel();
            self.send(
                shard,
                ShardRequest::DescribeProducers {
                    tps: vec![tp],
                    reply: tx,
                },
            )
            .await;
            let answer = rx.await.ok().and_then(|mut v| v.pop());
            out.push(answer.unwrap_or(Err(KafkaCode::UnknownServerError.into())));
        }
        out
    }

    /// Closes this shard's partitions (after connections are drained).
    pub async fn close_partitions(&self) {
        self.local.close_all().await;
    }
}

fn failed_produce(code: KafkaCode) -> ProduceOutcome {
    ProduceOutcome {
        base_offset: -1,
        log_start_offset: -1,
        log_append_time_ms: -1,
        error: Some(KafkaError::new(code, "")),
    }
}

fn unknown_read() -> ReadResult {
    ReadResult {
        error: Some(KafkaError::new(KafkaCode::UnknownTopicOrPartition, "")),
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
        records: Default::default(),
        aborted: None,
    }
}
