//! Replication's I/O shell on each shard: the follower fetchers ([`fetcher`]) that copy the
//! partitions this shard follows from their leaders, and the ISR proposer ([`isr`]) that
//! sends a leader's ISR changes to the controller; before following a leader in a new epoch
//! a partition cuts the tail that leader does not have ([`truncation`]). The decisions live sans-io in
//! `partition::isr` and `partition::leadership`; this layer only moves bytes and requests.
//! The fetchers honour the follower replication throttle ([`throttle`]).
//! Uses base, client, partition, shard, controller, router.

pub mod fetcher;
pub mod isr;
pub mod throttle;
mod truncation;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::router::Router;
use crate::runtime;

/// Starts this shard's replication tasks; they end with the router (at shutdown).
pub fn install(
    router: &Rc<Router>,
    replica_lag_time_max_ms: i64,
    rates: Arc<throttle::ThrottleRates>,
) {
    router
        .local_shard()
        .set_replica_lag_max_ms(replica_lag_time_max_ms);
    let every = isr::check_interval(Duration::from_millis(replica_lag_time_max_ms as u64));
    runtime::detach(isr::propose_changes(Rc::downgrade(router), every));
    runtime::detach(fetcher::manage(Rc::downgrade(router), rates));
}
