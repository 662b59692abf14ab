//! Load against a real daemon: `authcheck` and `nodels` over a 10,000-node
//! table with 1, 64 and 512 concurrent clients, each request on its own TLS
//! connection, beside a bare TLS server replaying the daemon's reply bytes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xcatd_proto::client::{self, load_certs, load_key, ClientConfig};
use xcatd_proto::{encode_request, Request, Response};

use crate::report::{write_rows, Row};

#[derive(clap::Args)]
pub struct Args {
    /// The xcatd binary (a release build).
    #[arg(long)]
    xcatd: PathBuf,
    /// Nodes in the table `nodels` lists.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Seconds of load per measurement.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Concurrent clients, comma-separated.
    #[arg(long, default_value = "1,64,512", value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// Commands to measure, comma-separated (authcheck, nodels).
    #[arg(long, default_value = "authcheck,nodels", value_delimiter = ',')]
    commands: Vec<String>,
    /// Result rows go here (JSON).
    #[arg(long)]
    out: PathBuf,
    /// When a target is missed, profile the daemon with `perf` under the
    /// same load and write the report into this directory.
    #[arg(long)]
    profile_dir: Option<PathBuf>,
    /// Serve the baseline instead (used by this program itself).
    #[arg(long, hide = true)]
    serve_baseline: Option<PathBuf>,
}

/// A server process (the daemon or the baseline) and its address.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn spawn(mut cmd: Command, what: &str) -> anyhow::Result<Server> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(a) = l.strip_prefix("listening on ") {
                        break a.parse()?;
                    }
                }
                _ => {
                    let _ = child.kill();
                    bail!("{what} did not start");
                }
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Ok(Server { child, addr })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| {
                v.trim_start_matches(':')
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used, in seconds.
fn cpu_secs(pid: u32, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let stime: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (utime + stime) / ticks
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// What one load phase measured.
struct Phase {
    ok: usize,
    errors: usize,
    first_error: Option<String>,
    secs: f64,
    /// Latencies of successful requests, sorted.
    lat: Vec<Duration>,
    /// Peak RSS during the phase (VmHWM after resetting it) and the largest VmRSS sampled.
    hwm_kib: u64,
    rss_kib: u64,
    server_cpu: f64,
}

impl Phase {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.secs
    }
    fn pct(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat.len() as f64 * p).ceil() as usize).clamp(1, self.lat.len()) - 1;
        self.lat[i].as_secs_f64() * 1000.0
    }
}

/// Check a reply: `authcheck` says who we are, `nodels` lists every node.
fn validate(command: &str, nodes: usize, resps: &[Response]) -> Result<(), String> {
    if !resps.last().is_some_and(Response::is_serverdone) {
        return Err("reply did not end with serverdone".into());
    }
    let data: Vec<&str> = resps.iter().flat_map(|r| r.texts("data")).collect();
    match command {
        "authcheck" if data == ["Authenticated"] => Ok(()),
        "nodels" if data.len() == nodes => Ok(()),
        _ => Err(format!(
            "{command}: unexpected reply ({} data lines, first {:?}; errors {:?})",
            data.len(),
            data.first(),
            resps
                .iter()
                .flat_map(|r| r.texts("error"))
                .collect::<Vec<_>>()
        )),
    }
}

/// `conc` clients, each sending one request per connection back to back for `dur`.
async fn load(
    cfg: &ClientConfig,
    command: &str,
    nodes: usize,
    conc: usize,
    dur: Duration,
    pid: u32,
    ticks: f64,
) -> Phase {
    // Reset the peak RSS so VmHWM reports this phase's peak.
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut max = 0;
            while sampling.load(Ordering::Relaxed) {
                max = max.max(status_kib(pid, "VmRSS"));
                std::thread::sleep(Duration::from_millis(20));
            }
            max
        })
    };
    let cpu0 = cpu_secs(pid, ticks);
    let start = Instant::now();
    let end = start + dur;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conc {
        let cfg = cfg.clone();
        let command = command.to_string();
        tasks.spawn(async move {
            let req = Request::new(command.clone(), vec![]);
            let (mut lat, mut errors, mut first_error) = (Vec::new(), 0usize, None);
            while Instant::now() < end {
                let t = Instant::now();
                let res = match client::run(&cfg, &req).await {
                    Ok(r) => validate(&command, nodes, &r),
                    Err(e) => Err(e.to_string()),
                };
                match res {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (lat, errors, first_error)
        });
    }
    let mut phase = Phase {
        ok: 0,
        errors: 0,
        first_error: None,
        secs: 0.0,
        lat: Vec::new(),
        hwm_kib: 0,
        rss_kib: 0,
        server_cpu: 0.0,
    };
    while let Some(r) = tasks.join_next().await {
        let (lat, errors, first) = r.expect("client task");
        phase.ok += lat.len();
        phase.lat.extend(lat);
        phase.errors += errors;
        if phase.first_error.is_none() {
            phase.first_error = first;
        }
    }
    phase.secs = start.elapsed().as_secs_f64();
    phase.server_cpu = cpu_secs(pid, ticks) - cpu0;
    sampling.store(false, Ordering::Relaxed);
    phase.rss_kib = sampler.join().unwrap_or(0);
    phase.hwm_kib = status_kib(pid, "VmHWM");
    phase.lat.sort();
    phase
}

/// The daemon's reply to `command`, byte for byte, for the baseline to replay.
async fn raw_reply(cfg: &ClientConfig, command: &str) -> anyhow::Result<Vec<u8>> {
    let tls = connector(&cfg.ca_pem, cfg.client_cred.as_deref().expect("credential"))?;
    let tcp = tokio::net::TcpStream::connect(&cfg.host).await?;
    let mut s = tls.connect("localhost".try_into()?, tcp).await?;
    s.write_all(encode_request(&Request::new(command, vec![])).as_bytes())
        .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    Ok(buf)
}

fn connector(ca: &Path, cred: &Path) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_client_auth_cert(load_certs(cred)?, load_key(cred)?)?;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The baseline server: the daemon's TLS settings and credentials, no
/// dispatch, policy, database or logging; it answers each request with the
/// bytes the daemon sent for the same command (files `<dir>/<command>.reply`).
async fn serve_baseline(dir: &Path) -> anyhow::Result<()> {
    let cert_dir = dir.join("cert");
    let cred = cert_dir.join("server-cred.pem");
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(&cert_dir.join("ca.pem"))? {
        roots.add(c)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(&cred)?, load_key(&cred)?)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let mut replies = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if let Some(cmd) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".reply"))
        {
            replies.push((
                format!("<command>{cmd}</command>").into_bytes(),
                std::fs::read(&p)?,
            ));
        }
    }
    let replies = Arc::new(replies);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let replies = replies.clone();
        tokio::spawn(async move {
            let Ok(mut s) = acceptor.accept(tcp).await else {
                return;
            };
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(14).any(|w| w == b"</xcatrequest>") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let reply = replies
                .iter()
                .find(|(needle, _)| req.windows(needle.len()).any(|w| w == needle.as_slice()))
                .map(|(_, r)| r.as_slice())
                .unwrap_or(b"");
            let _ = s.write_all(reply).await;
            let _ = s.shutdown().await;
        });
    }
}

/// A fresh daemon state: credentials, a database with `nodes` nodes.
async fn prepare(xcatd: &Path, root: &Path, nodes: usize) -> anyhow::Result<PathBuf> {
    let config = root.join("xcatd.toml");
    // Every load client runs on this host: the per-peer share and the
    // request-rate guard would measure themselves, not the daemon.
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\ncert_dir = \"cert\"\nstate_dir = \"state\"\ninstall_dir = \"install\"\n\
         share_dir = \"share\"\nserver_name = \"benchmn\"\nmax_connections = 1024\n\
         max_connections_per_peer = 1024\npeer_request_rate = 0\n",
    )?;
    let init = Command::new(xcatd)
        .arg("--config")
        .arg(&config)
        .args(["init", "--client-dir"])
        .arg(root.join("home/.xcat"))
        .output()
        .context("xcatd init")?;
    if !init.status.success() {
        bail!(
            "xcatd init failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
    }
    let url = format!("sqlite://{}", root.join("state/xcatd.sqlite").display());
    let db = xcat_db::Db::connect(&url).await?;
    let rows: Vec<Vec<Option<String>>> = (1..=nodes)
        .map(|i| {
            vec![
                Some(format!("node{i:05}")),
                Some(format!("compute,rack{},all", (i - 1) / 100 + 1)),
            ]
        })
        .collect();
    db.insert_rows("nodelist", &["node", "groups"], &rows)
        .await?;
    db.close().await;
    Ok(config)
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    if let Some(dir) = &a.serve_baseline {
        return serve_baseline(dir).await;
    }
    let ticks = clock_ticks();
    let root = tempfile::Builder::new().prefix("xcatd-bench-").tempdir()?;
    let config = prepare(&a.xcatd, root.path(), a.nodes).await?;
    let log = std::fs::File::create(root.path().join("xcatd.log"))?;
    let mut cmd = Command::new(&a.xcatd);
    // Logging as in production (one line per request and per policy decision).
    cmd.arg("--config")
        .arg(&config)
        .env("XCATD_LOG", "info")
        .stderr(log);
    let daemon = Server::spawn(cmd, "xcatd")?;
    let home = root.path().join("home/.xcat");
    let client_cfg = |addr: SocketAddr| {
        let mut c = ClientConfig::new(addr.to_string(), home.join("ca.pem"));
        c.client_cred = Some(home.join("client-cred.pem"));
        c.read_timeout = Some(Duration::from_secs(60));
        c.connect_timeout = Duration::from_secs(30);
        c
    };
    let dcfg = client_cfg(daemon.addr);
    // The baseline replays the daemon's replies.
    let bdir = root.path().join("baseline");
    std::fs::create_dir_all(&bdir)?;
    std::os::unix::fs::symlink(root.path().join("cert"), bdir.join("cert"))?;
    for c in &a.commands {
        let reply = raw_reply(&dcfg, c).await?;
        let resps = split_reply(&reply)?;
        validate(c, a.nodes, &resps).map_err(|e| anyhow::anyhow!("the daemon's reply: {e}"))?;
        std::fs::write(bdir.join(format!("{c}.reply")), reply)?;
    }
    let mut bcmd = Command::new(std::env::current_exe()?);
    bcmd.args(["daemon", "--xcatd"])
        .arg(&a.xcatd)
        .arg("--out")
        .arg("/dev/null")
        .arg("--serve-baseline")
        .arg(&bdir);
    let baseline = Server::spawn(bcmd, "the baseline server")?;
    let bcfg = client_cfg(baseline.addr);

    let dur = Duration::from_secs_f64(a.duration);
    let idle_rss = status_kib(daemon.pid(), "VmRSS");
    let mut rows = vec![Row::new(
        "daemon idle RSS (10,000-node table)",
        idle_rss as f64 / 1024.0,
        "MiB",
    )];
    let mut missed_authcheck = false;
    for command in &a.commands {
        for &conc in &a.concurrency {
            let b = load(&bcfg, command, a.nodes, conc, dur, baseline.pid(), ticks).await;
            let d = load(&dcfg, command, a.nodes, conc, dur, daemon.pid(), ticks).await;
            eprintln!(
                "{command} x{conc}: daemon {} ok {} errors ({:.0}/s, p50 {:.1} ms, p99 {:.1} ms, cpu {:.2} s); \
                 baseline {} ok {} errors ({:.0}/s){}",
                d.ok,
                d.errors,
                d.rps(),
                d.pct(0.5),
                d.pct(0.99),
                d.server_cpu,
                b.ok,
                b.errors,
                b.rps(),
                d.first_error.as_deref().map(|e| format!("; first daemon error: {e}")).unwrap_or_default()
            );
            let what = "bare TLS server replaying the daemon's reply, same machine and run";
            let name = |m: &str| format!("daemon {command} c={conc} {m}");
            let mut rps = Row::new(name("throughput"), d.rps(), "req/s").baseline(b.rps(), what);
            let mut p99 =
                Row::new(name("p99 latency"), d.pct(0.99), "ms").baseline(b.pct(0.99), what);
            if command == "authcheck" && conc == 64 {
                rps = rps.target(true, 2000.0);
                p99 = p99.target(false, 50.0);
                missed_authcheck = rps.met == Some(false) || p99.met == Some(false);
            }
            rows.push(rps);
            rows.push(Row::new(name("p50 latency"), d.pct(0.5), "ms").baseline(b.pct(0.5), what));
            rows.push(p99);
            let per_req = |p: &Phase| p.server_cpu * 1000.0 / p.ok.max(1) as f64;
            rows.push(
                Row::new(name("server CPU per request"), per_req(&d), "ms")
                    .baseline(per_req(&b), what),
            );
            let mut errs =
                Row::new(name("failed requests"), d.errors as f64, "requests").target(false, 1.0);
            errs.baseline = Some(b.errors as f64);
            rows.push(errs);
            rows.push(
                Row::new(name("peak RSS (VmHWM)"), d.hwm_kib as f64 / 1024.0, "MiB")
                    .baseline(b.hwm_kib as f64 / 1024.0, what),
            );
            rows.push(Row::new(
                name("max sampled VmRSS"),
                d.rss_kib as f64 / 1024.0,
                "MiB",
            ));
        }
    }
    write_rows(&a.out, &rows)?;

    if let (true, Some(dir)) = (missed_authcheck, &a.profile_dir) {
        std::fs::create_dir_all(dir)?;
        profile(&dcfg, &daemon, a.nodes, dur, ticks, dir).await?;
    }
    Ok(())
}

/// Split a raw reply into its documents.
fn split_reply(bytes: &[u8]) -> anyhow::Result<Vec<Response>> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    for doc in text.split_inclusive("</xcatresponse>") {
        if doc.trim().is_empty() {
            continue;
        }
        out.push(xcatd_proto::decode_response(doc.trim_start().as_bytes())?);
    }
    Ok(out)
}

/// Record the daemon with `perf` while 64 clients send `authcheck`, and
/// keep the report (where the daemon's time goes) next to the results.
async fn profile(
    cfg: &ClientConfig,
    daemon: &Server,
    nodes: usize,
    dur: Duration,
    ticks: f64,
    dir: &Path,
) -> anyhow::Result<()> {
    let data = dir.join("perf-daemon.data.tmp");
    let mut perf = Command::new("perf")
        .args(["record", "-F", "499", "-g", "-o"])
        .arg(&data)
        .args(["-p", &daemon.pid().to_string(), "--", "sleep"])
        .arg(format!("{}", dur.as_secs_f64().ceil()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("perf is needed to profile a missed target (apt-get install linux-perf)")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let p = load(cfg, "authcheck", nodes, 64, dur, daemon.pid(), ticks).await;
    perf.wait()?;
    let report = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--percent-limit",
            "0.7",
            "--sort",
            "dso,symbol",
            "-g",
            "none",
            "-i",
        ])
        .arg(&data)
        .output()?;
    let path = dir.join("profile-daemon.txt");
    let mut text = format!(
        "perf profile of xcatd under authcheck x64 ({:.0} req/s, p99 {:.1} ms during the recording)\n\n",
        p.rps(),
        p.pct(0.99)
    );
    text.push_str(&String::from_utf8_lossy(&report.stdout));
    std::fs::write(&path, text)?;
    eprintln!("profile of the missed target: {}", path.display());
    Ok(())
}
