//! Protocol attacks on the real daemon over real TLS, each from its own
//! loopback address (one peer each): a noderange bomb from a client
//! without a certificate, the same bomb from an allowed user, and a peer
//! that holds many connections open sending one byte a second. Meanwhile a
//! good client must be answered every time and the daemon's memory must stay
//! small.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xcatd_proto::{client, encode_request, Request};
use xcatd_tests::{raw_exchange, raw_tls_from, Daemon, DaemonOptions};

/// The pool and one peer's share of it in this test.
const CONFIG: &str = "max_connections = 200\nmax_connections_per_peer = 50\n";
/// Connections the slow-drip peer opens: the whole pool.
const DRIPS: usize = 200;
/// Good requests that must all be answered while the attacks run.
const GOOD: usize = 100;
/// Peak resident memory the daemon may reach (VmHWM).
const HWM_BUDGET_KIB: u64 = 100 * 1024;

/// A line of `/proc/PID/status` in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `zaa[0-1999999],zab[0-1999999],...`: 15 KB naming two billion unknown nodes.
fn noderange_bomb() -> String {
    let atoms: Vec<String> = (0..1024)
        .map(|i| {
            let c = |k: usize| (b'a' + (k % 26) as u8) as char;
            format!("z{}{}[0-1999999]", c(i / 26), c(i))
        })
        .collect();
    atoms.join(",")
}

struct Creds {
    ca: PathBuf,
    root: PathBuf,
}

/// Send the bomb as `noderange` from `local` and return the reply's errors.
async fn bomb(local: IpAddr, addr: std::net::SocketAddr, creds: &Creds, cert: bool) -> Vec<String> {
    let req = Request {
        noderange: Some(noderange_bomb()),
        ..Request::new("noderange", vec![])
    };
    let cred = cert.then_some(creds.root.as_path());
    let Ok(mut s) = raw_tls_from(Some(local), addr, &creds.ca, cred).await else {
        return vec!["(no connection)".into()];
    };
    let reply = raw_exchange(
        &mut s,
        encode_request(&req).as_bytes(),
        Duration::from_secs(60),
    )
    .await;
    let docs = reply
        .split_inclusive("</xcatresponse>\n")
        .filter_map(|d| xcatd_proto::decode_response(d.as_bytes()).ok());
    docs.flat_map(|r| r.texts("error").map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// One slow-drip connection: TLS, then a request one byte a second until
/// the daemon closes it or `stop` is set. True when the handshake succeeded.
async fn drip(
    local: IpAddr,
    addr: std::net::SocketAddr,
    creds: Arc<Creds>,
    stop: Arc<AtomicBool>,
) -> bool {
    let Ok(mut s) = raw_tls_from(Some(local), addr, &creds.ca, Some(&creds.root)).await else {
        return false;
    };
    let req = encode_request(&Request::new("authcheck", vec![]));
    for b in req.bytes() {
        if stop.load(Ordering::Relaxed) || s.write_all(&[b]).await.is_err() {
            break;
        }
        let _ = s.flush().await;
        let mut buf = [0u8; 64];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            break;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
async fn under_attack_the_daemon_keeps_serving_others() {
    let d = Daemon::start_with(DaemonOptions {
        extra_config: CONFIG.into(),
        ..Default::default()
    });
    let pid = d.pid();
    let cfg = d.client_config();
    let creds = Arc::new(Creds {
        ca: d.home.join(".xcat/ca.pem"),
        root: d.home.join(".xcat/client-cred.pem"),
    });
    let ip = |s: &str| s.parse::<IpAddr>().expect("address");
    client::run(&cfg, &Request::new("authcheck", vec![]))
        .await
        .expect("authcheck before the attacks");
    let idle_rss = status_kib(pid, "VmRSS:");

    // The slow-drip peer takes what it can of the pool, and holds on.
    let stop = Arc::new(AtomicBool::new(false));
    let mut drips = tokio::task::JoinSet::new();
    for _ in 0..DRIPS {
        drips.spawn(drip(ip("127.0.0.2"), d.addr, creds.clone(), stop.clone()));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Bombs without a certificate, one after another, for the whole test.
    let bombs_sent = Arc::new(AtomicUsize::new(0));
    let unauthenticated = {
        let (creds, stop, sent, addr) = (creds.clone(), stop.clone(), bombs_sent.clone(), d.addr);
        tokio::spawn(async move {
            let mut replies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                replies.push(bomb(ip("127.0.0.3"), addr, &creds, false).await);
                sent.fetch_add(1, Ordering::Relaxed);
            }
            replies
        })
    };
    let allowed = {
        let (creds, addr) = (creds.clone(), d.addr);
        tokio::spawn(async move { bomb(ip("127.0.0.4"), addr, &creds, true).await })
    };

    let mut latencies = Vec::new();
    for i in 0..GOOD {
        let start = Instant::now();
        let resps = client::run(&cfg, &Request::new("authcheck", vec![]))
            .await
            .unwrap_or_else(|e| panic!("authcheck {i} under attack: {e}\n{}", d.log()));
        assert_eq!(
            resps[0].texts("data").next(),
            Some("Authenticated"),
            "{resps:?}"
        );
        latencies.push(start.elapsed());
    }
    let allowed = allowed.await.expect("allowed bomb");
    stop.store(true, Ordering::Relaxed);
    let unauthenticated = unauthenticated.await.expect("unauthenticated bombs");
    let mut held = 0;
    while let Some(h) = drips.join_next().await {
        held += usize::from(h.expect("drip"));
    }
    let hwm = status_kib(pid, "VmHWM:");
    latencies.sort();
    eprintln!(
        "under attack: {GOOD} authchecks, median {:?}, max {:?}; {} bombs without a certificate; \
         {held} of {DRIPS} drip connections got a TLS session; daemon RSS idle {idle_rss} KiB, VmHWM {hwm} KiB",
        latencies[GOOD / 2],
        latencies[GOOD - 1],
        bombs_sent.load(Ordering::Relaxed),
    );

    // Denied by policy, or (past the peer's burst) by the rate guard in front of it.
    let denied = |e: &[String]| e == ["Permission denied for request"];
    let limited =
        |e: &[String]| e.len() == 1 && e[0].starts_with("Too many requests from 127.0.0.3");
    assert!(
        unauthenticated.iter().any(|e| denied(e)),
        "{unauthenticated:?}"
    );
    for errors in &unauthenticated {
        assert!(denied(errors) || limited(errors), "{errors:?}");
    }
    assert_eq!(allowed.len(), 1, "{allowed:?}");
    assert!(
        allowed[0].contains("more than 1000000 nodes")
            && allowed[0].contains("max_noderange_names"),
        "{allowed:?}"
    );
    assert!(
        held <= 50,
        "the drip peer held {held} connections, past its share of 50"
    );
    let log = d.log();
    assert!(log.contains("per-peer connection limit reached"), "{log}");
    assert!(
        hwm < HWM_BUDGET_KIB,
        "the daemon's peak RSS reached {hwm} KiB (budget {HWM_BUDGET_KIB} KiB)"
    );
}
