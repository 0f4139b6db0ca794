//! Producer ids: each shard hands them out from a block it takes from the controller, which
//! records every block durably, so an id is never given twice, across restarts too.

use std::cell::Cell;

use crate::base::KafkaError;
use crate::router::Router;

thread_local! {
    /// This shard's current block: `[next, end)`.
    static BLOCK: Cell<(i64, i64)> = const { Cell::new((0, 0)) };
}

/// The next unused producer id.
pub async fn next(router: &Router) -> Result<i64, KafkaError> {
    loop {
        if let Some(id) = take_local() {
            return Ok(id);
        }
        let (first, count) = router.allocate_producer_ids().await?;
        // Another task of this shard may have refilled the block meanwhile; the newer block
        // wins and the other's ids are simply never used.
        BLOCK.with(|b| b.set((first, first + count)));
    }
}

fn take_local() -> Option<i64> {
    BLOCK.with(|b| {
        let (next, end) = b.get();
        (next < end).then(|| {
            b.set((next + 1, end));
            next
        })
    })
}
