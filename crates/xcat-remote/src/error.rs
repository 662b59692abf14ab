//! Why a remote command could not run, told apart from a command that ran and
//! failed (that is an exit status, not an error).

use std::path::PathBuf;
use std::time::Duration;

/// A failure to run a command on a node. Every message names the node and
/// says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// TCP connect failed, timed out, or the name did not resolve.
    #[error("{node} is unreachable at {addr}: {detail}; check that the node is up, that sshd runs on it and that {addr} is its address (hosts.ip)")]
    Unreachable {
        node: String,
        addr: String,
        detail: String,
    },
    /// The node presented a host key different from the recorded one.
    #[error("host key of {node} ({addr}) does not match the one recorded in {known_hosts}; if the node was reinstalled, remove the old key (ssh-keygen -R {addr} -f {known_hosts}) and record the new one, otherwise the node may be impersonated")]
    HostKeyMismatch {
        node: String,
        addr: String,
        known_hosts: PathBuf,
        detail: String,
    },
    /// No host key is recorded for the node and new keys are not accepted.
    #[error("host key of {node} ({addr}) is not known in {known_hosts}; record it (ssh-keyscan {addr} >> {known_hosts}, after checking the fingerprint) or set accept_new_host_keys = true in [ssh]")]
    HostKeyUnknown {
        node: String,
        addr: String,
        known_hosts: PathBuf,
        detail: String,
    },
    /// The node did not accept our key.
    #[error("{node} refused our key ({identity}) for user {user}: {detail}; add the public key to ~{user}/.ssh/authorized_keys on the node")]
    AuthRefused {
        node: String,
        user: String,
        identity: String,
        detail: String,
    },
    /// ssh failed before the command started, for another reason.
    #[error("ssh to {node} failed: {detail}")]
    Ssh { node: String, detail: String },
    /// The session broke while the command ran.
    #[error("the connection to {node} was lost while the command ran: {detail}; the command may have been partly executed")]
    ConnectionLost { node: String, detail: String },
    /// The command did not finish in time; it was stopped.
    #[error("{node} did not finish within {} s; the command was stopped", .after.as_secs_f64())]
    Timeout { node: String, after: Duration },
    /// The request was cancelled; the command was stopped.
    #[error("the command on {node} was cancelled")]
    Cancelled { node: String },
    /// The ssh program could not be started.
    #[error("cannot run {}: {source}; install openssh-client or set ssh_program in [ssh]", .program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading the command's output failed.
    #[error("reading the output of {node} failed: {source}")]
    Io {
        node: String,
        #[source]
        source: std::io::Error,
    },
}

impl RemoteError {
    /// The node the error is about (None for a local spawn failure).
    pub fn node(&self) -> Option<&str> {
        use RemoteError::*;
        match self {
            Unreachable { node, .. }
            | HostKeyMismatch { node, .. }
            | HostKeyUnknown { node, .. }
            | AuthRefused { node, .. }
            | Ssh { node, .. }
            | ConnectionLost { node, .. }
            | Timeout { node, .. }
            | Cancelled { node }
            | Io { node, .. } => Some(node),
            Spawn { .. } => None,
        }
    }
}

/// What is needed to word an error.
pub(crate) struct ErrorContext<'a> {
    pub node: &'a str,
    pub addr: &'a str,
    pub user: &'a str,
    pub identity: Option<&'a std::path::Path>,
    pub known_hosts: &'a std::path::Path,
}

/// The most telling line of ssh's own messages.
fn detail_line(text: &str, keys: &[&str]) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_matches(|c: char| c.is_whitespace() || c == '@'))
        .filter(|l| !l.is_empty())
        .collect();
    let pick = lines
        .iter()
        .find(|l| keys.iter().any(|k| l.contains(k)))
        .or_else(|| lines.last())
        .copied()
        .unwrap_or("ssh exited with status 255 and printed nothing");
    let pick = pick.strip_prefix("ssh: ").unwrap_or(pick);
    pick.trim_end_matches('.').to_string()
}

/// Classify ssh's exit 255 before the session started, from its stderr.
pub(crate) fn classify_connect_failure(cx: &ErrorContext<'_>, ssh_stderr: &str) -> RemoteError {
    let node = cx.node.to_string();
    let addr = cx.addr.to_string();
    let t = ssh_stderr;
    if t.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") || t.contains("POSSIBLE DNS SPOOFING") {
        return RemoteError::HostKeyMismatch {
            node,
            addr,
            known_hosts: cx.known_hosts.to_path_buf(),
            detail: detail_line(t, &["Offending", "Host key verification failed"]),
        };
    }
    if t.contains("Host key verification failed") || t.contains("host key is known") {
        return RemoteError::HostKeyUnknown {
            node,
            addr,
            known_hosts: cx.known_hosts.to_path_buf(),
            detail: detail_line(t, &["host key is known", "Host key verification failed"]),
        };
    }
    if t.contains("Permission denied") || t.contains("Too many authentication failures") {
        return RemoteError::AuthRefused {
            node,
            user: cx.user.to_string(),
            identity: cx
                .identity
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "ssh's default keys".to_string()),
            detail: detail_line(
                t,
                &["Permission denied", "Too many authentication failures"],
            ),
        };
    }
    const UNREACHABLE: &[&str] = &[
        "Connection refused",
        "No route to host",
        "timed out",
        "Network is unreachable",
        "Could not resolve hostname",
        "Name or service not known",
        "Temporary failure in name resolution",
        "Connection reset",
        "Connection closed by",
        "kex_exchange_identification",
        "Host is down",
    ];
    if UNREACHABLE.iter().any(|k| t.contains(k)) {
        return RemoteError::Unreachable {
            node,
            addr,
            detail: detail_line(t, UNREACHABLE),
        };
    }
    RemoteError::Ssh {
        node,
        detail: detail_line(t, &[]),
    }
}

/// Messages ssh prints when an established session breaks.
pub(crate) fn connection_lost_detail(stderr_tail: &str) -> Option<String> {
    const LOST: &[&str] = &[
        "closed by remote host",
        "Broken pipe",
        "Connection reset",
        "Timeout, server",
        "client_loop:",
        "Connection to ",
    ];
    stderr_tail
        .lines()
        .rev()
        .find(|l| LOST.iter().any(|k| l.contains(k)))
        .map(|l| l.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cx() -> ErrorContext<'static> {
        ErrorContext {
            node: "node1",
            addr: "10.0.0.1",
            user: "root",
            identity: Some(Path::new("/etc/xcatd/id_ed25519")),
            known_hosts: Path::new("/etc/xcatd/ssh_known_hosts"),
        }
    }

    #[test]
    fn classifies_openssh_messages() {
        let e = classify_connect_failure(
            &cx(),
            "ssh: connect to host 10.0.0.1 port 22: Connection refused\r\n",
        );
        assert!(matches!(e, RemoteError::Unreachable { .. }), "{e:?}");
        assert!(e.to_string().starts_with("node1 is unreachable at 10.0.0.1: connect to host 10.0.0.1 port 22: Connection refused;"), "{e}");

        let e = classify_connect_failure(
            &cx(),
            "No ED25519 host key is known for 10.0.0.1 and you have requested strict checking.\r\nHost key verification failed.\r\n",
        );
        assert!(matches!(e, RemoteError::HostKeyUnknown { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("host key of node1 (10.0.0.1) is not known"),
            "{e}"
        );

        let e = classify_connect_failure(
            &cx(),
            "@@@@@@@@@@@\r\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n@@@@@@@\r\nOffending ED25519 key in /k:1\r\nHost key verification failed.\r\n",
        );
        assert!(matches!(e, RemoteError::HostKeyMismatch { .. }), "{e:?}");
        assert!(e.to_string().contains("does not match"), "{e}");

        let e =
            classify_connect_failure(&cx(), "root@10.0.0.1: Permission denied (publickey).\r\n");
        assert!(matches!(e, RemoteError::AuthRefused { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("node1 refused our key (/etc/xcatd/id_ed25519) for user root"),
            "{e}"
        );

        let e = classify_connect_failure(&cx(), "something new\n");
        assert_eq!(e.to_string(), "ssh to node1 failed: something new");
        let e = classify_connect_failure(&cx(), "");
        assert!(e.to_string().contains("printed nothing"));
    }

    #[test]
    fn finds_lost_connections() {
        assert_eq!(
            connection_lost_detail("data\nConnection to 10.0.0.1 closed by remote host.\r\n")
                .as_deref(),
            Some("Connection to 10.0.0.1 closed by remote host.")
        );
        assert_eq!(connection_lost_detail("just a failing command\n"), None);
    }
}
