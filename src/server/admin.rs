//! The admin HTTP endpoint (`--metrics-listen`): Prometheus metrics and a small JSON API for
//! operators and orchestration (health, readiness, cluster state). It runs on shard 0 and
//! reaches the other shards through the router, like any request.
//!
//! - `GET /metrics`: every shard's counters and stage histograms (asked of each shard over
//!   the mesh, merged here), per-partition bytes and requests, offsets, ISR size,
//!   under-replicated partitions, consumer-group lag.
//! - `GET /v1/health`: 200 when every shard answers within [`SHARD_PING_TIMEOUT`], else 503.
//! - `GET /v1/ready`: 200 once every shard serves and until shutdown begins, else 503.
//! - `GET /v1/cluster`: the metadata snapshot as JSON.
//!
//! HTTP/1.1 without keep-alive: one request per connection, the request head bounded by
//! [`MAX_HEAD_BYTES`], no request body read. That small subset is parsed here rather than by
//! an HTTP library, which would bring an async runtime of its own.

mod http;
mod scrape;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use serde_json::json;

use crate::router::Router;
use crate::runtime::{self, TcpListener, TcpStream};

use http::{Request, Response};

/// Largest request head (request line and headers) read from a client.
const MAX_HEAD_BYTES: usize = 8192;
/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a shard may take to answer a health ping or a metrics request.
pub const SHARD_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves the admin API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, router: Rc<Router>, ready: Arc<AtomicBool>) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                runtime::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let (router, ready) = (router.clone(), ready.clone());
        runtime::detach(async move { answer(stream, &router, &ready).await });
    }
}

async fn answer(mut stream: TcpStream, router: &Rc<Router>, ready: &AtomicBool) {
    let head = match runtime::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Some(Ok(head)) => head,
        Some(Err(e)) => {
            tracing::debug!(error = %e, "bad admin request");
            return;
        }
        None => return,
    };
    let response = match http::parse_request(&head) {
        Ok(req) => route(&req, router, ready).await,
        Err(status) => Response::text(status, "bad request\n"),
    };
    let head_only = head.starts_with(b"HEAD ");
    let _ = stream.write_all(&response.to_bytes(head_only)).await;
    let _ = stream.close().await;
}

/// Reads until the blank line that ends the request head.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other(
                "connection closed before the request head",
            ));
        }
        head.extend_from_slice(&chunk[..n]);
        if http::head_complete(&head) {
            return Ok(head);
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err(std::io::Error::other("request head too large"));
        }
    }
}

async fn route(req: &Request, router: &Rc<Router>, ready: &AtomicBool) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::text(405, "only GET and HEAD\n");
    }
    match req.path.as_str() {
        "/metrics" => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: scrape::metrics(router).await.into_bytes(),
        },
        "/v1/health" => health(router).await,
        "/v1/ready" => readiness(ready.load(Ordering::SeqCst)),
        "/v1/cluster" => Response::json(200, &scrape::cluster_state(router).await),
        _ => Response::text(
            404,
            "not found: try /metrics, /v1/health, /v1/ready, /v1/cluster\n",
        ),
    }
}

fn readiness(ready: bool) -> Response {
    let status = if ready { 200 } else { 503 };
    Response::json(status, &json!({ "ready": ready }))
}

/// Healthy when every shard's reactor answers a ping in time: a stalled shard fails it.
async fn health(router: &Rc<Router>) -> Response {
    let mut stalled = Vec::new();
    for shard in 0..router.shard_count() {
        let (tx, rx) = oneshot::channel::<()>();
        let ping = async {
            router
                .invoke_on(
                    shard,
                    Box::new(move || {
                        let _ = tx.send(());
                    }),
                )
                .await;
            rx.await.is_ok()
        };
        if runtime::timeout(SHARD_PING_TIMEOUT, ping).await != Some(true) {
            stalled.push(shard);
        }
    }
    let healthy = stalled.is_empty();
    let body = json!({
        "status": if healthy { "ok" } else { "stalled" },
        "shards": router.shard_count(),
        "stalled_shards": stalled,
    });
    Response::json(if healthy { 200 } else { 503 }, &body)
}
