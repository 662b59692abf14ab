//! Dispatch in-process: the registry with the daemon's real plugin list (test
//! commands on) over a throw-away SQLite database with the default policy,
//! no sockets or TLS.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Identity, Request,
    Responder, Response, Settings, RESPONSE_QUEUE,
};
use xcatd::{Outcome, Registry};

const SEEDS: xcat_db::SiteSeeds<'static> = xcat_db::SiteSeeds {
    server_name: "mgmt",
    install_dir: "/install",
    tftp_dir: "/tftpboot",
    http_port: None,
    status_port: None,
};

/// Answers, under the given command names, with the user the request runs
/// as (after policy).
struct WhoAmI(&'static [&'static str]);

const WHOAMI: WhoAmI = WhoAmI(&["whoami"]);

#[async_trait]
impl Handler for WhoAmI {
    fn commands(&self) -> &'static [&'static str] {
        self.0
    }

    async fn process(&self, _req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let user = ctx.identity.user.clone().unwrap_or_default();
        out.data(user).await?;
        Ok(())
    }
}

/// Fails with a typed error whose source is an I/O error.
struct FailsTyped;

#[derive(Debug, thiserror::Error)]
#[error("cannot write the image; free space and retry")]
struct WriteFailed(#[source] std::io::Error);

#[async_trait]
impl Handler for FailsTyped {
    fn commands(&self) -> &'static [&'static str] {
        &["failstyped"]
    }

    async fn process(&self, _req: HandlerRequest, _ctx: Context, _out: Responder) -> HandlerResult {
        let io = std::io::Error::from_raw_os_error(28);
        Err(HandlerError::typed(WriteFailed(io)))
    }
}

/// Runs `whoami` as a sub-request and forwards what it says.
struct Escalate;

#[async_trait]
impl Handler for Escalate {
    fn commands(&self) -> &'static [&'static str] {
        &["escalate"]
    }

    async fn process(&self, _req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        ctx.sub_request(Request::new("whoami", vec![]))
            .forward(&out)
            .await?;
        Ok(())
    }
}

struct Fixture {
    registry: Arc<Registry>,
    _dir: tempfile::TempDir,
}

async fn fixture(extra: Vec<Arc<dyn Handler>>) -> Result<Fixture, xcatd::RegistryError> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("xcatd.sqlite").display());
    let db = xcat_db::Db::connect(&url).await.unwrap();
    db.seed_defaults(&SEEDS).await.unwrap();
    let settings = Arc::new(Settings {
        install_dir: dir.path().join("install"),
        state_dir: dir.path().to_path_buf(),
        share_dir: dir.path().join("share"),
        ssh: Default::default(),
        server_name: "mgmt".into(),
        capture: Default::default(),
        tftp_dir: dir.path().join("tftpboot"),
        http: Default::default(),
        dhcp: Default::default(),
        initrd: Default::default(),
        image_key: dir.path().join("image-signing.key"),
    });
    let mut handlers = xcatd::plugin_handlers(true);
    handlers.extend(extra);
    let registry = Registry::new(handlers, db, settings)?;
    Ok(Fixture {
        registry,
        _dir: dir,
    })
}

fn identity(user: Option<&str>) -> Identity {
    Identity {
        user: user.map(str::to_string),
        peer: "127.0.0.1:40000".into(),
        host: Some("localhost".into()),
    }
}

/// Serve `req` as `user`, collecting every response while it runs (the
/// channel is bounded, so collecting afterwards could block the handler).
async fn ask(f: &Fixture, req: Request, user: Option<&str>) -> (Outcome, Vec<Response>) {
    let (out, mut rx) = Responder::channel(RESPONSE_QUEUE);
    let serve = f
        .registry
        .serve(req, identity(user), CancellationToken::new(), out);
    let collect = async {
        let mut v = Vec::new();
        while let Some(r) = rx.recv().await {
            v.push(r);
        }
        v
    };
    tokio::join!(serve, collect)
}

fn texts<'a>(resps: &'a [Response], name: &'a str) -> Vec<&'a str> {
    resps.iter().flat_map(|r| r.texts(name)).collect()
}

#[tokio::test]
async fn unknown_command_is_an_error_reply() {
    let f = fixture(vec![]).await.unwrap();
    let (outcome, resps) = ask(&f, Request::new("nosuch", vec![]), Some("root")).await;
    assert!(matches!(&outcome, Outcome::Failed(m) if m == "Unsupported request: nosuch"));
    assert_eq!(texts(&resps, "error"), ["Unsupported request: nosuch"]);
    assert_eq!(resps.iter().map(Response::errorcode).sum::<i32>(), 1);
}

#[tokio::test]
async fn policy_refuses_a_user_without_a_rule() {
    let f = fixture(vec![Arc::new(WHOAMI)]).await.unwrap();
    let (outcome, resps) = ask(&f, Request::new("whoami", vec![]), Some("alice")).await;
    assert!(matches!(outcome, Outcome::Denied), "{outcome}");
    assert_eq!(texts(&resps, "error"), ["Permission denied for request"]);
    let (outcome, resps) = ask(&f, Request::new("whoami", vec![]), Some("root")).await;
    assert!(matches!(outcome, Outcome::Ok), "{outcome}");
    assert_eq!(texts(&resps, "data"), ["root"]);
}

#[tokio::test]
async fn trusted_peer_acts_as_the_named_user_judged_again() {
    let f = fixture(vec![Arc::new(WHOAMI)]).await.unwrap();
    let on_behalf = |user: &str| Request {
        username: Some(user.into()),
        ..Request::new("whoami", vec![])
    };
    let (outcome, resps) = ask(&f, on_behalf("root"), Some("mgmt")).await;
    assert!(matches!(outcome, Outcome::Ok), "{outcome}");
    assert_eq!(texts(&resps, "data"), ["root"]);
    let (outcome, _) = ask(&f, on_behalf("alice"), Some("mgmt")).await;
    assert!(matches!(outcome, Outcome::Denied), "{outcome}");
}

#[tokio::test]
async fn authcheck_needs_no_policy() {
    let f = fixture(vec![]).await.unwrap();
    let (outcome, resps) = ask(&f, Request::new("authcheck", vec![]), None).await;
    assert!(matches!(outcome, Outcome::Ok), "{outcome}");
    assert_eq!(texts(&resps, "data"), ["Unauthenticated"]);
    let (_, resps) = ask(&f, Request::new("authcheck", vec![]), Some("alice")).await;
    assert_eq!(resps[0].username(), Some("alice"));
}

#[tokio::test]
async fn handler_panic_becomes_an_error_reply() {
    let f = fixture(vec![]).await.unwrap();
    let (outcome, resps) = ask(&f, Request::new("testpanic", vec![]), Some("root")).await;
    assert!(matches!(&outcome, Outcome::Failed(_)), "{outcome}");
    let errors = texts(&resps, "error");
    assert_eq!(errors.len(), 1, "{resps:?}");
    assert!(
        errors[0].starts_with("testpanic failed unexpectedly: "),
        "{errors:?}"
    );
    // The registry still serves after a panic.
    let (outcome, _) = ask(
        &f,
        Request::new("teststream", vec!["1".into()]),
        Some("root"),
    )
    .await;
    assert!(matches!(outcome, Outcome::Ok), "{outcome}");
}

#[tokio::test]
async fn a_typed_error_gives_the_client_its_sentence_and_the_log_its_sources() {
    let f = fixture(vec![Arc::new(FailsTyped)]).await.unwrap();
    let (outcome, resps) = ask(&f, Request::new("failstyped", vec![]), Some("root")).await;
    assert_eq!(
        texts(&resps, "error"),
        ["cannot write the image; free space and retry"]
    );
    let Outcome::Failed(logged) = &outcome else {
        panic!("{outcome}");
    };
    assert!(
        logged.starts_with("cannot write the image; free space and retry: No space left on device"),
        "{logged}"
    );
}

#[tokio::test]
async fn sub_request_output_comes_in_order() {
    let f = fixture(vec![]).await.unwrap();
    let (outcome, resps) = ask(&f, Request::new("testsub", vec!["3".into()]), Some("root")).await;
    assert!(matches!(outcome, Outcome::Ok), "{outcome}");
    assert_eq!(
        texts(&resps, "data"),
        [
            "before",
            "line 0",
            "line 1",
            "line 2",
            "after (sub-request errorcode 0)"
        ]
    );
}

#[tokio::test]
async fn policy_is_checked_before_the_noderange_is_reported_bad() {
    let f = fixture(vec![]).await.unwrap();
    let req = Request {
        noderange: Some("n1".into()),
        ..Request::new("noderange", vec![])
    };
    let (outcome, resps) = ask(&f, req.clone(), Some("alice")).await;
    assert!(matches!(outcome, Outcome::Denied), "{outcome}");
    assert_eq!(texts(&resps, "error"), ["Permission denied for request"]);
    let (outcome, resps) = ask(&f, req, Some("root")).await;
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome}");
    assert_eq!(
        texts(&resps, "error"),
        ["Invalid nodes and/or groups in noderange: n1"]
    );
}

#[tokio::test]
async fn a_command_is_served_by_one_handler_only() {
    let err = fixture(vec![Arc::new(WhoAmI(&["authcheck"]))])
        .await
        .err()
        .expect("refused");
    assert_eq!(err.to_string(), "command authcheck is registered twice");
    let err = fixture(vec![Arc::new(WHOAMI), Arc::new(WHOAMI)])
        .await
        .err()
        .expect("refused");
    assert_eq!(err.to_string(), "command whoami is registered twice");
}

#[tokio::test]
async fn command_list_includes_built_ins_sorted() {
    let f = fixture(vec![]).await.unwrap();
    let (_, resps) = ask(&f, Request::new("lsxcatd", vec!["-a".into()]), Some("root")).await;
    let line = texts(&resps, "data")
        .into_iter()
        .find_map(|l| l.strip_prefix("commands="))
        .expect("a commands= line")
        .to_string();
    let commands: Vec<&str> = line.split(',').collect();
    let mut sorted = commands.clone();
    sorted.sort();
    assert_eq!(commands, sorted);
    for c in ["authcheck", "noderange", "lsxcatd", "capimage", "testsub"] {
        assert!(commands.contains(&c), "{c} missing from {line}");
    }
}

#[tokio::test]
async fn an_empty_username_from_a_trusted_peer_is_no_identity() {
    let f = fixture(vec![Arc::new(WHOAMI)]).await.unwrap();
    // Any authenticated user may run whoami; nobody else.
    f.registry
        .db
        .upsert(
            "policy",
            &[("priority", "5")],
            &[("name", "*"), ("commands", "whoami"), ("rule", "allow")],
        )
        .await
        .unwrap();
    for blank in ["", " "] {
        let req = Request {
            username: Some(blank.into()),
            ..Request::new("whoami", vec![])
        };
        let (outcome, resps) = ask(&f, req, Some("mgmt")).await;
        assert!(
            matches!(outcome, Outcome::Denied),
            "{blank:?}: {outcome} {resps:?}"
        );
    }
    let (outcome, resps) = ask(&f, Request::new("whoami", vec![]), Some("alice")).await;
    assert!(matches!(outcome, Outcome::Ok), "{outcome}");
    assert_eq!(texts(&resps, "data"), ["alice"]);
}

#[tokio::test]
async fn a_sub_request_is_judged_as_its_parent_request() {
    let f = fixture(vec![Arc::new(WHOAMI), Arc::new(Escalate)])
        .await
        .unwrap();
    // alice may run escalate, not whoami.
    f.registry
        .db
        .upsert(
            "policy",
            &[("priority", "5")],
            &[
                ("name", "alice"),
                ("commands", "escalate"),
                ("rule", "allow"),
            ],
        )
        .await
        .unwrap();
    let (outcome, resps) = ask(&f, Request::new("escalate", vec![]), Some("alice")).await;
    assert!(matches!(outcome, Outcome::Ok), "{outcome}");
    assert_eq!(texts(&resps, "data"), Vec::<&str>::new(), "{resps:?}");
    assert_eq!(texts(&resps, "error"), ["Permission denied for request"]);
    // Root may run both: the sub-request runs as root.
    let (_, resps) = ask(&f, Request::new("escalate", vec![]), Some("root")).await;
    assert_eq!(texts(&resps, "data"), ["root"]);
}

/// `zz[0-1999999],zy[0-1999999],...`: what a 15 KB request can name.
fn noderange_bomb(atoms: usize) -> String {
    (0..atoms)
        .map(|i| {
            format!(
                "z{}{}[0-1999999]",
                (b'a' + (i / 26 % 26) as u8) as char,
                (b'a' + (i % 26) as u8) as char
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test]
async fn a_peer_no_rule_allows_never_makes_the_daemon_expand_a_noderange() {
    let f = fixture(vec![]).await.unwrap();
    let bomb = noderange_bomb(1024);
    assert!(bomb.len() > 15_000, "{}", bomb.len());
    let req = Request {
        noderange: Some(bomb),
        ..Request::new("noderange", vec![])
    };
    let start = std::time::Instant::now();
    let (outcome, resps) = ask(&f, req.clone(), None).await;
    assert!(matches!(outcome, Outcome::Denied), "{outcome}");
    assert_eq!(texts(&resps, "error"), ["Permission denied for request"]);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(2),
        "denied after {:?}",
        start.elapsed()
    );
    // An allowed user's bomb stops at the limit, with an error naming it.
    let (outcome, resps) = ask(&f, req, Some("root")).await;
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome}");
    let errors = texts(&resps, "error");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("more than 1000000 nodes") && errors[0].contains("max_noderange_names"),
        "{errors:?}"
    );
    assert!(errors[0].len() < 500, "{errors:?}");
}
