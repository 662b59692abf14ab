//! Daemon configuration, read from a TOML file (`/etc/xcatd/xcatd.toml` by default).
//!
//! Every field has a default so an empty file is a valid configuration; unknown
//! keys are refused so a typo does not silently fall back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

pub const DEFAULT_CONFIG: &str = "/etc/xcatd/xcatd.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on; `[::]:3001` accepts IPv4 and IPv6.
    pub listen: SocketAddr,
    /// Directory with `ca.pem` and `server-cred.pem` (xCAT's layout), or
    /// `server-cert.pem` + `server-key.pem`.
    pub cert_dir: PathBuf,
    /// Daemon state: the SQLite database by default, locks, journals.
    pub state_dir: PathBuf,
    /// Database URL; empty means `sqlite://<state_dir>/xcatd.sqlite`.
    pub database: String,
    /// Root of the install tree (images go to `<install_dir>/netboot/...`).
    pub install_dir: PathBuf,
    /// Shipped defaults such as exclusion lists (xCAT's share directory).
    pub share_dir: PathBuf,
    /// Most connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Most connections one peer address may hold at once; more from it are
    /// closed at accept, so one peer cannot take the whole pool.
    pub max_connections_per_peer: usize,
    /// Requests per second one peer address may sustain, checked before
    /// policy; 0 turns the guard off (benchmarks from one host).
    pub peer_request_rate: u32,
    /// Requests one peer may send at once after a pause (the bucket size).
    pub peer_request_burst: u32,
    /// Most nodes one noderange may look at (see `xcat_db::noderange::Limits`).
    pub max_noderange_names: u64,
    /// Largest request document accepted, in bytes.
    pub max_request_bytes: usize,
    /// Seconds allowed for the TLS handshake.
    pub handshake_timeout: u64,
    /// Seconds allowed before the first byte of a request.
    pub request_idle_timeout: u64,
    /// Seconds allowed for a whole request document.
    pub request_timeout: u64,
    /// Seconds a client may leave a reply unread before it is dropped.
    pub write_timeout: u64,
    /// Seconds running commands get to finish at shutdown before they are cancelled.
    pub shutdown_grace: u64,
    /// Register the commands the test suite uses (never in production).
    pub enable_test_commands: bool,
    /// The log filter (`info`, `debug`, `xcatd=debug,info`: tracing's
    /// directives); SIGHUP applies a changed value. `XCATD_LOG`, when set,
    /// wins over it.
    pub log_level: String,
    /// Name this server reports (`xcatdsource`) and trusts in the default policy;
    /// empty means the short host name.
    pub server_name: String,
    /// How to reach nodes.
    pub ssh: xcat_remote::SshConfig,
    /// What one capture may cost (wall time, bytes, archive budget, parser limits).
    pub capture: xcat_plugin::CaptureSettings,
    /// The TFTP root (seeds `site.tftpdir`; `nodeset` writes boot files here).
    pub tftp_dir: PathBuf,
    /// The boot service (`[http]`).
    pub http: xcat_plugin::boot::HttpSettings,
    /// The supervised DHCP server (`[dhcp]`).
    pub dhcp: xcat_plugin::boot::DhcpSettings,
    /// xCAT's install monitor (`[status]`, port 3002): nodes' boot reports.
    pub status: crate::install_monitor::StatusSettings,
    /// The binaries of the stateless initrd (`[initrd]`).
    pub initrd: xcat_plugin::boot::InitrdSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "[::]:3001".parse().expect("valid default address"),
            cert_dir: PathBuf::from("/etc/xcat/cert"),
            state_dir: PathBuf::from("/var/lib/xcatd"),
            database: String::new(),
            install_dir: PathBuf::from("/install"),
            share_dir: PathBuf::from("/usr/share/xcatd"),
            max_connections: 1024,
            max_connections_per_peer: 256,
            peer_request_rate: 100,
            peer_request_burst: 400,
            max_noderange_names: xcat_db::noderange::DEFAULT_MAX_NAMES,
            max_request_bytes: 1 << 20,
            handshake_timeout: 10,
            request_idle_timeout: 15,
            request_timeout: 60,
            write_timeout: 300,
            shutdown_grace: 30,
            enable_test_commands: false,
            log_level: "info".into(),
            server_name: String::new(),
            ssh: xcat_remote::SshConfig::default(),
            capture: Default::default(),
            tftp_dir: PathBuf::from("/tftpboot"),
            http: Default::default(),
            dhcp: Default::default(),
            status: Default::default(),
            initrd: Default::default(),
        }
    }
}

impl Config {
    /// Read a configuration file. A missing file at the default path means
    /// "all defaults"; a missing file that was named explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> anyhow::Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => String::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let mut cfg: Config = toml::from_str(&text)
            .with_context(|| format!("invalid configuration in {}", path.display()))?;
        // Relative paths in the file are relative to the file, so a config can
        // travel with its state directory (the demo and tests rely on this).
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut cfg.cert_dir,
            &mut cfg.state_dir,
            &mut cfg.install_dir,
            &mut cfg.share_dir,
            &mut cfg.tftp_dir,
            &mut cfg.initrd.busybox,
            &mut cfg.initrd.netinit,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(log) = &cfg.http.access_log {
            if log.is_relative() {
                cfg.http.access_log = Some(base.join(log));
            }
        }
        if cfg.ssh.known_hosts.is_relative() {
            cfg.ssh.known_hosts = base.join(&cfg.ssh.known_hosts);
        }
        if let Some(id) = &cfg.ssh.identity {
            if id.is_relative() {
                cfg.ssh.identity = Some(base.join(id));
            }
        }
        if cfg.server_name.is_empty() {
            cfg.server_name = short_hostname();
        }
        Ok(cfg)
    }

    /// Limits that would refuse every client are refused instead.
    pub(crate) fn check_peer_limits(&self) -> anyhow::Result<()> {
        if self.max_connections_per_peer == 0 {
            anyhow::bail!("max_connections_per_peer is 0: no client could connect; use at least 1");
        }
        if self.peer_request_rate > 0 && self.peer_request_burst == 0 {
            anyhow::bail!(
                "peer_request_burst is 0: no request could pass the rate guard; \
                 use at least 1, or peer_request_rate = 0 to turn the guard off"
            );
        }
        Ok(())
    }

    pub fn database_url(&self) -> String {
        if self.database.is_empty() {
            format!("sqlite://{}", self.state_dir.join("xcatd.sqlite").display())
        } else {
            self.database.clone()
        }
    }

    pub fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }
}

/// The host name up to the first dot.
pub fn short_hostname() -> String {
    let full = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    full.split('.').next().unwrap_or("localhost").to_string()
}

/// The full host name as the kernel knows it.
pub fn full_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use xcat_plugin::CaptureSettings as CaptureDefaults;

    fn load(text: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xcatd.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path, true)
    }

    #[test]
    fn without_a_capture_section_the_budgets_are_the_safe_defaults() {
        let c = load("").unwrap().capture;
        assert_eq!(c.max_wall_secs, 4 * 3600);
        assert_eq!(c.max_read_bytes, 256 << 30);
        assert_eq!(c.budget, xcat_image::budget::Budget::default());
        assert_eq!(c.limits.max_pax, xcat_image::tar::Limits::default().max_pax);
    }

    #[test]
    fn the_capture_section_sets_each_budget_and_keeps_the_rest() {
        let c = load(
            "[capture]\nmax_wall_secs = 600\nmax_read_bytes = 1000\n\
             [capture.budget]\nmax_entries = 5\n[capture.limits]\nmax_path = 100\n",
        )
        .unwrap()
        .capture;
        assert_eq!((c.max_wall_secs, c.max_read_bytes), (600, 1000));
        assert_eq!(c.budget.max_entries, 5);
        assert_eq!(c.budget.max_notes, 1000, "defaulted");
        assert_eq!(c.limits.max_path, 100);
        assert_eq!(c.limits.max_pax, 1 << 20, "defaulted");
    }

    #[test]
    fn the_documented_capture_keys_are_the_real_ones() {
        // config/xcatd.toml's [capture] sections with every key uncommented.
        let shipped = include_str!("../../../config/xcatd.toml");
        let capture = &shipped[shipped.find("[capture]").unwrap()..];
        let text: String = capture
            .lines()
            .map(|l| l.strip_prefix('#').unwrap_or(l))
            .filter(|l| !l.starts_with(' '))
            .map(|l| format!("{}\n", l.split(" #").next().unwrap()))
            .collect();
        let c = load(&text).unwrap().capture;
        assert_eq!(c.max_wall_secs, CaptureDefaults::default().max_wall_secs);
        assert_eq!(c.max_read_bytes, CaptureDefaults::default().max_read_bytes);
        assert_eq!(c.budget.max_logical_bytes, 16 << 40);
        assert_eq!(c.limits.max_sparse_segments, 1 << 20);
    }

    #[test]
    fn an_unknown_capture_key_is_refused_by_name() {
        for text in [
            "[capture]\nmax_wall_sec = 1\n",
            "[capture.budget]\nmax_entry = 1\n",
            "[capture.limits]\nmax_paths = 1\n",
        ] {
            let e = format!("{:#}", load(text).unwrap_err());
            assert!(e.contains("invalid configuration in "), "{e}");
            assert!(e.contains("unknown field"), "{e}");
            let key = text.lines().nth(1).unwrap().split(' ').next().unwrap();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn the_initrd_binaries_are_set_relative_to_the_file_and_checked_by_name() {
        let c = load("").unwrap().initrd;
        assert_eq!(c.busybox, PathBuf::from("/bin/busybox"));
        assert_eq!(c.netinit.file_name().unwrap(), "xcat-netinit");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xcatd.toml");
        std::fs::write(
            &path,
            "[initrd]\nbusybox = \"bin/busybox\"\nnetinit = \"/opt/x/xcat-netinit\"\n",
        )
        .unwrap();
        let c = Config::load(&path, true).unwrap().initrd;
        assert_eq!(c.busybox, dir.path().join("bin/busybox"));
        assert_eq!(c.netinit, PathBuf::from("/opt/x/xcat-netinit"));
        let e = format!(
            "{:#}",
            load("[initrd]\nbusybox_path = \"/x\"\n").unwrap_err()
        );
        assert!(
            e.contains("unknown field") && e.contains("busybox_path"),
            "{e}"
        );
        // The shipped file's keys, uncommented, are these.
        let shipped = include_str!("../../../config/xcatd.toml");
        let section = &shipped[shipped.find("[initrd]").unwrap()..];
        let keys: Vec<&str> = section
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with('['))
            .filter_map(|l| l.strip_prefix('#')?.split(" = ").next())
            .filter(|k| !k.starts_with(' ') && !k.is_empty())
            .collect();
        assert_eq!(keys, ["busybox", "netinit"]);
    }
}
