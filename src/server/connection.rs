//! One client connection: reads whole frames, decodes them, runs each request as its own task
//! and writes the answers back in request order. Produce requests pass their order-sensitive
//! stage (appending) before the next frame is read, so pipelined produces keep their order.
//! A malformed frame closes this connection only.

use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use futures::channel::mpsc;
use futures::future::{select, Either, Shared};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::{SinkExt, Stream, StreamExt};
use kafka_protocol::messages::{ApiKey, RequestKind};

use crate::base::limits::MAX_IN_FLIGHT_PER_CONNECTION;
use crate::metrics::{self, ShardMetrics, Stage};
use crate::protocol::codec::{self, Decoded};
use crate::protocol::frame;
use crate::protocol::pieces::{self, Answer, ResponseFrame};
use crate::runtime::{self, Semaphore, StaticPermit, Task, TaskClass, TcpStream};

use super::handlers::Handlers;

/// What a request task yields: a frame to write, nothing (acks=0), or a reason to close.
type Outcome = Result<Option<ResponseFrame>, String>;

/// A started request and its share of the shard's request-bytes budget, held until its
/// answer is written.
type InFlight = (Task<Outcome>, StaticPermit);

/// The bounds every connection of a shard shares.
pub struct ConnectionLimits {
    /// The largest request frame accepted (`socket_request_max_bytes`).
    pub max_frame: usize,
    /// Bytes of requests read and not yet answered on this shard (its share of
    /// `queued_max_request_bytes`).
    pub request_bytes: Rc<Semaphore>,
    /// The size of `request_bytes` when nothing is in flight.
    pub request_budget: usize,
    pub max_connections: usize,
    /// Open client connections on every shard.
    pub broker_connections: Arc<AtomicUsize>,
    /// SO_SNDBUF / SO_RCVBUF set on every accepted connection.
    pub socket_buffers: crate::config::SocketBuffers,
}

pub async fn serve(
    stream: TcpStream,
    handlers: Rc<Handlers>,
    limits: &ConnectionLimits,
    stop: Shared<futures::channel::oneshot::Receiver<()>>,
) {
    let max_frame = limits.max_frame;
    let _ = stream.set_nodelay(true);
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let (mut reader, writer) = stream.split();
    let (mut queue, pending) = mpsc::channel::<InFlight>(MAX_IN_FLIGHT_PER_CONNECTION);
    let writer_task = runtime::spawn(write_responses(writer, fd, pending));
    let mut frames = frame::FrameReader::new();
    // When the read that completed the frames now in `buf` returned: the start of their
    // queue stage.
    let mut read_at = Instant::now();
    'conn: loop {
        loop {
            match frames.take_frame(max_frame) {
                Ok(Some(f)) => {
                    // Waiting here stops reading: the client's TCP window fills and it waits.
                    let Some(permit) = limits.reserve(f.len()).await else {
                        break 'conn;
                    };
                    let task = match start_request(&handlers, f, &peer, read_at).await {
                        Ok(task) => task,
                        Err(reason) => {
                            tracing::debug!(%peer, %reason, "closing connection");
                            ShardMetrics::bump(
                                &handlers.router.metrics().connections_refused_frames,
                            );
                            break 'conn;
                        }
                    };
                    if queue.send((task, permit)).await.is_err() {
                        break 'conn;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "bad frame; closing connection");
                    ShardMetrics::bump(&handlers.router.metrics().connections_refused_frames);
                    break 'conn;
                }
            }
        }
        let read = reader.read(frames.room());
        let n = match select(std::pin::pin!(read), stop.clone()).await {
            Either::Left((Ok(0), _)) | Either::Left((Err(_), _)) => break,
            Either::Left((Ok(n), _)) => n,
            Either::Right(_) => break,
        };
        read_at = Instant::now();
        ShardMetrics::add(&handlers.router.metrics().network_bytes_in, n as u64);
        frames.filled(n);
    }
    drop(queue);
    writer_task.await;
}

impl ConnectionLimits {
    /// Takes `bytes` of the shard's request budget (the whole budget for a larger frame, so
    /// any accepted frame can still run alone); `None` once the budget is closed.
    async fn reserve(&self, bytes: usize) -> Option<StaticPermit> {
        let units = bytes.clamp(1, self.request_budget) as u64;
        self.request_bytes.acquire_static_permit(units).await.ok()
    }
}

/// `fd` is the stream's, for vectored sends; the write half keeps it open.
async fn write_responses(
    mut writer: futures::io::WriteHalf<TcpStream>,
    fd: std::os::fd::RawFd,
    mut pending: mpsc::Receiver<InFlight>,
) {
    while let Some((task, permit)) = pending.next().await {
        let outcome = task.await;
        let _held_until_written = permit;
        match outcome {
            Ok(Some(frame)) => {
                if write_frame(&mut writer, fd, &frame).await.is_err() {
                    break;
                }
                ShardMetrics::add(&metrics::local().network_bytes_out, frame.len() as u64);
                // Flush only when nothing else is ready, so pipelined answers share a write.
                if pending.size_hint().0 == 0 && writer.flush().await.is_err() {
                    break;
                }
            }
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(%reason, "cannot answer request; closing connection");
                break;
            }
        }
    }
    let _ = writer.flush().await;
    let _ = writer.close().await;
}

/// Writes a frame: a frame in pieces goes in one vectored send as far as the socket takes
/// it, the rest through the stream.
async fn write_frame(
    writer: &mut futures::io::WriteHalf<TcpStream>,
    fd: std::os::fd::RawFd,
    frame: &ResponseFrame,
) -> std::io::Result<()> {
    let mut skip = match frame.pieces() {
        [one] => return writer.write_all(one).await,
        many => {
            let slices: Vec<&[u8]> = many.iter().map(|p| &p[..]).collect();
            runtime::try_send_vectored(fd, &slices)?
        }
    };
    for piece in frame.pieces() {
        if skip >= piece.len() {
            skip -= piece.len();
            continue;
        }
        writer.write_all(&piece[skip..]).await?;
        skip = 0;
    }
    Ok(())
}

/// Decodes a frame and starts its request. Produce appends before this returns. Produce and
/// Fetch run in their own task queues (see `runtime::TaskClass`).
async fn start_request(
    handlers: &Rc<Handlers>,
    f: bytes::Bytes,
    peer: &str,
    read_at: Instant,
) -> Result<Task<Outcome>, String> {
    let decoded = codec::decode(f).map_err(|e| e.to_string())?;
    let req = match decoded {
        Decoded::Refused(frame) => {
            return Ok(runtime::spawn(
                async move { Ok(frame.map(ResponseFrame::from)) },
            ));
        }
        Decoded::Request(req) => req,
    };
    let key = req.api_key;
    handlers.router.metrics().count_request(key as i16);
    let version = req.header.request_api_version;
    let correlation_id = req.header.correlation_id;
    let encode = move |reply: Option<Answer>| -> Outcome {
        reply
            .map(|body| pieces::encode(key, version, correlation_id, body))
            .transpose()
            .map_err(|e| format!("encoding {key:?} v{version}: {e}"))
    };
    if let RequestKind::Produce(produce) = req.body {
        let started = Instant::now();
        metrics::record_stage(Stage::Queue, started - read_at);
        let done = handlers.produce(produce).await;
        return Ok(runtime::spawn_in(TaskClass::Produce, async move {
            let reply = done.await;
            metrics::record_stage(Stage::Produce, started.elapsed());
            reply.and_then(|r| encode(r.map(Answer::from)))
        }));
    }
    let h = handlers.clone();
    let client = ClientInfo {
        id: req
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        host: format!("/{}", peer.rsplit_once(':').map_or(peer, |(ip, _)| ip)),
    };
    let work = async move {
        let started = Instant::now();
        metrics::record_stage(Stage::Queue, started - read_at);
        let reply = run_request(&h, key, version, req.body, client).await;
        if key == ApiKey::Fetch {
            metrics::record_stage(Stage::Fetch, started.elapsed());
        }
        encode(Some(reply))
    };
    Ok(match key {
        ApiKey::Fetch => runtime::spawn_in(TaskClass::Fetch, work),
        _ => runtime::spawn(work),
    })
}

/// Who sent a request, as group membership records it.
struct ClientInfo {
    id: String,
    host: String,
}

async fn run_request(
    h: &Handlers,
    key: ApiKey,
    version: i16,
    body: RequestKind,
    client: ClientInfo,
) -> Answer {
    let kind = match body {
        RequestKind::ApiVersions(_) => h.api_versions(),
        RequestKind::Metadata(r) => h.metadata(r, version).await,
        RequestKind::Fetch(r) => return h.fetch(r, version).await.into(),
        RequestKind::ListOffsets(r) => h.list_offsets(r, version).await,
        RequestKind::OffsetForLeaderEpoch(r) => h.offset_for_leader_epoch(r).await,
        RequestKind::CreateTopics(r) => h.create_topics(r).await,
        RequestKind::DeleteTopics(r) => h.delete_topics(r, version).await,
        RequestKind::DescribeCluster(r) => h.describe_cluster(&r),
        RequestKind::UnregisterBroker(r) => h.unregister_broker(r).await,
        RequestKind::DescribeConfigs(r) => h.describe_configs(r),
        RequestKind::AlterConfigs(r) => h.alter_configs(r).await,
        RequestKind::IncrementalAlterConfigs(r) => h.incremental_alter_configs(r).await,
        RequestKind::CreatePartitions(r) => h.create_partitions(r).await,
        RequestKind::DeleteRecords(r) => h.delete_records(r).await,
        RequestKind::ElectLeaders(r) => h.elect_leaders(r).await,
        RequestKind::AlterPartitionReassignments(r) => h.alter_partition_reassignments(r).await,
        RequestKind::ListPartitionReassignments(r) => h.list_partition_reassignments(&r),
        RequestKind::FindCoordinator(r) => h.find_coordinator(r, version, &h.groups).await,
        RequestKind::JoinGroup(r) => h.join_group(r, version, client.id, client.host).await,
        RequestKind::SyncGroup(r) => h.sync_group(r, version).await,
        RequestKind::Heartbeat(r) => h.heartbeat(r).await,
        RequestKind::LeaveGroup(r) => h.leave_group(r, version).await,
        RequestKind::OffsetCommit(r) => h.offset_commit(r).await,
        RequestKind::OffsetFetch(r) => h.offset_fetch(r, version).await,
        RequestKind::DescribeGroups(r) => h.describe_groups(r).await,
        RequestKind::ListGroups(r) => h.list_groups(r, version).await,
        RequestKind::DeleteGroups(r) => h.delete_groups(r).await,
        RequestKind::OffsetDelete(r) => h.offset_delete(r).await,
        RequestKind::ConsumerGroupHeartbeat(r) => {
            h.consumer_group_heartbeat(r, version, client.id, client.host)
                .await
        }
        RequestKind::ConsumerGroupDescribe(r) => h.consumer_group_describe(r, version).await,
        RequestKind::InitProducerId(r) => h.init_producer_id(r, version).await,
        RequestKind::AddPartitionsToTxn(r) => h.add_partitions_to_txn(r, version).await,
        RequestKind::AddOffsetsToTxn(r) => h.add_offsets_to_txn(r, version).await,
        RequestKind::EndTxn(r) => h.end_txn(r, version).await,
        RequestKind::WriteTxnMarkers(r) => h.write_txn_markers(r).await,
        RequestKind::TxnOffsetCommit(r) => h.txn_offset_commit(r, version).await,
        RequestKind::DescribeProducers(r) => h.describe_producers(r).await,
        RequestKind::ListTransactions(r) => h.list_transactions(r).await,
        RequestKind::DescribeTransactions(r) => h.describe_transactions(r).await,
        other => unreachable!("{key:?} is in the version table but has no handler: {other:?}"),
    };
    kind.into()
}
