//! The thread-per-core runtime: one glommio executor per core, pinned; the channel mesh
//! between shards; timers, task spawning, DMA files and sockets. This is the only module that
//! names glommio and the only place for `unsafe` (hence `hooked_buf`, an unsafe-trait
//! implementation for `protocol::pieces`); everything else uses the types and functions
//! exported here, so the broker would not change if the executor ever had to.

mod alloc;
mod dirlock;
mod executor;
mod home_waker;
mod hooked_buf;
mod mesh;
mod queues;
mod throttle;

pub use alloc::HugeAwareAllocator;
pub use dirlock::DirLock;
pub use executor::{run_shards, run_shards_spinning, ShardHandle};
pub use hooked_buf::{HookedBytesMut, PutSliceHook};
pub use mesh::{Mesh, MeshReceivers, MeshSenders};
pub use queues::{install_task_queues, spawn_in, task_queue_shares, TaskClass};
pub use throttle::Throttle;

pub use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};
pub use glommio::net::{TcpListener, TcpStream};
pub use glommio::sync::{Semaphore, StaticPermit};
pub use glommio::task::JoinHandle as DetachedTask;
pub use glommio::timer::sleep;
pub use glommio::Task;

use std::future::Future;
use std::time::Duration;

/// Spawns a task on the current shard. Dropping the returned `Task` cancels it; call
/// [`detach`] to let it run on its own.
pub fn spawn<T: 'static>(fut: impl Future<Output = T> + 'static) -> Task<T> {
    glommio::spawn_local(home_waker::HomeWoken::new(fut))
}

/// Spawns a task on the current shard that runs to completion on its own.
pub fn detach<T: 'static>(fut: impl Future<Output = T> + 'static) {
    glommio::spawn_local(home_waker::HomeWoken::new(fut)).detach();
}

/// Runs `fut` for at most `dur`; `None` if the time ran out first.
pub async fn timeout<T>(dur: Duration, fut: impl Future<Output = T>) -> Option<T> {
    use futures::future::{select, Either};
    let fut = std::pin::pin!(fut);
    let timer = std::pin::pin!(glommio::timer::sleep(dur));
    match select(fut, timer).await {
        Either::Left((v, _)) => Some(v),
        Either::Right(_) => None,
    }
}

/// Sends as much of `pieces` as the socket takes now, in one `sendmsg` that never waits
/// (glommio streams have no vectored write). `Ok(0)` when the socket has no room; the caller
/// writes the rest through the stream, which waits for room.
pub fn try_send_vectored(fd: std::os::fd::RawFd, pieces: &[&[u8]]) -> std::io::Result<usize> {
    const MAX_IOVECS: usize = 1024;
    let iov: Vec<libc::iovec> = pieces
        .iter()
        .take(MAX_IOVECS)
        .map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        })
        .collect();
    // SAFETY: a zeroed msghdr is valid (no name, no control data); iov points at `pieces`,
    // which outlive the call, and the kernel only reads them.
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len() as _;
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if sent >= 0 {
        return Ok(sent as usize);
    }
    match std::io::Error::last_os_error() {
        e if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
        e => Err(e),
    }
}

/// Binds a listener with SO_REUSEPORT, so every shard can accept on the same port.
/// SO_REUSEADDR too, so a restart is not refused for the last run's TIME_WAIT connections.
pub fn bind_listener(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::os::fd::{FromRawFd, IntoRawFd};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    // SAFETY: the descriptor is a bound, listening TCP socket whose ownership moves into the
    // listener; nothing else holds it.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

/// Sets the kernel send and receive buffer sizes of an accepted connection (Kafka's
/// `socket.send.buffer.bytes` / `socket.receive.buffer.bytes`); `None` keeps the kernel's
/// auto-tuned size.
pub fn set_socket_buffers(
    stream: &TcpStream,
    buffers: crate::config::SocketBuffers,
) -> std::io::Result<()> {
    let socket = socket2::SockRef::from(stream);
    if let Some(n) = buffers.send_bytes {
        socket.set_send_buffer_size(n)?;
    }
    if let Some(n) = buffers.receive_bytes {
        socket.set_recv_buffer_size(n)?;
    }
    Ok(())
}

/// The kernel's `(send, receive)` buffer sizes of a connection (Linux reports twice what was
/// set: the other half is its bookkeeping).
pub fn socket_buffer_sizes(stream: &TcpStream) -> std::io::Result<(usize, usize)> {
    let socket = socket2::SockRef::from(stream);
    Ok((socket.send_buffer_size()?, socket.recv_buffer_size()?))
}

/// Binds and listens on `addr` without SO_REUSEPORT, then lets go: fails if any process
/// (another broker included) listens there, and resolves port 0 to a free port.
pub fn probe_listen(addr: std::net::SocketAddr) -> std::io::Result<std::net::SocketAddr> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Connections of an earlier run lingering in TIME_WAIT must not block a restart.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1)?;
    socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("listener has no socket address"))
}

/// Runs `fut` to completion on a new single-shard executor on this thread (CLI commands,
/// tests, tools).
pub fn block_on<T>(fut: impl Future<Output = T>) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("cannot start an executor (is io_uring available?)")
        .run(home_waker::HomeWoken::new(fut))
}

/// Opens a TCP connection from the current shard.
pub async fn connect(addr: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    TcpStream::connect(addr).await.map_err(std::io::Error::from)
}

/// Tunes glibc malloc for a broker: request frames and batches of a few hundred KiB to a
/// few MiB are allocated and freed all the time, and above glibc's default mmap threshold
/// each one costs an mmap, zeroed page faults and an munmap. Keeping them on the heap lets
/// their memory be reused. Call once at start, before the shards run.
pub fn tune_allocator() {
    // SAFETY: mallopt only adjusts allocator parameters; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// Runs blocking work (file calls that fsync, say) on the shard's blocking thread, so the
/// reactor keeps serving its other tasks meanwhile.
pub async fn off_reactor<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
    glommio::executor().spawn_blocking(work).await
}

/// Lets other tasks on this shard run before continuing.
pub async fn yield_now() {
    glommio::yield_if_needed().await
}

/// Opens a file for direct I/O, creating it if needed (not truncating).
pub async fn open_dma_rw(path: &std::path::Path) -> std::io::Result<DmaFile> {
    ensure_probe_primed(path).await?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .dma_open(path)
        .await
        .map_err(std::io::Error::from)
}

/// Opens an existing file for direct-I/O reads.
pub async fn open_dma_read(path: &std::path::Path) -> std::io::Result<DmaFile> {
    ensure_probe_primed(path).await?;
    DmaFile::open(path).await.map_err(std::io::Error::from)
}

thread_local! {
    /// Devices whose polled-I/O probe this thread's executor has run on a non-empty file.
    static PRIMED_DEVICES: std::cell::RefCell<std::collections::HashSet<u64>> =
        std::cell::RefCell::new(std::collections::HashSet::new());
}

/// glommio probes once per device whether polled reads work, using the first DMA file
/// opened there. If that file is empty the probe wrongly succeeds and every later read fails
/// with EOPNOTSUPP (os error 95). So before the first DMA open on a device, this opens and
/// reads a non-empty file in the same directory. Every DMA open goes through here, so no
/// caller can forget it.
async fn ensure_probe_primed(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let dev = std::fs::metadata(dir)?.dev();
    if PRIMED_DEVICES.with(|p| p.borrow().contains(&dev)) {
        return Ok(());
    }
    // One probe file per thread: shards prime concurrently on the same directory.
    let probe =
        dir.join(format!(".dma-probe-{:?}", std::thread::current().id()).replace(['(', ')'], ""));
    std::fs::write(&probe, vec![0u8; 4096])?;
    let file = DmaFile::open(&probe).await.map_err(std::io::Error::from)?;
    let read = file.read_at(0, 4096).await.map_err(std::io::Error::from);
    let _ = file.close().await;
    let _ = std::fs::remove_file(&probe);
    read?;
    PRIMED_DEVICES.with(|p| p.borrow_mut().insert(dev));
    Ok(())
}

/// Primes the probe for the data directory's device at shard start (see
/// [`ensure_probe_primed`]).
pub async fn prime_dma_probe(data_dir: &std::path::Path) -> std::io::Result<()> {
    ensure_probe_primed(&data_dir.join("probe")).await
}

/// Converts glommio's error type into `std::io::Error`.
pub fn io_error(e: glommio::GlommioError<()>) -> std::io::Error {
    std::io::Error::from(e)
}

/// Signals that end the process on a fault rather than on request: glibc's heap checks
/// abort, a bad instruction or a bus error. SIGSEGV stays with Rust's runtime, whose handler
/// reports stack overflows.
const FATAL_SIGNALS: [libc::c_int; 4] = [libc::SIGABRT, libc::SIGBUS, libc::SIGILL, libc::SIGFPE];

/// Seconds the crash report may take before the process is killed by SIGALRM instead: a
/// report that blocks on a corrupted heap must not leave a hung broker behind.
const CRASH_REPORT_DEADLINE_S: libc::c_uint = 10;

/// Makes a fatal signal print the failing thread's name and backtrace to stderr before the
/// process dies of that signal, as it would have. A crash that happens only on a machine we
/// cannot reach (a CI runner) then says where it happened.
pub fn install_crash_report() {
    extern "C" fn report(sig: libc::c_int) {
        // SAFETY: alarm, signal and raise are async-signal-safe.
        unsafe { libc::alarm(CRASH_REPORT_DEADLINE_S) };
        // Not async-signal-safe (it allocates), but the process is dying anyway and the
        // alarm bounds the attempt.
        let thread = std::thread::current();
        let backtrace = std::backtrace::Backtrace::force_capture();
        eprintln!(
            "sluice: fatal signal {sig} on thread {}\n{backtrace}",
            thread.name().unwrap_or("<unnamed>")
        );
        // SAFETY: restores the default action, then re-raises so the exit status and any core
        // dump are those of the original signal.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
    for sig in FATAL_SIGNALS {
        // SAFETY: installs a handler for a fault signal; the handler only re-raises after
        // reporting.
        unsafe { libc::signal(sig, report as *const () as libc::sighandler_t) };
    }
}
