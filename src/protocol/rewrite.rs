//! The records inside a RecordBatch v2, for the two places where the broker rewrites a batch:
//! the cleaner (compaction drops records) and recompression (a topic's `compression.type`
//! differs from the producer's). Sans-io: bytes in, bytes out.
//!
//! A rewritten batch keeps everything that identifies it: `baseOffset`, `lastOffsetDelta`
//! (so a batch whose last records were dropped still ends where it did, as Kafka's cleaner
//! keeps it), every record's offset and timestamp, the producer id, epoch and base sequence,
//! the leader epoch and the transactional and control flags. Only the records kept, the
//! codec, and (for the cleaner's delete horizon, KIP-534) the base timestamp change; the CRC
//! is computed again.
//!
//! Decompression output is bounded: a batch that inflates past [`MAX_INFLATED_BYTES`] is
//! refused rather than allowed to take the shard's memory.

use bytes::{Buf, Bytes};
use kafka_protocol::compression::{self as codecs, Compressor, Decompressor};

use super::batch::{BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use zerocopy::FromBytes;

/// Offset of the first byte the CRC covers (`attributes`).
const CRC_START: usize = 21;
/// Attributes bits of the codec.
const CODEC_MASK: i16 = 0x07;
/// Attributes bit: timestamps are the broker's (LogAppendTime).
const LOG_APPEND_TIME: i16 = 0x08;
/// Attributes bit (KIP-534): `baseTimestamp` holds the batch's delete horizon.
pub const DELETE_HORIZON: i16 = 0x40;
/// Largest uncompressed size of one batch's records the broker will inflate.
pub const MAX_INFLATED_BYTES: usize = 64 << 20;

/// Why records could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    #[error("unknown compression codec {0}")]
    UnknownCodec(u8),
    #[error("{0}")]
    Codec(String),
    #[error("malformed record at byte {0} of the batch's records")]
    Malformed(usize),
    #[error("batch records inflate past {MAX_INFLATED_BYTES} bytes")]
    TooLarge,
}

/// One record of a batch, with its absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// The headers as they were encoded: count, then each header.
    pub headers: Bytes,
}

/// A batch taken apart: its header and its records.
#[derive(Debug, Clone)]
pub struct DecodedBatch {
    pub header: BatchHeader,
    pub records: Vec<Record>,
}

impl DecodedBatch {
    /// Takes apart one whole, validated batch.
    pub fn decode(batch: &[u8]) -> Result<Self, RecordsError> {
        let (header, _) = BatchHeader::read_from_prefix(batch).map_err(|_| malformed(0))?;
        let end = header.total_len().min(batch.len());
        let body = batch.get(HEADER_LEN..end).ok_or(malformed(0))?;
        let plain = decompress(header.compression(), body)?;
        let base_offset = header.base_offset.get();
        let base_timestamp = header.base_timestamp.get();
        let count = header.record_count.get().max(0) as usize;
        let mut cursor = Cursor {
            bytes: plain,
            consumed: 0,
        };
        let mut records = Vec::with_capacity(count.min(plain_len_hint(&cursor)));
        for _ in 0..count {
            records.push(cursor.record(base_offset, base_timestamp)?);
        }
        Ok(Self { header, records })
    }

    /// Whether the batch's timestamps are the broker's.
    pub fn log_append_time(&self) -> bool {
        self.header.attributes.get() & LOG_APPEND_TIME != 0
    }

    /// The delete horizon the cleaner stored in the batch, if any (KIP-534).
    pub fn delete_horizon(&self) -> Option<i64> {
        (self.header.attributes.get() & DELETE_HORIZON != 0)
            .then(|| self.header.base_timestamp.get())
    }
}

/// Whether every record of one whole, validated batch has a key (a compacted topic refuses a
/// batch holding a keyless record). Reads only each record's length and key length: values
/// and headers are skipped, and an uncompressed batch is read in place, not copied.
pub fn every_record_has_a_key(batch: &[u8]) -> Result<bool, RecordsError> {
    let (header, _) = BatchHeader::read_from_prefix(batch).map_err(|_| malformed(0))?;
    let end = header.total_len().min(batch.len());
    let body = batch.get(HEADER_LEN..end).ok_or(malformed(0))?;
    let count = header.record_count.get().max(0) as usize;
    if header.compression() == 0 {
        return keys_present(body, count);
    }
    let plain = decompress(header.compression(), body)?;
    keys_present(&plain, count)
}

/// Walks `count` records of an inflated records section, stopping at the first keyless one.
fn keys_present(plain: &[u8], count: usize) -> Result<bool, RecordsError> {
    let mut at = 0usize;
    for _ in 0..count {
        let len = read_varint(plain, &mut at)?;
        let len = usize::try_from(len).map_err(|_| malformed(at))?;
        let record_end = at.checked_add(len).filter(|e| *e <= plain.len());
        let record_end = record_end.ok_or(malformed(at))?;
        // Inside the record: attributes (1 byte), timestamp delta, offset delta, key length.
        let mut inner = at + 1;
        read_varint(&plain[..record_end], &mut inner)?;
        read_varint(&plain[..record_end], &mut inner)?;
        if read_varint(&plain[..record_end], &mut inner)? < 0 {
            return Ok(false);
        }
        at = record_end;
    }
    Ok(true)
}

/// A zigzag varint of `bytes` at `*at`, moving `*at` past it.
fn read_varint(bytes: &[u8], at: &mut usize) -> Result<i64, RecordsError> {
    let mut raw = 0u64;
    for i in 0..10 {
        let Some(&byte) = bytes.get(*at) else {
            break;
        };
        *at += 1;
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    Err(malformed(*at))
}

fn plain_len_hint(c: &Cursor) -> usize {
    // Every record takes at least 7 bytes; never reserve more than the bytes can hold.
    c.bytes.len() / 7 + 1
}

/// How to write a rebuilt batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuild {
    /// Codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub codec: u8,
    /// KIP-534: store this delete horizon in `baseTimestamp` and set the attribute bit.
    pub delete_horizon: Option<i64>,
}

/// Writes `records` (a subset of `original`'s, in order) as one batch shaped like `original`
/// (see the module docs for what is kept).
pub fn rebuild(
    original: &BatchHeader,
    records: &[Record],
    how: Rebuild,
) -> Result<Vec<u8>, RecordsError> {
    let base_offset = original.base_offset.get();
    let log_append = original.attributes.get() & LOG_APPEND_TIME != 0;
    let first_ts = records
        .iter()
        .map(|r| r.timestamp)
        .min()
        .unwrap_or(original.base_timestamp.get());
    let base_timestamp = how
        .delete_horizon
        .unwrap_or(match original.attributes.get() {
            a if a & DELETE_HORIZON != 0 => first_ts,
            _ => original.base_timestamp.get(),
        });
    let max_timestamp = if log_append || records.is_empty() {
        original.max_timestamp.get()
    } else {
        records
            .iter()
            .map(|r| r.timestamp)
            .max()
            .unwrap_or(first_ts)
    };
    let mut plain = Vec::new();
    for r in records {
        encode_record(&mut plain, r, base_offset, base_timestamp);
    }
    let body = compress(how.codec, &plain)?;
    let mut out = vec![0u8; HEADER_LEN];
    out.extend_from_slice(&body);
    let mut attributes =
        (original.attributes.get() & !CODEC_MASK & !DELETE_HORIZON) | i16::from(how.codec & 0x07);
    if how.delete_horizon.is_some() {
        attributes |= DELETE_HORIZON;
    }
    let total = out.len();
    {
        let (h, _) = BatchHeader::mut_from_prefix(&mut out[..]).expect("sized above");
        *h = *original;
        h.batch_length.set((total - LOG_OVERHEAD) as i32);
        h.attributes.set(attributes);
        h.base_timestamp.set(base_timestamp);
        h.max_timestamp.set(max_timestamp);
        h.record_count.set(records.len() as i32);
    }
    let crc = crc32c::crc32c(&out[CRC_START..]);
    let (h, _) = BatchHeader::mut_from_prefix(&mut out[..]).expect("sized above");
    h.crc.set(crc);
    Ok(out)
}

fn encode_record(out: &mut Vec<u8>, r: &Record, base_offset: i64, base_timestamp: i64) {
    let mut rec = Vec::with_capacity(16 + r.value.as_ref().map_or(0, |v| v.len()));
    rec.push(0u8); // attributes (unused in v2)
    put_varlong(&mut rec, r.timestamp.wrapping_sub(base_timestamp));
    put_varlong(&mut rec, r.offset - base_offset);
    put_bytes(&mut rec, r.key.as_deref());
    put_bytes(&mut rec, r.value.as_deref());
    rec.extend_from_slice(&r.headers);
    put_varlong(out, rec.len() as i64);
    out.extend_from_slice(&rec);
}

/// Inflates a batch's records section with its codec.
pub fn decompress(codec: u8, body: &[u8]) -> Result<Bytes, RecordsError> {
    let mut src = Bytes::copy_from_slice(body);
    let take = |b: &mut Bytes| -> anyhow::Result<Bytes> { Ok(b.copy_to_bytes(b.remaining())) };
    let out = match codec {
        0 => return Ok(src),
        1 => codecs::Gzip::decompress(&mut src, take),
        2 => codecs::Snappy::decompress(&mut src, take),
        3 => codecs::Lz4::decompress(&mut src, take),
        4 => codecs::Zstd::decompress(&mut src, take),
        other => return Err(RecordsError::UnknownCodec(other)),
    }
    .map_err(|e| RecordsError::Codec(format!("{e:#}")))?;
    if out.len() > MAX_INFLATED_BYTES {
        return Err(RecordsError::TooLarge);
    }
    Ok(out)
}

/// Deflates a records section with a codec.
pub fn compress(codec: u8, plain: &[u8]) -> Result<Vec<u8>, RecordsError> {
    let mut out = bytes::BytesMut::new();
    let put = |b: &mut bytes::BytesMut| -> anyhow::Result<()> {
        b.extend_from_slice(plain);
        Ok(())
    };
    match codec {
        0 => return Ok(plain.to_vec()),
        1 => codecs::Gzip::compress(&mut out, put),
        2 => codecs::Snappy::compress(&mut out, put),
        3 => codecs::Lz4::compress(&mut out, put),
        4 => codecs::Zstd::compress(&mut out, put),
        other => return Err(RecordsError::UnknownCodec(other)),
    }
    .map_err(|e| RecordsError::Codec(format!("{e:#}")))?;
    Ok(out.to_vec())
}

fn malformed(at: usize) -> RecordsError {
    RecordsError::Malformed(at)
}

/// Reads records off an inflated records section.
struct Cursor {
    bytes: Bytes,
    consumed: usize,
}

impl Cursor {
    fn varint(&mut self) -> Result<i64, RecordsError> {
        let mut raw = 0u64;
        for i in 0..10 {
            if !self.bytes.has_remaining() {
                break;
            }
            let byte = self.bytes.get_u8();
            self.consumed += 1;
            raw |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(malformed(self.consumed))
    }

    fn take(&mut self, n: usize) -> Result<Bytes, RecordsError> {
        if n > self.bytes.len() {
            return Err(malformed(self.consumed));
        }
        self.consumed += n;
        Ok(self.bytes.split_to(n))
    }

    fn nullable(&mut self) -> Result<Option<Bytes>, RecordsError> {
        let len = self.varint()?;
        if len < 0 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| malformed(self.consumed))?;
        self.take(len).map(Some)
    }

    fn record(&mut self, base_offset: i64, base_timestamp: i64) -> Result<Record, RecordsError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| malformed(self.consumed))?;
        let whole = self.take(len)?;
        let mut inner = Cursor {
            bytes: whole,
            consumed: self.consumed - len,
        };
        inner.take(1)?; // attributes
        let timestamp_delta = inner.varint()?;
        let offset_delta = inner.varint()?;
        let key = inner.nullable()?;
        let value = inner.nullable()?;
        // What is left of the record is its headers, kept as they are.
        let headers = inner.bytes.clone();
        Ok(Record {
            offset: base_offset + offset_delta,
            timestamp: base_timestamp.wrapping_add(timestamp_delta),
            key,
            value,
            headers,
        })
    }
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch::{self, build_batch, stamp_producer, validate};

    fn sample() -> Vec<u8> {
        let mut b = build_batch(
            100,
            5_000,
            &[
                (Some(b"a"), Some(b"1")),
                (Some(b"b"), None),
                (Some(b"a"), Some(b"3")),
            ],
        );
        stamp_producer(&mut b, 42, 3, 17, true);
        b
    }

    #[test]
    fn every_record_has_a_key_finds_a_keyless_record_in_any_codec() {
        let keyed = sample();
        let mixed = build_batch(
            0,
            5_000,
            &[
                (Some(b"a"), Some(b"1")),
                (None, Some(b"2")),
                (Some(b"c"), None),
            ],
        );
        for codec in [0u8, 1, 2, 3, 4] {
            let recode = |b: &[u8]| {
                let d = DecodedBatch::decode(b).unwrap();
                let how = Rebuild {
                    codec,
                    delete_horizon: None,
                };
                rebuild(&d.header, &d.records, how).unwrap()
            };
            assert_eq!(every_record_has_a_key(&recode(&keyed)), Ok(true));
            assert_eq!(every_record_has_a_key(&recode(&mixed)), Ok(false));
        }
    }

    #[test]
    fn every_record_has_a_key_refuses_a_truncated_record_without_panicking() {
        let b = sample();
        let header_only = &b[..HEADER_LEN + 2];
        assert!(every_record_has_a_key(header_only).is_err());
        // A record length past the end of the records section.
        let mut bad = b.clone();
        bad[HEADER_LEN] = 0x7e;
        assert!(every_record_has_a_key(&bad).is_err());
    }

    #[test]
    fn rebuild_keeps_offsets_sequences_and_last_offset_when_records_drop() {
        let original = sample();
        let decoded = DecodedBatch::decode(&original).unwrap();
        assert_eq!(decoded.records.len(), 3);
        assert_eq!(decoded.records[1].value, None);
        let kept = vec![decoded.records[1].clone()];
        let how = Rebuild {
            codec: 0,
            delete_horizon: None,
        };
        let rebuilt = rebuild(&decoded.header, &kept, how).unwrap();
        let (h, len) = validate(&rebuilt).unwrap();
        assert_eq!(len, rebuilt.len());
        assert_eq!(h.base_offset.get(), 100);
        assert_eq!(h.last_offset(), 102, "the batch still ends where it did");
        assert_eq!(h.record_count.get(), 1);
        assert_eq!(
            (h.producer_id.get(), h.producer_epoch.get()),
            (42, 3),
            "producer kept"
        );
        assert_eq!(h.base_sequence.get(), 17);
        assert!(h.is_transactional());
        let back = DecodedBatch::decode(&rebuilt).unwrap();
        assert_eq!(back.records, kept);
    }

    #[test]
    fn every_codec_round_trips_and_decodes_with_the_kafka_codec() {
        let original = sample();
        let decoded = DecodedBatch::decode(&original).unwrap();
        for codec in 0..=4u8 {
            let how = Rebuild {
                codec,
                delete_horizon: None,
            };
            let rebuilt = rebuild(&decoded.header, &decoded.records, how).unwrap();
            let (h, _) = validate(&rebuilt).unwrap();
            assert_eq!(h.compression(), codec);
            let back = DecodedBatch::decode(&rebuilt).unwrap();
            assert_eq!(back.records, decoded.records, "codec {codec}");
            let mut bytes = Bytes::from(rebuilt);
            let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).unwrap();
            let offsets: Vec<i64> = set.records.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, vec![100, 101, 102]);
        }
    }

    #[test]
    fn delete_horizon_moves_the_base_timestamp_and_keeps_record_timestamps() {
        let decoded = DecodedBatch::decode(&sample()).unwrap();
        let how = Rebuild {
            codec: 0,
            delete_horizon: Some(9_999_999),
        };
        let rebuilt = rebuild(&decoded.header, &decoded.records, how).unwrap();
        let back = DecodedBatch::decode(&rebuilt).unwrap();
        assert_eq!(back.delete_horizon(), Some(9_999_999));
        assert_eq!(back.records, decoded.records);
        assert_eq!(back.header.max_timestamp.get(), 5_000);
    }

    #[test]
    fn garbage_records_are_malformed_not_a_panic() {
        let mut b = build_batch(0, 1, &[(Some(b"k"), Some(b"v"))]);
        let n = b.len();
        b[n - 5] = 0x40; // a key length of 32, past the record's end
        let _ = batch::header(&b).unwrap();
        assert!(DecodedBatch::decode(&b).is_err());
    }
}
