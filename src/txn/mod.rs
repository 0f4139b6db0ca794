//! Exactly-once: producer ids and the transaction coordinator (KIP-98). The coordinator is a
//! sans-io state machine ([`coordinator`]); this is its thin I/O shell. A transactional id
//! lives on the shard that owns its `__transaction_state` partition
//! (`abs(hash(id)) % partitions`, as Kafka places it); requests travel there through the
//! router's `invoke_on`. Every state change is written to that partition in Kafka's own
//! record format ([`records`]) and is durable before it counts; a decided transaction's
//! markers go to its partitions through the router, then the transaction completes. State is
//! rebuilt from the topic at start, and transactions decided before a crash get their markers
//! written again. Each shard's shell sits in a thread-local set up by [`install`].
//! Uses base, protocol, partition (types), router, group.

pub mod coordinator;
mod markers;
pub mod producer_ids;
pub mod records;
pub mod state;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::LocalBoxFuture;

use crate::base::{Clock, KafkaCode, SystemClock, TopicPartition};
use crate::controller::{ClusterSnapshot, NewTopic};
use crate::group::{self, leadership::Coordinates, leadership::Ownership};
use crate::protocol::batch::{self, ControlType};
use crate::router::Router;
use crate::runtime;
use crate::shard::{MarkerPart, Origin, ProducePart};

pub use coordinator::{
    Decision, ListedTxn, MarkerJob, ProducerRef, Transition, TxnConfig, TxnCoordinator,
};
pub use state::{TxnMetadata, TxnStatus};

/// The internal topic holding transaction state.
pub const TXN_STATE_TOPIC: &str = "__transaction_state";

/// Longest wait between marker-writing attempts.
const MAX_MARKER_BACKOFF: Duration = Duration::from_secs(5);

/// Settings of the transaction subsystem.
#[derive(Debug, Clone)]
pub struct TxnSettings {
    pub coordinator: TxnConfig,
    /// `transaction.state.log.num.partitions`
    pub state_partitions: i32,
    /// `transaction.state.log.replication.factor`
    pub state_replication_factor: i16,
}

/// One shard's coordinator and the state partitions it leads.
struct TxnShard {
    router: Rc<Router>,
    coordinator: RefCell<TxnCoordinator>,
    owned: RefCell<Ownership>,
    peers: markers::Peers,
}

thread_local! {
    static LOCAL: RefCell<Option<Rc<TxnShard>>> = const { RefCell::new(None) };
}

fn local() -> Option<Rc<TxnShard>> {
    LOCAL.with(|l| l.borrow().clone())
}

fn now_ms() -> i64 {
    SystemClock.now_ms()
}

/// Sets up this shard's coordinator, loads the transactional ids of the
/// `__transaction_state` partitions it leads (resuming their unfinished transactions),
/// follows their leadership from then on, and starts the timer. Call once per shard before
/// serving requests.
pub async fn install(router: Rc<Router>, settings: &TxnSettings) {
    let shell = Rc::new(TxnShard {
        router: router.clone(),
        coordinator: RefCell::new(TxnCoordinator::new(settings.coordinator.clone())),
        owned: RefCell::new(Ownership::default()),
        peers: markers::Peers::default(),
    });
    LOCAL.with(|l| *l.borrow_mut() = Some(shell.clone()));
    group::leadership::follow(&router, TXN_STATE_TOPIC, &shell).await;
    runtime::detach(run_timer(Rc::downgrade(&shell)));
}

impl Coordinates for TxnShard {
    fn ownership(&self) -> &RefCell<Ownership> {
        &self.owned
    }

    fn load(self: Rc<Self>, partition: i32) -> LocalBoxFuture<'static, ()> {
        Box::pin(async move { load_partition(&self, partition).await })
    }

    fn unload(&self, partition: i32) {
        let partitions = state_partitions(&self.router.snapshot());
        self.coordinator
            .borrow_mut()
            .unload(|id| group::records::partition_for(id, partitions) == partition);
    }
}

/// How many partitions `__transaction_state` has (0 before it exists).
fn state_partitions(snap: &ClusterSnapshot) -> i32 {
    snap.topics
        .get(TXN_STATE_TOPIC)
        .map_or(0, |t| t.partitions.len() as i32)
}

/// Replays one `__transaction_state` partition, then resumes the transactions of it that
/// were decided but not completed (their markers are written again).
async fn load_partition(shell: &Rc<TxnShard>, partition: i32) {
    let mut loaded = 0usize;
    group::replay_partition(&shell.router, TXN_STATE_TOPIC, partition, |r| {
        if let Some((id, meta)) = r.key.and_then(|k| records::decode(k, r.value)) {
            shell.coordinator.borrow_mut().load(id, meta);
            loaded += 1;
        }
    })
    .await;
    if loaded > 0 {
        tracing::info!(partition, records = loaded, "transaction state loaded");
    }
    let partitions = state_partitions(&shell.router.snapshot());
    let unfinished = shell.coordinator.borrow().unfinished();
    for job in unfinished
        .into_iter()
        .filter(|j| group::records::partition_for(&j.txn_id, partitions) == partition)
    {
        runtime::detach(write_markers(shell.clone(), job));
    }
}

/// The epoch markers carry for `txn_id`: the leader epoch of its `__transaction_state`
/// partition, so a partition can refuse markers from a deposed coordinator. None once this
/// broker no longer leads that partition.
fn coordinator_epoch(router: &Router, txn_id: &str) -> Option<i32> {
    let snap = router.snapshot();
    let p = group::records::partition_for(txn_id, state_partitions(&snap));
    group::leadership::led_by_this_broker(&snap, TXN_STATE_TOPIC, p)
        .then(|| snap.partition(TXN_STATE_TOPIC, p).map(|i| i.leader_epoch))
        .flatten()
}

/// Aborts timed-out transactions and expires idle ids on time.
async fn run_timer(shell: Weak<TxnShard>) {
    loop {
        let Some(s) = shell.upgrade() else { return };
        let now = now_ms();
        let next = s.coordinator.borrow().next_deadline();
        let wait = next.map_or(1000, |t| (t - now).clamp(10, 1000));
        drop(s);
        runtime::sleep(Duration::from_millis(wait as u64)).await;
        let Some(s) = shell.upgrade() else { return };
        let due = s.coordinator.borrow_mut().tick(now_ms());
        for t in due {
            if t.to.status == TxnStatus::PrepareAbort {
                tracing::info!(txn = %t.txn_id, "aborting a transaction past its timeout");
            }
            let s = s.clone();
            runtime::detach(async move {
                let _ = apply_transition(&s, t).await;
            });
        }
    }
}

/// Makes a transition durable and applies it; a decided transaction's markers start.
async fn apply_transition(shell: &Rc<TxnShard>, t: Transition) -> Result<(), KafkaCode> {
    let result = persist(&shell.router, &t).await;
    if let Err(code) = result {
        tracing::warn!(txn = %t.txn_id, ?code, "writing transaction state failed");
    }
    let job = shell
        .coordinator
        .borrow_mut()
        .persisted(&t.txn_id, result.is_ok());
    if let Some(job) = job {
        runtime::detach(write_markers(shell.clone(), job));
    }
    result
}

async fn decide<R>(shell: &Rc<TxnShard>, decision: Decision<R>) -> Result<R, KafkaCode> {
    match decision {
        Decision::Reply(r) => r,
        Decision::Persist(t, reply) => {
            apply_transition(shell, t).await?;
            reply
        }
        Decision::NeedsProducerId => Err(KafkaCode::UnknownServerError),
    }
}

/// Writes the transaction's state record to its `__transaction_state` partition, durably.
async fn persist(router: &Router, t: &Transition) -> Result<(), KafkaCode> {
    let partitions = router
        .snapshot()
        .topics
        .get(TXN_STATE_TOPIC)
        .map_or(0, |t| t.partitions.len() as i32);
    if partitions == 0 {
        return Err(KafkaCode::CoordinatorNotAvailable);
    }
    let key = records::key(&t.txn_id);
    let value = (t.to.status != TxnStatus::Dead).then(|| records::value(&t.to));
    let batch = batch::build_batch(0, now_ms(), &[(Some(&key[..]), value.as_deref())]);
    let part = ProducePart {
        tp: TopicPartition::new(
            TXN_STATE_TOPIC,
            group::records::partition_for(&t.txn_id, partitions),
        ),
        records: Bytes::from(batch),
        origin: Origin::Coordinator,
    };
    let done = router.submit_produce(vec![part], -1).await;
    match done.await.into_iter().next().and_then(|o| o.error) {
        None => Ok(()),
        Some(e) => Err(e.code),
    }
}

/// Writes a decided transaction's markers to all its partitions (retrying what fails for a
/// passing reason), settles the consumer offsets it committed, then completes it.
async fn write_markers(shell: Rc<TxnShard>, job: MarkerJob) {
    let kind = if job.commit {
        ControlType::Commit
    } else {
        ControlType::Abort
    };
    let mut left: Vec<(String, i32)> = job.partitions.iter().cloned().collect();
    let mut backoff = Duration::from_millis(50);
    while !left.is_empty() {
        // A coordinator that lost its partition stops: the new one resumes from the log.
        let Some(coordinator_epoch) = coordinator_epoch(&shell.router, &job.txn_id) else {
            return;
        };
        let parts = left
            .iter()
            .map(|(t, p)| MarkerPart {
                tp: TopicPartition::new(t.clone(), *p),
                producer_id: job.producer_id,
                producer_epoch: job.epoch,
                coordinator_epoch,
                kind,
            })
            .collect();
        let results = markers::deliver(&shell.router, &shell.peers, parts).await;
        let snap = shell.router.snapshot();
        left = left
            .into_iter()
            .zip(results)
            .filter(|((t, p), r)| match r {
                Ok(()) => false,
                Err(e) if marker_error_is_final(e.code, snap.partition(t, *p).is_some()) => {
                    tracing::warn!(txn = %job.txn_id, topic = %t, partition = p, error = %e,
                        "transaction marker not written");
                    false
                }
                Err(_) => true,
            })
            .map(|(tp, _)| tp)
            .collect();
        if !left.is_empty() {
            runtime::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_MARKER_BACKOFF);
        }
    }
    // Offsets partitions led elsewhere settle there, when their leader writes the marker.
    let snap = shell.router.snapshot();
    for (_, p) in job.partitions.iter().filter(|(t, p)| {
        t == group::OFFSETS_TOPIC
            && group::leadership::led_by_this_broker(&snap, group::OFFSETS_TOPIC, *p)
    }) {
        group::complete_txn(&shell.router, *p, job.producer_id, job.commit).await;
    }
    loop {
        let next = shell
            .coordinator
            .borrow_mut()
            .markers_written(&job.txn_id, now_ms());
        let Some(t) = next else { return };
        if apply_transition(&shell, t).await.is_ok() {
            return;
        }
        runtime::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_MARKER_BACKOFF);
    }
}

/// Marker errors no retry can fix: the partition is gone, or it has seen a newer epoch or
/// coordinator.
/// Whether a marker that failed with `code` is given up. UNKNOWN_TOPIC_OR_PARTITION is final
/// only for a partition the cluster no longer has (deleted, as Kafka drops such markers): one
/// the metadata still names is opening (a broker just restarted loads its logs while the
/// coordinator resumes) or moving, and its marker is retried.
fn marker_error_is_final(code: KafkaCode, partition_exists: bool) -> bool {
    match code {
        KafkaCode::UnknownTopicOrPartition => !partition_exists,
        KafkaCode::InvalidProducerEpoch | KafkaCode::TransactionCoordinatorFenced => true,
        _ => false,
    }
}

/// Creates `__transaction_state` if it is missing (as Kafka does on first use).
pub async fn ensure_state_topic(router: &Router, settings: &TxnSettings) -> Result<(), KafkaCode> {
    if router.snapshot().topics.contains_key(TXN_STATE_TOPIC) {
        return Ok(());
    }
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_owned(), "compact".to_owned());
    let created = router
        .create_topics(
            vec![NewTopic {
                name: TXN_STATE_TOPIC.to_owned(),
                num_partitions: settings.state_partitions,
                replication_factor: group::internal_topic_replication(
                    router,
                    settings.state_replication_factor,
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

/// The shard coordinating `txn_id` and its state partition; COORDINATOR_NOT_AVAILABLE before
/// the topic exists, NOT_COORDINATOR when another broker leads the partition.
fn coordinator_shard(router: &Router, txn_id: &str) -> Result<(usize, i32), KafkaCode> {
    let snap = router.snapshot();
    let topic = snap
        .topics
        .get(TXN_STATE_TOPIC)
        .ok_or(KafkaCode::CoordinatorNotAvailable)?;
    let p = group::records::partition_for(txn_id, topic.partitions.len() as i32);
    if !group::leadership::led_by_this_broker(&snap, TXN_STATE_TOPIC, p) {
        return Err(KafkaCode::NotCoordinator);
    }
    Ok((router.shard_of(topic.partitions[p as usize].shard), p))
}

/// Runs `work` on the shard coordinating `txn_id` and returns its answer.
async fn on_coordinator<T, F, Fut>(router: &Router, txn_id: &str, work: F) -> Result<T, KafkaCode>
where
    T: Send + 'static,
    F: FnOnce(Rc<TxnShard>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, KafkaCode>> + 'static,
{
    let (shard, partition) = coordinator_shard(router, txn_id)?;
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
                    let _ = tx.send(work(shell).await);
                });
            }),
        )
        .await;
    rx.await.unwrap_or(Err(KafkaCode::CoordinatorNotAvailable))
}

/// InitProducerId: a fresh idempotent producer id, or (with a transactional id) the id's
/// producer with a bumped epoch, fencing older instances.
pub async fn init_producer_id(
    router: &Router,
    settings: &TxnSettings,
    txn_id: Option<String>,
    timeout_ms: i32,
    expected: Option<ProducerRef>,
) -> Result<ProducerRef, KafkaCode> {
    let Some(txn_id) = txn_id else {
        let producer_id = producer_ids::next(router).await.map_err(|e| e.code)?;
        return Ok(ProducerRef {
            producer_id,
            epoch: 0,
        });
    };
    if txn_id.is_empty() {
        return Err(KafkaCode::InvalidRequest);
    }
    ensure_state_topic(router, settings).await?;
    let id = txn_id.clone();
    on_coordinator(router, &txn_id, move |shell| async move {
        let mut fresh = None;
        loop {
            let decision = shell.coordinator.borrow_mut().init_producer_id(
                &id,
                timeout_ms,
                expected,
                fresh,
                now_ms(),
            );
            if decision != Decision::NeedsProducerId {
                return decide(&shell, decision).await;
            }
            fresh = Some(
                producer_ids::next(&shell.router)
                    .await
                    .map_err(|e| e.code)?,
            );
        }
    })
    .await
}

/// AddPartitionsToTxn for partitions known to exist.
pub async fn add_partitions(
    router: &Router,
    txn_id: String,
    who: ProducerRef,
    partitions: Vec<(String, i32)>,
) -> Result<(), KafkaCode> {
    let id = txn_id.clone();
    on_coordinator(router, &txn_id, move |shell| async move {
        let decision =
            shell
                .coordinator
                .borrow_mut()
                .add_partitions(&id, who, &partitions, now_ms());
        decide(&shell, decision).await
    })
    .await
}

/// AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the transaction.
pub async fn add_offsets(
    router: &Router,
    groups: &group::GroupSettings,
    txn_id: String,
    who: ProducerRef,
    group_id: &str,
) -> Result<(), KafkaCode> {
    group::ensure_offsets_topic(router, groups).await?;
    let partitions = router
        .snapshot()
        .topics
        .get(group::OFFSETS_TOPIC)
        .map_or(0, |t| t.partitions.len() as i32);
    let p = group::records::partition_for(group_id, partitions);
    add_partitions(
        router,
        txn_id,
        who,
        vec![(group::OFFSETS_TOPIC.to_owned(), p)],
    )
    .await
}

/// EndTxn: commit or abort; answered once the decision is durable.
pub async fn end_txn(
    router: &Router,
    txn_id: String,
    who: ProducerRef,
    commit: bool,
) -> Result<(), KafkaCode> {
    let id = txn_id.clone();
    on_coordinator(router, &txn_id, move |shell| async move {
        let decision = shell
            .coordinator
            .borrow_mut()
            .end_txn(&id, who, commit, now_ms());
        decide(&shell, decision).await
    })
    .await
}

/// ListTransactions across every shard.
pub async fn list(
    router: &Router,
    states: Vec<String>,
    producer_ids: Vec<i64>,
    min_duration_ms: i64,
) -> Vec<ListedTxn> {
    let mut all = Vec::new();
    for shard in 0..router.shard_count() {
        let (tx, rx) = oneshot::channel();
        let (states, producer_ids) = (states.clone(), producer_ids.clone());
        router
            .invoke_on(
                shard,
                Box::new(move || {
                    let found = local()
                        .map(|s| {
                            s.coordinator.borrow().list(
                                &states,
                                &producer_ids,
                                min_duration_ms,
                                now_ms(),
                            )
                        })
                        .unwrap_or_default();
                    let _ = tx.send(found);
                }),
            )
            .await;
        all.extend(rx.await.unwrap_or_default());
    }
    all.sort_by(|a, b| a.txn_id.cmp(&b.txn_id));
    all
}

/// DescribeTransactions for one id: its state, or TRANSACTIONAL_ID_NOT_FOUND.
pub async fn describe(router: &Router, txn_id: String) -> Result<TxnMetadata, KafkaCode> {
    let id = txn_id.clone();
    on_coordinator(router, &txn_id, move |shell| async move {
        shell
            .coordinator
            .borrow()
            .get(&id)
            .filter(|m| m.status != TxnStatus::Dead)
            .cloned()
            .ok_or(KafkaCode::TransactionalIdNotFound)
    })
    .await
}
