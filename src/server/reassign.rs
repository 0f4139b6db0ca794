//! Partition reassignment APIs (KIP-455): AlterPartitionReassignments starts (replicas
//! given) or cancels (replicas null) each named partition's move through the controller,
//! which forwards to the Raft leader, so NOT_CONTROLLER never reaches the client;
//! ListPartitionReassignments reports the moves in progress from this broker's snapshot
//! (all of them, or those of the named partitions).

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::handlers::Handlers;
use crate::base::KafkaCode;
use crate::controller::{reassign, AdminOp};

fn ids(brokers: &[i32]) -> Vec<BrokerId> {
    brokers.iter().map(|&b| BrokerId(b)).collect()
}

impl Handlers {
    pub async fn alter_partition_reassignments(
        &self,
        req: AlterPartitionReassignmentsRequest,
    ) -> ResponseKind {
        let moves: Vec<(String, i32, Option<Vec<i32>>)> = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    let target = p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
                    (t.name.to_string(), p.partition_index, target)
                })
            })
            .collect();
        let mut results = self
            .router
            .admin(AdminOp::Reassign { moves })
            .await
            .into_iter();
        let mut resp = AlterPartitionReassignmentsResponse::default();
        for t in req.topics {
            let mut topic = ReassignableTopicResponse::default();
            topic.name = t.name;
            for p in t.partitions {
                let mut out = ReassignablePartitionResponse::default();
                out.partition_index = p.partition_index;
                let result = results
                    .next()
                    .map_or(Err(KafkaCode::UnknownServerError.into()), |r| r.1);
                if let Err(e) = result {
                    out.error_code = e.code.code();
                    out.error_message = Some(StrBytes::from_string(e.message));
                }
                topic.partitions.push(out);
            }
            resp.responses.push(topic);
        }
        ResponseKind::AlterPartitionReassignments(resp)
    }

    pub fn list_partition_reassignments(
        &self,
        req: &ListPartitionReassignmentsRequest,
    ) -> ResponseKind {
        let snap = self.router.snapshot();
        let wanted = |topic: &str, partition: i32| {
            req.topics.as_ref().is_none_or(|ts| {
                ts.iter()
                    .any(|t| t.name.as_str() == topic && t.partition_indexes.contains(&partition))
            })
        };
        let mut resp = ListPartitionReassignmentsResponse::default();
        for ongoing in reassign::list(&snap) {
            if !wanted(&ongoing.topic, ongoing.partition) {
                continue;
            }
            let mut p = OngoingPartitionReassignment::default();
            p.partition_index = ongoing.partition;
            p.replicas = ids(&ongoing.replicas);
            p.adding_replicas = ids(&ongoing.adding);
            p.removing_replicas = ids(&ongoing.removing);
            match resp
                .topics
                .iter_mut()
                .find(|t| t.name.as_str() == ongoing.topic)
            {
                Some(t) => t.partitions.push(p),
                None => {
                    let mut t = OngoingTopicReassignment::default();
                    t.name = TopicName(StrBytes::from_string(ongoing.topic));
                    t.partitions.push(p);
                    resp.topics.push(t);
                }
            }
        }
        ResponseKind::ListPartitionReassignments(resp)
    }
}
