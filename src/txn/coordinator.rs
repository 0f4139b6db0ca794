//! The transaction coordinator of the transactional ids one shard hosts, sans-io (KIP-98 as
//! Kafka implements it). Each request is checked against the id's state and answered at once,
//! or turned into a [`Transition`] the shell must make durable in `__transaction_state`
//! before the new state counts. While a transition is in flight the id is busy: other
//! requests for it get CONCURRENT_TRANSACTIONS, as Kafka's pending state does.
//!
//! A durable PrepareCommit or PrepareAbort yields a [`MarkerJob`]: markers to write to every
//! partition of the transaction; once written, the transaction completes. Time comes in as
//! arguments: `tick` aborts transactions past their timeout (bumping the epoch, which fences
//! the old producer) and expires idle ids.

use std::collections::{BTreeSet, HashMap};

use super::state::{TxnMetadata, TxnStatus};
use crate::base::KafkaCode;

/// Settings of the coordinator, Kafka's names in the comments.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`
    pub id_expiration_ms: i64,
}

/// A new state for a transactional id, to be made durable before it counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub txn_id: String,
    pub to: TxnMetadata,
}

/// Markers to write for a decided transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    pub txn_id: String,
    pub producer_id: i64,
    pub epoch: i16,
    pub commit: bool,
    pub partitions: BTreeSet<(String, i32)>,
}

/// What a request leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<R> {
    /// Answer now; nothing changes.
    Reply(Result<R, KafkaCode>),
    /// Make `Transition` durable, then answer with the result.
    Persist(Transition, Result<R, KafkaCode>),
    /// InitProducerId needs a fresh producer id: allocate one and ask again with it.
    NeedsProducerId,
}

/// A producer's identity as requests carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerRef {
    pub producer_id: i64,
    pub epoch: i16,
}

/// A transactional id as ListTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTxn {
    pub txn_id: String,
    pub producer_id: i64,
    pub status: TxnStatus,
    pub start_ms: i64,
}

struct Entry {
    meta: TxnMetadata,
    /// The transition being made durable, if any.
    pending: Option<TxnMetadata>,
}

pub struct TxnCoordinator {
    txns: HashMap<String, Entry>,
    config: TxnConfig,
}

impl TxnCoordinator {
    pub fn new(config: TxnConfig) -> Self {
        Self {
            txns: HashMap::new(),
            config,
        }
    }

    /// Applies a record read back from `__transaction_state` (None: a tombstone).
    pub fn load(&mut self, txn_id: String, meta: Option<TxnMetadata>) {
        match meta {
            Some(meta) if meta.status != TxnStatus::Dead => {
                self.txns.insert(
                    txn_id,
                    Entry {
                        meta,
                        pending: None,
                    },
                );
            }
            _ => {
                self.txns.remove(&txn_id);
            }
        }
    }

    /// Forgets every transactional id `gone` names (its state partition moved to another
    /// broker, whose coordinator reloads it from the log).
    pub fn unload(&mut self, gone: impl Fn(&str) -> bool) {
        self.txns.retain(|id, _| !gone(id));
    }

    /// Transactions decided before a restart whose markers must be written (again).
    pub fn unfinished(&self) -> Vec<MarkerJob> {
        self.txns
            .values()
            .filter(|e| e.pending.is_none() && e.meta.status.is_preparing())
            .map(|e| marker_job(&e.meta))
            .collect()
    }

    pub fn get(&self, txn_id: &str) -> Option<&TxnMetadata> {
        self.txns.get(txn_id).map(|e| &e.meta)
    }

    fn begin(&mut self, to: TxnMetadata) -> Transition {
        let txn_id = to.transactional_id.clone();
        match self.txns.get_mut(&txn_id) {
            Some(e) => e.pending = Some(to.clone()),
            None => {
                // A new id: it exists only once its first state is durable.
                let mut placeholder = to.clone();
                placeholder.status = TxnStatus::Dead;
                self.txns.insert(
                    txn_id.clone(),
                    Entry {
                        meta: placeholder,
                        pending: Some(to.clone()),
                    },
                );
            }
        }
        Transition { txn_id, to }
    }

    /// The shell made (or failed to make) a transition durable. A durable decision to commit
    /// or abort returns the markers to write.
    pub fn persisted(&mut self, txn_id: &str, durable: bool) -> Option<MarkerJob> {
        let entry = self.txns.get_mut(txn_id)?;
        let to = entry.pending.take()?;
        if !durable {
            if entry.meta.status == TxnStatus::Dead {
                self.txns.remove(txn_id);
            }
            return None;
        }
        if to.status == TxnStatus::Dead {
            self.txns.remove(txn_id);
            return None;
        }
        let job = to.status.is_preparing().then(|| marker_job(&to));
        entry.meta = to;
        job
    }

    /// Every marker of a decided transaction is written: it completes.
    pub fn markers_written(&mut self, txn_id: &str, now: i64) -> Option<Transition> {
        let entry = self.txns.get(txn_id)?;
        if entry.pending.is_some() || !entry.meta.status.is_preparing() {
            return None;
        }
        let mut to = entry.meta.clone();
        to.status = match to.status {
            TxnStatus::PrepareCommit => TxnStatus::CompleteCommit,
            _ => TxnStatus::CompleteAbort,
        };
        to.partitions.clear();
        to.update_ms = now;
        Some(self.begin(to))
    }

    /// InitProducerId for a transactional id. `expected` is the producer's current identity
    /// when it asks for an epoch bump (KIP-360), `fresh_id` a newly allocated producer id
    /// when a previous call asked for one.
    pub fn init_producer_id(
        &mut self,
        txn_id: &str,
        timeout_ms: i32,
        expected: Option<ProducerRef>,
        fresh_id: Option<i64>,
        now: i64,
    ) -> Decision<ProducerRef> {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Decision::Reply(Err(KafkaCode::InvalidTransactionTimeout));
        }
        let Some(entry) = self.txns.get(txn_id) else {
            let Some(id) = fresh_id else {
                return Decision::NeedsProducerId;
            };
            let meta = TxnMetadata::new(txn_id, id, timeout_ms, now);
            let reply = Ok(ProducerRef {
                producer_id: id,
                epoch: 0,
            });
            return Decision::Persist(self.begin(meta), reply);
        };
        if entry.pending.is_some() {
            return Decision::Reply(Err(KafkaCode::ConcurrentTransactions));
        }
        let meta = entry.meta.clone();
        if let Some(exp) = expected {
            let current = exp.producer_id == meta.producer_id && exp.epoch == meta.epoch;
            let retried = (exp.producer_id == meta.producer_id
                || exp.producer_id == meta.prev_producer_id)
                && exp.epoch == meta.last_epoch;
            if retried && meta.status == TxnStatus::Empty {
                return Decision::Reply(Ok(ProducerRef {
                    producer_id: meta.producer_id,
                    epoch: meta.epoch,
                }));
            }
            if !current {
                return Decision::Reply(Err(KafkaCode::ProducerFenced));
            }
        }
        match meta.status {
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => {
                Decision::Reply(Err(KafkaCode::ConcurrentTransactions))
            }
            TxnStatus::Ongoing | TxnStatus::PrepareEpochFence => {
                // A new producer instance: abort the old one's transaction with a bumped
                // epoch (fencing it); the client retries once the abort completes.
                let to = fenced_abort(meta, now);
                Decision::Persist(self.begin(to), Err(KafkaCode::ConcurrentTransactions))
            }
            _ => {
                let mut to = meta.clone();
                if meta.epoch >= i16::MAX - 1 {
                    let Some(id) = fresh_id else {
                        return Decision::NeedsProducerId;
                    };
                    to.prev_producer_id = meta.producer_id;
                    to.producer_id = id;
                    to.epoch = 0;
                } else {
                    to.epoch = meta.epoch + 1;
                }
                to.last_epoch = meta.epoch;
                to.status = TxnStatus::Empty;
                to.timeout_ms = timeout_ms;
                to.partitions.clear();
                to.start_ms = -1;
                to.update_ms = now;
                let reply = Ok(ProducerRef {
                    producer_id: to.producer_id,
                    epoch: to.epoch,
                });
                Decision::Persist(self.begin(to), reply)
            }
        }
    }

    /// Checks the producer against the id's current state, for requests inside a transaction.
    fn check_producer(&self, txn_id: &str, who: ProducerRef) -> Result<&TxnMetadata, KafkaCode> {
        let entry = self
            .txns
            .get(txn_id)
            .filter(|e| e.meta.status != TxnStatus::Dead)
            .ok_or(KafkaCode::InvalidProducerIdMapping)?;
        if entry.meta.producer_id != who.producer_id {
            return Err(KafkaCode::InvalidProducerIdMapping);
        }
        if entry.meta.epoch != who.epoch {
            return Err(KafkaCode::ProducerFenced);
        }
        if entry.pending.is_some() || entry.meta.status.is_preparing() {
            return Err(KafkaCode::ConcurrentTransactions);
        }
        Ok(&entry.meta)
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition).
    pub fn add_partitions(
        &mut self,
        txn_id: &str,
        who: ProducerRef,
        partitions: &[(String, i32)],
        now: i64,
    ) -> Decision<()> {
        let meta = match self.check_producer(txn_id, who) {
            Ok(m) => m.clone(),
            Err(code) => return Decision::Reply(Err(code)),
        };
        if meta.status == TxnStatus::PrepareEpochFence {
            return Decision::Reply(Err(KafkaCode::ConcurrentTransactions));
        }
        let all_in = partitions.iter().all(|p| meta.partitions.contains(p));
        if meta.status == TxnStatus::Ongoing && all_in {
            return Decision::Reply(Ok(()));
        }
        let mut to = meta.clone();
        if meta.status != TxnStatus::Ongoing {
            to.start_ms = now;
        }
        to.status = TxnStatus::Ongoing;
        to.partitions.extend(partitions.iter().cloned());
        to.update_ms = now;
        Decision::Persist(self.begin(to), Ok(()))
    }

    /// EndTxn: decide to commit or abort.
    pub fn end_txn(
        &mut self,
        txn_id: &str,
        who: ProducerRef,
        commit: bool,
        now: i64,
    ) -> Decision<()> {
        let entry = match self.txns.get(txn_id) {
            Some(e) if e.meta.status != TxnStatus::Dead => e,
            _ => return Decision::Reply(Err(KafkaCode::InvalidProducerIdMapping)),
        };
        let meta = entry.meta.clone();
        if meta.producer_id != who.producer_id {
            return Decision::Reply(Err(KafkaCode::InvalidProducerIdMapping));
        }
        if meta.epoch != who.epoch {
            return Decision::Reply(Err(KafkaCode::ProducerFenced));
        }
        if entry.pending.is_some() {
            return Decision::Reply(Err(KafkaCode::ConcurrentTransactions));
        }
        let same = |s: TxnStatus| match s {
            TxnStatus::PrepareCommit | TxnStatus::CompleteCommit => commit,
            _ => !commit,
        };
        match meta.status {
            TxnStatus::Ongoing => {
                let mut to = meta;
                to.status = if commit {
                    TxnStatus::PrepareCommit
                } else {
                    TxnStatus::PrepareAbort
                };
                to.update_ms = now;
                Decision::Persist(self.begin(to), Ok(()))
            }
            s @ (TxnStatus::CompleteCommit | TxnStatus::CompleteAbort) if same(s) => {
                Decision::Reply(Ok(()))
            }
            s @ (TxnStatus::PrepareCommit | TxnStatus::PrepareAbort) if same(s) => {
                Decision::Reply(Err(KafkaCode::ConcurrentTransactions))
            }
            _ => Decision::Reply(Err(KafkaCode::InvalidTxnState)),
        }
    }

    /// Aborts transactions open longer than their timeout (fencing their producer) and
    /// removes ids idle past `transactional.id.expiration.ms`.
    pub fn tick(&mut self, now: i64) -> Vec<Transition> {
        let expiration = self.config.id_expiration_ms;
        let due: Vec<TxnMetadata> = self
            .txns
            .values()
            .filter(|e| e.pending.is_none())
            .filter_map(|e| {
                let m = &e.meta;
                let timed_out =
                    m.status == TxnStatus::Ongoing && now > m.start_ms + i64::from(m.timeout_ms);
                let expired = m.status.is_settled()
                    && m.status != TxnStatus::Dead
                    && now - m.update_ms >= expiration;
                if timed_out {
                    Some(fenced_abort(m.clone(), now))
                } else if expired {
                    let mut dead = m.clone();
                    dead.status = TxnStatus::Dead;
                    dead.partitions.clear();
                    dead.update_ms = now;
                    Some(dead)
                } else {
                    None
                }
            })
            .collect();
        due.into_iter().map(|to| self.begin(to)).collect()
    }

    /// The earliest time `tick` has work, if any.
    pub fn next_deadline(&self) -> Option<i64> {
        self.txns
            .values()
            .filter(|e| e.pending.is_none())
            .filter_map(|e| match e.meta.status {
                TxnStatus::Ongoing => Some(e.meta.start_ms + i64::from(e.meta.timeout_ms) + 1),
                s if s.is_settled() && s != TxnStatus::Dead => {
                    Some(e.meta.update_ms + self.config.id_expiration_ms)
                }
                _ => None,
            })
            .min()
    }

    /// ListTransactions: ids matching the filters (empty filter: any).
    pub fn list(
        &self,
        states: &[String],
        producer_ids: &[i64],
        min_duration_ms: i64,
        now: i64,
    ) -> Vec<ListedTxn> {
        let mut out: Vec<ListedTxn> = self
            .txns
            .values()
            .map(|e| &e.meta)
            .filter(|m| m.status != TxnStatus::Dead)
            .filter(|m| states.is_empty() || states.iter().any(|s| s == m.status.name()))
            .filter(|m| producer_ids.is_empty() || producer_ids.contains(&m.producer_id))
            .filter(|m| {
                min_duration_ms < 0 || (m.start_ms >= 0 && now - m.start_ms >= min_duration_ms)
            })
            .map(|m| ListedTxn {
                txn_id: m.transactional_id.clone(),
                producer_id: m.producer_id,
                status: m.status,
                start_ms: m.start_ms,
            })
            .collect();
        out.sort_by(|a, b| a.txn_id.cmp(&b.txn_id));
        out
    }
}

/// Ongoing → PrepareAbort with a bumped epoch: the old producer instance is fenced.
fn fenced_abort(meta: TxnMetadata, now: i64) -> TxnMetadata {
    let mut to = meta;
    to.last_epoch = to.epoch;
    to.epoch = to.epoch.saturating_add(1);
    to.status = TxnStatus::PrepareAbort;
    to.update_ms = now;
    to
}

fn marker_job(meta: &TxnMetadata) -> MarkerJob {
    MarkerJob {
        txn_id: meta.transactional_id.clone(),
        producer_id: meta.producer_id,
        epoch: meta.epoch,
        commit: meta.status == TxnStatus::PrepareCommit,
        partitions: meta.partitions.clone(),
    }
}
