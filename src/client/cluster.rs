//! The client's view of a cluster: bootstrap from any listed broker, a metadata cache
//! refreshed on demand, one pooled connection per broker (opened once even when many tasks
//! ask at the same moment), and the retry loop with backoff that admin and metadata calls
//! share. Producers, consumers and admin clients hold a cheap clone of one [`Client`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::future::{FutureExt, LocalBoxFuture, Shared};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::config::ClientConfig;
use super::conn::{ConnectOptions, Connection};
use super::error::{ClientError, KafkaApiError};
use super::metadata::{ClusterMetadata, TopicInfo};
use super::retry::Decision;
use super::rng::Rng;
use crate::runtime;

/// Pool keys of bootstrap connections: `BOOTSTRAP_KEY - index`, below every broker id.
const BOOTSTRAP_KEY: i32 = -1000;

type Slot = Shared<LocalBoxFuture<'static, Result<Connection, ClientError>>>;

/// A handle on one cluster; clones share connections and metadata.
#[derive(Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

struct Inner {
    config: ClientConfig,
    metadata: RefCell<Rc<ClusterMetadata>>,
    pool: RefCell<HashMap<i32, Slot>>,
    rng: RefCell<Rng>,
}

impl Client {
    /// Connects to the first reachable bootstrap server and reads the broker list.
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        let client = Self {
            inner: Rc::new(Inner {
                config,
                metadata: RefCell::new(Rc::new(ClusterMetadata::default())),
                pool: RefCell::new(HashMap::new()),
                rng: RefCell::new(Rng::from_entropy()),
            }),
        };
        client.bootstrap().await?;
        client.refresh(None).await?;
        Ok(client)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The current metadata snapshot (may be stale; see [`Client::refresh`]).
    pub fn metadata(&self) -> Rc<ClusterMetadata> {
        self.inner.metadata.borrow().clone()
    }

    /// Fetches metadata for `topics` (`None`: every topic), merges it into the cache and
    /// returns the new snapshot with the topics the broker reported as missing or invalid.
    pub async fn refresh(
        &self,
        topics: Option<&[String]>,
    ) -> Result<(Rc<ClusterMetadata>, Vec<TopicInfo>), ClientError> {
        self.retry(|| self.refresh_once(topics)).await
    }

    /// Metadata for one topic, fetched if the cache lacks it; `UnknownTopic` if it does not
    /// exist.
    pub async fn topic(&self, name: &str) -> Result<TopicInfo, ClientError> {
        if let Some(t) = self.metadata().topic(name) {
            return Ok(t.clone());
        }
        let (meta, failed) = self.refresh(Some(&[name.to_owned()])).await?;
        if let Some(t) = meta.topic(name) {
            return Ok(t.clone());
        }
        Err(topic_error(name, failed.iter().find(|t| t.name == name)))
    }

    /// One attempt at fetching metadata for one topic, asking the broker to create it when
    /// missing if `allow_auto_create` (Kafka's `allow.auto.create.topics`, whatever the
    /// client config says). `UnknownTopic` if it does not exist (and was not created); a
    /// topic created by this request may first answer LEADER_NOT_AVAILABLE, which is
    /// retriable. Callers retry through [`Client::retry`].
    pub async fn topic_once(
        &self,
        name: &str,
        allow_auto_create: bool,
    ) -> Result<TopicInfo, ClientError> {
        if let Some(t) = self.metadata().topic(name) {
            return Ok(t.clone());
        }
        let topics = [name.to_owned()];
        let (meta, failed) = self
            .refresh_once_with(Some(&topics), allow_auto_create)
            .await?;
        if let Some(t) = meta.topic(name) {
            return Ok(t.clone());
        }
        Err(topic_error(name, failed.iter().find(|t| t.name == name)))
    }

    /// One attempt at [`Client::refresh`], for callers that retry on their own schedule
    /// (the producer's sender, the consumer's poll loop).
    pub async fn refresh_once(
        &self,
        topics: Option<&[String]>,
    ) -> Result<(Rc<ClusterMetadata>, Vec<TopicInfo>), ClientError> {
        self.refresh_once_with(topics, self.inner.config.allow_auto_create_topics)
            .await
    }

    async fn refresh_once_with(
        &self,
        topics: Option<&[String]>,
        allow_auto_create: bool,
    ) -> Result<(Rc<ClusterMetadata>, Vec<TopicInfo>), ClientError> {
        let conn = self.any_conn().await?;
        let version = conn.version(ApiKey::Metadata)?;
        let req = metadata_request(topics, version, allow_auto_create);
        let resp = conn.request_at(&req, version).await?;
        let (fresh, failed) = ClusterMetadata::from_response(&resp);
        let merged = {
            let current = self.metadata();
            Rc::new(current.merged(fresh, topics.is_none(), topics.unwrap_or(&[])))
        };
        *self.inner.metadata.borrow_mut() = merged.clone();
        self.adopt_bootstrap_connections(&merged);
        Ok((merged, failed))
    }

    /// The connection to broker `node`, opened if needed.
    pub async fn node_conn(&self, node: i32) -> Result<Connection, ClientError> {
        let slot = match self.live_or_pending(node) {
            Ok(conn) => return Ok(conn),
            Err(Some(slot)) => slot,
            Err(None) => {
                let addr = self
                    .metadata()
                    .brokers
                    .get(&node)
                    .map(|b| b.address())
                    .ok_or_else(|| {
                        ClientError::Kafka(KafkaApiError::new(
                            5,
                            None,
                            format!("broker {node} is not in the metadata"),
                        ))
                    })?;
                let slot = open_slot(addr, self.connect_options());
                self.inner.pool.borrow_mut().insert(node, slot.clone());
                slot
            }
        };
        slot.await
    }

    /// The connection to a partition's leader.
    pub async fn leader_conn(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(i32, Connection), ClientError> {
        let leader = self.metadata().leader(topic, partition).ok_or_else(|| {
            ClientError::Kafka(KafkaApiError::new(
                5,
                None,
                format!("topic '{topic}' partition {partition}"),
            ))
        })?;
        Ok((leader, self.node_conn(leader).await?))
    }

    /// The connection to the controller (admin requests), or any broker if it is unknown.
    pub async fn controller_conn(&self) -> Result<Connection, ClientError> {
        let meta = self.metadata();
        if meta.brokers.contains_key(&meta.controller_id) {
            return self.node_conn(meta.controller_id).await;
        }
        self.any_conn().await
    }

    /// A live connection to some broker: an open one if there is one, else a new one to a
    /// known broker, else to a bootstrap server.
    pub async fn any_conn(&self) -> Result<Connection, ClientError> {
        if let Some(conn) = self.some_live_connection() {
            return Ok(conn);
        }
        let mut ids: Vec<i32> = self.metadata().brokers.keys().copied().collect();
        if !ids.is_empty() {
            let start = self.inner.rng.borrow_mut().below(ids.len() as u32) as usize;
            ids.rotate_left(start);
        }
        for id in ids {
            if let Ok(conn) = self.node_conn(id).await {
                return Ok(conn);
            }
        }
        self.bootstrap().await
    }

    /// Runs `op` until it succeeds, it fails with an error that is not retriable, or the
    /// retry policy gives up; refreshes metadata between attempts when the error says it is
    /// stale.
    pub async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let policy = self.inner.config.retry_policy();
        let start = Instant::now();
        let mut attempt = 0;
        loop {
            let err = match op().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let jitter = self.inner.rng.borrow_mut().unit();
            match policy.decide(&err, attempt, start.elapsed(), jitter) {
                Decision::GiveUp => return Err(err),
                Decision::Retry(wait) => {
                    tracing::debug!(error = %err, attempt, "retrying after {wait:?}");
                    if err.needs_metadata_refresh() {
                        self.forget_broken();
                    }
                    runtime::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Jitter in `[0, 1)` for callers' own backoff.
    pub(crate) fn jitter(&self) -> f64 {
        self.inner.rng.borrow_mut().unit()
    }

    /// A random index below `n` (> 0).
    pub(crate) fn random_below(&self, n: u32) -> u32 {
        self.inner.rng.borrow_mut().below(n)
    }

    fn connect_options(&self) -> ConnectOptions {
        let c = &self.inner.config;
        ConnectOptions {
            client_id: c.client_id.clone(),
            connect_timeout: c.connect_timeout,
            request_timeout: c.request_timeout,
        }
    }

    /// `Ok` a live pooled connection, `Err(Some)` one being opened, `Err(None)` none usable.
    fn live_or_pending(&self, key: i32) -> Result<Connection, Option<Slot>> {
        let mut pool = self.inner.pool.borrow_mut();
        let Some(slot) = pool.get(&key) else {
            return Err(None);
        };
        match slot.peek() {
            None => Err(Some(slot.clone())),
            Some(Ok(conn)) if !conn.is_broken() => Ok(conn.clone()),
            Some(_) => {
                pool.remove(&key);
                Err(None)
            }
        }
    }

    fn some_live_connection(&self) -> Option<Connection> {
        let pool = self.inner.pool.borrow();
        let mut live: Vec<(i32, Connection)> = pool
            .iter()
            .filter_map(|(k, s)| match s.peek() {
                Some(Ok(c)) if !c.is_broken() => Some((*k, c.clone())),
                _ => None,
            })
            .collect();
        live.sort_by_key(|(k, _)| std::cmp::Reverse(*k));
        live.into_iter().next().map(|(_, c)| c)
    }

    fn forget_broken(&self) {
        self.inner.pool.borrow_mut().retain(|_, s| match s.peek() {
            Some(Ok(c)) => !c.is_broken(),
            Some(Err(_)) => false,
            None => true,
        });
    }

    /// Opens a connection to the first reachable bootstrap server.
    async fn bootstrap(&self) -> Result<Connection, ClientError> {
        let servers = self.inner.config.bootstrap_servers.clone();
        let mut reasons = Vec::new();
        for (i, server) in servers.iter().enumerate() {
            match open_server(server.clone(), self.connect_options()).await {
                Ok(conn) => {
                    let slot = futures::future::ready(Ok(conn.clone()))
                        .boxed_local()
                        .shared();
                    let _ = slot.clone().now_or_never();
                    self.inner
                        .pool
                        .borrow_mut()
                        .insert(BOOTSTRAP_KEY - i as i32, slot);
                    return Ok(conn);
                }
                Err(ClientError::Unreachable { reason, .. }) => reasons.push(reason),
                Err(e) => return Err(e),
            }
        }
        reasons.dedup();
        Err(ClientError::Unreachable {
            addrs: servers.join(","),
            reason: reasons.join("; "),
        })
    }

    /// A bootstrap connection to an address the metadata names becomes that broker's
    /// connection, so a one-broker cluster needs one socket.
    fn adopt_bootstrap_connections(&self, meta: &ClusterMetadata) {
        let mut pool = self.inner.pool.borrow_mut();
        for (i, server) in self.inner.config.bootstrap_servers.iter().enumerate() {
            let key = BOOTSTRAP_KEY - i as i32;
            let Some(broker) = meta.brokers.values().find(|b| b.address() == *server) else {
                continue;
            };
            if pool.contains_key(&broker.id) {
                continue;
            }
            if let Some(slot) = pool.remove(&key) {
                pool.insert(broker.id, slot);
            }
        }
    }
}

fn topic_error(name: &str, failed: Option<&TopicInfo>) -> ClientError {
    match failed.map(|t| t.error) {
        Some(code) if code != 3 && code != 0 => {
            ClientError::Kafka(KafkaApiError::new(code, None, format!("topic '{name}'")))
        }
        _ => ClientError::UnknownTopic(name.to_owned()),
    }
}

fn metadata_request(
    topics: Option<&[String]>,
    version: i16,
    allow_auto_create: bool,
) -> MetadataRequest {
    let mut req = MetadataRequest::default();
    req.topics = topics.map(|names| {
        names
            .iter()
            .map(|n| {
                let mut t = MetadataRequestTopic::default();
                t.name = Some(TopicName(StrBytes::from_string(n.clone())));
                t
            })
            .collect()
    });
    if version >= 4 {
        req.allow_auto_topic_creation = allow_auto_create;
    }
    req
}

fn open_slot(server: String, opts: ConnectOptions) -> Slot {
    async move { open_server(server, opts).await }
        .boxed_local()
        .shared()
}

/// Resolves `host:port` and connects to the first address that answers.
async fn open_server(server: String, opts: ConnectOptions) -> Result<Connection, ClientError> {
    let addrs = resolve(&server)?;
    let mut last = None;
    for addr in addrs {
        match Connection::open(addr, &server, &opts).await {
            Ok(conn) => return Ok(conn),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| ClientError::Unreachable {
        addrs: server.clone(),
        reason: "the name resolves to no address".into(),
    }))
}

/// `host:port` (or `[v6]:port`) to socket addresses, IPv4 first.
pub fn resolve(server: &str) -> Result<Vec<SocketAddr>, ClientError> {
    let bad = || {
        ClientError::Config(format!(
            "invalid broker address '{server}': expected host:port"
        ))
    };
    let (host, port) = server.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    let mut addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|_| ClientError::Unreachable {
            addrs: server.to_owned(),
            reason: format!("cannot resolve host '{host}'"),
        })?
        .collect();
    addrs.sort_by_key(|a| a.is_ipv6());
    addrs.dedup();
    Ok(addrs)
}

/// How long to wait before the next try of something that failed `attempt` times.
pub(crate) fn backoff(config: &ClientConfig, attempt: u32, jitter: f64) -> Duration {
    config.retry_policy().backoff.delay(attempt, jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_v4_first() {
        let a = resolve("127.0.0.1:9092").unwrap();
        assert_eq!(a, vec!["127.0.0.1:9092".parse().unwrap()]);
        let a = resolve("[::1]:1").unwrap();
        assert!(a[0].is_ipv6());
        assert!(matches!(resolve("nocolon"), Err(ClientError::Config(_))));
        assert!(matches!(resolve("h:notaport"), Err(ClientError::Config(_))));
        assert!(matches!(resolve(":9092"), Err(ClientError::Config(_))));
    }

    #[test]
    fn metadata_request_leaves_auto_create_alone_before_v4() {
        let r = metadata_request(Some(&["t".to_owned()]), 1, false);
        assert!(
            r.allow_auto_topic_creation,
            "field absent before v4 must keep its default"
        );
        let r = metadata_request(None, 9, false);
        assert!(!r.allow_auto_topic_creation);
        assert!(r.topics.is_none());
    }
}
