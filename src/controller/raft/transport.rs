//! TCP between the controller voters. Every frame is `[len u32 BE][kind u8][payload]`
//! (`len` counts kind and payload): kind 0 carries a raft `eraftpb::Message` (protobuf),
//! kind 1 a forwarded controller command and kind 2 its reply (JSON, built by the caller).
//!
//! Raft messages go out on one connection per peer, owned by a task that reconnects with
//! backoff; each peer has a bounded queue and a full queue drops the message (Raft resends),
//! so a dead or slow peer never blocks the node or the other peers. Forwarded commands use a
//! connection of their own, request then reply, so a slow command never delays Raft traffic.
//! An accepted connection may carry both: raft messages go to the node's inbox, commands to
//! the command handler, whose reply is written back on that connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::future::LocalBoxFuture;
use futures::lock::Mutex;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use protobuf::Message as _;
use raft::prelude::Message;

use crate::runtime;

pub const KIND_RAFT: u8 = 0;
pub const KIND_COMMAND: u8 = 1;
pub const KIND_REPLY: u8 = 2;

/// The largest frame accepted: a snapshot of the whole metadata is the biggest one.
pub const MAX_FRAME_BYTES: usize = 64 << 20;
/// Raft messages queued for one peer before new ones are dropped.
const PEER_QUEUE: usize = 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Encodes one frame.
pub fn encode_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(5 + payload.len());
    buf.extend_from_slice(&((payload.len() + 1) as u32).to_be_bytes());
    buf.push(kind);
    buf.extend_from_slice(payload);
    buf
}

/// Reads one frame as `(kind, payload)`; an oversized or empty length is an error, checked
/// before anything is allocated for it.
pub async fn read_frame<R: futures::AsyncRead + Unpin>(
    r: &mut R,
) -> std::io::Result<(u8, Vec<u8>)> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("controller frame of {len} bytes (limit {MAX_FRAME_BYTES})"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    let kind = body[0];
    body.remove(0);
    Ok((kind, body))
}

/// Answers a forwarded command (kind 1 payload) with a reply payload (kind 2).
pub type CommandHandler = Rc<dyn Fn(Vec<u8>) -> LocalBoxFuture<'static, Vec<u8>>>;

/// The sending side: one queue per peer voter.
pub struct Transport {
    peers: HashMap<u64, mpsc::Sender<Vec<u8>>>,
    _tasks: Vec<runtime::Task<()>>,
}

impl Transport {
    /// Starts a sender task for every peer (not `self_id`).
    pub fn start(self_id: u64, voters: &[(u64, SocketAddr)]) -> Transport {
        let mut peers = HashMap::new();
        let mut tasks = Vec::new();
        for &(id, addr) in voters.iter().filter(|(id, _)| *id != self_id) {
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            peers.insert(id, tx);
            tasks.push(runtime::spawn(peer_sender(id, addr, rx)));
        }
        Transport {
            peers,
            _tasks: tasks,
        }
    }

    /// Queues `msg` for its destination; drops it if the peer is unknown or backed up.
    pub fn send(&mut self, msg: Message) {
        let Some(tx) = self.peers.get_mut(&msg.to) else {
            tracing::warn!(to = msg.to, "raft message for an unknown voter dropped");
            return;
        };
        let Ok(bytes) = msg.write_to_bytes() else {
            return;
        };
        if tx.try_send(encode_frame(KIND_RAFT, &bytes)).is_err() {
            tracing::debug!(to = msg.to, "raft peer queue full; message dropped");
        }
    }
}

/// Keeps a connection to one peer and writes its queued frames; on an error reconnects
/// (with backoff) and carries on with the next frame.
async fn peer_sender(id: u64, addr: SocketAddr, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut stream = match runtime::connect(addr).await {
            Ok(s) => {
                backoff = BACKOFF_MIN;
                let _ = s.set_nodelay(true);
                s
            }
            Err(e) => {
                tracing::debug!(peer = id, %addr, error = %e, "controller peer unreachable");
                // Messages queued for a dead peer are stale by the time it returns.
                while rx.try_recv().is_ok() {}
                runtime::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        loop {
            let Some(frame) = rx.next().await else { return };
            if let Err(e) = stream.write_all(&frame).await {
                tracing::debug!(peer = id, error = %e, "controller peer connection lost");
                break;
            }
        }
    }
}

/// Accepts connections from peers: raft messages go to `inbox`, commands to `commands`.
pub async fn serve(
    listener: runtime::TcpListener,
    inbox: mpsc::UnboundedSender<Message>,
    commands: CommandHandler,
) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "controller accept failed");
                runtime::sleep(BACKOFF_MIN).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        runtime::detach(serve_connection(stream, inbox.clone(), commands.clone()));
    }
}

async fn serve_connection(
    stream: runtime::TcpStream,
    inbox: mpsc::UnboundedSender<Message>,
    commands: CommandHandler,
) {
    let (mut reader, writer) = stream.split();
    let writer = Rc::new(Mutex::new(writer));
    loop {
        let (kind, payload) = match read_frame(&mut reader).await {
            Ok(f) => f,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::UnexpectedEof {
                    tracing::debug!(error = %e, "controller connection closed");
                }
                return;
            }
        };
        match kind {
            KIND_RAFT => match Message::parse_from_bytes(&payload) {
                Ok(msg) => {
                    if inbox.unbounded_send(msg).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "undecodable raft message; closing");
                    return;
                }
            },
            KIND_COMMAND => {
                let (handler, writer) = (commands.clone(), writer.clone());
                runtime::detach(async move {
                    let reply = handler(payload).await;
                    let frame = encode_frame(KIND_REPLY, &reply);
                    let _ = writer.lock().await.write_all(&frame).await;
                });
            }
            other => {
                tracing::warn!(kind = other, "unknown controller frame kind; closing");
                return;
            }
        }
    }
}

/// Sends one command (kind 1) to `addr` on a new connection and returns the reply payload.
pub async fn request(
    addr: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let exchange = async {
        let mut stream = runtime::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        stream
            .write_all(&encode_frame(KIND_COMMAND, payload))
            .await?;
        loop {
            let (kind, reply) = read_frame(&mut stream).await?;
            if kind == KIND_REPLY {
                return Ok(reply);
            }
        }
    };
    runtime::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("controller at {addr} did not answer in {timeout:?}"),
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_lengths_are_refused() {
        runtime::block_on(async {
            let mut bytes = encode_frame(KIND_COMMAND, b"{\"id\":1}");
            bytes.extend(encode_frame(KIND_REPLY, b"ok"));
            let mut r = futures::io::Cursor::new(bytes);
            assert_eq!(
                read_frame(&mut r).await.unwrap(),
                (KIND_COMMAND, b"{\"id\":1}".to_vec())
            );
            assert_eq!(
                read_frame(&mut r).await.unwrap(),
                (KIND_REPLY, b"ok".to_vec())
            );
            assert!(read_frame(&mut r).await.is_err());

            let mut huge = futures::io::Cursor::new(u32::MAX.to_be_bytes().to_vec());
            let e = read_frame(&mut huge).await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
            let mut empty = futures::io::Cursor::new(0u32.to_be_bytes().to_vec());
            assert!(read_frame(&mut empty).await.is_err());
        });
    }

    #[test]
    fn raft_messages_and_commands_cross_a_real_connection() {
        runtime::block_on(async {
            let listener = runtime::bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let (inbox_tx, mut inbox) = mpsc::unbounded();
            let handler: CommandHandler = Rc::new(|payload: Vec<u8>| {
                Box::pin(async move {
                    let mut reply = b"re:".to_vec();
                    reply.extend(payload);
                    reply
                })
            });
            let _server = runtime::spawn(serve(listener, inbox_tx, handler));
            let mut transport = Transport::start(1, &[(1, addr), (2, addr), (3, unreachable())]);
            let msg = Message {
                to: 2,
                from: 1,
                term: 7,
                ..Default::default()
            };
            // a dead peer (3) must not hold up the live one
            transport.send(Message {
                to: 3,
                ..Default::default()
            });
            transport.send(msg.clone());
            assert_eq!(inbox.next().await.unwrap(), msg);
            let reply = request(addr, b"hello", Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(reply, b"re:hello");
        });
    }

    /// A loopback port nobody listens on.
    fn unreachable() -> SocketAddr {
        runtime::probe_listen("127.0.0.1:0".parse().unwrap()).unwrap()
    }
}
