//! The channel mesh: one bounded single-producer channel between every pair of shards.
//! A shard joins once at start and gets senders to every peer and a receiver from each.

use glommio::channels::channel_mesh::{MeshBuilder, Receivers, Senders};

/// The mesh before shards join; cloned into every shard.
pub struct Mesh<T: Send + 'static> {
    builder: MeshBuilder<T, glommio::channels::channel_mesh::Full>,
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
    inner: Senders<T>,
}

impl<T: Send + 'static> MeshSenders<T> {
    /// This shard's index in the mesh.
    pub fn me(&self) -> usize {
        self.inner.peer_id()
    }

    /// Sends to `shard`, waiting while its channel is full. Errors if the peer has gone.
    pub async fn send_to(&self, shard: usize, msg: T) -> Result<(), T> {
        self.inner.send_to(shard, msg).await.map_err(|e| match e {
            glommio::GlommioError::Closed(glommio::ResourceType::Channel(m)) => m,
            glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(m)) => m,
            other => unreachable!("mesh send only fails with the message back: {other}"),
        })
    }

    pub fn close(&self) {
        self.inner.close()
    }
}

/// This shard's receivers, one per peer.
pub struct MeshReceivers<T: Send + 'static> {
    inner: Receivers<T>,
}

impl<T: Send + 'static> MeshReceivers<T> {
    /// Splits into one stream per peer: `(peer, stream)`.
    pub fn streams(mut self) -> Vec<(usize, impl futures::Stream<Item = T> + Unpin)> {
        self.inner.streams()
    }
}
