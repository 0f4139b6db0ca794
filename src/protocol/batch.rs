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

/// Why a batch a client sent may not be stored, although its bytes are intact. These are
/// Kafka's INVALID_RECORD cases: the broker, not the client, writes control batches, and a
/// batch's offset range must match its record count (compaction may leave gaps on disk, so
/// [`validate`] alone, which also reads disk, cannot insist on it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientBatchError {
    #[error("Clients are not allowed to write control records")]
    Control,
    #[error("Inconsistent batch offset range [0, {delta}] and count of records {count}")]
    CountMismatch { count: i32, delta: i32 },
    #[error("Invalid reported count for record batch: {0}")]
    Empty(i32),
    #[error("Invalid sequence number {sequence} for producer {producer_id} (epoch {epoch})")]
    BadSequence {
        producer_id: i64,
        epoch: i16,
        sequence: i32,
    },
    #[error("Transactional record batch without a producer id")]
    TransactionalWithoutProducer,
}

/// Checks the rules a batch from a producer must follow on top of [`validate`].
pub fn check_client_batch(h: &BatchHeader) -> Result<(), ClientBatchError> {
    if h.is_control() {
        return Err(ClientBatchError::Control);
    }
    let (count, delta) = (h.record_count.get(), h.last_offset_delta.get());
    if count <= 0 {
        return Err(ClientBatchError::Empty(count));
    }
    if delta != count - 1 {
        return Err(ClientBatchError::CountMismatch { count, delta });
    }
    let producer_id = h.producer_id.get();
    if producer_id < 0 {
        return if h.is_transactional() {
            Err(ClientBatchError::TransactionalWithoutProducer)
        } else {
            Ok(())
        };
    }
    let (epoch, sequence) = (h.producer_epoch.get(), h.base_sequence.get());
    if sequence < 0 || epoch < 0 {
        return Err(ClientBatchError::BadSequence {
            producer_id,
            epoch,
            sequence,
        });
    }
    Ok(())
}

/// The sequence number `increment` after `sequence`, wrapping past `i32::MAX` to 0 as Kafka's
/// producers do.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

impl BatchHeader {
    /// The sequence number of the batch's last record.
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence.get(), self.last_offset_delta.get())
    }
}

/// What a transaction marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Abort = 0,
    Commit = 1,
}

/// Reads the control record of a control batch: its type (key: version i16, type i16) and
/// the coordinator epoch of its value (version i16, coordinator epoch i32).
pub fn read_marker(batch_bytes: &[u8]) -> Option<(ControlType, i32)> {
    let h = header(batch_bytes).ok()?;
    if !h.is_control() || h.compression() != 0 || h.record_count.get() < 1 {
        return None;
    }
    let mut rec = Varints(batch_bytes.get(HEADER_LEN..)?);
    rec.varint()?; // record length
    rec.take(1)?; // attributes
    rec.varint()?; // timestamp delta
    rec.varint()?; // offset delta
    let key_len = usize::try_from(rec.varint()?).ok()?;
    let kind = match rec.take(key_len)? {
        [_, _, 0, 0] => ControlType::Abort,
        [_, _, 0, 1] => ControlType::Commit,
        _ => return None,
    };
    let value_len = rec.varint()?;
    let coordinator_epoch = match rec.take(usize::try_from(value_len).ok()?) {
        Some([_, _, a, b, c, d, ..]) => i32::from_be_bytes([*a, *b, *c, *d]),
        _ => -1,
    };
    Some((kind, coordinator_epoch))
}

/// A cursor over a record's zigzag varints.
struct Varints<'a>(&'a [u8]);

impl<'a> Varints<'a> {
    fn varint(&mut self) -> Option<i64> {
        let mut raw = 0u64;
        for (i, byte) in self.0.iter().enumerate().take(10) {
            raw |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
}

/// Builds a transaction marker: a control batch of one record whose key is
/// `(version 0, type)` and whose value is `(version 0, coordinator epoch)`.
pub fn build_marker(
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    kind: ControlType,
    timestamp: i64,
) -> Vec<u8> {
    let key = [0u8, 0, 0, kind as u8];
    let mut value = vec![0u8, 0];
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let mut out = build_batch(0, timestamp, &[(Some(&key[..]), Some(&value[..]))]);
    let (h, _) = BatchHeader::mut_from_prefix(&mut out[..]).expect("built above");
    h.attributes.set(0x20 | 0x10);
    h.producer_id.set(producer_id);
    h.producer_epoch.set(producer_epoch);
    h.base_sequence.set(-1);
    let crc = crc32c::crc32c(&out[CRC_START..]);
    let (h, _) = BatchHeader::mut_from_prefix(&mut out[..]).expect("built above");
    h.crc.set(crc);
    out
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

/// `set_log_append_time` for a batch held as its header (`head`, at least `HEADER_LEN`
/// bytes) and the rest (`body`): only the header changes; the CRC covers both.
pub fn set_log_append_time_split(head: &mut [u8], body: &[u8], now: i64) {
    let (h, _) = BatchHeader::mut_from_prefix(head).expect("caller validated the batch");
    h.attributes.set(h.attributes.get() | 0x08);
    h.max_timestamp.set(now);
    let rest = (h.total_len().min(head.len() + body.len())).saturating_sub(head.len());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[CRC_START..]), &body[..rest]);
    let (h, _) = BatchHeader::mut_from_prefix(head).expect("caller validated the batch");
    h.crc.set(crc);
}

/// Kafka's LogAppendTime: marks the batch's timestamps as the broker's (attributes bit 3)
/// and sets its max timestamp, which consumers then report for every record, to `now`;
/// re-computes the CRC.
pub fn set_log_append_time(bytes: &mut [u8], now: i64) {
    let (h, _) = BatchHeader::mut_from_prefix(bytes).expect("caller validated the batch");
    h.attributes.set(h.attributes.get() | 0x08);
    h.max_timestamp.set(now);
    let total = h.total_len().min(bytes.len());
    let crc = crc32c::crc32c(&bytes[CRC_START..total]);
    let (h, _) = BatchHeader::mut_from_prefix(bytes).expect("caller validated the batch");
    h.crc.set(crc);
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

/// Stamps a built batch with a producer's identity (id, epoch, first sequence, transactional
/// flag) and re-computes its CRC: what an idempotent or transactional producer sends.
pub fn stamp_producer(
    bytes: &mut [u8],
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    transactional: bool,
) {
    let (h, _) = BatchHeader::mut_from_prefix(bytes).expect("a built batch");
    h.producer_id.set(producer_id);
    h.producer_epoch.set(epoch);
    h.base_sequence.set(base_sequence);
    let attributes = h.attributes.get() & !0x10;
    h.attributes
        .set(attributes | if transactional { 0x10 } else { 0 });
    let total = h.total_len().min(bytes.len());
    let crc = crc32c::crc32c(&bytes[CRC_START..total]);
    let (h, _) = BatchHeader::mut_from_prefix(bytes).expect("a built batch");
    h.crc.set(crc);
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
    fn log_append_time_sets_the_type_and_max_timestamp_and_keeps_crc_valid() {
        let mut b = sample();
        set_log_append_time(&mut b, 1_700_000_000_000);
        let (h, _) = validate(&b).unwrap();
        assert_eq!(h.attributes.get() & 0x08, 0x08);
        assert_eq!(h.max_timestamp.get(), 1_700_000_000_000);
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

    #[test]
    fn client_batch_with_offset_delta_past_its_count_is_refused() {
        let mut b = sample();
        let (h, _) = BatchHeader::mut_from_prefix(&mut b[..]).unwrap();
        h.last_offset_delta.set(i32::MAX - 1);
        assert!(matches!(
            check_client_batch(h),
            Err(ClientBatchError::CountMismatch { .. })
        ));
    }

    #[test]
    fn client_control_batch_is_refused_and_marker_reads_back() {
        let m = build_marker(7, 3, 0, ControlType::Commit, 1000);
        let (h, _) = validate(&m).unwrap();
        assert!(h.is_control() && h.is_transactional());
        assert_eq!((h.producer_id.get(), h.producer_epoch.get()), (7, 3));
        assert_eq!(check_client_batch(h), Err(ClientBatchError::Control));
        assert_eq!(read_marker(&m), Some((ControlType::Commit, 0)));
        let a = build_marker(7, 3, 9, ControlType::Abort, 1000);
        assert_eq!(read_marker(&a), Some((ControlType::Abort, 9)));
        assert_eq!(read_marker(&sample()), None);
    }

    #[test]
    fn marker_decodes_with_the_kafka_codec() {
        use kafka_protocol::records::RecordBatchDecoder;
        let m = build_marker(7, 3, 5, ControlType::Abort, 1000);
        let mut bytes = bytes::Bytes::from(m);
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
        let r = &set.records[0];
        assert!(r.control && r.transactional);
        assert_eq!(r.key.as_deref(), Some(&[0u8, 0, 0, 0][..]));
        assert_eq!(r.value.as_deref(), Some(&[0u8, 0, 0, 0, 0, 5][..]));
    }

    #[test]
    fn sequences_wrap_past_i32_max() {
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
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
