//! Running commands on nodes over the system OpenSSH client.
//!
//! The daemon never speaks the ssh protocol itself: it runs `ssh` (from
//! [`SshConfig::ssh_program`]) with options that make it non-interactive and
//! strict about host keys, and reads the command's output from ssh's pipes.
//!
//! * [`Remote::spawn`] starts one command and gives a [`RemoteProcess`]: raw
//!   stdout with back-pressure (a reader that does not keep up slows the node
//!   down), stderr collected in the background (last 64 KiB), and
//!   [`RemoteProcess::wait`] which tells an ssh failure (unreachable, host key,
//!   refused key; see [`RemoteError`]) apart from the command's own exit code.
//! * [`Remote::run`] runs a command to completion with a timeout and returns
//!   its bounded output.
//! * [`Remote::run_many`] and [`Remote::stream_many`] fan a command out to many
//!   nodes with at most `fanout` ssh processes at once, yielding results (or
//!   output lines) as they arrive.
//!
//! Cancellation: a [`Remote`] made with [`Remote::with_cancel`] kills every
//! ssh process it started when the token fires; dropping a [`RemoteProcess`]
//! kills its ssh too. Killing ssh makes sshd close the session, and a small
//! wrapper around every remote command (see `quote.rs`) then kills the
//! command's process group on the node, so nothing is left running there.
//!
//! The caller resolves the address (e.g. `hosts.ip`, falling back to the node
//! name); node names are used in messages, addresses on the command line.
#![forbid(unsafe_code)]

mod error;
mod many;
mod process;
mod quote;
#[cfg(feature = "testbed")]
pub mod testbed;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use error::RemoteError;
pub use many::{NodeEvent, Target};
pub use process::{LineSplitter, RemoteProcess, RemoteStdout, MAX_LINE, STDERR_TAIL};
pub use quote::{shell_join, shell_quote};

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

/// Most bytes of stdout [`Remote::run`] keeps by default; the rest is read
/// and dropped (so the node is not blocked) and `stdout_truncated` is set.
pub const DEFAULT_OUTPUT_LIMIT: usize = 16 * 1024 * 1024;

/// The result of a command that ran to completion.
#[derive(Debug, Clone)]
pub struct Output {
    pub node: String,
    /// Exit status of ssh, i.e. of the remote command.
    pub status: ExitStatus,
    /// Standard output, at most the output limit.
    pub stdout: Vec<u8>,
    /// More stdout was produced than kept.
    pub stdout_truncated: bool,
    /// Last [`STDERR_TAIL`] bytes of standard error.
    pub stderr: String,
}

impl Output {
    /// The remote exit code (-1 if none, which `wait` never returns as Ok).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
    pub fn success(&self) -> bool {
        self.status.success()
    }
    /// Stdout decoded lossily.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs commands on nodes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Remote {
    config: Arc<SshConfig>,
    cancel: CancellationToken,
    output_limit: usize,
}

/// The options that keep a connection from exposing anything of the server to the
/// node; placed before the configurable options, so ssh keeps these values.
pub const NO_FORWARDING: [&str; 4] = [
    "ForwardAgent=no",
    "ClearAllForwardings=yes",
    "ForwardX11=no",
    "PermitLocalCommand=no",
];

impl Remote {
    pub fn new(config: SshConfig) -> Remote {
        Remote {
            config: Arc::new(config),
            cancel: CancellationToken::new(),
            output_limit: DEFAULT_OUTPUT_LIMIT,
        }
    }

    /// Every process started from the returned `Remote` is killed when
    /// `cancel` fires (pass a request's token).
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Remote {
        self.cancel = cancel;
        self
    }

    /// Bytes of stdout [`Remote::run`] keeps.
    pub fn with_output_limit(mut self, limit: usize) -> Remote {
        self.output_limit = limit;
        self
    }

    pub fn config(&self) -> &SshConfig {
        &self.config
    }

    /// The arguments given to ssh (after the program name) to run the
    /// already-wrapped `remote_command` at `addr`.
    ///
    /// ssh takes the first value it sees for an option, so the options that
    /// keep the daemon safe and non-interactive come first and cannot be
    /// overridden by [`SshConfig::options`]; keep-alive defaults come last
    /// so the extra options can change them.
    pub fn ssh_args(&self, addr: &str, remote_command: &str) -> Vec<OsString> {
        let c = &self.config;
        let mut a: Vec<OsString> = Vec::new();
        let mut o = |s: String| {
            a.push("-o".into());
            a.push(s.into());
        };
        o("BatchMode=yes".into());
        o("LogLevel=ERROR".into());
        o(format!("ConnectTimeout={}", c.connect_timeout.max(1)));
        o(format!("UserKnownHostsFile={}", c.known_hosts.display()));
        o("GlobalKnownHostsFile=/dev/null".into());
        o(format!(
            "StrictHostKeyChecking={}",
            if c.accept_new_host_keys {
                "accept-new"
            } else {
                "yes"
            }
        ));
        o("CheckHostIP=no".into());
        // A node is not trusted: nothing of the server (root's agent, X display,
        // ports, local commands from root's ssh config) may be handed to it.
        for safe in NO_FORWARDING {
            o(safe.to_string());
        }
        if c.identity.is_some() {
            o("IdentitiesOnly=yes".into());
        }
        for extra in &c.options {
            o(extra.clone());
        }
        o("ServerAliveInterval=15".into());
        o("ServerAliveCountMax=4".into());
        if let Some(id) = &c.identity {
            a.push("-i".into());
            a.push(id.into());
        }
        a.push("-l".into());
        a.push(c.user.clone().into());
        // -a/-x as flags too: they win over any configuration file.
        a.extend(["-a".into(), "-x".into(), "-T".into()]);
        a.push("--".into());
        a.push(addr.into());
        a.push(remote_command.into());
        a
    }

    /// Start `command` (shell text, see [`shell_quote`]) on `node` at `addr`.
    ///
    /// Its stdin is empty. Must be called inside a tokio runtime.
    pub fn spawn(
        &self,
        node: &str,
        addr: &str,
        command: &str,
    ) -> Result<RemoteProcess, RemoteError> {
        self.spawn_inner(node, addr, command, None)
    }

    /// Like [`Remote::spawn`], also sending each line of the command's stderr
    /// to `stderr_lines` as it arrives. The receiver must be drained: a full
    /// channel stalls the command's stderr (back-pressure, not loss).
    pub fn spawn_with_stderr_lines(
        &self,
        node: &str,
        addr: &str,
        command: &str,
        stderr_lines: mpsc::Sender<String>,
    ) -> Result<RemoteProcess, RemoteError> {
        self.spawn_inner(node, addr, command, Some(stderr_lines))
    }

    fn spawn_inner(
        &self,
        node: &str,
        addr: &str,
        command: &str,
        stderr_lines: Option<mpsc::Sender<String>>,
    ) -> Result<RemoteProcess, RemoteError> {
        if self.cancel.is_cancelled() {
            return Err(RemoteError::Cancelled {
                node: node.to_string(),
            });
        }
        let args = self.ssh_args(addr, &quote::wrap_command(command));
        tracing::debug!(node, addr, command, "ssh");
        let child = tokio::process::Command::new(&self.config.ssh_program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| RemoteError::Spawn {
                program: self.config.ssh_program.clone(),
                source,
            })?;
        Ok(RemoteProcess::start(
            node,
            addr,
            self.config.clone(),
            child,
            self.cancel.child_token(),
            stderr_lines,
        ))
    }

    /// Run `command` to completion. `timeout` covers the whole run (connect
    /// included); on expiry the command is stopped and `Timeout` returned.
    pub async fn run(
        &self,
        node: &str,
        addr: &str,
        command: &str,
        timeout: Option<Duration>,
    ) -> Result<Output, RemoteError> {
        let mut p = self.spawn(node, addr, command)?;
        let kill = p.kill_token();
        let limit = self.output_limit;
        let node_s = node.to_string();
        let work = async move {
            let mut stdout = Vec::new();
            let mut truncated = false;
            if let Some(mut out) = p.take_stdout() {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match out.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(source) => {
                            return Err(RemoteError::Io {
                                node: node_s.clone(),
                                source,
                            })
                        }
                    };
                    let room = limit.saturating_sub(stdout.len());
                    if n > room {
                        truncated = true;
                    }
                    stdout.extend_from_slice(&buf[..n.min(room)]);
                }
            }
            let (status, stderr) = p.wait_with_stderr().await?;
            Ok(Output {
                node: node_s,
                status,
                stdout,
                stdout_truncated: truncated,
                stderr,
            })
        };
        match timeout {
            None => work.await,
            Some(t) => match tokio::time::timeout(t, work).await {
                Ok(r) => r,
                Err(_) => {
                    kill.cancel();
                    Err(RemoteError::Timeout {
                        node: node.to_string(),
                        after: t,
                    })
                }
            },
        }
    }

    /// The configured fan-out, or `fanout` when given; at least 1.
    pub fn effective_fanout(&self, fanout: Option<usize>) -> usize {
        fanout.unwrap_or(self.config.fanout).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_arguments_are_strict_and_ordered() {
        let cfg = SshConfig {
            identity: Some("/k/id".into()),
            known_hosts: "/k/known".into(),
            user: "admin".into(),
            options: vec![
                "Ciphers=aes128-gcm@openssh.com".into(),
                "StrictHostKeyChecking=no".into(),
            ],
            connect_timeout: 3,
            ..SshConfig::default()
        };
        let r = Remote::new(cfg);
        let a: Vec<String> = r
            .ssh_args("10.0.0.1", "cmd")
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let joined = a.join(" ");
        assert!(joined.starts_with("-o BatchMode=yes -o LogLevel=ERROR -o ConnectTimeout=3 -o UserKnownHostsFile=/k/known -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes"), "{joined}");
        // The safe value precedes the extra option, so ssh keeps the safe one.
        let strict = a
            .iter()
            .position(|s| s == "StrictHostKeyChecking=yes")
            .unwrap();
        let extra = a
            .iter()
            .position(|s| s == "StrictHostKeyChecking=no")
            .unwrap();
        assert!(strict < extra);
        assert!(
            joined.ends_with("-i /k/id -l admin -a -x -T -- 10.0.0.1 cmd"),
            "{joined}"
        );

        let r = Remote::new(SshConfig {
            accept_new_host_keys: true,
            ..SshConfig::default()
        });
        let joined = r
            .ssh_args("h", "c")
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(joined.contains("StrictHostKeyChecking=accept-new"));
        assert!(!joined.contains(" -i "));
    }

    #[test]
    fn nothing_of_the_server_is_forwarded_to_the_node() {
        let r = Remote::new(SshConfig {
            options: vec!["ForwardAgent=yes".into(), "ForwardX11=yes".into()],
            ..SshConfig::default()
        });
        let a: Vec<String> = r
            .ssh_args("h", "c")
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let at = |s: &str| a.iter().position(|x| x == s);
        for safe in NO_FORWARDING {
            let i = at(safe).unwrap_or_else(|| panic!("{safe} missing: {a:?}"));
            assert_eq!(a[i - 1], "-o");
        }
        // ssh keeps the first value: the configured ones come too late.
        assert!(at("ForwardAgent=no") < at("ForwardAgent=yes"));
        assert!(at("ForwardX11=no") < at("ForwardX11=yes"));
        let dashdash = at("--").unwrap();
        assert!(at("-a").unwrap() < dashdash && at("-x").unwrap() < dashdash);
    }

    #[tokio::test]
    async fn missing_ssh_program_is_a_spawn_error() {
        let r = Remote::new(SshConfig {
            ssh_program: "/nonexistent/ssh".into(),
            ..SshConfig::default()
        });
        let e = r.run("n1", "127.0.0.1", "true", None).await.unwrap_err();
        assert!(matches!(e, RemoteError::Spawn { .. }), "{e:?}");
        assert!(e.to_string().contains("set ssh_program"), "{e}");
    }
}
