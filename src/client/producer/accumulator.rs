//! The producer's record accumulator (no I/O): per partition, one open batch being filled
//! and a queue of sealed batches in send order. A batch is sealed when it reaches
//! `batch.size`, when it has waited `linger.ms`, or on flush. [`Accumulator::drain`] hands
//! out at most one batch per partition per request and at most `max.in.flight` requests per
//! broker.
//!
//! Order: batches carry a per-producer sequence number; a batch that failed with a retriable
//! error goes back into its queue at its sequence position, and its partition sends nothing
//! more until every batch of it in flight has been answered and the backoff has passed. So
//! a partition's batches are written in order unless the leader changes between two
//! pipelined requests (the same window Kafka's Java producer has without idempotence; with
//! `max.in.flight=1` order is strict).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;

use super::RecordMetadata;
use crate::base::TopicPartition;
use crate::client::batch::{BatchBuilder, ProducerStamp, RecordHeader};
use crate::client::config::Compression;
use crate::client::error::ClientError;

/// Where a record's delivery report goes.
pub(crate) type Reply = oneshot::Sender<Result<RecordMetadata, ClientError>>;

/// A record waiting for its delivery report.
pub(crate) struct PendingRecord {
    pub reply: Reply,
    pub timestamp: i64,
}

/// A finished batch, queued or in flight.
pub(crate) struct SealedBatch {
    pub tp: TopicPartition,
    pub seq: u64,
    pub bytes: Bytes,
    pub records: Vec<PendingRecord>,
    pub created: Instant,
    pub attempts: u32,
    /// Buffer bytes this batch holds against `buffer.memory`.
    pub reserved: usize,
}

struct OpenBatch {
    builder: BatchBuilder,
    records: Vec<PendingRecord>,
    created: Instant,
    seq: u64,
    reserved: usize,
}

#[derive(Default)]
struct PartitionQueue {
    open: Option<OpenBatch>,
    sealed: VecDeque<SealedBatch>,
    in_flight: usize,
    retry_at: Option<Instant>,
    recovering: bool,
}

/// Settings the accumulator applies.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub batch_size: usize,
    pub linger: Duration,
    pub compression: Compression,
    pub delivery_timeout: Duration,
    pub max_in_flight: usize,
    pub max_request_size: usize,
    /// Wait before asking again for a leader that is missing.
    pub retry_backoff: Duration,
}

/// What one drain produced.
#[derive(Default)]
pub(crate) struct Drained {
    /// One produce request's batches per broker.
    pub requests: Vec<(i32, Vec<SealedBatch>)>,
    /// Batches past `delivery.timeout.ms`, to fail.
    pub expired: Vec<SealedBatch>,
    /// A partition with data has no known leader.
    pub missing_leader: bool,
    /// When something not sendable now becomes sendable by time alone.
    pub next_wake: Option<Instant>,
}

pub(crate) struct Accumulator {
    limits: Limits,
    queues: BTreeMap<TopicPartition, PartitionQueue>,
    sticky: HashMap<String, i32>,
    next_seq: u64,
    buffered: usize,
    requests_in_flight: HashMap<i32, usize>,
    batches_in_flight: usize,
    flushing: u32,
    rotation: usize,
    /// Set for an idempotent producer: every batch sealed from then on carries it.
    producer: Option<ProducerIdentity>,
    /// Each partition's next batch sequence (kept while its queue comes and goes).
    sequences: HashMap<TopicPartition, i32>,
    /// Records whose delivery failed, ever: a transaction with a failed record cannot commit.
    failed_records: u64,
}

/// The id and epoch the broker gave an idempotent or transactional producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerIdentity {
    pub producer_id: i64,
    pub epoch: i16,
    pub transactional: bool,
}

impl Accumulator {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            queues: BTreeMap::new(),
            sticky: HashMap::new(),
            next_seq: 0,
            buffered: 0,
            requests_in_flight: HashMap::new(),
            batches_in_flight: 0,
            flushing: 0,
            rotation: 0,
            producer: None,
            sequences: HashMap::new(),
            failed_records: 0,
        }
    }

    /// Stamps every batch sealed from now on with `id`, sequences starting at 0.
    pub(crate) fn set_producer(&mut self, id: ProducerIdentity) {
        self.producer = Some(id);
        self.sequences.clear();
    }

    pub(crate) fn producer(&self) -> Option<ProducerIdentity> {
        self.producer
    }

    /// Counts `n` records whose delivery failed.
    pub(crate) fn note_failed(&mut self, n: usize) {
        self.failed_records += n as u64;
    }

    /// Records whose delivery has failed since the producer started.
    pub(crate) fn failed_records(&self) -> u64 {
        self.failed_records
    }

    /// Bytes of records accepted and not yet reported.
    pub(crate) fn buffered(&self) -> usize {
        self.buffered
    }

    /// Nothing queued, nothing in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.batches_in_flight == 0
            && self
                .queues
                .values()
                .all(|q| q.open.is_none() && q.sealed.is_empty())
    }

    pub(crate) fn set_flushing(&mut self, on: bool) {
        if on {
            self.flushing += 1;
        } else {
            self.flushing = self.flushing.saturating_sub(1);
        }
    }

    /// The partition records with a null key go to: stays the same until its batch is sealed.
    pub(crate) fn sticky_partition(&mut self, topic: &str, pick: impl FnOnce() -> i32) -> i32 {
        if let Some(p) = self.sticky.get(topic) {
            return *p;
        }
        let p = pick();
        self.sticky.insert(topic.to_owned(), p);
        p
    }

    /// Adds a record to its partition's open batch. Returns whether the sender should look
    /// (a batch was created or sealed).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append(
        &mut self,
        tp: TopicPartition,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
        reply: Reply,
        now: Instant,
    ) -> bool {
        let size = BatchBuilder::record_size(key, value, headers);
        let limit = self.limits.batch_size;
        let mut wake = false;
        let full = self
            .queues
            .get(&tp)
            .and_then(|q| q.open.as_ref())
            .is_some_and(|o| !o.builder.is_empty() && o.builder.size() + size > limit);
        if full {
            self.seal(&tp);
            wake = true;
        }
        let seq = self.next_seq;
        let q = self.queues.entry(tp.clone()).or_default();
        let open = q.open.get_or_insert_with(|| {
            wake = true;
            OpenBatch {
                builder: BatchBuilder::with_capacity(limit.min(size.max(1024))),
                records: Vec::new(),
                created: now,
                seq,
                reserved: 0,
            }
        });
        if open.seq == seq {
            self.next_seq += 1;
        }
        open.builder.push(timestamp, key, value, headers);
        open.records.push(PendingRecord { reply, timestamp });
        open.reserved += size;
        self.buffered += size;
        if open.builder.size() >= limit {
            self.seal(&tp);
            wake = true;
        }
        wake
    }

    /// Finishes the open batch of `tp` into its sealed queue. A batch that cannot be built
    /// (a compression failure) fails its records at once.
    fn seal(&mut self, tp: &TopicPartition) {
        let Some(q) = self.queues.get_mut(tp) else {
            return;
        };
        let Some(open) = q.open.take() else { return };
        if self.sticky.get(&tp.topic) == Some(&tp.partition) {
            self.sticky.remove(&tp.topic);
        }
        let reserved = open.reserved;
        // Sequences are given at sealing, in the partition's batch order, so a retried batch
        // resends its own sequence and the broker can tell it from a new one.
        let sequence = self.sequences.get(tp).copied().unwrap_or(0);
        let stamp = self.producer.map(|id| ProducerStamp {
            producer_id: id.producer_id,
            producer_epoch: id.epoch,
            base_sequence: sequence,
            transactional: id.transactional,
        });
        let count = open.records.len() as i32;
        match open.builder.build(self.limits.compression, stamp) {
            Ok(bytes) => {
                if stamp.is_some() {
                    self.sequences
                        .insert(tp.clone(), next_sequence(sequence, count));
                }
                q.sealed.push_back(SealedBatch {
                    tp: tp.clone(),
                    seq: open.seq,
                    bytes,
                    records: open.records,
                    created: open.created,
                    attempts: 0,
                    reserved,
                })
            }
            Err(e) => {
                self.buffered = self.buffered.saturating_sub(reserved);
                self.failed_records += open.records.len() as u64;
                for r in open.records {
                    let _ = r.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Takes what can be sent now: per broker with a free in-flight slot, one request with
    /// the next batch of each of its sendable partitions, within `max.request.size`.
    pub(crate) fn drain(
        &mut self,
        now: Instant,
        leader_of: impl Fn(&TopicPartition) -> Option<i32>,
    ) -> Drained {
        let mut out = Drained::default();
        let mut keys: Vec<TopicPartition> = self.queues.keys().cloned().collect();
        if !keys.is_empty() {
            self.rotation = (self.rotation + 1) % keys.len();
            keys.rotate_left(self.rotation);
        }
        let mut requests: BTreeMap<i32, (usize, Vec<SealedBatch>)> = BTreeMap::new();
        for tp in keys {
            self.expire(&tp, now, &mut out);
            let Some(wait) = self.sendable(&tp, now) else {
                continue;
            };
            if let Some(at) = wait {
                out.next_wake = earliest(out.next_wake, at);
                continue;
            }
            let Some(node) = leader_of(&tp) else {
                out.missing_leader = true;
                out.next_wake = earliest(out.next_wake, now + self.limits.retry_backoff);
                continue;
            };
            let busy = self.requests_in_flight.get(&node).copied().unwrap_or(0)
                >= self.limits.max_in_flight;
            let (size, batches) = requests.entry(node).or_default();
            if busy && batches.is_empty() {
                continue;
            }
            let q = self.queues.get_mut(&tp).expect("key from the map");
            let next_len = q.sealed.front().map_or(0, |b| b.bytes.len());
            if !batches.is_empty() && *size + next_len > self.limits.max_request_size {
                continue;
            }
            if let Some(b) = q.sealed.pop_front() {
                q.in_flight += 1;
                *size += b.bytes.len();
                batches.push(b);
            }
        }
        for (node, (_, batches)) in requests {
            if batches.is_empty() {
                continue;
            }
            *self.requests_in_flight.entry(node).or_default() += 1;
            self.batches_in_flight += batches.len();
            out.requests.push((node, batches));
        }
        self.drop_empty_queues();
        out
    }

    /// `None`: nothing to send from `tp` now or later by time alone (or it waits for answers);
    /// `Some(Some(t))`: wait until `t`; `Some(None)`: its front batch is sealed and sendable.
    fn sendable(&mut self, tp: &TopicPartition, now: Instant) -> Option<Option<Instant>> {
        let linger = self.limits.linger;
        let flushing = self.flushing > 0;
        let q = self.queues.get_mut(tp)?;
        if q.recovering {
            if q.in_flight > 0 {
                return None;
            }
            if let Some(at) = q.retry_at.filter(|at| *at > now) {
                return Some(Some(at));
            }
            q.recovering = false;
            q.retry_at = None;
        }
        if q.sealed.is_empty() {
            let open = q.open.as_ref()?;
            let due = open.created + linger;
            if !flushing && due > now {
                return Some(Some(due));
            }
            self.seal(tp);
            if self.queues.get(tp).is_none_or(|q| q.sealed.is_empty()) {
                return None;
            }
        }
        Some(None)
    }

    fn expire(&mut self, tp: &TopicPartition, now: Instant, out: &mut Drained) {
        let timeout = self.limits.delivery_timeout;
        let expired_open = self
            .queues
            .get(tp)
            .and_then(|q| q.open.as_ref())
            .is_some_and(|o| now >= o.created + timeout);
        if expired_open {
            self.seal(tp);
        }
        let Some(q) = self.queues.get_mut(tp) else {
            return;
        };
        while q.sealed.front().is_some_and(|b| now >= b.created + timeout) {
            out.expired.extend(q.sealed.pop_front());
        }
        if let Some(b) = q.sealed.front() {
            out.next_wake = earliest(out.next_wake, b.created + timeout);
        }
    }

    fn drop_empty_queues(&mut self) {
        self.queues.retain(|_, q| {
            q.open.is_some() || !q.sealed.is_empty() || q.in_flight > 0 || q.recovering
        });
    }

    /// A request to `node` was answered (or failed).
    pub(crate) fn finish_request(&mut self, node: i32) {
        if let Some(n) = self.requests_in_flight.get_mut(&node) {
            *n = n.saturating_sub(1);
        }
    }

    /// A batch's send is over; it is being reported (not requeued). Frees its buffer bytes.
    pub(crate) fn finish_batch(&mut self, batch: &SealedBatch) {
        self.batch_answered(&batch.tp);
        self.buffered = self.buffered.saturating_sub(batch.reserved);
        self.drop_empty_queues();
    }

    /// An expired batch that was never in flight is being reported.
    pub(crate) fn release(&mut self, batch: &SealedBatch) {
        self.buffered = self.buffered.saturating_sub(batch.reserved);
    }

    /// Puts a batch that failed with a retriable error back at its place in its queue; its
    /// partition waits until `retry_at` and until its other batches in flight are answered.
    pub(crate) fn requeue(&mut self, batch: SealedBatch, retry_at: Instant) {
        self.batch_answered(&batch.tp);
        let q = self.queues.entry(batch.tp.clone()).or_default();
        q.recovering = true;
        q.retry_at = Some(q.retry_at.map_or(retry_at, |t| t.max(retry_at)));
        let at = q
            .sealed
            .iter()
            .position(|b| b.seq > batch.seq)
            .unwrap_or(q.sealed.len());
        q.sealed.insert(at, batch);
    }

    fn batch_answered(&mut self, tp: &TopicPartition) {
        self.batches_in_flight = self.batches_in_flight.saturating_sub(1);
        if let Some(q) = self.queues.get_mut(tp) {
            q.in_flight = q.in_flight.saturating_sub(1);
        }
    }
}

/// The sequence after a batch of `count` records from `sequence` (wrapping at i32::MAX to 0,
/// as Kafka's producers and brokers do).
fn next_sequence(sequence: i32, count: i32) -> i32 {
    ((sequence as i64 + count as i64) % (i32::MAX as i64 + 1)) as i32
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

#[cfg(test)]
#[path = "accumulator_tests.rs"]
mod tests;
