//! The configuration on disk: every file written under a temporary name
//! and renamed, so dnsmasq (which re-reads the per-node directories when a
//! file appears) never reads half a file.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use xcat_plugin::boot::DhcpPaths;

/// A file or directory operation that failed, with its path.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
pub struct FileError {
    what: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

fn err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FileError + 'a {
    move |source| FileError {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Write `data` to `path` through a temporary dot-name in the same
/// directory, mode 0644: dnsmasq reads these after dropping root, as its own
/// user.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), FileError> {
    xcat_jobkit::replace::write_replacing(path, data, 0o644, "makedhcp")
        .map_err(err("cannot write", path))
}

/// Create the configuration directories (0755: dnsmasq's user reads them).
pub fn make_dirs(paths: &DhcpPaths) -> Result<(), FileError> {
    for d in [&paths.dir, &paths.hosts_dir, &paths.opts_dir] {
        std::fs::create_dir_all(d).map_err(err("cannot create", d))?;
    }
    Ok(())
}

/// Copy an iPXE binary into the TFTP root (`<tftpdir>/xcat/<name>`).
pub fn install_ipxe(src: &Path, tftp_dir: &Path, rel: &str) -> Result<PathBuf, FileError> {
    let dst = tftp_dir.join(rel);
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(err("cannot create", parent))?;
    }
    let data = std::fs::read(src).map_err(err("cannot read the iPXE binary", src))?;
    write_atomic(&dst, &data)?;
    Ok(dst)
}

/// Whether `path` differs from `data` (absent counts as different).
pub fn differs(path: &Path, data: &[u8]) -> bool {
    std::fs::read(path).map(|old| old != data).unwrap_or(true)
}

/// Write a node's two files.
pub fn write_node(paths: &DhcpPaths, node: &str, hosts: &str, opts: &str) -> Result<(), FileError> {
    // The options first: a host line that appears before its boot file
    // would let a client booting right then get no boot file.
    write_atomic(&paths.opts_dir.join(node), opts.as_bytes())?;
    write_atomic(&paths.hosts_dir.join(node), hosts.as_bytes())
}

/// Remove a node's files; true when it had any.
pub fn remove_node(paths: &DhcpPaths, node: &str) -> Result<bool, FileError> {
    let mut had = false;
    for d in [&paths.hosts_dir, &paths.opts_dir] {
        let p = d.join(node);
        match std::fs::remove_file(&p) {
            Ok(()) => had = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err("cannot remove", &p)(e)),
        }
    }
    Ok(had)
}

/// Every node that has a hosts file.
pub fn listed_nodes(paths: &DhcpPaths) -> Result<Vec<String>, FileError> {
    let rd = match std::fs::read_dir(&paths.hosts_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err("cannot read", &paths.hosts_dir)(e)),
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    Ok(v)
}

/// A node's hosts file, if any.
pub fn read_hosts(paths: &DhcpPaths, node: &str) -> Option<String> {
    std::fs::read_to_string(paths.hosts_dir.join(node)).ok()
}

/// The first directory from `path` up that others cannot search: dnsmasq
/// drops root and could not read beneath it.
pub fn unsearchable_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_dir() && m.mode() & 0o001 == 0)
                .unwrap_or(false)
        })
        .map(Path::to_path_buf)
}
