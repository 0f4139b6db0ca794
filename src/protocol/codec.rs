//! Request decoding and response encoding. A frame becomes a [`Decoded`] value: a request the
//! broker serves, one it refuses with UNSUPPORTED_VERSION in a layout the client can read, or
//! an error that closes the connection. Responses come back as whole frames.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::versions::{self, PRODUCE_MIN_DECODABLE};
use crate::base::KafkaCode;

/// A request the broker will answer.
#[derive(Debug)]
pub struct Request {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub body: RequestKind,
}

/// What a frame turned out to be.
#[derive(Debug)]
pub enum Decoded {
    Request(Box<Request>),
    /// ApiVersions at a version we do not serve: answer in the v0 layout so the client can
    /// pick a version it shares with us.
    UnsupportedApiVersions {
        correlation_id: i32,
    },
    /// Produce v0–v2: answer every partition with UNSUPPORTED_VERSION.
    ObsoleteProduce(ObsoleteProduce),
}

/// The partitions of a Produce v0–v2 request, kept only to be refused one by one.
#[derive(Debug)]
pub struct ObsoleteProduce {
    pub correlation_id: i32,
    pub version: i16,
    pub acks: i16,
    pub topics: Vec<(Bytes, Vec<i32>)>,
}

/// Why a frame is not a request we can answer; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("{key:?} v{version} is not supported")]
    UnsupportedVersion { key: ApiKey, version: i16 },
    #[error("malformed {key:?} v{version} request: {reason}")]
    Malformed {
        key: ApiKey,
        version: i16,
        reason: String,
    },
}

/// Decodes one request frame (without its length prefix).
pub fn decode(frame: Bytes) -> Result<Decoded, DecodeError> {
    // The frame layer guarantees at least api key, version and correlation id.
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| DecodeError::UnknownApiKey(raw_key))?;
    if !versions::is_supported(key, version) {
        return match key {
            ApiKey::ApiVersions => Ok(Decoded::UnsupportedApiVersions { correlation_id }),
            _ => Err(DecodeError::UnsupportedVersion { key, version }),
        };
    }
    if key == ApiKey::Produce && version < PRODUCE_MIN_DECODABLE {
        return decode_obsolete_produce(frame, version, correlation_id)
            .map(Decoded::ObsoleteProduce);
    }
    let malformed = |reason: String| DecodeError::Malformed {
        key,
        version,
        reason,
    };
    let mut buf = frame;
    // The codec is third-party code fed hostile bytes: a panic in it must not take the
    // connection's shard down.
    let decoded = std::panic::catch_unwind(move || {
        let header = RequestHeader::decode(&mut buf, key.request_header_version(version))?;
        let body = RequestKind::decode(key, &mut buf, version)?;
        anyhow::Ok((header, body))
    })
    .map_err(|_| malformed("decoder panicked".to_owned()))?
    .map_err(|e| malformed(e.to_string()))?;
    let (header, body) = decoded;
    Ok(Decoded::Request(Box::new(Request {
        header,
        api_key: key,
        body,
    })))
}

/// Encodes a response as a whole frame: length, header, body.
pub fn encode_response(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> anyhow::Result<BytesMut> {
    let mut out = BytesMut::with_capacity(64);
    out.put_u32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header.encode(&mut out, key.response_header_version(version))?;
    body.encode(&mut out, version)?;
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// The ApiVersions answer for the served table, at `version` (0 for the fallback layout).
pub fn api_versions_response(error: KafkaCode) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error.code();
    r.api_keys = versions::SUPPORTED
        .iter()
        .map(|a| {
            let mut v = kafka_protocol::messages::api_versions_response::ApiVersion::default();
            v.api_key = a.key as i16;
            v.min_version = a.min;
            v.max_version = a.max;
            v
        })
        .collect();
    r
}

/// The v0-layout UNSUPPORTED_VERSION answer to an ApiVersions request we cannot read.
pub fn unsupported_api_versions_frame(correlation_id: i32) -> BytesMut {
    let body = ResponseKind::ApiVersions(api_versions_response(KafkaCode::UnsupportedVersion));
    encode_response(ApiKey::ApiVersions, 0, correlation_id, &body)
        .expect("v0 ApiVersions always encodes")
}

/// Refuses every partition of a Produce v0–v2 request with UNSUPPORTED_VERSION.
pub fn obsolete_produce_frame(req: &ObsoleteProduce) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_u32(0);
    out.put_i32(req.correlation_id);
    out.put_i32(req.topics.len() as i32);
    for (name, partitions) in &req.topics {
        out.put_i16(name.len() as i16);
        out.extend_from_slice(name);
        out.put_i32(partitions.len() as i32);
        for &p in partitions {
            out.put_i32(p);
            out.put_i16(KafkaCode::UnsupportedVersion.code());
            out.put_i64(-1);
            if req.version >= 2 {
                out.put_i64(-1);
            }
        }
    }
    if req.version >= 1 {
        out.put_i32(0);
    }
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

fn decode_obsolete_produce(
    mut b: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<ObsoleteProduce, DecodeError> {
    let bad = |what: &str| DecodeError::Malformed {
        key: ApiKey::Produce,
        version,
        reason: format!("truncated at {what}"),
    };
    b.advance(8);
    let client_id_len = take_i16(&mut b).ok_or_else(|| bad("client id"))?;
    skip(&mut b, client_id_len.max(0) as usize).ok_or_else(|| bad("client id"))?;
    let acks = take_i16(&mut b).ok_or_else(|| bad("acks"))?;
    take_i32(&mut b).ok_or_else(|| bad("timeout"))?;
    let n_topics = take_i32(&mut b).ok_or_else(|| bad("topics"))?;
    let mut topics = Vec::new();
    for _ in 0..n_topics.max(0) {
        let name_len = take_i16(&mut b).ok_or_else(|| bad("topic name"))?.max(0) as usize;
        if b.remaining() < name_len {
            return Err(bad("topic name"));
        }
        let name = b.split_to(name_len);
        let n_parts = take_i32(&mut b).ok_or_else(|| bad("partitions"))?;
        let mut parts = Vec::new();
        for _ in 0..n_parts.max(0) {
            parts.push(take_i32(&mut b).ok_or_else(|| bad("partition"))?);
            let len = take_i32(&mut b).ok_or_else(|| bad("records"))?;
            skip(&mut b, len.max(0) as usize).ok_or_else(|| bad("records"))?;
        }
        topics.push((name, parts));
    }
    Ok(ObsoleteProduce {
        correlation_id,
        version,
        acks,
        topics,
    })
}

fn take_i16(b: &mut Bytes) -> Option<i16> {
    (b.remaining() >= 2).then(|| b.get_i16())
}

fn take_i32(b: &mut Bytes) -> Option<i32> {
    (b.remaining() >= 4).then(|| b.get_i32())
}

fn skip(b: &mut Bytes, n: usize) -> Option<()> {
    (b.remaining() >= n).then(|| b.advance(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes(key: i16, version: i16, correlation: i32) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_i16(key);
        b.put_i16(version);
        b.put_i32(correlation);
        b.put_i16(-1);
        b
    }

    #[test]
    fn unknown_api_versions_version_gets_v0_fallback() {
        let mut f = header_bytes(18, 127, 9);
        f.put_u8(0);
        match decode(f.freeze()).unwrap() {
            Decoded::UnsupportedApiVersions { correlation_id } => assert_eq!(correlation_id, 9),
            other => panic!("{other:?}"),
        }
        let frame = unsupported_api_versions_frame(9);
        // length, correlation id, error code 35
        assert_eq!(&frame[4..8], &9i32.to_be_bytes());
        assert_eq!(&frame[8..10], &35i16.to_be_bytes());
    }

    #[test]
    fn unknown_api_key_is_an_error() {
        let f = header_bytes(999, 0, 1);
        assert!(matches!(
            decode(f.freeze()),
            Err(DecodeError::UnknownApiKey(999))
        ));
    }

    #[test]
    fn produce_v2_is_parsed_for_refusal() {
        let mut f = header_bytes(0, 2, 5);
        f.put_i16(1); // acks
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
        let Decoded::ObsoleteProduce(p) = decode(f.freeze()).unwrap() else {
            panic!("expected obsolete produce")
        };
        assert_eq!(p.topics[0].1, vec![0, 1]);
        let out = obsolete_produce_frame(&p);
        assert_eq!(
            i32::from_be_bytes(out[..4].try_into().unwrap()) as usize,
            out.len() - 4
        );
    }

    proptest::proptest! {
        /// Arbitrary bytes after a served API's header decode to a request or an error,
        /// never a panic or an abort, whatever lengths and counts they claim.
        #[test]
        fn decoding_arbitrary_frames_never_panics(
            api in proptest::sample::select(versions::SUPPORTED.to_vec()),
            version_offset in 0i16..20,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let version = api.min + version_offset % (api.max - api.min + 1);
            let mut f = header_bytes(api.key as i16, version, 7);
            f.extend_from_slice(&body);
            let _ = decode(f.freeze());
        }
    }

    #[test]
    fn huge_claimed_array_count_is_an_error_not_an_abort() {
        // Metadata v1: topics array claiming i32::MAX entries, then nothing.
        let mut f = header_bytes(3, 1, 5);
        f.put_i32(i32::MAX);
        assert!(matches!(
            decode(f.freeze()),
            Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn truncated_body_is_malformed_not_a_panic() {
        let mut f = header_bytes(3, 1, 5);
        f.put_i32(1000); // topics array claims 1000 entries, none follow
        assert!(matches!(
            decode(f.freeze()),
            Err(DecodeError::Malformed { .. })
        ));
    }
}
