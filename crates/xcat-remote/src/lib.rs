//! Remote execution over OpenSSH. STUB: configuration type fixed.
#![forbid(unsafe_code)]
use std::path::PathBuf;
use std::time::Duration;

/// `[ssh]` section of the daemon configuration.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SshConfig {
    /// Private key used to log in to nodes (None: ssh's defaults).
    pub identity: Option<PathBuf>,
    /// Known-hosts file owned by the daemon.
    pub known_hosts: PathBuf,
    /// Remote user.
    pub user: String,
    /// Extra `-o` options passed to ssh, e.g. `["Ciphers=aes128-gcm@openssh.com"]`.
    pub options: Vec<String>,
    /// Most ssh processes at once for one request.
    pub fanout: usize,
    /// Seconds allowed for the TCP connect + ssh handshake.
    pub connect_timeout: u64,
    /// Accept unknown host keys and record them (explicit opt-in; default refuses).
    pub accept_new_host_keys: bool,
    /// The ssh binary.
    pub ssh_program: PathBuf,
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            identity: None,
            known_hosts: PathBuf::from("/etc/xcatd/ssh_known_hosts"),
            user: "root".into(),
            options: Vec::new(),
            fanout: 64,
            connect_timeout: 10,
            accept_new_host_keys: false,
            ssh_program: PathBuf::from("ssh"),
        }
    }
}

impl SshConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout)
    }
}
