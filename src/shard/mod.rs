//! A shard owns this core's partitions: it opens and closes them as metadata snapshots say
//! (one snapshot at a time, newest wins, as explicit transitions: see [`transitions`]),
//! and runs the partition work that arrives for them, from its own connections or from
//! other shards. Requests arrive as owned [`ShardRequest`] values with a oneshot for the
//! answer; [`Shard::dispatch`] does the order-sensitive part (appending) at once and spawns
//! the rest, so produces from one connection keep their order. Uses base, runtime, partition.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::{join_all, select_all};

use crate::base::{Clock, KafkaCode, KafkaError, SystemClock, TopicPartition};
use crate::config::LogSettings;
use crate::metrics;
use crate::partition::isr::ReplicaLayout;
pub use crate::partition::Origin;
use crate::partition::{
    Isolation, Partition, ProducerView, ReadResult, RoleChange, DEFAULT_REPLICA_LAG_TIME_MAX_MS,
};
use crate::protocol::batch::ControlType;
use crate::runtime::{self, TaskClass};
pub use transitions::{Desired, Placement, Role};
use transitions::{MetadataApplier, Transition};

mod housekeeping;
mod transitions;

/// Each topic's own configs (Kafka names), by topic name.
pub type TopicConfigs = HashMap<String, Arc<BTreeMap<String, String>>>;

/// One partition's part of a produce.
#[derive(Debug)]
pub struct ProducePart {
    pub tp: TopicPartition,
    pub records: Bytes,
    pub origin: Origin,
}

/// The answer for one produced partition.
#[derive(Debug, Clone)]
pub struct ProduceOutcome {
    pub base_offset: i64,
    pub log_start_offset: i64,
    /// The broker's append time for LogAppendTime topics, else -1 (Kafka's wire value).
    pub log_append_time_ms: i64,
    pub error: Option<KafkaError>,
}

/// One partition's part of a fetch.
/// Kafka's `replica_id` of a debugging fetch, served by followers too.
pub const DEBUGGING_REPLICA_ID: i32 = -2;

#[derive(Debug, Clone)]
pub struct FetchPart {
    pub tp: TopicPartition,
    pub offset: i64,
    pub max_bytes: usize,
    pub isolation: Isolation,
    /// The fetching follower's broker id, or -1 for a consumer (Kafka's `replica_id`). A
    /// follower reads up to the leader's durable end, not the high watermark.
    pub replica_id: i32,
}

/// What ListOffsets asks of one partition.
#[derive(Debug, Clone)]
pub struct OffsetQuery {
    pub tp: TopicPartition,
    pub timestamp: i64,
    pub isolation: Isolation,
}

/// A transaction marker to write to one partition.
#[derive(Debug, Clone)]
pub struct MarkerPart {
    pub tp: TopicPartition,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub kind: ControlType,
}

/// What OffsetForLeaderEpoch asks of one partition: the end offset of `leader_epoch`, from a
/// caller that believes the current leader epoch is `current_leader_epoch` (-1: unchecked).
#[derive(Debug, Clone)]
pub struct EpochQuery {
    pub tp: TopicPartition,
    pub current_leader_epoch: i32,
    pub leader_epoch: i32,
}

/// The answer to an OffsetForLeaderEpoch query: `(epoch, end offset)` or an error.
pub type EpochAnswer = Result<(i32, i64), KafkaError>;

/// The answer to a ListOffsets query: `(offset, timestamp)` or an error.
pub type OffsetAnswer = Result<(i64, i64), KafkaError>;

/// Work for the shard that owns the named partitions.
pub enum ShardRequest {
    Produce {
        parts: Vec<ProducePart>,
        acks: i16,
        reply: oneshot::Sender<Vec<ProduceOutcome>>,
    },
    Fetch {
        parts: Vec<FetchPart>,
        reply: oneshot::Sender<Vec<ReadResult>>,
    },
    /// Completes when any partition's high watermark passes its offset, or at the deadline.
    WaitForData {
        parts: Vec<FetchPart>,
        max_wait: Duration,
        reply: oneshot::Sender<()>,
    },
    ListOffsets {
        queries: Vec<OffsetQuery>,
        reply: oneshot::Sender<Vec<OffsetAnswer>>,
    },
    /// Appends transaction markers; answers once each is durable (or failed).
    WriteMarkers {
        markers: Vec<MarkerPart>,
        reply: oneshot::Sender<Vec<Result<(), KafkaError>>>,
    },
    /// DeleteRecords: moves each partition's log start to its offset (-1: the high
    /// watermark); answers the new low watermarks.
    DeleteRecords {
        parts: Vec<(TopicPartition, i64)>,
        reply: oneshot::Sender<Vec<Result<i64, KafkaError>>>,
    },
    /// Each partition's end offset for a leader epoch (OffsetForLeaderEpoch).
    EpochEndOffsets {
        queries: Vec<EpochQuery>,
        reply: oneshot::Sender<Vec<EpochAnswer>>,
    },
    /// The producers each partition knows (DescribeProducers).
    DescribeProducers {
        tps: Vec<TopicPartition>,
        reply: oneshot::Sender<Vec<Result<Vec<ProducerView>, KafkaError>>>,
    },
}

/// The partitions this shard owns.
pub struct Shard {
    id: usize,
    data_dir: PathBuf,
    settings: LogSettings,
    partitions: RefCell<HashMap<TopicPartition, Rc<Partition>>>,
    /// Each topic's own configs as of the newest metadata version seen, layered over
    /// `settings` when its partitions open and applied to them when they change.
    topic_configs: RefCell<(u64, TopicConfigs)>,
    applier: RefCell<MetadataApplier>,
    /// See [`Shard::roles_changed`].
    role_waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// The broker's `replica.lag.time.max.ms`.
    replica_lag_max_ms: std::cell::Cell<i64>,
}

/// What a placement makes the partition's replica here.
fn role_change(placement: &Placement) -> RoleChange {
    match placement.role {
        Role::Leader => RoleChange::Leader(ReplicaLayout {
            local: placement.local,
            leader_epoch: placement.leader_epoch,
            partition_epoch: placement.partition_epoch,
            replicas: placement.replicas.clone(),
            isr: placement.isr.clone(),
        }),
        Role::Follower { leader } => RoleChange::Follower {
            leader,
            leader_epoch: placement.leader_epoch,
        },
    }
}

fn not_here() -> KafkaError {
    KafkaError::new(
        KafkaCode::UnknownTopicOrPartition,
        "This server does not host this topic-partition.",
    )
}

impl Shard {
    pub fn new(
        id: usize,
        data_dir: PathBuf,
        settings: LogSettings,
        message_max_bytes: usize,
    ) -> Rc<Shard> {
        // The broker's message.max.bytes is every topic's default max.message.bytes.
        let settings = LogSettings {
            max_message_bytes: message_max_bytes,
            ..settings
        };
        Rc::new(Shard {
            id,
            data_dir,
            settings,
            partitions: RefCell::new(HashMap::new()),
            topic_configs: RefCell::new((0, TopicConfigs::new())),
            applier: RefCell::new(MetadataApplier::default()),
            role_waiters: RefCell::new(Vec::new()),
            replica_lag_max_ms: std::cell::Cell::new(DEFAULT_REPLICA_LAG_TIME_MAX_MS),
        })
    }

    pub fn id(&self) -> usize {
        self.id
    }

    fn partition(&self, tp: &TopicPartition) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(tp).cloned()
    }

    /// Runs a request: appends happen before this returns; everything else is spawned.
    pub fn dispatch(self: &Rc<Self>, req: ShardRequest) {
        match req {
            ShardRequest::Produce { parts, acks, reply } => self.produce(parts, acks, reply),
            ShardRequest::Fetch { parts, reply } => {
                let me = self.clone();
                runtime::spawn_in(TaskClass::Fetch, async move {
                    let _ = reply.send(me.fetch(parts).await);
                })
                .detach();
            }
            ShardRequest::WaitForData {
                parts,
                max_wait,
                reply,
            } => {
                let me = self.clone();
                runtime::detach(async move { me.wait_for_data(parts, max_wait, reply).await });
            }
            ShardRequest::WriteMarkers { markers, reply } => self.write_markers(markers, reply),
            ShardRequest::DeleteRecords { parts, reply } => {
                let me = self.clone();
                runtime::detach(async move {
                    let _ = reply.send(me.delete_records(parts).await);
                });
            }
            ShardRequest::DescribeProducers { tps, reply } => {
                let answers = tps
                    .iter()
                    .map(|tp| {
                        self.partition(tp)
                            .map(|p| p.producers())
                            .ok_or_else(not_here)
                    })
                    .collect();
                let _ = reply.send(answers);
            }
            ShardRequest::EpochEndOffsets { queries, reply } => {
                let answers = queries.iter().map(|q| self.epoch_end_offset(q)).collect();
                let _ = reply.send(answers);
            }
            ShardRequest::ListOffsets { queries, reply } => {
                let me = self.clone();
                runtime::detach(async move {
                    let mut out = Vec::with_capacity(queries.len());
                    for q in queries {
                        out.push(me.list_offset(&q).await);
                    }
                    let _ = reply.send(out);
                });
            }
        }
    }

    fn produce(
        &self,
        parts: Vec<ProducePart>,
        acks: i16,
        reply: oneshot::Sender<Vec<ProduceOutcome>>,
    ) {
        let now = SystemClock.now_ms();
        let mut waits = Vec::with_capacity(parts.len());
        for part in parts {
            let Some(p) = self.partition(&part.tp) else {
                waits.push((None, Err(not_here())));
                continue;
            };
            let appended = p
                .check_in_sync(acks)
                .and_then(|()| p.append(&part.records, part.origin, now))
                .map(|a| a.appended);
            if appended.is_ok() {
                metrics::local().on_partition(&part.tp, p.topic_id, |c| {
                    c.bytes_in += part.records.len() as u64;
                    c.produce_requests += 1;
                });
            }
            waits.push((Some(p), appended));
        }
        runtime::detach(async move {
            let outcomes = join_all(waits.into_iter().map(|(p, appended)| async move {
                match (p, appended) {
                    (Some(p), Ok(a)) => {
                        let error = p.wait_acked(a, acks).await.err();
                        let ok = error.is_none();
                        ProduceOutcome {
                            base_offset: if ok { a.base_offset } else { -1 },
                            log_start_offset: p.offsets().log_start,
                            log_append_time_ms: a.log_append_time.filter(|_| ok).unwrap_or(-1),
                            error,
                        }
                    }
                    (_, Err(e)) => ProduceOutcome {
                        base_offset: -1,
                        log_start_offset: -1,
                        log_append_time_ms: -1,
                        error: Some(e),
                    },
                    (None, Ok(_)) => unreachable!("an append needs a partition"),
                }
            }))
            .await;
            let _ = reply.send(outcomes);
        });
    }

    /// Appends every marker now (in order with produces), then waits for each to be durable.
    fn write_markers(
        &self,
        markers: Vec<MarkerPart>,
        reply: oneshot::Sender<Vec<Result<(), KafkaError>>>,
    ) {
        let now = SystemClock.now_ms();
        let appended: Vec<Result<(Rc<Partition>, crate::partition::Appended), KafkaError>> =
            markers
                .iter()
                .map(|m| {
                    let p = self.partition(&m.tp).ok_or_else(not_here)?;
                    let a = p.write_marker(
                        m.producer_id,
                        m.producer_epoch,
                        m.coordinator_epoch,
                        m.kind,
                        now,
                    )?;
                    Ok((p, a))
                })
                .collect();
        runtime::detach(async move {
            let results = join_all(appended.into_iter().map(|r| async move {
                let (p, a) = r?;
                p.wait_acked(a, -1).await
            }))
            .await;
            let _ = reply.send(results);
        });
    }

    pub async fn fetch(&self, parts: Vec<FetchPart>) -> Vec<ReadResult> {
        let mut out = Vec::with_capacity(parts.len());
        for part in parts {
            let r = match self.partition(&part.tp) {
                Some(p) if part.replica_id >= 0 => {
                    p.read_for_follower(part.replica_id, part.offset, part.max_bytes)
                        .await
                }
                // Kafka's debugging replica id: any replica answers, up to its log end
                // (how tools compare replicas).
                Some(p) if part.replica_id == DEBUGGING_REPLICA_ID => {
                    p.read_for_replica(part.offset, part.max_bytes).await
                }
                Some(p) => {
                    let r = p.read(part.offset, part.max_bytes, part.isolation).await;
                    metrics::local().on_partition(&part.tp, p.topic_id, |c| {
                        c.bytes_out += r.records.len() as u64;
                        c.fetch_requests += 1;
                    });
                    r
                }
                None => ReadResult {
                    error: Some(not_here()),
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                    records: Default::default(),
                    aborted: None,
                },
            };
            out.push(r);
        }
        out
    }

    async fn wait_for_data(
        &self,
        parts: Vec<FetchPart>,
        max_wait: Duration,
        mut reply: oneshot::Sender<()>,
    ) {
        let mut arrivals = Vec::new();
        for part in &parts {
            let Some(p) = self.partition(&part.tp) else {
                continue;
            };
            let visible_end = match part.isolation {
                _ if part.replica_id >= 0 => p.durable_end_offset(),
                Isolation::ReadUncommitted => p.offsets().high_watermark,
                Isolation::ReadCommitted => p.last_stable_offset(),
            };
            if visible_end > part.offset {
                let _ = reply.send(());
                return;
            }
            arrivals.push(if part.replica_id >= 0 {
                p.durable_arrival()
            } else {
                p.data_arrival()
            });
        }
        if arrivals.is_empty() {
            // Nothing here can change; let the caller's deadline decide.
            runtime::timeout(max_wait, reply.cancellation()).await;
            let _ = reply.send(());
            return;
        }
        let any = select_all(arrivals);
        let cancelled = reply.cancellation();
        let any = std::pin::pin!(any);
        let cancelled = std::pin::pin!(cancelled);
        runtime::timeout(max_wait, futures::future::select(any, cancelled)).await;
        let _ = reply.send(());
    }

    /// Kafka's per-partition OffsetForLeaderEpoch: the asker's current leader epoch must be
    /// this partition's (older: FENCED_LEADER_EPOCH, newer: UNKNOWN_LEADER_EPOCH; -1 skips
    /// the check), then the epoch cache answers.
    fn epoch_end_offset(&self, q: &EpochQuery) -> EpochAnswer {
        let p = self.partition(&q.tp).ok_or_else(not_here)?;
        let local = p.leader_epoch();
        let current = q.current_leader_epoch;
        if current != -1 && current != local {
            let code = if current < local {
                KafkaCode::FencedLeaderEpoch
            } else {
                KafkaCode::UnknownLeaderEpoch
            };
            return Err(KafkaError::new(
                code,
                format!(
                    "leader epoch {current} asked, {local} is current for {}",
                    q.tp
                ),
            ));
        }
        Ok(p.end_offset_for_epoch(q.leader_epoch))
    }

    async fn list_offset(&self, q: &OffsetQuery) -> OffsetAnswer {
        let p = self.partition(&q.tp).ok_or_else(not_here)?;
        let o = p.offsets();
        match q.timestamp {
            -1 if q.isolation == Isolation::ReadCommitted => Ok((p.last_stable_offset(), -1)),
            -1 => Ok((o.high_watermark, -1)),
            -2 => Ok((o.log_start, -1)),
            ts if ts < 0 => Err(KafkaError::new(
                KafkaCode::InvalidRequest,
                format!("unsupported ListOffsets timestamp {ts}"),
            )),
            ts => Ok(p.offset_for_timestamp(ts).await?.unwrap_or((-1, -1))),
        }
    }

    /// Brings this shard to the metadata in `desired` (see [`transitions`]); returns false
    /// when `desired` is not newer than what was applied, which is then left alone. Callers
    /// apply one snapshot at a time.
    pub async fn apply_metadata(&self, desired: Desired<'_>) -> bool {
        let Some(steps) = self.applier.borrow_mut().offer(desired) else {
            return false;
        };
        let changed = !steps.is_empty();
        for step in steps {
            self.run_transition(step).await;
        }
        if changed {
            for w in std::mem::take(&mut *self.role_waiters.borrow_mut()) {
                let _ = w.send(());
            }
        }
        true
    }

    /// Fires after the next metadata change of the partitions here (opened, closed, a new
    /// role, leader epoch or ISR): what the replication fetchers wait for.
    pub fn roles_changed(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.role_waiters.borrow_mut();
        waiters.retain(|w| !w.is_canceled());
        waiters.push(tx);
        rx
    }

    /// Every partition open here.
    pub fn open_partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Sets `replica.lag.time.max.ms` for the partitions here and those opened later.
    pub fn set_replica_lag_max_ms(&self, ms: i64) {
        self.replica_lag_max_ms.set(ms);
        for p in self.open_partitions() {
            p.set_replica_lag_max_ms(ms);
        }
    }

    async fn run_transition(&self, step: Transition) {
        match step {
            Transition::Delete { tp } => {
                let removed = self.partitions.borrow_mut().remove(&tp);
                if let Some(p) = removed {
                    if let Err(e) = p.delete().await {
                        tracing::warn!(partition = %tp, error = %e, "removing deleted partition failed");
                    }
                }
            }
            Transition::Stop { tp } => {
                let removed = self.partitions.borrow_mut().remove(&tp);
                if let Some(p) = removed {
                    if let Err(e) = p.close().await {
                        tracing::error!(partition = %tp, error = %e, "close failed");
                    }
                }
            }
            Transition::Open { tp, placement } => {
                match self
                    .open_partition(&tp, placement.topic_id, placement.leader_epoch)
                    .await
                {
                    Ok(p) => {
                        p.set_replica_lag_max_ms(self.replica_lag_max_ms.get());
                        p.set_role(role_change(&placement));
                        self.partitions.borrow_mut().insert(tp, p);
                    }
                    Err(e) => {
                        tracing::error!(partition = %tp, error = %e, "cannot open partition");
                        self.applier.borrow_mut().open_failed(&tp);
                    }
                }
            }
            Transition::Update { tp, placement } => {
                if let Some(p) = self.partition(&tp) {
                    p.set_role(role_change(&placement));
                }
            }
        }
    }

    async fn open_partition(
        &self,
        tp: &TopicPartition,
        topic_id: [u8; 16],
        epoch: i32,
    ) -> std::io::Result<Rc<Partition>> {
        let settings = self.settings_of(tp);
        let dir = self.data_dir.join(tp.dir_name());
        claim_partition_dir(&dir, &topic_id)?;
        Partition::open(
            &dir,
            tp.clone(),
            topic_id,
            epoch,
            settings.clone(),
            settings.max_message_bytes,
        )
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Forgets, on every partition here, producers idle past `expiration_ms`
    /// (`producer.id.expiration.ms`); returns how many were forgotten.
    pub fn expire_producers(&self, expiration_ms: i64) -> usize {
        let now = SystemClock.now_ms();
        self.partitions
            .borrow()
            .values()
            .map(|p| p.expire_producers(now, expiration_ms))
            .sum()
    }

    /// Takes the topic configs of metadata `version` (older versions are ignored) and applies
    /// any change to the partitions open here; partitions opened later read them at open.
    pub fn set_topic_configs(&self, version: u64, configs: TopicConfigs) {
        {
            let mut current = self.topic_configs.borrow_mut();
            if current.0 > version {
                return;
            }
            *current = (version, configs);
        }
        let open: Vec<Rc<Partition>> = self.partitions.borrow().values().cloned().collect();
        for p in open {
            let settings = self.settings_of(&p.tp);
            if p.settings() != settings {
                p.update_settings(settings);
            }
        }
    }

    /// One config a topic sets itself (none: the topic does not set it).
    pub fn topic_config(&self, topic: &str, name: &str) -> Option<String> {
        self.topic_configs.borrow().1.get(topic)?.get(name).cloned()
    }

    /// The broker's log settings with the partition's topic configs over them (the
    /// controller checked them; a value that does not parse leaves the broker's settings).
    fn settings_of(&self, tp: &TopicPartition) -> LogSettings {
        let configs = self.topic_configs.borrow().1.get(&tp.topic).cloned();
        let Some(configs) = configs else {
            return self.settings.clone();
        };
        crate::config::topic_settings(&self.settings, &configs).unwrap_or_else(|e| {
            tracing::error!(partition = %tp, error = %e, "topic configs ignored");
            self.settings.clone()
        })
    }

    async fn delete_records(
        &self,
        parts: Vec<(TopicPartition, i64)>,
    ) -> Vec<Result<i64, KafkaError>> {
        let mut out = Vec::with_capacity(parts.len());
        for (tp, offset) in parts {
            out.push(match self.partition(&tp) {
                Some(p) => p.delete_records_before(offset).await,
                None => Err(not_here()),
            });
        }
        out
    }

    /// Flushes and closes every partition (clean shutdown).
    pub async fn close_all(&self) {
        let all: Vec<Rc<Partition>> = self
            .partitions
            .borrow_mut()
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in all {
            if let Err(e) = p.close().await {
                tracing::error!(partition = %p.tp, error = %e, "close failed");
            }
        }
    }
}

/// Makes `dir` belong to `topic_id`: a directory left by a deleted topic of the same name
/// (a crash between the metadata commit and the removal) is wiped first.
fn claim_partition_dir(dir: &std::path::Path, topic_id: &[u8; 16]) -> std::io::Result<()> {
    let meta = dir.join("partition.meta");
    let want = uuid::Uuid::from_bytes(*topic_id).to_string();
    if let Ok(found) = std::fs::read_to_string(&meta) {
        if found.trim() == want {
            return Ok(());
        }
        tracing::warn!(dir = %dir.display(), "partition directory belongs to an older topic; wiping it");
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(&meta, &want)?;
    std::fs::File::open(&meta)?.sync_all()?;
    Ok(())
}
