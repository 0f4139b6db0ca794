//! Kafka's rules for topic names, partition counts, replication factors and configs.

use std::collections::BTreeMap;

use crate::base::limits::{MAX_PARTITIONS_PER_TOPIC, MAX_TOPIC_NAME_LEN};
use crate::base::{KafkaCode, KafkaError};

fn invalid_topic(msg: String) -> KafkaError {
    KafkaError::new(KafkaCode::InvalidTopic, msg)
}

/// Kafka's topic name rules: 1–249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn topic_name(name: &str) -> Result<(), KafkaError> {
    if name.is_empty() {
        return Err(invalid_topic(
            "Topic name is illegal, it can't be empty".into(),
        ));
    }
    if name == "." || name == ".." {
        return Err(invalid_topic("Topic name cannot be \".\" or \"..\"".into()));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(invalid_topic(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters, topic name: {name}"
        )));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-')
    {
        return Err(invalid_topic(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// Kafka refuses a name that differs from an existing one only by '.' versus '_', since
/// metric names cannot tell them apart.
pub fn no_collision<'a>(
    name: &str,
    existing: impl Iterator<Item = &'a String>,
) -> Result<(), KafkaError> {
    let norm = |s: &str| s.replace('.', "_");
    let mine = norm(name);
    for other in existing {
        if norm(other) == mine {
            return Err(invalid_topic(format!(
                "Topic '{name}' collides with existing topic: {other}"
            )));
        }
    }
    Ok(())
}

pub fn partitions(n: i32) -> Result<(), KafkaError> {
    if n <= 0 {
        return Err(KafkaError::new(
            KafkaCode::InvalidPartitions,
            "Number of partitions must be larger than 0.",
        ));
    }
    if n > MAX_PARTITIONS_PER_TOPIC {
        return Err(KafkaError::new(
            KafkaCode::InvalidPartitions,
            format!(
                "Number of partitions {n} is larger than the limit {MAX_PARTITIONS_PER_TOPIC}."
            ),
        ));
    }
    Ok(())
}

pub fn replication_factor(rf: i16, brokers: usize) -> Result<(), KafkaError> {
    if rf <= 0 {
        return Err(KafkaError::new(
            KafkaCode::InvalidReplicationFactor,
            "Replication factor must be larger than 0.",
        ));
    }
    if rf as usize > brokers {
        return Err(KafkaError::new(
            KafkaCode::InvalidReplicationFactor,
            format!("Replication factor: {rf} larger than available brokers: {brokers}."),
        ));
    }
    Ok(())
}

/// Checks a manual replica assignment, `assignments[p]` being partition p's brokers: every
/// partition has replicas, the same number of them, no broker twice, and every broker is
/// registered and unfenced (Kafka also takes fenced ones when one in each partition is not;
/// here all must be live, so each new partition's ISR is its whole replica list). Returns
/// the replication factor.
pub fn manual_assignment(
    assignments: &[Vec<i32>],
    live: impl Fn(i32) -> bool,
) -> Result<i16, KafkaError> {
    partitions(assignments.len() as i32)?;
    let invalid = |m: String| KafkaError::new(KafkaCode::InvalidReplicaAssignment, m);
    let rf = assignments[0].len();
    for (p, brokers) in assignments.iter().enumerate() {
        if brokers.is_empty() {
            return Err(invalid(format!(
                "The manual partition assignment of partition {p} is empty."
            )));
        }
        if brokers.len() != rf {
            return Err(invalid(format!(
                "The manual partition assignment of partition {p} has {} replicas, partition 0 has {rf}: \
                 all partitions must have the same number of replicas.",
                brokers.len()
            )));
        }
        if brokers
            .iter()
            .enumerate()
            .any(|(i, b)| brokers[..i].contains(b))
        {
            return Err(invalid(format!(
                "The manual partition assignment of partition {p} includes a broker twice: {brokers:?}."
            )));
        }
        if let Some(b) = brokers.iter().find(|&&b| !live(b)) {
            return Err(invalid(format!(
                "The manual partition assignment includes broker {b}, which is not registered or is fenced."
            )));
        }
    }
    i16::try_from(rf).map_err(|_| invalid(format!("{rf} replicas per partition is too many.")))
}

/// Topic-level configs Kafka knows.
const TOPIC_CONFIGS: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.zstd.level",
    "delete.retention.ms",
    "file.delete.delay.ms",
    "flush.messages",
    "flush.ms",
    "follower.replication.throttled.replicas",
    "index.interval.bytes",
    "leader.replication.throttled.replicas",
    "local.retention.bytes",
    "local.retention.ms",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.downconversion.enable",
    "message.format.version",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.difference.max.ms",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "preallocate",
    "remote.storage.enable",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.jitter.ms",
    "segment.ms",
    "unclean.leader.election.enable",
];

pub fn configs(configs: &BTreeMap<String, String>) -> Result<(), KafkaError> {
    for (k, v) in configs {
        if !TOPIC_CONFIGS.contains(&k.as_str()) {
            return Err(KafkaError::new(
                KafkaCode::InvalidConfig,
                format!("Unknown topic config name: {k}"),
            ));
        }
        crate::config::check_topic_config(k, v)
            .map_err(|e| KafkaError::new(KafkaCode::InvalidConfig, e.message))?;
        let numeric = k.ends_with(".ms") || k.ends_with(".bytes") || k == "flush.messages";
        if numeric && v.parse::<i64>().is_err() {
            return Err(KafkaError::new(
                KafkaCode::InvalidConfig,
                format!("Invalid value {v} for configuration {k}: Not a number of type LONG"),
            ));
        }
        if k == "cleanup.policy"
            && !v
                .split(',')
                .all(|p| matches!(p.trim(), "delete" | "compact"))
        {
            return Err(KafkaError::new(
                KafkaCode::InvalidConfig,
                format!("Invalid value {v} for configuration cleanup.policy: String must be one of: compact, delete"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_name_rules() {
        assert!(topic_name("orders.v1_a-b").is_ok());
        for bad in ["", ".", "..", "bad/name", "sp ace", &"x".repeat(250)] {
            assert_eq!(
                topic_name(bad).unwrap_err().code,
                KafkaCode::InvalidTopic,
                "{bad:?}"
            );
        }
        assert!(topic_name(&"x".repeat(249)).is_ok());
    }

    #[test]
    fn replication_factor_message_matches_kafka() {
        let e = replication_factor(2, 1).unwrap_err();
        assert_eq!(e.code, KafkaCode::InvalidReplicationFactor);
        assert_eq!(
            e.message,
            "Replication factor: 2 larger than available brokers: 1."
        );
    }

    #[test]
    fn dot_underscore_collision_is_refused() {
        let existing = ["a.b".to_string()];
        assert!(no_collision("a_b", existing.iter()).is_err());
        assert!(no_collision("a_c", existing.iter()).is_ok());
    }

    #[test]
    fn unknown_config_is_invalid_config() {
        let mut c = BTreeMap::new();
        c.insert("retention.ms".into(), "1000".into());
        assert!(configs(&c).is_ok());
        c.insert("no.such".into(), "1".into());
        assert_eq!(configs(&c).unwrap_err().code, KafkaCode::InvalidConfig);
    }
}

#[cfg(test)]
mod manual_assignment_tests {
    use super::*;

    fn code(r: Result<i16, KafkaError>) -> KafkaCode {
        r.unwrap_err().code
    }

    #[test]
    fn a_manual_assignment_gives_its_replication_factor_or_kafkas_error() {
        let live = |b: i32| (1..=3).contains(&b);
        assert_eq!(
            manual_assignment(&[vec![1, 2], vec![2, 3]], live).unwrap(),
            2
        );
        let invalid = KafkaCode::InvalidReplicaAssignment;
        assert_eq!(
            code(manual_assignment(&[vec![1, 2], vec![3]], live)),
            invalid
        );
        assert_eq!(code(manual_assignment(&[vec![1, 1]], live)), invalid);
        assert_eq!(code(manual_assignment(&[vec![]], live)), invalid);
        assert_eq!(code(manual_assignment(&[vec![1, 4]], live)), invalid);
        assert_eq!(
            code(manual_assignment(&[], live)),
            KafkaCode::InvalidPartitions
        );
    }
}
