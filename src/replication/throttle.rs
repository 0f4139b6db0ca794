//! The replication throttle (Kafka's names). The broker's rates,
//! `leader.replication.throttled.rate` and `follower.replication.throttled.rate` (bytes/s),
//! come from the config file and can be changed at run time with IncrementalAlterConfigs on
//! this broker's BROKER resource (SET, or DELETE back to the file's value). Unlike Kafka,
//! a dynamic value is held by this process only: it is not in the metadata log and a
//! restart forgets it (`sluice cluster reassign --verify` removes it when the moves are done,
//! as Kafka's tool does). The rates apply to the replicas a topic names in
//! `follower.replication.throttled.replicas` / `leader.replication.throttled.replicas`
//! (`*` = every replica, or `partition:broker,...`).
//!
//! Only the follower side is enforced: each shard's fetchers share the broker's follower
//! rate equally, and a fetcher over its rate leaves the throttled partitions out of its
//! fetches (the others keep replicating) until it is back under it, as Kafka's follower
//! quota does.

use std::sync::atomic::{AtomicU64, Ordering};

pub const LEADER_RATE: &str = "leader.replication.throttled.rate";
pub const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
pub const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
pub const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";

/// Kafka's default rate: Long.MAX_VALUE, no limit.
pub const UNLIMITED: u64 = i64::MAX as u64;

/// The broker's throttle rates, shared by every shard.
#[derive(Debug)]
pub struct ThrottleRates {
    static_leader: u64,
    static_follower: u64,
    leader: AtomicU64,
    follower: AtomicU64,
}

impl ThrottleRates {
    pub fn new(leader: u64, follower: u64) -> Self {
        Self {
            static_leader: leader,
            static_follower: follower,
            leader: AtomicU64::new(leader),
            follower: AtomicU64::new(follower),
        }
    }

    pub fn leader(&self) -> u64 {
        self.leader.load(Ordering::Relaxed)
    }

    pub fn follower(&self) -> u64 {
        self.follower.load(Ordering::Relaxed)
    }

    /// Whether `name` holds a value set at run time (else: the config file's).
    pub fn is_dynamic(&self, name: &str) -> bool {
        match name {
            LEADER_RATE => self.leader() != self.static_leader,
            FOLLOWER_RATE => self.follower() != self.static_follower,
            _ => false,
        }
    }

    /// Checks a dynamic change (`None`: delete) without applying it.
    pub fn check(name: &str, value: Option<&str>) -> Result<Option<u64>, String> {
        if name != LEADER_RATE && name != FOLLOWER_RATE {
            return Err(format!(
                "Broker config {name} is static in sluice: set it in the broker's config file"
            ));
        }
        value
            .map(|v| {
                v.trim().parse::<u64>().map_err(|_| {
                    format!("Invalid value {v} for configuration {name}: Not a number of type LONG")
                })
            })
            .transpose()
    }

    /// Sets (`Some`) or removes (`None`, back to the config file's value) a dynamic rate.
    pub fn set(&self, name: &str, value: Option<u64>) {
        let (cell, fallback) = match name {
            LEADER_RATE => (&self.leader, self.static_leader),
            FOLLOWER_RATE => (&self.follower, self.static_follower),
            _ => return,
        };
        cell.store(value.unwrap_or(fallback), Ordering::Relaxed);
    }
}

/// Whether a `*.replication.throttled.replicas` value names `broker`'s replica of
/// `partition`.
pub fn names_replica(list: &str, partition: i32, broker: i32) -> bool {
    list.split(',').map(str::trim).any(|item| {
        item == "*"
            || item.split_once(':').is_some_and(|(p, b)| {
                p.trim().parse() == Ok(partition) && b.trim().parse() == Ok(broker)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_replica_lists_are_star_or_partition_broker_pairs() {
        assert!(names_replica("*", 3, 7));
        assert!(names_replica("0:1, 3:7", 3, 7));
        assert!(!names_replica("0:1,3:6", 3, 7));
        assert!(!names_replica("", 0, 1));
    }

    #[test]
    fn a_dynamic_rate_falls_back_to_the_static_one_when_deleted() {
        let r = ThrottleRates::new(UNLIMITED, 500);
        assert_eq!(
            ThrottleRates::check(FOLLOWER_RATE, Some("100")),
            Ok(Some(100))
        );
        assert!(ThrottleRates::check(FOLLOWER_RATE, Some("x")).is_err());
        assert!(ThrottleRates::check("num.io.threads", Some("1")).is_err());
        r.set(FOLLOWER_RATE, Some(100));
        assert_eq!(r.follower(), 100);
        assert!(r.is_dynamic(FOLLOWER_RATE));
        r.set(FOLLOWER_RATE, None);
        assert_eq!(r.follower(), 500);
        assert!(!r.is_dynamic(FOLLOWER_RATE));
    }
}
