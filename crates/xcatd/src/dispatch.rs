//! From an authenticated request to handler output: policy, noderange
//! expansion, built-in commands, and the handler registry (which plugins fill
//! it is decided in `plugins.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};

use tracing::{info, warn};
use xcat_db::policy::identity_name;
use xcat_db::{AuditEntry, Db, PolicyDecision, PolicyQuery};
use xcat_jobkit::error_chain;
use xcat_plugin::{
    async_trait, Context, Dispatcher, Handler, HandlerError, HandlerRequest, Identity, Request,
    Responder, Response, Settings,
};
use xcatd_proto::NodeRecord;

/// Commands the daemon answers itself.
const BUILTINS: &[&str] = &["authcheck", "noderange"];

/// Every command `handlers` and the daemon itself answer, sorted: the
/// names the client is linked as (`xcatd commands`, what packaging reads).
pub fn served_commands(handlers: &[Arc<dyn Handler>]) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = handlers
        .iter()
        .flat_map(|h| h.commands())
        .copied()
        .collect();
    v.extend(BUILTINS);
    v.sort_unstable();
    v.dedup();
    v
}

/// Why a registry cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Two handlers (or a handler and a built-in) claim the same command.
    #[error("command {0} is registered twice")]
    Duplicate(&'static str),
}

/// Command name -> handler, plus what every request needs.
pub struct Registry {
    handlers: BTreeMap<&'static str, Arc<dyn Handler>>,
    pub db: Db,
    pub settings: Arc<Settings>,
    /// Itself, for the contexts it hands out (sub-requests come back here).
    me: OnceLock<Weak<Registry>>,
}

/// How one request ended, for the request log line.
#[derive(Debug, Clone)]
pub enum Outcome {
    Ok,
    /// The error the client was sent, followed by its chain of sources.
    Failed(String),
    Denied,
    Cancelled,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Ok => write!(f, "ok"),
            Outcome::Failed(why) => write!(f, "failed: {why}"),
            Outcome::Denied => write!(f, "denied"),
            Outcome::Cancelled => write!(f, "cancelled"),
        }
    }
}

impl Registry {
    pub fn new(
        handlers: Vec<Arc<dyn Handler>>,
        db: Db,
        settings: Arc<Settings>,
    ) -> Result<Arc<Registry>, RegistryError> {
        let mut map: BTreeMap<&'static str, Arc<dyn Handler>> = BTreeMap::new();
        for h in handlers {
            for &c in h.commands() {
                if BUILTINS.contains(&c) || map.insert(c, h.clone()).is_some() {
                    return Err(RegistryError::Duplicate(c));
                }
            }
        }
        let reg = Arc::new(Registry {
            handlers: map,
            db,
            settings,
            me: OnceLock::new(),
        });
        let _ = reg.me.set(Arc::downgrade(&reg));
        Ok(reg)
    }

    fn context(
        &self,
        identity: Arc<Identity>,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Context {
        let me: Arc<dyn Dispatcher> = self
            .me
            .get()
            .and_then(Weak::upgrade)
            .expect("registry is alive while it serves requests");
        Context {
            db: self.db.clone(),
            identity,
            cancel,
            settings: self.settings.clone(),
            dispatcher: me,
        }
    }

    /// Policy first, then the nodes: the identity the request runs as and
    /// its nodes, or why it does not run. The noderange is expanded only
    /// when the request is allowed or a rule limited to a noderange needs
    /// it, so a peer that no rule allows never makes the daemon expand one.
    /// `on_behalf`: honour a trusted peer's `<username>` (a top-level
    /// request; a sub-request always runs as its parent request).
    async fn admit(
        &self,
        req: &Request,
        identity: &Identity,
        on_behalf: bool,
    ) -> Result<(Identity, Vec<String>), Refusal> {
        let mut nodes = RequestNodes::new(&self.db, req);
        let mut effective = identity.clone();
        let mut decision = self.decide(req, &effective, &mut nodes).await;
        // A trusted peer (another server) may act on behalf of a named user;
        // the request is then judged again as that user. An empty name is
        // no identity: the request is judged, and runs, as nobody.
        if let (true, PolicyDecision::Allow { trusted: true, .. }, Some(u)) =
            (on_behalf, &decision, &req.username)
        {
            effective.user = identity_name(Some(u)).map(str::to_string);
            decision = self.decide(req, &effective, &mut nodes).await;
        }
        log_decision(req, identity, &effective, &decision);
        if on_behalf {
            self.audit(req, identity, &effective, decision.is_allowed())
                .await;
        }
        if !decision.is_allowed() {
            return Err(Refusal::Denied);
        }
        match nodes.get().await {
            Ok(n) => Ok((effective, std::mem::take(n))),
            Err(msg) => Err(Refusal::Failed(msg.clone())),
        }
    }

    /// The request's `auditlog` row (a top-level request's only: a
    /// sub-request is part of the one that asked for it). A failed write
    /// costs the row, never the request.
    async fn audit(&self, req: &Request, peer: &Identity, effective: &Identity, allowed: bool) {
        let entry = AuditEntry {
            userid: effective.user.clone(),
            clientname: Some(peer.host.clone().unwrap_or_else(|| peer.peer.clone())),
            clienttype: Some(req.clienttype.clone().unwrap_or_else(|| "other".into())),
            command: req.command.clone(),
            noderange: req.noderange.clone().filter(|n| !n.is_empty()),
            args: req.args.clone(),
            status: if allowed { "Allowed" } else { "Denied" },
        };
        if let Err(e) = self.db.audit(&entry).await {
            warn!(error = %e, command = %req.command, "cannot write the auditlog row");
        }
    }

    /// One policy decision for `req` as `who`; an unreadable policy table denies.
    async fn decide(
        &self,
        req: &Request,
        who: &Identity,
        nodes: &mut RequestNodes<'_>,
    ) -> PolicyDecision {
        let mut query = PolicyQuery {
            user: who.user.clone(),
            host: who.host.clone(),
            command: req.command.clone(),
            args: req.args.clone(),
            nodes: Vec::new(),
        };
        let decided = async {
            if nodes.targeted() {
                if let Some(d) = self.db.authorize_before_expansion(&query).await? {
                    return Ok(d);
                }
                // A noderange that does not expand targets no node a rule
                // could cover; its error is reported if the request is allowed.
                query.nodes = nodes.get().await.clone().unwrap_or_default();
            }
            self.db.authorize(&query).await
        };
        decided.await.unwrap_or_else(|e: xcat_db::DbError| {
            warn!(error = %e, "cannot read the policy table; denying");
            PolicyDecision::NoMatch
        })
    }

    /// Serve one top-level request: policy, expansion, dispatch. Does not send
    /// `serverdone` (the connection does, after the last response).
    pub async fn serve(
        &self,
        req: Request,
        identity: Identity,
        cancel: tokio_util::sync::CancellationToken,
        out: Responder,
    ) -> Outcome {
        if req.command == "authcheck" {
            // Answered for anyone: clients use it to learn who they are.
            let _ = out
                .send(Response::authcheck(identity.user.as_deref()))
                .await;
            return Outcome::Ok;
        }
        let (effective, nodes) = match self.admit(&req, &identity, true).await {
            Ok(admitted) => admitted,
            Err(refusal) => return refusal.tell(&out).await,
        };
        let ctx = self.context(Arc::new(effective), cancel);
        self.run(
            HandlerRequest {
                request: req,
                nodes,
            },
            ctx,
            out,
        )
        .await
    }

    /// Run an authorized request with its nodes resolved.
    async fn run(&self, hreq: HandlerRequest, ctx: Context, out: Responder) -> Outcome {
        let command = hreq.request.command.clone();
        if command == "noderange" {
            for n in &hreq.nodes {
                if out
                    .node(NodeRecord {
                        name: n.clone(),
                        ..Default::default()
                    })
                    .await
                    .is_err()
                {
                    return Outcome::Cancelled;
                }
            }
            return Outcome::Ok;
        }
        let Some(handler) = self.handlers.get(command.as_str()).cloned() else {
            let msg = format!("Unsupported request: {command}");
            let _ = out.error(msg.clone()).await;
            return Outcome::Failed(msg);
        };
        let cancel = ctx.cancel.clone();
        // The handler runs in its own task so that a panic becomes an error
        // reply instead of taking the connection (or the daemon) down.
        let task = tokio::spawn({
            let out = out.clone();
            async move { handler.process(hreq, ctx, out).await }
        });
        match task.await {
            Ok(Ok(())) => {
                if cancel.is_cancelled() {
                    Outcome::Cancelled
                } else {
                    Outcome::Ok
                }
            }
            Ok(Err(HandlerError::Cancelled)) => {
                let _ = out.error(format!("{command}: cancelled")).await;
                Outcome::Cancelled
            }
            Ok(Err(HandlerError::ClientGone)) => Outcome::Cancelled,
            Ok(Err(e)) => {
                // The client reads the sentence; the request's log line also
                // gets the sources beneath it (the errno, the refused entry).
                let _ = out.error(e.to_string()).await;
                Outcome::Failed(error_chain(&e))
            }
            Err(join) => {
                let msg = format!("{command} failed unexpectedly: {join}");
                let _ = out.error(msg.clone()).await;
                Outcome::Failed(msg)
            }
        }
    }
}

/// Why an admitted-or-not request does not run.
enum Refusal {
    /// Policy denies it.
    Denied,
    /// Allowed, but its noderange does not expand (the error the client gets).
    Failed(String),
}

impl Refusal {
    /// Tell the client, and say how the request ended.
    async fn tell(self, out: &Responder) -> Outcome {
        match self {
            Refusal::Denied => {
                let _ = out.error("Permission denied for request").await;
                Outcome::Denied
            }
            Refusal::Failed(msg) => {
                let _ = out.error(msg.clone()).await;
                Outcome::Failed(msg)
            }
        }
    }
}

/// A request's nodes, expanded at most once and only when asked for: the
/// noderange (within the database's noderange limits), then explicit
/// `<node>`s not already in it.
struct RequestNodes<'a> {
    db: &'a Db,
    req: &'a Request,
    nodes: Option<Result<Vec<String>, String>>,
}

impl<'a> RequestNodes<'a> {
    fn new(db: &'a Db, req: &'a Request) -> RequestNodes<'a> {
        RequestNodes {
            db,
            req,
            nodes: None,
        }
    }

    /// Does the request name any node at all?
    fn targeted(&self) -> bool {
        self.noderange().is_some() || !self.req.nodes.is_empty()
    }

    fn noderange(&self) -> Option<&'a str> {
        self.req.noderange.as_deref().filter(|s| !s.is_empty())
    }

    async fn get(&mut self) -> &mut Result<Vec<String>, String> {
        if self.nodes.is_none() {
            self.nodes = Some(self.expand().await);
        }
        self.nodes.as_mut().expect("just set")
    }

    async fn expand(&self) -> Result<Vec<String>, String> {
        let mut nodes = match self.noderange() {
            Some(nr) => self
                .db
                .expand_noderange(nr)
                .await
                .map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        if !self.req.nodes.is_empty() {
            let mut seen: std::collections::HashSet<String> = nodes.iter().cloned().collect();
            for n in &self.req.nodes {
                if seen.insert(n.clone()) {
                    nodes.push(n.clone());
                }
            }
        }
        Ok(nodes)
    }
}

/// The policy log line of a request.
fn log_decision(req: &Request, peer: &Identity, effective: &Identity, decision: &PolicyDecision) {
    let who = effective.user.as_deref().unwrap_or("(unauthenticated)");
    match decision {
        PolicyDecision::Allow { priority, .. } => {
            info!(user = who, peer = %peer.peer, command = %req.command, rule = %priority, "policy allows");
        }
        PolicyDecision::Deny { priority } => {
            warn!(user = who, peer = %peer.peer, command = %req.command, rule = %priority, "policy denies");
        }
        PolicyDecision::NoMatch => {
            warn!(user = who, peer = %peer.peer, command = %req.command, "policy denies: no rule matches");
        }
    }
}

#[async_trait]
impl Dispatcher for Registry {
    async fn run_sub_request(&self, req: Request, ctx: Context, out: Responder) {
        // Judged by policy as the parent request's identity: a handler can
        // never run, on a user's behalf, a command that user may not run.
        let outcome = match self.admit(&req, &ctx.identity, false).await {
            Ok((_, nodes)) => {
                let hreq = HandlerRequest {
                    request: req.clone(),
                    nodes,
                };
                self.run(hreq, ctx.clone(), out).await
            }
            Err(refusal) => refusal.tell(&out).await,
        };
        info!(
            user = ctx.identity.user.as_deref().unwrap_or("(unauthenticated)"),
            peer = %ctx.identity.peer,
            command = %req.command,
            outcome = %outcome,
            "sub-request"
        );
    }

    fn commands(&self) -> Vec<String> {
        let mut v: Vec<String> = self.handlers.keys().map(|s| s.to_string()).collect();
        v.extend(BUILTINS.iter().map(|s| s.to_string()));
        v.sort();
        v
    }
}
