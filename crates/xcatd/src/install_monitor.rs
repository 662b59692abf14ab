//! xCAT's install monitor (`site.xcatiport`, 3002): booting nodes report
//! their status over plain TCP, and it lands in `nodelist.status`.
//!
//! The exchange is xCAT's: the server says `ready`, the node sends one line
//! `installstatus <status>`, the server answers `done`. The node is whoever
//! `hosts.ip` says owns the peer address (nothing the peer claims names it),
//! so a peer can only ever set the status of its own node, and only to one
//! of the words below. Connections are few, short and bounded: a line of
//! at most [`MAX_LINE`] bytes within [`TIMEOUT`], [`MAX_CONNECTIONS`] at once.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use xcat_db::Db;

/// The `[status]` section: where the monitor listens (off when unset).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusSettings {
    /// e.g. `"10.99.60.1:3002"`; none = no install monitor.
    pub listen: Option<SocketAddr>,
}

/// The statuses a node may report about itself (xCAT's node status words
/// a booting node sends).
const STATUSES: &[&str] = &[
    "installing",
    "installed",
    "netbooting",
    "booting",
    "booted",
    "configuring",
    "failed",
];
const MAX_LINE: usize = 256;
const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 256;

/// Serve the monitor on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, db: Db, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        // Over the bound, the connection is closed at once: the node's
        // report is retried by the node, and nothing waits in memory.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let db = db.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(TIMEOUT, exchange(stream, peer, &db)).await {
                Ok(Ok(Report { node, status })) => {
                    info!(%peer, node, status, "install monitor: node status recorded")
                }
                Ok(Err(e)) => warn!(%peer, "install monitor: {e}"),
                Err(_) => warn!(%peer, "install monitor: no status line within {TIMEOUT:?}"),
            }
        });
    }
}

struct Report {
    node: String,
    status: String,
}

/// Why one report was not recorded.
#[derive(Debug, thiserror::Error)]
enum MonitorError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not an installstatus line (or longer than {MAX_LINE} bytes)")]
    Malformed,
    #[error("status {0:?} is not one a node may report")]
    UnknownStatus(String),
    #[error("no node has hosts.ip {0}")]
    UnknownPeer(IpAddr),
    #[error("hosts.ip {ip} belongs to several nodes ({nodes}); not recorded")]
    AmbiguousPeer { ip: IpAddr, nodes: String },
    #[error("{0}")]
    Db(#[from] xcat_db::DbError),
}

async fn exchange(stream: TcpStream, peer: SocketAddr, db: &Db) -> Result<Report, MonitorError> {
    let (reader, mut writer) = stream.into_split();
    writer.write_all(b"ready\n").await?;
    let mut line = Vec::new();
    let mut limited = BufReader::new(tokio::io::AsyncReadExt::take(reader, MAX_LINE as u64 + 1));
    limited.read_until(b'\n', &mut line).await?;
    let status = parse(&line)?;
    let ip = canonical(peer.ip());
    let node = node_of(db, ip).await?;
    db.upsert(
        "nodelist",
        &[("node", &node)],
        &[("status", status), ("statustime", &status_time())],
    )
    .await?;
    writer.write_all(b"done\n").await?;
    Ok(Report {
        node,
        status: status.to_string(),
    })
}

/// The status word of `installstatus <word>` (xCAT's line, `\n` or `\r\n`).
fn parse(line: &[u8]) -> Result<&'static str, MonitorError> {
    if line.len() > MAX_LINE || !line.ends_with(b"\n") {
        return Err(MonitorError::Malformed);
    }
    let text = std::str::from_utf8(line).map_err(|_| MonitorError::Malformed)?;
    let mut words = text.split_whitespace();
    let (Some("installstatus"), Some(word), None) = (words.next(), words.next(), words.next())
    else {
        return Err(MonitorError::Malformed);
    };
    STATUSES
        .iter()
        .find(|s| **s == word)
        .copied()
        .ok_or_else(|| MonitorError::UnknownStatus(word.chars().take(32).collect()))
}

/// An IPv4 peer on a dual-stack socket arrives as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

async fn node_of(db: &Db, ip: IpAddr) -> Result<String, MonitorError> {
    let mut nodes = db.keys_where("hosts", "ip", &ip.to_string()).await?;
    match nodes.len() {
        0 => Err(MonitorError::UnknownPeer(ip)),
        1 => Ok(nodes.remove(0)),
        _ => Err(MonitorError::AmbiguousPeer {
            ip,
            nodes: nodes.join(","),
        }),
    }
}

/// `nodelist.statustime` as xCAT writes it, `MM-DD-YYYY HH:MM:SS` (in
/// UTC here: the daemon carries no time zone database).
fn status_time() -> String {
    let c = xcat_jobkit::civil(xcat_jobkit::now_unix());
    format!(
        "{:02}-{:02}-{:04} {:02}:{:02}:{:02}",
        c.month, c.day, c.year, c.hour, c.minute, c.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(parse(b"installstatus netbooting\n").unwrap(), "netbooting");
        assert_eq!(parse(b"installstatus booted\r\n").unwrap(), "booted");
        assert!(matches!(
            parse(b"installstatus root\n"),
            Err(MonitorError::UnknownStatus(_))
        ));
        for bad in [
            &b"installstatus booted"[..],
            b"installstatus\n",
            b"installstatus booted extra\n",
            b"status booted\n",
            b"installstatus \xff\n",
        ] {
            assert!(
                matches!(parse(bad), Err(MonitorError::Malformed)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let ip: IpAddr = "::ffff:10.99.60.40".parse().unwrap();
        assert_eq!(canonical(ip).to_string(), "10.99.60.40");
    }

    #[test]
    fn status_time_is_xcats_format() {
        let t = status_time();
        let b = t.as_bytes();
        assert_eq!(t.len(), "12-01-2026 10:00:00".len(), "{t}");
        assert_eq!((b[2], b[5], b[10], b[13]), (b'-', b'-', b' ', b':'), "{t}");
    }
}
