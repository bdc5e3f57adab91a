//! The listening socket: our own accept loop over hyper's HTTP/1.1 connections, so that no
//! client can hold cutover's connections, file descriptors or memory by being slow.
//!
//! What a slow or hostile client can no longer do, and how:
//!
//! - **Dribble its headers** (slowloris): a request's headers must be complete
//!   `header_read_timeout` (default 10 s) after their first byte arrives, else the connection is
//!   closed. Pub/Sub's front end sends a whole head at once; 10 s covers any real network.
//! - **Sit on an idle connection**: a connection with no request for `idle_timeout` (default
//!   60 s) is closed, whether it never sent a byte or is a keep-alive connection between
//!   requests. A front end that reuses connections reconnects at the cost of one handshake; in
//!   the rare race where it sends on a connection being closed, the push fails and Pub/Sub
//!   redelivers it, which every endpoint tolerates (handling is idempotent).
//! - **Open more connections than the process has descriptors**: at most `max_connections`
//!   are open (default 2000: twice Cloud Run's ceiling of 1,000 concurrent requests per
//!   instance, so a full instance still keeps an idle keep-alive connection per request in
//!   flight; the cap is lowered at start-up to leave a quarter of `RLIMIT_NOFILE`, at least 64
//!   descriptors, for outbound calls, and the soft limit is first raised to the hard one).
//!
//! When the cap is reached, a new connection is still accepted and the **oldest connection that
//! has no request in progress** (an idle keep-alive connection, or one still sending its
//! headers) is closed to make room. Why this rule rather than a semaphore on `accept`:
//! - a client that sends a whole request (`/healthz`, a valid push) gets its headers parsed
//!   as soon as its connection is first polled (the connection is polled before any eviction
//!   is looked at, and [`listen`] sets `TCP_DEFER_ACCEPT`, so the kernel hands over a
//!   connection only once its first bytes are there), after which it has a request in progress
//!   and is never evicted: however many slow connections exist, it is served;
//! - a semaphore would leave new connections waiting in the kernel's backlog behind the
//!   attacker's, which is exactly how `/healthz` timed out before;
//! - the oldest idle connection is the one that has had the most time to send a request, and
//!   evicting it costs a well-behaved client at most a reconnect.
//!
//! An evicted connection keeps its descriptor until its task has run, so under a flood of new
//! connections `accept` waits once inbound connections hold all but an eighth of the
//! descriptors (half the reserve): the process never runs out of descriptors for its outbound
//! calls, and the wait lasts only as long as the evicted tasks take to run.
//!
//! Requests in progress are never cut by this module: they are bounded by the handlers' own
//! deadline (`CUTOVER_EVENT_DEADLINE` plus a backstop). Only when every open connection has a
//! request in progress (`max_connections` requests at once, beyond Cloud Run's own limit) is a
//! new connection closed at once; it is retried by its sender.
//!
//! HTTP/1.1 only: Cloud Run hands requests to the container over HTTP/1.1 unless a service
//! opts into end-to-end HTTP/2 (cutover's does not), Pub/Sub pushes over it, and one request at
//! a time per connection is what makes "has a request in progress" well defined.
//!
//! Graceful shutdown is unchanged from `axum::serve`'s: when the shutdown signal fires, the
//! listener is closed, idle connections are closed, connections with a request in progress
//! finish it (then close), and [`serve`] returns once every connection is gone; the caller caps
//! the wait (`SHUTDOWN_GRACE`).

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot, watch};
use tokio::time::{Instant, Sleep};

/// Descriptors kept for everything but inbound connections, at least.
const MIN_FD_RESERVE: u64 = 64;

/// Connections told to close that may still hold their descriptor, at least, before `accept`
/// waits for them to go.
const MIN_CLOSING_SLACK: usize = 16;

/// Limits of the listening socket (`CUTOVER_HEADER_READ_TIMEOUT`, `CUTOVER_IDLE_TIMEOUT`,
/// `CUTOVER_MAX_CONNECTIONS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most open connections; see the module doc for what happens at the cap.
    pub max_connections: usize,
    /// From a request's first byte to the end of its headers.
    pub header_read_timeout: Duration,
    /// Longest time a connection may stay open without a request.
    pub idle_timeout: Duration,
}

impl Limits {
    /// The limits `cutover serve` was started with.
    pub fn from_args(args: &crate::config::ServeArgs) -> Self {
        use crate::config::whole_seconds;
        Limits {
            max_connections: args.max_connections,
            header_read_timeout: whole_seconds(args.header_read_timeout),
            idle_timeout: whole_seconds(args.idle_timeout),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 2000,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, so the connection cap is what bounds
/// connections rather than the descriptor limit a container happens to start with. Returns the
/// soft limit in effect afterwards (`None` where it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let lim = nofile()?;
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: `raised` is a valid rlimit for the duration of the call; raising the soft
            // limit up to the hard one needs no privilege (on failure the old limit stays).
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
        }
    }
    fd_limit()
}

/// The current soft `RLIMIT_NOFILE`, if it can be read.
fn fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        // `rlim_t` is 32 bits wide on some targets.
        #[allow(clippy::useless_conversion, reason = "rlim_t is u64 on Linux")]
        nofile().map(|lim| u64::try_from(lim.rlim_cur).unwrap_or(u64::MAX))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(unix)]
fn nofile() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim)
}

/// Connections the kernel may hold completed but not yet accepted (capped by
/// `net.core.somaxconn`). A burst of connections waits here while the accept loop catches up;
/// a full backlog drops handshakes, which a client only retries after a second.
pub const LISTEN_BACKLOG: u32 = 4096;

/// How long the kernel may hold a new connection that has sent nothing yet before handing it to
/// `accept` anyway (Linux `TCP_DEFER_ACCEPT`, in seconds).
#[cfg(target_os = "linux")]
const DEFER_ACCEPT_SECS: libc::c_int = 5;

/// A listener on `addr` with [`LISTEN_BACKLOG`] and, on Linux, `TCP_DEFER_ACCEPT`: a connection
/// reaches the accept loop once its first bytes have arrived, so a client that connects and then
/// sends its request a moment later has its head parsed (and its request started) on the first
/// poll, before any eviction could choose it; and connections that send nothing cost no
/// descriptor until then.
pub fn listen(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let secs = DEFER_ACCEPT_SECS;
        // SAFETY: the descriptor is the socket's own and `secs` outlives the call, which reads
        // exactly `size_of::<c_int>()` bytes from it. Failure only loses the optimisation.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&raw const secs).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The connection cap that fits in `fd_limit` descriptors, and the most descriptors inbound
/// connections may hold, those told to close included (which hold theirs until their task has
/// run). A quarter of the limit (at least [`MIN_FD_RESERVE`]) is kept for outbound calls, logs
/// and the runtime; closing connections may use up to half of that.
pub fn cap_for_fd_limit(wanted: usize, fd_limit: Option<u64>) -> (usize, usize) {
    let Some(limit) = fd_limit else {
        let cap = wanted.max(1);
        return (cap, cap.saturating_mul(2));
    };
    let reserve = (limit / 4).max(MIN_FD_RESERVE);
    let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let cap = wanted.min(to_usize(limit.saturating_sub(reserve))).max(1);
    let ceiling = to_usize(limit.saturating_sub(reserve / 2)).max(cap + MIN_CLOSING_SLACK);
    (cap, ceiling)
}

/// Serves `router` on `listener` until `shutdown` resolves, then closes idle connections, lets
/// requests in progress finish, and returns when no connection is left.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (cap, ceiling) = cap_for_fd_limit(limits.max_connections, fd_limit());
    if cap < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            cap,
            fd_limit = fd_limit(),
            "CUTOVER_MAX_CONNECTIONS lowered to fit the file descriptor limit"
        );
    }
    let registry = Arc::new(Registry::default());
    let (stopping, stop) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            r = async {
                // Evicted connections hold their descriptor until their task has run: past the
                // ceiling, wait for them rather than run out of descriptors.
                registry.wait_for_room(ceiling).await;
                listener.accept().await
            } => r,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                let Some(admitted) = registry.admit(cap) else {
                    registry.refused();
                    drop(stream);
                    continue;
                };
                tokio::spawn(connection(
                    Arc::clone(&registry),
                    admitted,
                    stream,
                    router.clone(),
                    limits,
                    stop.clone(),
                ));
            }
            Err(e) => {
                // Out of descriptors (or another transient accept failure): free one if an
                // idle connection can go, and pause briefly rather than spin.
                registry.warn_at_most_every_second(|open| {
                    tracing::warn!(error = %e, open, "accepting a connection failed");
                });
                registry.evict_oldest_idle();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    drop(listener);
    let _ = stopping.send(true);
    registry.wait_empty().await;
    Ok(())
}

/// What one connection is doing, shared by its I/O, its requests and its supervisor.
struct ConnState {
    epoch: Instant,
    /// Requests in progress (0 or 1 on HTTP/1.1).
    busy: AtomicUsize,
    /// Milliseconds since `epoch` when the connection last became idle (accepted, or a
    /// response was produced).
    idle_since: AtomicU64,
    /// Milliseconds since `epoch` of the first byte read while idle (a request head starting);
    /// [`NOT_STARTED`] if none.
    head_started: AtomicU64,
}

const NOT_STARTED: u64 = u64::MAX;

impl ConnState {
    fn new() -> Self {
        ConnState {
            epoch: Instant::now(),
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NOT_STARTED),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire) > 0
    }

    fn on_read(&self) {
        if !self.busy() && self.head_started.load(Ordering::Relaxed) == NOT_STARTED {
            self.head_started.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(NOT_STARTED, Ordering::Relaxed);
        RequestGuard(Arc::clone(self))
    }

    /// When the connection must be closed if nothing changes; `None` while a request is in
    /// progress.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        if self.busy() {
            return None;
        }
        let (since, allowed) = match self.head_started.load(Ordering::Relaxed) {
            NOT_STARTED => (self.idle_since.load(Ordering::Relaxed), limits.idle_timeout),
            started => (started, limits.header_read_timeout),
        };
        Some(self.epoch + Duration::from_millis(since) + allowed)
    }
}

/// Marks a request in progress until dropped (when its response is ready, or it is abandoned).
struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let s = &self.0;
        s.idle_since.store(s.now_ms(), Ordering::Relaxed);
        s.head_started.store(NOT_STARTED, Ordering::Relaxed);
        s.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections, oldest first, and how to close one.
#[derive(Default)]
struct Registry {
    inner: Mutex<Table>,
    /// Notified whenever a connection ends.
    removed: Notify,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: BTreeMap<u64, Entry>,
    /// Entries told to close that have not finished yet.
    closing: usize,
    last_warning: Option<Instant>,
}

struct Entry {
    state: Arc<ConnState>,
    /// `None` once the connection was told to close.
    evict: Option<oneshot::Sender<()>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table is consistent after every statement, so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a new connection, first closing the oldest idle ones while the cap is
    /// reached. `None` if the cap is reached and every connection has a request in progress.
    fn admit(&self, cap: usize) -> Option<Admitted> {
        let mut t = self.lock();
        while t.open.len() - t.closing >= cap {
            if !t.evict_oldest_idle() {
                return None;
            }
        }
        let id = t.next_id;
        t.next_id += 1;
        let state = Arc::new(ConnState::new());
        let (tx, evict) = oneshot::channel();
        t.open.insert(
            id,
            Entry {
                state: Arc::clone(&state),
                evict: Some(tx),
            },
        );
        Some(Admitted { id, state, evict })
    }

    fn evict_oldest_idle(&self) -> bool {
        self.lock().evict_oldest_idle()
    }

    fn refused(&self) {
        self.warn_at_most_every_second(|open| {
            tracing::warn!(
                open,
                "connection cap reached with a request in progress on every connection; closing new connections"
            );
        });
    }

    /// Runs `warn` (given the open connection count) unless it ran less than a second ago.
    fn warn_at_most_every_second(&self, warn: impl FnOnce(usize)) {
        let mut t = self.lock();
        let now = Instant::now();
        if t.last_warning
            .is_none_or(|w| now.duration_since(w) >= Duration::from_secs(1))
        {
            t.last_warning = Some(now);
            let open = t.open.len();
            drop(t);
            warn(open);
        }
    }

    fn remove(&self, id: u64) {
        let mut t = self.lock();
        if let Some(e) = t.open.remove(&id)
            && e.evict.is_none()
        {
            t.closing -= 1;
        }
        drop(t);
        self.removed.notify_waiters();
    }

    /// Waits until fewer than `ceiling` connections hold a descriptor.
    async fn wait_for_room(&self, ceiling: usize) {
        self.wait_until(|t| t.open.len() < ceiling).await;
    }

    async fn wait_empty(&self) {
        self.wait_until(|t| t.open.is_empty()).await;
    }

    async fn wait_until(&self, done: impl Fn(&Table) -> bool) {
        loop {
            let removed = self.removed.notified();
            tokio::pin!(removed);
            removed.as_mut().enable();
            if done(&self.lock()) {
                return;
            }
            removed.await;
        }
    }
}

impl Table {
    /// Tells the oldest connection without a request in progress to close. False if there is
    /// none.
    fn evict_oldest_idle(&mut self) -> bool {
        let victim = self
            .open
            .values_mut()
            .find(|e| e.evict.is_some() && !e.state.busy());
        let Some(tx) = victim.and_then(|e| e.evict.take()) else {
            return false;
        };
        self.closing += 1;
        let _ = tx.send(());
        true
    }
}

/// A connection just registered.
struct Admitted {
    id: u64,
    state: Arc<ConnState>,
    /// Fires when the registry wants the connection closed to make room.
    evict: oneshot::Receiver<()>,
}

/// Removes a connection from the registry when its task ends, however it ends.
struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

/// Serves one connection until it ends, times out, is evicted or the server stops.
async fn connection(
    registry: Arc<Registry>,
    admitted: Admitted,
    stream: TcpStream,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let Admitted {
        id,
        state,
        mut evict,
    } = admitted;
    let _registered = Registered { registry, id };
    let io = TokioIo::new(Watched {
        inner: stream,
        state: Arc::clone(&state),
    });
    let requests = Arc::clone(&state);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let guard = requests.begin_request();
        let mut router = router.clone();
        async move {
            let response = tower_service::Service::call(&mut router, req).await;
            drop(guard);
            response
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // Timeouts are this module's (the supervisor below), not hyper's.
        .header_read_timeout(None)
        .serve_connection(io, service);
    let mut conn = Box::pin(conn);
    let mut timer = Box::pin(tokio::time::sleep(limits.idle_timeout));
    tokio::select! {
        // The connection is polled first, so a head that arrived with the connection starts its
        // request (and is then never cut) even if an eviction is already waiting.
        biased;
        () = std::future::poll_fn(|cx| supervise(conn.as_mut(), timer.as_mut(), &state, &limits, cx)) => return,
        evicted = &mut evict => {
            if evicted.is_ok() && !state.busy() {
                tracing::debug!(connection = id, "closing an idle connection to make room");
                return;
            }
        }
        _ = stop.wait_for(|s| *s) => {}
    }
    // Stopping (or evicted while a request began): finish the request in progress, then close.
    conn.as_mut().graceful_shutdown();
    std::future::poll_fn(|cx| supervise(conn.as_mut(), timer.as_mut(), &state, &limits, cx)).await;
}

/// Drives a connection and closes it (by returning, so the caller drops it) when it has been
/// idle, or sending a request head, for too long.
fn supervise<C: Future + ?Sized>(
    conn: Pin<&mut C>,
    mut timer: Pin<&mut Sleep>,
    state: &ConnState,
    limits: &Limits,
    cx: &mut Context<'_>,
) -> Poll<()> {
    if conn.poll(cx).is_ready() {
        return Poll::Ready(());
    }
    // Everything that moves the deadline (bytes read, a request starting or ending) happens
    // inside the poll above, on this task, so the deadline is current here.
    let Some(deadline) = state.deadline(limits) else {
        return Poll::Pending;
    };
    if timer.deadline() != deadline {
        timer.as_mut().reset(deadline);
    }
    if timer.poll(cx).is_ready() {
        tracing::debug!(
            waiting_for = if state.head_started.load(Ordering::Relaxed) == NOT_STARTED {
                "a request"
            } else {
                "the rest of a request head"
            },
            "closing a connection that timed out"
        );
        return Poll::Ready(());
    }
    Poll::Pending
}

/// A TCP stream that tells its connection's state when bytes arrive.
struct Watched {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.state.on_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_a_quarter_of_the_descriptors_free() {
        assert_eq!(cap_for_fd_limit(2000, Some(1_048_576)), (2000, 917_504));
        assert_eq!(cap_for_fd_limit(2000, Some(1024)), (768, 896));
        assert_eq!(cap_for_fd_limit(2000, Some(256)), (192, 224));
        assert_eq!(cap_for_fd_limit(2000, Some(20)), (1, 17));
        assert_eq!(cap_for_fd_limit(0, None), (1, 2));
    }
}
