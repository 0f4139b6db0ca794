//! The server-side partition assignors of the KIP-848 consumer group protocol: `uniform`
//! (Kafka's default: balanced, sticky) and `range` (per topic, contiguous ranges by member
//! id). Pure functions from subscriptions, partition counts and the current assignment to the
//! target assignment; no I/O, no time.

use std::collections::{BTreeMap, BTreeSet};

/// Partitions by topic name.
pub type Assignment = BTreeMap<String, BTreeSet<i32>>;

/// The assignors a member may name in `group.remote.assignor`; the first is the default.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// What the assignor knows about one member.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub id: String,
    pub subscribed: BTreeSet<String>,
}

/// Runs the assignor `name` (one of [`ASSIGNORS`]). `partitions` maps existing topics to
/// their partition counts (unknown subscribed topics are skipped); `current` is the target
/// assignment so far, which `uniform` keeps where balance allows. Every member gets an
/// entry, empty if it gets nothing.
pub fn assign(
    name: &str,
    members: &[MemberSpec],
    partitions: &BTreeMap<String, i32>,
    current: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    match name {
        "range" => range(members, partitions),
        _ => uniform(members, partitions, current),
    }
}

/// Per topic: its subscribers sorted by member id share its partitions in contiguous ranges,
/// the first `count % subscribers` members one more than the others.
pub fn range(
    members: &[MemberSpec],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out = empty_for(members);
    for (topic, &count) in partitions {
        let mut subscribers: Vec<&str> = members
            .iter()
            .filter(|m| m.subscribed.contains(topic))
            .map(|m| m.id.as_str())
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        subscribers.sort_unstable();
        let n = subscribers.len() as i32;
        let (each, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, id) in subscribers.iter().enumerate() {
            let take = each + i32::from((i as i32) < extra);
            let set: BTreeSet<i32> = (next..next + take).collect();
            next += take;
            if !set.is_empty() {
                add(&mut out, id, topic, set);
            }
        }
    }
    out
}

/// Balanced and sticky: a member keeps what it had while it stays subscribed and under its
/// share, the rest goes to the least loaded subscriber, then partitions move from the most to
/// the least loaded member while that narrows the gap.
pub fn uniform(
    members: &[MemberSpec],
    partitions: &BTreeMap<String, i32>,
    current: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let mut out = empty_for(members);
    let subscribed: BTreeMap<&str, &BTreeSet<String>> = members
        .iter()
        .map(|m| (m.id.as_str(), &m.subscribed))
        .collect();
    let all: Vec<(String, i32)> = partitions
        .iter()
        .filter(|(t, _)| members.iter().any(|m| m.subscribed.contains(*t)))
        .flat_map(|(t, &n)| (0..n).map(move |p| (t.clone(), p)))
        .collect();
    if members.is_empty() || all.is_empty() {
        return out;
    }
    let share = all.len().div_ceil(members.len());
    let mut load: BTreeMap<&str, usize> = subscribed.keys().map(|id| (*id, 0)).collect();
    let mut taken: BTreeSet<(String, i32)> = BTreeSet::new();
    // 1. Stickiness: keep current partitions that are still valid, up to the share.
    for (id, assignment) in current {
        let Some(topics) = subscribed.get(id.as_str()) else {
            continue;
        };
        for (topic, ps) in assignment {
            let count = partitions.get(topic).copied().unwrap_or(0);
            for &p in ps {
                let key = (topic.clone(), p);
                let l = load.get(id.as_str()).copied().unwrap_or(0);
                if topics.contains(topic) && p < count && l < share && taken.insert(key) {
                    add(&mut out, id, topic, BTreeSet::from([p]));
                    *load.entry(id.as_str()).or_default() += 1;
                }
            }
        }
    }
    // 2. The rest, each to its least loaded subscriber (ties: smallest member id).
    for (topic, p) in &all {
        if taken.contains(&(topic.clone(), *p)) {
            continue;
        }
        let Some(id) = least_loaded(&load, &subscribed, topic) else {
            continue;
        };
        add(&mut out, id, topic, BTreeSet::from([*p]));
        *load.entry(id).or_default() += 1;
    }
    rebalance(&mut out, &mut load, &subscribed);
    out
}

fn least_loaded<'a>(
    load: &BTreeMap<&'a str, usize>,
    subscribed: &BTreeMap<&'a str, &BTreeSet<String>>,
    topic: &str,
) -> Option<&'a str> {
    load.iter()
        .filter(|(id, _)| subscribed.get(*id).is_some_and(|t| t.contains(topic)))
        .min_by_key(|(id, l)| (**l, **id))
        .map(|(id, _)| *id)
}

/// Moves one partition at a time from the most to the least loaded member that can take it,
/// while their loads differ by more than one.
fn rebalance<'a>(
    out: &mut BTreeMap<String, Assignment>,
    load: &mut BTreeMap<&'a str, usize>,
    subscribed: &BTreeMap<&'a str, &BTreeSet<String>>,
) {
    // Each move narrows the spread, so this ends; the bound is a guard.
    for _ in 0..load.values().sum::<usize>() + 1 {
        let mut by_load: Vec<(&str, usize)> = load.iter().map(|(k, v)| (*k, *v)).collect();
        by_load.sort_by_key(|(id, l)| (std::cmp::Reverse(*l), *id));
        let mut moved = false;
        'search: for &(from, from_load) in &by_load {
            for &(to, to_load) in by_load.iter().rev() {
                if from_load <= to_load + 1 {
                    continue;
                }
                let movable = out.get(from).and_then(|a| {
                    a.iter()
                        .filter(|(t, _)| subscribed.get(to).is_some_and(|s| s.contains(*t)))
                        .find_map(|(t, ps)| ps.iter().next_back().map(|p| (t.clone(), *p)))
                });
                if let Some((topic, p)) = movable {
                    remove(out, from, &topic, p);
                    add(out, to, &topic, BTreeSet::from([p]));
                    *load.entry(from).or_default() -= 1;
                    *load.entry(to).or_default() += 1;
                    moved = true;
                    break 'search;
                }
            }
        }
        if !moved {
            return;
        }
    }
}

fn empty_for(members: &[MemberSpec]) -> BTreeMap<String, Assignment> {
    members
        .iter()
        .map(|m| (m.id.clone(), Assignment::new()))
        .collect()
}

fn add(out: &mut BTreeMap<String, Assignment>, id: &str, topic: &str, ps: BTreeSet<i32>) {
    out.entry(id.to_owned())
        .or_default()
        .entry(topic.to_owned())
        .or_default()
        .extend(ps);
}

fn remove(out: &mut BTreeMap<String, Assignment>, id: &str, topic: &str, p: i32) {
    if let Some(a) = out.get_mut(id) {
        if let Some(ps) = a.get_mut(topic) {
            ps.remove(&p);
            if ps.is_empty() {
                a.remove(topic);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str]) -> MemberSpec {
        MemberSpec {
            id: id.to_owned(),
            subscribed: topics.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn parts(a: &Assignment, topic: &str) -> Vec<i32> {
        a.get(topic)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    fn every_partition_once(out: &BTreeMap<String, Assignment>, topics: &BTreeMap<String, i32>) {
        let mut seen = BTreeSet::new();
        for a in out.values() {
            for (t, ps) in a {
                for p in ps {
                    assert!(
                        seen.insert((t.clone(), *p)),
                        "{t}-{p} assigned twice: {out:?}"
                    );
                }
            }
        }
        let want: usize = topics.values().map(|&n| n as usize).sum();
        assert_eq!(seen.len(), want, "{out:?}");
    }

    #[test]
    fn range_gives_contiguous_ranges_by_member_id_extra_to_the_first() {
        let topics = BTreeMap::from([("t".to_owned(), 5)]);
        let out = range(&[member("b", &["t"]), member("a", &["t"])], &topics);
        assert_eq!(parts(&out["a"], "t"), vec![0, 1, 2]);
        assert_eq!(parts(&out["b"], "t"), vec![3, 4]);
    }

    #[test]
    fn range_skips_members_not_subscribed_and_unknown_topics() {
        let topics = BTreeMap::from([("t".to_owned(), 2), ("u".to_owned(), 2)]);
        let out = range(
            &[member("a", &["t", "missing"]), member("b", &["u"])],
            &topics,
        );
        assert_eq!(parts(&out["a"], "t"), vec![0, 1]);
        assert!(!out["a"].contains_key("u"));
        assert_eq!(parts(&out["b"], "u"), vec![0, 1]);
    }

    #[test]
    fn uniform_splits_four_partitions_two_and_two() {
        let topics = BTreeMap::from([("t".to_owned(), 4)]);
        let out = uniform(
            &[member("a", &["t"]), member("b", &["t"])],
            &topics,
            &BTreeMap::new(),
        );
        assert_eq!(count(&out["a"]), 2);
        assert_eq!(count(&out["b"]), 2);
        every_partition_once(&out, &topics);
    }

    #[test]
    fn uniform_keeps_what_a_member_had_when_a_second_joins() {
        let topics = BTreeMap::from([("t".to_owned(), 4)]);
        let first = uniform(&[member("b", &["t"])], &topics, &BTreeMap::new());
        assert_eq!(count(&first["b"]), 4);
        let second = uniform(&[member("a", &["t"]), member("b", &["t"])], &topics, &first);
        every_partition_once(&second, &topics);
        assert_eq!(count(&second["a"]), 2);
        assert!(second["b"]["t"].is_subset(&first["b"]["t"]));
    }

    #[test]
    fn uniform_balances_mixed_subscriptions_and_never_assigns_unsubscribed_topics() {
        let topics = BTreeMap::from([("t".to_owned(), 3), ("u".to_owned(), 3)]);
        let out = uniform(
            &[
                member("a", &["t", "u"]),
                member("b", &["u"]),
                member("c", &["t"]),
            ],
            &topics,
            &BTreeMap::new(),
        );
        every_partition_once(&out, &topics);
        assert!(!out["b"].contains_key("t") && !out["c"].contains_key("u"));
        for id in ["a", "b", "c"] {
            assert_eq!(count(&out[id]), 2, "{out:?}");
        }
    }

    proptest::proptest! {
        /// Whatever the subscriptions and history: every partition of a subscribed topic is
        /// assigned exactly once, only to a subscriber, and with identical subscriptions no
        /// member has two more than another.
        #[test]
        fn uniform_is_complete_exclusive_and_balanced(
            counts in proptest::collection::vec(1i32..6, 1..4),
            n_members in 1usize..6,
            history in proptest::collection::vec((0usize..6, 0usize..4, 0i32..6), 0..20),
        ) {
            let topics: BTreeMap<String, i32> =
                counts.iter().enumerate().map(|(i, &n)| (format!("t{i}"), n)).collect();
            let names: Vec<&str> = topics.keys().map(String::as_str).collect();
            let members: Vec<MemberSpec> =
                (0..n_members).map(|i| member(&format!("m{i}"), &names)).collect();
            let mut current: BTreeMap<String, Assignment> = BTreeMap::new();
            for (m, t, p) in history {
                add(&mut current, &format!("m{m}"), &format!("t{t}"), BTreeSet::from([p]));
            }
            let out = uniform(&members, &topics, &current);
            every_partition_once(&out, &topics);
            let loads: Vec<usize> = out.values().map(count).collect();
            let (min, max) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
            proptest::prop_assert!(max - min <= 1, "{:?}", out);
        }
    }
}
