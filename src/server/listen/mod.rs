//! Every listener's connections: one accept loop for gRPC, HTTP and
//! metrics, so each has the same bounds. A connection is refused past
//! `max_connections` (shared by the gRPC and HTTP listeners, sized from the
//! process's file limit by default); a TLS handshake waits for one of
//! `max_tls_handshakes` slots and must finish in `tls_handshake_timeout`; the
//! first request must arrive within `first_request_timeout` (a client that
//! never sends the HTTP/2 preface, or drips its headers, is closed), and a
//! connection that serves nothing for `idle_timeout` is closed; HTTP/2 pings
//! find dead peers. Each bound is a flag and a metric.

mod track;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
    task::JoinSet,
    time::Instant,
};
use tokio_rustls::TlsAcceptor;

use track::{Activity, Tracked, Verdict};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connection bounds (flags of `serve`; the defaults are documented there).
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// Open connections across the gRPC and HTTP listeners; more are closed
    /// at once. `None`: half the process's open-file limit, less a reserve
    /// (each HTTP stream also holds an upstream socket).
    pub max_connections: Option<usize>,
    /// How long a new connection may take to send its first request (TLS
    /// handshake excluded).
    pub first_request_timeout: Duration,
    /// How long a connection may serve no request before it is closed.
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// TLS handshakes in progress at once (counted from the ClientHello);
    /// more wait, within their timeout.
    pub max_tls_handshakes: usize,
    /// HTTP/2 ping interval (`None`: no pings) and how long to wait for the answer.
    pub http2_keepalive_interval: Option<Duration>,
    pub http2_keepalive_timeout: Duration,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            max_connections: None,
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            tls_handshake_timeout: Duration::from_secs(10),
            max_tls_handshakes: 256,
            http2_keepalive_interval: Some(Duration::from_secs(30)),
            http2_keepalive_timeout: Duration::from_secs(10),
        }
    }
}

/// Open-file descriptors kept for what is not a client connection
/// (listeners, config files, the runtime, upstream pools).
const FD_RESERVE: u64 = 128;

impl ConnectionSettings {
    /// The connection limit in force.
    pub fn connection_limit(&self) -> usize {
        self.max_connections.unwrap_or_else(|| {
            let files = fd_limit().unwrap_or(20_000);
            let n = files.saturating_sub(FD_RESERVE) / 2;
            usize::try_from(n.clamp(16, 1 << 20)).unwrap_or(1 << 20)
        })
    }
}

/// The soft open-file limit, if there is one.
fn fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Raises the soft open-file limit to the hard one (as Go's runtime does),
/// so the default connection limit is as high as the system allows.
pub fn raise_fd_limit() {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current < limit.maximum {
            limit.current = limit.maximum;
            if let Err(e) = setrlimit(Resource::Nofile, limit) {
                tracing::debug!(error = %e, "could not raise the open-file limit");
            }
        }
    }
}

/// What the gRPC and HTTP listeners share: the connection and handshake slots.
#[derive(Debug)]
pub(crate) struct Gate {
    settings: ConnectionSettings,
    connections: Arc<Semaphore>,
    handshakes: Semaphore,
}

impl Gate {
    pub(crate) fn new(settings: ConnectionSettings) -> Arc<Self> {
        Self::with_limit(settings.connection_limit(), settings)
    }

    pub(crate) fn with_limit(limit: usize, settings: ConnectionSettings) -> Arc<Self> {
        let handshakes = Semaphore::new(settings.max_tls_handshakes.max(1));
        Arc::new(Gate {
            connections: Arc::new(Semaphore::new(limit.min(Semaphore::MAX_PERMITS))),
            handshakes,
            settings,
        })
    }
}

/// One listener's way of serving its connections.
pub(crate) struct Listener<S> {
    pub name: &'static str,
    pub service: S,
    pub tls: Option<TlsAcceptor>,
    pub gate: Arc<Gate>,
}

/// Serves `listener` until `shutdown`, then stops accepting (the socket is
/// closed), asks every connection to finish (HTTP/2 GOAWAY; HTTP/1.1 closes
/// after its response) and waits for them. Dropping this future drops them.
pub(crate) async fn serve<S, B>(
    listener: TcpListener,
    served: Listener<S>,
    shutdown: impl Future<Output = ()>,
) where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = bytes::Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    let conn = Arc::new(Conn {
        builder: builder(&served.gate.settings),
        served,
    });
    let (stop_tx, stop_rx) = watch::channel(());
    let mut open = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = open.join_next(), if !open.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of descriptors, most likely: wait for some to close.
                        if ACCEPT_LOG.allow() {
                            tracing::warn!(listener = conn.served.name, error = %e, "accept failed");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = conn.served.gate.connections.clone().try_acquire_owned() else {
                    metrics::counter!("streamguard_connections_refused_total", "listener" => conn.served.name).increment(1);
                    if REFUSE_LOG.allow() {
                        tracing::warn!(listener = conn.served.name, %peer, "connection limit reached: connection refused");
                    }
                    continue;
                };
                // Chunks are small writes: without TCP_NODELAY, Nagle holds
                // each one back until the previous is acknowledged.
                let _ = tcp.set_nodelay(true);
                let (conn, stop) = (conn.clone(), stop_rx.clone());
                open.spawn(async move {
                    let _permit = permit;
                    conn.run(tcp, peer, stop).await;
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(());
    while open.join_next().await.is_some() {}
}

fn builder(s: &ConnectionSettings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // The first-request and idle timeouts are the watchdog's: hyper's header
    // timer would also end an HTTP/1.1 keep-alive wait at the header timeout.
    b.http1().keep_alive(true).header_read_timeout(None);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(s.http2_keepalive_interval)
        .keep_alive_timeout(s.http2_keepalive_timeout);
    b
}

struct Conn<S> {
    builder: auto::Builder<TokioExecutor>,
    served: Listener<S>,
}

/// How long an idle connection asked to close (HTTP/2 GOAWAY) may take
/// before it is dropped; it serves no request, so nothing is lost. (An
/// HTTP/1.1 connection in the middle of dripped headers would otherwise wait
/// for the rest.)
const CLOSE_GRACE: Duration = Duration::from_secs(1);

impl<S, B> Conn<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = bytes::Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    async fn run(&self, tcp: TcpStream, peer: SocketAddr, stop: watch::Receiver<()>) {
        let name = self.served.name;
        let _open = OpenGuard::new(name);
        let reason = match &self.served.tls {
            None => self.drive(tcp, stop).await,
            Some(acceptor) => match self.handshake(acceptor, tcp, peer).await {
                Some(tls) => self.drive(tls, stop).await,
                None => "tls_handshake",
            },
        };
        metrics::counter!("streamguard_connections_closed_total", "listener" => name, "reason" => reason)
            .increment(1);
    }

    async fn handshake(
        &self,
        acceptor: &TlsAcceptor,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        let gate = &self.served.gate;
        let work = async {
            // A slot is taken once the ClientHello arrives: a client that
            // sends nothing costs a socket until its timeout, not a slot.
            tcp.peek(&mut [0u8; 1]).await?;
            let _slot = gate.handshakes.acquire().await;
            acceptor.accept(tcp).await
        };
        let failure = match tokio::time::timeout(gate.settings.tls_handshake_timeout, work).await {
            Ok(Ok(tls)) => return Some(tls),
            Ok(Err(e)) => ("error", e.to_string()),
            Err(_) => (
                "timeout",
                "no handshake within --tls-handshake-timeout".into(),
            ),
        };
        let name = self.served.name;
        metrics::counter!("streamguard_tls_handshake_failures_total", "listener" => name, "reason" => failure.0)
            .increment(1);
        match HANDSHAKE_LOG.allow() {
            true => {
                tracing::warn!(listener = name, %peer, reason = %failure.1, "TLS handshake failed (further failures within 10 s are logged at debug)")
            }
            false => {
                tracing::debug!(listener = name, %peer, reason = %failure.1, "TLS handshake failed")
            }
        }
        None
    }

    /// Serves one connection; returns why it ended.
    async fn drive<IO>(&self, io: IO, mut stop: watch::Receiver<()>) -> &'static str
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let s = &self.served.gate.settings;
        let activity = Activity::new();
        let service = Tracked::new(self.served.service.clone(), activity.clone());
        let conn = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let watchdog = tokio::time::sleep(s.first_request_timeout);
        tokio::pin!(watchdog);
        let mut closing: Option<&'static str> = None;
        loop {
            tokio::select! {
                done = conn.as_mut() => {
                    return match (done, closing) {
                        (_, Some(why)) => why,
                        (Ok(()), None) => "client",
                        (Err(e), None) => {
                            tracing::debug!(listener = self.served.name, error = %e, "connection ended with an error");
                            "error"
                        }
                    };
                }
                changed = stop.changed(), if closing.is_none() => {
                    let _ = changed;
                    conn.as_mut().graceful_shutdown();
                    closing = Some("shutdown");
                }
                () = &mut watchdog => match (closing, activity.verdict(Instant::now(), s.first_request_timeout, s.idle_timeout)) {
                    (Some("shutdown"), _) => watchdog.as_mut().reset(Instant::now() + s.idle_timeout),
                    (Some(why), _) => return why,
                    (None, Verdict::WakeAt(at)) => watchdog.as_mut().reset(at),
                    (None, Verdict::Close { first }) => {
                        conn.as_mut().graceful_shutdown();
                        closing = Some(if first { "first_request_timeout" } else { "idle" });
                        watchdog.as_mut().reset(Instant::now() + CLOSE_GRACE);
                    }
                },
            }
        }
    }
}

/// Counts a connection in `streamguard_connections_open` while it lives.
struct OpenGuard(&'static str);

impl OpenGuard {
    fn new(name: &'static str) -> Self {
        metrics::counter!("streamguard_connections_total", "listener" => name).increment(1);
        metrics::gauge!("streamguard_connections_open", "listener" => name).increment(1.0);
        OpenGuard(name)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        metrics::gauge!("streamguard_connections_open", "listener" => self.0).decrement(1.0);
    }
}

/// At most one line per period at WARN; the rest go to debug.
struct LogLimit {
    next_ms: std::sync::atomic::AtomicU64,
}

static HANDSHAKE_LOG: LogLimit = LogLimit::new();
static ACCEPT_LOG: LogLimit = LogLimit::new();
static REFUSE_LOG: LogLimit = LogLimit::new();

impl LogLimit {
    const PERIOD_MS: u64 = 10_000;

    const fn new() -> Self {
        LogLimit {
            next_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn allow(&self) -> bool {
        use std::sync::atomic::Ordering;
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let now = u64::try_from(
            EPOCH
                .get_or_init(std::time::Instant::now)
                .elapsed()
                .as_millis(),
        )
        .unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + Self::PERIOD_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}
