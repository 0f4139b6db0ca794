//! Reassignment plans for `sluice cluster reassign`, pure: Kafka's reassignment JSON
//! (`{"version":1,"partitions":[{"topic":..,"partition":..,"replicas":[..]}]}`, `log_dirs`
//! accepted and ignored), the plan generation that moves replicas onto a set of brokers,
//! the throttled-replica lists Kafka's tool sets on the topics, and the verify report.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One partition's target replicas (first = preferred leader).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPartition {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    /// Kafka's per-replica log directories; sluice has one per broker ("any" only).
    #[serde(default, skip_serializing)]
    pub log_dirs: Option<Vec<String>>,
}

/// A reassignment plan in Kafka's JSON format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub version: i32,
    pub partitions: Vec<PlannedPartition>,
}

impl Plan {
    pub fn new(partitions: Vec<PlannedPartition>) -> Plan {
        Plan {
            version: 1,
            partitions,
        }
    }

    /// Parses and checks a plan: version 1, no partition twice, replicas non-empty and
    /// without repeats.
    pub fn parse(text: &str) -> Result<Plan, String> {
        let plan: Plan =
            serde_json::from_str(text).map_err(|e| format!("the plan is not valid JSON: {e}"))?;
        if plan.version != 1 {
            return Err(format!(
                "unsupported plan version {}, expected 1",
                plan.version
            ));
        }
        let mut seen = BTreeSet::new();
        for p in &plan.partitions {
            if !seen.insert((p.topic.as_str(), p.partition)) {
                return Err(format!(
                    "partition {}-{} appears twice in the plan",
                    p.topic, p.partition
                ));
            }
            let distinct: BTreeSet<i32> = p.replicas.iter().copied().collect();
            if p.replicas.is_empty() || distinct.len() != p.replicas.len() {
                return Err(format!(
                    "partition {}-{}: the replicas {:?} are empty or repeat a broker",
                    p.topic, p.partition, p.replicas
                ));
            }
        }
        Ok(plan)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A partition's current replicas, as the metadata shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
}

/// How replicas move onto the allowed brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// Only replicas on brokers not allowed move (decommission): least data moved.
    OffDisallowed,
    /// Then replicas also move from the most to the least loaded allowed broker until
    /// the counts differ by at most one (adding a broker).
    Even,
}

/// The plan that puts every partition of `current` on `brokers` only, keeping each
/// partition's replica count and every replica already on an allowed broker where the
/// spread allows; a replaced replica's place in the list (and so the preferred leader
/// order) goes to its replacement. Only partitions that change are in the plan.
pub fn generate(current: &[Current], brokers: &[i32], spread: Spread) -> Result<Plan, String> {
    let allowed: BTreeSet<i32> = brokers.iter().copied().collect();
    if allowed.is_empty() {
        return Err("no brokers to place the replicas on".into());
    }
    let mut load: BTreeMap<i32, usize> = allowed.iter().map(|&b| (b, 0)).collect();
    let mut slots: Vec<Vec<Option<i32>>> = Vec::with_capacity(current.len());
    for c in current {
        if c.replicas.len() > allowed.len() {
            return Err(format!(
                "{}-{} has {} replicas but only {} brokers are given",
                c.topic,
                c.partition,
                c.replicas.len(),
                allowed.len()
            ));
        }
        let kept: Vec<Option<i32>> = c
            .replicas
            .iter()
            .map(|b| allowed.contains(b).then_some(*b))
            .collect();
        for b in kept.iter().flatten() {
            *load.entry(*b).or_default() += 1;
        }
        slots.push(kept);
    }
    // Fill the places of replicas on disallowed brokers with the least loaded broker.
    for s in &mut slots {
        for k in 0..s.len() {
            if s[k].is_some() {
                continue;
            }
            let pick = least_loaded(&load, s).ok_or("no broker left for a replica")?;
            *load.get_mut(&pick).expect("allowed") += 1;
            s[k] = Some(pick);
        }
    }
    if spread == Spread::Even {
        even_out(&mut slots, &mut load);
    }
    let partitions = current
        .iter()
        .zip(slots)
        .map(|(c, s)| PlannedPartition {
            topic: c.topic.clone(),
            partition: c.partition,
            replicas: s.into_iter().flatten().collect(),
            log_dirs: None,
        })
        .zip(current)
        .filter(|(p, c)| p.replicas != c.replicas)
        .map(|(p, _)| p)
        .collect();
    Ok(Plan::new(partitions))
}

/// The allowed broker with the fewest replicas that `taken` does not hold (lowest id first).
fn least_loaded(load: &BTreeMap<i32, usize>, taken: &[Option<i32>]) -> Option<i32> {
    load.iter()
        .filter(|(b, _)| !taken.contains(&Some(**b)))
        .min_by_key(|(b, n)| (**n, **b))
        .map(|(b, _)| *b)
}

/// Moves replicas from the most to the least loaded broker until the loads differ by at
/// most one, a follower place before a leader place.
fn even_out(slots: &mut [Vec<Option<i32>>], load: &mut BTreeMap<i32, usize>) {
    let total: usize = load.values().sum();
    for _ in 0..=total {
        let (&lo, &min) = load
            .iter()
            .min_by_key(|(b, n)| (**n, **b))
            .expect("brokers");
        // The overloaded brokers, most loaded first.
        let mut over: Vec<(i32, usize)> = load
            .iter()
            .filter(|(_, n)| **n > min + 1)
            .map(|(b, n)| (*b, *n))
            .collect();
        if over.is_empty() {
            return;
        }
        over.sort_by_key(|(b, n)| (std::cmp::Reverse(*n), *b));
        let place = (1..=2).find_map(|pass| {
            over.iter().find_map(|&(hi, _)| {
                slots.iter().enumerate().find_map(|(i, s)| {
                    if s.contains(&Some(lo)) {
                        return None;
                    }
                    let k = s.iter().position(|b| *b == Some(hi))?;
                    (pass == 2 || k > 0).then_some((i, k, hi))
                })
            })
        });
        let Some((i, k, hi)) = place else { return };
        slots[i][k] = Some(lo);
        *load.get_mut(&hi).expect("allowed") -= 1;
        *load.get_mut(&lo).expect("allowed") += 1;
    }
}

/// Kafka's throttled-replica lists for a move: the leader side throttles every current
/// replica (they may serve the new ones), the follower side the replicas being added.
/// Each list is `partition:broker,...` per topic.
pub fn throttled_replicas(current: &[Current], plan: &Plan) -> BTreeMap<String, (String, String)> {
    let mut out: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for p in &plan.partitions {
        let now = current
            .iter()
            .find(|c| c.topic == p.topic && c.partition == p.partition)
            .map_or(&[][..], |c| &c.replicas[..]);
        let (leader, follower) = out.entry(p.topic.clone()).or_default();
        leader.extend(now.iter().map(|b| format!("{}:{b}", p.partition)));
        follower.extend(
            p.replicas
                .iter()
                .filter(|b| !now.contains(b))
                .map(|b| format!("{}:{b}", p.partition)),
        );
    }
    out.into_iter()
        .map(|(t, (l, f))| (t, (l.join(","), f.join(","))))
        .collect()
}

/// Where one planned partition stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Done,
    Moving,
    /// No move in progress, but the replicas are not the planned ones (cancelled, or
    /// replaced by another reassignment).
    Differs(Vec<i32>),
    Missing,
}

/// Each planned partition's progress, given the moves in progress and current replicas.
pub fn verify(
    plan: &Plan,
    ongoing: &BTreeSet<(String, i32)>,
    current: &[Current],
) -> Vec<(PlannedPartition, Progress)> {
    plan.partitions
        .iter()
        .map(|p| {
            let now = current
                .iter()
                .find(|c| c.topic == p.topic && c.partition == p.partition);
            let progress = if ongoing.contains(&(p.topic.clone(), p.partition)) {
                Progress::Moving
            } else {
                match now {
                    None => Progress::Missing,
                    Some(c) if c.replicas == p.replicas => Progress::Done,
                    Some(c) => Progress::Differs(c.replicas.clone()),
                }
            };
            (p.clone(), progress)
        })
        .collect()
}

/// Kafka's wording for one partition's progress.
pub fn progress_line(p: &PlannedPartition, progress: &Progress) -> String {
    let name = format!("{}-{}", p.topic, p.partition);
    match progress {
        Progress::Done => format!("Reassignment of partition {name} is completed."),
        Progress::Moving => format!("Reassignment of partition {name} is still in progress."),
        Progress::Differs(now) => format!(
            "There is no active reassignment of partition {name}, but replica set is {now:?} rather than {:?}.",
            p.replicas
        ),
        Progress::Missing => format!("Partition {name} does not exist."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(topic: &str, partition: i32, replicas: &[i32]) -> Current {
        Current {
            topic: topic.into(),
            partition,
            replicas: replicas.to_vec(),
        }
    }

    fn loads(current: &[Current], plan: &Plan) -> BTreeMap<i32, usize> {
        let mut load = BTreeMap::new();
        for c in current {
            let replicas = plan
                .partitions
                .iter()
                .find(|p| p.topic == c.topic && p.partition == c.partition)
                .map_or(&c.replicas, |p| &p.replicas);
            for b in replicas {
                *load.entry(*b).or_insert(0) += 1;
            }
        }
        load
    }

    #[test]
    fn the_json_format_is_kafkas() {
        let text = r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[2,3],"log_dirs":["any","any"]}]}"#;
        let plan = Plan::parse(text).unwrap();
        assert_eq!(plan.partitions[0].replicas, vec![2, 3]);
        assert_eq!(
            plan.to_json(),
            r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[2,3]}]}"#
        );
        assert!(Plan::parse(r#"{"version":2,"partitions":[]}"#).is_err());
        let twice = r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1]},{"topic":"t","partition":0,"replicas":[2]}]}"#;
        assert!(Plan::parse(twice).is_err());
        let repeat = r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,1]}]}"#;
        assert!(Plan::parse(repeat).is_err());
    }

    #[test]
    fn decommission_moves_only_the_replicas_of_the_leaving_broker_evenly() {
        let current: Vec<Current> = (0..6)
            .map(|p| {
                let b = |k: i32| (p + k) % 4 + 1;
                cur("t", p, &[b(0), b(1), b(2)])
            })
            .collect();
        let plan = generate(&current, &[1, 2, 3], Spread::OffDisallowed).unwrap();
        for p in &plan.partitions {
            assert!(!p.replicas.contains(&4), "{p:?}");
            let before = &current[p.partition as usize].replicas;
            // every replica not on broker 4 stays, in its place
            for (k, b) in before.iter().enumerate() {
                if *b != 4 {
                    assert_eq!(p.replicas[k], *b);
                }
            }
        }
        let moved = current.iter().filter(|c| c.replicas.contains(&4)).count();
        assert_eq!(plan.partitions.len(), moved);
        let load = loads(&current, &plan);
        assert_eq!(load.values().sum::<usize>(), 18);
        assert!(load.values().all(|n| *n == 6), "{load:?}");
    }

    #[test]
    fn adding_a_broker_evens_the_load_and_keeps_most_replicas() {
        let current: Vec<Current> = (0..4).map(|p| cur("t", p, &[1, 2, 3])).collect();
        let plan = generate(&current, &[1, 2, 3, 4], Spread::Even).unwrap();
        let load = loads(&current, &plan);
        assert_eq!(load.values().sum::<usize>(), 12);
        assert!(load.values().all(|n| *n == 3), "{load:?}");
        // three replicas move to broker 4, each in a different partition; broker 1 leads
        // everywhere, so one leader place has to move (the follower places go first)
        assert_eq!(plan.partitions.len(), 3);
        for p in &plan.partitions {
            assert_eq!(p.replicas.iter().filter(|b| **b == 4).count(), 1);
        }
        let leading = plan.partitions.iter().filter(|p| p.replicas[0] == 4);
        assert_eq!(leading.count(), 1);
    }

    #[test]
    fn a_plan_already_in_place_is_empty_and_too_few_brokers_fail() {
        let current = vec![cur("t", 0, &[1, 2]), cur("t", 1, &[2, 1])];
        assert!(generate(&current, &[1, 2], Spread::Even)
            .unwrap()
            .partitions
            .is_empty());
        assert!(generate(&current, &[1], Spread::Even).is_err());
        assert!(generate(&current, &[], Spread::Even).is_err());
    }

    #[test]
    fn throttles_name_current_replicas_as_leaders_and_new_ones_as_followers() {
        let current = vec![cur("t", 0, &[1, 2]), cur("t", 1, &[2, 3])];
        let plan = Plan::new(vec![PlannedPartition {
            topic: "t".into(),
            partition: 0,
            replicas: vec![3, 2],
            log_dirs: None,
        }]);
        let t = throttled_replicas(&current, &plan);
        assert_eq!(t["t"], ("0:1,0:2".to_owned(), "0:3".to_owned()));
    }

    #[test]
    fn verify_tells_done_moving_and_different() {
        let plan = Plan::new(vec![
            PlannedPartition {
                topic: "t".into(),
                partition: 0,
                replicas: vec![2],
                log_dirs: None,
            },
            PlannedPartition {
                topic: "t".into(),
                partition: 1,
                replicas: vec![3],
                log_dirs: None,
            },
            PlannedPartition {
                topic: "t".into(),
                partition: 2,
                replicas: vec![3],
                log_dirs: None,
            },
        ]);
        let current = vec![cur("t", 0, &[2]), cur("t", 1, &[3, 1]), cur("t", 2, &[1])];
        let ongoing: BTreeSet<(String, i32)> = [("t".to_owned(), 1)].into();
        let v = verify(&plan, &ongoing, &current);
        assert_eq!(v[0].1, Progress::Done);
        assert_eq!(v[1].1, Progress::Moving);
        assert_eq!(v[2].1, Progress::Differs(vec![1]));
        assert!(progress_line(&v[0].0, &v[0].1).ends_with("is completed."));
    }
}
