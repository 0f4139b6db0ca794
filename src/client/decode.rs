//! Reading the records of one partition out of a fetch answer. Whole batches are checked
//! (length, magic, CRC32C when `check.crcs`), compressed ones are decompressed with the
//! `kafka-protocol` crate's codecs, control batches are skipped, and a batch cut off at the
//! end of the answer is left for the next fetch. Under read_committed, the batches of aborted
//! transactions are dropped using the answer's aborted-transactions list, as Kafka's
//! consumer does (see [`AbortedFilter`]). Keys, values and header values are `Bytes`
//! slices of the fetched (or decompressed) buffer: no record bytes are copied.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};

use super::config::Compression;
use crate::protocol::batch::{self as wire, HEADER_LEN, LOG_OVERHEAD};

/// How a record's timestamp was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// One record header; the key is the UTF-8 name Kafka defines (kept as bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

impl Header {
    pub fn key_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.key)
    }
}

/// A record as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: Rc<str>,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub timestamp_type: TimestampType,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// The records of one partition's fetched bytes at or after `from`, and the offset the next
/// fetch starts at (past every whole batch seen, control and empty batches included).
#[derive(Debug, Default)]
pub struct Parsed {
    pub records: Vec<ConsumerRecord>,
    pub next_offset: Option<i64>,
}

/// Drops the data batches of aborted transactions. The fetch answer lists each aborted
/// transaction in range as (producer id, first offset); a producer's batches are skipped
/// from its first offset until its ABORT marker.
#[derive(Debug, Default)]
pub struct AbortedFilter {
    /// Aborted transactions not yet reached, latest first offset first (popped from the end).
    pending: Vec<(i64, i64)>,
    /// Producers inside an aborted transaction at the current batch.
    open: std::collections::HashSet<i64>,
}

impl AbortedFilter {
    /// From the answer's `(producer_id, first_offset)` list (empty under read_uncommitted).
    pub fn new(mut aborted: Vec<(i64, i64)>) -> Self {
        aborted.sort_unstable_by_key(|&(_, first)| std::cmp::Reverse(first));
        Self {
            pending: aborted,
            open: Default::default(),
        }
    }

    /// Whether the batch with header `h` (and bytes `batch`) is aborted data to skip; keeps
    /// track of which producers' aborted transactions are open.
    fn skips(&mut self, h: &wire::BatchHeader, batch: &[u8]) -> bool {
        while let Some(&(pid, first)) = self.pending.last() {
            if first > h.last_offset() {
                break;
            }
            self.open.insert(pid);
            self.pending.pop();
        }
        let pid = h.producer_id.get();
        if h.is_control() {
            if matches!(
                wire::read_marker(batch),
                Some((wire::ControlType::Abort, _))
            ) {
                self.open.remove(&pid);
            }
            return false;
        }
        h.is_transactional() && self.open.contains(&pid)
    }
}

/// Parses every whole batch in `bytes`, leaving out those `aborted` drops. `Err` names the
/// first corrupt batch.
pub fn parse_records(
    topic: &Rc<str>,
    partition: i32,
    bytes: &Bytes,
    from: i64,
    check_crcs: bool,
    aborted: &mut AbortedFilter,
) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    let mut pos = 0;
    while bytes.len() - pos >= HEADER_LEN {
        let rest = &bytes[pos..];
        let h = wire::header(rest).map_err(|e| e.to_string())?;
        let total = LOG_OVERHEAD
            + usize::try_from(h.batch_length.get()).map_err(|_| "negative batch length")?;
        if total > rest.len() {
            break; // cut off by the fetch size: the next fetch starts here
        }
        if h.magic != 2 {
            return Err(format!(
                "batch at offset {} has magic {} (only v2 is read)",
                h.base_offset.get(),
                h.magic
            ));
        }
        if check_crcs {
            wire::validate(rest)
                .map_err(|e| format!("batch at offset {}: {e}", h.base_offset.get()))?;
        }
        let last = h.last_offset();
        let skipped = aborted.skips(h, &rest[..total]);
        if last >= from && !h.is_control() && !skipped {
            let batch = bytes.slice(pos..pos + total);
            read_batch(topic, partition, &batch, from, &mut out.records)?;
        }
        out.next_offset = Some(out.next_offset.map_or(last + 1, |n: i64| n.max(last + 1)));
        pos += total;
    }
    Ok(out)
}

/// Appends the records of one whole, validated batch that are at or after `from`.
fn read_batch(
    topic: &Rc<str>,
    partition: i32,
    batch: &Bytes,
    from: i64,
    out: &mut Vec<ConsumerRecord>,
) -> Result<(), String> {
    let h = wire::header(batch).map_err(|e| e.to_string())?;
    let base_offset = h.base_offset.get();
    let attributes = h.attributes.get();
    let log_append = attributes & 0x08 != 0;
    let (ts_type, base_ts) = if log_append {
        (TimestampType::LogAppendTime, h.max_timestamp.get())
    } else {
        (TimestampType::CreateTime, h.base_timestamp.get())
    };
    let count = h.record_count.get();
    let codec = Compression::from_attributes(attributes)
        .ok_or_else(|| format!("unknown compression in attributes {attributes:#x}"))?;
    let records = decompress(batch.slice(HEADER_LEN..), codec)?;
    let mut cur = Cursor {
        buf: records,
        pos: 0,
    };
    out.reserve(usize::try_from(count).unwrap_or(0).min(1 << 16));
    for _ in 0..count {
        let r = read_record(&mut cur).map_err(|e| format!("batch at offset {base_offset}: {e}"))?;
        let offset = base_offset + r.offset_delta;
        if offset < from {
            continue;
        }
        out.push(ConsumerRecord {
            topic: topic.clone(),
            partition,
            offset,
            timestamp: if log_append {
                base_ts
            } else {
                base_ts + r.timestamp_delta
            },
            timestamp_type: ts_type,
            key: r.key,
            value: r.value,
            headers: r.headers,
        });
    }
    Ok(())
}

fn decompress(records: Bytes, codec: Compression) -> Result<Bytes, String> {
    let mut input = records;
    let take = |b: &mut Bytes| Ok(std::mem::take(b));
    let done = match codec {
        Compression::None => return Ok(input),
        Compression::Gzip => Gzip::decompress(&mut input, take),
        Compression::Snappy => Snappy::decompress(&mut input, take),
        Compression::Lz4 => Lz4::decompress(&mut input, take),
        Compression::Zstd => Zstd::decompress(&mut input, take),
    };
    done.map_err(|e| format!("{codec:?} decompression failed: {e}"))
}

struct RawRecord {
    timestamp_delta: i64,
    offset_delta: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<Header>,
}

fn read_record(cur: &mut Cursor) -> Result<RawRecord, String> {
    let len = usize::try_from(cur.varint()?).map_err(|_| "negative record length")?;
    let mut rec = Cursor {
        buf: cur.take(len)?,
        pos: 0,
    };
    rec.take(1)?; // attributes
    let timestamp_delta = rec.varint()?;
    let offset_delta = rec.varint()?;
    let key = rec.nullable_bytes()?;
    let value = rec.nullable_bytes()?;
    let n = rec.varint()?;
    let n = usize::try_from(n).map_err(|_| "negative header count")?;
    let mut headers = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let key = rec.nullable_bytes()?.ok_or("null header key")?;
        headers.push(Header {
            key,
            value: rec.nullable_bytes()?,
        });
    }
    Ok(RawRecord {
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
    })
}

/// A read position in a `Bytes`; every read is bounds-checked.
struct Cursor {
    buf: Bytes,
    pos: usize,
}

impl Cursor {
    fn varint(&mut self) -> Result<i64, String> {
        let mut z: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or("record truncated in a varint")?;
            self.pos += 1;
            z |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<Bytes, String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or("record truncated")?;
        let b = self.buf.slice(self.pos..end);
        self.pos = end;
        Ok(b)
    }

    fn nullable_bytes(&mut self) -> Result<Option<Bytes>, String> {
        let len = self.varint()?;
        if len < 0 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| "length too large")?;
        self.take(len).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::batch::BatchBuilder;

    fn batch(base: i64, codec: Compression, n: usize) -> Vec<u8> {
        let mut b = BatchBuilder::default();
        for i in 0..n {
            let v = format!("v{i}");
            let headers = vec![
                ("dup".to_owned(), Some(Bytes::from_static(b"1"))),
                ("dup".to_owned(), None),
            ];
            b.push(
                100 + i as i64,
                (i % 2 == 0).then_some(&b"k"[..]),
                Some(v.as_bytes()),
                &headers,
            );
        }
        let mut bytes = b.build(codec, None).unwrap().to_vec();
        crate::protocol::batch::assign_offsets(&mut bytes, base, 0);
        bytes
    }

    fn topic() -> Rc<str> {
        Rc::from("t")
    }

    /// A transactional batch of `n` records from producer `pid`, at `base`.
    fn txn_batch(pid: i64, base: i64, n: usize) -> Vec<u8> {
        let mut b = BatchBuilder::default();
        for i in 0..n {
            b.push(100, None, Some(format!("p{pid}-{i}").as_bytes()), &[]);
        }
        let stamp = crate::client::batch::ProducerStamp {
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: 0,
            transactional: true,
        };
        let mut bytes = b.build(Compression::None, Some(stamp)).unwrap().to_vec();
        crate::protocol::batch::assign_offsets(&mut bytes, base, 0);
        bytes
    }

    fn marker(pid: i64, at: i64, kind: crate::protocol::batch::ControlType) -> Vec<u8> {
        let mut bytes = crate::protocol::batch::build_marker(pid, 0, 0, kind, 100);
        crate::protocol::batch::assign_offsets(&mut bytes, at, 0);
        bytes
    }

    #[test]
    fn read_committed_drops_aborted_transactions_and_keeps_the_rest() {
        use crate::protocol::batch::ControlType::{Abort, Commit};
        // Producer 7 aborts [0, 2) then commits [3, 5); producer 8, interleaved, commits
        // [2, 3) — its records stay though they sit inside 7's aborted range.
        let log: Vec<u8> = [
            txn_batch(7, 0, 1),
            txn_batch(7, 1, 1),
            txn_batch(8, 2, 1),
            marker(7, 3, Abort),
            txn_batch(7, 4, 2),
            marker(7, 6, Commit),
            marker(8, 7, Commit),
        ]
        .concat();
        let bytes = Bytes::from(log);
        let values = |aborted: Vec<(i64, i64)>| {
            let mut filter = AbortedFilter::new(aborted);
            let p = parse_records(&topic(), 0, &bytes, 0, true, &mut filter).unwrap();
            assert_eq!(p.next_offset, Some(8));
            p.records
                .into_iter()
                .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(values(vec![(7, 0)]), ["p8-0", "p7-0", "p7-1"]);
        assert_eq!(values(vec![]), ["p7-0", "p7-0", "p8-0", "p7-0", "p7-1"]);
    }

    #[test]
    fn every_codec_decodes_with_offsets_timestamps_and_duplicate_headers() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let bytes = Bytes::from(batch(10, codec, 3));
            let p =
                parse_records(&topic(), 0, &bytes, 0, true, &mut AbortedFilter::default()).unwrap();
            assert_eq!(p.next_offset, Some(13), "{codec:?}");
            let offsets: Vec<i64> = p.records.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, vec![10, 11, 12]);
            assert_eq!(p.records[1].timestamp, 101);
            assert_eq!(p.records[1].key, None);
            assert_eq!(p.records[2].value.as_deref(), Some(&b"v2"[..]));
            assert_eq!(p.records[0].headers.len(), 2);
            assert_eq!(p.records[0].headers[1].value, None);
        }
    }

    #[test]
    fn records_before_the_position_and_cut_off_batches_are_left_out() {
        let mut all = batch(0, Compression::None, 4);
        let second = batch(4, Compression::None, 2);
        all.extend_from_slice(&second);
        all.extend_from_slice(&second[..second.len() - 3]); // torn third batch
        let bytes = Bytes::from(all);
        let p = parse_records(&topic(), 0, &bytes, 2, true, &mut AbortedFilter::default()).unwrap();
        assert_eq!(
            p.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![2, 3, 4, 5]
        );
        assert_eq!(p.next_offset, Some(6));
    }

    #[test]
    fn uncompressed_values_share_the_fetched_buffer() {
        let bytes = Bytes::from(batch(0, Compression::None, 1));
        let p = parse_records(&topic(), 0, &bytes, 0, true, &mut AbortedFilter::default()).unwrap();
        let v = p.records[0].value.as_ref().unwrap();
        let inside = bytes.as_ptr_range();
        assert!(inside.contains(&v.as_ptr()), "value was copied");
    }

    #[test]
    fn a_corrupt_batch_is_an_error_not_a_panic() {
        let mut b = batch(0, Compression::None, 2);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(parse_records(
            &topic(),
            0,
            &Bytes::from(b.clone()),
            0,
            true,
            &mut AbortedFilter::default()
        )
        .is_err());
        // without the CRC check, a garbled record is still caught by the bounds checks or parsed
        let _ = parse_records(
            &topic(),
            0,
            &Bytes::from(b),
            0,
            false,
            &mut AbortedFilter::default(),
        );
    }
}
