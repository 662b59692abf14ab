//! The supervised dnsmasq: with `[dhcp] interfaces` set, the daemon runs
//! dnsmasq (DHCP and TFTP, no DNS) on those interfaces with the
//! configuration `makedhcp` writes, restarts it when it dies (with
//! back-off), reloads it when makedhcp says so, and stops it at shutdown.
//!
//! One thread owns the child: it waits for messages (a change, stop) and
//! checks the child between them, so nothing else ever touches the
//! process. This file starts a long-lived process of its own, which the
//! tool runner (run to completion, output collected) is not made for.
//!
//! An orphan: dnsmasq drops root after start, and the kernel clears a
//! parent-death signal on that change of user, so a killed daemon cannot
//! take dnsmasq with it. The child's pid is kept in
//! `<state_dir>/dhcp/dnsmasq.pid`; the next start stops the process it
//! names when that process is a dnsmasq of this configuration.

use std::io::BufRead as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use tracing::{info, warn};
use xcat_plugin::boot::{DhcpChange, DhcpPaths, DhcpServer, DhcpServerHandle, DhcpSettings};

/// How often the owner thread looks at the child between messages.
const TICK: Duration = Duration::from_millis(100);
/// The first and the longest wait before a restart after dnsmasq died.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A child that ran this long is healthy: the next death waits BACKOFF_MIN.
const HEALTHY: Duration = Duration::from_secs(30);
/// How long dnsmasq gets to stop on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

enum Msg {
    Change(DhcpChange),
    Stop,
}

/// The supervisor: its thread and the way to reach it.
pub struct Supervisor {
    link: Arc<Link>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What handlers hold (through the settings) to tell the supervisor.
struct Link {
    tx: Mutex<mpsc::Sender<Msg>>,
}

impl DhcpServer for Link {
    fn changed(&self, change: DhcpChange) {
        if let Ok(tx) = self.tx.lock() {
            let _ = tx.send(Msg::Change(change));
        }
    }
}

impl Supervisor {
    /// Start supervising when interfaces are configured.
    pub fn start(settings: &DhcpSettings, state_dir: &Path) -> anyhow::Result<Option<Supervisor>> {
        if settings.interfaces.is_empty() {
            return Ok(None);
        }
        let (tx, rx) = mpsc::channel();
        let owner = Owner::new(settings.clone(), DhcpPaths::new(state_dir));
        let thread = std::thread::Builder::new()
            .name("dnsmasq-supervisor".into())
            .spawn(move || owner.run(rx))?;
        Ok(Some(Supervisor {
            link: Arc::new(Link { tx: Mutex::new(tx) }),
            thread: Some(thread),
        }))
    }

    /// The handle handlers get in their settings.
    pub fn handle(&self) -> DhcpServerHandle {
        DhcpServerHandle::new(self.link.clone())
    }

    /// Stop dnsmasq and the thread (blocks up to the stop grace).
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(t) = self.thread.take() {
            if let Ok(tx) = self.link.tx.lock() {
                let _ = tx.send(Msg::Stop);
            }
            let _ = t.join();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// The owner thread's state.
struct Owner {
    settings: DhcpSettings,
    paths: DhcpPaths,
    child: Option<(Child, Instant)>,
    backoff: Duration,
    /// When the next start may be tried (None: now).
    not_before: Option<Instant>,
    told_waiting: bool,
}

impl Owner {
    fn new(settings: DhcpSettings, paths: DhcpPaths) -> Owner {
        Owner {
            settings,
            paths,
            child: None,
            backoff: BACKOFF_MIN,
            not_before: None,
            told_waiting: false,
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        stop_orphan(&self.paths);
        loop {
            match rx.recv_timeout(TICK) {
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(Msg::Change(DhcpChange::Nodes)) => self.reload(),
                Ok(Msg::Change(DhcpChange::Config)) => {
                    if self.child.is_some() {
                        info!("dnsmasq: the main configuration changed; restarting it");
                        self.stop_child();
                    }
                    self.not_before = None;
                    self.backoff = BACKOFF_MIN;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.reap();
            self.start_when_due();
        }
        self.stop_child();
    }

    /// SIGHUP: dnsmasq re-reads the per-node directories.
    fn reload(&mut self) {
        match &self.child {
            Some((c, _)) => {
                if let Some(pid) = Pid::from_raw(c.id() as i32) {
                    let _ = kill_process(pid, Signal::Hup);
                }
            }
            None => self.not_before = None,
        }
    }

    /// Notice a child that died and schedule its restart.
    fn reap(&mut self) {
        let Some((child, started)) = &mut self.child else {
            return;
        };
        let Ok(Some(status)) = child.try_wait() else {
            return;
        };
        if started.elapsed() >= HEALTHY {
            self.backoff = BACKOFF_MIN;
        }
        warn!(
            "dnsmasq exited ({status}); restarting it in {} s",
            self.backoff.as_secs()
        );
        self.not_before = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        self.child = None;
        let _ = std::fs::remove_file(&self.paths.pid);
    }

    fn start_when_due(&mut self) {
        if self.child.is_some() || self.not_before.is_some_and(|t| Instant::now() < t) {
            return;
        }
        if !self.paths.conf.exists() {
            if !self.told_waiting {
                info!(
                    "dnsmasq: waiting for {} (run makedhcp -n)",
                    self.paths.conf.display()
                );
                self.told_waiting = true;
            }
            return;
        }
        match self.spawn() {
            Ok(child) => {
                info!(
                    pid = child.id(),
                    "dnsmasq started on {}",
                    self.settings.interfaces.join(",")
                );
                let _ = std::fs::write(&self.paths.pid, format!("{}\n", child.id()));
                self.child = Some((child, Instant::now()));
            }
            Err(e) => {
                warn!(
                    "cannot start {}: {e}; trying again in {} s",
                    self.settings.dnsmasq.display(),
                    self.backoff.as_secs()
                );
                self.not_before = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    fn spawn(&self) -> std::io::Result<Child> {
        let mut cmd = Command::new(&self.settings.dnsmasq);
        cmd.args(dnsmasq_args(&self.settings, &self.paths))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C meant for the daemon's
            // terminal reaches the daemon, which stops dnsmasq in order.
            .process_group(0);
        let mut child = cmd.spawn()?;
        if let Some(err) = child.stderr.take() {
            std::thread::Builder::new()
                .name("dnsmasq-log".into())
                .spawn(move || {
                    for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                        info!("dnsmasq: {line}");
                    }
                })?;
        }
        Ok(child)
    }

    fn stop_child(&mut self) {
        if let Some((mut child, _)) = self.child.take() {
            terminate(&mut child);
            info!("dnsmasq stopped");
        }
        let _ = std::fs::remove_file(&self.paths.pid);
    }
}

/// dnsmasq's command line: the generated file, the configured interfaces
/// only, in the foreground, logging to stderr (the daemon's log).
pub fn dnsmasq_args(settings: &DhcpSettings, paths: &DhcpPaths) -> Vec<String> {
    let mut v = vec![
        "--keep-in-foreground".to_string(),
        format!("--conf-file={}", paths.conf.display()),
        "--log-facility=-".to_string(),
        "--bind-interfaces".to_string(),
    ];
    v.extend(
        settings
            .interfaces
            .iter()
            .map(|i| format!("--interface={i}")),
    );
    // --interface adds the loopback by itself; TFTP would answer there.
    if !settings.interfaces.iter().any(|i| i == "lo") {
        v.push("--except-interface=lo".to_string());
    }
    if settings.log_dhcp {
        v.push("--log-dhcp".to_string());
    }
    v
}

/// SIGTERM, then SIGKILL after the grace; reaped either way.
fn terminate(child: &mut Child) {
    if let Some(pid) = Pid::from_raw(child.id() as i32) {
        let _ = kill_process(pid, Signal::Term);
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Stop the dnsmasq a killed daemon left running, if the pid file names a
/// live dnsmasq of this very configuration (never another process that
/// reused the number).
fn stop_orphan(paths: &DhcpPaths) {
    let Some(pid) = std::fs::read_to_string(&paths.pid)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return;
    };
    let conf_arg = format!("--conf-file={}", paths.conf.display());
    let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|b| *b == 0).any(|a| a == conf_arg.as_bytes()))
        .unwrap_or(false);
    if let (true, Some(p)) = (ours, Pid::from_raw(pid)) {
        warn!("stopping dnsmasq {pid}, left running by an earlier xcatd");
        let _ = kill_process(p, Signal::Term);
        let deadline = Instant::now() + STOP_GRACE;
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = kill_process(p, Signal::Kill);
    }
    let _ = std::fs::remove_file(&paths.pid);
}
