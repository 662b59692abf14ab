//! What a busy node does to a capture while it runs, read from the node's
//! stderr.
//!
//! `find` lists the tree, then `tar` reads each listed name. On a live node
//! (spools, caches, package managers, log rotation, batch jobs) entries
//! vanish between the two, new ones appear, and files change while they are
//! read. GNU tar reports a name it can no longer stat with exit status 2,
//! the same status as a real read error, so the exit status alone cannot
//! tell a busy node from a broken one: each message is classified instead.
//! The script runs with `LC_ALL=C`, so the messages are GNU's English texts.
//!
//! * Vanished (ENOENT or ENOTDIR, or tar's "File removed before we read
//!   it"): skipped; the image simply does not have the entry.
//! * Changed during the read ("file changed as we read it", "File shrank by
//!   N bytes; padding with zeros"): the copy may be half old, half new; the
//!   capture re-reads such files once and reports those it could not.
//! * Read error (any other "Cannot ...: <errno text>", "Read error at
//!   byte ..."): fatal, and the message names the file.

use xcat_image::report::EntrySample;

use crate::pipeline::{self, Statuses};

/// Most names kept per kind (the rest are only counted).
pub const FIRST_FEW: usize = 10;
/// Most changed files remembered for the re-read.
pub const MAX_CHANGED: usize = 10_000;
/// Most node-side warnings kept for the report (the rest are counted).
const MAX_WARNINGS: usize = 200;
/// Most read errors quoted in the failure message.
const MAX_READ_ERRORS: usize = 5;

/// One stderr line of the node-side pipeline, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeMessage {
    /// The `@@status` line with every stage's exit status.
    Status(Statuses),
    /// The `@@start` line: the node's clock when the listing began.
    Start(String),
    /// An entry that no longer existed when it was read.
    Vanished(Vec<u8>),
    /// A file that changed while it was read.
    Changed(Vec<u8>),
    /// A real failure to read an entry: the whole line, for the error message.
    ReadError(String),
    /// tar's closing remark after errors: says nothing new.
    Noise,
    /// What the consistency prelude did ([`crate::consistent`]).
    Prelude(PreludeNote),
    /// The node's script gave up before the read, saying why.
    Fail(String),
    /// Anything else: kept as a warning.
    Other(String),
}

/// The prelude's `@@snapshot...` and `@@pm-lock` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreludeNote {
    /// A captured mount point read from its snapshot.
    Snapshotted(String),
    /// A mount point whose snapshot failed: read live (a warning).
    Live(String),
    /// A snapshot the script could not delete (a warning).
    Left(String),
    /// The package manager's lock: `held ...`, `waiting ...`, `released`, `none ...`.
    Lock(String),
}

/// Most prelude lines kept (a node cannot grow them without bound).
const MAX_PRELUDE: usize = 64;

fn classify_marker(line: &str) -> Option<NodeMessage> {
    let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.to_string();
    Some(match tag {
        "@@fail" => NodeMessage::Fail(rest),
        "@@snapshot" => NodeMessage::Prelude(PreludeNote::Snapshotted(rest)),
        "@@snapshot-live" => NodeMessage::Prelude(PreludeNote::Live(rest)),
        "@@snapshot-left" => NodeMessage::Prelude(PreludeNote::Left(rest)),
        "@@pm-lock" => NodeMessage::Prelude(PreludeNote::Lock(rest)),
        // the re-read's own check (pipeline::reread_script)
        "@@changed" => NodeMessage::Changed(rest.into_bytes()),
        _ => return None,
    })
}

/// errno texts that mean "the entry is gone" (glibc's, in the C locale).
const GONE: [&str; 2] = ["No such file or directory", "Not a directory"];

/// Classify one line the node's pipeline wrote on stderr.
pub fn classify(line: &str) -> NodeMessage {
    if let Some(s) = pipeline::parse_status(line) {
        return NodeMessage::Status(s);
    }
    if let Some(t) = line.strip_prefix("@@start ") {
        return NodeMessage::Start(t.trim().to_string());
    }
    if let Some(m) = classify_marker(line) {
        return m;
    }
    if let Some(rest) = line.strip_prefix("tar: ") {
        return classify_tar(rest, line);
    }
    if let Some(rest) = line.strip_prefix("find: ") {
        return classify_find(rest, line);
    }
    NodeMessage::Other(line.to_string())
}

fn classify_tar(rest: &str, line: &str) -> NodeMessage {
    if rest.starts_with("Exiting with failure status due to previous errors") {
        return NodeMessage::Noise;
    }
    // tar quotes ':' in names (`\:`), so the first ": " ends the name.
    let Some((name, what)) = rest.split_once(": ") else {
        return NodeMessage::Other(line.to_string());
    };
    let path = unescape_name(name);
    if what == "File removed before we read it" {
        return NodeMessage::Vanished(path);
    }
    if what == "file changed as we read it"
        || (what.starts_with("File shrank by ") && what.ends_with("padding with zeros"))
    {
        return NodeMessage::Changed(path);
    }
    if what.starts_with("Read error at byte ") {
        return NodeMessage::ReadError(line.to_string());
    }
    // "Cannot stat: No such file or directory"; a "Warning: Cannot ..." is
    // tar's own warning (xattrs it could not list) and stays a warning.
    if let Some(op) = what.strip_prefix("Cannot ") {
        let errno = op.split_once(": ").map(|(_, e)| e).unwrap_or("");
        if GONE.contains(&errno) {
            return NodeMessage::Vanished(path);
        }
        return NodeMessage::ReadError(line.to_string());
    }
    NodeMessage::Other(line.to_string())
}

fn classify_find(rest: &str, line: &str) -> NodeMessage {
    // find: './x': No such file or directory
    match rest.rsplit_once(": ") {
        Some((name, errno)) if GONE.contains(&errno) => {
            let name = name
                .strip_prefix('\'')
                .and_then(|n| n.strip_suffix('\''))
                .unwrap_or(name);
            NodeMessage::Vanished(name.as_bytes().to_vec())
        }
        Some(_) => NodeMessage::ReadError(line.to_string()),
        None => NodeMessage::Other(line.to_string()),
    }
}

/// Undo GNU tar's escaping of names in messages (`\\`, `\:`, `\n`, `\t`,
/// octal `\ooo` for bytes outside printable ASCII in the C locale).
pub fn unescape_name(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 == b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let next = b[i + 1];
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let Some(d) = octal {
            let v = d.iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
            continue;
        }
        out.push(match next {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'f' => 0x0c,
            b'v' => 0x0b,
            b'a' => 0x07,
            b'b' => 0x08,
            other => other,
        });
        i += 2;
    }
    out
}

/// Root-relative form of a name as the node's tools print it (`./a/b`).
pub fn relative(name: &[u8]) -> Vec<u8> {
    let n = name.strip_prefix(b"./").unwrap_or(name);
    if n == b"." {
        Vec::new()
    } else {
        n.to_vec()
    }
}

/// Add one name to a bounded sample.
pub fn sample_push(s: &mut EntrySample, name: &[u8]) {
    s.count += 1;
    if s.first.len() < FIRST_FEW {
        s.first
            .push(xcat_image::util::display_path(&relative(name)).to_string());
    }
}

/// Everything the node's stderr told us.
#[derive(Debug, Default)]
pub struct NodeStderr {
    pub status: Option<Statuses>,
    /// The node's clock (`seconds.nanoseconds`) when `find` started.
    pub started: Option<String>,
    pub warnings: Vec<String>,
    pub dropped: usize,
    pub vanished: EntrySample,
    /// Root-relative names of files that changed while read (bounded).
    pub changed: Vec<Vec<u8>>,
    /// How many changed-file messages there were in all.
    pub changed_count: u64,
    pub read_errors: Vec<String>,
    pub read_error_count: u64,
    /// Why the script gave up before the read (`@@fail`).
    pub fail: Option<String>,
    /// What the consistency prelude reported, in order (bounded).
    pub prelude: Vec<PreludeNote>,
}

impl NodeStderr {
    /// Record one stderr line.
    pub fn add(&mut self, line: &str) {
        match classify(line) {
            NodeMessage::Status(s) => self.status = Some(s),
            NodeMessage::Start(t) => self.started = Some(t),
            NodeMessage::Vanished(p) => sample_push(&mut self.vanished, &p),
            NodeMessage::Changed(p) => {
                self.changed_count += 1;
                if self.changed.len() < MAX_CHANGED {
                    self.changed.push(relative(&p));
                }
            }
            NodeMessage::ReadError(l) => {
                self.read_error_count += 1;
                if self.read_errors.len() < MAX_READ_ERRORS {
                    self.read_errors.push(l);
                }
            }
            NodeMessage::Noise => {}
            NodeMessage::Fail(why) => self.fail = Some(why),
            NodeMessage::Prelude(PreludeNote::Left(s)) => {
                let (s, removal) = crate::consistent::snapshot_and_removal(&s);
                self.warnings.push(format!(
                    "snapshot {s} is still on the node; remove it with: {removal}"
                ))
            }
            NodeMessage::Prelude(PreludeNote::Live(m)) => self
                .warnings
                .push(format!("the snapshot of {m} failed; {m} was read live")),
            NodeMessage::Prelude(note) => {
                if self.prelude.len() < MAX_PRELUDE {
                    self.prelude.push(note);
                }
            }
            NodeMessage::Other(l) if l.trim().is_empty() => {}
            NodeMessage::Other(l) => {
                if self.warnings.len() < MAX_WARNINGS {
                    self.warnings.push(l);
                } else {
                    self.dropped += 1;
                }
            }
        }
    }

    /// Why the node-side stages failed, or None when what they reported is
    /// only a busy node's churn. tar's 2 and find's 1 are accepted only when
    /// every error they printed was about an entry that vanished.
    pub fn failure(&self) -> Option<NodeFailure> {
        if let Some(why) = &self.fail {
            return Some(NodeFailure {
                why: why.clone(),
                detail: None,
            });
        }
        let Some(s) = &self.status else {
            return Some(NodeFailure {
                why: "the node's pipeline reported no status".into(),
                detail: None,
            });
        };
        let why = status_text(s);
        if !self.read_errors.is_empty() {
            let more = self.read_error_count - self.read_errors.len() as u64;
            let more = if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            };
            let detail = format!(
                "{}{more}; make it readable or exclude it (-x) and retry",
                self.read_errors.join("; ")
            );
            return Some(NodeFailure {
                why,
                detail: Some(detail),
            });
        }
        let explained = self.vanished.count > 0;
        let bad = s.find > 1
            || (s.find == 1 && !explained)
            || s.tar > 2
            || (s.tar == 2 && !explained)
            || s.comp != 0;
        bad.then_some(NodeFailure { why, detail: None })
    }
}

/// Why the node side of a capture failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFailure {
    /// The stages' exit statuses, or what ssh said.
    pub why: String,
    /// The read errors, when those are the reason.
    pub detail: Option<String>,
}

/// `find exit 0, tar exit 2, compressor exit 0`.
pub fn status_text(s: &Statuses) -> String {
    format!(
        "find exit {}, tar exit {}, compressor exit {}",
        s.find, s.tar, s.comp
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(find: i32, tar: i32, comp: i32) -> String {
        format!("@@status find={find} tar={tar} comp={comp}")
    }

    #[test]
    fn classifies_gnu_messages() {
        let v = |s: &str| NodeMessage::Vanished(s.as_bytes().to_vec());
        let c = |s: &str| NodeMessage::Changed(s.as_bytes().to_vec());
        for (line, want) in [
            (
                "tar: ./var/spool/churn/d43971/x: Cannot stat: No such file or directory",
                v("./var/spool/churn/d43971/x"),
            ),
            (
                "tar: ./a/b: Cannot open: No such file or directory",
                v("./a/b"),
            ),
            ("tar: ./a/b: Cannot readlink: Not a directory", v("./a/b")),
            ("tar: ./a: File removed before we read it", v("./a")),
            ("find: './d/e': No such file or directory", v("./d/e")),
            ("tar: ./log: file changed as we read it", c("./log")),
            (
                "tar: ./f: File shrank by 12 bytes; padding with zeros",
                c("./f"),
            ),
            (
                "tar: Exiting with failure status due to previous errors",
                NodeMessage::Noise,
            ),
        ] {
            assert_eq!(classify(line), want, "{line}");
        }
        for line in [
            "tar: ./secret: Cannot open: Permission denied",
            "tar: ./bad: Read error at byte 0, while reading 512 bytes: Input/output error",
            "find: './locked': Permission denied",
        ] {
            assert_eq!(classify(line), NodeMessage::ReadError(line.into()));
        }
        let w = "tar: ./x: Warning: Cannot llistxattr: Operation not supported";
        assert_eq!(classify(w), NodeMessage::Other(w.into()));
        assert_eq!(
            classify("@@start 1764576000.123456789"),
            NodeMessage::Start("1764576000.123456789".into())
        );
    }

    #[test]
    fn unescapes_names() {
        assert_eq!(unescape_name(r"./a\:b"), b"./a:b");
        assert_eq!(unescape_name(r"./caf\303\251"), "./café".as_bytes());
        assert_eq!(unescape_name(r"./new\nline\\x"), b"./new\nline\\x");
        assert_eq!(relative(b"./a/b"), b"a/b");
        assert_eq!(relative(b"."), b"");
    }

    fn stderr(lines: &[&str]) -> NodeStderr {
        let mut s = NodeStderr::default();
        for l in lines {
            s.add(l);
        }
        s
    }

    #[test]
    fn vanished_entries_excuse_tar_two_and_find_one() {
        let gone = "tar: ./x: Cannot stat: No such file or directory";
        let s = stderr(&[gone, "find: './d': No such file or directory", &st(1, 2, 0)]);
        assert_eq!(s.failure(), None);
        assert_eq!(s.vanished.count, 2);
        assert_eq!(s.vanished.first, vec!["/x", "/d"]);
        assert_eq!(stderr(&[&st(0, 0, 0)]).failure(), None);
        let changed = stderr(&["tar: ./log: file changed as we read it", &st(0, 1, 0)]);
        assert_eq!(changed.failure(), None);
        assert_eq!(changed.changed, vec![b"log".to_vec()]);
    }

    #[test]
    fn real_failures_stay_fatal() {
        // tar 2 with nothing that explains it (a crash, a hostile tar).
        let e = stderr(&[&st(0, 2, 0)]).failure().unwrap();
        assert!(e.why.contains("tar exit 2"), "{e:?}");
        // A read error next to vanished entries is still fatal and named.
        let s = stderr(&[
            "tar: ./x: Cannot stat: No such file or directory",
            "tar: ./secret: Cannot open: Permission denied",
            &st(0, 2, 0),
        ]);
        let e = s.failure().unwrap().detail.unwrap();
        assert!(
            e.contains("./secret: Cannot open: Permission denied"),
            "{e}"
        );
        for bad in [st(2, 0, 0), st(0, 0, 1), st(0, 139, 0)] {
            let gone = "tar: ./x: Cannot stat: No such file or directory";
            assert!(stderr(&[gone, &bad]).failure().is_some(), "{bad}");
        }
        assert!(stderr(&[]).failure().is_some());
    }
}
