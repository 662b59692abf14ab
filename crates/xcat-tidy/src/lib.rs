//! The workspace's architecture, checked over its source tree.
//!
//! docs/ARCHITECTURE.md states boundaries that the compiler cannot see;
//! this checker turns them into a test (`tests/workspace.rs` runs it over
//! the real tree) whose failures name a file and a line. The rules:
//!
//! 1. **layout** — every member in the root `Cargo.toml` `members` has an
//!    entry of its own in the layout block of docs/ARCHITECTURE.md.
//! 2. **sqlx** — the identifier `sqlx` appears in no `.rs` file outside
//!    `crates/xcat-db/`, nor on a non-comment line of any `Cargo.toml`
//!    outside it; the root manifest's `[workspace.dependencies]` may pin
//!    the version. Applies to test code and `fuzz/` as well.
//! 3. **xml** — outside `xcatd-proto/`, no file builds an `Element` by
//!    hand (`Element::new`, or a struct literal `Element { .. }`), test
//!    code included; and production code has no string literal opening or
//!    closing a protocol document (`<xcatrequest`, `<xcatresponse`,
//!    `<serverdone`, or the `</...` forms), nor reads an element by a
//!    literal name (`.texts("data")`, `.first_text("name")`, `.all("node")`).
//!    Test code and `fuzz/` may write such text and read such names:
//!    malformed and hostile documents are what they feed the readers, and
//!    the typed API cannot express them. Not caught: matching an element's
//!    `name` field against literals (`match e.name.as_str()`), which would
//!    take type information this checker does not have.
//! 4. **unsafe** — the keyword `unsafe` appears in code (comments, strings
//!    and `unsafe_code` lint attributes are not code) only in the files of
//!    [`policy::UNSAFE_ALLOWED`]. Applies to every `.rs` file.
//! 5. **spawn** — production code starts no local process (`Command::new`,
//!    or any path through `process::Command`, imports included) outside
//!    [`policy::SPAWN_ALLOWED`]: the tool runner (xcat-image's, which
//!    xcat-jobkit re-exports) and
//!    xcat-remote.
//! 6. **fn-length** — no production function is longer than
//!    [`policy::MAX_FN_LINES`] lines, counted from the line of its `fn`
//!    keyword to the line of its closing brace (nested functions are
//!    measured on their own as well). The finding names the function and
//!    its length.
//!
//! "Production code" and "test code" are defined in [`tree`]: in short, the
//! `src/` of the members other than `tests` and `bench/`, minus test-only
//! modules and items.
//!
//! Known offenders waiting for a port are listed in
//! [`policy::TEMPORARY_EXCEPTIONS`]; an allowance that no longer matches
//! anything is itself a failure (rule **stale**), so the lists only shrink.

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

pub mod items;
pub mod layout;
pub mod lex;
pub mod policy;
pub mod rules;
pub mod tree;

pub use policy::Policy;

/// The rule a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    Layout,
    Sqlx,
    Xml,
    Unsafe,
    Spawn,
    FnLength,
    /// An allowance or temporary exception that matches nothing any more.
    Stale,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Rule::Layout => "layout",
            Rule::Sqlx => "sqlx",
            Rule::Xml => "xml",
            Rule::Unsafe => "unsafe",
            Rule::Spawn => "spawn",
            Rule::FnLength => "fn-length",
            Rule::Stale => "stale",
        };
        f.write_str(name)
    }
}

/// One broken rule at one place.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// The file to fix, relative to the workspace root.
    pub file: String,
    /// 1-based; 0 when the finding is about a whole file.
    pub line: usize,
    pub rule: Rule,
    pub message: String,
    /// What allowances are matched against: the file, or for the layout
    /// rule the member.
    pub subject: String,
}

impl Violation {
    pub fn new(rule: Rule, file: &str, line: usize, message: String) -> Violation {
        Violation {
            file: file.to_string(),
            line,
            rule,
            message,
            subject: file.to_string(),
        }
    }

    /// The same violation, matched against allowances as `subject`.
    pub fn about(mut self, subject: &str) -> Violation {
        self.subject = subject.to_string();
        self
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}: {}", self.file, self.rule, self.message),
            n => write!(f, "{}:{n}: {}: {}", self.file, self.rule, self.message),
        }
    }
}

/// Checks the workspace at `root` under `policy`; the violations come
/// sorted by file and line.
pub fn check(root: &Path, policy: &Policy) -> io::Result<Vec<Violation>> {
    let members = tree::members(root)?;
    let paths = tree::walk(root)?;
    let mut found = Vec::new();
    let doc = fs::read_to_string(root.join(layout::ARCHITECTURE)).ok();
    layout::check_layout(doc.as_deref(), &members, &mut found);
    for path in paths.iter().filter(|p| p.ends_with("Cargo.toml")) {
        rules::check_manifest(path, &fs::read_to_string(root.join(path))?, &mut found);
    }
    for file in tree::load_sources(root, &paths, &members)? {
        rules::check_source(&file, &mut found);
    }
    let mut out = apply_policy(root, policy, found);
    out.sort();
    // One report per place and rule: `std::process::Command::new` is one
    // spawn, not two.
    out.dedup_by(|a, b| (&a.file, a.line, a.rule) == (&b.file, b.line, b.rule));
    Ok(out)
}

/// Drops the findings the policy allows and adds a stale violation for
/// every allowance that allowed nothing.
fn apply_policy(root: &Path, policy: &Policy, found: Vec<Violation>) -> Vec<Violation> {
    let mut allowances: Vec<(Rule, &str, &str)> = Vec::new();
    allowances.extend(
        policy
            .unsafe_allowed
            .iter()
            .map(|p| (Rule::Unsafe, *p, "UNSAFE_ALLOWED")),
    );
    allowances.extend(
        policy
            .spawn_allowed
            .iter()
            .map(|p| (Rule::Spawn, *p, "SPAWN_ALLOWED")),
    );
    allowances.extend(
        policy
            .temporary
            .iter()
            .map(|(r, p)| (*r, *p, "TEMPORARY_EXCEPTIONS")),
    );
    let mut used = vec![false; allowances.len()];
    let mut out = Vec::new();
    for v in found {
        let hit = allowances
            .iter()
            .position(|(r, p, _)| *r == v.rule && policy::covers(p, &v.subject));
        match hit {
            Some(k) => used[k] = true,
            None => out.push(v),
        }
    }
    for ((rule, path, list), _) in allowances.iter().zip(used).filter(|(_, u)| !u) {
        out.push(stale(root, *rule, path, list));
    }
    out
}

/// Where the allowance lists live, so that a stale entry is reported at
/// its own line.
const POLICY_FILE: &str = "crates/xcat-tidy/src/policy.rs";

fn stale(root: &Path, rule: Rule, path: &str, list: &str) -> Violation {
    let quoted = format!("\"{path}\"");
    let line = fs::read_to_string(root.join(POLICY_FILE))
        .ok()
        .and_then(|t| t.lines().position(|l| l.contains(&quoted)))
        .map_or(0, |n| n + 1);
    let (file, line) = if line == 0 {
        (path, 0)
    } else {
        (POLICY_FILE, line)
    };
    let msg = format!(
        "{list} allows `{path}` for rule {rule}, which it no longer breaks: remove the entry"
    );
    Violation::new(Rule::Stale, file, line, msg).about(path)
}
