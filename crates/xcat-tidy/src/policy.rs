//! Which files each rule allows, as data: the rules' code names no crate.
//!
//! A path ending in `/` covers everything beneath it; any other path names
//! one file (or, for the layout rule, one workspace member). Paths are
//! relative to the workspace root, with `/` separators.

use crate::Rule;

/// The one crate that may write protocol XML.
pub const PROTO_CRATE: &str = "xcatd-proto/";

/// The one crate that may talk SQL through sqlx.
pub const DB_CRATE: &str = "crates/xcat-db/";

/// Where `unsafe` may appear: the syscall shims that need it, each with a
/// `SAFETY:` comment at the use.
pub const UNSAFE_ALLOWED: &[&str] = &[
    // rustix 0.38 makes building a Uid/Gid from a raw number unsafe.
    "crates/xcat-image/src/sys.rs",
    "crates/xcat-beneath/src/owner.rs",
    // the loop device's ioctls (LOOP_CTL_GET_FREE, LOOP_CONFIGURE), which
    // neither std nor rustix wrap.
    "crates/xcat-netinit/src/sys.rs",
    // getrlimit/setrlimit through libc for the load test's descriptor
    // budget; rustix::process (as the daemon's main.rs uses) would let
    // this entry go.
    "tests/e2e/load.rs",
];

/// Production code that may start local processes: the tool runner every
/// local program goes through (the packer's mksquashfs, the image jobs'
/// tools through xcat-jobkit's re-export), and the ssh transport (with its
/// test bed).
/// And the DHCP supervisor: dnsmasq is a long-lived child that is
/// restarted, signalled and stopped, not a run-to-completion tool.
pub const SPAWN_ALLOWED: &[&str] = &[
    "crates/xcat-image/src/tool.rs",
    "crates/xcat-remote/",
    "crates/xcatd/src/dhcp.rs",
];

/// The longest a production function may be, in lines from its `fn` line
/// to its closing brace: past this, it is several steps that want names.
pub const MAX_FN_LINES: usize = 100;

/// Workspace members that hold no production code: the end-to-end test
/// crate and the benchmarks.
pub const NOT_PRODUCTION_MEMBERS: &[&str] = &["tests/", "bench/"];

/// Cargo features that only test suites enable: items gated on them are
/// test code, like `#[cfg(test)]` items.
pub const TEST_FEATURES: &[&str] = &["test-support", "testbed"];

/// TEMPORARY: known offenders, each waiting for a port that is under way.
/// This list must be emptied: remove an entry in the commit that fixes it
/// (the check fails on an entry that no longer offends, so it cannot go
/// stale), and never add one to silence a new finding.
pub const TEMPORARY_EXCEPTIONS: &[(Rule, &str)] = &[];

/// Everything the checker allows; [`Policy::workspace`] is the real one,
/// tests build others.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub unsafe_allowed: &'static [&'static str],
    pub spawn_allowed: &'static [&'static str],
    pub temporary: &'static [(Rule, &'static str)],
}

impl Policy {
    /// The policy of this workspace.
    pub fn workspace() -> Policy {
        Policy {
            unsafe_allowed: UNSAFE_ALLOWED,
            spawn_allowed: SPAWN_ALLOWED,
            temporary: TEMPORARY_EXCEPTIONS,
        }
    }
}

/// Whether `path` is covered by the list entry `entry`.
pub fn covers(entry: &str, path: &str) -> bool {
    match entry.strip_suffix('/') {
        Some(dir) => path == dir || path.starts_with(entry),
        None => path == entry,
    }
}

/// Whether any entry of `list` covers `path`.
pub fn any_covers(list: &[&str], path: &str) -> bool {
    list.iter().any(|e| covers(e, path))
}
