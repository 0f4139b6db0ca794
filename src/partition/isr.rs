//! The leader's view of its followers (sans-io): each follower's log end offset and when it
//! was last caught up, the high watermark (HW) they allow, and the ISR changes to propose.
//!
//! Fed with events and the current time, it returns what changed; nothing here waits or
//! talks to anyone. The rules are Kafka's:
//! - A follower's log end offset (LEO) is the offset its Fetch asks for: it has everything
//!   below. It is *caught up* at a fetch that asks for the leader's end, or for at least the
//!   end the leader had at its previous fetch (then it was caught up at that previous time).
//! - HW = the minimum, over the leader and the *maximal* ISR (the committed ISR plus a
//!   follower whose addition is proposed but not yet committed), of their LEO; the leader
//!   counts with its durable end. The HW never moves back while this leader leads.
//! - A follower of the committed ISR that was not caught up for `replica.lag.time.max.ms`
//!   is proposed for removal; a follower outside it whose LEO reached the HW is proposed for
//!   addition. One proposal at a time: the next one waits until the metadata answers the
//!   last (a new partition epoch) or the proposal is refused.
//! - The ISR in effect (for `min.insync.replicas`) is the committed one: a change counts
//!   only once the metadata says so.

use std::collections::BTreeMap;

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Follower {
    /// -1 until its first fetch.
    log_end: i64,
    last_caught_up_ms: i64,
    /// The leader's end and the time at this follower's previous fetch.
    last_fetch_leader_end: i64,
    last_fetch_ms: i64,
}

/// The replica layout the metadata gives a leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLayout {
    pub local: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// An ISR change for the controller (Kafka's AlterPartition), made against
/// `partition_epoch`: a controller that moved past it refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// A leader's follower tracking for one partition. See the module docs.
#[derive(Debug, Clone)]
pub struct IsrState {
    layout: ReplicaLayout,
    followers: BTreeMap<i32, Follower>,
    /// The leader's own durable end.
    leader_end: i64,
    high_watermark: i64,
    lag_max_ms: i64,
    in_flight: Option<IsrProposal>,
}

impl IsrState {
    /// A leader starting with `layout` (from the metadata), its log at `leader_end`, its
    /// HW not below `high_watermark` (what it knew as a follower). Every follower in the ISR
    /// counts as caught up now, so none is dropped before it had `lag_max_ms` to fetch.
    pub fn new(
        layout: ReplicaLayout,
        leader_end: i64,
        high_watermark: i64,
        lag_max_ms: i64,
        now: i64,
    ) -> Self {
        debug_assert!(layout.replicas.contains(&layout.local));
        let mut s = Self {
            layout: ReplicaLayout {
                replicas: Vec::new(),
                ..layout.clone()
            },
            followers: BTreeMap::new(),
            leader_end,
            high_watermark: high_watermark.min(leader_end),
            lag_max_ms,
            in_flight: None,
        };
        s.on_layout(layout, now);
        s
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The committed ISR (for `min.insync.replicas`).
    pub fn isr(&self) -> &[i32] {
        &self.layout.isr
    }

    pub fn layout(&self) -> &ReplicaLayout {
        &self.layout
    }

    pub fn set_lag_max_ms(&mut self, lag_max_ms: i64) {
        self.lag_max_ms = lag_max_ms;
    }

    /// The last LEO a follower reported (-1: none yet, or not a follower).
    pub fn follower_end(&self, id: i32) -> i64 {
        self.followers.get(&id).map_or(-1, |f| f.log_end)
    }

    /// New metadata for the partition (same leader). A newer partition epoch answers the
    /// proposal in flight; new followers count as caught up now. Returns whether the HW
    /// moved.
    pub fn on_layout(&mut self, layout: ReplicaLayout, now: i64) -> bool {
        debug_assert_eq!(layout.local, self.layout.local);
        if layout.partition_epoch > self.layout.partition_epoch
            || layout.leader_epoch > self.layout.leader_epoch
        {
            self.in_flight = None;
        }
        self.followers.retain(|id, _| layout.replicas.contains(id));
        for &id in layout.replicas.iter().filter(|&&id| id != layout.local) {
            self.followers.entry(id).or_insert(Follower {
                log_end: -1,
                last_caught_up_ms: now,
                last_fetch_leader_end: -1,
                last_fetch_ms: now,
            });
        }
        self.layout = layout;
        self.advance_hw()
    }

    /// The leader's durable end moved to `end`. Returns whether the HW moved.
    pub fn on_leader_end(&mut self, end: i64) -> bool {
        self.leader_end = self.leader_end.max(end);
        self.advance_hw()
    }

    /// A Fetch from follower `id` asking for `fetch_offset` at `now`. Returns whether the HW
    /// moved. A replica that is not a follower of this partition changes nothing.
    pub fn on_follower_fetch(&mut self, id: i32, fetch_offset: i64, now: i64) -> bool {
        let leader_end = self.leader_end;
        let Some(f) = self.followers.get_mut(&id) else {
            return false;
        };
        if fetch_offset >= leader_end {
            f.last_caught_up_ms = f.last_caught_up_ms.max(now);
        } else if fetch_offset >= f.last_fetch_leader_end {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.log_end = fetch_offset;
        f.last_fetch_leader_end = leader_end;
        f.last_fetch_ms = now;
        self.advance_hw()
    }

    /// The ISR change due now, if any and none is in flight; it is then in flight until the
    /// metadata answers or [`IsrState::proposal_refused`].
    pub fn poll_proposal(&mut self, now: i64) -> Option<IsrProposal> {
        if self.in_flight.is_some() {
            return None;
        }
        let isr = self.shrunk(now).or_else(|| self.expanded())?;
        let proposal = IsrProposal {
            leader_epoch: self.layout.leader_epoch,
            partition_epoch: self.layout.partition_epoch,
            isr,
        };
        self.in_flight = Some(proposal.clone());
        Some(proposal)
    }

    /// The controller refused the proposal in flight (or it could not be sent): the next
    /// poll may propose again.
    pub fn proposal_refused(&mut self) {
        self.in_flight = None;
    }

    /// The committed ISR without the followers that lagged too long, if any did.
    fn shrunk(&self, now: i64) -> Option<Vec<i32>> {
        let lagging = |id: &i32| {
            *id != self.layout.local
                && self
                    .followers
                    .get(id)
                    .is_some_and(|f| now - f.last_caught_up_ms > self.lag_max_ms)
        };
        if !self.layout.isr.iter().any(lagging) {
            return None;
        }
        Some(
            self.layout
                .isr
                .iter()
                .copied()
                .filter(|id| !lagging(id))
                .collect(),
        )
    }

    /// The committed ISR plus the first follower outside it whose end reached the HW.
    fn expanded(&self) -> Option<Vec<i32>> {
        let joining = self.layout.replicas.iter().copied().find(|id| {
            !self.layout.isr.contains(id)
                && self
                    .followers
                    .get(id)
                    .is_some_and(|f| f.log_end >= self.high_watermark)
        })?;
        let mut isr = self.layout.isr.clone();
        isr.push(joining);
        Some(isr)
    }

    /// The committed ISR plus a follower being added.
    fn maximal_isr(&self) -> impl Iterator<Item = i32> + '_ {
        let adding = self
            .in_flight
            .iter()
            .flat_map(|p| p.isr.iter().copied())
            .filter(|id| !self.layout.isr.contains(id));
        self.layout.isr.iter().copied().chain(adding)
    }

    fn advance_hw(&mut self) -> bool {
        let candidate = self
            .maximal_isr()
            .filter(|id| *id != self.layout.local)
            .map(|id| self.followers.get(&id).map_or(-1, |f| f.log_end))
            .fold(self.leader_end, i64::min);
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: i64 = 30_000;

    fn layout(isr: &[i32], partition_epoch: i32) -> ReplicaLayout {
        ReplicaLayout {
            local: 1,
            leader_epoch: 0,
            partition_epoch,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
        }
    }

    fn leader() -> IsrState {
        IsrState::new(layout(&[1, 2, 3], 0), 0, 0, LAG, 1_000)
    }

    #[test]
    fn the_high_watermark_is_the_slowest_in_sync_replica() {
        let mut s = leader();
        assert!(!s.on_leader_end(10));
        assert!(!s.on_follower_fetch(2, 10, 1_010));
        assert_eq!(s.high_watermark(), 0);
        assert!(s.on_follower_fetch(3, 6, 1_010));
        assert_eq!(s.high_watermark(), 6);
        s.on_follower_fetch(3, 10, 1_020);
        assert_eq!(s.high_watermark(), 10);
    }

    #[test]
    fn the_leaders_durable_end_bounds_the_high_watermark() {
        let mut s = leader();
        s.on_leader_end(5);
        s.on_follower_fetch(2, 5, 1_001);
        s.on_follower_fetch(3, 5, 1_001);
        assert_eq!(s.high_watermark(), 5);
        // Followers cannot report more than the leader has; a stale leader end bounds it.
        s.on_follower_fetch(2, 9, 1_002);
        s.on_follower_fetch(3, 9, 1_002);
        assert_eq!(s.high_watermark(), 5);
        assert!(s.on_leader_end(9));
        assert_eq!(s.high_watermark(), 9);
    }

    #[test]
    fn a_follower_lagging_past_the_limit_is_proposed_out_and_counts_once_committed() {
        let mut s = leader();
        s.on_leader_end(10);
        s.on_follower_fetch(2, 10, 2_000);
        s.on_follower_fetch(3, 4, 2_000);
        assert_eq!(s.poll_proposal(1_000 + LAG), None, "not past the limit yet");
        s.on_follower_fetch(2, 10, 1_000 + LAG);
        let p = s.poll_proposal(1_001 + LAG).expect("3 lagged");
        assert_eq!(p.isr, vec![1, 2]);
        assert_eq!(p.partition_epoch, 0);
        assert_eq!(
            s.poll_proposal(1_002 + LAG),
            None,
            "one in flight at a time"
        );
        assert_eq!(s.isr(), &[1, 2, 3], "not in effect until committed");
        assert_eq!(s.high_watermark(), 4);
        assert!(s.on_layout(layout(&[1, 2], 1), 1_003 + LAG));
        assert_eq!(s.isr(), &[1, 2]);
        assert_eq!(s.high_watermark(), 10);
    }

    #[test]
    fn a_follower_that_fetches_the_end_again_and_again_stays_in() {
        let mut s = leader();
        let mut now = 1_000;
        for end in 1..200 {
            now += 1_000;
            s.on_leader_end(end);
            // Always one behind the current end, but at the end of its previous fetch.
            s.on_follower_fetch(2, end - 1, now);
            s.on_follower_fetch(3, end, now);
            assert_eq!(s.poll_proposal(now), None, "at {now}");
        }
    }

    #[test]
    fn a_caught_up_follower_is_proposed_back_in_and_counts_for_the_hw_at_once() {
        let mut s = IsrState::new(layout(&[1, 2], 3), 10, 10, LAG, 1_000);
        s.on_follower_fetch(2, 10, 1_001);
        s.on_follower_fetch(3, 7, 1_001);
        assert_eq!(s.poll_proposal(1_001), None, "3 is behind the HW");
        s.on_follower_fetch(3, 10, 1_002);
        let p = s.poll_proposal(1_002).expect("3 caught up");
        assert_eq!(p.isr, vec![1, 2, 3]);
        assert_eq!(p.partition_epoch, 3);
        // While the addition is in flight, the HW waits for 3 too.
        s.on_leader_end(12);
        s.on_follower_fetch(2, 12, 1_003);
        assert_eq!(s.high_watermark(), 10);
        s.on_follower_fetch(3, 12, 1_003);
        assert_eq!(s.high_watermark(), 12);
    }

    #[test]
    fn a_refused_proposal_may_be_made_again() {
        let mut s = leader();
        let p = s.poll_proposal(2_000 + LAG).expect("both lagged");
        assert_eq!(p.isr, vec![1]);
        s.proposal_refused();
        assert_eq!(s.poll_proposal(2_001 + LAG), Some(p));
    }

    #[test]
    fn the_high_watermark_never_moves_back() {
        let mut s = leader();
        s.on_leader_end(8);
        s.on_follower_fetch(2, 8, 1_001);
        s.on_follower_fetch(3, 8, 1_001);
        assert_eq!(s.high_watermark(), 8);
        // A follower starting over (truncated, new log) reports less.
        s.on_follower_fetch(3, 2, 1_002);
        assert_eq!(s.high_watermark(), 8);
    }

    #[test]
    fn a_leader_alone_in_the_isr_advances_with_its_own_log() {
        let mut s = IsrState::new(layout(&[1], 0), 0, 0, LAG, 0);
        assert!(s.on_leader_end(3));
        assert_eq!(s.high_watermark(), 3);
    }

    /// Random schedules of fetches, leader appends, clock jumps and metadata answers,
    /// replayable from the printed seed: the HW never decreases, never passes the leader's
    /// end, and never passes a committed ISR member's reported end after it was reported.
    #[test]
    fn random_schedules_keep_the_high_watermark_safe() {
        for seed in 0..300u64 {
            run_schedule(seed);
        }
    }

    fn run_schedule(seed: u64) {
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut now = 0i64;
        let mut leader_end = 0i64;
        let mut s = IsrState::new(layout(&[1, 2, 3], 0), 0, 0, 100, now);
        let mut ends = BTreeMap::from([(2, 0i64), (3, 0i64)]);
        let mut hw = 0;
        for step in 0..400 {
            match next(5) {
                0 => {
                    leader_end += next(4) as i64;
                    s.on_leader_end(leader_end);
                }
                1 | 2 => {
                    let id = 2 + next(2) as i32;
                    let end = ends[&id] + next(3) as i64;
                    let end = end.min(leader_end);
                    ends.insert(id, end);
                    s.on_follower_fetch(id, end, now);
                }
                3 => now += next(150) as i64,
                _ => {
                    if let Some(p) = s.poll_proposal(now) {
                        let mut l = s.layout().clone();
                        if next(3) > 0 {
                            l.isr = p.isr;
                            l.partition_epoch += 1;
                            s.on_layout(l, now);
                        } else {
                            s.proposal_refused();
                        }
                    }
                }
            }
            let new_hw = s.high_watermark();
            assert!(new_hw >= hw, "seed {seed} step {step}: HW went back");
            assert!(
                new_hw <= leader_end,
                "seed {seed} step {step}: HW past the leader"
            );
            for id in s.isr().iter().filter(|id| **id != 1) {
                assert!(
                    new_hw <= ends[id] || new_hw == hw,
                    "seed {seed} step {step}: HW {new_hw} passed ISR member {id} at {}",
                    ends[id]
                );
            }
            hw = new_hw;
        }
    }
}
