//! The test tiers stay few and honest: every `#[ignore]` in the workspace
//! names one of the tiers below (so `cargo test` says what it did not run
//! and how to run it), and the README's test command runs them all.

use std::path::Path;

use xcatd_tests::repo_root;

/// The reasons plain `cargo test` gives for the tests it does not run. README.md
/// ("Testing") and docs/ARCHITECTURE.md describe them; keep the three in step.
const TIERS: &[&str] = &[
    "needs root: ./scripts/test-all runs it",
    "needs root and the test bed: ./scripts/test-all runs it",
    "needs PostgreSQL (XCATD_TEST_PG_URL): ./scripts/test-all runs it",
    "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_ignored_test_names_its_tier() {
    let root = repo_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut bad = Vec::new();
    let mut counted = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            let Some(rest) = line.trim_start().strip_prefix("#[ignore") else {
                continue;
            };
            counted += 1;
            let reason = rest
                .strip_prefix(" = \"")
                .and_then(|r| r.strip_suffix("\"]"));
            if !reason.is_some_and(|r| TIERS.contains(&r)) {
                let rel = f.strip_prefix(&root).unwrap_or(f);
                bad.push(format!("{}:{}: {}", rel.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        counted > 0,
        "no ignored test found under {}",
        root.display()
    );
    assert!(
        bad.is_empty(),
        "an #[ignore] must give one of the tiers {TIERS:#?}:\n{}",
        bad.join("\n")
    );
}

/// `--include-ignored` runs ignored doc examples too, where they cannot
/// compile: an example that is not meant to compile is `text`.
#[test]
fn no_doc_example_is_ignored() {
    let root = repo_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let fence = concat!("```", "ignore");
    let bad: Vec<String> = files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let rel = f.strip_prefix(&root).unwrap_or(f).display().to_string();
            text.lines()
                .enumerate()
                .filter(|(_, l)| l.contains(fence))
                .map(|(n, _)| format!("{rel}:{}", n + 1))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        bad.is_empty(),
        "doc examples marked {fence} fail under --include-ignored; mark them `text` or make them compile:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_test_command_runs_every_tier() {
    let script = std::fs::read_to_string(repo_root().join("scripts/test-all")).expect("test-all");
    let runs_all = script
        .lines()
        .any(|l| l.starts_with("cargo test ") && l.contains(" -- --include-ignored"));
    assert!(
        runs_all,
        "scripts/test-all must run `cargo test ... -- --include-ignored`"
    );
}
