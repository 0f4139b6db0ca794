//! RecordBatch v2 (message format 2): a zero-copy view of the 61-byte header, validation of a
//! batch as it arrives from a producer or off the disk, and the two header fields the broker
//! writes (`baseOffset`, `partitionLeaderEpoch`), neither of which the CRC covers.
//!
//! Layout (big-endian): baseOffset i64, batchLength i32, partitionLeaderEpoch i32, magic i8,
//! crc u32 (CRC32C of everything from `attributes` to the end), attributes i16,
//! lastOffsetDelta i32, baseTimestamp i64, maxTimestamp i64, producerId i64,
//! producerEpoch i16, baseSequence i32, recordCount i32, then the records.

use zerocopy::byteorder::big_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of the fixed batch header.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength`'s coverage starts (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
/// Offset of the first byte the CRC covers (`attributes`).
const CRC_START: usize = 21;
const MAGIC_V2: i8 = 2;

/// The fixed header of a RecordBatch v2, read in place.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BatchHeader {
    pub base_offset: I64,
    pub batch_length: I32,
    pub partition_leader_epoch: I32,
    pub magic: i8,
    pub crc: U32,
    pub attributes: I16,
    pub last_offset_delta: I32,
    pub base_timestamp: I64,
    pub max_timestamp: I64,
    pub producer_id: I64,
    pub producer_epoch: I16,
    pub base_sequence: I32,
    pub record_count: I32,
}

const _: () = assert!(std::mem::size_of::<BatchHeader>() == HEADER_LEN);

impl BatchHeader {
    /// Total bytes of the batch including the 12-byte log overhead.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.get().max(0) as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset.get() + self.last_offset_delta.get() as i64
    }

    pub fn compression(&self) -> u8 {
        (self.attributes.get() & 0x07) as u8
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes.get() & 0x10 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes.get() & 0x20 != 0
    }
}

/// Why bytes are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("{0} bytes is too short for a batch header")]
    Truncated(usize),
    #[error("batch length {length} does not fit in the {available} bytes present")]
    BadLength { length: i64, available: usize },
    #[error("magic {0} is not 2 (only message format v2 is stored)")]
    BadMagic(i8),
    #[error("CRC mismatch: header says {stored:#010x}, bytes give {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("record count {count} does not match lastOffsetDelta {delta}")]
    BadCount { count: i32, delta: i32 },
}

/// Reads the header at the front of `bytes` without checking anything past its size.
pub fn header(bytes: &[u8]) -> Result<&BatchHeader, BatchError> {
    let (h, _) =
        BatchHeader::ref_from_prefix(bytes).map_err(|_| BatchError::Truncated(bytes.len()))?;
    Ok(h)
}

/// Validates the batch at the front of `bytes` (length, magic, counts, CRC32C) and returns its
/// header and total length. Bytes after the batch are ignored.
pub fn validate(bytes: &[u8]) -> Result<(&BatchHeader, usize), BatchError> {
    let h = header(bytes)?;
    let length = h.batch_length.get() as i64;
    let total = LOG_OVERHEAD as i64 + length;
    if length < (HEADER_LEN - LOG_OVERHEAD) as i64 || total > bytes.len() as i64 {
        return Err(BatchError::BadLength {
            length,
            available: bytes.len(),
        });
    }
    if h.magic != MAGIC_V2 {
        return Err(BatchError::BadMagic(h.magic));
    }
    let (count, delta) = (h.record_count.get(), h.last_offset_delta.get());
    if count < 0 || delta < 0 || (count > 0 && delta < count - 1) {
        return Err(BatchError::BadCount { count, delta });
    }
    let total = total as usize;
    let computed = crc32c::crc32c(&bytes[CRC_START..total]);
    if computed != h.crc.get() {
        return Err(BatchError::BadCrc {
            stored: h.crc.get(),
            computed,
        });
    }
    Ok((h, total))
}

/// Writes the broker-assigned fields into a batch header in place. The CRC stays valid.
pub fn assign_offsets(bytes: &mut [u8], base_offset: i64, leader_epoch: i32) {
    let (h, _) = BatchHeader::mut_from_prefix(bytes).expect("caller validated the batch");
    h.base_offset.set(base_offset);
    h.partition_leader_epoch.set(leader_epoch);
}

/// Iterates over the whole batches at the front of a buffer, stopping at the first invalid or
/// incomplete one. Yields `(header, start, total_len)`.
pub struct BatchIter<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> BatchIter<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Bytes consumed by the batches yielded so far.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<(&'a BatchHeader, usize, usize), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        let start = self.pos;
        match validate(&self.bytes[start..]) {
            Ok((h, len)) => {
                self.pos += len;
                Some(Ok((h, start, len)))
            }
            Err(e) => Some(Err(e)),
        }
    }
}

/// A record as `(key, value)`, either possibly null.
pub type SimpleRecord<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Builds an uncompressed batch of simple records: for tests, benchmarks and tools.
pub fn build_batch(base_offset: i64, timestamp: i64, records: &[SimpleRecord]) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, (key, value)) in records.iter().enumerate() {
        let mut rec = Vec::new();
        rec.push(0u8); // attributes
        put_varlong(&mut rec, 0); // timestamp delta
        put_varlong(&mut rec, i as i64); // offset delta
        put_bytes(&mut rec, *key);
        put_bytes(&mut rec, *value);
        put_varlong(&mut rec, 0); // header count
        put_varlong(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let mut out = vec![0u8; HEADER_LEN];
    out.extend_from_slice(&body);
    let total = out.len();
    {
        let (h, _) = BatchHeader::mut_from_prefix(&mut out[..]).expect("sized above");
        h.base_offset.set(base_offset);
        h.batch_length.set((total - LOG_OVERHEAD) as i32);
        h.partition_leader_epoch.set(0);
        h.magic = MAGIC_V2;
        h.last_offset_delta
            .set(records.len().saturating_sub(1) as i32);
        h.base_timestamp.set(timestamp);
        h.max_timestamp.set(timestamp);
        h.producer_id.set(-1);
        h.producer_epoch.set(-1);
        h.base_sequence.set(-1);
        h.record_count.set(records.len() as i32);
    }
    let crc = crc32c::crc32c(&out[CRC_START..]);
    let (h, _) = BatchHeader::mut_from_prefix(&mut out[..]).expect("sized above");
    h.crc.set(crc);
    out
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
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        build_batch(0, 1000, &[(Some(b"k"), Some(b"v")), (None, Some(b"w"))])
    }

    #[test]
    fn built_batch_validates() {
        let b = sample();
        let (h, len) = validate(&b).unwrap();
        assert_eq!(len, b.len());
        assert_eq!(h.record_count.get(), 2);
        assert_eq!(h.last_offset(), 1);
    }

    #[test]
    fn assigning_offsets_keeps_crc_valid() {
        let mut b = sample();
        assign_offsets(&mut b, 4242, 7);
        let (h, _) = validate(&b).unwrap();
        assert_eq!(h.base_offset.get(), 4242);
        assert_eq!(h.partition_leader_epoch.get(), 7);
        assert_eq!(h.last_offset(), 4243);
    }

    #[test]
    fn flipped_payload_bit_is_a_crc_error() {
        let mut b = sample();
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(matches!(validate(&b), Err(BatchError::BadCrc { .. })));
    }

    #[test]
    fn wrong_magic_is_rejected() {
        let mut b = sample();
        b[16] = 1;
        assert_eq!(validate(&b).unwrap_err(), BatchError::BadMagic(1));
    }

    #[test]
    fn length_past_the_buffer_is_rejected() {
        let b = sample();
        assert!(matches!(
            validate(&b[..b.len() - 1]),
            Err(BatchError::BadLength { .. })
        ));
    }

    #[test]
    fn iterator_stops_at_torn_tail() {
        let mut buf = sample();
        let second = sample();
        buf.extend_from_slice(&second[..second.len() / 2]);
        let mut it = BatchIter::new(&buf);
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_err());
    }

    proptest! {
        #[test]
        fn validate_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = validate(&bytes);
        }

        #[test]
        fn any_single_byte_corruption_after_crc_is_detected(idx in 21usize..40, flip in 1u8..=255) {
            let mut b = sample();
            let i = idx.min(b.len() - 1);
            b[i] ^= flip;
            prop_assert!(validate(&b).is_err());
        }
    }
}
