//! Delivery of transaction markers to the leaders of a transaction's partitions: the ones
//! this broker leads are written through the router, the others are sent to their leader
//! with WriteTxnMarkers (as Kafka's coordinator does), over one connection per broker kept
//! by the coordinator's shard.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;

use crate::base::{KafkaCode, KafkaError, TopicPartition};
use crate::client::conn::{ConnectOptions, Connection};
use crate::controller::ClusterSnapshot;
use crate::protocol::batch::ControlType;
use crate::router::Router;
use crate::shard::MarkerPart;

/// How long a marker request to another broker may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections to the other brokers, by node id.
#[derive(Default)]
pub(super) struct Peers {
    open: RefCell<HashMap<i32, Connection>>,
}

impl Peers {
    async fn connection(
        &self,
        snap: &ClusterSnapshot,
        node: i32,
    ) -> Result<Connection, KafkaError> {
        if let Some(c) = self.open.borrow().get(&node).filter(|c| !c.is_broken()) {
            return Ok(c.clone());
        }
        let broker = snap
            .brokers
            .iter()
            .find(|b| b.node_id == node)
            .ok_or_else(|| not_available(format!("broker {node} is not registered")))?;
        let peer = format!("{}:{}", broker.host, broker.port);
        let addr = resolve(&peer)?;
        let opts = ConnectOptions {
            client_id: "sluice-txn-coordinator".to_owned(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: PEER_TIMEOUT,
        };
        let conn = Connection::open(addr, &peer, &opts)
            .await
            .map_err(|e| not_available(e.to_string()))?;
        self.open.borrow_mut().insert(node, conn.clone());
        Ok(conn)
    }
}

fn not_available(message: String) -> KafkaError {
    KafkaError::new(KafkaCode::CoordinatorNotAvailable, message)
}

fn resolve(peer: &str) -> Result<SocketAddr, KafkaError> {
    crate::client::cluster::resolve(peer)
        .ok()
        .and_then(|a| a.into_iter().next())
        .ok_or_else(|| not_available(format!("cannot resolve {peer}")))
}

/// Writes each marker at its partition's leader; one answer per marker, in order.
pub(super) async fn deliver(
    router: &Router,
    peers: &Peers,
    markers: Vec<MarkerPart>,
) -> Vec<Result<(), KafkaError>> {
    let snap = router.snapshot();
    let me = snap.local_node;
    let mut by_leader: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, m) in markers.iter().enumerate() {
        let leader = snap
            .partition(&m.tp.topic, m.tp.partition)
            .map_or(-1, |p| p.leader);
        by_leader.entry(leader).or_default().push(i);
    }
    let mut results: Vec<Result<(), KafkaError>> = markers
        .iter()
        .map(|_| {
            Err(KafkaError::new(
                KafkaCode::LeaderNotAvailable,
                "the partition has no leader",
            ))
        })
        .collect();
    for (leader, indexes) in by_leader {
        let batch: Vec<MarkerPart> = indexes.iter().map(|&i| markers[i].clone()).collect();
        let answers = if leader == me {
            router.write_markers(batch).await
        } else if leader >= 0 {
            send(peers, &snap, leader, &batch).await
        } else {
            continue;
        };
        for (i, a) in indexes.into_iter().zip(answers) {
            results[i] = a;
        }
    }
    results
}

/// Sends `markers` (all led by `node`) as one WriteTxnMarkers request.
async fn send(
    peers: &Peers,
    snap: &ClusterSnapshot,
    node: i32,
    markers: &[MarkerPart],
) -> Vec<Result<(), KafkaError>> {
    let answer = async {
        let conn = peers.connection(snap, node).await?;
        conn.request(&request(markers))
            .await
            .map_err(|e| not_available(e.to_string()))
    }
    .await;
    let resp = match answer {
        Ok(r) => r,
        Err(e) => return markers.iter().map(|_| Err(e.clone())).collect(),
    };
    let mut codes: HashMap<(i64, TopicPartition), i16> = HashMap::new();
    for m in resp.markers {
        for t in m.topics {
            for p in t.partitions {
                codes.insert(
                    (
                        m.producer_id.0,
                        TopicPartition::new(t.name.to_string(), p.partition_index),
                    ),
                    p.error_code,
                );
            }
        }
    }
    markers
        .iter()
        .map(|m| match codes.get(&(m.producer_id, m.tp.clone())) {
            Some(0) => Ok(()),
            Some(&code) => Err(KafkaError::new(
                remote_code(code),
                format!("broker {node} answered error {code} for {}", m.tp),
            )),
            None => Err(KafkaError::new(
                KafkaCode::UnknownServerError,
                format!("broker {node} did not answer for {}", m.tp),
            )),
        })
        .collect()
}

/// The codes a marker answer is judged by (final or worth a retry); any other error is
/// retried, as a passing one.
fn remote_code(code: i16) -> KafkaCode {
    [
        KafkaCode::UnknownTopicOrPartition,
        KafkaCode::InvalidProducerEpoch,
        KafkaCode::TransactionCoordinatorFenced,
        KafkaCode::NotLeaderOrFollower,
    ]
    .into_iter()
    .find(|k| k.code() == code)
    .unwrap_or(KafkaCode::UnknownServerError)
}

/// What one WritableTxnMarker is for: producer id, epoch, coordinator epoch, commit.
type MarkerKey = (i64, i16, i32, bool);

/// One WriteTxnMarkers request for `markers`, grouped per producer and topic.
fn request(markers: &[MarkerPart]) -> WriteTxnMarkersRequest {
    let mut grouped: BTreeMap<MarkerKey, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for m in markers {
        let commit = m.kind == ControlType::Commit;
        grouped
            .entry((m.producer_id, m.producer_epoch, m.coordinator_epoch, commit))
            .or_default()
            .entry(m.tp.topic.clone())
            .or_default()
            .push(m.tp.partition);
    }
    let mut req = WriteTxnMarkersRequest::default();
    req.markers = grouped
        .into_iter()
        .map(
            |((producer_id, epoch, coordinator_epoch, commit), topics)| {
                let mut w = WritableTxnMarker::default();
                w.producer_id = ProducerId(producer_id);
                w.producer_epoch = epoch;
                w.coordinator_epoch = coordinator_epoch;
                w.transaction_result = commit;
                w.topics = topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        let mut t = WritableTxnMarkerTopic::default();
                        t.name = TopicName(StrBytes::from_string(name));
                        t.partition_indexes = partitions;
                        t
                    })
                    .collect();
                w
            },
        )
        .collect();
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(topic: &str, partition: i32, producer_id: i64, kind: ControlType) -> MarkerPart {
        MarkerPart {
            tp: TopicPartition::new(topic, partition),
            producer_id,
            producer_epoch: 3,
            coordinator_epoch: 7,
            kind,
        }
    }

    #[test]
    fn markers_are_grouped_per_producer_and_topic() {
        let req = request(&[
            marker("a", 0, 1, ControlType::Commit),
            marker("a", 2, 1, ControlType::Commit),
            marker("b", 1, 1, ControlType::Commit),
            marker("a", 0, 2, ControlType::Abort),
        ]);
        assert_eq!(req.markers.len(), 2);
        let first = &req.markers[0];
        assert_eq!(first.producer_id.0, 1);
        assert!(first.transaction_result);
        assert_eq!(first.coordinator_epoch, 7);
        let parts: Vec<(String, Vec<i32>)> = first
            .topics
            .iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect();
        assert_eq!(
            parts,
            vec![("a".to_owned(), vec![0, 2]), ("b".to_owned(), vec![1])]
        );
        assert!(!req.markers[1].transaction_result);
    }
}
