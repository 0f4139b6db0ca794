//! Which version of each API this client speaks, and the pick against a broker's ApiVersions
//! answer: the highest version both sides support. The client's ranges stop where its request
//! builders stop (Produce and Fetch at v12: later versions name topics by id only).

use std::collections::HashMap;

use kafka_protocol::messages::ApiKey;

/// A version range, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub min: i16,
    pub max: i16,
}

/// What this client can build and read.
pub const CLIENT_RANGES: &[(ApiKey, Range)] = &[
    (ApiKey::Produce, Range { min: 3, max: 12 }),
    (ApiKey::Fetch, Range { min: 4, max: 12 }),
    (ApiKey::ListOffsets, Range { min: 1, max: 10 }),
    (ApiKey::Metadata, Range { min: 1, max: 12 }),
    (ApiKey::ApiVersions, Range { min: 0, max: 3 }),
    (ApiKey::CreateTopics, Range { min: 2, max: 7 }),
    (ApiKey::DeleteTopics, Range { min: 1, max: 6 }),
    (ApiKey::DescribeCluster, Range { min: 0, max: 2 }),
    (ApiKey::UnregisterBroker, Range { min: 0, max: 0 }),
    (ApiKey::DescribeConfigs, Range { min: 1, max: 4 }),
    (ApiKey::IncrementalAlterConfigs, Range { min: 0, max: 1 }),
    (
        ApiKey::AlterPartitionReassignments,
        Range { min: 0, max: 0 },
    ),
    (ApiKey::ListPartitionReassignments, Range { min: 0, max: 0 }),
    (ApiKey::FindCoordinator, Range { min: 0, max: 4 }),
    (ApiKey::JoinGroup, Range { min: 1, max: 7 }),
    (ApiKey::SyncGroup, Range { min: 0, max: 5 }),
    (ApiKey::Heartbeat, Range { min: 0, max: 4 }),
    (ApiKey::LeaveGroup, Range { min: 0, max: 4 }),
    (ApiKey::OffsetCommit, Range { min: 2, max: 8 }),
    (ApiKey::OffsetFetch, Range { min: 1, max: 7 }),
    (ApiKey::DescribeGroups, Range { min: 0, max: 5 }),
    (ApiKey::ListGroups, Range { min: 0, max: 4 }),
    (ApiKey::DeleteGroups, Range { min: 0, max: 2 }),
    (ApiKey::InitProducerId, Range { min: 0, max: 4 }),
    (ApiKey::AddPartitionsToTxn, Range { min: 0, max: 3 }),
    (ApiKey::AddOffsetsToTxn, Range { min: 0, max: 3 }),
    (ApiKey::EndTxn, Range { min: 0, max: 3 }),
    (ApiKey::TxnOffsetCommit, Range { min: 0, max: 3 }),
    (ApiKey::DescribeProducers, Range { min: 0, max: 0 }),
    (ApiKey::ListTransactions, Range { min: 0, max: 1 }),
    (ApiKey::DescribeTransactions, Range { min: 0, max: 0 }),
    // Broker to broker: replica reconciliation and transaction markers.
    (ApiKey::OffsetForLeaderEpoch, Range { min: 3, max: 4 }),
    (ApiKey::WriteTxnMarkers, Range { min: 1, max: 1 }),
];

/// The highest version of `key` in both the client's and the broker's range, or `None` if
/// the ranges do not meet (or either side lacks the API).
pub fn pick(key: ApiKey, broker: Option<Range>) -> Option<i16> {
    let ours = client_range(key)?;
    let theirs = broker?;
    let max = ours.max.min(theirs.max);
    let min = ours.min.max(theirs.min);
    (min <= max).then_some(max)
}

pub fn client_range(key: ApiKey) -> Option<Range> {
    CLIENT_RANGES
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, r)| *r)
}

/// A broker's advertised ranges, by raw api key.
#[derive(Debug, Clone, Default)]
pub struct BrokerVersions {
    ranges: HashMap<i16, Range>,
}

impl BrokerVersions {
    pub fn new(ranges: impl IntoIterator<Item = (i16, Range)>) -> Self {
        Self {
            ranges: ranges.into_iter().collect(),
        }
    }

    pub fn range(&self, key: ApiKey) -> Option<Range> {
        self.ranges.get(&(key as i16)).copied()
    }

    /// The version to use for `key` with this broker.
    pub fn pick(&self, key: ApiKey) -> Option<i16> {
        pick(key, self.range(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_highest_common_version() {
        assert_eq!(
            pick(ApiKey::Fetch, Some(Range { min: 4, max: 17 })),
            Some(12)
        );
        assert_eq!(
            pick(ApiKey::Fetch, Some(Range { min: 0, max: 11 })),
            Some(11)
        );
        assert_eq!(
            pick(ApiKey::Metadata, Some(Range { min: 0, max: 12 })),
            Some(12)
        );
    }

    #[test]
    fn disjoint_or_missing_ranges_pick_nothing() {
        assert_eq!(pick(ApiKey::Produce, Some(Range { min: 0, max: 2 })), None);
        assert_eq!(pick(ApiKey::Produce, None), None);
        assert_eq!(
            pick(ApiKey::SaslHandshake, Some(Range { min: 0, max: 1 })),
            None
        );
    }

    #[test]
    fn every_api_the_client_speaks_meets_the_sluice_broker_table() {
        for r in crate::protocol::versions::SUPPORTED {
            if client_range(r.key).is_some() {
                let broker = Some(Range {
                    min: r.min,
                    max: r.max,
                });
                assert!(pick(r.key, broker).is_some(), "{:?}", r.key);
            }
        }
    }

    #[test]
    fn every_client_range_is_within_the_codec() {
        for (key, r) in CLIENT_RANGES {
            let codec = key.valid_versions();
            assert!(codec.min <= r.min && r.max <= codec.max, "{key:?}");
        }
    }
}
