//! Kafka's own record schemas for `__consumer_offsets`, so tools that read the topic to
//! compute lag keep working: offset-commit key v1 / value v3, group-metadata key v2 / value
//! v3, and tombstones (null values) for deletions. Also the placement rule: a group lives in
//! partition `abs(javaHashCode(group)) % partitions`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// A member as stored in group metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// Group metadata as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: i64,
    pub members: Vec<StoredMember>,
}

/// A decoded `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<CommittedOffset>,
    },
    Group {
        group: String,
        value: Option<StoredGroup>,
    },
}

/// Java's `String.hashCode` over UTF-16 code units.
pub fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The `__consumer_offsets` partition that holds `group`: Kafka's
/// `Utils.abs(groupId.hashCode) % partitions`, where `Utils.abs` is `Math.abs` except that
/// `Integer.MIN_VALUE` maps to 0 (not `hashCode & 0x7fffffff`, which differs for every
/// negative hash).
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    java_hash(group).checked_abs().unwrap_or(0) % partitions.max(1)
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(1);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

pub fn offset_value(v: &CommittedOffset) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    b.put_i64(v.offset);
    b.put_i32(v.leader_epoch);
    put_str(&mut b, &v.metadata);
    b.put_i64(v.commit_timestamp);
    b.freeze()
}

pub fn group_key(group: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(2);
    put_str(&mut b, group);
    b.freeze()
}

pub fn group_value(g: &StoredGroup) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    put_str(&mut b, &g.protocol_type);
    b.put_i32(g.generation);
    put_nullable_str(&mut b, g.protocol.as_deref());
    put_nullable_str(&mut b, g.leader.as_deref());
    b.put_i64(g.state_timestamp);
    b.put_i32(g.members.len() as i32);
    for m in &g.members {
        put_str(&mut b, &m.member_id);
        put_nullable_str(&mut b, m.instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

/// A bounds-checked reader over a record key or value.
struct Reader(Bytes);

impl Reader {
    fn i16(&mut self) -> Option<i16> {
        (self.0.remaining() >= 2).then(|| self.0.get_i16())
    }
    fn i32(&mut self) -> Option<i32> {
        (self.0.remaining() >= 4).then(|| self.0.get_i32())
    }
    fn i64(&mut self) -> Option<i64> {
        (self.0.remaining() >= 8).then(|| self.0.get_i64())
    }
    fn nullable_str(&mut self) -> Option<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return Some(None);
        }
        let len = len as usize;
        if self.0.remaining() < len {
            return None;
        }
        let s = self.0.split_to(len);
        Some(Some(String::from_utf8(s.to_vec()).ok()?))
    }
    fn str(&mut self) -> Option<String> {
        self.nullable_str()?
    }
    fn bytes(&mut self) -> Option<Bytes> {
        let len = self.i32()?.max(0) as usize;
        (self.0.remaining() >= len).then(|| self.0.split_to(len))
    }
}

/// Decodes a record of `__consumer_offsets`; `None` for keys of other kinds or bad bytes.
pub fn decode(key: Bytes, value: Option<Bytes>) -> Option<OffsetsRecord> {
    let mut k = Reader(key);
    match k.i16()? {
        0 | 1 => {
            let (group, topic, partition) = (k.str()?, k.str()?, k.i32()?);
            let value = match value {
                None => None,
                Some(v) => Some(decode_offset_value(v)?),
            };
            Some(OffsetsRecord::Offset {
                group,
                topic,
                partition,
                value,
            })
        }
        2 => {
            let group = k.str()?;
            let value = match value {
                None => None,
                Some(v) => Some(decode_group_value(v)?),
            };
            Some(OffsetsRecord::Group { group, value })
        }
        _ => None,
    }
}

fn decode_offset_value(v: Bytes) -> Option<CommittedOffset> {
    let mut r = Reader(v);
    let version = r.i16()?;
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.str()?;
    let commit_timestamp = r.i64()?;
    Some(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

fn decode_group_value(v: Bytes) -> Option<StoredGroup> {
    let mut r = Reader(v);
    let version = r.i16()?;
    let protocol_type = r.str()?;
    let generation = r.i32()?;
    let protocol = r.nullable_str()?;
    let leader = r.nullable_str()?;
    let state_timestamp = if version >= 2 { r.i64()? } else { -1 };
    let count = r.i32()?.max(0);
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = r.str()?;
        let instance_id = if version >= 3 {
            r.nullable_str()?
        } else {
            None
        };
        let client_id = r.str()?;
        let client_host = r.str()?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { 0 };
        let session_timeout_ms = r.i32()?;
        let subscription = r.bytes()?;
        let assignment = r.bytes()?;
        members.push(StoredMember {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Some(StoredGroup {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_known_values() {
        // "hello".hashCode() == 99162322 and "".hashCode() == 0 in Java
        assert_eq!(java_hash("hello"), 99162322);
        assert_eq!(java_hash(""), 0);
        // overflow wraps as in Java: "polygenelubricants".hashCode() == Integer.MIN_VALUE
        assert_eq!(java_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
    }

    #[test]
    fn placement_is_kafkas_utils_abs_for_negative_hashes() {
        // Java: "admin-empty-0".hashCode() == -1883466958; Kafka's partitionFor takes
        // Utils.abs of it (1883466958 % 5 == 3), not the low 31 bits (264016690 % 5 == 0).
        assert_eq!(java_hash("admin-empty-0"), -1_883_466_958);
        assert_eq!(partition_for("admin-empty-0", 5), 3);
        assert_eq!(partition_for("admin-empty-0", 50), 8);
        assert_eq!(java_hash("admin-active-0"), -1_114_987_545);
        assert_eq!(partition_for("admin-active-0", 5), 0);
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
    }

    #[test]
    fn offset_commit_round_trips() {
        let v = CommittedOffset {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_timestamp: 1000,
        };
        let rec = decode(offset_key("g", "t", 2), Some(offset_value(&v))).unwrap();
        assert_eq!(
            rec,
            OffsetsRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 2,
                value: Some(v)
            }
        );
    }

    #[test]
    fn group_metadata_round_trips_and_tombstone_decodes() {
        let g = StoredGroup {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp: 9,
            members: vec![StoredMember {
                member_id: "m1".into(),
                instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 1,
                session_timeout_ms: 2,
                subscription: Bytes::from_static(b"s"),
                assignment: Bytes::from_static(b"a"),
            }],
        };
        assert_eq!(
            decode(group_key("g"), Some(group_value(&g))),
            Some(OffsetsRecord::Group {
                group: "g".into(),
                value: Some(g)
            })
        );
        assert_eq!(
            decode(group_key("g"), None),
            Some(OffsetsRecord::Group {
                group: "g".into(),
                value: None
            })
        );
    }

    #[test]
    fn truncated_value_is_refused() {
        assert_eq!(
            decode(
                offset_key("g", "t", 0),
                Some(Bytes::from_static(&[0, 3, 0]))
            ),
            None
        );
    }
}
