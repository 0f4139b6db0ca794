//! Building a RecordBatch v2 as a producer sends it: records are encoded one by one straight
//! into the batch buffer (so its size is known exactly, for `batch.size`), then the header is
//! filled in and, for a compressed batch, the records section is compressed with the
//! `kafka-protocol` crate's codecs. Duplicate header keys are kept, as Kafka allows.
//!
//! Record layout (varints are zigzag): length varint, attributes i8 (0), timestampDelta
//! varlong, offsetDelta varint, keyLength varint (-1 = null), key, valueLength varint, value,
//! headerCount varint, then per header keyLength varint, key, valueLength varint, value.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
use zerocopy::FromBytes;

use super::config::Compression;
use super::error::ClientError;
use crate::protocol::batch::{BatchHeader, HEADER_LEN, LOG_OVERHEAD};

/// First byte the batch CRC covers (`attributes`), as the RecordBatch v2 layout places it.
const CRC_START: usize = 21;
const MAGIC_V2: i8 = 2;

/// One record header: a string key and an optional value.
pub type RecordHeader = (String, Option<Bytes>);

/// A batch being filled. The buffer starts with room for the 61-byte header.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl BatchBuilder {
    pub fn with_capacity(records_bytes: usize) -> Self {
        let mut buf = BytesMut::with_capacity(HEADER_LEN + records_bytes);
        buf.resize(HEADER_LEN, 0);
        Self {
            buf,
            count: 0,
            base_timestamp: 0,
            max_timestamp: 0,
        }
    }

    pub fn record_count(&self) -> i32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Uncompressed size of the batch so far, header included.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Bytes a record would add to this batch (an upper bound for the deltas' varints).
    pub fn record_size(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
    ) -> usize {
        let body = body_size(i64::MAX / 4, i32::MAX, key, value, headers);
        varint_size(body as i64) + body
    }

    /// Appends a record; its offset delta is its position in the batch.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
    ) {
        if self.count == 0 {
            self.base_timestamp = timestamp;
            self.max_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let ts_delta = timestamp - self.base_timestamp;
        let offset_delta = self.count;
        let body = body_size(ts_delta, offset_delta, key, value, headers);
        let b = &mut self.buf;
        b.reserve(varint_size(body as i64) + body);
        put_varint(b, body as i64);
        b.put_i8(0);
        put_varint(b, ts_delta);
        put_varint(b, i64::from(offset_delta));
        put_bytes(b, key);
        put_bytes(b, value);
        put_varint(b, headers.len() as i64);
        for (k, v) in headers {
            put_bytes(b, Some(k.as_bytes()));
            put_bytes(b, v.as_deref());
        }
        self.count += 1;
    }

    /// The finished batch: header filled in, records compressed if asked, CRC set.
    pub fn build(
        self,
        compression: Compression,
        stamp: Option<ProducerStamp>,
    ) -> Result<Bytes, ClientError> {
        let (count, base_ts, max_ts) = (self.count, self.base_timestamp, self.max_timestamp);
        let mut out = match compression {
            Compression::None => self.buf,
            codec => compress(&self.buf[HEADER_LEN..], codec)?,
        };
        let total = out.len();
        let length = i32::try_from(total - LOG_OVERHEAD).map_err(|_| {
            ClientError::Config(format!("a batch of {total} bytes is too large to send"))
        })?;
        {
            let (h, _) =
                BatchHeader::mut_from_prefix(&mut out[..]).map_err(|_| internal("batch header"))?;
            h.base_offset.set(0);
            h.batch_length.set(length);
            h.partition_leader_epoch.set(-1);
            h.magic = MAGIC_V2;
            let transactional = stamp.is_some_and(|s| s.transactional);
            h.attributes
                .set(compression as i16 | if transactional { TRANSACTIONAL_BIT } else { 0 });
            h.last_offset_delta.set((count - 1).max(0));
            h.base_timestamp.set(base_ts);
            h.max_timestamp.set(max_ts);
            let (id, epoch, seq) = stamp.map_or((-1, -1, -1), |s| {
                (s.producer_id, s.producer_epoch, s.base_sequence)
            });
            h.producer_id.set(id);
            h.producer_epoch.set(epoch);
            h.base_sequence.set(seq);
            h.record_count.set(count);
        }
        let crc = crc32c::crc32c(&out[CRC_START..]);
        let (h, _) =
            BatchHeader::mut_from_prefix(&mut out[..]).map_err(|_| internal("batch header"))?;
        h.crc.set(crc);
        Ok(out.freeze())
    }
}

/// The attributes bit of a batch written inside a transaction.
const TRANSACTIONAL_BIT: i16 = 0x10;

/// Who wrote a batch, for an idempotent or transactional producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStamp {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
}

fn internal(what: &str) -> ClientError {
    ClientError::Config(format!("internal error building the {what}"))
}

/// A buffer with room for the header, then `records` compressed with `codec`.
fn compress(records: &[u8], codec: Compression) -> Result<BytesMut, ClientError> {
    let mut out = BytesMut::with_capacity(HEADER_LEN + records.len() / 2 + 64);
    out.resize(HEADER_LEN, 0);
    let fill = |tmp: &mut BytesMut| {
        tmp.extend_from_slice(records);
        Ok(())
    };
    let done = match codec {
        Compression::None => fill(&mut out),
        Compression::Gzip => Gzip::compress(&mut out, fill),
        Compression::Snappy => Snappy::compress(&mut out, fill),
        Compression::Lz4 => Lz4::compress(&mut out, fill),
        Compression::Zstd => Zstd::compress(&mut out, fill),
    };
    done.map_err(|e| ClientError::Config(format!("{codec:?} compression failed: {e}")))?;
    Ok(out)
}

fn body_size(
    ts_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[RecordHeader],
) -> usize {
    let mut n = 1 + varint_size(ts_delta) + varint_size(i64::from(offset_delta));
    n += bytes_size(key) + bytes_size(value);
    n += varint_size(headers.len() as i64);
    for (k, v) in headers {
        n += bytes_size(Some(k.as_bytes())) + bytes_size(v.as_deref());
    }
    n
}

fn bytes_size(b: Option<&[u8]>) -> usize {
    match b {
        None => 1,
        Some(b) => varint_size(b.len() as i64) + b.len(),
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Bytes of a zigzag varint (Kafka's varint and varlong encode the same way).
pub fn varint_size(v: i64) -> usize {
    let z = zigzag(v);
    (64 - (z | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut BytesMut, v: i64) {
    let mut z = zigzag(v);
    while z >= 0x80 {
        out.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

fn put_bytes(out: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.put_slice(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{Compression as KCompression, RecordBatchDecoder};

    fn sample() -> BatchBuilder {
        let mut b = BatchBuilder::default();
        b.push(
            1_000,
            Some(b"k1"),
            Some(b"v1"),
            &[("h".into(), Some(Bytes::from_static(b"x")))],
        );
        b.push(999, None, Some(b"value without key"), &[]);
        b.push(1_500, Some(b""), None, &[("n".into(), None)]);
        b
    }

    #[test]
    fn varint_sizes_match_encoding() {
        for v in [
            0i64,
            1,
            -1,
            63,
            64,
            -65,
            300,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let mut b = BytesMut::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_size(v), "{v}");
        }
    }

    #[test]
    fn every_codec_round_trips_through_the_kafka_protocol_decoder() {
        for (codec, want) in [
            (Compression::None, KCompression::None),
            (Compression::Gzip, KCompression::Gzip),
            (Compression::Snappy, KCompression::Snappy),
            (Compression::Lz4, KCompression::Lz4),
            (Compression::Zstd, KCompression::Zstd),
        ] {
            let bytes = sample().build(codec, None).unwrap();
            crate::protocol::batch::validate(&bytes).unwrap();
            let mut buf = bytes.clone();
            let set = RecordBatchDecoder::decode(&mut buf).unwrap();
            assert_eq!(set.compression, want);
            let r = &set.records;
            assert_eq!(r.len(), 3, "{codec:?}");
            assert_eq!(
                r.iter().map(|r| r.offset).collect::<Vec<_>>(),
                vec![0, 1, 2]
            );
            assert_eq!(
                r.iter().map(|r| r.timestamp).collect::<Vec<_>>(),
                vec![1_000, 999, 1_500]
            );
            assert_eq!(r[0].key.as_deref(), Some(&b"k1"[..]));
            assert_eq!(r[0].value.as_deref(), Some(&b"v1"[..]));
            assert_eq!(
                r[0].headers.get(&b"h"[..]).cloned().flatten().as_deref(),
                Some(&b"x"[..])
            );
            assert_eq!(r[1].key, None);
            assert_eq!(r[2].key.as_deref(), Some(&b""[..]));
            assert_eq!(r[2].value, None);
            assert_eq!(r[2].headers.get(&b"n"[..]), Some(&None));
        }
    }

    #[test]
    fn header_fields_are_those_of_a_non_idempotent_producer() {
        let bytes = sample().build(Compression::Lz4, None).unwrap();
        let (h, len) = crate::protocol::batch::validate(&bytes).unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(h.record_count.get(), 3);
        assert_eq!(h.last_offset_delta.get(), 2);
        assert_eq!(h.base_timestamp.get(), 1_000);
        assert_eq!(h.max_timestamp.get(), 1_500);
        assert_eq!(h.producer_id.get(), -1);
        assert_eq!(h.compression(), 3);
    }

    #[test]
    fn size_grows_by_the_predicted_record_size_at_most() {
        let mut b = BatchBuilder::default();
        let before = b.size();
        let headers = vec![("a".to_owned(), Some(Bytes::from_static(b"b")))];
        let predicted = BatchBuilder::record_size(Some(b"key"), Some(&[7u8; 300]), &headers);
        b.push(5, Some(b"key"), Some(&[7u8; 300]), &headers);
        assert!(b.size() - before <= predicted);
        assert!(
            b.size() - before + 16 >= predicted,
            "the bound is loose by the deltas' varints only"
        );
    }
}
