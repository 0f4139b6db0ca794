//! One TCP connection to one broker. Requests are encoded and queued in the order callers
//! ask (`send_at` is the ordering point), written by one writer task, and answered in that
//! same order: a reader task matches each response frame to the oldest waiting request by
//! correlation id. Many requests may be in flight (pipelining), up to
//! [`MAX_IN_FLIGHT_PER_CONNECTION`]. ApiVersions is negotiated when the connection opens.
//!
//! A broken connection (read or write error, unexpected answer, a request timing out) fails
//! every waiting request and refuses new ones; the pool in `cluster` then opens a new one.
//! Response frames are length-checked against [`MAX_RESPONSE_BYTES`] before any buffering.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::channel::{mpsc, oneshot};
use futures::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use futures::{Stream, StreamExt};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use super::config::{MAX_IN_FLIGHT_PER_CONNECTION, MAX_RESPONSE_BYTES};
use super::error::ClientError;
use super::notify::Notify;
use super::versions::{BrokerVersions, Range};
use crate::runtime::{self, Task, TcpStream};

const READ_CHUNK: usize = 64 * 1024;
const API_VERSIONS_MAX: i16 = 3;

/// How to open a connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub client_id: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

/// A connection to one broker; clones share it. Dropping the last clone closes it.
#[derive(Clone)]
pub struct Connection {
    inner: Rc<Inner>,
}

struct Inner {
    peer: String,
    client_id: StrBytes,
    request_timeout: Duration,
    versions: RefCell<BrokerVersions>,
    shared: Rc<Shared>,
    frames: mpsc::UnboundedSender<Outgoing>,
    _reader: Task<()>,
    _writer: Task<()>,
}

/// State the reader and writer tasks share with the connection.
#[derive(Default)]
struct Shared {
    state: RefCell<State>,
    slot_freed: Notify,
}

#[derive(Default)]
struct State {
    next_correlation_id: i32,
    pending: VecDeque<Pending>,
    broken: Option<ClientError>,
}

struct Pending {
    correlation_id: i32,
    reply: oneshot::Sender<Result<Bytes, ClientError>>,
}

struct Outgoing {
    frame: Bytes,
    written: Option<oneshot::Sender<()>>,
}

/// The answer to a queued request, decoded when it arrives.
pub type ResponseFuture<T> = futures::future::LocalBoxFuture<'static, Result<T, ClientError>>;

impl Connection {
    /// Connects to `addr` (named `peer` in errors) and negotiates API versions.
    pub async fn open(
        addr: SocketAddr,
        peer: &str,
        opts: &ConnectOptions,
    ) -> Result<Self, ClientError> {
        let unreachable = |reason: String| ClientError::Unreachable {
            addrs: peer.to_owned(),
            reason,
        };
        let stream = match runtime::timeout(opts.connect_timeout, runtime::connect(addr)).await {
            None => {
                return Err(unreachable(format!(
                    "no answer within {} ms",
                    opts.connect_timeout.as_millis()
                )))
            }
            Some(Err(e)) => return Err(unreachable(describe_io(&e))),
            Some(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.split();
        let shared = Rc::new(Shared::default());
        let (frames, queue) = mpsc::unbounded();
        let conn = Self {
            inner: Rc::new(Inner {
                peer: peer.to_owned(),
                client_id: StrBytes::from_string(opts.client_id.clone()),
                request_timeout: opts.request_timeout,
                versions: RefCell::new(BrokerVersions::default()),
                _reader: runtime::spawn(read_responses(reader, shared.clone(), peer.to_owned())),
                _writer: runtime::spawn(write_requests(
                    writer,
                    queue,
                    shared.clone(),
                    peer.to_owned(),
                )),
                shared,
                frames,
            }),
        };
        conn.negotiate_versions().await?;
        Ok(conn)
    }

    /// `host:port` of the broker.
    pub fn peer(&self) -> &str {
        &self.inner.peer
    }

    /// Whether the connection has failed and refuses requests.
    pub fn is_broken(&self) -> bool {
        self.inner.shared.state.borrow().broken.is_some()
    }

    /// The negotiated version of `key`: the highest both sides support.
    pub fn version(&self, key: ApiKey) -> Result<i16, ClientError> {
        let versions = self.inner.versions.borrow();
        versions.pick(key).ok_or_else(|| {
            let what = match versions.range(key) {
                None => format!("{key:?} requests"),
                Some(r) => format!(
                    "a {key:?} version this client speaks (broker: v{}..v{})",
                    r.min, r.max
                ),
            };
            ClientError::Unsupported {
                peer: self.inner.peer.clone(),
                what,
            }
        })
    }

    /// Sends `req` at the negotiated version and waits for the answer.
    pub async fn request<R: Request>(&self, req: &R) -> Result<R::Response, ClientError> {
        let version = self.version(api_key::<R>()?)?;
        self.request_at(req, version).await
    }

    /// Sends `req` at `version` and waits for the answer.
    pub async fn request_at<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let answer = self
            .send_at(req, version, self.inner.request_timeout)
            .await?;
        answer.await
    }

    /// Queues `req` now, behind every request queued before it, and returns the future of its
    /// answer. Waits only while the connection has its maximum of requests in flight.
    pub async fn send_at<R: Request>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<ResponseFuture<R::Response>, ClientError> {
        let key = api_key::<R>()?;
        self.wait_for_slot().await?;
        let (reply, rx) = oneshot::channel();
        self.enqueue(key, version, req, Some(reply), None)?;
        Ok(Box::pin(
            self.answer::<R::Response>(rx, key, version, timeout),
        ))
    }

    /// Queues a request that gets no answer (a produce with acks=0); the receiver completes
    /// once the request has been written to the socket.
    pub fn send_no_reply<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<oneshot::Receiver<()>, ClientError> {
        let (written, rx) = oneshot::channel();
        self.enqueue(api_key::<R>()?, version, req, None, Some(written))?;
        Ok(rx)
    }

    async fn wait_for_slot(&self) -> Result<(), ClientError> {
        loop {
            let freed = self.inner.shared.slot_freed.notified();
            {
                let st = self.inner.shared.state.borrow();
                if let Some(e) = &st.broken {
                    return Err(e.clone());
                }
                if st.pending.len() < MAX_IN_FLIGHT_PER_CONNECTION {
                    return Ok(());
                }
            }
            freed.await;
        }
    }

    /// Assigns the correlation id, encodes, registers the reply slot and queues the frame, in
    /// one step with no await, so frames go out in the order their replies are expected.
    fn enqueue<R: Encodable + HeaderVersion>(
        &self,
        key: ApiKey,
        version: i16,
        req: &R,
        reply: Option<oneshot::Sender<Result<Bytes, ClientError>>>,
        written: Option<oneshot::Sender<()>>,
    ) -> Result<(), ClientError> {
        let mut st = self.inner.shared.state.borrow_mut();
        if let Some(e) = &st.broken {
            return Err(e.clone());
        }
        let id = st.next_correlation_id;
        st.next_correlation_id = if id == i32::MAX { 0 } else { id + 1 };
        let frame = encode_request(key, version, id, &self.inner.client_id, req).map_err(|e| {
            ClientError::Protocol {
                peer: self.inner.peer.clone(),
                reason: format!("cannot encode {key:?} v{version}: {e}"),
            }
        })?;
        if let Some(reply) = reply {
            st.pending.push_back(Pending {
                correlation_id: id,
                reply,
            });
        }
        drop(st);
        self.inner
            .frames
            .unbounded_send(Outgoing { frame, written })
            .map_err(|_| self.disconnected("the connection is closed"))
    }

    fn answer<T: Decodable + HeaderVersion>(
        &self,
        rx: oneshot::Receiver<Result<Bytes, ClientError>>,
        key: ApiKey,
        version: i16,
        timeout: Duration,
    ) -> impl Future<Output = Result<T, ClientError>> + 'static {
        let shared = self.inner.shared.clone();
        let peer = self.inner.peer.clone();
        async move {
            let frame = match runtime::timeout(timeout, rx).await {
                Some(Ok(answer)) => answer?,
                Some(Err(_)) => {
                    let closed = ClientError::Disconnected {
                        peer,
                        reason: "the connection was closed".into(),
                    };
                    return Err(shared.state.borrow().broken.clone().unwrap_or(closed));
                }
                None => {
                    let e = ClientError::RequestTimeout {
                        peer,
                        api: format!("{key:?}"),
                        ms: timeout.as_millis() as u64,
                    };
                    // Answers are matched by position: a lost one breaks the connection.
                    shared.fail(e.clone());
                    return Err(e);
                }
            };
            decode_response::<T>(frame, version).map_err(|reason| ClientError::Protocol {
                peer,
                reason: format!("cannot decode {key:?} v{version} response: {reason}"),
            })
        }
    }

    fn disconnected(&self, reason: &str) -> ClientError {
        ClientError::Disconnected {
            peer: self.inner.peer.clone(),
            reason: reason.to_owned(),
        }
    }

    /// ApiVersions at our highest version; a broker that does not know it answers
    /// UNSUPPORTED_VERSION in the v0 layout with its own range, and we ask again.
    async fn negotiate_versions(&self) -> Result<(), ClientError> {
        let mut version = API_VERSIONS_MAX;
        for _ in 0..2 {
            let mut req = ApiVersionsRequest::default();
            if version >= 3 {
                req.client_software_name = StrBytes::from_static_str("sluice");
                req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
            }
            self.wait_for_slot().await?;
            let (reply, rx) = oneshot::channel();
            self.enqueue(ApiKey::ApiVersions, version, &req, Some(reply), None)?;
            let frame = match runtime::timeout(self.inner.request_timeout, rx).await {
                Some(Ok(answer)) => answer?,
                Some(Err(_)) => return Err(self.disconnected("the connection was closed")),
                None => return Err(self.disconnected("no answer to ApiVersions")),
            };
            let resp = self.decode_api_versions(frame, version)?;
            if resp.error_code == 35 && version > 0 {
                let theirs = resp
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions as i16);
                version = theirs
                    .map_or(0, |k| k.max_version)
                    .clamp(0, API_VERSIONS_MAX);
                continue;
            }
            ClientError::check(resp.error_code, None, || {
                format!("ApiVersions from {}", self.peer())
            })?;
            let ranges = resp.api_keys.iter().map(|k| {
                let range = Range {
                    min: k.min_version,
                    max: k.max_version,
                };
                (k.api_key, range)
            });
            *self.inner.versions.borrow_mut() = BrokerVersions::new(ranges);
            return Ok(());
        }
        Err(ClientError::Unsupported {
            peer: self.peer().to_owned(),
            what: "any ApiVersions version this client speaks".into(),
        })
    }

    fn decode_api_versions(
        &self,
        frame: Bytes,
        version: i16,
    ) -> Result<ApiVersionsResponse, ClientError> {
        // The ApiVersions response header is v0 (correlation id only) at every version, and an
        // UNSUPPORTED_VERSION answer is in the v0 body layout whatever we asked.
        let body = frame.slice(4.min(frame.len())..);
        let code = (body.len() >= 2).then(|| i16::from_be_bytes([body[0], body[1]]));
        let layout = if code == Some(35) { 0 } else { version };
        let mut buf = body;
        decode_guarded(|| ApiVersionsResponse::decode(&mut buf, layout)).map_err(|reason| {
            ClientError::Protocol {
                peer: self.peer().to_owned(),
                reason: format!("cannot decode ApiVersions v{layout} response: {reason}"),
            }
        })
    }
}

impl Shared {
    /// Marks the connection broken (the first reason sticks) and fails every waiting request.
    fn fail(&self, err: ClientError) {
        let (reason, waiting) = {
            let mut st = self.state.borrow_mut();
            let reason = st.broken.get_or_insert(err).clone();
            (reason, std::mem::take(&mut st.pending))
        };
        for p in waiting {
            let _ = p.reply.send(Err(reason.clone()));
        }
        self.slot_freed.notify_all();
    }

    /// Hands a response frame to the oldest waiting request.
    fn deliver(&self, frame: Bytes, peer: &str) -> Result<(), ClientError> {
        let protocol = |reason: String| ClientError::Protocol {
            peer: peer.to_owned(),
            reason,
        };
        if frame.len() < 4 {
            return Err(protocol(format!("a {}-byte response frame", frame.len())));
        }
        let id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let waiting = self.state.borrow_mut().pending.pop_front();
        let Some(waiting) = waiting else {
            return Err(protocol(format!(
                "a response (correlation id {id}) to no request"
            )));
        };
        if waiting.correlation_id != id {
            let want = waiting.correlation_id;
            return Err(protocol(format!(
                "correlation id {id} where {want} was due"
            )));
        }
        let _ = waiting.reply.send(Ok(frame));
        self.slot_freed.notify_all();
        Ok(())
    }
}

fn api_key<R: Request>() -> Result<ApiKey, ClientError> {
    ApiKey::try_from(R::KEY).map_err(|_| ClientError::Config(format!("unknown api key {}", R::KEY)))
}

fn encode_request<R: Encodable + HeaderVersion>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
    req: &R,
) -> anyhow::Result<Bytes> {
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(client_id.clone());
    let header_version = R::header_version(version);
    let size = header.compute_size(header_version)? + req.compute_size(version)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_u32(0);
    header.encode(&mut buf, header_version)?;
    req.encode(&mut buf, version)?;
    let len = u32::try_from(buf.len() - 4)?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

fn decode_response<T: Decodable + HeaderVersion>(frame: Bytes, version: i16) -> Result<T, String> {
    let mut buf = frame;
    decode_guarded(|| {
        ResponseHeader::decode(&mut buf, T::header_version(version))?;
        T::decode(&mut buf, version)
    })
}

/// Runs a third-party decoder on bytes from the network: its errors and panics become a
/// message instead of taking the shard down.
fn decode_guarded<T>(f: impl FnOnce() -> anyhow::Result<T>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the decoder panicked".into()),
    }
}

/// Takes one whole response frame off the front of `buf`, if one is there.
fn take_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, String> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let len = usize::try_from(len).map_err(|_| format!("negative frame length {len}"))?;
    if len > MAX_RESPONSE_BYTES {
        return Err(format!(
            "frame of {len} bytes exceeds the {MAX_RESPONSE_BYTES}-byte limit"
        ));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let _ = buf.split_to(4);
    Ok(Some(buf.split_to(len).freeze()))
}

/// How many more bytes to read: the rest of the current frame (its length is checked before
/// this is used), at least one chunk.
fn read_size(buf: &BytesMut) -> usize {
    if buf.len() < 4 {
        return READ_CHUNK;
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]).max(0) as usize;
    (4 + len.min(MAX_RESPONSE_BYTES))
        .saturating_sub(buf.len())
        .max(READ_CHUNK)
}

async fn read_responses(mut reader: ReadHalf<TcpStream>, shared: Rc<Shared>, peer: String) {
    let err = read_loop(&mut reader, &shared, &peer).await;
    shared.fail(err);
}

async fn read_loop(reader: &mut ReadHalf<TcpStream>, shared: &Shared, peer: &str) -> ClientError {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let protocol = |reason: String| ClientError::Protocol {
        peer: peer.to_owned(),
        reason,
    };
    loop {
        loop {
            match take_frame(&mut buf) {
                Ok(Some(frame)) => {
                    if let Err(e) = shared.deliver(frame, peer) {
                        return e;
                    }
                }
                Ok(None) => break,
                Err(reason) => return protocol(reason),
            }
        }
        let start = buf.len();
        buf.resize(start + read_size(&buf), 0);
        let read = reader.read(&mut buf[start..]).await;
        let disconnected = |reason: String| ClientError::Disconnected {
            peer: peer.to_owned(),
            reason,
        };
        match read {
            Ok(0) => return disconnected("the broker closed the connection".into()),
            Ok(n) => buf.truncate(start + n),
            Err(e) => return disconnected(describe_io(&e)),
        }
    }
}

async fn write_requests(
    mut writer: WriteHalf<TcpStream>,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    shared: Rc<Shared>,
    peer: String,
) {
    while let Some(out) = queue.next().await {
        if let Err(e) = writer.write_all(&out.frame).await {
            shared.fail(ClientError::Disconnected {
                peer,
                reason: describe_io(&e),
            });
            return;
        }
        if let Some(w) = out.written {
            let _ = w.send(());
        }
        if queue.size_hint().0 == 0 && writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.close().await;
}

/// A socket error in words, e.g. "connection refused".
pub fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset by the broker".into(),
        ConnectionAborted => "connection aborted".into(),
        BrokenPipe => "the broker closed the connection".into(),
        TimedOut => "timed out".into(),
        AddrNotAvailable => "address not available".into(),
        _ => match e.raw_os_error() {
            Some(113) => "no route to host".into(),    // EHOSTUNREACH
            Some(101) => "network unreachable".into(), // ENETUNREACH
            _ => e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_wait_for_all_their_bytes() {
        let mut b = BytesMut::new();
        b.put_u32(6);
        b.put_slice(&[0, 0, 0, 7, 1]);
        assert_eq!(take_frame(&mut b), Ok(None));
        b.put_u8(2);
        b.put_u32(4);
        let f = take_frame(&mut b).unwrap().unwrap();
        assert_eq!(&f[..], &[0, 0, 0, 7, 1, 2]);
        assert_eq!(b.len(), 4);
    }

    #[test]
    fn oversized_or_negative_lengths_are_refused_before_buffering() {
        let mut b = BytesMut::new();
        b.put_u32(u32::MAX);
        assert!(take_frame(&mut b).is_err());
        let mut b = BytesMut::new();
        b.put_u32((MAX_RESPONSE_BYTES + 1) as u32);
        assert!(take_frame(&mut b).is_err());
    }

    #[test]
    fn answers_go_to_requests_in_order_and_a_stray_id_breaks_the_connection() {
        let shared = Shared::default();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        {
            let mut st = shared.state.borrow_mut();
            st.pending.push_back(Pending {
                correlation_id: 1,
                reply: tx1,
            });
            st.pending.push_back(Pending {
                correlation_id: 2,
                reply: tx2,
            });
        }
        shared
            .deliver(Bytes::from_static(&[0, 0, 0, 1, 9]), "b")
            .unwrap();
        assert_eq!(&rx1.try_recv().unwrap().unwrap().unwrap()[4..], &[9]);
        let err = shared
            .deliver(Bytes::from_static(&[0, 0, 0, 5]), "b")
            .unwrap_err();
        assert!(
            err.to_string().contains("correlation id 5 where 2 was due"),
            "{err}"
        );
        // rx2's slot was consumed by the mismatch; failing the connection answers the rest
        shared.fail(err);
        assert!(rx2.try_recv().is_err() || rx2.try_recv().unwrap().is_none());
        assert!(shared.state.borrow().broken.is_some());
    }

    #[test]
    fn request_frame_carries_length_key_version_and_correlation_id() {
        let req = ApiVersionsRequest::default();
        let f = encode_request(
            ApiKey::ApiVersions,
            0,
            42,
            &StrBytes::from_static_str("c"),
            &req,
        )
        .unwrap();
        assert_eq!(
            u32::from_be_bytes(f[..4].try_into().unwrap()) as usize,
            f.len() - 4
        );
        assert_eq!(&f[4..6], &18i16.to_be_bytes());
        assert_eq!(&f[6..8], &0i16.to_be_bytes());
        assert_eq!(&f[8..12], &42i32.to_be_bytes());
    }
}
