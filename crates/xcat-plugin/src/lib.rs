//! The interface between the daemon and its handlers.
//!
//! A handler is a type implementing [`Handler`]: the commands it serves and an
//! async `process`. It receives a [`HandlerRequest`] (the typed request plus the
//! expanded nodes), a [`Context`] (tables, identity, cancellation, settings,
//! sub-requests) and a [`Responder`] that streams responses to the client.
//! Handlers never see sockets, TLS or XML.
#![forbid(unsafe_code)]

pub mod args;
pub mod boot;
#[cfg(feature = "test-support")]
pub mod testing;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use async_trait::async_trait;
pub use xcat_db::{Backend, Db};
pub use xcatd_proto::{NodeRecord, Request, Response};

/// How many responses may wait between a handler and a slow client. A full
/// channel makes `Responder::send` wait: back-pressure instead of memory growth.
pub const RESPONSE_QUEUE: usize = 64;

/// The request as a handler sees it.
#[derive(Debug, Clone)]
pub struct HandlerRequest {
    pub request: Request,
    /// `noderange` expanded (sorted, unique) followed by explicit `node` names.
    pub nodes: Vec<String>,
}

impl HandlerRequest {
    pub fn command(&self) -> &str {
        &self.request.command
    }
    pub fn args(&self) -> &[String] {
        &self.request.args
    }
}

/// Who is asking.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// Certificate CN, or the `username` a trusted peer asserted; None = unauthenticated.
    pub user: Option<String>,
    /// Peer address as text.
    pub peer: String,
    /// Short hostname of the peer when known (else the address).
    pub host: Option<String>,
}

/// Daemon settings handlers need.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Root of the install tree (`site.installdir`, default `/install`).
    pub install_dir: PathBuf,
    /// Daemon state (database, staging journal, locks).
    pub state_dir: PathBuf,
    /// Shipped defaults (exclude lists), like xCAT's `/opt/xcat/share/xcat`.
    pub share_dir: PathBuf,
    /// How to reach nodes.
    pub ssh: xcat_remote::SshConfig,
    /// Short hostname of this server (`xcatdsource`).
    pub server_name: String,
    /// What one capture may cost the server.
    pub capture: CaptureSettings,
    /// The TFTP root (`site.tftpdir`, default `/tftpboot`).
    pub tftp_dir: PathBuf,
    /// The boot service.
    pub http: boot::HttpSettings,
    /// The supervised DHCP server.
    pub dhcp: boot::DhcpSettings,
    /// The binaries of the stateless initrd.
    pub initrd: boot::InitrdSettings,
    /// The image-signing key (ed25519, `<cert_dir>/image-signing.key`,
    /// made by `xcatd init`); images are published unsigned without it.
    pub image_key: PathBuf,
}

/// The budgets of one capture (the daemon's `[capture]` section): the node is
/// untrusted, so what it can make the server spend has a ceiling, and crossing
/// one fails the capture (the previous image stays).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureSettings {
    /// Longest a capture may run, start to publication, in seconds.
    pub max_wall_secs: u64,
    /// Most bytes read from the node in one capture, counted both as received
    /// and as decoded (the archive), over every pass.
    pub max_read_bytes: u64,
    /// Ceilings over one archive (entries, metadata bytes, logical size, notes).
    pub budget: xcat_image::budget::Budget,
    /// Per-field limits of the tar parser.
    pub limits: xcat_image::tar::Limits,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        CaptureSettings {
            max_wall_secs: 4 * 3600,
            max_read_bytes: 256 << 30,
            budget: Default::default(),
            limits: Default::default(),
        }
    }
}

/// Why a handler stopped with an error. The daemon turns it into one `error`
/// response with errorcode 1 (the message must say what failed and what to do).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Bad arguments: the message is followed by usage text where relevant.
    #[error("{0}")]
    Usage(String),
    /// The operation failed.
    #[error("{0}")]
    Failed(String),
    /// The operation failed with a handler's own typed error. Its `Display` is
    /// the sentence the client reads; its `source()` chain (the I/O error, the
    /// extractor's refusal, ...) is the detail the daemon adds in its log.
    /// Transparent, so this error's sources are the typed error's.
    #[error(transparent)]
    Typed(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The request was cancelled (abort or disconnect).
    #[error("cancelled")]
    Cancelled,
    /// The client went away; nothing can be reported.
    #[error("client disconnected")]
    ClientGone,
}

impl HandlerError {
    /// A handler's typed error, kept whole (sources included) for the log.
    pub fn typed(e: impl std::error::Error + Send + Sync + 'static) -> HandlerError {
        HandlerError::Typed(Box::new(e))
    }
}

impl From<ClientGone> for HandlerError {
    fn from(_: ClientGone) -> Self {
        HandlerError::ClientGone
    }
}

impl From<xcat_db::DbError> for HandlerError {
    fn from(e: xcat_db::DbError) -> Self {
        HandlerError::Failed(e.to_string())
    }
}

pub type HandlerResult = Result<(), HandlerError>;

/// A command handler.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Command names this handler serves.
    fn commands(&self) -> &'static [&'static str];

    /// Serve one request. Observe `ctx.cancel`; stream output with `out`.
    /// Do not send `serverdone`: the daemon does.
    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult;

    /// Called once when the daemon starts, before it accepts a connection:
    /// the place to repair what a killed daemon left half-done, so the
    /// daemon itself need not know any handler's state. Returns what was
    /// done, one line each; the daemon logs every line as `recovery: LINE`.
    /// It cannot fail: a problem is one more line, since a handler's leftovers
    /// must not stop the other commands from being served.
    fn at_start(&self, _settings: &Settings) -> Vec<String> {
        Vec::new()
    }
}

/// The receiving side has gone (client disconnected or request cancelled).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the client is gone")]
pub struct ClientGone;

/// Streams responses to whoever asked (a client connection or a parent handler).
#[derive(Clone)]
pub struct Responder {
    tx: mpsc::Sender<Response>,
}

impl Responder {
    /// A responder and the receiving end; `capacity` bounds queued responses.
    pub fn channel(capacity: usize) -> (Responder, mpsc::Receiver<Response>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Responder { tx }, rx)
    }

    /// Send one response, waiting while the queue is full.
    pub async fn send(&self, r: Response) -> Result<(), ClientGone> {
        self.tx.send(r).await.map_err(|_| ClientGone)
    }
    pub async fn data(&self, t: impl Into<String>) -> Result<(), ClientGone> {
        self.send(Response::data(t)).await
    }
    pub async fn info(&self, t: impl Into<String>) -> Result<(), ClientGone> {
        self.send(Response::info(t)).await
    }
    pub async fn sinfo(&self, t: impl Into<String>) -> Result<(), ClientGone> {
        self.send(Response::sinfo(t)).await
    }
    pub async fn warning(&self, t: impl Into<String>) -> Result<(), ClientGone> {
        self.send(Response::warning(t)).await
    }
    /// An error line with errorcode 1.
    pub async fn error(&self, t: impl Into<String>) -> Result<(), ClientGone> {
        self.send(Response::error(t)).await
    }
    /// Several lines of output in one document (one `data` element each),
    /// for output long enough that a document per line would cost more
    /// than the lines.
    pub async fn lines(&self, lines: Vec<String>) -> Result<(), ClientGone> {
        if lines.is_empty() {
            return Ok(());
        }
        let items = lines
            .into_iter()
            .map(|l| xcatd_proto::Element::leaf("data", l))
            .collect();
        self.send(Response { items }).await
    }
    pub async fn node(&self, rec: NodeRecord) -> Result<(), ClientGone> {
        self.send(Response::node(rec)).await
    }
}

/// Runs requests in-process; implemented by the daemon.
#[async_trait]
pub trait Dispatcher: Send + Sync + 'static {
    /// Run `req` for a sub-request: checked by policy as `ctx.identity` (the
    /// parent request's identity, so a handler cannot run a command its user
    /// may not; a `username` in `req` is not honoured), noderange expanded,
    /// no `serverdone`. A denial and handler errors are sent as error
    /// responses on `out`.
    async fn run_sub_request(&self, req: Request, ctx: Context, out: Responder);

    /// Every command name the daemon serves, sorted.
    fn commands(&self) -> Vec<String>;
}

/// Everything a handler may use besides its request.
#[derive(Clone)]
pub struct Context {
    pub db: Db,
    pub identity: Arc<Identity>,
    /// Fired by `abortcommand`, a client disconnect, or daemon shutdown.
    pub cancel: CancellationToken,
    pub settings: Arc<Settings>,
    pub dispatcher: Arc<dyn Dispatcher>,
}

/// Responses of a running sub-request, in order. Dropping it cancels the sub-request.
pub struct SubReply {
    rx: mpsc::Receiver<Response>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl SubReply {
    /// Next response; None when the sub-request has finished.
    pub async fn next(&mut self) -> Option<Response> {
        self.rx.recv().await
    }

    /// Forward every response to `out`, returning the OR of their errorcodes.
    pub async fn forward(mut self, out: &Responder) -> Result<i32, ClientGone> {
        let mut code = 0;
        while let Some(r) = self.next().await {
            code |= r.errorcode();
            out.send(r).await?;
        }
        Ok(code)
    }

    /// Collect every response.
    pub async fn collect(mut self) -> Vec<Response> {
        let mut v = Vec::new();
        while let Some(r) = self.next().await {
            v.push(r);
        }
        v
    }
}

impl Drop for SubReply {
    fn drop(&mut self) {
        if !self.task.is_finished() {
            self.cancel.cancel();
        }
    }
}

impl Context {
    /// Run another command in-process and stream its responses (xCAT's `sub_req`).
    /// The sub-request keeps the caller's identity and is cancelled with it.
    pub fn sub_request(&self, req: Request) -> SubReply {
        let (out, rx) = Responder::channel(RESPONSE_QUEUE);
        let cancel = self.cancel.child_token();
        let ctx = Context {
            cancel: cancel.clone(),
            ..self.clone()
        };
        let dispatcher = self.dispatcher.clone();
        let task = tokio::spawn(async move { dispatcher.run_sub_request(req, ctx, out).await });
        SubReply { rx, cancel, task }
    }

    /// Shorthand for `HandlerError::Cancelled` when the token has fired.
    pub fn check_cancelled(&self) -> HandlerResult {
        if self.cancel.is_cancelled() {
            Err(HandlerError::Cancelled)
        } else {
            Ok(())
        }
    }
}
