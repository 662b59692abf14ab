//! From an authenticated request to handler output: noderange expansion,
//! policy, built-in commands, and the handler registry (which plugins fill
//! it is decided in `plugins.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};

use tracing::{info, warn};
use xcat_db::{Db, PolicyDecision, PolicyQuery};
use xcat_jobkit::error_chain;
use xcat_plugin::{
    async_trait, Context, Dispatcher, Handler, HandlerError, HandlerRequest, Identity, Request,
    Responder, Response, Settings,
};
use xcatd_proto::NodeRecord;

/// Commands the daemon answers itself.
const BUILTINS: &[&str] = &["authcheck", "noderange"];

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

    /// Expand `noderange` and append explicit `node`s.
    async fn nodes_of(&self, req: &Request) -> Result<Vec<String>, String> {
        let mut nodes = Vec::new();
        if let Some(nr) = req.noderange.as_deref().filter(|s| !s.is_empty()) {
            nodes = self
                .db
                .expand_noderange(nr)
                .await
                .map_err(|e| e.to_string())?;
        }
        if !req.nodes.is_empty() {
            let mut seen: std::collections::HashSet<String> = nodes.iter().cloned().collect();
            for n in &req.nodes {
                if seen.insert(n.clone()) {
                    nodes.push(n.clone());
                }
            }
        }
        Ok(nodes)
    }

    /// Check policy. Returns the identity to run as, or None when denied.
    async fn authorize(
        &self,
        req: &Request,
        identity: &Identity,
        nodes: &[String],
    ) -> Option<Identity> {
        let mut query = PolicyQuery {
            user: identity.user.clone(),
            host: identity.host.clone(),
            command: req.command.clone(),
            args: req.args.clone(),
            nodes: nodes.to_vec(),
        };
        let decide = |q: PolicyQuery| async move {
            self.db.authorize(&q).await.unwrap_or_else(|e| {
                warn!(error = %e, "cannot read the policy table; denying");
                PolicyDecision::NoMatch
            })
        };
        let mut decision = decide(query.clone()).await;
        let mut effective = identity.clone();
        // A trusted peer (another server) may act on behalf of a named user;
        // the request is then judged again as that user.
        if let (PolicyDecision::Allow { trusted: true, .. }, Some(u)) = (&decision, &req.username) {
            effective.user = Some(u.clone());
            query.user = Some(u.clone());
            decision = decide(query).await;
        }
        let who = effective.user.as_deref().unwrap_or("(unauthenticated)");
        match decision {
            PolicyDecision::Allow { priority, .. } => {
                info!(user = who, peer = %identity.peer, command = %req.command, rule = %priority, "policy allows");
                Some(effective)
            }
            PolicyDecision::Deny { priority } => {
                warn!(user = who, peer = %identity.peer, command = %req.command, rule = %priority, "policy denies");
                None
            }
            PolicyDecision::NoMatch => {
                warn!(user = who, peer = %identity.peer, command = %req.command, "policy denies: no rule matches");
                None
            }
        }
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
        let nodes = self.nodes_of(&req).await;
        let nodes_for_policy = nodes.as_ref().map(|n| n.as_slice()).unwrap_or(&[]);
        let Some(effective) = self.authorize(&req, &identity, nodes_for_policy).await else {
            let _ = out.error("Permission denied for request").await;
            return Outcome::Denied;
        };
        let nodes = match nodes {
            Ok(n) => n,
            Err(msg) => {
                let _ = out.error(msg.clone()).await;
                return Outcome::Failed(msg);
            }
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

#[async_trait]
impl Dispatcher for Registry {
    async fn run_sub_request(&self, req: Request, ctx: Context, out: Responder) {
        let nodes = match self.nodes_of(&req).await {
            Ok(n) => n,
            Err(msg) => {
                let _ = out.error(msg).await;
                return;
            }
        };
        let outcome = self
            .run(
                HandlerRequest {
                    request: req.clone(),
                    nodes,
                },
                ctx.clone(),
                out,
            )
            .await;
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
