//! What the producers send: record values of the workload's size and kind, each stamped with
//! its intended send time, and keys. Values are cut from a pre-generated pool, so making one
//! costs an allocation and a copy, not a random-number call per byte.
//!
//! The stamp: values of at least [`STAMP_LEN`] bytes start with the magic `SLB1` and the
//! intended send time in nanoseconds since the Unix epoch (little-endian u64). Kafka's own
//! record timestamp (set to the same instant) has only millisecond resolution, too coarse for
//! a sub-millisecond end-to-end p99; shorter values fall back to it.

use bytes::{BufMut, Bytes, BytesMut};

use super::workload::{Payload, RecordSize};

pub const STAMP_MAGIC: [u8; 4] = *b"SLB1";
pub const STAMP_LEN: usize = 12;
/// Bytes of pre-generated content values are cut from.
const POOL_BYTES: usize = 4 << 20;

/// A small, fast, seedable generator (SplitMix64): sizes, keys and random payload bytes.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// Makes record values for one producer.
pub struct PayloadSource {
    pool: Bytes,
    size: RecordSize,
    rng: SplitMix64,
}

impl PayloadSource {
    pub fn new(kind: Payload, size: RecordSize, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let len = POOL_BYTES + size.max();
        let pool = match kind {
            Payload::Random => random_bytes(&mut rng, len),
            Payload::Compressible => text_like_bytes(&mut rng, len),
        };
        Self {
            pool: Bytes::from(pool),
            size,
            rng,
        }
    }

    fn next_len(&mut self) -> usize {
        match self.size {
            RecordSize::Fixed(n) => n,
            RecordSize::Range { min, max } => min + self.rng.below((max - min + 1) as u64) as usize,
        }
    }

    /// The next value, stamped with `intended_ns` when asked and it is long enough. An
    /// unstamped value is a slice of the pool: no allocation, no copy.
    pub fn next_value(&mut self, intended_ns: Option<u64>) -> Bytes {
        let len = self.next_len();
        let start = self.rng.below(POOL_BYTES as u64) as usize;
        let content = &self.pool[start..start + len];
        let Some(intended_ns) = intended_ns.filter(|_| len >= STAMP_LEN) else {
            return self.pool.slice(start..start + len);
        };
        let mut value = BytesMut::with_capacity(len);
        value.put_slice(&STAMP_MAGIC);
        value.put_u64_le(intended_ns);
        value.put_slice(&content[STAMP_LEN..]);
        value.freeze()
    }
}

/// The intended send time a value carries, if it was stamped by this harness.
pub fn read_stamp(value: &[u8]) -> Option<u64> {
    if value.len() < STAMP_LEN || value[..4] != STAMP_MAGIC {
        return None;
    }
    let mut ns = [0u8; 8];
    ns.copy_from_slice(&value[4..STAMP_LEN]);
    Some(u64::from_le_bytes(ns))
}

/// Keys chosen round-robin from a fixed set, or none.
pub struct Keys {
    keys: Vec<Bytes>,
    next: usize,
}

impl Keys {
    /// `count` distinct keys (0: null keys); `offset` staggers producers' starting points.
    pub fn new(count: u64, offset: usize) -> Self {
        let keys: Vec<Bytes> = (0..count)
            .map(|i| Bytes::from(format!("key-{i}")))
            .collect();
        let next = if keys.is_empty() {
            0
        } else {
            offset % keys.len()
        };
        Self { keys, next }
    }

    pub fn next_key(&mut self) -> Option<Bytes> {
        if self.keys.is_empty() {
            return None;
        }
        let key = self.keys[self.next].clone();
        self.next = (self.next + 1) % self.keys.len();
        Some(key)
    }
}

fn random_bytes(rng: &mut SplitMix64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Words from a small vocabulary, like log lines or JSON field values.
fn text_like_bytes(rng: &mut SplitMix64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 32] = [
        "order",
        "id",
        "user",
        "truck",
        "lat",
        "lon",
        "speed",
        "status",
        "ok",
        "error",
        "timestamp",
        "region",
        "eu-west",
        "us-east",
        "payment",
        "accepted",
        "declined",
        "item",
        "quantity",
        "price",
        "currency",
        "EUR",
        "USD",
        "session",
        "click",
        "view",
        "cart",
        "checkout",
        "sensor",
        "temperature",
        "humidity",
        "value",
    ];
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let word = WORDS[rng.below(WORDS.len() as u64) as usize];
        out.extend_from_slice(word.as_bytes());
        out.push(if rng.below(8) == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_intended_send_time() {
        let mut src = PayloadSource::new(Payload::Random, RecordSize::Fixed(100), 1);
        let v = src.next_value(Some(1_700_000_000_123_456_789));
        assert_eq!(v.len(), 100);
        assert_eq!(read_stamp(&v), Some(1_700_000_000_123_456_789));
        assert_eq!(read_stamp(b"not stamped at all"), None);
    }

    #[test]
    fn short_values_are_not_stamped_and_ranges_are_respected() {
        let mut src = PayloadSource::new(Payload::Random, RecordSize::Fixed(8), 1);
        assert_eq!(src.next_value(Some(5)).len(), 8);
        let mut src =
            PayloadSource::new(Payload::Random, RecordSize::Range { min: 20, max: 30 }, 2);
        let lens: Vec<usize> = (0..1000).map(|_| src.next_value(None).len()).collect();
        assert!(lens.iter().all(|l| (20..=30).contains(l)));
        assert!(lens.contains(&20) && lens.contains(&30));
    }

    #[test]
    fn compressible_payload_is_text() {
        let mut src = PayloadSource::new(Payload::Compressible, RecordSize::Fixed(200), 3);
        let v = src.next_value(Some(0));
        assert!(v[STAMP_LEN..].iter().all(|b| b.is_ascii()));
    }

    #[test]
    fn keys_rotate_and_none_means_null() {
        let mut k = Keys::new(3, 1);
        let got: Vec<Bytes> = (0..4).filter_map(|_| k.next_key()).collect();
        assert_eq!(got[0], Bytes::from("key-1"));
        assert_eq!(got[3], Bytes::from("key-1"));
        assert_eq!(Keys::new(0, 0).next_key(), None);
    }
}
