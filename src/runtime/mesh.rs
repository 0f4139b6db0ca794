//! The channel mesh: one bounded single-producer channel between every pair of shards.
//! A shard joins once at start and gets senders to every peer and a receiver from each.
//! Every message carries the instant it was sent; the receiving shard records the hop's
//! latency (`metrics::Stage::CrossShardHop`) when it takes the message out.

use std::time::Instant;

use futures::StreamExt;
use glommio::channels::channel_mesh::{MeshBuilder, Receivers, Senders};

use crate::metrics::{self, Stage};

/// A message on the wire of the mesh: when it was sent, and what.
type Stamped<T> = (Instant, T);

/// The mesh before shards join; cloned into every shard.
pub struct Mesh<T: Send + 'static> {
    builder: MeshBuilder<Stamped<T>, glommio::channels::channel_mesh::Full>,
}

impl<T: Send + 'static> Clone for Mesh<T> {
    fn clone(&self) -> Self {
        Self {
            builder: self.builder.clone(),
        }
    }
}

impl<T: Send + 'static> Mesh<T> {
    pub fn new(shards: usize, capacity: usize) -> Self {
        Self {
            builder: MeshBuilder::full(shards, capacity),
        }
    }

    /// Joins the mesh from the current shard; completes once every shard has joined.
    pub async fn join(self) -> std::io::Result<(MeshSenders<T>, MeshReceivers<T>)> {
        let (s, r) = self
            .builder
            .join()
            .await
            .map_err(|_| std::io::Error::other("channel mesh join failed"))?;
        Ok((MeshSenders { inner: s }, MeshReceivers { inner: r }))
    }
}

/// This shard's senders to every peer.
pub struct MeshSenders<T: Send + 'static> {
    inner: Senders<Stamped<T>>,
}

impl<T: Send + 'static> MeshSenders<T> {
    /// This shard's index in the mesh.
    pub fn me(&self) -> usize {
        self.inner.peer_id()
    }

    /// Sends to `shard`, waiting while its channel is full. Errors if the peer has gone.
    pub async fn send_to(&self, shard: usize, msg: T) -> Result<(), T> {
        let stamped = (Instant::now(), msg);
        self.inner
            .send_to(shard, stamped)
            .await
            .map_err(|e| match e {
                glommio::GlommioError::Closed(glommio::ResourceType::Channel((_, m))) => m,
                glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel((_, m))) => m,
                other => unreachable!("mesh send only fails with the message back: {other}"),
            })
    }

    pub fn close(&self) {
        self.inner.close()
    }
}

/// This shard's receivers, one per peer.
pub struct MeshReceivers<T: Send + 'static> {
    inner: Receivers<Stamped<T>>,
}

impl<T: Send + 'static> MeshReceivers<T> {
    /// Splits into one stream per peer: `(peer, stream)`. Taking a message out records its
    /// hop latency.
    pub fn streams(mut self) -> Vec<(usize, impl futures::Stream<Item = T> + Unpin)> {
        self.inner
            .streams()
            .into_iter()
            .map(|(peer, stream)| {
                let unstamped = stream.map(|(sent, msg)| {
                    metrics::record_stage(Stage::CrossShardHop, sent.elapsed());
                    msg
                });
                (peer, unstamped)
            })
            .collect()
    }
}
