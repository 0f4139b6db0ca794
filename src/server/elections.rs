//! ElectLeaders (KIP-460): preferred or unclean leader election for named partitions, or
//! for every partition when none are named. The controller decides each one
//! (`controller::election`); this file maps the request and the answers. As Kafka does, a
//! request naming no partitions answers only for those where an election was attempted
//! (ELECTION_NOT_NEEDED is left out).

use std::collections::BTreeMap;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    ElectLeadersRequest, ElectLeadersResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::handlers::Handlers;
use crate::base::KafkaCode;
use crate::controller::AdminOp;

/// ElectionType 1 (v1+); v0 always elects the preferred replica.
const UNCLEAN: i8 = 1;
const PREFERRED: i8 = 0;

impl Handlers {
    pub async fn elect_leaders(&self, req: ElectLeadersRequest) -> ResponseKind {
        let mut resp = ElectLeadersResponse::default();
        if req.election_type != PREFERRED && req.election_type != UNCLEAN {
            resp.error_code = KafkaCode::InvalidRequest.code();
            return ResponseKind::ElectLeaders(resp);
        }
        let every = req.topic_partitions.is_none();
        let partitions: Vec<(String, i32)> = match req.topic_partitions {
            Some(topics) => topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|&p| (t.topic.to_string(), p)))
                .collect(),
            None => self.every_partition(),
        };
        let results = self
            .router
            .admin(AdminOp::ElectLeaders {
                unclean: req.election_type == UNCLEAN,
                partitions: partitions.clone(),
            })
            .await;
        let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
        for ((topic, partition), (_, result)) in partitions.into_iter().zip(results) {
            let mut out = PartitionResult::default();
            out.partition_id = partition;
            if let Err(e) = result {
                if every && e.code == KafkaCode::ElectionNotNeeded {
                    continue;
                }
                out.error_code = e.code.code();
                out.error_message = Some(StrBytes::from_string(e.message));
            }
            by_topic.entry(topic).or_default().push(out);
        }
        for (topic, partition_result) in by_topic {
            let mut r = ReplicaElectionResult::default();
            r.topic = TopicName(StrBytes::from_string(topic));
            r.partition_result = partition_result;
            resp.replica_election_results.push(r);
        }
        ResponseKind::ElectLeaders(resp)
    }

    /// Every partition in this broker's metadata.
    fn every_partition(&self) -> Vec<(String, i32)> {
        let snap = self.router.snapshot();
        snap.topics
            .values()
            .flat_map(|t| (0..t.partitions.len() as i32).map(|p| (t.name.clone(), p)))
            .collect()
    }
}
