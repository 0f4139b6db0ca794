//! Kafka's own record schemas for `__transaction_state`, so Kafka's tools can read the topic:
//! key version 0 (transactional id) and value version 0 (producer id and epoch, timeout,
//! status, partitions, last-update and start timestamps); a null value removes the id.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::{TxnMetadata, TxnStatus};

pub fn key(txn_id: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + txn_id.len());
    b.put_i16(0);
    put_str(&mut b, txn_id);
    b.freeze()
}

pub fn value(m: &TxnMetadata) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i64(m.producer_id);
    b.put_i16(m.epoch);
    b.put_i32(m.timeout_ms);
    b.put_i8(m.status as i8);
    // Partitions grouped by topic, as Kafka writes them.
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (t, p) in &m.partitions {
        match topics.last_mut() {
            Some((last, ps)) if *last == t.as_str() => ps.push(*p),
            _ => topics.push((t.as_str(), vec![*p])),
        }
    }
    b.put_i32(topics.len() as i32);
    for (t, ps) in topics {
        put_str(&mut b, t);
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(p);
        }
    }
    b.put_i64(m.update_ms);
    b.put_i64(m.start_ms);
    b.freeze()
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

/// A bounds-checked reader.
struct Reader(Bytes);

impl Reader {
    fn i8(&mut self) -> Option<i8> {
        (self.0.remaining() >= 1).then(|| self.0.get_i8())
    }
    fn i16(&mut self) -> Option<i16> {
        (self.0.remaining() >= 2).then(|| self.0.get_i16())
    }
    fn i32(&mut self) -> Option<i32> {
        (self.0.remaining() >= 4).then(|| self.0.get_i32())
    }
    fn i64(&mut self) -> Option<i64> {
        (self.0.remaining() >= 8).then(|| self.0.get_i64())
    }
    fn str(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        if self.0.remaining() < len {
            return None;
        }
        String::from_utf8(self.0.split_to(len).to_vec()).ok()
    }
}

/// Decodes a record: the transactional id and its state (None for a tombstone). Unknown
/// versions and truncated records are `None` (skipped).
pub fn decode(key: Bytes, value: Option<Bytes>) -> Option<(String, Option<TxnMetadata>)> {
    let mut k = Reader(key);
    if k.i16()? != 0 {
        return None;
    }
    let txn_id = k.str()?;
    let Some(value) = value else {
        return Some((txn_id, None));
    };
    let meta = decode_value(&txn_id, value)?;
    Some((txn_id, Some(meta)))
}

fn decode_value(txn_id: &str, value: Bytes) -> Option<TxnMetadata> {
    let mut v = Reader(value);
    if v.i16()? != 0 {
        return None;
    }
    let producer_id = v.i64()?;
    let epoch = v.i16()?;
    let timeout_ms = v.i32()?;
    let status = TxnStatus::from_byte(v.i8()?)?;
    let mut partitions = BTreeSet::new();
    let topics = v.i32()?;
    for _ in 0..topics.max(0) {
        let topic = v.str()?;
        let n = v.i32()?;
        for _ in 0..n.max(0) {
            partitions.insert((topic.clone(), v.i32()?));
        }
    }
    let update_ms = v.i64()?;
    let start_ms = v.i64()?;
    Some(TxnMetadata {
        transactional_id: txn_id.to_owned(),
        producer_id,
        prev_producer_id: -1,
        epoch,
        last_epoch: -1,
        timeout_ms,
        status,
        partitions,
        start_ms,
        update_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_in_kafkas_layout() {
        let mut m = TxnMetadata::new("tx-1", 4000, 60_000, 1234);
        m.epoch = 3;
        m.status = TxnStatus::Ongoing;
        m.start_ms = 1200;
        m.partitions.insert(("a".into(), 0));
        m.partitions.insert(("a".into(), 2));
        m.partitions.insert(("b".into(), 1));
        let k = key("tx-1");
        assert_eq!(&k[..], &[0, 0, 0, 4, b't', b'x', b'-', b'1']);
        let v = value(&m);
        // version, producer id, epoch, timeout, status
        assert_eq!(&v[..2], &[0, 0]);
        assert_eq!(v[16], 1);
        let (id, back) = decode(k, Some(v)).unwrap();
        assert_eq!(id, "tx-1");
        assert_eq!(back.unwrap(), m);
    }

    #[test]
    fn tombstone_and_truncated_records() {
        assert_eq!(decode(key("x"), None), Some(("x".into(), None)));
        let v = value(&TxnMetadata::new("x", 1, 1, 1));
        assert_eq!(decode(key("x"), Some(v.slice(..10))), None);
    }
}
