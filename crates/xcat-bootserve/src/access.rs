//! The access log: one line per request, to the configured file (opened
//! for append at start, each line one `write`) or, without one, to the
//! daemon's log under the `access` target.
//!
//! A line: `PEER METHOD PATH STATUS BYTES SECONDS`. The path is the
//! request target without its query, as sent (not decoded), with anything
//! outside printable ASCII written `\xNN` and cut at 512 bytes, so a
//! hostile peer cannot forge or flood lines.

use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// Longest path written.
const MAX_LOGGED_PATH: usize = 512;

/// Where request lines go.
#[derive(Debug)]
pub enum AccessLog {
    File(File),
    Tracing,
}

/// One request, as logged.
#[derive(Debug)]
pub struct Entry<'a> {
    pub peer: IpAddr,
    pub method: &'a str,
    pub target: &'a [u8],
    pub status: u16,
    pub bytes: u64,
    pub duration: Duration,
}

impl AccessLog {
    /// The file `path` (created 0640, appended), or the daemon's log.
    pub fn open(path: Option<&Path>) -> std::io::Result<AccessLog> {
        use std::os::unix::fs::OpenOptionsExt;
        match path {
            None => Ok(AccessLog::Tracing),
            Some(p) => Ok(AccessLog::File(
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o640)
                    .open(p)?,
            )),
        }
    }

    pub fn write(&self, e: &Entry<'_>) {
        let method = clean(e.method.as_bytes(), 16);
        let path = match e.target.iter().position(|&b| b == b'?') {
            Some(q) => &e.target[..q],
            None => e.target,
        };
        let path = if path.is_empty() {
            "-".to_string()
        } else {
            clean(path, MAX_LOGGED_PATH)
        };
        let secs = e.duration.as_secs_f64();
        match self {
            AccessLog::File(f) => {
                let line = format!(
                    "{} {method} {path} {} {} {secs:.3}\n",
                    e.peer, e.status, e.bytes
                );
                // One write per line on an O_APPEND file: lines never interleave.
                if let Err(err) = (&*f).write_all(line.as_bytes()) {
                    tracing::warn!(error = %err, "boot service: cannot write the access log");
                }
            }
            AccessLog::Tracing => tracing::info!(target: "access", peer = %e.peer, method, path,
                status = e.status, bytes = e.bytes, seconds = format!("{secs:.3}"), "boot service request"),
        }
    }
}

/// Printable ASCII kept, the rest escaped, at most `max` bytes of input.
fn clean(b: &[u8], max: usize) -> String {
    let mut s = String::with_capacity(b.len().min(max));
    for &c in b.iter().take(max) {
        if (0x21..0x7f).contains(&c) && c != b'\\' {
            s.push(c as char);
        } else {
            s.push_str(&format!("\\x{c:02x}"));
        }
    }
    if b.len() > max {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn hostile_bytes_are_escaped_and_long_paths_cut() {
        assert_eq!(
            super::clean(b"/a b\n\\\xff", 100),
            "/a\\x20b\\x0a\\x5c\\xff"
        );
        assert_eq!(super::clean(&[b'a'; 600], 512).len(), 515);
    }
}
