//! Follower fetchers: one task per (leader broker, this shard), fetching every partition
//! this shard follows from that leader in one Fetch (`replica_id` = this broker), through
//! the crate's client connection. Fetched batches are appended as they are
//! (`append_replicated`); the follower's HW becomes min(leader's HW, its own log end).
//! Errors back off (doubling, bounded) and reconnect. The manager starts and stops fetchers
//! as the shard's roles change: a partition that stops following this leader is dropped
//! from its fetcher; a fetcher with no partitions left is stopped.
//!
//! A partition fetches only once it is reconciled with the leader in its current leader
//! epoch ([`truncation`]): its divergent tail, if any, is cut first. A partition whose log
//! ends before the leader's log start (OFFSET_OUT_OF_RANGE, with the leader's start in the
//! answer) is emptied and restarted at that start, as Kafka's fetcher does.
//!
//! Each fetcher paces the partitions the topics name in `follower.replication.throttled.replicas`
//! to its share of the broker's `follower.replication.throttled.rate` ([`super::throttle`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::base::{KafkaCode, TopicPartition};
use crate::client::conn::{ConnectOptions, Connection};
use crate::partition::Partition;
use crate::router::Router;
use crate::runtime::{self, Task, Throttle};

use super::throttle::{self, ThrottleRates};
use super::truncation::{self, Reconciled};

/// How long the leader may hold a replica fetch with nothing new (Kafka's
/// `replica.fetch.wait.max.ms` default).
const FETCH_WAIT: Duration = Duration::from_millis(500);
/// Bytes asked per partition and per fetch (Kafka's `replica.fetch.max.bytes` and
/// `replica.fetch.response.max.bytes` defaults).
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const RESPONSE_MAX_BYTES: i32 = 10 << 20;
/// Backoff after a failed fetch: from `replica.fetch.backoff.ms` (Kafka's default), doubling.
const BACKOFF_MIN: Duration = Duration::from_millis(1000);
const BACKOFF_MAX: Duration = Duration::from_millis(8000);
const FETCH_VERSION_MAX: i16 = 12;

/// The partitions one fetcher copies.
type Followed = Rc<RefCell<Vec<Rc<Partition>>>>;

struct Fetcher {
    partitions: Followed,
    /// Dropping it stops the fetcher.
    _task: Task<()>,
}

/// Keeps one fetcher per leader this shard follows, updated at every role change.
pub async fn manage(router: Weak<Router>, rates: Arc<ThrottleRates>) {
    let mut fetchers: BTreeMap<i32, Fetcher> = BTreeMap::new();
    loop {
        let changed = {
            let Some(r) = router.upgrade() else { return };
            let want = followed_by_leader(&r);
            fetchers.retain(|leader, _| want.contains_key(leader));
            for (leader, parts) in want {
                let f = fetchers.entry(leader).or_insert_with(|| {
                    let partitions: Followed = Rc::default();
                    let task = runtime::spawn(run(
                        router.clone(),
                        leader,
                        partitions.clone(),
                        rates.clone(),
                    ));
                    Fetcher {
                        partitions,
                        _task: task,
                    }
                });
                *f.partitions.borrow_mut() = parts;
            }
            r.local_shard().roles_changed()
        };
        if changed.await.is_err() {
            return;
        }
    }
}

/// The partitions open here that follow a known leader, by leader.
fn followed_by_leader(router: &Router) -> BTreeMap<i32, Vec<Rc<Partition>>> {
    let mut by_leader: BTreeMap<i32, Vec<Rc<Partition>>> = BTreeMap::new();
    for p in router.local_shard().open_partitions() {
        if let Some(leader) = p.following().filter(|l| *l >= 0) {
            by_leader.entry(leader).or_default().push(p);
        }
    }
    by_leader
}

/// One fetcher's loop: fetch, append, repeat; back off and reconnect on errors.
async fn run(router: Weak<Router>, leader: i32, partitions: Followed, rates: Arc<ThrottleRates>) {
    let mut conn: Option<Connection> = None;
    let mut reconciled = Reconciled::new();
    let mut backoff = BACKOFF_MIN;
    let throttle = Throttle::new(f64::INFINITY);
    loop {
        if let Some(r) = router.upgrade() {
            throttle.set_rate(share_of(rates.follower(), r.shard_count()));
        }
        let mut round = Round {
            conn: &mut conn,
            reconciled: &mut reconciled,
            throttle: &throttle,
        };
        let outcome = fetch_round(&router, leader, &partitions, &mut round).await;
        match outcome {
            Ok(()) => backoff = BACKOFF_MIN,
            Err(reason) => {
                tracing::debug!(leader, %reason, "replica fetch failed; backing off");
                if conn.as_ref().is_some_and(Connection::is_broken) {
                    conn = None;
                }
                runtime::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// A shard's share of the broker's rate (bytes/s; infinite when unlimited).
fn share_of(rate: u64, shards: usize) -> f64 {
    if rate >= throttle::UNLIMITED {
        return f64::INFINITY;
    }
    rate as f64 / shards.max(1) as f64
}

/// What a fetcher keeps from one round to the next.
struct Round<'a> {
    conn: &'a mut Option<Connection>,
    reconciled: &'a mut Reconciled,
    throttle: &'a Throttle,
}

/// Whether the topic throttles this broker's replica of `p` (as a follower).
fn throttled(router: &Router, p: &Partition, local: i32) -> bool {
    router
        .local_shard()
        .topic_config(&p.tp.topic, throttle::FOLLOWER_REPLICAS)
        .is_some_and(|list| throttle::names_replica(&list, p.tp.partition, local))
}

/// One Fetch to the leader for every partition still following it (the throttled ones
/// left out while the fetcher is over its rate).
async fn fetch_round(
    router: &Weak<Router>,
    leader: i32,
    partitions: &Followed,
    round: &mut Round<'_>,
) -> Result<(), String> {
    let (conn, reconciled) = (&mut *round.conn, &mut *round.reconciled);
    let (addr, local) = {
        let r = router.upgrade().ok_or("shutting down")?;
        let snap = r.snapshot();
        let broker = snap
            .brokers
            .iter()
            .find(|b| b.node_id == leader)
            .ok_or_else(|| format!("leader {leader} is not a known broker"))?;
        (format!("{}:{}", broker.host, broker.port), snap.local_node)
    };
    let active: Vec<Rc<Partition>> = partitions
        .borrow()
        .iter()
        .filter(|p| p.following() == Some(leader))
        .cloned()
        .collect();
    if active.is_empty() {
        return Err("no partition follows this leader".into());
    }
    let c = match conn.take() {
        Some(c) if !c.is_broken() => c,
        _ => connect(&addr, local).await?,
    };
    *conn = Some(c.clone());
    truncation::reconcile(&c, local, &active, reconciled).await?;
    let active: Vec<Rc<Partition>> = active
        .into_iter()
        .filter(|p| reconciled.get(&p.tp) == Some(&p.leader_epoch()))
        .collect();
    if active.is_empty() {
        return Err("no partition is reconciled with the leader yet".into());
    }
    let held: Vec<TopicPartition> = {
        let r = router.upgrade().ok_or("shutting down")?;
        active
            .iter()
            .filter(|p| throttled(&r, p, local))
            .map(|p| p.tp.clone())
            .collect()
    };
    let wait = round.throttle.delay();
    let active: Vec<Rc<Partition>> = if wait.is_zero() {
        active
    } else {
        active
            .into_iter()
            .filter(|p| !held.contains(&p.tp))
            .collect()
    };
    if active.is_empty() {
        // Only throttled partitions, over the rate: wait until back under it.
        runtime::sleep(wait).await;
        return Ok(());
    }
    let version = c
        .version(ApiKey::Fetch)
        .map_err(|e| e.to_string())?
        .min(FETCH_VERSION_MAX);
    let req = fetch_request(local, &active);
    let resp = c
        .request_at(&req, version)
        .await
        .map_err(|e| e.to_string())?;
    let mut failed = None;
    let mut written = Vec::new();
    let mut restarts = Vec::new();
    for t in resp.responses {
        let topic = t.topic.0.to_string();
        for pd in t.partitions {
            let tp = TopicPartition::new(topic.clone(), pd.partition_index);
            let Some(p) = active.iter().find(|p| p.tp == tp) else {
                continue;
            };
            if behind_leader_start(p, pd.error_code, pd.log_start_offset) {
                restarts.push((p.clone(), pd.log_start_offset));
                continue;
            }
            if pd.error_code != KafkaCode::None.code() {
                failed = Some(format!("{tp}: error code {}", pd.error_code));
                continue;
            }
            if let Some(records) = pd.records.filter(|r| !r.is_empty()) {
                if held.contains(&tp) {
                    round.throttle.record(records.len() as u64);
                }
                let records = match starts_inside_first_batch(p, &records) {
                    Some(base) => match p.restart_at(base).await {
                        Ok(()) => records,
                        Err(e) => {
                            failed = Some(format!("{tp}: restarting at {base}: {e}"));
                            continue;
                        }
                    },
                    None => records,
                };
                match p.append_replicated(records) {
                    Ok(appended) => written.push((p.clone(), appended)),
                    Err(e) => {
                        failed = Some(format!("{tp}: {e}"));
                        continue;
                    }
                }
            }
            p.set_follower_high_watermark(pd.high_watermark);
        }
    }
    for (p, start) in restarts {
        tracing::info!(tp = %p.tp, from = p.log_end_offset(), start,
            "log ends before the leader's log start: restarting it there");
        if let Err(e) = p.restart_at(start).await {
            failed = Some(format!("{}: restarting at {start}: {e}", p.tp));
        }
    }
    // The next fetch tells the leader this replica's log end, which the leader counts
    // towards acks=all: it must not name bytes a crash of this process could still take.
    let durable = join_all(written.iter().map(|(p, a)| p.wait_acked(*a, 1))).await;
    if let Some(e) = durable.into_iter().find_map(Result::err) {
        return Err(format!("writing replicated batches: {e}"));
    }
    failed.map_or(Ok(()), Err)
}

/// Whether the leader refused `p`'s fetch because its whole log ends before the leader's
/// log start (retention or DeleteRecords moved it while this replica was away, or this
/// replica is new): then nothing here can be kept, and the log restarts at that start.
fn behind_leader_start(p: &Partition, error_code: i16, leader_start: i64) -> bool {
    error_code == KafkaCode::OffsetOutOfRange.code() && leader_start > p.log_end_offset()
}

/// The base of the first fetched batch when `p`'s log is empty and its end falls inside
/// that batch: the leader's log start was inside it (the batch comes whole), so the log
/// restarts at the batch's base to take it, as Kafka's follower does.
fn starts_inside_first_batch(p: &Partition, records: &bytes::Bytes) -> Option<i64> {
    let h = crate::protocol::batch::header(records).ok()?;
    let (base, end) = (h.base_offset.get(), p.log_end_offset());
    let empty = p.offsets().log_start == end;
    (empty && base < end && h.last_offset() >= end).then_some(base)
}

async fn connect(addr: &str, local: i32) -> Result<Connection, String> {
    let socket = crate::client::cluster::resolve(addr)
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{addr} resolves to nothing"))?;
    let opts = ConnectOptions {
        client_id: format!("sluice-replica-{local}"),
        connect_timeout: Duration::from_secs(5),
        request_timeout: FETCH_WAIT + Duration::from_secs(30),
    };
    Connection::open(socket, addr, &opts)
        .await
        .map_err(|e| e.to_string())
}

/// A replica Fetch: every partition from its log end.
fn fetch_request(local: i32, partitions: &[Rc<Partition>]) -> FetchRequest {
    let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for p in partitions {
        let mut fp = FetchPartition::default();
        fp.partition = p.tp.partition;
        fp.fetch_offset = p.log_end_offset();
        fp.current_leader_epoch = p.leader_epoch();
        fp.partition_max_bytes = PARTITION_MAX_BYTES;
        topics.entry(p.tp.topic.as_str()).or_default().push(fp);
    }
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(local);
    req.max_wait_ms = FETCH_WAIT.as_millis() as i32;
    req.min_bytes = 1;
    req.max_bytes = RESPONSE_MAX_BYTES;
    req.topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            let mut t = FetchTopic::default();
            t.topic = TopicName(StrBytes::from_string(name.to_owned()));
            t.partitions = partitions;
            t
        })
        .collect();
    req
}
