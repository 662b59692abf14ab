//! Fixtures for the end-to-end tests: a real `xcatd` process with real
//! certificates on a loopback port, and the real `xcatclient` binary.
//!
//! The binaries are taken from the cargo target directory this test binary
//! was built into (or from `XCATD_BIN_DIR`); build them first (`cargo build
//! --workspace --bins`), which the README's test command does. Cargo builds
//! no other package's binaries for these tests, so every end-to-end test is
//! of a tier that plain `cargo test` ignores (see `tiers.rs`).
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;
use xcatd_proto::client::{load_certs, load_key, ClientConfig};

pub mod netboot;

/// Path of a binary built from this workspace.
pub fn bin(name: &str) -> PathBuf {
    let dir = match std::env::var("XCATD_BIN_DIR") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => {
            let exe = std::env::current_exe().expect("current exe");
            // target/<profile>/deps/<test-binary>
            let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
            profile_dir.to_path_buf()
        }
    };
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests",
        p.display()
    );
    p
}

/// Options for a test daemon.
#[derive(Clone)]
pub struct DaemonOptions {
    /// Extra lines appended to the configuration file.
    pub extra_config: String,
    /// Database URL (empty: SQLite in the state directory).
    pub database: String,
    /// The daemon's TLS address (a port of 0: any free one).
    pub listen: String,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            extra_config: String::new(),
            database: std::env::var("XCATD_TEST_DATABASE").unwrap_or_default(),
            listen: "127.0.0.1:0".into(),
        }
    }
}

/// A running `xcatd` with its own state, certificates and a client HOME.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    /// The boot service's address, when `[http] listen` is configured.
    pub http_addr: Option<SocketAddr>,
    pub config_path: PathBuf,
    /// HOME for clients: holds `.xcat/client-cred.pem` (CN=root) and `.xcat/ca.pem`.
    pub home: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(DaemonOptions::default())
    }

    pub fn start_with(opts: DaemonOptions) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("xcatd-test-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path();
        let config_path = root.join("xcatd.toml");
        let db_line = if opts.database.is_empty() {
            String::new()
        } else {
            format!("database = {:?}\n", opts.database)
        };
        std::fs::write(
            &config_path,
            format!(
                "listen = {listen:?}\ncert_dir = \"cert\"\nstate_dir = \"state\"\ninstall_dir = \"install\"\n\
                 {share}enable_test_commands = true\nserver_name = \"testmn\"\n{db_line}{extra}\n",
                // TOML refuses a key given twice: a test that sets its own
                // share_dir replaces the default one.
                share = if opts.extra_config.lines().any(|l| l.trim_start().starts_with("share_dir")) {
                    String::new()
                } else {
                    format!("share_dir = {:?}\n", repo_root().join("config").display().to_string())
                },
                extra = opts.extra_config,
                listen = opts.listen,
            ),
        )
        .expect("write config");
        let home = root.join("home");
        let init = Command::new(bin("xcatd"))
            .args(["--config"])
            .arg(&config_path)
            .args(["init", "--client-dir"])
            .arg(home.join(".xcat"))
            .output()
            .expect("run xcatd init");
        assert!(
            init.status.success(),
            "xcatd init failed: {}{}",
            String::from_utf8_lossy(&init.stdout),
            String::from_utf8_lossy(&init.stderr)
        );
        let log_path = root.join("xcatd.log");
        let (child, addr, http_addr) = spawn_xcatd(&config_path, &log_path);
        Daemon {
            dir,
            addr,
            http_addr,
            config_path,
            home,
            log_path,
            child: Some(child),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Wait until the log contains `needle` (or panic after `timeout`).
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                start.elapsed() < timeout,
                "daemon log never showed {needle:?}; log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Client configuration with the root credential.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new(self.addr.to_string(), self.home.join(".xcat/ca.pem"));
        c.client_cred = Some(self.home.join(".xcat/client-cred.pem"));
        c.read_timeout = Some(Duration::from_secs(60));
        c
    }

    /// Create a client credential for another user (same CA) and return its HOME.
    pub fn add_user(&self, user: &str) -> PathBuf {
        let home = self.root().join(format!("home-{user}"));
        let out = Command::new(bin("xcatd"))
            .arg("--config")
            .arg(&self.config_path)
            .args(["init", "--user", user, "--client-dir"])
            .arg(home.join(".xcat"))
            .output()
            .expect("xcatd init --user");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        home
    }

    /// Run `xcatclient` with `args` (args[0] = command or link name) as root.
    pub fn client(&self, args: &[&str]) -> Output {
        self.client_as(&self.home, args, &[])
    }

    /// Run a client command through a link named after the command, with a
    /// given HOME and extra environment.
    pub fn client_as(&self, home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.client_command(home, args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run client")
    }

    /// The client command for `args` (args[0] names the link, made here
    /// once), with HOME and the daemon's address set: for callers that
    /// wire its stdin or stdout themselves.
    pub fn client_command(&self, home: &Path, args: &[&str]) -> Command {
        let links = self.root().join("bin");
        std::fs::create_dir_all(&links).expect("bin dir");
        let link = links.join(args[0]);
        if !link.exists() {
            std::os::unix::fs::symlink(bin("xcatclient"), &link).expect("link");
        }
        let mut cmd = Command::new(&link);
        cmd.args(&args[1..])
            .env("HOME", home)
            .env("XCATHOST", self.addr.to_string())
            .env("XCATCLIENT_READ_TIMEOUT", "120");
        cmd
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Start `xcatd --config CONFIG`, its log appended to `log_path`, and wait
/// for the address it listens on (and the boot service's, printed before it).
fn spawn_xcatd(config: &Path, log_path: &Path) -> (Child, SocketAddr, Option<SocketAddr>) {
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log_path)
        .expect("log file");
    let mut child = Command::new(bin("xcatd"))
        .arg("--config")
        .arg(config)
        .env("XCATD_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start xcatd");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut http = None;
    let addr = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(a) = l.strip_prefix("boot service listening on ") {
                    http = Some(a.parse().expect("address"));
                } else if let Some(a) = l.strip_prefix("listening on ") {
                    break a.parse().expect("address");
                }
            }
            _ => {
                let _ = child.kill();
                panic!(
                    "xcatd did not start: {}",
                    std::fs::read_to_string(log_path).unwrap_or_default()
                );
            }
        }
    };
    // Keep draining stdout so the daemon never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr, http)
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `[ssh]` configuration lines that reach test-bed nodes with the bed's key
/// and known-hosts file (host keys checked strictly).
pub fn ssh_config_for(node: &xcat_remote::testbed::Node) -> String {
    format!(
        "[ssh]\nidentity = {:?}\nknown_hosts = {:?}\nconnect_timeout = 5\n",
        node.identity.display().to_string(),
        node.bed_known_hosts.display().to_string()
    )
}

impl Daemon {
    /// A daemon whose `[ssh]` settings reach the test bed, with `nodes`
    /// defined in the tables (group `compute`: os debian12, arch x86_64,
    /// profile compute; `hosts.ip` set).
    pub fn for_nodes(nodes: &[&xcat_remote::testbed::Node], extra_config: &str) -> Daemon {
        Daemon::for_nodes_with(nodes, extra_config, DaemonOptions::default())
    }

    /// [`Daemon::for_nodes`] with other options (`extra_config` is added to
    /// theirs).
    pub fn for_nodes_with(
        nodes: &[&xcat_remote::testbed::Node],
        extra_config: &str,
        opts: DaemonOptions,
    ) -> Daemon {
        let first = nodes.first().expect("at least one node");
        let d = Daemon::start_with(DaemonOptions {
            extra_config: format!(
                "{}{extra_config}\n{}",
                opts.extra_config,
                ssh_config_for(first)
            ),
            ..opts
        });
        d.define_nodes(nodes);
        d
    }

    /// litefile rows: (image, file, options).
    pub fn add_litefile(&self, rows: &[(&str, &str, &str)]) {
        for (image, file, options) in rows {
            self.ok(&[
                "chtab",
                &format!("image={image},file={file}"),
                &format!("litefile.options={options}"),
            ]);
        }
    }

    /// Define test-bed nodes in the tables: group `compute` (os debian12,
    /// arch x86_64, profile compute) and each node's `hosts.ip`.
    pub fn define_nodes(&self, nodes: &[&xcat_remote::testbed::Node]) {
        self.ok(&[
            "chtab",
            "node=compute",
            "nodetype.os=debian12",
            "nodetype.arch=x86_64",
            "nodetype.profile=compute",
        ]);
        for n in nodes {
            self.ok(&[
                "chtab",
                &format!("node={}", n.name),
                "nodelist.groups=compute,all",
            ]);
            self.ok(&[
                "chtab",
                &format!("node={}", n.name),
                &format!("hosts.ip={}", n.addr),
            ]);
        }
    }

    /// Run a client command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.client(args);
        assert!(
            out.status.success(),
            "{args:?} failed ({}):\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The install directory of this daemon.
    pub fn install_dir(&self) -> PathBuf {
        self.root().join("install")
    }
}

/// The repository root (for shipped config files and test-bed scripts).
/// The configuration line that points a test daemon at the repository's
/// `share/` (the files the package installs under `/usr/share/xcatd`, such
/// as the object templates), for [`DaemonOptions::extra_config`].
pub fn shipped_share_config() -> String {
    format!(
        "share_dir = {:?}\n",
        repo_root().join("share").display().to_string()
    )
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo")
        .to_path_buf()
}

/// A raw TLS connection to the daemon, for sending bytes exactly as given.
/// `cred`: a PEM file with a client certificate and key, or None.
pub async fn raw_tls(
    addr: SocketAddr,
    ca: &Path,
    cred: Option<&Path>,
) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
    raw_tls_from(None, addr, ca, cred).await
}

/// [`raw_tls`] from a given local address (any of 127.0.0.0/8 reaches a
/// daemon on 127.0.0.1), so one test can be several peers.
pub async fn raw_tls_from(
    local: Option<std::net::IpAddr>,
    addr: SocketAddr,
    ca: &Path,
    cred: Option<&Path>,
) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca).expect("ca") {
        roots.add(c).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("versions")
        .with_root_certificates(roots);
    let config = match cred {
        Some(p) => builder
            .with_client_auth_cert(load_certs(p).expect("cert"), load_key(p).expect("key"))
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    let tcp = match local {
        None => tokio::net::TcpStream::connect(addr).await?,
        Some(ip) => {
            let sock = if ip.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            sock.bind(SocketAddr::new(ip, 0))?;
            sock.connect(addr).await?
        }
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector
        .connect("localhost".try_into().expect("name"), tcp)
        .await
}

/// Send raw bytes and read everything until the server closes (or `limit`).
pub async fn raw_exchange(
    stream: &mut TlsStream<tokio::net::TcpStream>,
    request: &[u8],
    limit: Duration,
) -> String {
    stream.write_all(request).await.expect("write");
    stream.flush().await.expect("flush");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Read a whole file, for assertions.
pub fn slurp(p: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

// ---------------------------------------------------------------------------
// Hard kill and restart of the daemon (capimage fault tests): a daemon that
// dies without any cleanup, and a fresh process on the same configuration and
// state directory, as an administrator restarting the service would get.
// ---------------------------------------------------------------------------

impl Daemon {
    /// SIGKILL the daemon (no shutdown code runs) and reap it.
    pub fn kill_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start a new `xcatd` process on the same configuration, state and
    /// certificates (after [`Daemon::kill_hard`] or [`Daemon::stop`]). Its log
    /// is appended to the same file; the listening address changes.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart: the daemon is still running");
        let (child, addr, http_addr) = spawn_xcatd(&self.config_path, &self.log_path);
        self.addr = addr;
        self.http_addr = http_addr;
        self.child = Some(child);
    }
}

// ---------------------------------------------------------------------------
// Helpers the capture tests share.
// ---------------------------------------------------------------------------

impl Daemon {
    /// Where a capture of a `compute`-group node (debian12, x86_64) with
    /// `profile` puts its image.
    pub fn image_dir(&self, profile: &str) -> PathBuf {
        self.install_dir()
            .join("netboot/debian12/x86_64")
            .join(profile)
    }
}

/// A process's stdout then stderr, for assertion messages.
pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The manifest of a tree, for comparisons.
pub fn manifest(p: &Path) -> xcat_image::Manifest {
    xcat_image::scan_tree(p).unwrap_or_else(|e| panic!("scan {}: {e}", p.display()))
}

/// Run a host command that must succeed; returns its stdout.
pub fn host(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `cmd` in a test-bed node's network namespace (from the host, so the
/// node cannot undo it).
pub fn in_node_netns(node: &xcat_remote::testbed::Node, cmd: &[&str]) -> String {
    let pid = node.init_pid.to_string();
    let mut args = vec!["-t", pid.as_str(), "-n"];
    args.extend_from_slice(cmd);
    host("nsenter", &args)
}

/// Limit what a node sends (its uplink, which carries the capture stream)
/// with a token bucket on its interface: tc from iproute2, sch_tbf.
pub fn shape_uplink(node: &xcat_remote::testbed::Node, rate: &str, burst: &str, latency: &str) {
    in_node_netns(
        node,
        &[
            "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", rate, "burst", burst,
            "latency", latency,
        ],
    );
}

/// Undo [`shape_uplink`].
pub fn unshape_uplink(node: &xcat_remote::testbed::Node) {
    in_node_netns(node, &["tc", "qdisc", "del", "dev", "eth0", "root"]);
}

// ---------------------------------------------------------------------------
// The PXE test bed (tests/testbed/pxe.sh): the bridge xpxebr0 with
// 10.99.60.1/24, qemu guests (TCG) on taps in it, and a recorder of HTTP
// request lines on the bridge address.
// ---------------------------------------------------------------------------

/// The bridge; `pxe.sh down` on drop removes it, every tap and guest. One
/// test holds the bed at a time (a process-wide lock: the tests of one
/// binary run in threads, and the bed's addresses are fixed).
pub struct PxeBed {
    _held: std::sync::MutexGuard<'static, ()>,
}

static PXE_BED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The bed's server address (the bridge's).
pub const PXE_SERVER: &str = "10.99.60.1";

impl PxeBed {
    /// Bring the bridge up (root only; a leftover bed is removed first).
    pub fn up() -> PxeBed {
        let held = PXE_BED.lock().unwrap_or_else(|p| p.into_inner());
        xcat_remote::testbed::TestBed::join();
        let script = repo_root().join("tests/testbed/pxe.sh");
        host(script.to_str().expect("path"), &["cleanup"]);
        host(script.to_str().expect("path"), &["up"]);
        PxeBed { _held: held }
    }

    /// Start guest `n` (0..9) with `mac` and `firmware` (`bios`, `uefi`,
    /// `uefi-pxe`); its serial console goes to `log`.
    pub fn guest(&self, n: u8, mac: &str, firmware: &str, log: &Path) -> PxeGuest {
        self.guest_sized(n, mac, firmware, log, 512, 1)
    }

    /// [`PxeBed::guest`] with `mem_mib` of RAM and `cpus` virtual CPUs.
    pub fn guest_sized(
        &self,
        n: u8,
        mac: &str,
        firmware: &str,
        log: &Path,
        mem_mib: u32,
        cpus: u32,
    ) -> PxeGuest {
        self.guest_with(n, mac, firmware, log, (mem_mib, cpus, None))
    }

    /// [`PxeBed::guest_sized`] with a raw disk image as a virtio disk.
    fn guest_with(
        &self,
        n: u8,
        mac: &str,
        firmware: &str,
        log: &Path,
        (mem_mib, cpus, disk): (u32, u32, Option<&Path>),
    ) -> PxeGuest {
        let mut cmd = Command::new(repo_root().join("tests/testbed/pxe.sh"));
        cmd.args(["guest", &n.to_string(), mac, firmware])
            .env("PXE_GUEST_MEM", mem_mib.to_string())
            .env("PXE_GUEST_CPUS", cpus.to_string())
            .arg(log)
            .stdin(Stdio::null());
        if let Some(d) = disk {
            cmd.env("PXE_GUEST_DISK", d);
        }
        let child = cmd.spawn().expect("start pxe.sh guest");
        PxeGuest { child: Some(child) }
    }
}

impl PxeBed {
    /// [`PxeBed::guest_sized`] (2 CPUs), started once more if its console
    /// does not show `reached` within `wait` (`until`): under TCG on a loaded
    /// two-core host a guest has stalled in early kernel boot for minutes
    /// (the console stopping at 1.8 s), which says nothing about what it
    /// boots. The second start is the last; the caller's checks decide.
    pub fn guest_reaching(
        &self,
        n: u8,
        mac: &str,
        firmware: &str,
        log: &Path,
        mem_mib: u32,
        reaching: (&str, Duration),
    ) -> PxeGuest {
        self.guest_reaching_with_disk(n, mac, firmware, log, (mem_mib, None), reaching)
    }

    /// [`PxeBed::guest_reaching`] with a raw disk image as a virtio disk.
    pub fn guest_reaching_with_disk(
        &self,
        n: u8,
        mac: &str,
        firmware: &str,
        log: &Path,
        (mem_mib, disk): (u32, Option<&Path>),
        (reached, wait): (&str, Duration),
    ) -> PxeGuest {
        let start = || {
            let _ = std::fs::remove_file(log);
            self.guest_with(n, mac, firmware, log, (mem_mib, 2, disk))
        };
        let guest = start();
        let (seen, text) = wait_for_console(log, &[reached], wait);
        if seen {
            return guest;
        }
        eprintln!(
            "{}: no {reached:?} on the console in {wait:?}; starting the guest again. Console:\n{}",
            log.display(),
            netboot::tail(&text, 10)
        );
        drop(guest);
        start()
    }
}

impl Drop for PxeBed {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("tests/testbed/pxe.sh"))
            .arg("down")
            .status();
    }
}

/// A running guest; dropping it stops qemu and removes its tap.
pub struct PxeGuest {
    child: Option<Child>,
}

impl PxeGuest {
    /// SIGTERM to the bed script (its trap kills qemu and removes the tap).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(15) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PxeGuest {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A stand-in for the boot service: it accepts HTTP connections on an
/// address, records each request line and answers 404. It only shows that
/// a guest asked for a URL; the real boot service replaces it.
pub struct HttpRecorder {
    pub lines: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl HttpRecorder {
    pub fn listen(addr: &str) -> HttpRecorder {
        let listener = std::net::TcpListener::bind(addr).expect("recorder bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (l2, s2) = (lines.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                        let mut first = String::new();
                        let _ = BufReader::new(&mut s).take(4096).read_line(&mut first);
                        l2.lock().expect("lines").push(first.trim_end().to_string());
                        let _ = std::io::Write::write_all(
                            &mut s,
                            b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        HttpRecorder { lines, stop }
    }

    /// Wait until a request line contains `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self
                .lines
                .lock()
                .expect("lines")
                .iter()
                .any(|l| l.contains(needle))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for HttpRecorder {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The stateless initrd's static helper (`xcat-netinit`), built once per
/// test process by `scripts/build-netinit` (its own target directory, so
/// it never waits for the build lock of the cargo running the tests), or
/// the binary `XCATD_TEST_NETINIT` names.
pub fn netinit_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("XCATD_TEST_NETINIT").filter(|p| !p.is_empty()) {
                return PathBuf::from(p);
            }
            let out = Command::new(repo_root().join("scripts/build-netinit"))
                .stdin(Stdio::null())
                .output()
                .expect("run scripts/build-netinit");
            assert!(
                out.status.success(),
                "scripts/build-netinit failed:\n{}",
                output_text(&out)
            );
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        })
        .clone()
}

/// Wait until a guest's console log shows one of `needles` (or `timeout`
/// passes); whether it did, and the console text either way.
pub fn wait_for_console(console: &Path, needles: &[&str], timeout: Duration) -> (bool, String) {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(console).unwrap_or_default();
        if needles.iter().any(|n| text.contains(n)) {
            return (true, text);
        }
        if start.elapsed() > timeout {
            return (false, text);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
