//! The channel mesh: one bounded single-producer channel between every pair of shards.
//! A shard joins once at start and gets senders to every peer and a receiver from each.
//! Every message carries the instant it was sent; the receiving shard records the hop's
//! latency (`metrics::Stage::CrossShardHop`) when it takes the message out.
//!
//! Built on glommio's `shared_channel` rather than its `channel_mesh`: `MeshBuilder` shares an
//! `Rc` between threads (it is declared `Send` by hand), so shards cloning and dropping their
//! builders at once race on a non-atomic reference count, and a lost update frees memory that
//! is still in use (seen as "double free detected in tcache" a moment after start). Here every
//! channel is made on the thread that builds the mesh, each end is moved to exactly one shard
//! and never cloned, and the only shared state is a mutex-guarded table of ends.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};

use crate::metrics::{self, Stage};

/// A message on the wire of the mesh: when it was sent, and what.
type Stamped<T> = (Instant, T);

/// One shard's unconnected ends: a sender to every peer, a receiver from every peer (`None`
/// at its own index).
struct Ends<T: Send + 'static> {
    senders: Vec<Option<SharedSender<Stamped<T>>>>,
    receivers: Vec<Option<SharedReceiver<Stamped<T>>>>,
}

/// The mesh before shards join; cloned into every shard, each of which takes its own ends.
pub struct Mesh<T: Send + 'static> {
    ends: Arc<Mutex<Vec<Option<Ends<T>>>>>,
}

impl<T: Send + 'static> Clone for Mesh<T> {
    fn clone(&self) -> Self {
        Self {
            ends: self.ends.clone(),
        }
    }
}

impl<T: Send + 'static> Mesh<T> {
    /// Makes every channel of a mesh of `shards` shards, each holding `capacity` messages.
    pub fn new(shards: usize, capacity: usize) -> Self {
        let mut ends: Vec<Ends<T>> = (0..shards)
            .map(|_| Ends {
                senders: (0..shards).map(|_| None).collect(),
                receivers: (0..shards).map(|_| None).collect(),
            })
            .collect();
        for from in 0..shards {
            for to in (0..shards).filter(|&to| to != from) {
                let (sender, receiver) = shared_channel::new_bounded(capacity);
                ends[from].senders[to] = Some(sender);
                ends[to].receivers[from] = Some(receiver);
            }
        }
        Self {
            ends: Arc::new(Mutex::new(ends.into_iter().map(Some).collect())),
        }
    }

    /// Joins the mesh as shard `me` from that shard's executor; completes once every peer
    /// has connected its ends of this shard's channels.
    pub async fn join(&self, me: usize) -> std::io::Result<(MeshSenders<T>, MeshReceivers<T>)> {
        let ends = self
            .ends
            .lock()
            .map_err(|_| std::io::Error::other("channel mesh lock poisoned"))?
            .get_mut(me)
            .and_then(Option::take)
            .ok_or_else(|| std::io::Error::other(format!("shard {me} cannot join the mesh")))?;
        // Connecting an end waits for its peer to connect the other, so all are connected at
        // once; in sequence, two shards could each wait on the other's next channel.
        let senders: Vec<_> = ends
            .senders
            .into_iter()
            .map(|s| {
                s.map(|s| glommio::spawn_local(super::home_waker::HomeWoken::new(s.connect())))
            })
            .collect();
        let receivers: Vec<_> = ends
            .receivers
            .into_iter()
            .map(|r| {
                r.map(|r| glommio::spawn_local(super::home_waker::HomeWoken::new(r.connect())))
            })
            .collect();
        let mut connected_senders = Vec::with_capacity(senders.len());
        for s in senders {
            connected_senders.push(match s {
                Some(task) => Some(task.await),
                None => None,
            });
        }
        let mut connected_receivers = Vec::with_capacity(receivers.len());
        for r in receivers {
            connected_receivers.push(match r {
                Some(task) => Some(task.await),
                None => None,
            });
        }
        Ok((
            MeshSenders {
                me,
                senders: connected_senders,
            },
            MeshReceivers {
                receivers: connected_receivers,
            },
        ))
    }
}

/// This shard's senders to every peer.
pub struct MeshSenders<T: Send + 'static> {
    me: usize,
    senders: Vec<Option<ConnectedSender<Stamped<T>>>>,
}

impl<T: Send + 'static> MeshSenders<T> {
    /// This shard's index in the mesh.
    pub fn me(&self) -> usize {
        self.me
    }

    /// Sends to `shard`, waiting while its channel is full. Errors with the message back if
    /// the peer has gone (or `shard` is this shard or no shard).
    pub async fn send_to(&self, shard: usize, msg: T) -> Result<(), T> {
        let Some(Some(sender)) = self.senders.get(shard) else {
            return Err(msg);
        };
        sender
            .send((Instant::now(), msg))
            .await
            .map_err(|e| match e {
                glommio::GlommioError::Closed(glommio::ResourceType::Channel((_, m))) => m,
                glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel((_, m))) => m,
                other => unreachable!("a channel send only fails with the message back: {other}"),
            })
    }

    pub fn close(&self) {
        for sender in self.senders.iter().flatten() {
            sender.close();
        }
    }
}

/// This shard's receivers, one per peer.
pub struct MeshReceivers<T: Send + 'static> {
    receivers: Vec<Option<ConnectedReceiver<Stamped<T>>>>,
}

impl<T: Send + 'static> MeshReceivers<T> {
    /// Splits into one stream per peer: `(peer, stream)`. Taking a message out records its
    /// hop latency.
    pub fn streams(self) -> Vec<(usize, impl futures::Stream<Item = T> + Unpin)> {
        self.receivers
            .into_iter()
            .enumerate()
            .filter_map(|(peer, r)| r.map(|r| (peer, r)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::run_shards;

    /// Every shard sends its index to every peer and reads one message from each: each
    /// message arrives once, from the shard that sent it. Repeated, with more shards than
    /// cores, so shards join at varied moments.
    #[test]
    fn every_shard_reaches_every_peer_once() {
        const SHARDS: usize = 5;
        for _ in 0..20 {
            let mesh = Mesh::<usize>::new(SHARDS, 4);
            let handles = run_shards(SHARDS, move |i| {
                let mesh = mesh.clone();
                async move {
                    let (senders, receivers) = mesh.join(i).await.expect("join");
                    assert_eq!(senders.me(), i);
                    for peer in (0..SHARDS).filter(|&p| p != i) {
                        senders.send_to(peer, i).await.expect("peer alive");
                    }
                    assert_eq!(senders.send_to(i, i).await, Err(i), "no channel to itself");
                    let mut heard = Vec::new();
                    for (peer, mut stream) in receivers.streams() {
                        let msg = stream.next().await.expect("a message");
                        assert_eq!(msg, peer);
                        heard.push(peer);
                    }
                    heard
                }
            })
            .expect("shards start");
            for (i, h) in handles.into_iter().enumerate() {
                let heard = h.join().expect("shard ends");
                let expected: Vec<usize> = (0..SHARDS).filter(|&p| p != i).collect();
                assert_eq!(heard, expected);
            }
        }
    }

    #[test]
    fn a_shard_joins_once() {
        let mesh = Mesh::<u8>::new(1, 1);
        crate::runtime::block_on(async move {
            assert!(mesh.join(0).await.is_ok());
            assert!(mesh.join(0).await.is_err());
            assert!(mesh.join(1).await.is_err());
        });
    }
}
