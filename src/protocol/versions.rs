//! The API versions this broker serves. The server builds its ApiVersions answer from this
//! table and dispatches only what is in it, so the broker cannot advertise an API it does not
//! serve. Every range here lies inside what the `kafka-protocol` crate can decode, except
//! Produce v0–v2, which are advertised (librdkafka turns compression off when a broker's Produce
//! minimum is above 0) and answered with UNSUPPORTED_VERSION by a hand-written encoder.

use kafka_protocol::messages::ApiKey;

/// One advertised API: its key and version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ApiRange {
    ApiRange { key, min, max }
}

/// Produce versions below this are advertised but refused (message formats v0/v1).
pub const PRODUCE_MIN_DECODABLE: i16 = 3;

/// What the broker serves. Fetch stops at v12 and Produce at v11: later versions name topics by
/// id only, which clients fall back from cleanly. The transaction APIs stop before the
/// versions of KIP-890's second part (transaction version 2), so clients use the classic
/// protocol: AddPartitionsToTxn calls, EndTxn without per-transaction epoch bumps.
pub const SUPPORTED: &[ApiRange] = &[
    api(ApiKey::Produce, 0, 11),
    api(ApiKey::Fetch, 4, 12),
    api(ApiKey::ListOffsets, 1, 6),
    api(ApiKey::OffsetForLeaderEpoch, 3, 4),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 3),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DescribeCluster, 0, 2),
    api(ApiKey::UnregisterBroker, 0, 0),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::ElectLeaders, 0, 2),
    api(ApiKey::AlterPartitionReassignments, 0, 0),
    api(ApiKey::ListPartitionReassignments, 0, 0),
    api(ApiKey::FindCoordinator, 0, 4),
    api(ApiKey::JoinGroup, 0, 7),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 4),
    api(ApiKey::OffsetCommit, 2, 8),
    api(ApiKey::OffsetFetch, 1, 8),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::ListGroups, 0, 4),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    api(ApiKey::ConsumerGroupDescribe, 0, 1),
    api(ApiKey::InitProducerId, 0, 5),
    api(ApiKey::AddPartitionsToTxn, 0, 3),
    api(ApiKey::AddOffsetsToTxn, 0, 4),
    api(ApiKey::EndTxn, 0, 4),
    api(ApiKey::WriteTxnMarkers, 1, 1),
    api(ApiKey::TxnOffsetCommit, 0, 4),
    api(ApiKey::DescribeProducers, 0, 0),
    api(ApiKey::ListTransactions, 0, 1),
    api(ApiKey::DescribeTransactions, 0, 0),
];

/// The advertised range for `key`, if the broker serves it.
pub fn range_of(key: ApiKey) -> Option<ApiRange> {
    SUPPORTED.iter().copied().find(|r| r.key == key)
}

/// Whether the broker serves `key` at `version`.
pub fn is_supported(key: ApiKey, version: i16) -> bool {
    range_of(key).is_some_and(|r| r.min <= version && version <= r.max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;

    /// Every advertised range must be decodable by the crate (bar the Produce v0–v2 refusal).
    #[test]
    fn advertised_ranges_are_within_the_codec() {
        for r in SUPPORTED {
            let codec = r.key.valid_versions();
            let min = if r.key == ApiKey::Produce {
                PRODUCE_MIN_DECODABLE
            } else {
                r.min
            };
            assert!(
                codec.min <= min && r.max <= codec.max,
                "{:?} advertises {}..={} but the codec has {}..={}",
                r.key,
                r.min,
                r.max,
                codec.min,
                codec.max
            );
        }
        assert_eq!(ProduceRequest::VERSIONS.min, PRODUCE_MIN_DECODABLE);
    }

    #[test]
    fn produce_minimum_is_zero_for_librdkafka_compression() {
        assert_eq!(range_of(ApiKey::Produce).unwrap().min, 0);
    }
}
