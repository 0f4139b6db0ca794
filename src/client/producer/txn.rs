//! The transactional side of the producer (KIP-98, driven as the Java client drives it):
//! the transactional id's coordinator, InitProducerId with the id (which fences any older
//! producer of it and aborts its open transaction), AddPartitionsToTxn before a partition's
//! first batch of a transaction, and EndTxn to commit or abort. The records themselves go
//! through the ordinary sender, stamped transactional.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::time::{Duration, Instant};

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, EndTxnRequest, InitProducerIdRequest, ProducerId, TopicName,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::accumulator::ProducerIdentity;
use crate::base::TopicPartition;
use crate::client::cluster::Client;
use crate::client::error::{ClientError, KafkaApiError};
use crate::client::group::find_coordinator_of;
use crate::runtime;

/// FindCoordinator's key type for a transactional id.
const TRANSACTION_KEY: i8 = 1;

/// How long to wait before asking again when the coordinator answers
/// CONCURRENT_TRANSACTIONS: the previous transaction's markers are being written, which
/// takes a few milliseconds, so the client's ordinary backoff (100 ms) would cap a producer
/// at ten transactions a second. The Java client uses the same short wait.
const CONCURRENT_TRANSACTIONS_BACKOFF: Duration = Duration::from_millis(20);

/// Kafka's CONCURRENT_TRANSACTIONS error code.
const CONCURRENT_TRANSACTIONS: i16 = 51;

/// Where the producer is in its transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// `init` has not run yet.
    Uninitialized,
    /// Between transactions.
    Ready,
    /// Inside `begin` .. `commit`/`abort`.
    Open,
    /// Fenced by a newer producer or failed beyond repair: only closing is left.
    Fatal,
}

/// One transactional producer's state.
pub(super) struct Transactions {
    pub id: String,
    pub timeout: Duration,
    pub phase: Cell<Phase>,
    /// Partitions added to the open transaction.
    added: RefCell<HashSet<TopicPartition>>,
    /// Failed records counted when the open transaction began: more at commit means it
    /// lost records and must abort.
    failed_at_begin: Cell<u64>,
    /// The coordinator last found, until a request to it fails.
    coordinator: Cell<Option<i32>>,
}

impl Transactions {
    pub fn new(id: String, timeout: Duration) -> Self {
        Self {
            id,
            timeout,
            phase: Cell::new(Phase::Uninitialized),
            added: RefCell::new(HashSet::new()),
            failed_at_begin: Cell::new(0),
            coordinator: Cell::new(None),
        }
    }

    /// Checks the producer may do `what` in its current phase.
    pub fn expect(&self, phase: Phase, what: &str) -> Result<(), ClientError> {
        let now = self.phase.get();
        if now == phase {
            return Ok(());
        }
        Err(ClientError::Config(format!(
            "transactional producer '{}': cannot {what} while {}",
            self.id,
            describe(now)
        )))
    }

    pub fn begin(&self, failed_so_far: u64) {
        self.added.borrow_mut().clear();
        self.failed_at_begin.set(failed_so_far);
        self.phase.set(Phase::Open);
    }

    /// Whether records failed since the open transaction began.
    pub fn lost_records(&self, failed_now: u64) -> bool {
        failed_now > self.failed_at_begin.get()
    }

    pub fn is_added(&self, tp: &TopicPartition) -> bool {
        self.added.borrow().contains(tp)
    }

    pub fn mark_added(&self, tp: TopicPartition) {
        self.added.borrow_mut().insert(tp);
    }

    pub fn has_partitions(&self) -> bool {
        !self.added.borrow().is_empty()
    }

    /// Marks the producer fenced when `e` says a newer producer took over.
    pub fn note_error(&self, e: &ClientError) {
        if matches!(e.kafka_code(), Some(47 | 90 | 49)) {
            self.phase.set(Phase::Fatal);
        }
    }
}

fn describe(phase: Phase) -> &'static str {
    match phase {
        Phase::Uninitialized => "init has not run",
        Phase::Ready => "no transaction is open",
        Phase::Open => "a transaction is open",
        Phase::Fatal => "fenced or failed (close it and start a new producer)",
    }
}

fn api_error(code: i16, what: String) -> ClientError {
    ClientError::Kafka(KafkaApiError::new(code, None, what))
}

/// Runs `op` against the transactional id's coordinator until it succeeds or fails with an
/// error that retrying cannot fix. The coordinator found is kept; a failed try finds it anew
/// (it moves when its `__transaction_state` partition does).
async fn at_coordinator<T, F, Fut>(
    client: &Client,
    txn: &Transactions,
    op: F,
) -> Result<T, ClientError>
where
    F: Fn(crate::client::conn::Connection) -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let deadline = Instant::now() + client.config().retry_policy().deadline;
    loop {
        let answer = client
            .retry(|| async {
                let node = match txn.coordinator.get() {
                    Some(node) => node,
                    None => find_coordinator_of(client, &txn.id, TRANSACTION_KEY).await?,
                };
                txn.coordinator.set(Some(node));
                let answer = async { op(client.node_conn(node).await?).await }.await;
                let still_coordinator = match &answer {
                    Ok(_) => true,
                    Err(e) => e.kafka_code() == Some(CONCURRENT_TRANSACTIONS),
                };
                if !still_coordinator {
                    txn.coordinator.set(None);
                }
                match answer {
                    // Handled below, with the short backoff.
                    Err(e) if e.kafka_code() == Some(CONCURRENT_TRANSACTIONS) => Ok(Err(e)),
                    other => other.map(Ok),
                }
            })
            .await?;
        match answer {
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "previous transaction still completing");
                runtime::sleep(CONCURRENT_TRANSACTIONS_BACKOFF).await;
            }
            other => return other,
        }
    }
}

/// InitProducerId for a transactional id: the producer id and a new epoch.
pub(super) async fn init_producer_id(
    client: &Client,
    txn: &Transactions,
) -> Result<ProducerIdentity, ClientError> {
    let timeout_ms = i32::try_from(txn.timeout.as_millis()).unwrap_or(i32::MAX);
    let resp = at_coordinator(client, txn, |conn| async move {
        let mut req = InitProducerIdRequest::default();
        req.transactional_id = Some(TransactionalId(StrBytes::from_string(txn.id.clone())));
        req.transaction_timeout_ms = timeout_ms;
        req.producer_id = ProducerId(-1);
        req.producer_epoch = -1;
        let resp = conn.request(&req).await?;
        match resp.error_code {
            0 => Ok(resp),
            code => Err(api_error(code, format!("InitProducerId for '{}'", txn.id))),
        }
    })
    .await?;
    Ok(ProducerIdentity {
        producer_id: resp.producer_id.0,
        epoch: resp.producer_epoch,
        transactional: true,
    })
}

/// AddPartitionsToTxn for one partition of the open transaction.
pub(super) async fn add_partition(
    client: &Client,
    txn: &Transactions,
    id: ProducerIdentity,
    tp: &TopicPartition,
) -> Result<(), ClientError> {
    at_coordinator(client, txn, |conn| async move {
        let mut topic = AddPartitionsToTxnTopic::default();
        topic.name = TopicName(StrBytes::from_string(tp.topic.clone()));
        topic.partitions = vec![tp.partition];
        let mut req = AddPartitionsToTxnRequest::default();
        req.v3_and_below_transactional_id = TransactionalId(StrBytes::from_string(txn.id.clone()));
        req.v3_and_below_producer_id = ProducerId(id.producer_id);
        req.v3_and_below_producer_epoch = id.epoch;
        req.v3_and_below_topics = vec![topic];
        let resp = conn.request(&req).await?;
        let code = resp
            .results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| t.results_by_partition.iter())
            .map(|p| p.partition_error_code)
            .find(|&c| c != 0)
            .unwrap_or(resp.error_code);
        match code {
            0 => Ok(()),
            code => Err(api_error(
                code,
                format!("adding {tp} to transaction '{}'", txn.id),
            )),
        }
    })
    .await
}

/// EndTxn: commits or aborts the open transaction at the coordinator.
pub(super) async fn end(
    client: &Client,
    txn: &Transactions,
    id: ProducerIdentity,
    commit: bool,
) -> Result<(), ClientError> {
    at_coordinator(client, txn, |conn| async move {
        let mut req = EndTxnRequest::default();
        req.transactional_id = TransactionalId(StrBytes::from_string(txn.id.clone()));
        req.producer_id = ProducerId(id.producer_id);
        req.producer_epoch = id.epoch;
        req.committed = commit;
        let resp = conn.request(&req).await?;
        match resp.error_code {
            0 => Ok(()),
            code => {
                let verb = if commit { "committing" } else { "aborting" };
                Err(api_error(code, format!("{verb} transaction '{}'", txn.id)))
            }
        }
    })
    .await
}
