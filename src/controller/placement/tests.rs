use std::collections::BTreeMap;

use super::*;
use crate::base::KafkaCode;
use crate::controller::MetadataRecord;

/// A cluster of live brokers `(node_id, rack)`, each with `shards` shards.
fn cluster(brokers: &[(i32, Option<&str>)], shards: usize) -> ClusterSnapshot {
    let mut s = ClusterSnapshot::joining(brokers[0].0, "c".into());
    for &(node_id, rack) in brokers {
        s.apply(&MetadataRecord::RegisterBroker {
            node_id,
            epoch: 1,
            host: "h".into(),
            port: 9092,
            rack: rack.map(str::to_owned),
            shards,
        });
        s.apply(&MetadataRecord::UnfenceBroker { node_id, epoch: 1 });
    }
    s
}

fn plain(ids: impl IntoIterator<Item = i32>) -> ClusterSnapshot {
    let brokers: Vec<(i32, Option<&str>)> = ids.into_iter().map(|id| (id, None)).collect();
    cluster(&brokers, 1)
}

fn new(first: i32, count: i32, rf: i16) -> NewPartitions {
    NewPartitions {
        first,
        count,
        replication_factor: rf,
    }
}

#[test]
fn round_robin_matches_kafkas_five_broker_layout() {
    let snap = plain(0..5);
    let a = assign(&snap, new(0, 10, 3), 0).unwrap();
    // The layout Kafka's AdminUtils documents for 5 brokers, 10 partitions, RF 3 with a
    // start index and shift of 0: the shift grows after each round of 5.
    assert_eq!(a.replicas[0], vec![0, 1, 2]);
    assert_eq!(a.replicas[4], vec![4, 0, 1]);
    assert_eq!(a.replicas[5], vec![0, 2, 3]);
    assert_eq!(a.replicas[9], vec![4, 1, 2]);
}

#[test]
fn leaders_and_replicas_spread_evenly_for_any_start() {
    for random in [0u64, 1, 7, 0xdead_beef_0000_0002, u64::MAX] {
        let snap = plain([1, 2, 3]);
        let a = assign(&snap, new(0, 30, 3), random).unwrap();
        let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
        let mut replicas: BTreeMap<i32, usize> = BTreeMap::new();
        for r in &a.replicas {
            *leaders.entry(r[0]).or_default() += 1;
            let distinct: std::collections::BTreeSet<_> = r.iter().collect();
            assert_eq!(distinct.len(), 3, "no broker twice in {r:?}");
            for b in r {
                *replicas.entry(*b).or_default() += 1;
            }
        }
        assert!(leaders.values().all(|&n| n == 10), "{random}: {leaders:?}");
        assert!(
            replicas.values().all(|&n| n == 30),
            "{random}: {replicas:?}"
        );
    }
}

#[test]
fn the_random_number_moves_the_start() {
    let snap = plain([1, 2, 3]);
    let leaders = |random| -> Vec<i32> {
        let a = assign(&snap, new(0, 3, 1), random).unwrap();
        a.replicas.iter().map(|r| r[0]).collect()
    };
    assert_eq!(leaders(0), vec![1, 2, 3]);
    assert_eq!(leaders(1), vec![2, 3, 1]);
    assert_eq!(leaders(5), vec![3, 1, 2]);
}

#[test]
fn added_partitions_continue_the_round_robin() {
    let snap = plain([1, 2, 3]);
    let a = assign(&snap, new(4, 2, 2), 0).unwrap();
    let leaders: Vec<i32> = a.replicas.iter().map(|r| r[0]).collect();
    assert_eq!(
        leaders,
        vec![2, 3],
        "partitions 4 and 5 start where 4 % 3 points"
    );
}

#[test]
fn each_rack_gets_a_replica_before_any_rack_gets_two() {
    let racks = [
        (1, Some("a")),
        (2, Some("a")),
        (3, Some("b")),
        (4, Some("b")),
        (5, Some("c")),
        (6, Some("c")),
    ];
    let rack_of: BTreeMap<i32, &str> = racks.iter().map(|(id, r)| (*id, r.unwrap())).collect();
    for random in 0..40u64 {
        let snap = cluster(&racks, 1);
        let random = random.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for rf in [2i16, 3, 4, 6] {
            let a = assign(&snap, new(0, 12, rf), random).unwrap();
            for r in &a.replicas {
                let mut per_rack: BTreeMap<&str, usize> = BTreeMap::new();
                for b in r {
                    *per_rack.entry(rack_of[b]).or_default() += 1;
                }
                let most = *per_rack.values().max().unwrap();
                let least = if per_rack.len() < 3 {
                    0
                } else {
                    *per_rack.values().min().unwrap()
                };
                assert!(most - least <= 1, "rf {rf} random {random}: {r:?}");
                let distinct: std::collections::BTreeSet<_> = r.iter().collect();
                assert_eq!(distinct.len(), r.len(), "{r:?}");
            }
        }
    }
}

#[test]
fn rack_alternated_order_takes_one_broker_per_rack_in_turn() {
    let live = [
        (1, Some("r1")),
        (2, Some("r1")),
        (3, Some("r1")),
        (4, Some("r2")),
        (5, Some("r2")),
        (6, Some("r3")),
    ];
    assert_eq!(rack_alternated(&live), vec![1, 4, 6, 2, 5, 3]);
}

#[test]
fn some_brokers_without_a_rack_fall_back_to_plain_round_robin() {
    let snap = cluster(&[(1, Some("a")), (2, None), (3, Some("a"))], 1);
    let a = assign(&snap, new(0, 3, 3), 0).unwrap();
    assert_eq!(a.replicas[0], vec![1, 2, 3]);
}

#[test]
fn replication_factor_above_live_brokers_is_refused_as_kafka_does() {
    let mut snap = plain([1, 2, 3]);
    snap.apply(&MetadataRecord::FenceBroker {
        node_id: 3,
        epoch: 1,
    });
    let err = assign(&snap, new(0, 1, 3), 0).unwrap_err();
    assert_eq!(err.code, KafkaCode::InvalidReplicationFactor);
    assert_eq!(
        err.message,
        "Replication factor: 3 larger than available brokers: 2."
    );
    let a = assign(&snap, new(0, 4, 2), 0).unwrap();
    assert!(
        a.replicas.iter().flatten().all(|&b| b != 3),
        "a fenced broker gets no replica: {a:?}"
    );
}

#[test]
fn each_replica_goes_to_its_brokers_least_loaded_shard() {
    let mut snap = cluster(&[(1, None)], 2);
    let a = assign(&snap, new(0, 3, 1), 0).unwrap();
    assert_eq!(a.replica_shards, vec![vec![0], vec![1], vec![0]]);
    assert_eq!(a.leader_shards(), vec![0, 1, 0]);
    snap.apply(&MetadataRecord::CreateTopic {
        name: "a".into(),
        topic_id: [1; 16],
        shards: a.leader_shards(),
        replication_factor: 1,
        configs: Default::default(),
        replicas: a.replicas,
        replica_shards: a.replica_shards,
    });
    let b = assign(&snap, new(0, 1, 1), 0).unwrap();
    assert_eq!(b.replica_shards, vec![vec![1]], "shard 1 holds fewer");
}

#[test]
fn shards_balance_per_broker_across_replicas() {
    let snap = cluster(&[(1, None), (2, None), (3, None)], 2);
    let a = assign(&snap, new(0, 6, 3), 3).unwrap();
    let mut load: BTreeMap<(i32, usize), usize> = BTreeMap::new();
    for (brokers, shards) in a.replicas.iter().zip(&a.replica_shards) {
        for (b, s) in brokers.iter().zip(shards) {
            *load.entry((*b, *s)).or_default() += 1;
        }
    }
    assert_eq!(load.len(), 6);
    assert!(load.values().all(|&n| n == 3), "{load:?}");
}
