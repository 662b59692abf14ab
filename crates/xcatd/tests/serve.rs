//! The whole daemon in-process: `xcatd::init` makes credentials and the
//! database in a temporary directory, `xcatd::serve` answers on 127.0.0.1
//! over TLS, and the log is captured to check what it says.

use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Once};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xcatd::Config;
use xcatd_proto::client::{self, ClientConfig};
use xcatd_proto::{Request, Response};

/// Log output of one test.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

thread_local! {
    /// Where this thread's log lines go, if anywhere. The tests run on
    /// current-thread runtimes, so every task of a test's daemon logs on
    /// the test's own thread.
    static CAPTURE: RefCell<Option<Log>> = const { RefCell::new(None) };
}

/// The writer of the one global subscriber: a per-thread subscriber
/// (`set_default`) misses events when tests run in parallel, because
/// tracing caches each call site's interest process-wide.
struct ThreadLog;

impl Write for ThreadLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(log) = &*c.borrow() {
                log.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    /// Capture this thread's log from now on.
    fn capture() -> Log {
        static INIT: Once = Once::new();
        INIT.call_once(|| {
            let _ = tracing_subscriber::fmt()
                .with_writer(|| ThreadLog)
                .with_ansi(false)
                .try_init();
        });
        let log = Log::default();
        CAPTURE.with(|c| *c.borrow_mut() = Some(log.clone()));
        log
    }

    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// A configured and initialised installation in a temporary directory.
struct Site {
    dir: tempfile::TempDir,
    config: Config,
}

impl Site {
    async fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert_dir: p("cert"),
            state_dir: p("state"),
            install_dir: p("install"),
            share_dir: p("share"),
            server_name: "mgmt".into(),
            enable_test_commands: true,
            ..Config::default()
        };
        xcatd::init(config.clone(), Some(p("client")), "root", false)
            .await
            .unwrap();
        Site { dir, config }
    }

    fn client(&self, addr: SocketAddr, with_cert: bool) -> ClientConfig {
        let client_dir = self.dir.path().join("client");
        ClientConfig {
            client_cred: with_cert.then(|| client_dir.join("client-cred.pem")),
            ..ClientConfig::new(addr.to_string(), client_dir.join("ca.pem"))
        }
    }

    /// Serve in a task until the returned token fires.
    fn serve(
        &self,
    ) -> (
        SocketAddr,
        CancellationToken,
        JoinHandle<anyhow::Result<()>>,
    ) {
        let listener = xcatd::bind(self.config.listen).unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(xcatd::serve(
            self.config.clone(),
            listener,
            shutdown.clone(),
        ));
        (addr, shutdown, task)
    }
}

async fn stop(shutdown: CancellationToken, task: JoinHandle<anyhow::Result<()>>) {
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn reply_ends_with_serverdone_naming_the_server_and_the_transid() {
    let site = Site::new().await;
    let (addr, shutdown, task) = site.serve();
    let req = Request {
        transid: Some("t-7".into()),
        ..Request::new("authcheck", vec![])
    };
    let resps = client::run(&site.client(addr, true), &req).await.unwrap();
    assert_eq!(resps.len(), 2, "{resps:?}");
    assert_eq!(resps[0], Response::authcheck(Some("root")));
    let done = &resps[1];
    assert!(done.is_serverdone());
    assert_eq!((done.source(), done.transid()), (Some("mgmt"), Some("t-7")));
    stop(shutdown, task).await;
}

#[tokio::test]
async fn every_request_is_logged_once_with_its_outcome() {
    let log = Log::capture();
    let site = Site::new().await;
    let (addr, shutdown, task) = site.serve();
    let anonymous = site.client(addr, false);
    let resps = client::run(&anonymous, &Request::new("lsxcatd", vec!["-v".into()]))
        .await
        .unwrap();
    assert_eq!(
        resps[0].texts("error").next(),
        Some("Permission denied for request")
    );
    let root = site.client(addr, true);
    client::run(&root, &Request::new("nosuch", vec![]))
        .await
        .unwrap();
    stop(shutdown, task).await;

    let requests: Vec<String> = log
        .lines()
        .into_iter()
        .filter(|l| l.contains(" request ") && l.contains("duration_ms="))
        .collect();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(requests[0].contains("command=lsxcatd outcome=denied"));
    assert!(requests[1].contains("command=nosuch outcome=failed: Unsupported request: nosuch"));
}

#[tokio::test]
async fn start_up_hooks_run_before_serving() {
    let log = Log::capture();
    let site = Site::new().await;
    // What a capture killed mid-way leaves: a journal entry naming the image
    // directory, and a staging tree in it.
    let image = site.dir.path().join("image");
    let staging = image.join(".rootimg.staging-1");
    std::fs::create_dir_all(&staging).unwrap();
    let journal = site.config.state_dir.join("capimage-journal");
    std::fs::create_dir_all(&journal).unwrap();
    std::fs::write(journal.join("1"), image.display().to_string()).unwrap();

    let (_, shutdown, task) = site.serve();
    stop(shutdown, task).await;
    assert!(!staging.exists(), "the staging tree is cleaned up");
    let wanted = format!("recovery: {}: removed stale staging tree", image.display());
    assert!(
        log.lines().iter().any(|l| l.contains(&wanted)),
        "{:#?}",
        log.lines()
    );
}

#[tokio::test]
async fn start_fails_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        cert_dir: dir.path().join("cert"),
        state_dir: dir.path().join("state"),
        ..Config::default()
    };
    let err = xcatd::Daemon::start(config).await.err().expect("refused");
    assert!(
        format!("{err:#}").contains("run `xcatd init` to create them"),
        "{err:#}"
    );
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let site = Site::new().await;
    let (addr, shutdown, task) = site.serve();
    stop(shutdown, task).await;
    let refused = client::run(&site.client(addr, true), &Request::new("authcheck", vec![])).await;
    assert!(refused.is_err(), "{refused:?}");
}

/// A connection from `local` that starts a TLS record and then sends one
/// byte a second, as a slow-drip client does, until the daemon closes it.
async fn drip_from(local: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(local, 0))?;
    let mut tcp = sock.connect(addr).await?;
    // A handshake record header announcing 512 bytes: the server waits for them.
    let mut bytes = [0x16u8, 0x03, 0x01, 0x02, 0x00]
        .into_iter()
        .chain(std::iter::repeat(1));
    loop {
        tcp.write_all(&[bytes.next().unwrap_or(1)]).await?;
        let mut b = [0u8; 1];
        match tokio::time::timeout(std::time::Duration::from_secs(1), tcp.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            _ => {}
        }
    }
}

async fn authcheck_ok(site: &Site, addr: SocketAddr) -> Result<(), String> {
    let resps = client::run(&site.client(addr, true), &Request::new("authcheck", vec![]))
        .await
        .map_err(|e| e.to_string())?;
    match resps.first() {
        Some(r) if *r == Response::authcheck(Some("root")) => Ok(()),
        _ => Err(format!("{resps:?}")),
    }
}

#[tokio::test]
async fn a_slow_drip_peer_cannot_take_every_connection() {
    let mut site = Site::new().await;
    site.config.max_connections = 48;
    site.config.max_connections_per_peer = 16;
    let (addr, shutdown, task) = site.serve();
    let attacker: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let drips: Vec<_> = (0..48)
        .map(|_| tokio::spawn(drip_from(attacker, addr)))
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for i in 0..100 {
        if let Err(e) = authcheck_ok(&site, addr).await {
            panic!("authcheck {i} while a peer drips on 48 connections: {e}");
        }
    }
    for d in drips {
        d.abort();
    }
    stop(shutdown, task).await;
}

#[tokio::test]
async fn a_peer_over_its_request_rate_is_told_so_before_policy() {
    let log = Log::capture();
    let mut site = Site::new().await;
    site.config.peer_request_rate = 1;
    site.config.peer_request_burst = 3;
    let (addr, shutdown, task) = site.serve();
    for _ in 0..3 {
        authcheck_ok(&site, addr).await.unwrap();
    }
    let anonymous = site.client(addr, false);
    let resps = client::run(&anonymous, &Request::new("lsxcatd", vec![]))
        .await
        .unwrap();
    let errors: Vec<&str> = resps.iter().flat_map(|r| r.texts("error")).collect();
    assert_eq!(
        errors,
        [
            "Too many requests from 127.0.0.1: more than 1 a second, in bursts of up to 3 \
          (peer_request_rate, peer_request_burst); wait a moment and retry"
        ]
    );
    assert!(resps.last().unwrap().is_serverdone());
    stop(shutdown, task).await;
    let lines = log.lines();
    assert!(
        !lines.iter().any(|l| l.contains("policy denies")),
        "the rate guard answers before policy: {lines:#?}"
    );
}

#[tokio::test]
async fn limits_that_would_refuse_everyone_are_refused_at_start() {
    let site = Site::new().await;
    let per_peer = Config {
        max_connections_per_peer: 0,
        ..site.config.clone()
    };
    let burst = Config {
        peer_request_burst: 0,
        ..site.config.clone()
    };
    for (config, why) in [
        (per_peer, "max_connections_per_peer is 0"),
        (burst, "peer_request_burst is 0"),
    ] {
        let err = xcatd::Daemon::start(config).await.err().expect("refused");
        assert!(err.to_string().contains(why), "{err:#}");
    }
}

#[tokio::test]
async fn a_certificate_with_a_blank_name_names_nobody() {
    let site = Site::new().await;
    let blank_dir = site.dir.path().join("blank");
    xcatd::init(site.config.clone(), Some(blank_dir.clone()), " ", false)
        .await
        .unwrap();
    let (addr, shutdown, task) = site.serve();
    let cfg = ClientConfig {
        client_cred: Some(blank_dir.join("client-cred.pem")),
        ..ClientConfig::new(addr.to_string(), blank_dir.join("ca.pem"))
    };
    let resps = client::run(&cfg, &Request::new("authcheck", vec![]))
        .await
        .unwrap();
    assert_eq!(resps[0], Response::authcheck(None));
    stop(shutdown, task).await;
}

/// One exchange with the install monitor: what it said, all of it.
async fn report_status(monitor: SocketAddr, line: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(monitor).await.unwrap();
    s.write_all(line).await.unwrap();
    let mut said = String::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        s.read_to_string(&mut said),
    )
    .await;
    said
}

async fn nodelist(site: &Site, addr: SocketAddr) -> String {
    let req = Request::new("tabdump", vec!["nodelist".into()]);
    let resps = client::run(&site.client(addr, true), &req).await.unwrap();
    format!("{resps:?}")
}

#[tokio::test]
async fn a_node_reports_its_status_to_the_install_monitor_by_its_own_address() {
    let mut site = Site::new().await;
    site.config.status.listen = Some("127.0.0.1:0".parse().unwrap());
    let daemon = xcatd::Daemon::start(site.config.clone()).await.unwrap();
    let listener = xcatd::bind(site.config.listen).unwrap();
    let addr = listener.local_addr().unwrap();
    let side = daemon.bind_side().unwrap();
    let monitor = side.status.as_ref().unwrap().local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(async move {
        daemon.serve_with(listener, side, shutdown.clone()).await;
        anyhow::Ok(())
    });
    let req = Request::new("chtab", vec!["node=n1".into(), "hosts.ip=127.0.0.1".into()]);
    client::run(&site.client(addr, true), &req).await.unwrap();

    assert_eq!(
        report_status(monitor, b"installstatus netbooting\n").await,
        "ready\ndone\n"
    );
    let table = nodelist(&site, addr).await;
    assert!(
        table.contains("\\\"n1\\\"") && table.contains("netbooting"),
        "{table}"
    );
    // Not a status a node may set, and not a line: no `done`, nothing recorded.
    assert_eq!(
        report_status(monitor, b"installstatus root\n").await,
        "ready\n"
    );
    assert_eq!(report_status(monitor, &[b'x'; 4096]).await, "ready\n");
    assert_eq!(
        report_status(monitor, b"installstatus booted\n").await,
        "ready\ndone\n"
    );
    let table = nodelist(&site, addr).await;
    assert!(
        table.contains("booted") && !table.contains("root"),
        "{table}"
    );
    task.abort();
}
