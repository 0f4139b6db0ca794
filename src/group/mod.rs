//! Consumer groups: the coordinator (a sans-io state machine, [`state`] and
//! [`coordinator`]) and its thin I/O shell here. A group lives on the shard that owns its
//! `__consumer_offsets` partition (`abs(hash(group)) % partitions`); requests for it travel
//! there through the router's `invoke_on`, and its offsets and metadata are written to that
//! partition as ordinary produces, in Kafka's own record schemas ([`records`]), and read back
//! at start. Each shard's shell sits in a thread-local, set up once by [`install`]: it is
//! touched only by that shard's own tasks. Uses base, protocol, router (and shard's types).

pub mod assignor;
pub mod consumer;
pub mod coordinator;
pub mod leadership;
pub mod records;
pub mod state;

#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use kafka_protocol::records::RecordBatchDecoder;

use crate::base::{Clock, KafkaCode, SystemClock, TopicPartition};
use crate::controller::{ClusterSnapshot, NewTopic};
use crate::partition::Isolation;
use crate::protocol::batch;
use crate::router::Router;
use crate::runtime;
use crate::shard::{FetchPart, Origin, ProducePart};

pub use consumer::{ConsumerGroup, Heartbeat, HeartbeatReply};
pub use coordinator::{Coordinator, GroupDescription, MemberRef, OffsetCommits};
use leadership::{Coordinates, Ownership};
pub use records::CommittedOffset;
pub use state::{GroupConfig, GroupState, JoinRequest, JoinResult, Output, SyncResult, Token};

/// The internal topic holding offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Settings of the group subsystem.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    pub coordinator: GroupConfig,
    /// `offsets.topic.num.partitions`.
    pub offsets_partitions: i32,
    /// `offsets.topic.replication.factor`.
    pub offsets_replication_factor: i16,
}

/// Answers parked requests get, and the group each waits in.
enum Parked {
    Join(String, oneshot::Sender<JoinResult>),
    Sync(String, oneshot::Sender<SyncResult>),
}

impl Parked {
    fn group(&self) -> &str {
        match self {
            Parked::Join(g, _) | Parked::Sync(g, _) => g,
        }
    }

    /// Answers the request with `code` instead of waiting for the group.
    fn fail(self, code: KafkaCode) {
        match self {
            Parked::Join(_, tx) => {
                let _ = tx.send(JoinResult::error(code, ""));
            }
            Parked::Sync(_, tx) => {
                let _ = tx.send(SyncResult::error(code));
            }
        }
    }
}

/// One shard's coordinator, the offsets partitions it leads, and the channels of its parked
/// requests.
struct GroupShard {
    router: Rc<Router>,
    coordinator: RefCell<Coordinator>,
    owned: RefCell<Ownership>,
    parked: RefCell<HashMap<Token, Parked>>,
    next_token: Cell<Token>,
}

thread_local! {
    static LOCAL: RefCell<Option<Rc<GroupShard>>> = const { RefCell::new(None) };
}

fn local() -> Option<Rc<GroupShard>> {
    LOCAL.with(|l| l.borrow().clone())
}

fn now_ms() -> i64 {
    SystemClock.now_ms()
}

/// Sets up this shard's coordinator, loads the groups of the offsets partitions it leads,
/// follows their leadership from then on, and starts its timer. Call once per shard before
/// serving requests.
pub async fn install(router: Rc<Router>, settings: &GroupSettings) {
    let shell = Rc::new(GroupShard {
        router: router.clone(),
        coordinator: RefCell::new(Coordinator::new(settings.coordinator.clone())),
        owned: RefCell::new(Ownership::default()),
        parked: RefCell::new(HashMap::new()),
        next_token: Cell::new(1),
    });
    LOCAL.with(|l| *l.borrow_mut() = Some(shell.clone()));
    leadership::follow(&router, OFFSETS_TOPIC, &shell).await;
    runtime::detach(run_timer(Rc::downgrade(&shell)));
}

impl Coordinates for GroupShard {
    fn ownership(&self) -> &RefCell<Ownership> {
        &self.owned
    }

    fn load(self: Rc<Self>, partition: i32) -> LocalBoxFuture<'static, ()> {
        Box::pin(async move { load_partition(&self, partition).await })
    }

    fn unload(&self, partition: i32) {
        let partitions = offsets_partitions(&self.router.snapshot());
        let gone = |group: &str| records::partition_for(group, partitions) == partition;
        self.coordinator.borrow_mut().unload(gone);
        let waiting: Vec<Token> = self
            .parked
            .borrow()
            .iter()
            .filter(|(_, p)| gone(p.group()))
            .map(|(t, _)| *t)
            .collect();
        for t in waiting {
            if let Some(p) = self.parked.borrow_mut().remove(&t) {
                p.fail(KafkaCode::NotCoordinator);
            }
        }
    }
}

/// How many partitions `__consumer_offsets` has (0 before it exists).
fn offsets_partitions(snap: &ClusterSnapshot) -> i32 {
    snap.topics
        .get(OFFSETS_TOPIC)
        .map_or(0, |t| t.partitions.len() as i32)
}

/// Replays one `__consumer_offsets` partition into the coordinator.
async fn load_partition(shell: &GroupShard, partition: i32) {
    let mut loaded = 0usize;
    let now = now_ms();
    replay_partition(&shell.router, OFFSETS_TOPIC, partition, |r| {
        if r.control {
            if let Some(commit) = r.key.as_deref().and_then(marker_commits) {
                shell
                    .coordinator
                    .borrow_mut()
                    .complete_txn(r.producer_id, commit);
            }
            return;
        }
        let txn_producer = r.transactional.then_some(r.producer_id);
        if let Some(rec) = r.key.and_then(|k| records::decode(k, r.value)) {
            shell.coordinator.borrow_mut().load(rec, txn_producer, now);
            loaded += 1;
        }
    })
    .await;
    if loaded > 0 {
        tracing::info!(partition, records = loaded, "consumer groups loaded");
    }
}

/// Reads partition `partition` of the internal topic `topic` from its start, handing each
/// record to `each` in offset order (how coordinators rebuild their state).
pub(crate) async fn replay_partition(
    router: &Router,
    topic: &str,
    partition: i32,
    mut each: impl FnMut(kafka_protocol::records::Record),
) {
    let mut offset = 0i64;
    loop {
        let part = FetchPart {
            tp: TopicPartition::new(topic, partition),
            offset,
            max_bytes: 4 << 20,
            isolation: Isolation::ReadUncommitted,
            replica_id: -1,
        };
        let read = router.fetch_once(&[part]).await.remove(0);
        if read.error.is_some() || read.records.is_empty() {
            break;
        }
        let mut buf = read.records.to_bytes();
        let Ok(sets) = RecordBatchDecoder::decode_all(&mut buf) else {
            break;
        };
        for set in sets {
            for r in set.records {
                offset = offset.max(r.offset + 1);
                each(r);
            }
        }
    }
}

/// Expires sessions and completes rebalances on time. Wakes at least every 100 ms.
async fn run_timer(shell: std::rc::Weak<GroupShard>) {
    loop {
        let Some(s) = shell.upgrade() else { return };
        let now = now_ms();
        let next = s.coordinator.borrow().next_deadline();
        let wait = next.map_or(100, |t| (t - now).clamp(1, 100));
        drop(s);
        runtime::sleep(Duration::from_millis(wait as u64)).await;
        let Some(s) = shell.upgrade() else { return };
        let (outputs, expired) = s.coordinator.borrow_mut().tick(now_ms());
        s.deliver(outputs);
        for (group, topic, partition) in expired {
            let key = records::offset_key(&group, &topic, partition);
            let _ = persist(&s.router, &group, vec![(key, None)]).await;
        }
    }
}

impl GroupShard {
    fn token(&self) -> Token {
        let t = self.next_token.get();
        self.next_token.set(t + 1);
        t
    }

    /// Sends every answer the coordinator produced and writes what it asked to persist.
    fn deliver(&self, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Join(t, r) => {
                    if let Some(Parked::Join(_, tx)) = self.parked.borrow_mut().remove(&t) {
                        let _ = tx.send(r);
                    }
                }
                Output::Sync(t, r) => {
                    if let Some(Parked::Sync(_, tx)) = self.parked.borrow_mut().remove(&t) {
                        let _ = tx.send(r);
                    }
                }
                Output::PersistGroup(group, value) => {
                    let router = self.router.clone();
                    runtime::detach(async move {
                        let v = value.as_ref().map(records::group_value);
                        if let Err(e) =
                            persist(&router, &group, vec![(records::group_key(&group), v)]).await
                        {
                            tracing::warn!(%group, ?e, "persisting group metadata failed");
                        }
                    });
                }
            }
        }
    }
}

/// Whether a transaction marker's control key (version i16, type i16) says commit.
fn marker_commits(key: &[u8]) -> Option<bool> {
    match key {
        [_, _, 0, 0] => Some(false),
        [_, _, 0, 1] => Some(true),
        _ => None,
    }
}

/// Writes records for `group` to its offsets partition and waits until they are durable.
async fn persist(
    router: &Router,
    group: &str,
    kvs: Vec<(Bytes, Option<Bytes>)>,
) -> Result<(), KafkaCode> {
    persist_as(router, group, kvs, None).await
}

/// As [`persist`], written inside the transaction of `producer` when given (a transactional
/// batch with the producer's id and epoch, no sequence numbers, as Kafka's coordinator does).
async fn persist_as(
    router: &Router,
    group: &str,
    kvs: Vec<(Bytes, Option<Bytes>)>,
    producer: Option<(i64, i16)>,
) -> Result<(), KafkaCode> {
    let snap = router.snapshot();
    let partitions = snap
        .topics
        .get(OFFSETS_TOPIC)
        .map_or(0, |t| t.partitions.len() as i32);
    if partitions == 0 {
        return Err(KafkaCode::CoordinatorNotAvailable);
    }
    let partition = records::partition_for(group, partitions);
    let simple: Vec<batch::SimpleRecord> = kvs
        .iter()
        .map(|(k, v)| (Some(&k[..]), v.as_deref()))
        .collect();
    let mut built = batch::build_batch(0, now_ms(), &simple);
    if let Some((producer_id, epoch)) = producer {
        batch::stamp_producer(&mut built, producer_id, epoch, 0, true);
    }
    let part = ProducePart {
        tp: TopicPartition::new(OFFSETS_TOPIC, partition),
        records: Bytes::from(built),
        origin: Origin::Coordinator,
    };
    let done = router.submit_produce(vec![part], -1).await;
    match done.await.into_iter().next().and_then(|o| o.error) {
        None => Ok(()),
        Some(e) => Err(e.code),
    }
}

/// Creates `__consumer_offsets` if it is missing (as Kafka does on first FindCoordinator).
pub async fn ensure_offsets_topic(
    router: &Router,
    settings: &GroupSettings,
) -> Result<(), KafkaCode> {
    if router.snapshot().topics.contains_key(OFFSETS_TOPIC) {
        return Ok(());
    }
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_owned(), "compact".to_owned());
    let created = router
        .create_topics(
            vec![NewTopic {
                name: OFFSETS_TOPIC.to_owned(),
                num_partitions: settings.offsets_partitions,
                replication_factor: internal_topic_replication(
                    router,
                    settings.offsets_replication_factor,
                ),
                configs,
                assignments: Vec::new(),
            }],
            false,
        )
        .await;
    match created.first().map(|c| &c.result) {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) if e.code == KafkaCode::TopicAlreadyExists => Ok(()),
        _ => Err(KafkaCode::CoordinatorNotAvailable),
    }
}

/// The replication factor of a coordinator's internal topic: the configured one, capped at
/// the brokers the cluster has (so a single node needs no setting). Kafka refuses instead;
/// sluice's cluster tests start every broker before the first client looks a coordinator up.
pub(crate) fn internal_topic_replication(router: &Router, configured: i16) -> i16 {
    let live = router
        .snapshot()
        .brokers
        .iter()
        .filter(|b| !b.fenced)
        .count();
    let brokers = live.max(1);
    configured.min(i16::try_from(brokers).unwrap_or(i16::MAX))
}

/// The shard coordinating `group` and its offsets partition; COORDINATOR_NOT_AVAILABLE before
/// the topic exists, NOT_COORDINATOR when another broker leads the partition.
fn coordinator_shard(router: &Router, group: &str) -> Result<(usize, i32), KafkaCode> {
    let snap = router.snapshot();
    let topic = snap
        .topics
        .get(OFFSETS_TOPIC)
        .ok_or(KafkaCode::CoordinatorNotAvailable)?;
    let p = records::partition_for(group, topic.partitions.len() as i32);
    if !leadership::led_by_this_broker(&snap, OFFSETS_TOPIC, p) {
        return Err(KafkaCode::NotCoordinator);
    }
    Ok((router.shard_of(topic.partitions[p as usize].shard), p))
}

/// Runs `work` on the shard coordinating `group` and returns its answer.
async fn on_coordinator<T, F, Fut>(router: &Router, group: &str, work: F) -> Result<T, KafkaCode>
where
    T: Send + 'static,
    F: FnOnce(Rc<GroupShard>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    let (shard, partition) = coordinator_shard(router, group)?;
    let (tx, rx) = oneshot::channel();
    router
        .invoke_on(
            shard,
            Box::new(move || {
                let Some(shell) = local() else { return };
                if let Err(code) = shell.owned.borrow().check(partition) {
                    let _ = tx.send(Err(code));
                    return;
                }
                runtime::detach(async move {
                    let _ = tx.send(Ok(work(shell).await));
                });
            }),
        )
        .await;
    rx.await.unwrap_or(Err(KafkaCode::CoordinatorNotAvailable))
}

pub async fn join(router: &Router, group: String, req: JoinRequest) -> JoinResult {
    let member = req.member_id.clone();
    let g = group.clone();
    let result = on_coordinator(router, &group, move |s| async move {
        let token = s.token();
        let (tx, rx) = oneshot::channel();
        s.parked
            .borrow_mut()
            .insert(token, Parked::Join(g.clone(), tx));
        let outputs = s.coordinator.borrow_mut().join(token, &g, req, now_ms());
        s.deliver(outputs);
        rx.await
            .unwrap_or_else(|_| JoinResult::error(KafkaCode::CoordinatorNotAvailable, ""))
    })
    .await;
    result.unwrap_or_else(|code| JoinResult::error(code, &member))
}

pub async fn sync(
    router: &Router,
    group: String,
    who: MemberRef,
    assignments: Vec<(String, Bytes)>,
) -> SyncResult {
    let g = group.clone();
    let result = on_coordinator(router, &group, move |s| async move {
        let token = s.token();
        let (tx, rx) = oneshot::channel();
        s.parked
            .borrow_mut()
            .insert(token, Parked::Sync(g.clone(), tx));
        let outputs = s
            .coordinator
            .borrow_mut()
            .sync(token, &g, who, assignments, now_ms());
        s.deliver(outputs);
        rx.await
            .unwrap_or_else(|_| SyncResult::error(KafkaCode::CoordinatorNotAvailable))
    })
    .await;
    result.unwrap_or_else(SyncResult::error)
}

pub async fn heartbeat(router: &Router, group: String, who: MemberRef) -> KafkaCode {
    let g = group.clone();
    on_coordinator(router, &group, move |s| async move {
        s.coordinator.borrow_mut().heartbeat(&g, who, now_ms())
    })
    .await
    .unwrap_or_else(|c| c)
}

pub async fn leave(
    router: &Router,
    group: String,
    members: Vec<(String, Option<String>)>,
) -> Result<Vec<KafkaCode>, KafkaCode> {
    let g = group.clone();
    on_coordinator(router, &group, move |s| async move {
        let (_, codes, outputs) = s.coordinator.borrow_mut().leave(&g, members, now_ms());
        s.deliver(outputs);
        codes
    })
    .await
}

/// Commits offsets; answers once they are durable. One code per partition, in order.
pub async fn commit(
    router: &Router,
    group: String,
    who: MemberRef,
    offsets: Vec<((String, i32), CommittedOffset)>,
) -> Vec<KafkaCode> {
    let n = offsets.len();
    let g = group.clone();
    let result = on_coordinator(router, &group, move |s| async move {
        let accepted = s
            .coordinator
            .borrow_mut()
            .commit(&g, &who, offsets, now_ms());
        let stored = match accepted {
            Ok(stored) => stored,
            Err(code) => return vec![code; n],
        };
        match persist(&s.router, &g, offset_records(&g, &stored)).await {
            Ok(()) => {
                s.coordinator.borrow_mut().apply_commit(&g, &stored);
                vec![KafkaCode::None; n]
            }
            Err(code) => vec![code; n],
        }
    })
    .await;
    result.unwrap_or_else(|code| vec![code; n])
}

fn offset_records(group: &str, offsets: &OffsetCommits) -> Vec<(Bytes, Option<Bytes>)> {
    offsets
        .iter()
        .map(|((t, p), v)| {
            (
                records::offset_key(group, t, *p),
                Some(records::offset_value(v)),
            )
        })
        .collect()
}

/// TxnOffsetCommit: writes the offsets inside `producer`'s transaction; they count once the
/// transaction commits. One code per partition, in order.
pub async fn txn_commit(
    router: &Router,
    group: String,
    who: MemberRef,
    producer: (i64, i16),
    offsets: Vec<((String, i32), CommittedOffset)>,
) -> Vec<KafkaCode> {
    let n = offsets.len();
    let g = group.clone();
    let result = on_coordinator(router, &group, move |s| async move {
        let accepted = s
            .coordinator
            .borrow_mut()
            .commit(&g, &who, offsets, now_ms());
        let stored = match accepted {
            Ok(stored) => stored,
            Err(code) => return vec![code; n],
        };
        match persist_as(&s.router, &g, offset_records(&g, &stored), Some(producer)).await {
            Ok(()) => {
                s.coordinator
                    .borrow_mut()
                    .add_txn_offsets(&g, producer.0, &stored);
                vec![KafkaCode::None; n]
            }
            Err(code) => vec![code; n],
        }
    })
    .await;
    result.unwrap_or_else(|code| vec![code; n])
}

/// A transaction of `producer_id` that wrote to `__consumer_offsets` partition `partition`
/// ended (its marker is written there): its offsets become committed, or are dropped.
pub async fn complete_txn(router: &Router, partition: i32, producer_id: i64, commit: bool) {
    let snap = router.snapshot();
    let Some(shard) = snap
        .partition(OFFSETS_TOPIC, partition)
        .map(|p| router.shard_of(p.shard))
    else {
        return;
    };
    let (tx, rx) = oneshot::channel();
    router
        .invoke_on(
            shard,
            Box::new(move || {
                if let Some(s) = local() {
                    s.coordinator.borrow_mut().complete_txn(producer_id, commit);
                }
                let _ = tx.send(());
            }),
        )
        .await;
    let _ = rx.await;
}

/// Committed offsets (None where nothing is committed) and whether an open transaction holds
/// a newer one; `wanted` None means all.
pub async fn fetch_offsets(
    router: &Router,
    group: String,
    wanted: Option<Vec<(String, i32)>>,
) -> Result<Vec<((String, i32), Option<CommittedOffset>, bool)>, KafkaCode> {
    let g = group.clone();
    on_coordinator(router, &group, move |s| async move {
        s.coordinator.borrow().fetch_offsets(&g, wanted.as_deref())
    })
    .await
}

pub async fn describe(router: &Router, group: String) -> Result<GroupDescription, KafkaCode> {
    let g = group.clone();
    on_coordinator(router, &group, move |s| async move {
        s.coordinator.borrow().describe(&g)
    })
    .await
}

/// Every group on every shard: `(group, protocol type, state name)`.
pub async fn list(router: &Router) -> Vec<(String, String, &'static str)> {
    let mut all = Vec::new();
    for shard in 0..router.shard_count() {
        let (tx, rx) = oneshot::channel();
        router
            .invoke_on(
                shard,
                Box::new(move || {
                    let groups = local()
                        .map(|s| s.coordinator.borrow().list())
                        .unwrap_or_default();
                    let _ = tx.send(groups);
                }),
            )
            .await;
        all.extend(rx.await.unwrap_or_default());
    }
    all.sort();
    all
}

/// ConsumerGroupHeartbeat, on the group's coordinator shard; the partition counts the
/// assignor works from come from the current metadata snapshot.
pub async fn consumer_heartbeat(router: &Router, group: String, hb: Heartbeat) -> HeartbeatReply {
    let member = hb.member_id.clone();
    let g = group.clone();
    on_coordinator(router, &group, move |s| async move {
        let partitions: BTreeMap<String, i32> = s
            .router
            .snapshot()
            .topics
            .values()
            .map(|t| (t.name.clone(), t.partitions.len() as i32))
            .collect();
        s.coordinator
            .borrow_mut()
            .consumer_heartbeat(&g, hb, &partitions, now_ms())
    })
    .await
    .unwrap_or_else(|code| HeartbeatReply::error(code, &member, "coordinator not available"))
}

/// A consumer group as ConsumerGroupDescribe shows it.
pub async fn consumer_describe(router: &Router, group: String) -> Result<ConsumerGroup, KafkaCode> {
    let g = group.clone();
    on_coordinator(router, &group, move |s| async move {
        s.coordinator.borrow().consumer_group(&g).cloned()
    })
    .await?
}

pub async fn delete_group(router: &Router, group: String) -> KafkaCode {
    let g = group.clone();
    let result = on_coordinator(router, &group, move |s| async move {
        let keys = match s.coordinator.borrow_mut().delete_group(&g) {
            Ok(keys) => keys,
            Err(code) => return code,
        };
        let mut kvs: Vec<(Bytes, Option<Bytes>)> = keys
            .iter()
            .map(|(t, p)| (records::offset_key(&g, t, *p), None))
            .collect();
        kvs.push((records::group_key(&g), None));
        persist(&s.router, &g, kvs)
            .await
            .err()
            .unwrap_or(KafkaCode::None)
    })
    .await;
    result.unwrap_or_else(|c| c)
}

/// OffsetDelete: one code per partition, or a group-level error.
pub async fn delete_offsets(
    router: &Router,
    group: String,
    partitions: Vec<(String, i32)>,
) -> Result<Vec<KafkaCode>, KafkaCode> {
    let g = group.clone();
    on_coordinator(router, &group, move |s| async move {
        let codes =
            s.coordinator
                .borrow_mut()
                .delete_offsets(&g, &partitions, subscription_mentions)?;
        let kvs = partitions
            .iter()
            .zip(&codes)
            .filter(|(_, c)| **c == KafkaCode::None)
            .map(|((t, p), _)| (records::offset_key(&g, t, *p), None))
            .collect::<Vec<_>>();
        if !kvs.is_empty() {
            persist(&s.router, &g, kvs).await?;
        }
        Ok(codes)
    })
    .await?
}

/// Whether a consumer-protocol subscription (v0+: version, topics array, ...) names `topic`.
fn subscription_mentions(metadata: &Bytes, topic: &str) -> bool {
    let mut b = metadata.clone();
    use bytes::Buf;
    if b.remaining() < 6 {
        return false;
    }
    b.advance(2);
    let n = b.get_i32();
    for _ in 0..n.max(0) {
        if b.remaining() < 2 {
            return false;
        }
        let len = b.get_i16().max(0) as usize;
        if b.remaining() < len {
            return false;
        }
        if &b[..len] == topic.as_bytes() {
            return true;
        }
        b.advance(len);
    }
    false
}
