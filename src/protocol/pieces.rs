//! A response as the pieces written to the socket in order: encoded bytes, and the record
//! sets of a Fetch answer passed through by reference. Encoding a Fetch response into one
//! buffer would copy every record byte once more (from the tail cache or a disk read into
//! the frame); here the encoder's output goes to a `Sink` that keeps each large record set
//! as its own `Bytes` piece, so the connection hands the socket the broker's own buffers
//! (one vectored send) and record bytes are never copied on the way out.
//!
//! The encoder (kafka-protocol) writes a `Bytes` field with one `put_slice` of exactly its
//! bytes: the sink recognises a registered record set by its address and length.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

/// Record sets smaller than this are copied: a piece of its own costs an iovec and, for
/// small ones, more than the copy.
pub const BY_REFERENCE_MIN: usize = 8 * 1024;

/// An encoded response frame (its 4-byte length first), in pieces.
#[derive(Debug, Clone, Default)]
pub struct ResponseFrame {
    pieces: Vec<Bytes>,
    len: usize,
}

impl ResponseFrame {
    pub fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole frame in one buffer (copies when in several pieces).
    pub fn to_bytes(&self) -> Bytes {
        match self.pieces.as_slice() {
            [one] => one.clone(),
            many => {
                let mut out = BytesMut::with_capacity(self.len);
                for p in many {
                    out.extend_from_slice(p);
                }
                out.freeze()
            }
        }
    }
}

impl From<BytesMut> for ResponseFrame {
    fn from(frame: BytesMut) -> Self {
        let len = frame.len();
        Self {
            pieces: vec![frame.freeze()],
            len,
        }
    }
}

/// Encodes header and body after a 4-byte length; record sets of a Fetch body of at least
/// `BY_REFERENCE_MIN` bytes become pieces of their own.
pub fn encode(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> anyhow::Result<ResponseFrame> {
    let ResponseKind::Fetch(fetch) = body else {
        return Ok(super::codec::encode_response(key, version, correlation_id, body)?.into());
    };
    let mut sink = Sink::new(by_reference(fetch));
    sink.put_u32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header.encode(&mut sink, key.response_header_version(version))?;
    fetch.encode(&mut sink, version)?;
    if sink.passed != sink.by_reference.len() {
        anyhow::bail!(
            "{} of {} record sets were not written by reference",
            sink.by_reference.len() - sink.passed,
            sink.by_reference.len()
        );
    }
    Ok(sink.finish())
}

/// The record sets of a Fetch answer worth passing by reference.
fn by_reference(fetch: &FetchResponse) -> Vec<Bytes> {
    fetch
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter_map(|p| p.records.clone())
        .filter(|r| r.len() >= BY_REFERENCE_MIN)
        .collect()
}

/// Collects encoded bytes in `current` and record sets as pieces of their own.
struct Sink {
    done: Vec<Bytes>,
    done_len: usize,
    current: BytesMut,
    by_reference: Vec<Bytes>,
    /// How many of `by_reference` were written as pieces.
    passed: usize,
}

impl Sink {
    fn new(by_reference: Vec<Bytes>) -> Self {
        Self {
            done: Vec::new(),
            done_len: 0,
            current: BytesMut::with_capacity(256),
            by_reference,
            passed: 0,
        }
    }

    fn registered(&self, src: &[u8]) -> Option<Bytes> {
        if src.len() < BY_REFERENCE_MIN {
            return None;
        }
        self.by_reference
            .iter()
            .find(|b| b.as_ptr() == src.as_ptr() && b.len() == src.len())
            .cloned()
    }

    fn push_piece(&mut self, piece: Bytes) {
        if !self.current.is_empty() {
            let encoded = self.current.split().freeze();
            self.done_len += encoded.len();
            self.done.push(encoded);
        }
        self.done_len += piece.len();
        self.done.push(piece);
    }

    /// Joins every piece back into `current`: only if the encoder revisits bytes already
    /// passed on (it does not for response bodies; kept correct regardless).
    fn flatten(&mut self) {
        let mut all = BytesMut::with_capacity(self.done_len + self.current.len());
        for p in self.done.drain(..) {
            all.extend_from_slice(&p);
        }
        all.extend_from_slice(&self.current);
        self.current = all;
        self.done_len = 0;
    }

    /// The frame, with its length written into the first 4 bytes.
    fn finish(mut self) -> ResponseFrame {
        let len = self.done_len + self.current.len();
        let body_len = ((len - 4) as u32).to_be_bytes();
        match self.done.first_mut() {
            Some(first) => {
                let mut head = BytesMut::from(&first[..]);
                head[..4].copy_from_slice(&body_len);
                *first = head.freeze();
            }
            None => self.current[..4].copy_from_slice(&body_len),
        }
        if !self.current.is_empty() {
            self.done.push(self.current.freeze());
        }
        ResponseFrame {
            pieces: self.done,
            len,
        }
    }
}

// SAFETY: every method forwards to `current`, a `BytesMut`, whose own `BufMut` contract holds.
unsafe impl BufMut for Sink {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut`, which is `current`'s.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        match self.registered(src) {
            Some(piece) => {
                self.passed += 1;
                self.push_piece(piece);
            }
            None => self.current.extend_from_slice(src),
        }
    }
}

impl ByteBufMut for Sink {
    fn offset(&self) -> usize {
        self.done_len + self.current.len()
    }

    fn seek(&mut self, offset: usize) {
        if offset < self.done_len {
            self.flatten();
        }
        self.current.resize(offset - self.done_len, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        if r.start < self.done_len {
            self.flatten();
        }
        let base = self.done_len;
        &mut self.current[r.start - base..r.end - base]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    fn fetch_answer(records: &[Bytes]) -> ResponseKind {
        let mut t = FetchableTopicResponse::default();
        t.topic = TopicName(StrBytes::from_static_str("t"));
        for (i, r) in records.iter().enumerate() {
            let mut p = PartitionData::default();
            p.partition_index = i as i32;
            p.high_watermark = 42;
            p.records = Some(r.clone());
            t.partitions.push(p);
        }
        let mut f = FetchResponse::default();
        f.responses.push(t);
        ResponseKind::Fetch(f)
    }

    #[test]
    fn fetch_pieces_equal_the_one_buffer_encoding_and_reference_the_records() {
        let big = Bytes::from(vec![7u8; 3 * BY_REFERENCE_MIN]);
        let small = Bytes::from(vec![9u8; 100]);
        let other = Bytes::from(vec![5u8; BY_REFERENCE_MIN]);
        let body = fetch_answer(&[big.clone(), small, other.clone()]);
        for version in [4i16, 11, 12] {
            let whole = crate::protocol::codec::encode_response(ApiKey::Fetch, version, 7, &body)
                .unwrap();
            let frame = encode(ApiKey::Fetch, version, 7, &body).unwrap();
            assert_eq!(frame.len(), whole.len());
            assert_eq!(&frame.to_bytes()[..], &whole[..], "v{version}");
            let referenced: Vec<_> = frame
                .pieces()
                .iter()
                .filter(|p| p.as_ptr() == big.as_ptr() || p.as_ptr() == other.as_ptr())
                .collect();
            assert_eq!(referenced.len(), 2, "v{version}: records passed by reference");
        }
    }

    #[test]
    fn other_answers_are_one_piece() {
        let body = fetch_answer(&[Bytes::from(vec![1u8; 10])]);
        let frame = encode(ApiKey::Fetch, 12, 1, &body).unwrap();
        assert_eq!(frame.pieces().len(), 1);
        let whole = crate::protocol::codec::encode_response(ApiKey::Fetch, 12, 1, &body).unwrap();
        assert_eq!(&frame.to_bytes()[..], &whole[..]);
    }
}
