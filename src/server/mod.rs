//! The broker process: binds the listeners, starts one shard per core, wires each shard's
//! router, controller (shard 0) and connections, and runs the clean shutdown (stop
//! accepting, drain in-flight requests, flush and fsync every log). Uses everything above.

mod admin;
mod configs;
mod elections;
mod connection;
mod groups;
mod handlers;
mod membership;
mod reassign;
mod replica;
mod txn;

use std::cell::Cell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::channel::{mpsc, oneshot};
use futures::future::FutureExt;
use futures::StreamExt;

use crate::base::limits::MESH_CHANNEL_CAPACITY;
use crate::config::BrokerConfig;
use crate::controller::{BrokerInfo, ClusterSnapshot, Controller, TopicDefaults};
use crate::metrics::ShardMetrics;
use crate::router::Router;
use crate::runtime::{self, DirLock, Mesh, TcpListener};
use crate::shard::Shard;

pub use handlers::HandlerSettings;

use connection::ConnectionLimits;

/// How long a clean shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a SIGTERM waits for the controller to move this broker's leaderships away.
const CONTROLLED_SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// What the main thread tells a shard.
enum Control {
    /// Ask the controller to move leaderships away (the controller shard; others just ack).
    ControlledShutdown(std_mpsc::Sender<()>),
    StopAccepting(std_mpsc::Sender<()>),
    CloseLogs(std_mpsc::Sender<()>),
}

#[derive(Clone)]
struct ShardContext {
    config: Arc<BrokerConfig>,
    listen: SocketAddr,
    broker: BrokerInfo,
    mesh: Mesh<crate::router::MeshMessage>,
    controls: Arc<Mutex<Vec<Option<mpsc::UnboundedReceiver<Control>>>>>,
    ready: std_mpsc::Sender<Result<(), String>>,
    /// The admin API's address (port resolved), served by shard 0.
    admin_listen: Option<SocketAddr>,
    /// True from the moment every shard serves until shutdown begins (readiness).
    serving: Arc<AtomicBool>,
    /// Client connections open on every shard (bounded by `max_connections`).
    connections: Arc<AtomicUsize>,
    /// The replication throttle's rates (static, or set at run time on any shard).
    throttle_rates: Arc<crate::replication::throttle::ThrottleRates>,
}

/// Runs a broker until SIGINT or SIGTERM, then shuts it down cleanly.
pub fn run(config: BrokerConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let _lock = DirLock::acquire(&config.data_dir)?;
    runtime::tune_allocator();
    let listen = claim_port(config.listen)?;
    let admin_listen = config.metrics_listen.map(claim_port).transpose()?;
    let broker = advertised(&config, listen)?;
    let serving = Arc::new(AtomicBool::new(false));
    let shards = config.cores;
    let (ready_tx, ready_rx) = std_mpsc::channel();
    let mut control_txs = Vec::new();
    let mut control_rxs = Vec::new();
    for _ in 0..shards {
        let (tx, rx) = mpsc::unbounded();
        control_txs.push(tx);
        control_rxs.push(Some(rx));
    }
    let throttle_rates = Arc::new(crate::replication::throttle::ThrottleRates::new(
        config.leader_replication_throttled_rate,
        config.follower_replication_throttled_rate,
    ));
    let ctx = ShardContext {
        config: Arc::new(config),
        listen,
        broker,
        mesh: Mesh::new(shards, MESH_CHANNEL_CAPACITY),
        controls: Arc::new(Mutex::new(control_rxs)),
        ready: ready_tx,
        admin_listen,
        serving: serving.clone(),
        connections: Arc::new(AtomicUsize::new(0)),
        throttle_rates,
    };
    // The signal handler is installed before any shard starts, so no signal is missed.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let spin = ctx.config.runtime.spin_before_park;
    let handles = runtime::run_shards_spinning(shards, spin, move |i| shard_main(i, ctx.clone()))?;
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => anyhow::bail!("shard failed to start: {e}"),
            Err(_) => anyhow::bail!("a shard exited during start-up"),
        }
    }
    serving.store(true, Ordering::SeqCst);
    if let Some(admin) = admin_listen {
        println!("sluice admin: listening on {admin}");
    }
    println!("sluice ready: listening on {listen}");
    use std::io::Write;
    std::io::stdout().flush()?;
    tracing::info!(%listen, shards, "broker ready");
    let signal = signals.forever().next();
    serving.store(false, Ordering::SeqCst);
    tracing::info!(?signal, "shutting down");
    run_phase(&control_txs, Control::ControlledShutdown);
    run_phase(&control_txs, Control::StopAccepting);
    run_phase(&control_txs, Control::CloseLogs);
    for h in handles {
        h.join()?;
    }
    tracing::info!("shutdown complete");
    Ok(())
}

fn run_phase(
    controls: &[mpsc::UnboundedSender<Control>],
    make: fn(std_mpsc::Sender<()>) -> Control,
) {
    let (tx, rx) = std_mpsc::channel();
    let mut sent = 0;
    for c in controls {
        if c.unbounded_send(make(tx.clone())).is_ok() {
            sent += 1;
        }
    }
    for _ in 0..sent {
        if rx.recv().is_err() {
            break;
        }
    }
}

/// How long a start waits for the port of a broker that has just died to be released.
const PORT_RELEASE_WAIT: Duration = Duration::from_secs(10);

/// Refuses to start when another process serves the port (SO_REUSEPORT would otherwise let
/// two brokers split the connections); resolves port 0 to a free port.
///
/// A broker killed with SIGKILL keeps listening for a moment after its process is gone: the
/// kernel tears its io_uring instances down asynchronously, and their in-flight accepts and
/// receives hold the listening and connected sockets until then. A restart in that window
/// (a supervisor, or `kill -9` then start) would be refused, so an address in use is retried
/// for up to [`PORT_RELEASE_WAIT`] before giving up.
fn claim_port(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let deadline = Instant::now() + PORT_RELEASE_WAIT;
    loop {
        match runtime::probe_listen(addr) {
            Ok(probe) => return Ok(probe),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot listen on {addr}: is another broker already serving it?")
                })
            }
        }
    }
}

fn advertised(config: &BrokerConfig, listen: SocketAddr) -> anyhow::Result<BrokerInfo> {
    let (host, port) = match &config.advertised_listener {
        Some(a) => {
            let (h, p) = a
                .rsplit_once(':')
                .with_context(|| format!("advertised listener {a:?} is not host:port"))?;
            (
                h.to_owned(),
                p.parse().with_context(|| format!("bad port in {a:?}"))?,
            )
        }
        None if listen.ip().is_unspecified() => ("127.0.0.1".to_owned(), listen.port() as i32),
        None => (listen.ip().to_string(), listen.port() as i32),
    };
    Ok(BrokerInfo {
        node_id: config.node_id,
        host,
        port,
        rack: None,
        shards: config.cores,
        epoch: 0,
        fenced: false,
    })
}

async fn shard_main(i: usize, ctx: ShardContext) {
    let ready = ctx.ready.clone();
    let control = ctx.controls.lock().ok().and_then(|mut c| c[i].take());
    let Some(control) = control else {
        let _ = ready.send(Err(format!("shard {i} has no control channel")));
        return;
    };
    match start_shard(i, &ctx).await {
        Ok(shard) => {
            let _ = ready.send(Ok(()));
            shard.run(control).await;
        }
        Err(e) => {
            let _ = ready.send(Err(format!("shard {i}: {e:#}")));
        }
    }
}

struct RunningShard {
    router: Rc<Router>,
    stop_tx: Option<oneshot::Sender<()>>,
    open_connections: Rc<Cell<usize>>,
    accept_task: Option<runtime::Task<()>>,
    controller: Option<Rc<Controller>>,
    /// Registration and heartbeats (the controller shard, quorum mode only).
    membership: Option<Rc<membership::Membership>>,
    /// The admin API (shard 0 only); it answers (503 on readiness) until the logs close.
    admin_task: Option<runtime::Task<()>>,
}

async fn start_shard(i: usize, ctx: &ShardContext) -> anyhow::Result<RunningShard> {
    let config = &ctx.config;
    runtime::prime_dma_probe(&config.data_dir)
        .await
        .context("priming the DMA probe")?;
    runtime::install_task_queues(&config.runtime);
    let (senders, receivers) = ctx.mesh.join(i).await?;
    let metrics = crate::metrics::local();
    let shard = Shard::new(
        i,
        config.data_dir.clone(),
        config.log.clone(),
        config.message_max_bytes,
    );
    shard.start_housekeeping(Duration::from_millis(
        config.retention_check_interval_ms as u64,
    ));
    shard.start_cleaner(Duration::from_millis(config.log.cleaner.backoff_ms as u64));
    runtime::detach(expire_producers(
        Rc::downgrade(&shard),
        config.producer_id_expiration_ms,
        Duration::from_millis(config.producer_id_expiration_check_interval_ms),
    ));
    let initial = Arc::new(ClusterSnapshot::empty(ctx.broker.clone(), String::new()));
    let (router, first_snapshot) = Router::new(senders, config.cores, shard, initial, metrics);
    router.set_fetch_debounce(config.fetch_debounce);
    router.serve_mesh(receivers);
    let mut controller = None;
    let mut membership = None;
    if i == crate::router::CONTROLLER_SHARD {
        let c = open_controller(config, ctx.broker.clone(), &router)?;
        router.set_controller(c.clone());
        c.publish_current().await;
        membership = join_cluster(config, &ctx.broker, &c);
        controller = Some(c);
    }
    first_snapshot
        .await
        .context("no metadata snapshot arrived")?;
    crate::replication::install(
        &router,
        config.replica_lag_time_max_ms,
        ctx.throttle_rates.clone(),
    );
    let group_config = group_settings(config);
    crate::group::install(router.clone(), &group_config).await;
    let txn_config = txn_settings(config);
    crate::txn::install(router.clone(), &txn_config).await;
    let listener =
        runtime::bind_listener(ctx.listen).with_context(|| format!("binding {}", ctx.listen))?;
    let handlers = Rc::new(handlers::Handlers {
        router: router.clone(),
        settings: HandlerSettings {
            auto_create_topics: config.auto_create_topics_enable,
            default_partitions: config.num_partitions,
            default_replication_factor: config.default_replication_factor,
            log: config.log.clone(),
            fetch_max_bytes: config.fetch_max_bytes,
            throttle_rates: ctx.throttle_rates.clone(),
        },
        groups: group_config,
        txn: txn_config,
    });
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let stop = stop_rx.shared();
    let open_connections = Rc::new(Cell::new(0usize));
    let limits = Rc::new(ConnectionLimits {
        max_frame: config.socket_request_max_bytes,
        request_bytes: Rc::new(runtime::Semaphore::new(request_budget(config) as u64)),
        request_budget: request_budget(config),
        max_connections: config.max_connections,
        broker_connections: ctx.connections.clone(),
        socket_buffers: config.socket_buffers,
    });
    let accept_task = runtime::spawn(accept_loop(
        listener,
        handlers,
        limits,
        stop,
        open_connections.clone(),
    ));
    let admin_task = match (i, ctx.admin_listen) {
        (crate::router::CONTROLLER_SHARD, Some(addr)) => {
            let listener = runtime::bind_listener(addr)
                .with_context(|| format!("binding the admin API on {addr}"))?;
            Some(runtime::spawn(admin::serve(
                listener,
                router.clone(),
                ctx.serving.clone(),
            )))
        }
        _ => None,
    };
    Ok(RunningShard {
        router,
        stop_tx: Some(stop_tx),
        open_connections,
        accept_task: Some(accept_task),
        controller,
        membership,
        admin_task,
    })
}

/// In quorum mode: starts the leader's session timer and this broker's registration and
/// heartbeats. A single node is registered and unfenced from the start: nothing to do.
fn join_cluster(
    config: &BrokerConfig,
    broker: &BrokerInfo,
    controller: &Rc<Controller>,
) -> Option<Rc<membership::Membership>> {
    if config.controller_voters.is_empty() {
        return None;
    }
    let heartbeat = Duration::from_millis(config.broker_heartbeat_interval_ms);
    let session = Duration::from_millis(config.broker_session_timeout_ms);
    controller.start_broker_sessions(heartbeat, session);
    if config.auto_leader_rebalance_enable {
        let every = Duration::from_secs(config.leader_imbalance_check_interval_seconds);
        controller.start_leader_rebalance(every);
    }
    let registration = crate::controller::registry::Registration {
        node_id: broker.node_id,
        host: broker.host.clone(),
        port: broker.port,
        rack: config.rack.clone(),
        shards: config.cores,
    };
    Some(membership::Membership::start(
        controller.clone(),
        registration,
        heartbeat,
    ))
}

/// The controller of shard 0: a Raft voter when `controller_voters` lists this node, an
/// observer of that quorum when it does not, else the single node's local metadata log.
fn open_controller(
    config: &BrokerConfig,
    broker: BrokerInfo,
    router: &Rc<Router>,
) -> anyhow::Result<Rc<Controller>> {
    let meta = config.data_dir.join("meta");
    let defaults = TopicDefaults {
        num_partitions: config.num_partitions,
        replication_factor: config.default_replication_factor,
    };
    let publish = Box::new(Router::publisher(Rc::downgrade(router)));
    if config.controller_voters.is_empty() {
        let c = Controller::open(&meta, broker, config.cores, defaults, publish)?;
        return Ok(Rc::new(c));
    }
    let voters: Vec<(u64, std::net::SocketAddr)> = config
        .controller_voters
        .iter()
        .map(|v| (v.id as u64, v.addr))
        .collect();
    let Some(own) = config.own_voter() else {
        if config.controller_listen.is_some() {
            tracing::warn!("controller_listen ignored: an observer has no controller listener");
        }
        tracing::info!(
            node = config.node_id,
            voters = voters.len(),
            "controller quorum observer (not a voter)"
        );
        return Controller::open_observer(&meta, broker, config.cores, defaults, publish, &voters);
    };
    let listen = config.controller_listen.unwrap_or(own.addr);
    tracing::info!(node = config.node_id, %listen, voters = voters.len(), "controller quorum voter");
    Controller::open_quorum(
        &meta,
        broker,
        config.cores,
        defaults,
        publish,
        &voters,
        listen,
    )
}

/// Every `interval`, forgets the producers this shard's partitions have not heard from in
/// `expiration_ms` (Kafka's producer-id expiration check), until the shard is gone.
async fn expire_producers(shard: std::rc::Weak<Shard>, expiration_ms: i64, interval: Duration) {
    loop {
        runtime::sleep(interval).await;
        let Some(shard) = shard.upgrade() else { return };
        let forgotten = shard.expire_producers(expiration_ms);
        if forgotten > 0 {
            tracing::debug!(shard = shard.id(), forgotten, "expired idle producer ids");
        }
    }
}

/// This shard's share of the broker-wide `queued_max_request_bytes`.
fn request_budget(config: &BrokerConfig) -> usize {
    (config.queued_max_request_bytes / config.cores.max(1)).max(1)
}

async fn accept_loop(
    listener: TcpListener,
    handlers: Rc<handlers::Handlers>,
    limits: Rc<ConnectionLimits>,
    stop: futures::future::Shared<oneshot::Receiver<()>>,
    open: Rc<Cell<usize>>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                runtime::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let broker_wide = limits.broker_connections.fetch_add(1, Ordering::SeqCst);
        if broker_wide >= limits.max_connections {
            limits.broker_connections.fetch_sub(1, Ordering::SeqCst);
            ShardMetrics::bump(&handlers.router.metrics().connections_refused_limit);
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection limit reached; closing a new connection"
            );
            drop(stream);
            continue;
        }
        ShardMetrics::bump(&handlers.router.metrics().connections_accepted);
        if let Err(e) = runtime::set_socket_buffers(&stream, limits.socket_buffers) {
            tracing::warn!(error = %e, "cannot set socket buffer sizes");
        }
        open.set(open.get() + 1);
        let (h, s, o, l) = (handlers.clone(), stop.clone(), open.clone(), limits.clone());
        runtime::detach(async move {
            connection::serve(stream, h, &l, s).await;
            o.set(o.get() - 1);
            l.broker_connections.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

impl RunningShard {
    async fn run(mut self, mut control: mpsc::UnboundedReceiver<Control>) {
        while let Some(msg) = control.next().await {
            match msg {
                Control::ControlledShutdown(done) => {
                    if let Some(m) = &self.membership {
                        m.shutdown(CONTROLLED_SHUTDOWN_WAIT).await;
                    }
                    let _ = done.send(());
                }
                Control::StopAccepting(done) => {
                    self.stop_accepting().await;
                    let _ = done.send(());
                }
                Control::CloseLogs(done) => {
                    drop(self.admin_task.take());
                    self.router.close_partitions().await;
                    drop(self.membership.take());
                    drop(self.controller.take());
                    let _ = done.send(());
                    return;
                }
            }
        }
    }

    /// Stops the listener, tells connections to read no more, waits for their answers.
    async fn stop_accepting(&mut self) {
        drop(self.accept_task.take());
        if let Some(stop) = self.stop_tx.take() {
            let _ = stop.send(());
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.open_connections.get() > 0 && Instant::now() < deadline {
            runtime::sleep(Duration::from_millis(5)).await;
        }
        if self.open_connections.get() > 0 {
            tracing::warn!(
                open = self.open_connections.get(),
                "connections still open after drain timeout"
            );
        }
    }
}

fn group_settings(config: &BrokerConfig) -> crate::group::GroupSettings {
    crate::group::GroupSettings {
        coordinator: crate::group::GroupConfig {
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            min_session_timeout_ms: config.group_min_session_timeout_ms,
            max_session_timeout_ms: config.group_max_session_timeout_ms,
            offsets_retention_ms: config.offsets_retention_minutes * 60_000,
        },
        offsets_partitions: config.offsets_topic_num_partitions,
        offsets_replication_factor: config.offsets_topic_replication_factor,
    }
}

fn txn_settings(config: &BrokerConfig) -> crate::txn::TxnSettings {
    crate::txn::TxnSettings {
        coordinator: crate::txn::TxnConfig {
            max_timeout_ms: config.transaction_max_timeout_ms,
            id_expiration_ms: config.transactional_id_expiration_ms,
        },
        state_partitions: config.transaction_state_log_num_partitions,
        state_replication_factor: config.transaction_state_log_replication_factor,
    }
}

/// The data directory's metadata folder, for tools.
pub fn meta_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("meta")
}
