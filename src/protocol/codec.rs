//! Request decoding and response encoding. A frame becomes a [`Decoded`] value: a request the
//! broker serves, one it refuses with UNSUPPORTED_VERSION in a layout the client can read
//! ([`refusal`]), or an error that closes the connection. Responses come back as whole frames.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::refusal;
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
    /// A known API at a version the broker does not serve, answered with UNSUPPORTED_VERSION
    /// in that version's layout ([`refusal`]); `None` for a produce with acks=0, which Kafka
    /// never answers.
    Refused(Option<BytesMut>),
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
    let key = ApiKey::try_from(raw_key).map_err(|_| DecodeError::UnknownApiKey(raw_key))?;
    let served = versions::is_supported(key, version);
    if !served || (key == ApiKey::Produce && version < PRODUCE_MIN_DECODABLE) {
        return refusal::refuse(frame, key, version).map(Decoded::Refused);
    }
    decode_body(frame, key, version).map(|r| Decoded::Request(Box::new(r)))
}

/// Decodes header and body of a request the crate can read at `version`.
pub(super) fn decode_body(frame: Bytes, key: ApiKey, version: i16) -> Result<Request, DecodeError> {
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
    Ok(Request {
        header,
        api_key: key,
        body,
    })
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
    fn unknown_api_key_is_an_error() {
        let f = header_bytes(999, 0, 1);
        assert!(matches!(
            decode(f.freeze()),
            Err(DecodeError::UnknownApiKey(999))
        ));
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
