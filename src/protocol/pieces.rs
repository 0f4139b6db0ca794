//! A response as the pieces written to the socket in order: encoded bytes, and the record
//! sets of a Fetch answer passed through by reference. Encoding a Fetch response into one
//! buffer would copy every record byte once more (from the tail cache or a disk read into
//! the frame); here the encoder's output goes to a `Sink` that keeps each large record set
//! as its own `Bytes` piece, so the connection hands the socket the broker's own buffers
//! (one vectored send) and record bytes are never copied on the way out.
//!
//! The encoder (kafka-protocol) writes a `Bytes` field with one `put_slice` of exactly its
//! bytes: the sink recognises a registered record set by its address and length. A record
//! set held in several pieces (a stored batch is its header and the producer's bytes) stands
//! in the response as a placeholder: a slice of never-read memory of the same length, whose
//! address the sink swaps for the pieces.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use crate::base::Records;
use crate::runtime::{HookedBytesMut, PutSliceHook};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

/// Record sets smaller than this are copied: a piece of its own costs an iovec and, for
/// small ones, more than the copy.
pub const BY_REFERENCE_MIN: usize = 8 * 1024;

/// An encoded response frame (its 4-byte length first), in pieces.
#[derive(Debug, Clone, Default)]
pub struct ResponseFrame(Records);

impl ResponseFrame {
    pub fn pieces(&self) -> &[Bytes] {
        self.0.pieces()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The whole frame in one buffer (copies when in several pieces).
    pub fn to_bytes(&self) -> Bytes {
        self.0.to_bytes()
    }
}

impl From<BytesMut> for ResponseFrame {
    fn from(frame: BytesMut) -> Self {
        Self(Records::from(frame.freeze()))
    }
}

/// A Fetch response whose partitions' records are beside it, one `Records` per partition
/// in response order (their `records` fields are filled in when it is encoded).
#[derive(Debug, Default)]
pub struct FetchAnswer {
    pub response: FetchResponse,
    pub records: Vec<Records>,
}

/// A handler's answer.
#[derive(Debug)]
pub enum Answer {
    Kind(ResponseKind),
    Fetch(FetchAnswer),
}

impl From<ResponseKind> for Answer {
    fn from(kind: ResponseKind) -> Self {
        Answer::Kind(kind)
    }
}

impl From<FetchAnswer> for Answer {
    fn from(fetch: FetchAnswer) -> Self {
        Answer::Fetch(fetch)
    }
}

/// Placeholder memory per shard: record sets in several pieces of up to this many bytes in
/// total per response stand in by reference; past it they are joined (copied).
const PLACEHOLDER_BYTES: usize = 64 << 20;

thread_local! {
    /// Zeroed by the allocator's fresh mapping and never read or written, so never resident.
    static PLACEHOLDER: Bytes = Bytes::from(vec![0u8; PLACEHOLDER_BYTES]);
}

/// Encodes header and body after a 4-byte length; record sets of a Fetch answer of at least
/// `BY_REFERENCE_MIN` bytes are passed by reference.
pub fn encode(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    answer: Answer,
) -> anyhow::Result<ResponseFrame> {
    let fetch = match answer {
        Answer::Kind(ResponseKind::Fetch(response)) => FetchAnswer {
            records: response
                .responses
                .iter()
                .flat_map(|t| t.partitions.iter())
                .map(|p| p.records.clone().map(Records::from).unwrap_or_default())
                .collect(),
            response,
        },
        Answer::Kind(body) => {
            return Ok(super::codec::encode_response(key, version, correlation_id, &body)?.into())
        }
        Answer::Fetch(fetch) => fetch,
    };
    let (response, by_reference) = fill_records(fetch);
    let mut sink = sink(by_reference);
    sink.put_u32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header.encode(&mut sink, key.response_header_version(version))?;
    response.encode(&mut sink, version)?;
    let (passed, expected) = (sink.hook.passed, sink.hook.by_reference.len());
    if passed != expected {
        anyhow::bail!("{passed} of {expected} record sets were written by reference");
    }
    Ok(finish(sink))
}

/// Puts each partition's records (or a placeholder for them) in the response; returns it
/// with the record sets the sink passes by reference.
fn fill_records(fetch: FetchAnswer) -> (FetchResponse, Vec<(Bytes, Records)>) {
    let FetchAnswer {
        mut response,
        records,
    } = fetch;
    let mut by_reference = Vec::new();
    let mut placeholder_used = 0usize;
    let mut sets = records.into_iter();
    for p in response
        .responses
        .iter_mut()
        .flat_map(|t| t.partitions.iter_mut())
    {
        let set = sets.next().unwrap_or_default();
        let stand_in = match set.pieces() {
            _ if set.len() < BY_REFERENCE_MIN => set.to_bytes(),
            [one] => {
                by_reference.push((one.clone(), set.clone()));
                one.clone()
            }
            _ if placeholder_used + set.len() <= PLACEHOLDER_BYTES => {
                let at = placeholder_used;
                placeholder_used += set.len();
                let stand_in = PLACEHOLDER.with(|ph| ph.slice(at..at + set.len()));
                by_reference.push((stand_in.clone(), set));
                stand_in
            }
            _ => set.to_bytes(),
        };
        p.records = Some(stand_in);
    }
    (response, by_reference)
}

/// Encoded bytes (in the writer's `buf`) with record sets as pieces of their own.
type Sink = HookedBytesMut<Passed>;

/// The pieces before the writer's buffer, and the record sets to pass by reference.
struct Passed {
    done: Vec<Bytes>,
    done_len: usize,
    /// What the encoder writes (the records field's value) and the pieces that go instead.
    by_reference: Vec<(Bytes, Records)>,
    /// How many of `by_reference` were written as pieces.
    passed: usize,
}

fn sink(by_reference: Vec<(Bytes, Records)>) -> Sink {
    HookedBytesMut {
        buf: BytesMut::with_capacity(256),
        hook: Passed {
            done: Vec::new(),
            done_len: 0,
            by_reference,
            passed: 0,
        },
    }
}

impl PutSliceHook for Passed {
    fn put_slice(&mut self, buf: &mut BytesMut, src: &[u8]) -> bool {
        let Some(set) = self.registered(src) else {
            return false;
        };
        self.passed += 1;
        if !buf.is_empty() {
            let encoded = buf.split().freeze();
            self.done_len += encoded.len();
            self.done.push(encoded);
        }
        for piece in set.pieces() {
            self.done_len += piece.len();
            self.done.push(piece.clone());
        }
        true
    }
}

impl Passed {
    fn registered(&self, src: &[u8]) -> Option<Records> {
        if src.len() < BY_REFERENCE_MIN {
            return None;
        }
        self.by_reference
            .iter()
            .find(|(b, _)| b.as_ptr() == src.as_ptr() && b.len() == src.len())
            .map(|(_, set)| set.clone())
    }
}

/// Joins every piece back into the buffer: only if the encoder revisits bytes already
/// passed on (it does not for response bodies; kept correct regardless).
fn flatten(sink: &mut Sink) {
    let p = &mut sink.hook;
    let mut all = BytesMut::with_capacity(p.done_len + sink.buf.len());
    for piece in p.done.drain(..) {
        all.extend_from_slice(&piece);
    }
    all.extend_from_slice(&sink.buf);
    sink.buf = all;
    p.done_len = 0;
}

/// The frame, with its length written into the first 4 bytes.
fn finish(sink: Sink) -> ResponseFrame {
    let HookedBytesMut { mut buf, hook } = sink;
    let Passed {
        mut done, done_len, ..
    } = hook;
    let body_len = ((done_len + buf.len() - 4) as u32).to_be_bytes();
    match done.first_mut() {
        Some(first) => {
            let mut head = BytesMut::from(&first[..]);
            head[..4].copy_from_slice(&body_len);
            *first = head.freeze();
        }
        None => buf[..4].copy_from_slice(&body_len),
    }
    let mut frame = Records::new();
    for piece in done {
        frame.push(piece);
    }
    frame.push(buf.freeze());
    ResponseFrame(frame)
}

impl ByteBufMut for Sink {
    fn offset(&self) -> usize {
        self.hook.done_len + self.buf.len()
    }

    fn seek(&mut self, offset: usize) {
        if offset < self.hook.done_len {
            flatten(self);
        }
        let base = self.hook.done_len;
        self.buf.resize(offset - base, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        if r.start < self.hook.done_len {
            flatten(self);
        }
        let base = self.hook.done_len;
        &mut self.buf[r.start - base..r.end - base]
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
            let whole =
                crate::protocol::codec::encode_response(ApiKey::Fetch, version, 7, &body).unwrap();
            let frame = encode(ApiKey::Fetch, version, 7, body.clone().into()).unwrap();
            assert_eq!(frame.len(), whole.len());
            assert_eq!(&frame.to_bytes()[..], &whole[..], "v{version}");
            let referenced: Vec<_> = frame
                .pieces()
                .iter()
                .filter(|p| p.as_ptr() == big.as_ptr() || p.as_ptr() == other.as_ptr())
                .collect();
            assert_eq!(
                referenced.len(),
                2,
                "v{version}: records passed by reference"
            );
        }
    }

    #[test]
    fn other_answers_are_one_piece() {
        let body = fetch_answer(&[Bytes::from(vec![1u8; 10])]);
        let frame = encode(ApiKey::Fetch, 12, 1, body.clone().into()).unwrap();
        assert_eq!(frame.pieces().len(), 1);
        let whole = crate::protocol::codec::encode_response(ApiKey::Fetch, 12, 1, &body).unwrap();
        assert_eq!(&frame.to_bytes()[..], &whole[..]);
    }

    #[test]
    fn records_in_pieces_go_out_as_those_pieces() {
        let head = Bytes::from(vec![1u8; 61]);
        let body = Bytes::from(vec![2u8; 2 * BY_REFERENCE_MIN]);
        let mut set = Records::from(head.clone());
        set.push(body.clone());
        let small = Records::from(Bytes::from(vec![3u8; 50]));
        let joined = fetch_answer(&[set.to_bytes(), small.to_bytes()]);
        let ResponseKind::Fetch(mut response) = joined.clone() else {
            unreachable!()
        };
        for p in response
            .responses
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
        {
            p.records = None;
        }
        let answer = FetchAnswer {
            response,
            records: vec![set, small],
        };
        for version in [4i16, 12] {
            let whole = crate::protocol::codec::encode_response(ApiKey::Fetch, version, 3, &joined)
                .unwrap();
            let frame = encode(
                ApiKey::Fetch,
                version,
                3,
                Answer::Fetch(FetchAnswer {
                    response: answer.response.clone(),
                    records: answer.records.clone(),
                }),
            )
            .unwrap();
            assert_eq!(&frame.to_bytes()[..], &whole[..], "v{version}");
            assert!(frame.pieces().iter().any(|p| p.as_ptr() == head.as_ptr()));
            assert!(frame.pieces().iter().any(|p| p.as_ptr() == body.as_ptr()));
        }
    }
}
