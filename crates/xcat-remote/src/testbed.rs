//! A real test bed: Debian nodes with sshd, each in its own namespaces.
//!
//! Built on the scripts in `tests/testbed/` of the workspace (`rootfs.sh`,
//! `node.sh`, `edgecases.sh`); see `node.sh` for what a node is. Needs root
//! and the packages listed in `tests/testbed/common.sh`. Anything missing
//! makes the fixture panic with the reason: a test that needs the bed never
//! silently skips.
//!
//! ```no_run
//! # async fn f() {
//! use xcat_remote::testbed::TestBed;
//! let node = TestBed::node("cn");
//! let remote = xcat_remote::Remote::new(node.ssh_config());
//! let out = remote.run(&node.name, &node.addr, "hostname", None).await.unwrap();
//! assert_eq!(out.stdout_text().trim(), node.name);
//! # }
//! ```
//!
//! Concurrency: every process holding nodes keeps a shared lock on
//! `/run/xcatd-testbed/bed.lock`; a node index is owned through an exclusive
//! lock on `/run/xcatd-testbed/index-N.lock` for the node's lifetime, so
//! parallel tests and test binaries never share an address. The first process
//! to find the bed unused removes what a killed run left behind.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustix::fs::{flock, FlockOperation};

use crate::SshConfig;

/// Where lock files and node state live (must match `common.sh`).
pub const STATE_DIR: &str = "/run/xcatd-testbed";

/// How a node's root filesystem is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A private copy of the cached ext4 image: `/` is one real ext4 filesystem.
    Full,
    /// The same tree on a fresh btrfs disk (`/` is its top-level subvolume).
    Btrfs,
    /// A small ext4 disk holding an overlayfs upper layer over one shared,
    /// read-only base tree. Cheap; for many-node tests.
    Overlay,
}

/// How to build a node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub mode: Mode,
    /// Disk size in MiB (None: 4096 for Full, 64 for Overlay).
    pub disk_mb: Option<u64>,
    /// Add the edge-case tree under `/srv/edgecases` (Full only).
    pub edgecases: bool,
    /// Also a sparse file over 4 GiB in the edge-case tree.
    pub big_edgecases: bool,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            mode: Mode::Full,
            disk_mb: None,
            edgecases: false,
            big_edgecases: false,
        }
    }
}

impl NodeOptions {
    /// Light nodes for many-node tests.
    pub fn light() -> Self {
        NodeOptions {
            mode: Mode::Overlay,
            ..NodeOptions::default()
        }
    }
}

/// Entry point of the fixture.
#[derive(Debug)]
pub struct TestBed;

/// Per-process state: the shared bed lock and this process's key directory.
struct Bed {
    _lock: File,
    keys: PathBuf,
}

static BED: OnceLock<Bed> = OnceLock::new();
static ROOTFS: OnceLock<()> = OnceLock::new();

fn fail(msg: impl std::fmt::Display) -> ! {
    panic!("test bed: {msg}")
}

fn require_root_and_tools() {
    if !rustix::process::geteuid().is_root() {
        fail("the test bed needs root (network namespaces, loop mounts, pivot_root); run the tests as root");
    }
    let tools = [
        "ssh",
        "ssh-keygen",
        "mmdebstrap",
        "ip",
        "unshare",
        "nsenter",
        "setsid",
        "mount",
        "losetup",
        "mkfs.ext4",
        "resize2fs",
        "e2fsck",
        "flock",
        "pgrep",
        "setfattr",
        "setfacl",
        "setcap",
        "perl",
        "tar",
    ];
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from))
        .collect();
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| !dirs.iter().any(|d| d.join(t).is_file()))
        .collect();
    if !missing.is_empty() {
        fail(format_args!(
            "missing tools: {}; install the Debian packages openssh-server openssh-client mmdebstrap \
             iproute2 util-linux e2fsprogs attr acl libcap2-bin kmod zstd perl",
            missing.join(" ")
        ));
    }
}

fn lock_file(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| fail(format_args!("cannot open {}: {e}", path.display())))
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

impl TestBed {
    /// The directory holding the test-bed scripts.
    pub fn scripts_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/testbed")
    }

    fn script(name: &str) -> PathBuf {
        let p = Self::scripts_dir().join(name);
        if !p.is_file() {
            fail(format_args!("script {} not found", p.display()));
        }
        p
    }

    fn bed() -> &'static Bed {
        BED.get_or_init(|| {
            require_root_and_tools();
            std::fs::create_dir_all(STATE_DIR)
                .unwrap_or_else(|e| fail(format_args!("cannot create {STATE_DIR}: {e}")));
            let lock = lock_file(&Path::new(STATE_DIR).join("bed.lock"));
            // Nobody else uses the bed: remove what a killed run left, then
            // hold the lock shared like every other user.
            if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_ok() {
                let out = Command::new(Self::script("node.sh"))
                    .arg("cleanup")
                    .env("TB_BED_LOCK_HELD", "1")
                    .stdin(Stdio::null())
                    .output()
                    .unwrap_or_else(|e| fail(format_args!("cannot run node.sh cleanup: {e}")));
                if !out.status.success() {
                    fail(format_args!(
                        "node.sh cleanup failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
            flock(&lock, FlockOperation::LockShared)
                .unwrap_or_else(|e| fail(format_args!("cannot lock the bed: {e}")));
            // Key directories of processes that are gone.
            let beds = Path::new(STATE_DIR).join("beds");
            if let Ok(rd) = std::fs::read_dir(&beds) {
                for e in rd.flatten() {
                    if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                        if !pid_alive(pid) {
                            let _ = std::fs::remove_dir_all(e.path());
                        }
                    }
                }
            }
            let keys = beds.join(std::process::id().to_string());
            let _ = std::fs::remove_dir_all(&keys);
            std::fs::create_dir_all(&keys)
                .unwrap_or_else(|e| fail(format_args!("cannot create {}: {e}", keys.display())));
            Bed { _lock: lock, keys }
        })
    }

    /// Build (or find cached) the root filesystem, once per process; the
    /// script's own lock serializes processes.
    fn ensure_rootfs(mode: Mode) {
        ROOTFS.get_or_init(|| {
            let t = Instant::now();
            for what in ["ext4", "base"] {
                let out = Command::new(Self::script("rootfs.sh"))
                    .arg(what)
                    .stdin(Stdio::null())
                    .stderr(Stdio::inherit())
                    .output()
                    .unwrap_or_else(|e| fail(format_args!("cannot run rootfs.sh: {e}")));
                if !out.status.success() {
                    fail(format_args!(
                        "rootfs.sh {what} failed (see its messages above)"
                    ));
                }
            }
            let _ = mode;
            eprintln!(
                "test bed: root filesystem ready in {:.1} s",
                t.elapsed().as_secs_f64()
            );
        });
    }

    /// Join the bed now: the first user of a process removes what a killed
    /// run left (nodes, and the PXE and NFS beds too), so a PXE or NFS bed
    /// must be brought up only after this, or a later first node would
    /// remove it.
    pub fn join() {
        Self::bed();
    }

    /// The bed's key directory (client key, known_hosts of all its nodes).
    pub fn keys_dir() -> &'static Path {
        &Self::bed().keys
    }

    /// Bring up one full node named `{name_hint}{index}`.
    pub fn node(name_hint: &str) -> Node {
        Self::node_with(name_hint, &NodeOptions::default())
    }

    /// Bring up one node with options.
    pub fn node_with(name_hint: &str, opts: &NodeOptions) -> Node {
        let bed = Self::bed();
        Self::ensure_rootfs(opts.mode);
        let (index, lock) = allocate_index();
        let sep = if name_hint.ends_with(|c: char| c.is_ascii_digit()) {
            "-"
        } else {
            ""
        };
        let name = format!("{name_hint}{sep}{index}");
        let mut cmd = Command::new(Self::script("node.sh"));
        cmd.arg("up")
            .arg(&name)
            .arg(index.to_string())
            .env("TB_KEYS", &bed.keys)
            .env(
                "TB_MODE",
                match opts.mode {
                    Mode::Full => "full",
                    Mode::Btrfs => "btrfs",
                    Mode::Overlay => "overlay",
                },
            )
            .stdin(Stdio::null());
        if let Some(mb) = opts.disk_mb {
            cmd.env("TB_DISK_MB", mb.to_string());
        }
        if opts.edgecases {
            cmd.env("TB_EDGECASES", "1");
        }
        if opts.big_edgecases {
            cmd.env("TB_EDGE_BIG", "1");
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| fail(format_args!("cannot run node.sh: {e}")));
        if !out.status.success() {
            fail(format_args!(
                "node.sh up {name} {index} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let env = parse_env(&String::from_utf8_lossy(&out.stdout));
        let get = |k: &str| -> String {
            env.get(k)
                .cloned()
                .unwrap_or_else(|| fail(format_args!("node.sh up printed no {k}")))
        };
        let num = |k: &str| -> u32 {
            get(k)
                .parse()
                .unwrap_or_else(|_| fail(format_args!("node.sh up printed a bad {k}")))
        };
        Node {
            name,
            addr: get("TB_ADDR"),
            index,
            identity: get("TB_IDENTITY").into(),
            known_hosts: get("TB_KNOWN_HOSTS").into(),
            bed_known_hosts: get("TB_BED_KNOWN_HOSTS").into(),
            pid: num("TB_PID"),
            init_pid: num("TB_INIT_PID"),
            disk: get("TB_DISK").into(),
            _index_lock: lock,
        }
    }

    /// Bring up `n` nodes (named `{name_hint}{index}`).
    pub fn nodes(name_hint: &str, n: usize, opts: &NodeOptions) -> Vec<Node> {
        (0..n).map(|_| Self::node_with(name_hint, opts)).collect()
    }

    /// An ssh configuration reaching every node of this process's bed
    /// (their host keys are all in the bed's known_hosts).
    pub fn ssh_config() -> SshConfig {
        let keys = Self::keys_dir();
        SshConfig {
            identity: Some(keys.join("id_ed25519")),
            known_hosts: keys.join("known_hosts"),
            user: "root".into(),
            // Under load (a whole test suite on two cores) a node's sshd has
            // taken more than 5 s to send its banner; a refused connection
            // still fails at once.
            connect_timeout: 15,
            ..SshConfig::default()
        }
    }

    /// Run `node.sh cleanup` (removes every bed object; fails while a bed
    /// is in use by any process holding the bed lock).
    pub fn cleanup() -> Output {
        Command::new(Self::script("node.sh"))
            .arg("cleanup")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| fail(format_args!("cannot run node.sh cleanup: {e}")))
    }
}

fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Serializes index allocation inside this process (flock already excludes
/// other processes and other descriptors; this only avoids needless contention).
static ALLOC: Mutex<()> = Mutex::new(());

fn allocate_index() -> (u32, File) {
    let _g = ALLOC.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..=244u32 {
        let f = lock_file(&Path::new(STATE_DIR).join(format!("index-{i}.lock")));
        if flock(&f, FlockOperation::NonBlockingLockExclusive).is_ok() {
            return (i, f);
        }
    }
    fail("all 245 node indexes are in use")
}

/// A running node. Dropping it stops the node and removes its disk.
#[derive(Debug)]
pub struct Node {
    /// Its hostname (`{hint}{index}`).
    pub name: String,
    /// Its IPv4 address on the bed bridge.
    pub addr: String,
    pub index: u32,
    /// The bed's client private key.
    pub identity: PathBuf,
    /// A known_hosts file with this node's host key only.
    pub known_hosts: PathBuf,
    /// The bed's known_hosts file (every node of this process).
    pub bed_known_hosts: PathBuf,
    /// The `unshare` process (host pid); SIGKILL stops the node.
    pub pid: u32,
    /// The node's PID 1 (sshd) as a host pid; target for `nsenter`.
    pub init_pid: u32,
    /// The node's disk image.
    pub disk: PathBuf,
    _index_lock: File,
}

impl Node {
    /// ssh settings that reach this node (root, the bed's key, this node's
    /// host key only).
    pub fn ssh_config(&self) -> SshConfig {
        SshConfig {
            identity: Some(self.identity.clone()),
            known_hosts: self.known_hosts.clone(),
            user: "root".into(),
            // Under load (a whole test suite on two cores) a node's sshd has
            // taken more than 5 s to send its banner; a refused connection
            // still fails at once.
            connect_timeout: 15,
            ..SshConfig::default()
        }
    }

    /// Run `sh -c cmd` inside the node (all its namespaces and its root),
    /// bypassing ssh: for checks from inside.
    pub fn exec_inside(&self, cmd: &str) -> Output {
        Command::new("nsenter")
            .arg("-t")
            .arg(self.init_pid.to_string())
            .args([
                "-m", "-u", "-i", "-n", "-p", "-r", "-w", "/bin/sh", "-c", cmd,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| fail(format_args!("cannot run nsenter: {e}")))
    }

    /// Like [`Node::exec_inside`], returning stdout and panicking on failure.
    pub fn sh(&self, cmd: &str) -> String {
        let out = self.exec_inside(cmd);
        if !out.status.success() {
            fail(format_args!(
                "`{cmd}` inside {} failed ({}): {}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether the node's PID 1 still runs.
    pub fn is_running(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.init_pid))
            .map(|s| {
                let state = s
                    .rsplit_once(") ")
                    .map(|(_, r)| r.chars().next())
                    .unwrap_or(None);
                state != Some('Z')
            })
            .unwrap_or(false)
    }

    /// Stop the node abruptly (power off): SIGKILL to its `unshare`, which
    /// takes the whole pid namespace with it. Its network namespace stays,
    /// so connections are refused. Waits until PID 1 is gone.
    pub fn kill(&self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::Kill);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.is_running() {
            if Instant::now() > deadline {
                fail(format_args!("node {} does not die", self.name));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        match Command::new(TestBed::scripts_dir().join("node.sh"))
            .arg("down")
            .arg(self.index.to_string())
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "test bed: node.sh down {} failed: {}",
                self.index,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("test bed: cannot run node.sh down: {e}"),
        }
    }
}
