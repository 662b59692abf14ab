//! Load and fault test: a storm of 1,000 connections opened at once (idle,
//! garbage, slow readers of a long reply) while legitimate clients keep being
//! answered. The daemon must hold its connection limit and a memory budget,
//! and recover when the storm stops.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xcatd_proto::client::{self, load_certs, load_key, ClientConfig};
use xcatd_proto::{encode_request, Request};
use xcatd_tests::{Daemon, DaemonOptions};

/// Connections the daemon serves at once in this test.
const MAX_CONNECTIONS: usize = 300;
/// Connections opened at once by the storm.
const STORM: usize = 1000;
/// How long the storm lasts.
const STORM_TIME: Duration = Duration::from_secs(12);
/// A legitimate request, retries included, must be answered within this.
const GOOD_BOUND: Duration = Duration::from_secs(10);
/// Resident memory the daemon may reach under the storm.
const RSS_BUDGET_KIB: u64 = 200 * 1024;
/// Descriptors the daemon may hold beyond its idle count plus one per
/// connection: the accepted socket being refused, database connections
/// opened on demand, a spawned helper's pipes.
const FD_SLACK: usize = 40;

/// Raise this process's open-file limit (the daemon, started by it, inherits
/// the limit): the storm alone needs a descriptor per connection.
fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit struct we own; no other memory is touched.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(rc, 0, "getrlimit: {}", std::io::Error::last_os_error());
    if lim.rlim_cur >= want {
        return;
    }
    assert!(
        lim.rlim_max >= want,
        "the open-file hard limit is {} but the load test needs {want}: raise it (ulimit -Hn)",
        lim.rlim_max
    );
    lim.rlim_cur = want;
    // SAFETY: setrlimit reads the rlimit struct we own; raising the soft limit up to the hard limit is always allowed.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

/// What the daemon's descriptors point at, for failure messages.
fn fd_targets(pid: u32) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Sockets among the daemon's descriptors (database connections, which a
/// pool keeps open once made, are not counted).
fn socket_count(pid: u32) -> usize {
    fd_targets(pid)
        .iter()
        .filter(|t| t.starts_with("socket:"))
        .count()
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the daemon's fd directory")
        .count()
}

/// VmRSS of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn tls_connector(ca: &Path, cred: &Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca).expect("ca") {
        roots.add(c).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            load_certs(cred).expect("cert"),
            load_key(cred).expect("key"),
        )
        .expect("client auth");
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// TCP only, never a byte: the handshake timeout must reap it.
    IdleTcp,
    /// TLS done, no request: the request idle timeout must reap it.
    IdleTls,
    /// Bytes that are not TLS at all.
    GarbageTcp,
    /// TLS, then a document that is not an xcatrequest.
    GarbageTls,
    /// `teststream 100000`, read a little at a time.
    SlowReader,
}

fn kind_of(i: usize) -> Kind {
    match i % 10 {
        0..=3 => Kind::IdleTcp,
        4..=5 => Kind::IdleTls,
        6 => Kind::GarbageTcp,
        7 => Kind::GarbageTls,
        _ => Kind::SlowReader,
    }
}

#[derive(Default)]
struct StormStats {
    attempts: AtomicUsize,
    /// Connections the daemon closed before the TLS handshake finished
    /// (refused at the limit, or a garbage/idle connection reaped).
    closed_early: AtomicUsize,
    slow_bytes: AtomicU64,
}

/// One storm connection. Garbage senders come back after a pause until
/// `end`, as a misbehaving client would; idle connections and slow readers
/// connect once (all at the same moment) and hold on for as long as the
/// daemon lets them.
async fn storm_task(
    kind: Kind,
    addr: std::net::SocketAddr,
    tls: tokio_rustls::TlsConnector,
    end: Instant,
    stats: Arc<StormStats>,
) {
    let until_end = |t: Instant| tokio::time::sleep_until(t.into());
    let repeat = matches!(kind, Kind::GarbageTcp | Kind::GarbageTls);
    while Instant::now() < end {
        stats.attempts.fetch_add(1, Ordering::Relaxed);
        let Ok(Ok(mut tcp)) =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        match kind {
            Kind::IdleTcp => {
                // Wait for the daemon to close it (or the storm to end).
                let mut b = [0u8; 64];
                tokio::select! {
                    _ = tcp.read(&mut b) => {}
                    _ = until_end(end) => return,
                }
            }
            Kind::GarbageTcp => {
                let _ = tcp
                    .write_all(b"GET / HTTP/1.0\r\n\r\n\x00\x01\x02garbage-not-tls\xff\xfe")
                    .await;
                let mut b = [0u8; 256];
                let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut b)).await;
            }
            Kind::IdleTls | Kind::GarbageTls | Kind::SlowReader => {
                let hs = tokio::time::timeout(
                    Duration::from_secs(10),
                    tls.connect("localhost".try_into().expect("name"), tcp),
                )
                .await;
                let Ok(Ok(mut s)) = hs else {
                    stats.closed_early.fetch_add(1, Ordering::Relaxed);
                    if !repeat {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                };
                match kind {
                    Kind::IdleTls => {
                        let mut b = [0u8; 256];
                        tokio::select! {
                            _ = s.read(&mut b) => {}
                            _ = until_end(end) => return,
                        }
                    }
                    Kind::GarbageTls => {
                        let _ = s.write_all(b"<notxcat><<<&&&\x00</xcatrequest>").await;
                        let mut buf = Vec::new();
                        let _ =
                            tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
                                .await;
                    }
                    _ => {
                        let req =
                            encode_request(&Request::new("teststream", vec!["100000".into()]));
                        if s.write_all(req.as_bytes()).await.is_err() {
                            continue;
                        }
                        let mut b = [0u8; 512];
                        // About 25 KB/s: the 6 MB reply cannot be read before the storm ends.
                        while Instant::now() < end {
                            match s.read(&mut b).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    stats.slow_bytes.fetch_add(n as u64, Ordering::Relaxed);
                                }
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        return;
                    }
                }
            }
        }
        if !repeat {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// One legitimate `authcheck`, retried while the daemon refuses the
/// connection; returns how long it took to get the correct answer.
async fn good_request(cfg: &ClientConfig) -> Result<Duration, String> {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < GOOD_BOUND {
        match client::run(cfg, &Request::new("authcheck", vec![])).await {
            Ok(resps) => {
                let data: Vec<&str> = resps.iter().flat_map(|r| r.texts("data")).collect();
                let users: Vec<&str> = resps.iter().flat_map(|r| r.texts("username")).collect();
                if data != ["Authenticated"]
                    || users != ["root"]
                    || !resps.last().is_some_and(|r| r.is_serverdone())
                {
                    return Err(format!("wrong answer: data {data:?}, username {users:?}"));
                }
                return Ok(start.elapsed());
            }
            Err(e) => {
                last = e.to_string();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    Err(format!(
        "not answered within {GOOD_BOUND:?}; last error: {last}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
async fn connection_storm_keeps_limits_and_serves_good_clients() {
    raise_nofile(8192);
    let d = Daemon::start_with(DaemonOptions {
        // The storm and the good clients share one address: the per-peer
        // share and the rate guard are lifted to test the pool itself (the
        // per-peer limits have their own test in daemon.rs).
        extra_config: format!(
            "max_connections = {MAX_CONNECTIONS}\nhandshake_timeout = 3\nrequest_idle_timeout = 3\n\
             request_timeout = 5\nwrite_timeout = 20\n\
             max_connections_per_peer = {MAX_CONNECTIONS}\npeer_request_rate = 0\n"
        ),
        ..Default::default()
    });
    let pid = d.pid();
    let mut cfg = d.client_config();
    cfg.connect_timeout = Duration::from_secs(5);
    cfg.read_timeout = Some(Duration::from_secs(10));

    // Warm up (policy table, database pool) and take the idle figures.
    for _ in 0..3 {
        good_request(&cfg)
            .await
            .expect("authcheck before the storm");
    }
    let out = client::run(&cfg, &Request::new("teststream", vec!["10".into()]))
        .await
        .expect("teststream");
    assert_eq!(out.iter().flat_map(|r| r.texts("data")).count(), 10);
    let idle_fds = fd_count(pid);
    let idle_targets = fd_targets(pid);
    let idle_sockets = socket_count(pid);
    let idle_rss = rss_kib(pid);

    // Sample the daemon's descriptors and memory throughout.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let (mut max_fds, mut max_rss) = (0usize, 0u64);
            while sampling.load(Ordering::Relaxed) {
                max_fds = max_fds.max(fd_count(pid));
                max_rss = max_rss.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(25));
            }
            (max_fds, max_rss)
        })
    };

    let tls = tls_connector(
        &d.home.join(".xcat/ca.pem"),
        &d.home.join(".xcat/client-cred.pem"),
    );
    let stats = Arc::new(StormStats::default());
    let storm_start = Instant::now();
    let end = storm_start + STORM_TIME;
    let mut storm = tokio::task::JoinSet::new();
    for i in 0..STORM {
        storm.spawn(storm_task(
            kind_of(i),
            d.addr,
            tls.clone(),
            end,
            stats.clone(),
        ));
    }

    // Legitimate clients, one request after another, for the whole storm.
    let mut good = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let cfg = cfg.clone();
        good.spawn(async move {
            let mut times = Vec::new();
            // Give the storm a head start so that it holds the slots first.
            tokio::time::sleep(Duration::from_millis(200)).await;
            while Instant::now() < end {
                times.push(good_request(&cfg).await);
            }
            times
        });
    }
    let mut latencies = Vec::new();
    while let Some(r) = good.join_next().await {
        for t in r.expect("good client task") {
            latencies.push(t.unwrap_or_else(|e| {
                panic!("legitimate client during the storm: {e}\n{}", d.log())
            }));
        }
    }
    while storm.join_next().await.is_some() {}
    let storm_secs = storm_start.elapsed().as_secs_f64();

    // Recovery: every storm connection is closed on our side; the daemon's
    // sockets must come back down and clients be served promptly.
    let recover_start = Instant::now();
    let mut sockets = socket_count(pid);
    while sockets > idle_sockets && recover_start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        sockets = socket_count(pid);
    }
    let fds = fd_count(pid);
    let recovered_in = recover_start.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let (max_fds, max_rss) = sampler.join().expect("sampler");
    let mut after = Vec::new();
    for _ in 0..20 {
        after.push(good_request(&cfg).await.expect("authcheck after the storm"));
    }
    let out = client::run(&cfg, &Request::new("teststream", vec!["1000".into()]))
        .await
        .expect("teststream after");
    let lines: Vec<&str> = out.iter().flat_map(|r| r.texts("data")).collect();
    assert_eq!(lines.len(), 1000);
    assert_eq!(lines[999], "line 999");

    latencies.sort();
    after.sort();
    let log = d.log();
    let refusals = log.matches("connection limit reached").count();
    eprintln!(
        "storm: {} connection attempts in {storm_secs:.1} s, {} closed before the handshake finished, \
         {} bytes read by slow readers, {refusals} refusals logged; good requests: {} (max {:?}, median {:?}); \
         daemon fds idle {idle_fds}, max {max_fds}, after {fds} (sockets {sockets}, idle {idle_sockets}, after {recovered_in:?}); RSS idle {idle_rss} KiB, max {max_rss} KiB; \
         after the storm: max {:?}",
        stats.attempts.load(Ordering::Relaxed),
        stats.closed_early.load(Ordering::Relaxed),
        stats.slow_bytes.load(Ordering::Relaxed),
        latencies.len(),
        latencies.last(),
        latencies.get(latencies.len() / 2),
        after.last()
    );

    assert!(
        refusals > 0,
        "the storm never reached the connection limit; log:\n{log}"
    );
    assert!(
        max_fds <= idle_fds + MAX_CONNECTIONS + FD_SLACK,
        "the daemon held {max_fds} descriptors: more than its limit of {MAX_CONNECTIONS} connections allows (idle: {idle_fds})"
    );
    assert!(
        max_rss < RSS_BUDGET_KIB,
        "the daemon's RSS reached {max_rss} KiB (budget {RSS_BUDGET_KIB} KiB)"
    );
    assert!(
        stats.slow_bytes.load(Ordering::Relaxed) > 0,
        "no slow reader got a reply: the long-reply case was not exercised"
    );
    assert!(
        latencies.len() >= 8,
        "only {} legitimate requests were answered during the {STORM_TIME:?} storm",
        latencies.len()
    );
    assert!(
        sockets <= idle_sockets,
        "sockets did not come back down after the storm: {sockets} (idle {idle_sockets})\nidle: {idle_targets:?}\nnow: {:?}",
        fd_targets(pid)
    );
    assert!(
        after.iter().all(|t| *t < Duration::from_secs(2)),
        "after the storm, requests took up to {:?}",
        after.last()
    );
    assert!(
        !log.contains("panicked"),
        "the daemon panicked under the storm:\n{log}"
    );
}
