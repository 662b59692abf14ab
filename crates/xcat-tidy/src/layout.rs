//! Rule 1: every workspace member has a line in the layout block of
//! docs/ARCHITECTURE.md, the first fenced block with a top-level `crates/`
//! entry. Entries are `name/` words; indentation nests them, so `  xcatd/`
//! under `crates/` is `crates/xcatd`. A member must be listed by its own
//! path: a listed parent directory does not cover the crates inside it.

use std::collections::BTreeSet;

use crate::{Rule, Violation};

/// Where the layout block lives.
pub const ARCHITECTURE: &str = "docs/ARCHITECTURE.md";

/// The directories the layout block lists, and the block's first and last
/// line; `None` when the document has no such block.
pub fn layout_entries(doc: &str) -> Option<(BTreeSet<String>, usize, usize)> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut start = None;
    for (n, line) in lines.iter().enumerate() {
        if !line.trim_start().starts_with("```") {
            continue;
        }
        match start {
            None => start = Some(n),
            Some(s) => {
                let block = &lines[s + 1..n];
                if block.iter().any(|l| l.starts_with("crates/")) {
                    return Some((entries(block), s + 1, n + 1));
                }
                start = None;
            }
        }
    }
    None
}

/// The directory paths of a layout block's lines.
fn entries(block: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    for line in block {
        let indent = line.len() - line.trim_start().len();
        let Some(word) = line.split_whitespace().next() else {
            continue;
        };
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let Some(name) = word.strip_suffix('/') else {
            continue;
        };
        let path = match stack.last() {
            Some((_, parent)) => format!("{parent}/{name}"),
            None => name.to_string(),
        };
        out.insert(path.clone());
        stack.push((indent, path));
    }
    out
}

/// A violation for every member missing from the layout block (or one for
/// the document when it has no layout block).
pub fn check_layout(doc: Option<&str>, members: &[(String, usize)], out: &mut Vec<Violation>) {
    let Some((listed, first, last)) = doc.and_then(layout_entries) else {
        let msg = "no layout block (a fenced block listing crates/ and plugins/) found".to_string();
        out.push(Violation::new(Rule::Layout, ARCHITECTURE, 1, msg));
        return;
    };
    for (member, line) in members {
        if !listed.contains(member) {
            let msg = format!(
                "workspace member `{member}` is missing from the layout block of \
                 {ARCHITECTURE} (lines {first}-{last}): give it a one-line entry"
            );
            out.push(Violation::new(Rule::Layout, "Cargo.toml", *line, msg).about(member));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_by_indentation() {
        let doc = "# T\n```\nother\n```\n\n```\nCargo.toml   x\nxcatd-proto/  p\ncrates/\n  xcatd/   d\n  \
                   xcat-db/  db\nplugins/\n  tables/  t\ntests/   e2e\n```\n";
        let (set, first, last) = layout_entries(doc).unwrap();
        let got: Vec<_> = set.iter().map(String::as_str).collect();
        assert_eq!(
            got,
            [
                "crates",
                "crates/xcat-db",
                "crates/xcatd",
                "plugins",
                "plugins/tables",
                "tests",
                "xcatd-proto"
            ]
        );
        assert_eq!((first, last), (6, 15));
    }
}
