//! The workspace as the rules see it: members, files, and which files are
//! production code.
//!
//! Production code is the `src/` tree of every workspace member except the
//! [`NOT_PRODUCTION_MEMBERS`], minus the files of test-only modules (a
//! `#[cfg(test)]` or test-feature `mod name;` makes `name.rs` and `name/`
//! test code). Everything else (members' `tests/`, `benches/`, `examples/`,
//! build scripts, the end-to-end test crate, `bench/`, `fuzz/`) is test
//! code. Inside a production file, test-only items are removed before the
//! production rules look at it (see [`crate::items`]).

use std::fs;
use std::io;
use std::path::Path;

use crate::items::{strip_test_items, Stripped};
use crate::lex::{tokenize, Token};
use crate::policy::{any_covers, NOT_PRODUCTION_MEMBERS};

/// One Rust source file, lexed.
#[derive(Debug)]
pub struct SourceFile {
    /// Relative to the workspace root, `/`-separated.
    pub path: String,
    /// Every token, test items included.
    pub tokens: Vec<Token>,
    /// The tokens of production code; `None` for test code.
    pub production: Option<Vec<Token>>,
}

/// The workspace's members as listed in the root `Cargo.toml`, each with the
/// line it is listed on.
pub fn members(root: &Path) -> io::Result<Vec<(String, usize)>> {
    let text = fs::read_to_string(root.join("Cargo.toml"))?;
    let mut out = Vec::new();
    let mut inside = false;
    for (n, raw) in text.lines().enumerate() {
        let line = strip_toml_comment(raw);
        let mut rest = line;
        if !inside {
            let t = line.trim_start();
            let Some(after) = t.strip_prefix("members") else {
                continue;
            };
            let Some(open) = after.find('[') else {
                continue;
            };
            rest = &after[open + 1..];
            inside = true;
        }
        let (items, closed) = match rest.find(']') {
            Some(end) => (&rest[..end], true),
            None => (rest, false),
        };
        for quoted in items.split('"').skip(1).step_by(2) {
            out.push((quoted.trim_end_matches('/').to_string(), n + 1));
        }
        if closed {
            break;
        }
    }
    Ok(out)
}

/// A TOML line without its `#` comment (a `#` inside a string stays).
pub fn strip_toml_comment(line: &str) -> &str {
    let mut in_str = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_str = !in_str,
            '#' if !in_str => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Every `.rs` file and `Cargo.toml` under `root`, relative and sorted;
/// build output (`target/`) and hidden directories are skipped.
pub fn walk(root: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    walk_dir(root, "", &mut out)?;
    out.sort();
    Ok(out)
}

fn walk_dir(dir: &Path, rel: &str, out: &mut Vec<String>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{rel}{name}");
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if name != "target" && !name.starts_with('.') {
                walk_dir(&entry.path(), &format!("{path}/"), out)?;
            }
        } else if kind.is_file() && (name.ends_with(".rs") || name == "Cargo.toml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Lexes the `.rs` files among `paths` and marks which are production code.
pub fn load_sources(
    root: &Path,
    paths: &[String],
    members: &[(String, usize)],
) -> io::Result<Vec<SourceFile>> {
    let mut lexed = Vec::new();
    let mut test_only: Vec<String> = Vec::new();
    for path in paths.iter().filter(|p| p.ends_with(".rs")) {
        let tokens = tokenize(&fs::read_to_string(root.join(path))?);
        let stripped = strip_test_items(&tokens);
        let candidate = in_production_src(path, members);
        if candidate {
            test_only.extend(test_module_paths(path, &stripped));
        }
        lexed.push((path.clone(), tokens, candidate.then_some(stripped.tokens)));
    }
    let test_only: Vec<&str> = test_only.iter().map(String::as_str).collect();
    Ok(lexed
        .into_iter()
        .map(|(path, tokens, production)| SourceFile {
            production: production.filter(|_| !any_covers(&test_only, &path)),
            path,
            tokens,
        })
        .collect())
}

/// Whether `path` lies in the `src/` of a production member.
fn in_production_src(path: &str, members: &[(String, usize)]) -> bool {
    members.iter().any(|(m, _)| {
        let prefix = format!("{m}/src/");
        path.starts_with(&prefix) && !any_covers(NOT_PRODUCTION_MEMBERS, m)
    })
}

/// Where the test-only `mod name;` declarations of `path` put their code:
/// `name.rs` and the `name/` directory beside it (beside the module's own
/// directory for a non-root file).
fn test_module_paths(path: &str, stripped: &Stripped) -> Vec<String> {
    let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
    let stem = file.trim_end_matches(".rs");
    let is_root = matches!(file, "lib.rs" | "main.rs" | "mod.rs") || dir.ends_with("/src/bin");
    let mod_dir = if is_root {
        format!("{dir}/")
    } else {
        format!("{dir}/{stem}/")
    };
    stripped
        .test_modules
        .iter()
        .flat_map(|name| [format!("{mod_dir}{name}.rs"), format!("{mod_dir}{name}/")])
        .collect()
}
