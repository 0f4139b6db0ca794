//! Partition reassignment administration (KIP-455): start or cancel moves
//! (AlterPartitionReassignments, sent to the controller; any broker forwards it) and list
//! the moves in progress (ListPartitionReassignments) — what `kafka-reassign-partitions.sh`
//! sends.

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::cluster::Client;
use super::error::ClientError;

/// One partition's target replicas; `None` cancels its reassignment in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub replicas: Option<Vec<i32>>,
}

/// A reassignment in progress, as ListPartitionReassignments reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ongoing {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

fn topic_name(n: &str) -> TopicName {
    TopicName(StrBytes::from_string(n.to_owned()))
}

/// The topics of `moves` in first-seen order, each with its partitions' entries.
fn by_topic(moves: &[Move]) -> Vec<(&str, Vec<&Move>)> {
    let mut out: Vec<(&str, Vec<&Move>)> = Vec::new();
    for m in moves {
        match out.iter_mut().find(|(t, _)| *t == m.topic) {
            Some((_, ms)) => ms.push(m),
            None => out.push((&m.topic, vec![m])),
        }
    }
    out
}

/// Starts or cancels each move; one outcome per move, in the order given.
pub async fn alter_partition_reassignments(
    client: &Client,
    moves: &[Move],
) -> Result<Vec<Result<(), ClientError>>, ClientError> {
    let mut req = AlterPartitionReassignmentsRequest::default();
    req.timeout_ms = client.config().request_timeout.as_millis() as i32;
    req.topics = by_topic(moves)
        .into_iter()
        .map(|(topic, ms)| {
            let mut t = ReassignableTopic::default();
            t.name = topic_name(topic);
            t.partitions = ms
                .into_iter()
                .map(|m| {
                    let mut p = ReassignablePartition::default();
                    p.partition_index = m.partition;
                    p.replicas = m
                        .replicas
                        .as_ref()
                        .map(|r| r.iter().map(|&b| BrokerId(b)).collect());
                    p
                })
                .collect();
            t
        })
        .collect();
    let resp = client
        .retry(|| async {
            let conn = client.controller_conn().await?;
            let resp = conn.request(&req).await?;
            let message = resp.error_message.as_ref().map(|m| m.to_string());
            ClientError::check(resp.error_code, message, || {
                "reassigning partitions".to_owned()
            })?;
            Ok(resp)
        })
        .await?;
    let outcomes = moves
        .iter()
        .map(|m| {
            let answer = resp
                .responses
                .iter()
                .filter(|t| t.name.as_str() == m.topic)
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition_index == m.partition);
            match answer {
                None => Err(ClientError::Protocol {
                    peer: "the broker".into(),
                    reason: format!(
                        "the AlterPartitionReassignments answer says nothing about {}-{}",
                        m.topic, m.partition
                    ),
                }),
                Some(p) => {
                    let message = p.error_message.as_ref().map(|m| m.to_string());
                    ClientError::check(p.error_code, message, || {
                        format!("reassigning {}-{}", m.topic, m.partition)
                    })
                }
            }
        })
        .collect();
    Ok(outcomes)
}

/// The reassignments in progress: all of them (`None`), or those of the named partitions.
pub async fn list_partition_reassignments(
    client: &Client,
    partitions: Option<&[(String, i32)]>,
) -> Result<Vec<Ongoing>, ClientError> {
    let mut req = ListPartitionReassignmentsRequest::default();
    req.timeout_ms = client.config().request_timeout.as_millis() as i32;
    req.topics = partitions.map(|ps| {
        let mut topics: Vec<ListPartitionReassignmentsTopics> = Vec::new();
        for (topic, partition) in ps {
            match topics.iter_mut().find(|t| t.name.as_str() == topic) {
                Some(t) => t.partition_indexes.push(*partition),
                None => {
                    let mut t = ListPartitionReassignmentsTopics::default();
                    t.name = topic_name(topic);
                    t.partition_indexes = vec![*partition];
                    topics.push(t);
                }
            }
        }
        topics
    });
    let resp = client
        .retry(|| async {
            let conn = client.controller_conn().await?;
            let resp = conn.request(&req).await?;
            let message = resp.error_message.as_ref().map(|m| m.to_string());
            ClientError::check(resp.error_code, message, || {
                "listing partition reassignments".to_owned()
            })?;
            Ok(resp)
        })
        .await?;
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
    Ok(resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| Ongoing {
                topic: t.name.to_string(),
                partition: p.partition_index,
                replicas: ids(&p.replicas),
                adding: ids(&p.adding_replicas),
                removing: ids(&p.removing_replicas),
            })
        })
        .collect())
}
