//! Consumer-group administration: list, describe, delete groups, read all committed offsets
//! and set them while a group is empty — what `kafka-consumer-groups.sh` does.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::cluster::Client;
use super::error::{ClientError, KafkaApiError};
use super::group::{commit_topics, decode_assignment, fetch_committed, find_coordinator};
use crate::base::TopicPartition;

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    pub assignment: Vec<TopicPartition>,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

fn api_error(code: i16, what: String) -> ClientError {
    ClientError::Kafka(KafkaApiError::new(code, None, what))
}

/// `(group, state)` of every group on every broker.
pub async fn list_groups(client: &Client) -> Result<Vec<(String, String)>, ClientError> {
    let nodes: Vec<i32> = client.metadata().brokers.keys().copied().collect();
    let mut out = Vec::new();
    for node in nodes {
        let conn = client.node_conn(node).await?;
        let version = conn.version(ApiKey::ListGroups)?;
        let resp = conn
            .request_at(&ListGroupsRequest::default(), version)
            .await?;
        if resp.error_code != 0 {
            return Err(api_error(
                resp.error_code,
                format!("listing groups on broker {node}"),
            ));
        }
        for g in resp.groups {
            let state = if version >= 4 {
                g.group_state.to_string()
            } else {
                String::new()
            };
            out.push((g.group_id.0.to_string(), state));
        }
    }
    out.sort();
    Ok(out)
}

pub async fn describe_group(client: &Client, group: &str) -> Result<GroupDescription, ClientError> {
    let node = find_coordinator(client, group).await?;
    let conn = client.node_conn(node).await?;
    let mut req = DescribeGroupsRequest::default();
    req.groups = vec![GroupId(StrBytes::from_string(group.to_owned()))];
    let resp = conn.request(&req).await?;
    let g = resp
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| ClientError::Protocol {
            peer: conn.peer().to_owned(),
            reason: "DescribeGroups answered no group".into(),
        })?;
    if g.error_code != 0 {
        return Err(api_error(
            g.error_code,
            format!("describing group '{group}'"),
        ));
    }
    Ok(GroupDescription {
        group: group.to_owned(),
        state: g.group_state.to_string(),
        protocol_type: g.protocol_type.to_string(),
        protocol: g.protocol_data.to_string(),
        members: g
            .members
            .into_iter()
            .map(|m| MemberDescription {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.map(|i| i.to_string()),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assignment: if g.protocol_type.as_str() == "consumer" {
                    decode_assignment(&m.member_assignment)
                } else {
                    Vec::new()
                },
            })
            .collect(),
    })
}

/// Every committed offset of `group`.
pub async fn committed_offsets(
    client: &Client,
    group: &str,
) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
    let node = find_coordinator(client, group).await?;
    let conn = client.node_conn(node).await?;
    Ok(fetch_committed(&conn, group, None)
        .await?
        .into_iter()
        .collect())
}

/// Commits `offsets` as an administrator (no member, no generation): the broker accepts it
/// only while the group has no members.
pub async fn set_offsets(
    client: &Client,
    group: &str,
    offsets: &[(TopicPartition, i64)],
) -> Result<(), ClientError> {
    let node = find_coordinator(client, group).await?;
    let conn = client.node_conn(node).await?;
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_owned()));
    req.generation_id_or_member_epoch = -1;
    req.topics = commit_topics(offsets);
    let resp = conn.request(&req).await?;
    let errors: HashMap<i16, usize> = resp
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .filter(|c| *c != 0)
        .fold(HashMap::new(), |mut m, c| {
            *m.entry(c).or_default() += 1;
            m
        });
    match errors.keys().next() {
        None => Ok(()),
        Some(code) => Err(api_error(
            *code,
            format!("setting offsets of group '{group}'"),
        )),
    }
}

pub async fn delete_group(client: &Client, group: &str) -> Result<(), ClientError> {
    let node = find_coordinator(client, group).await?;
    let conn = client.node_conn(node).await?;
    let mut req = DeleteGroupsRequest::default();
    req.groups_names = vec![GroupId(StrBytes::from_string(group.to_owned()))];
    let resp = conn.request(&req).await?;
    match resp.results.first().map(|r| r.error_code) {
        Some(0) => Ok(()),
        Some(code) => Err(api_error(code, format!("deleting group '{group}'"))),
        None => Err(ClientError::Protocol {
            peer: conn.peer().to_owned(),
            reason: "DeleteGroups answered nothing".into(),
        }),
    }
}
