//! Task queues with scheduler shares: each shard runs produce work and fetch work in their
//! own glommio task queues, so that when both have runnable tasks the core is divided in
//! proportion to their shares (`produce_shares`, `fetch_shares`). Everything else
//! (connections, the mesh, groups, the controller) runs in the executor's default queue.
//!
//! A task spawned from inside a queue stays in it (glommio's `spawn_local` uses the running
//! task's queue), so one `spawn_in` at the entry of a request classifies all its work.
//! Replication and compaction get their own classes when those features exist.

use std::cell::RefCell;
use std::future::Future;

use glommio::{Latency, Shares, TaskQueueHandle};

use crate::config::RuntimeSettings;

/// The kinds of work with their own share of a core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskClass {
    /// Produce requests and the log flushers (O_DIRECT writes, fdatasync).
    Produce,
    /// Fetch requests and their long polls.
    Fetch,
}

struct Queues {
    produce: TaskQueueHandle,
    fetch: TaskQueueHandle,
}

thread_local! {
    static QUEUES: RefCell<Option<Queues>> = const { RefCell::new(None) };
}

/// Creates this shard's task queues. Call once per shard, on its executor, before serving.
pub fn install_task_queues(settings: &RuntimeSettings) {
    let ex = glommio::executor();
    let produce = ex.create_task_queue(
        Shares::Static(settings.produce_shares),
        Latency::NotImportant,
        "produce",
    );
    let fetch = ex.create_task_queue(
        Shares::Static(settings.fetch_shares),
        Latency::NotImportant,
        "fetch",
    );
    QUEUES.with(|q| *q.borrow_mut() = Some(Queues { produce, fetch }));
}

fn handle(class: TaskClass) -> Option<TaskQueueHandle> {
    QUEUES.with(|q| {
        q.borrow().as_ref().map(|q| match class {
            TaskClass::Produce => q.produce,
            TaskClass::Fetch => q.fetch,
        })
    })
}

/// Spawns `fut` in `class`'s queue on this shard; in the current queue where none was
/// installed (tools, tests).
pub fn spawn_in<T: 'static>(
    class: TaskClass,
    fut: impl Future<Output = T> + 'static,
) -> glommio::Task<T> {
    match handle(class) {
        Some(h) => match glommio::spawn_local_into(super::home_waker::HomeWoken::new(fut), h) {
            Ok(task) => task,
            Err(e) => unreachable!("a queue this shard created is gone: {e}"),
        },
        None => glommio::spawn_local(super::home_waker::HomeWoken::new(fut)),
    }
}

/// The shares `class`'s queue runs with on this shard, if installed.
pub fn task_queue_shares(class: TaskClass) -> Option<usize> {
    let h = handle(class)?;
    glommio::executor()
        .task_queue_stats(h)
        .ok()
        .map(|s| s.current_shares())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_run_with_the_configured_shares_and_take_their_tasks() {
        crate::runtime::block_on(async {
            assert_eq!(task_queue_shares(TaskClass::Fetch), None);
            install_task_queues(&RuntimeSettings {
                produce_shares: 250,
                fetch_shares: 750,
                ..RuntimeSettings::default()
            });
            assert_eq!(task_queue_shares(TaskClass::Produce), Some(250));
            assert_eq!(task_queue_shares(TaskClass::Fetch), Some(750));
            let fetch = handle(TaskClass::Fetch).unwrap();
            let ran_in = spawn_in(TaskClass::Fetch, async {
                // A task spawned from inside stays in the same queue.
                glommio::spawn_local(async { glommio::executor().current_task_queue() }).await
            })
            .await;
            assert_eq!(ran_in, fetch);
        });
    }
}
