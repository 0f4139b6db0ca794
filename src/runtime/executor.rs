//! One pinned glommio executor per shard.

use std::future::Future;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

/// A running shard thread.
pub struct ShardHandle<T: Send + 'static> {
    inner: glommio::ExecutorJoinHandle<T>,
}

impl<T: Send + 'static> ShardHandle<T> {
    /// Waits for the shard's main future to finish.
    pub fn join(self) -> std::io::Result<T> {
        self.inner
            .join()
            .map_err(|e| std::io::Error::other(format!("shard thread failed: {e}")))
    }
}

/// Registered I/O memory per shard: small, because `ulimit -l` is 8 MiB on our machines
/// and every shard (and every benchmark client) registers its own.
const IO_MEMORY: usize = 1 << 20;

/// Starts `shards` executors, shard `i` pinned to CPU `cpus[i % cpus.len()]`, each running
/// `main(i)`. Pinning is skipped when the process may not run on that CPU.
pub fn run_shards<G, F, T>(shards: usize, main: G) -> std::io::Result<Vec<ShardHandle<T>>>
where
    G: Fn(usize) -> F + Clone + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    run_shards_spinning(shards, Duration::ZERO, main)
}

/// [`run_shards`] whose executors poll their io_uring rings for `spin_before_park` before
/// sleeping when idle (zero: sleep at once).
pub fn run_shards_spinning<G, F, T>(
    shards: usize,
    spin_before_park: Duration,
    main: G,
) -> std::io::Result<Vec<ShardHandle<T>>>
where
    G: Fn(usize) -> F + Clone + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let mut handles = Vec::with_capacity(shards);
    for shard in 0..shards {
        let placement = if cpus.is_empty() || shards > cpus.len() {
            Placement::Unbound
        } else {
            Placement::Fixed(cpus[shard % cpus.len()])
        };
        let main = main.clone();
        let mut builder = LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{shard}"))
            .io_memory(IO_MEMORY);
        if !spin_before_park.is_zero() {
            builder = builder.spin_before_park(spin_before_park);
        }
        let handle = builder
            .spawn(move || super::home_waker::HomeWoken::new(main(shard)))
            .map_err(|e| std::io::Error::other(format!("cannot start shard {shard}: {e}")))?;
        handles.push(ShardHandle { inner: handle });
    }
    Ok(handles)
}
