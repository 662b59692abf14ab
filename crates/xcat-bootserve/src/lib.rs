//! The boot service: the HTTP server inside xcatd that hands nodes their
//! boot scripts, kernels, initrds and packed images.
//!
//! * URL prefixes `/install/` -> `site.installdir` and `/tftpboot/` ->
//!   `site.tftpdir` ([`roots`] says when they are read), nothing else.
//! * GET and HEAD, single byte ranges, `If-Modified-Since`, `If-Range`
//!   (dates), keep-alive; other methods 405.
//! * Only regular files, never through a symlink, never inside a `rootimg/`
//!   tree, never a dot file: the target is checked on its bytes first
//!   (`urlpath.rs`, every rule listed there), then resolved with `openat2`
//!   beneath the directory's descriptor (`xcat_image::beneath::Root`,
//!   `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//!   RESOLVE_NO_XDEV`) and type-checked before it is opened. Every refusal
//!   is a bare 404, the same as a missing file.
//! * Bounded: connections overall and per peer address ([`peers`]), the
//!   request head's size and time, a peer that stops reading; the body is
//!   sent with `sendfile` in pieces, so memory does not depend on file size.
//! * One access-log line per request ([`access`]).
//!
//! A stock static-file service is not used: it follows symlinks, and the
//! confinement is the point. Request heads are parsed with `httparse`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use xcat_plugin::boot::HttpSettings;

pub mod access;
mod body;
mod conn;
mod head;
pub mod peers;
mod reply;
pub mod roots;
pub mod urlpath;

pub use access::AccessLog;
pub use roots::Roots;

use peers::{LogEvery, PeerLimits, Peers};

/// The time and size limits of one connection, from [`HttpSettings`].
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    pub max_header_bytes: usize,
    pub sendfile: bool,
    pub send_buffer_bytes: usize,
}

impl Limits {
    fn of(s: &HttpSettings) -> Limits {
        Limits {
            header_timeout: Duration::from_secs(s.header_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(s.idle_timeout_secs.max(1)),
            send_timeout: Duration::from_secs(s.send_timeout_secs.max(1)),
            max_header_bytes: s.max_header_bytes.max(256),
            sendfile: s.sendfile,
            send_buffer_bytes: s.send_buffer_bytes,
        }
    }
}

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("boot service: max_connections_per_peer and max_connections must be at least 1")]
    NoConnections,
    #[error("boot service: cannot open the access log {path}: {source}")]
    AccessLog {
        path: String,
        source: std::io::Error,
    },
}

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) roots: Roots,
    pub(crate) log: AccessLog,
    pub(crate) limits: Limits,
}

/// The boot service, ready to accept.
pub struct BootService {
    shared: Arc<Shared>,
    pool: Arc<Semaphore>,
    max_connections: usize,
    peers: Arc<Peers>,
}

impl BootService {
    /// Check the settings and open the access log; nothing listens yet.
    pub fn new(settings: &HttpSettings, roots: Roots) -> Result<BootService, StartError> {
        if settings.max_connections == 0 || settings.max_connections_per_peer == 0 {
            return Err(StartError::NoConnections);
        }
        let log = AccessLog::open(settings.access_log.as_deref()).map_err(|source| {
            StartError::AccessLog {
                path: settings
                    .access_log
                    .as_deref()
                    .unwrap_or_else(|| "".as_ref())
                    .display()
                    .to_string(),
                source,
            }
        })?;
        Ok(BootService {
            shared: Arc::new(Shared {
                roots,
                log,
                limits: Limits::of(settings),
            }),
            pool: Arc::new(Semaphore::new(settings.max_connections)),
            max_connections: settings.max_connections,
            peers: Peers::new(PeerLimits {
                max_connections: settings.max_connections_per_peer,
                rate: 0,
                burst: 0,
            }),
        })
    }

    /// Accept on `listener` until `shutdown` fires; then every connection
    /// is closed (a download in progress is cut: the node retries with a
    /// range) and this returns once they are gone.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        let full = Mutex::new(LogEvery::default());
        loop {
            let (tcp, addr) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: wait for descriptors to come back.
                        tracing::warn!(error = %e, "boot service: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            self.admit(&tracker, &shutdown, &full, tcp, addr);
        }
        drop(listener);
        tracker.close();
        tracker.wait().await;
    }

    /// Start a task for the connection, or close it at once when the pool
    /// or the peer's share is taken.
    fn admit(
        &self,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
        full: &Mutex<LogEvery>,
        tcp: TcpStream,
        addr: SocketAddr,
    ) {
        let slot = match self.peers.admit(addr.ip()) {
            Ok(s) => s,
            Err(refused) => {
                if let Some(unlogged) = refused.log {
                    tracing::warn!(peer = %addr, held = refused.held, unlogged,
                        "boot service: per-peer connection limit reached; closing new connections from this peer");
                }
                return;
            }
        };
        let Ok(permit) = self.pool.clone().try_acquire_owned() else {
            let due = full
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .due(Instant::now());
            if let Some(unlogged) = due {
                tracing::warn!(peer = %addr, limit = self.max_connections, unlogged,
                    "boot service: connection limit reached; closing new connections");
            }
            return;
        };
        let _ = tcp.set_nodelay(true);
        let sndbuf = self.shared.limits.send_buffer_bytes;
        if sndbuf > 0 {
            let _ = rustix::net::sockopt::set_socket_send_buffer_size(&tcp, sndbuf);
        }
        let shared = self.shared.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _held = (permit, &slot);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = conn::serve(shared, tcp, slot.ip()) => {}
            }
        });
    }
}
