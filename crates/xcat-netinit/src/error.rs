//! The one kind of failure `boot` and `nic` end with: a console line and an
//! exit code the initrd's `/init` acts on.

use std::fmt;

/// What `/init` does next, by exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 1: anything else; `/init` retries with back-off.
    Retry,
    /// 10: the image is refused (checksum, size, corrupt or hostile archive);
    /// `/init` waits and tries again (the server may be repacking).
    Refused,
    /// 11: the node has too little RAM for the image; rescue shell.
    NoRam,
    /// 12: the kernel command line is wrong; rescue shell.
    Cmdline,
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Retry => 1,
            Exit::Refused => 10,
            Exit::NoRam => 11,
            Exit::Cmdline => 12,
        }
    }
}

/// One console line: `<what>: <why>; <what to do>` (the binary prefixes
/// `xcat-netinit: `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub exit: Exit,
    /// What was being done (`fetching http://...`, `unpacking rootimg.tar.zst`).
    pub what: String,
    /// Why it failed.
    pub why: String,
    /// What the operator can do about it.
    pub todo: String,
}

impl Failure {
    pub fn new(
        exit: Exit,
        what: impl Into<String>,
        why: impl Into<String>,
        todo: impl Into<String>,
    ) -> Failure {
        Failure {
            exit,
            what: what.into(),
            why: why.into(),
            todo: todo.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // one console line whatever the parts hold
        let one = |s: &str| s.replace(['\n', '\r'], " ");
        write!(
            f,
            "{}: {}; {}",
            one(&self.what),
            one(&self.why),
            one(&self.todo)
        )
    }
}

impl std::error::Error for Failure {}

/// Where the one-line remarks go (retries, warnings, progress): stderr in
/// the binary, a buffer in tests.
pub type Say = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// A [`Say`] that writes `xcat-netinit: <line>` to stderr.
pub fn stderr_say() -> Say {
    std::sync::Arc::new(|line: &str| eprintln!("xcat-netinit: {line}"))
}
