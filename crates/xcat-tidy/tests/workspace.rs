//! The architecture test proper: the checker over this workspace.

use std::path::Path;

use xcat_tidy::{check, Policy};

#[test]
fn workspace_keeps_its_architecture() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let violations = check(&root, &Policy::workspace()).expect("reading the workspace");
    let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(
        report.is_empty(),
        "{} architecture violation(s) (rules: crates/xcat-tidy/src/lib.rs):\n{}",
        report.len(),
        report.join("\n")
    );
}
