//! Handlers run in-process for tests (feature `test-support`): no daemon,
//! no TLS, no root, no network.
//!
//! A [`Harness`] holds some handlers, a throwaway SQLite database and
//! settings whose directories are in the same temporary directory (or any
//! [`Db`], such as xcat-db's PostgreSQL `TempDatabase`). Each run builds a
//! fresh [`Context`] and collects every response with the handler's
//! [`HandlerResult`]; what the daemon would add (policy, noderange expansion,
//! the error reply, `serverdone`) is not there. Sub-requests are answered
//! with an error response: a handler that needs them is tested through the
//! daemon.
//!
//! ```text
//! let h = Harness::new(plugin_lsxcatd::handlers()).await;
//! assert_eq!(h.run("lsxcatd", &["-d"]).await.ok().lines(), ["dbengine=SQLite"]);
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::{
    async_trait, Context, Db, Dispatcher, Handler, HandlerError, HandlerRequest, HandlerResult,
    Identity, Request, Responder, Response, Settings, RESPONSE_QUEUE,
};

/// Response kinds in the order [`Outcome::kinds`] reports them within one response.
const KINDS: &[&str] = &["data", "info", "sinfo", "warning", "error"];

/// Handlers, a database and settings to run them against.
pub struct Harness {
    db: Db,
    settings: Arc<Settings>,
    handlers: Vec<Arc<dyn Handler>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// `handlers` against a new SQLite database in a temporary directory.
    pub async fn new(handlers: Vec<Arc<dyn Handler>>) -> Harness {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("xcatd.sqlite").display());
        let db = Db::connect(&url).await.expect("SQLite database");
        Harness::in_dir(db, handlers, dir)
    }

    /// `handlers` against `db` (which the caller keeps alive and drops).
    pub fn with_db(db: Db, handlers: Vec<Arc<dyn Handler>>) -> Harness {
        Harness::in_dir(
            db,
            handlers,
            tempfile::tempdir().expect("temporary directory"),
        )
    }

    fn in_dir(db: Db, handlers: Vec<Arc<dyn Handler>>, dir: tempfile::TempDir) -> Harness {
        let sub = |name: &str| -> PathBuf {
            let p = dir.path().join(name);
            std::fs::create_dir_all(&p).expect("settings directory");
            p
        };
        let settings = Settings {
            install_dir: sub("install"),
            state_dir: sub("state"),
            share_dir: sub("share"),
            ssh: xcat_remote::SshConfig::default(),
            server_name: "mn1".into(),
            capture: Default::default(),
            tftp_dir: sub("tftpboot"),
            http: Default::default(),
            dhcp: Default::default(),
            initrd: Default::default(),
            image_key: sub("cert").join("image-signing.key"),
        };
        // as `xcatd init` makes it: the images a test publishes are signed
        xcat_image::signature::SigningKey::create(&settings.image_key).expect("image-signing key");
        Harness {
            db,
            settings: Arc::new(settings),
            handlers,
            _dir: dir,
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Change the settings before the first request (a test's own TFTP
    /// root, a recording DHCP server handle, ...).
    pub fn configure(mut self, f: impl FnOnce(&mut Settings)) -> Harness {
        f(Arc::get_mut(&mut self.settings).expect("configure before the first request"));
        self
    }

    /// Run `command` with `args`, no nodes and no stdin.
    pub async fn run(&self, command: &str, args: &[&str]) -> Outcome {
        self.request(command, args).run().await
    }

    /// A request to adjust (nodes, stdin) before [`Call::run`].
    pub fn request(&self, command: &str, args: &[&str]) -> Call<'_> {
        let args = args.iter().map(|s| s.to_string()).collect();
        Call {
            harness: self,
            request: Request::new(command, args),
            nodes: Vec::new(),
        }
    }

    fn handler(&self, command: &str) -> Arc<dyn Handler> {
        let found = self
            .handlers
            .iter()
            .find(|h| h.commands().contains(&command));
        found
            .cloned()
            .unwrap_or_else(|| panic!("no handler serves {command}"))
    }

    fn context(&self) -> Context {
        let mut commands: Vec<String> = self
            .handlers
            .iter()
            .flat_map(|h| h.commands().iter().map(|c| c.to_string()))
            .collect();
        commands.sort();
        Context {
            db: self.db.clone(),
            identity: Arc::new(Identity::default()),
            cancel: CancellationToken::new(),
            settings: self.settings.clone(),
            dispatcher: Arc::new(NoSubRequests { commands }),
        }
    }
}

/// One request being prepared.
pub struct Call<'a> {
    harness: &'a Harness,
    request: Request,
    nodes: Vec<String>,
}

impl Call<'_> {
    /// The nodes, as the daemon would pass an expanded noderange (the
    /// request's noderange is their names joined by commas).
    pub fn nodes(mut self, nodes: &[&str]) -> Self {
        self.request.noderange = Some(nodes.join(","));
        self.nodes = nodes.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The request's `stdin` (what `tabrestore`'s client sends).
    pub fn stdin(mut self, text: &str) -> Self {
        self.request.stdin = Some(text.to_string());
        self
    }

    pub async fn run(self) -> Outcome {
        let handler = self.harness.handler(&self.request.command);
        let ctx = self.harness.context();
        let (out, mut rx) = Responder::channel(RESPONSE_QUEUE);
        let req = HandlerRequest {
            request: self.request,
            nodes: self.nodes,
        };
        let task = tokio::spawn(async move { handler.process(req, ctx, out).await });
        let mut responses = Vec::new();
        while let Some(r) = rx.recv().await {
            responses.push(r);
        }
        let result = task.await.expect("handler task");
        Outcome { responses, result }
    }
}

/// What a handler sent, and how it ended.
pub struct Outcome {
    pub responses: Vec<Response>,
    pub result: HandlerResult,
}

impl Outcome {
    /// Output as a client prints it on stdout: `data` and `info` lines, and
    /// `name: text` per node record.
    pub fn lines(&self) -> Vec<String> {
        let mut v = Vec::new();
        for r in &self.responses {
            v.extend(r.texts("data").map(str::to_string));
            v.extend(r.texts("info").map(str::to_string));
            for n in r.nodes() {
                v.extend(n.data.iter().map(|d| format!("{}: {d}", n.name)));
            }
        }
        v
    }

    /// Every text with its kind (`data`, `info`, `sinfo`, `warning`, `error`,
    /// `node` for a node record's `name: text`), in order.
    pub fn kinds(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        for r in &self.responses {
            for kind in KINDS {
                v.extend(r.texts(kind).map(|t| (*kind, t.to_string())));
            }
            for n in r.nodes() {
                v.extend(n.data.iter().map(|d| ("node", format!("{}: {d}", n.name))));
            }
        }
        v
    }

    /// Panics unless the handler succeeded.
    pub fn ok(&self) -> &Self {
        if let Err(e) = &self.result {
            panic!("handler failed: {e}; output {:?}", self.kinds());
        }
        self
    }

    /// The error's message; panics if the handler succeeded.
    pub fn err(&self) -> String {
        match &self.result {
            Err(e) => e.to_string(),
            Ok(()) => panic!("expected an error, got output {:?}", self.kinds()),
        }
    }

    /// The message of a usage error; panics on success or another error.
    pub fn usage_err(&self) -> String {
        match &self.result {
            Err(HandlerError::Usage(m)) => m.clone(),
            other => panic!(
                "expected a usage error, got {other:?}; output {:?}",
                self.kinds()
            ),
        }
    }
}

/// The dispatcher of a harness: it knows the command names, and runs no
/// sub-request.
struct NoSubRequests {
    commands: Vec<String>,
}

#[async_trait]
impl Dispatcher for NoSubRequests {
    async fn run_sub_request(&self, req: Request, _ctx: Context, out: Responder) {
        let msg = format!("the test harness runs no sub-request ({})", req.command);
        let _ = out.error(msg).await;
    }

    fn commands(&self) -> Vec<String> {
        self.commands.clone()
    }
}
