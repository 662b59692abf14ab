//! The listener and the per-connection loop.
//!
//! One task per connection. A request's handler runs in its own task and
//! streams responses through a bounded channel; the connection task writes
//! them out and, at the same time, keeps reading the socket so that an
//! `abortcommand` document or a disconnect cancels the running command.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use xcat_plugin::{Identity, Responder, Response, RESPONSE_QUEUE};
use xcatd_proto::{encode_response, FrameError, FrameLimits, RequestReader};

use crate::config::Config;
use crate::dispatch::{Outcome, Registry};
use xcat_bootserve::peers::{LogEvery, PeerLimits, PeerSlot, Peers};

/// Most responses written with one flush.
const WRITE_BATCH: usize = 256;

/// How long a cancelled command may take to wind down.
const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// Shared by every connection.
pub struct Server {
    pub registry: Arc<Registry>,
    pub acceptor: TlsAcceptor,
    pub limits: FrameLimits,
    pub handshake_timeout: Duration,
    pub write_timeout: Duration,
    /// Bounds concurrent connections; a connection past it is closed at once.
    pub slots: Arc<Semaphore>,
    pub max_connections: usize,
    /// Each peer's share of the slots and its request rate.
    pub peers: Arc<Peers>,
    /// Refusals at `max_connections`, logged at most every few seconds.
    pub full: Mutex<LogEvery>,
    /// Fired when shutdown gives up waiting: cancels every running command.
    pub hard_stop: CancellationToken,
    pub server_name: String,
}

impl Server {
    pub fn new(cfg: &Config, registry: Arc<Registry>, tls: Arc<rustls::ServerConfig>) -> Server {
        Server {
            registry,
            acceptor: TlsAcceptor::from(tls),
            limits: FrameLimits {
                max_bytes: cfg.max_request_bytes,
                first_byte_timeout: Config::secs(cfg.request_idle_timeout),
                total_timeout: Config::secs(cfg.request_timeout),
            },
            handshake_timeout: Config::secs(cfg.handshake_timeout),
            write_timeout: Config::secs(cfg.write_timeout),
            slots: Arc::new(Semaphore::new(cfg.max_connections)),
            max_connections: cfg.max_connections,
            peers: Peers::new(PeerLimits {
                max_connections: cfg.max_connections_per_peer,
                rate: cfg.peer_request_rate,
                burst: cfg.peer_request_burst,
            }),
            full: Mutex::new(LogEvery::default()),
            hard_stop: CancellationToken::new(),
            server_name: cfg.server_name.clone(),
        }
    }

    /// Accept until `shutdown` fires, then wait up to `grace` for running
    /// connections before cancelling them.
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: CancellationToken,
        grace: Duration,
    ) {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let Some((permit, slot)) = self.admit(&peer) else {
                            drop(tcp);
                            continue;
                        };
                        let me = self.clone();
                        conns.spawn(async move {
                            me.connection(tcp, peer, &slot).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(listener);
        info!(
            running = conns.len(),
            "shutting down: no longer accepting connections"
        );
        let drained =
            tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            warn!(
                running = conns.len(),
                "grace period over: cancelling running commands"
            );
            self.hard_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                while conns.join_next().await.is_some() {}
            })
            .await;
            conns.abort_all();
        }
        info!("shutdown complete");
    }

    /// A slot for a new connection from `peer`: its peer's share first (one
    /// peer cannot fill the pool), then the pool. None: close it at once.
    fn admit(&self, peer: &SocketAddr) -> Option<(OwnedSemaphorePermit, PeerSlot)> {
        let slot = match self.peers.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refused) => {
                if let Some(unlogged) = refused.log {
                    warn!(%peer, held = refused.held, limit = self.peers.limits().max_connections,
                          unlogged, "per-peer connection limit reached (max_connections_per_peer); closing new connections from this peer");
                }
                return None;
            }
        };
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            let due = self
                .full
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .due(Instant::now());
            if let Some(unlogged) = due {
                warn!(%peer, limit = self.max_connections, unlogged,
                      "connection limit reached (max_connections); closing new connections");
            }
            return None;
        };
        Some((permit, slot))
    }

    async fn connection(&self, tcp: TcpStream, peer: SocketAddr, slot: &PeerSlot) {
        let _ = tcp.set_nodelay(true);
        let tls = match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(tcp))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let why = crate::tls::explain_cert_error(&e.to_string());
                warn!(%peer, error = %why, "TLS handshake failed; connection closed");
                return;
            }
            Err(_) => {
                warn!(%peer, timeout = ?self.handshake_timeout, "TLS handshake timed out; connection closed");
                return;
            }
        };
        let user = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(crate::tls::common_name)
            // A certificate with a blank CN names nobody.
            .filter(|cn| xcat_db::policy::identity_name(Some(cn)).is_some());
        let identity = Identity {
            user,
            peer: peer.to_string(),
            host: Some(peer_host(&peer)),
        };
        let (rd, wr) = tokio::io::split(tls);
        let mut reader = RequestReader::new(rd, self.limits.clone());
        let mut writer = BufWriter::new(wr);
        // One request per connection, as xCAT's clients use it: the reply
        // ends with `serverdone` and the server closes, so a client that
        // reads to end of stream (node-side scripts do) is not left waiting.
        loop {
            let req = match reader.next_request().await {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    self.refuse(&mut writer, &peer, &identity, e).await;
                    break;
                }
            };
            if req.abort && req.command.is_empty() {
                // An abort that arrives when nothing runs has nothing to cancel.
                continue;
            }
            // The rate guard stands in front of policy and the handlers.
            if !slot.take_request() {
                self.too_many(&mut writer, &identity, slot, req).await;
                break;
            }
            self.request(req, &identity, &mut reader, &mut writer).await;
            break;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), writer.shutdown()).await;
    }

    /// A request that could not be read: say why in the log, and to the
    /// client when it is worth telling (it spoke our protocol but badly).
    async fn refuse<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        peer: &SocketAddr,
        identity: &Identity,
        e: FrameError,
    ) {
        let user = identity.user.as_deref().unwrap_or("(unauthenticated)");
        warn!(%peer, user, error = %e, "bad request; connection closed");
        let tell = matches!(e, FrameError::Codec(_) | FrameError::TooLarge { .. });
        if tell {
            let msg = format!("Invalid request: {e}");
            let mut bytes = encode_response(&Response::error(msg));
            bytes.push_str(&encode_response(&Response::serverdone()));
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                writer.write_all(bytes.as_bytes()).await?;
                writer.flush().await
            })
            .await;
        }
    }

    /// Answer a request over its peer's rate with an error saying so.
    async fn too_many<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        identity: &Identity,
        slot: &PeerSlot,
        req: xcat_plugin::Request,
    ) {
        let limits = self.peers.limits();
        let msg = format!(
            "Too many requests from {}: more than {} a second, in bursts of up to {} \
             (peer_request_rate, peer_request_burst); wait a moment and retry",
            slot.ip(),
            limits.rate,
            limits.burst
        );
        let mut done = Response::serverdone();
        if let Some(t) = req.transid {
            done = done.with_transid(t);
        }
        let _ = self
            .write(writer, &[Response::error(msg.clone()), done])
            .await;
        log_request(
            identity,
            &req.command,
            &Outcome::Failed(msg),
            Instant::now(),
        );
    }

    /// Run one request to completion.
    async fn request<R, W>(
        &self,
        req: xcat_plugin::Request,
        identity: &Identity,
        reader: &mut RequestReader<R>,
        writer: &mut W,
    ) where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        let started = Instant::now();
        let command = req.command.clone();
        let transid = req.transid.clone();
        let cancel = self.hard_stop.child_token();
        let (out, mut rx) = Responder::channel(RESPONSE_QUEUE);
        let registry = self.registry.clone();
        let mut task = tokio::spawn({
            let identity = identity.clone();
            let cancel = cancel.clone();
            async move { registry.serve(req, identity, cancel, out).await }
        });

        let mut client = ClientState {
            open: true,
            writable: true,
            aborted: false,
        };
        let mut outcome = None;
        // Once cancelled, a handler gets this long to clean up before its task
        // is aborted (dropping its future still runs its destructors).
        let mut give_up: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            if give_up.is_none() && cancel.is_cancelled() {
                give_up = Some(Box::pin(tokio::time::sleep(CANCEL_GRACE)));
            }
            tokio::select! {
                biased;
                resp = rx.recv() => match resp {
                    Some(r) => {
                        let batch = with_queued(r, &mut rx);
                        if client.writable && !self.write(writer, &batch).await {
                            client.writable = false;
                            cancel.cancel();
                        }
                    }
                    None => break,
                },
                next = reader.next_request_untimed(), if client.open => {
                    client.said(next, identity, &command, &cancel);
                }
                res = &mut task, if outcome.is_none() => {
                    outcome = Some(res.unwrap_or_else(|e| Outcome::Failed(format!("internal error: {e}"))));
                }
                _ = async { give_up.as_mut().expect("set").await }, if give_up.is_some() && outcome.is_none() => {
                    warn!(peer = %identity.peer, %command, "command ignored cancellation; aborting it");
                    task.abort();
                    outcome = Some(Outcome::Cancelled);
                    break;
                }
            }
        }
        let outcome = match outcome {
            Some(o) => o,
            None => task
                .await
                .unwrap_or_else(|e| Outcome::Failed(format!("internal error: {e}"))),
        };
        if client.writable {
            let mut done = Response::serverdone();
            if let Some(t) = transid {
                done = done.with_transid(t);
            }
            // The connection closes next either way: nothing to do if this fails.
            let _ = self.write(writer, std::slice::from_ref(&done)).await;
        }
        log_request(identity, &command, &client.logged(outcome), started);
    }

    /// Write responses and flush once; false when the client cannot take
    /// them in time.
    async fn write<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        batch: &[Response],
    ) -> bool {
        let mut bytes = String::new();
        for r in batch {
            if r.is_serverdone() {
                let r = r.clone().with_source(self.server_name.clone());
                bytes.push_str(&encode_response(&r));
            } else {
                bytes.push_str(&encode_response(r));
            }
        }
        let res = tokio::time::timeout(self.write_timeout, async {
            writer.write_all(bytes.as_bytes()).await?;
            writer.flush().await
        })
        .await;
        matches!(res, Ok(Ok(())))
    }
}

/// What the connection knows of its client while a command runs.
struct ClientState {
    /// Still sending (no end of stream or bad document yet).
    open: bool,
    /// Still taking responses in time.
    writable: bool,
    /// Sent the abort document.
    aborted: bool,
}

impl ClientState {
    /// A document (or the end of the stream) from the client while `command`
    /// runs: an abort or a hang-up cancels it, another request is ignored.
    fn said(
        &mut self,
        next: Result<Option<xcat_plugin::Request>, FrameError>,
        identity: &Identity,
        command: &str,
        cancel: &CancellationToken,
    ) {
        match next {
            Ok(Some(r)) if r.abort => {
                info!(peer = %identity.peer, %command, "abort requested by client");
                self.aborted = true;
                cancel.cancel();
            }
            Ok(Some(r)) => {
                warn!(peer = %identity.peer, running = %command, ignored = %r.command,
                      "second request while a command runs; ignored");
            }
            Ok(None) | Err(_) => {
                self.open = false;
                self.writable = false;
                cancel.cancel();
            }
        }
    }

    /// The outcome as logged: a command that succeeded after its client
    /// aborted or left was cancelled as far as the client knows.
    fn logged(&self, outcome: Outcome) -> Outcome {
        if (self.aborted || !self.open) && matches!(outcome, Outcome::Ok) {
            Outcome::Cancelled
        } else {
            outcome
        }
    }
}

/// `first` and whatever else is already queued (up to [`WRITE_BATCH`]), to
/// write in one flush: one TLS record per response would cost a system call
/// and a record each (10,000 for a nodels).
fn with_queued(first: Response, rx: &mut mpsc::Receiver<Response>) -> Vec<Response> {
    let mut batch = vec![first];
    while batch.len() < WRITE_BATCH {
        match rx.try_recv() {
            Ok(r) => batch.push(r),
            Err(_) => break,
        }
    }
    batch
}

/// The one log line every request gets.
fn log_request(identity: &Identity, command: &str, outcome: &Outcome, started: Instant) {
    info!(
        user = identity.user.as_deref().unwrap_or("(unauthenticated)"),
        peer = %identity.peer,
        %command,
        outcome = %outcome,
        duration_ms = started.elapsed().as_millis() as u64,
        "request"
    );
}

/// The peer's short host name for policy `host` matching. Loopback peers are
/// `localhost`; others are named from /etc/hosts when listed there, else by
/// their address (no DNS lookup on the request path).
fn peer_host(peer: &SocketAddr) -> String {
    let ip = peer.ip().to_canonical();
    if ip.is_loopback() {
        return "localhost".into();
    }
    if let Ok(hosts) = std::fs::read_to_string("/etc/hosts") {
        for line in hosts.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            if let (Some(addr), Some(name)) = (words.next(), words.next()) {
                if addr.parse::<std::net::IpAddr>().ok() == Some(ip) {
                    return name.split('.').next().unwrap_or(name).to_string();
                }
            }
        }
    }
    ip.to_string()
}
