//! NFS mounts by the kernel's own client: `mount(2)` with the text options
//! `mount.nfs` would pass, so the initrd needs no NFS tools. A share is
//! `<server>:<dir>`, the server an IPv4 address (nodeset resolves names: the
//! initrd has no resolver).

use crate::error::Say;
use crate::mount::{self, Mounted};
pub use crate::retry::Retry;
use rustix::mount::MountFlags;
use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::time::Duration;

/// One NFS export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub server: Ipv4Addr,
    /// Absolute, without a trailing `/`.
    pub dir: String,
}

/// A share that cannot be mounted as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    #[error("{0:?} is not <server address>:<absolute directory>")]
    Malformed(String),
}

impl Share {
    /// `10.0.0.1:/exports/state`.
    pub fn parse(s: &str) -> Result<Share, ShareError> {
        let bad = || ShareError::Malformed(s.to_string());
        let (server, dir) = s.split_once(':').ok_or_else(bad)?;
        let server: Ipv4Addr = server.parse().map_err(|_| bad())?;
        if !dir.starts_with('/') || dir.contains(['\0', ',']) {
            return Err(bad());
        }
        let dir = match dir.trim_end_matches('/') {
            "" => "/",
            d => d,
        };
        Ok(Share {
            server,
            dir: dir.to_string(),
        })
    }

    /// `root=nfs:`'s value: `<server>:<dir>[:<options>]`.
    pub fn parse_root(s: &str) -> Result<(Share, String), ShareError> {
        let (server, rest) = s
            .split_once(':')
            .ok_or_else(|| ShareError::Malformed(s.to_string()))?;
        let (dir, opts) = rest.split_once(':').unwrap_or((rest, ""));
        Ok((Share::parse(&format!("{server}:{dir}"))?, opts.to_string()))
    }

    /// The share of a directory beneath this one.
    pub fn join(&self, name: &str) -> Share {
        Share {
            server: self.server,
            dir: format!("{}/{name}", self.dir.trim_end_matches('/')),
        }
    }
}

impl std::fmt::Display for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.server, self.dir)
    }
}

/// The version asked for when the options name none: NFSv4.1 needs no
/// portmapper, no mountd and no callback channel into the node.
const DEFAULT_VERSION: &str = "vers=4.1";

/// The option text for the kernel: the admin's options (`ro`/`rw` are flags
/// here, not text), a version unless one is named, `addr=` (the kernel does
/// not parse the source's host part) and, for NFSv4.0, `clientaddr=`.
pub fn options(share: &Share, admin: &str, local: Option<Ipv4Addr>) -> String {
    let mut opts: Vec<String> = admin
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty() && *o != "ro" && *o != "rw")
        .map(str::to_string)
        .collect();
    let named = |opts: &[String], key: &str| opts.iter().any(|o| o.split('=').next() == Some(key));
    if !named(&opts, "vers") && !named(&opts, "nfsvers") {
        opts.push(DEFAULT_VERSION.into());
    }
    if !named(&opts, "addr") {
        opts.push(format!("addr={}", share.server));
    }
    let v40 = opts.iter().any(|o| {
        matches!(
            o.as_str(),
            "vers=4" | "vers=4.0" | "nfsvers=4" | "nfsvers=4.0"
        )
    });
    if let (true, false, Some(ip)) = (v40, named(&opts, "clientaddr"), local) {
        opts.push(format!("clientaddr={ip}"));
    }
    opts.join(",")
}

/// This node's address on the way to `server` (no packet is sent).
pub fn local_address(server: Ipv4Addr) -> Option<Ipv4Addr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect((server, 2049)).ok()?;
    match s.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(a) => Some(a),
        std::net::IpAddr::V6(_) => None,
    }
}

/// Mounts `share` at `at` (created if missing) once.
pub fn mount(share: &Share, at: &Path, admin_opts: &str, read_only: bool) -> io::Result<Mounted> {
    std::fs::create_dir_all(at)?;
    let data = options(share, admin_opts, local_address(share.server));
    // "nfs4" for every NFSv4 minor version, as mount.nfs asks the kernel
    let v3 = data
        .split(',')
        .any(|o| matches!(o, "vers=3" | "nfsvers=3" | "vers=2" | "nfsvers=2"));
    let fstype = if v3 { "nfs" } else { "nfs4" };
    let flags = if read_only {
        MountFlags::RDONLY
    } else {
        MountFlags::empty()
    };
    mount::mount(share.to_string(), at, fstype, flags, &data)
}

/// How often and how long a mount is tried before the caller gives up.
pub fn default_retry() -> Retry {
    Retry {
        tries: 6,
        first_wait: Duration::from_secs(2),
        max_wait: Duration::from_secs(30),
    }
}

/// [`mount`], tried as `retry` says, each failure a line naming the share,
/// the options and the error.
pub fn mount_retrying(
    share: &Share,
    at: &Path,
    admin_opts: &str,
    read_only: bool,
    retry: Retry,
    say: &Say,
) -> io::Result<Mounted> {
    retry.run(
        || mount(share, at, admin_opts, read_only),
        |attempt, e, wait| {
            say(&format!(
                "mounting NFS {share} on {} (options {:?}): {e}; try {attempt} of {}, again in {}s; \
                 check the NFS server, its export and the options (statelite.mntopts, osimage.nfsrootopts)",
                at.display(),
                options(share, admin_opts, None),
                retry.tries,
                wait.as_secs()
            ))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares() {
        let s = Share::parse("10.99.60.1:/state/").unwrap();
        assert_eq!(s.to_string(), "10.99.60.1:/state");
        assert_eq!(s.join("n1").to_string(), "10.99.60.1:/state/n1");
        for bad in ["/state", "mn:/state", "10.99.60.1:state", "10.99.60.1:/a,b"] {
            assert!(Share::parse(bad).is_err(), "{bad}");
        }
        let (s, o) = Share::parse_root("10.99.60.1:/i/rootimg:ro,port=2050").unwrap();
        assert_eq!((s.dir.as_str(), o.as_str()), ("/i/rootimg", "ro,port=2050"));
        let (_, o) = Share::parse_root("10.99.60.1:/i/rootimg").unwrap();
        assert_eq!(o, "");
    }

    #[test]
    fn kernel_options() {
        let s = Share::parse("10.99.60.1:/state").unwrap();
        let me = Some(Ipv4Addr::new(10, 99, 60, 20));
        assert_eq!(options(&s, "", me), "vers=4.1,addr=10.99.60.1");
        assert_eq!(
            options(&s, "ro,port=2050,nfsvers=4.2", me),
            "port=2050,nfsvers=4.2,addr=10.99.60.1"
        );
        assert_eq!(
            options(&s, "vers=4.0", me),
            "vers=4.0,addr=10.99.60.1,clientaddr=10.99.60.20"
        );
        assert_eq!(
            options(&s, "vers=3,nolock,addr=10.0.0.9", me),
            "vers=3,nolock,addr=10.0.0.9"
        );
    }
}
