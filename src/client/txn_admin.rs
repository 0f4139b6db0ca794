//! Transaction administration (KIP-664): list transactions on every broker, describe one
//! transactional id at its coordinator, and describe the producers each partition of a topic
//! knows — what `kafka-transactions.sh` does.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::cluster::Client;
use super::error::{ClientError, KafkaApiError};
use super::group::find_coordinator_of;

/// A transactional id as ListTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnListing {
    pub txn_id: String,
    pub producer_id: i64,
    pub state: String,
}

/// A transactional id as DescribeTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDescription {
    pub txn_id: String,
    pub state: String,
    pub timeout_ms: i32,
    pub start_ms: i64,
    pub producer_id: i64,
    pub epoch: i16,
    pub partitions: Vec<(String, i32)>,
}

/// A producer as DescribeProducers reports it for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerDescription {
    pub partition: i32,
    pub producer_id: i64,
    pub epoch: i32,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    pub txn_start_offset: i64,
}

fn api_error(code: i16, what: String) -> ClientError {
    ClientError::Kafka(KafkaApiError::new(code, None, what))
}

/// Transactions on every broker, filtered by state names (empty: all).
pub async fn list_transactions(
    client: &Client,
    states: &[String],
) -> Result<Vec<TxnListing>, ClientError> {
    let nodes: Vec<i32> = client.metadata().brokers.keys().copied().collect();
    let mut out = Vec::new();
    for node in nodes {
        let conn = client.node_conn(node).await?;
        let mut req = ListTransactionsRequest::default();
        req.state_filters = states
            .iter()
            .map(|s| StrBytes::from_string(s.clone()))
            .collect();
        req.duration_filter = -1;
        let resp = conn.request(&req).await?;
        if resp.error_code != 0 {
            return Err(api_error(
                resp.error_code,
                format!("listing transactions on broker {node}"),
            ));
        }
        out.extend(resp.transaction_states.into_iter().map(|t| TxnListing {
            txn_id: t.transactional_id.0.to_string(),
            producer_id: t.producer_id.0,
            state: t.transaction_state.to_string(),
        }));
    }
    out.sort_by(|a, b| a.txn_id.cmp(&b.txn_id));
    Ok(out)
}

/// One transactional id, asked at its coordinator.
pub async fn describe_transaction(
    client: &Client,
    txn_id: &str,
) -> Result<TxnDescription, ClientError> {
    let node = find_coordinator_of(client, txn_id, 1).await?;
    let conn = client.node_conn(node).await?;
    let mut req = DescribeTransactionsRequest::default();
    req.transactional_ids = vec![TransactionalId(StrBytes::from_string(txn_id.to_owned()))];
    let resp = conn.request(&req).await?;
    let t = resp
        .transaction_states
        .into_iter()
        .next()
        .ok_or_else(|| ClientError::Protocol {
            peer: conn.peer().to_owned(),
            reason: "DescribeTransactions answered no transaction".into(),
        })?;
    if t.error_code != 0 {
        return Err(api_error(
            t.error_code,
            format!("describing transactional id '{txn_id}'"),
        ));
    }
    Ok(TxnDescription {
        txn_id: txn_id.to_owned(),
        state: t.transaction_state.to_string(),
        timeout_ms: t.transaction_timeout_ms,
        start_ms: t.transaction_start_time_ms,
        producer_id: t.producer_id.0,
        epoch: t.producer_epoch,
        partitions: t
            .topics
            .into_iter()
            .flat_map(|td| {
                let topic = td.topic.0.to_string();
                td.partitions.into_iter().map(move |p| (topic.clone(), p))
            })
            .collect(),
    })
}

/// The producers every partition of `topic` knows, asked at each partition's leader.
pub async fn describe_producers(
    client: &Client,
    topic: &str,
) -> Result<Vec<ProducerDescription>, ClientError> {
    let info = client.topic(topic).await?;
    let mut out = Vec::new();
    for p in &info.partitions {
        let conn = client.node_conn(p.leader).await?;
        let mut req = DescribeProducersRequest::default();
        let mut t = describe_producers_request::TopicRequest::default();
        t.name = TopicName(StrBytes::from_string(topic.to_owned()));
        t.partition_indexes = vec![p.partition];
        req.topics = vec![t];
        let resp = conn.request(&req).await?;
        for pr in resp.topics.into_iter().flat_map(|t| t.partitions) {
            if pr.error_code != 0 {
                return Err(api_error(
                    pr.error_code,
                    format!("describing producers of {topic}-{}", pr.partition_index),
                ));
            }
            out.extend(
                pr.active_producers
                    .into_iter()
                    .map(|s| ProducerDescription {
                        partition: pr.partition_index,
                        producer_id: s.producer_id.0,
                        epoch: s.producer_epoch,
                        last_sequence: s.last_sequence,
                        last_timestamp: s.last_timestamp,
                        coordinator_epoch: s.coordinator_epoch,
                        txn_start_offset: s.current_txn_start_offset,
                    }),
            );
        }
    }
    Ok(out)
}
