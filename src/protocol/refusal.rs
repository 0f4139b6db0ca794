//! Answers to requests at versions the broker does not serve. A Kafka client that negotiates
//! nothing (an old sarama, a client pinned to an old protocol level) must read
//! UNSUPPORTED_VERSION in the layout of the version it sent, not a closed connection it cannot
//! explain. Three cases:
//! - ApiVersions: the v0 layout, which every client can read, so it can fall back;
//! - versions older than the `kafka-protocol` crate can decode (Produce v0–v2, Fetch v0–v3):
//!   the topic and partition lists are read by hand and answered by hand-written encoders;
//! - versions the crate decodes but the broker does not serve: the crate decodes the request
//!   and encodes an error answer at that version.
//!
//! An API without an error answer here still closes the connection (logged by the caller).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;

use super::codec::{api_versions_response, encode_response, DecodeError};
use crate::base::KafkaCode;

/// The first Fetch version the `kafka-protocol` crate decodes.
pub const FETCH_MIN_DECODABLE: i16 = 4;

const UNSUPPORTED: i16 = KafkaCode::UnsupportedVersion.code();

/// The answer to `frame`, a request for `key` at an unserved `version`: `Ok(Some(frame))` to
/// write, `Ok(None)` for a produce with acks=0 (Kafka never answers those), `Err` when there is
/// no error layout for this API and the connection must close.
pub fn refuse(frame: Bytes, key: ApiKey, version: i16) -> Result<Option<BytesMut>, DecodeError> {
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    match key {
        ApiKey::ApiVersions => Ok(Some(unsupported_api_versions_frame(correlation_id))),
        ApiKey::Produce if version < super::versions::PRODUCE_MIN_DECODABLE => {
            let old = read_old_produce(frame, version)?;
            Ok((old.acks != 0).then(|| old_produce_frame(&old)))
        }
        ApiKey::Fetch if version < FETCH_MIN_DECODABLE => {
            Ok(Some(old_fetch_frame(&read_old_fetch(frame, version)?)))
        }
        _ if key.valid_versions().min <= version && version <= key.valid_versions().max => {
            refuse_decodable(frame, key, version, correlation_id)
        }
        _ => Err(DecodeError::UnsupportedVersion { key, version }),
    }
}

/// The v0-layout UNSUPPORTED_VERSION answer to an ApiVersions request we cannot read.
pub fn unsupported_api_versions_frame(correlation_id: i32) -> BytesMut {
    let body = ResponseKind::ApiVersions(api_versions_response(KafkaCode::UnsupportedVersion));
    encode_response(ApiKey::ApiVersions, 0, correlation_id, &body)
        .expect("v0 ApiVersions always encodes")
}

fn refuse_decodable(
    frame: Bytes,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
) -> Result<Option<BytesMut>, DecodeError> {
    let malformed = |reason: String| DecodeError::Malformed {
        key,
        version,
        reason,
    };
    let request = super::codec::decode_body(frame, key, version)?;
    if let RequestKind::Produce(p) = &request.body {
        if p.acks == 0 {
            return Ok(None);
        }
    }
    let body =
        error_response(request.body).ok_or(DecodeError::UnsupportedVersion { key, version })?;
    encode_response(key, version, correlation_id, &body)
        .map(Some)
        .map_err(|e| malformed(format!("encoding the refusal: {e}")))
}

/// An answer to `body` carrying UNSUPPORTED_VERSION for everything it names, for the APIs
/// whose answer has a place for an error.
fn error_response(body: RequestKind) -> Option<ResponseKind> {
    Some(match body {
        RequestKind::Produce(r) => ResponseKind::Produce(produce_refusal(r)),
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch_refusal(r)),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets_refusal(r)),
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch_refusal(r))
        }
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(offset_commit_refusal(r)),
        RequestKind::OffsetFetch(_) => {
            ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_error_code(UNSUPPORTED))
        }
        RequestKind::JoinGroup(_) => {
            ResponseKind::JoinGroup(JoinGroupResponse::default().with_error_code(UNSUPPORTED))
        }
        RequestKind::SyncGroup(_) => {
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(UNSUPPORTED))
        }
        RequestKind::Heartbeat(_) => {
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(UNSUPPORTED))
        }
        RequestKind::LeaveGroup(_) => {
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(UNSUPPORTED))
        }
        RequestKind::ListGroups(_) => {
            ResponseKind::ListGroups(ListGroupsResponse::default().with_error_code(UNSUPPORTED))
        }
        RequestKind::InitProducerId(_) => ResponseKind::InitProducerId(
            InitProducerIdResponse::default()
                .with_error_code(UNSUPPORTED)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        _ => return None,
    })
}

fn produce_refusal(r: ProduceRequest) -> ProduceResponse {
    let responses = r
        .topic_data
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_data
                .iter()
                .map(|p| {
                    PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_error_code(UNSUPPORTED)
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1)
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_partition_responses(partitions)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

fn fetch_refusal(r: FetchRequest) -> FetchResponse {
    let responses = r
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    PartitionData::default()
                        .with_partition_index(p.partition)
                        .with_error_code(UNSUPPORTED)
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(-1)
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(t.topic)
                .with_topic_id(t.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    FetchResponse::default()
        .with_error_code(UNSUPPORTED)
        .with_responses(responses)
}

fn list_offsets_refusal(r: ListOffsetsRequest) -> ListOffsetsResponse {
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(UNSUPPORTED)
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

fn offset_for_leader_epoch_refusal(r: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    use kafka_protocol::messages::offset_for_leader_epoch_response::{
        EpochEndOffset, OffsetForLeaderTopicResult,
    };
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_error_code(UNSUPPORTED)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

fn offset_commit_refusal(r: OffsetCommitRequest) -> OffsetCommitResponse {
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(UNSUPPORTED)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// The topic and partition lists of a request older than the crate can read.
#[derive(Debug)]
struct OldRequest {
    correlation_id: i32,
    version: i16,
    /// Produce only: acks=0 requests get no answer.
    acks: i16,
    topics: Vec<(Bytes, Vec<i32>)>,
}

/// Produce v0–v2: acks, timeout, then topics of (partition, message set).
fn read_old_produce(frame: Bytes, version: i16) -> Result<OldRequest, DecodeError> {
    let mut r = OldReader::after_header(frame, ApiKey::Produce, version)?;
    let acks = r.i16("acks")?;
    r.i32("timeout")?;
    let topics = r.topics(|r| {
        let len = r.i32("records")?;
        r.skip(len.max(0) as usize, "records")
    })?;
    Ok(OldRequest {
        correlation_id: r.correlation_id,
        version,
        acks,
        topics,
    })
}

/// Fetch v0–v3: replica id, max wait, min bytes, (v3) max bytes, then topics of
/// (partition, fetch offset, partition max bytes).
fn read_old_fetch(frame: Bytes, version: i16) -> Result<OldRequest, DecodeError> {
    let mut r = OldReader::after_header(frame, ApiKey::Fetch, version)?;
    r.i32("replica id")?;
    r.i32("max wait")?;
    r.i32("min bytes")?;
    if version >= 3 {
        r.i32("max bytes")?;
    }
    let topics = r.topics(|r| r.skip(8 + 4, "fetch offset"))?;
    Ok(OldRequest {
        correlation_id: r.correlation_id,
        version,
        acks: -1,
        topics,
    })
}

/// Produce v0–v2 answer: per partition UNSUPPORTED_VERSION, base offset -1, (v2) log append
/// time -1, then (v1+) throttle time.
fn old_produce_frame(req: &OldRequest) -> BytesMut {
    let mut out = frame_start(req.correlation_id);
    put_topics(&mut out, &req.topics, |out| {
        out.put_i16(UNSUPPORTED);
        out.put_i64(-1);
        if req.version >= 2 {
            out.put_i64(-1);
        }
    });
    if req.version >= 1 {
        out.put_i32(0);
    }
    frame_end(out)
}

/// Fetch v0–v3 answer: (v1+) throttle time, then per partition UNSUPPORTED_VERSION, high
/// watermark -1 and an empty record set.
fn old_fetch_frame(req: &OldRequest) -> BytesMut {
    let mut out = frame_start(req.correlation_id);
    if req.version >= 1 {
        out.put_i32(0);
    }
    put_topics(&mut out, &req.topics, |out| {
        out.put_i16(UNSUPPORTED);
        out.put_i64(-1);
        out.put_i32(0);
    });
    frame_end(out)
}

fn frame_start(correlation_id: i32) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_u32(0);
    out.put_i32(correlation_id);
    out
}

fn frame_end(mut out: BytesMut) -> BytesMut {
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

fn put_topics(
    out: &mut BytesMut,
    topics: &[(Bytes, Vec<i32>)],
    partition_tail: impl Fn(&mut BytesMut),
) {
    out.put_i32(topics.len() as i32);
    for (name, partitions) in topics {
        out.put_i16(name.len() as i16);
        out.extend_from_slice(name);
        out.put_i32(partitions.len() as i32);
        for &p in partitions {
            out.put_i32(p);
            partition_tail(out);
        }
    }
}

/// Reads the fixed-width fields of a pre-flexible request, every read bounds-checked.
struct OldReader {
    b: Bytes,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
}

impl OldReader {
    /// Skips the v1 request header (key, version, correlation id, client id).
    fn after_header(frame: Bytes, key: ApiKey, version: i16) -> Result<Self, DecodeError> {
        let mut r = OldReader {
            b: frame,
            key,
            version,
            correlation_id: 0,
        };
        r.i16("api key")?;
        r.i16("api version")?;
        r.correlation_id = r.i32("correlation id")?;
        let client_id_len = r.i16("client id")?;
        r.skip(client_id_len.max(0) as usize, "client id")?;
        Ok(r)
    }

    fn truncated(&self, what: &str) -> DecodeError {
        DecodeError::Malformed {
            key: self.key,
            version: self.version,
            reason: format!("truncated at {what}"),
        }
    }

    fn i16(&mut self, what: &str) -> Result<i16, DecodeError> {
        if self.b.remaining() < 2 {
            return Err(self.truncated(what));
        }
        Ok(self.b.get_i16())
    }

    fn i32(&mut self, what: &str) -> Result<i32, DecodeError> {
        if self.b.remaining() < 4 {
            return Err(self.truncated(what));
        }
        Ok(self.b.get_i32())
    }

    fn skip(&mut self, n: usize, what: &str) -> Result<(), DecodeError> {
        if self.b.remaining() < n {
            return Err(self.truncated(what));
        }
        self.b.advance(n);
        Ok(())
    }

    /// A topics array: (name, [partition, per-partition fields read by `partition_tail`]).
    /// Counts are bounded by the bytes left, so a hostile count allocates nothing up front.
    fn topics(
        &mut self,
        partition_tail: impl Fn(&mut Self) -> Result<(), DecodeError>,
    ) -> Result<Vec<(Bytes, Vec<i32>)>, DecodeError> {
        let n_topics = self.i32("topics")?;
        let mut topics = Vec::new();
        for _ in 0..n_topics.max(0) {
            let name_len = self.i16("topic name")?.max(0) as usize;
            if self.b.remaining() < name_len {
                return Err(self.truncated("topic name"));
            }
            let name = self.b.split_to(name_len);
            let n_parts = self.i32("partitions")?;
            let mut parts = Vec::new();
            for _ in 0..n_parts.max(0) {
                parts.push(self.i32("partition")?);
                partition_tail(self)?;
            }
            topics.push((name, parts));
        }
        Ok(topics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Decodable;

    fn header(key: i16, version: i16, correlation: i32) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_i16(key);
        b.put_i16(version);
        b.put_i32(correlation);
        b.put_i16(6);
        b.put_slice(b"sarama");
        b
    }

    fn be_i16(b: &[u8]) -> i16 {
        i16::from_be_bytes([b[0], b[1]])
    }

    fn be_i32(b: &[u8]) -> i32 {
        i32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    #[test]
    fn fetch_v3_is_answered_with_unsupported_version_per_partition() {
        let mut f = header(1, 3, 42);
        f.put_i32(-1); // replica id
        f.put_i32(500); // max wait
        f.put_i32(1); // min bytes
        f.put_i32(1 << 20); // max bytes (v3)
        f.put_i32(1);
        f.put_i16(5);
        f.put_slice(b"trips");
        f.put_i32(1);
        f.put_i32(2); // partition
        f.put_i64(17); // fetch offset
        f.put_i32(1 << 20);
        let out = refuse(f.freeze(), ApiKey::Fetch, 3).unwrap().unwrap();
        assert_eq!(be_i32(&out[..4]) as usize, out.len() - 4, "length prefix");
        assert_eq!(be_i32(&out[4..]), 42, "correlation id");
        assert_eq!(be_i32(&out[8..]), 0, "throttle time");
        assert_eq!(be_i32(&out[12..]), 1, "one topic");
        assert_eq!(be_i16(&out[16..]), 5);
        assert_eq!(&out[18..23], b"trips");
        assert_eq!(be_i32(&out[23..]), 1, "one partition");
        assert_eq!(be_i32(&out[27..]), 2, "partition index");
        assert_eq!(be_i16(&out[31..]), 35, "UNSUPPORTED_VERSION");
        assert_eq!(
            out.len(),
            31 + 2 + 8 + 4,
            "hw and an empty record set end it"
        );
    }

    #[test]
    fn fetch_v0_answer_has_no_throttle_time() {
        let mut f = header(1, 0, 7);
        f.put_i32(-1);
        f.put_i32(100);
        f.put_i32(1);
        f.put_i32(0); // no topics
        let out = refuse(f.freeze(), ApiKey::Fetch, 0).unwrap().unwrap();
        assert_eq!(&out[..], &[0, 0, 0, 8, 0, 0, 0, 7, 0, 0, 0, 0]);
    }

    #[test]
    fn produce_v2_with_acks_is_refused_per_partition_and_acks_zero_is_silent() {
        let build = |acks: i16| {
            let mut f = header(0, 2, 5);
            f.put_i16(acks);
            f.put_i32(1000);
            f.put_i32(1);
            f.put_i16(1);
            f.put_slice(b"t");
            f.put_i32(2);
            for p in [0, 1] {
                f.put_i32(p);
                f.put_i32(3);
                f.put_slice(b"abc");
            }
            f.freeze()
        };
        let out = refuse(build(1), ApiKey::Produce, 2).unwrap().unwrap();
        assert_eq!(be_i32(&out[..4]) as usize, out.len() - 4);
        // correlation, 1 topic "t", 2 partitions, each: index, error, offset, append time
        assert_eq!(out.len(), 4 + 4 + 4 + 3 + 4 + 2 * (4 + 2 + 8 + 8) + 4);
        assert_eq!(be_i16(&out[23..]), 35);
        assert!(refuse(build(0), ApiKey::Produce, 2).unwrap().is_none());
    }

    #[test]
    fn truncated_old_fetch_is_malformed() {
        let mut f = header(1, 2, 1);
        f.put_i32(-1);
        f.put_i32(1);
        assert!(matches!(
            refuse(f.freeze(), ApiKey::Fetch, 2),
            Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn fetch_v13_decoded_by_the_crate_gets_an_error_answer_at_v13() {
        use kafka_protocol::protocol::Encodable;
        let mut req = FetchRequest::default().with_max_wait_ms(10);
        req.topics = vec![
            kafka_protocol::messages::fetch_request::FetchTopic::default()
                .with_topic_id(uuid::Uuid::from_u128(9))
                .with_partitions(vec![
                    kafka_protocol::messages::fetch_request::FetchPartition::default()
                        .with_partition(4),
                ]),
        ];
        let mut f = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(1)
            .with_request_api_version(13)
            .with_correlation_id(77)
            .encode(&mut f, ApiKey::Fetch.request_header_version(13))
            .unwrap();
        req.encode(&mut f, 13).unwrap();
        let out = refuse(f.freeze(), ApiKey::Fetch, 13).unwrap().unwrap();
        let mut body = Bytes::copy_from_slice(&out[4..]);
        let h =
            ResponseHeader::decode(&mut body, ApiKey::Fetch.response_header_version(13)).unwrap();
        assert_eq!(h.correlation_id, 77);
        let resp = FetchResponse::decode(&mut body, 13).unwrap();
        assert_eq!(resp.error_code, 35);
        assert_eq!(resp.responses[0].topic_id, uuid::Uuid::from_u128(9));
        assert_eq!(resp.responses[0].partitions[0].partition_index, 4);
        assert_eq!(resp.responses[0].partitions[0].error_code, 35);
    }

    proptest::proptest! {
        /// Arbitrary bytes after the header of an unserved version give an answer or an
        /// error, never a panic, whatever counts and lengths they claim.
        #[test]
        fn refusing_arbitrary_frames_never_panics(
            (key, version) in proptest::sample::select(vec![
                (ApiKey::Fetch, 0i16), (ApiKey::Fetch, 3), (ApiKey::Fetch, 15),
                (ApiKey::Produce, 0), (ApiKey::Produce, 2), (ApiKey::Produce, 13),
                (ApiKey::OffsetCommit, 9), (ApiKey::ListOffsets, 10),
                (ApiKey::OffsetForLeaderEpoch, 2),
            ]),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let mut f = header(key as i16, version, 3);
            f.extend_from_slice(&body);
            let _ = refuse(f.freeze(), key, version);
        }
    }
}
