//! Each rule failing on a small synthetic workspace: the proof that the
//! architecture test can fail, and that it fails at the right file and line.

use std::fs;

use tempfile::TempDir;
use xcat_tidy::{check, Policy, Rule, Violation};

const MANIFEST: &str = r#"[workspace]
members = [
    "xcatd-proto",
    "crates/xcat-db",
    "crates/app",
    "tests",
]

[workspace.dependencies]
sqlx = "0.8"
"#;

const ARCHITECTURE: &str = "# Architecture\n\n```\nCargo.toml   workspace\nxcatd-proto/  protocol\n\
                            crates/\n  xcat-db/  tables\n  app/   the app\ntests/   end-to-end\n```\n";

/// A workspace that breaks no rule: four members, and files that mention
/// every forbidden word only where that is allowed.
struct Tree(TempDir);

impl Tree {
    fn new() -> Tree {
        let t = Tree(tempfile::tempdir().expect("tempdir"));
        t.write("Cargo.toml", MANIFEST);
        t.write("docs/ARCHITECTURE.md", ARCHITECTURE);
        t.write(
            "crates/xcat-db/Cargo.toml",
            "[dependencies]\nsqlx.workspace = true\n",
        );
        t.write("crates/xcat-db/src/lib.rs", "use sqlx::Row;\n");
        t.write(
            "xcatd-proto/src/lib.rs",
            "pub fn f() -> Element { Element::new(\"<serverdone>\") }\n",
        );
        t.write(
            "crates/app/Cargo.toml",
            "[dependencies]\n# sqlx would be wrong here\n",
        );
        t.write("crates/app/src/lib.rs", CLEAN_APP);
        t
    }

    fn write(&self, path: &str, text: &str) {
        let p = self.0.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn check(&self, policy: &Policy) -> Vec<Violation> {
        check(self.0.path(), policy).expect("checking the tree")
    }

    /// `file:line rule` of every violation under a policy that allows nothing.
    fn findings(&self) -> Vec<String> {
        self.check(&NOTHING_ALLOWED)
            .iter()
            .map(|v| format!("{}:{} {}", v.file, v.line, v.rule))
            .collect()
    }
}

const NOTHING_ALLOWED: Policy = Policy {
    unsafe_allowed: &[],
    spawn_allowed: &[],
    temporary: &[],
};

/// Production code that names every forbidden thing, but only in comments,
/// strings, lint attributes and test-only items.
const CLEAN_APP: &str = r##"#![forbid(unsafe_code)]
//! Uses no sqlx, no unsafe, no Command::new, no Element::new.
#[cfg(feature = "testbed")]
pub mod testbed;
/* block comment: unsafe { Command::new("x") } */
pub fn message() -> &'static str {
    "never unsafe, never sqlx::query, never std::process::Command"
}
pub fn root() -> xcatd_proto::Element { build() }
#[cfg(test)]
mod tests {
    #[test]
    fn t() { let _ = std::process::Command::new("true"); let _ = "<xcatresponse>"; }
}
"##;

#[test]
fn a_clean_tree_passes() {
    let t = Tree::new();
    t.write(
        "crates/app/src/testbed.rs",
        "pub fn up() { std::process::Command::new(\"ip\"); }\n",
    );
    assert_eq!(t.findings(), Vec::<String>::new());
}

#[test]
fn layout_a_member_missing_from_the_block_fails() {
    let t = Tree::new();
    t.write(
        "Cargo.toml",
        &MANIFEST.replace("    \"tests\",\n", "    \"tests\",\n    \"plugins/new\",\n"),
    );
    let v = t.check(&NOTHING_ALLOWED);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(
        (v[0].file.as_str(), v[0].line, v[0].rule),
        ("Cargo.toml", 7, Rule::Layout)
    );
    assert!(v[0]
        .to_string()
        .contains("`plugins/new` is missing from the layout block"));
    assert!(v[0].to_string().starts_with("Cargo.toml:7: layout: "));
}

#[test]
fn layout_a_listed_parent_does_not_cover_its_crates() {
    let t = Tree::new();
    t.write(
        "docs/ARCHITECTURE.md",
        &ARCHITECTURE.replace("  app/   the app\n", ""),
    );
    assert_eq!(t.findings(), ["Cargo.toml:5 layout"]);
}

#[test]
fn layout_no_block_at_all_fails() {
    let t = Tree::new();
    t.write(
        "docs/ARCHITECTURE.md",
        "# Architecture\n\nNo layout here.\n",
    );
    assert_eq!(t.findings(), ["docs/ARCHITECTURE.md:1 layout"]);
}

#[test]
fn sqlx_outside_xcat_db_fails_in_code_and_manifests() {
    let t = Tree::new();
    t.write(
        "crates/app/src/db.rs",
        "// fine: sqlx\nfn f() {\n    sqlx::query(\"x\");\n}\n",
    );
    t.write(
        "crates/app/Cargo.toml",
        "[dependencies]\n# ok sqlx\nsqlx = { workspace = true }\n",
    );
    t.write("tests/e2e/t.rs", "\n\nuse sqlx::Row;\n");
    assert_eq!(
        t.findings(),
        [
            "crates/app/Cargo.toml:3 sqlx",
            "crates/app/src/db.rs:3 sqlx",
            "tests/e2e/t.rs:3 sqlx"
        ]
    );
}

#[test]
fn xml_element_built_by_hand_fails_even_in_tests() {
    let t = Tree::new();
    t.write(
        "crates/app/src/out.rs",
        "fn f() {\n    let e = Element::new(\"data\");\n}\n",
    );
    t.write(
        "crates/app/tests/t.rs",
        "fn g() -> Element {\n    Element { name: n }\n}\n",
    );
    assert_eq!(
        t.findings(),
        ["crates/app/src/out.rs:2 xml", "crates/app/tests/t.rs:2 xml"]
    );
}

#[test]
fn xml_protocol_text_fails_in_production_only() {
    let t = Tree::new();
    t.write(
        "crates/app/src/out.rs",
        "fn f() -> String {\n    format!(\"<xcatresponse><data>{x}</data></xcatresponse>\")\n}\n",
    );
    t.write(
        "tests/e2e/hostile.rs",
        "const BAD: &[u8] = b\"<xcatrequest><arg>\";\n",
    );
    t.write(
        "fuzz/fuzz_targets/t.rs",
        "const SEED: &str = \"<serverdone>\";\n",
    );
    let v = t.check(&NOTHING_ALLOWED);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(
        (v[0].file.as_str(), v[0].line),
        ("crates/app/src/out.rs", 2)
    );
    assert!(v[0].message.contains("xcatresponse`"), "{}", v[0]);
}

#[test]
fn unsafe_fails_outside_the_listed_files() {
    let t = Tree::new();
    let body = "#![deny(unsafe_code)]\n// unsafe here is prose\nfn f() {\n    unsafe { g() }\n}\n";
    t.write("crates/app/src/sys.rs", body);
    t.write("tests/e2e/rlimit.rs", body);
    assert_eq!(
        t.findings(),
        [
            "crates/app/src/sys.rs:4 unsafe",
            "tests/e2e/rlimit.rs:4 unsafe"
        ]
    );
    let policy = Policy {
        unsafe_allowed: &["crates/app/src/sys.rs", "tests/"],
        ..NOTHING_ALLOWED
    };
    assert_eq!(t.check(&policy), []);
}

#[test]
fn spawn_fails_in_production_code_outside_the_runner() {
    let t = Tree::new();
    t.write(
        "crates/app/src/run.rs",
        "use std::process::{Command as C, Stdio};\n\nfn f() { C::new(\"x\"); }\n",
    );
    t.write(
        "crates/app/src/pack/mod.rs",
        "fn f() {\n    tokio::process::Command::new(\"mksquashfs\");\n}\n",
    );
    t.write(
        "crates/app/src/bin/tool.rs",
        "fn main() { Command::new(\"depmod\"); }\n",
    );
    t.write(
        "crates/app/tests/t.rs",
        "fn f() { std::process::Command::new(\"sh\"); }\n",
    );
    t.write(
        "tests/lib.rs",
        "fn f() { std::process::Command::new(\"sh\"); }\n",
    );
    assert_eq!(
        t.findings(),
        [
            "crates/app/src/bin/tool.rs:1 spawn",
            "crates/app/src/pack/mod.rs:2 spawn",
            "crates/app/src/run.rs:1 spawn",
        ]
    );
    let policy = Policy {
        spawn_allowed: &["crates/app/src/run.rs", "crates/app/src/bin/"],
        temporary: &[(Rule::Spawn, "crates/app/src/pack/mod.rs")],
        ..NOTHING_ALLOWED
    };
    assert_eq!(t.check(&policy), []);
}

#[test]
fn test_only_module_files_are_not_production() {
    let t = Tree::new();
    t.write(
        "crates/app/src/net.rs",
        "#[cfg(test)]\nmod fixtures;\nmod real;\n",
    );
    t.write(
        "crates/app/src/net/fixtures.rs",
        "fn f() { Command::new(\"ip\"); }\n",
    );
    t.write(
        "crates/app/src/net/fixtures/deep.rs",
        "fn f() { Command::new(\"ip\"); }\n",
    );
    t.write(
        "crates/app/src/net/real.rs",
        "fn f() { Command::new(\"ip\"); }\n",
    );
    assert_eq!(t.findings(), ["crates/app/src/net/real.rs:1 spawn"]);
}

#[test]
fn stale_allowances_fail() {
    let t = Tree::new();
    let policy = Policy {
        unsafe_allowed: &["crates/app/src/sys.rs"],
        temporary: &[
            (Rule::Layout, "crates/app"),
            (Rule::Spawn, "crates/app/src/lib.rs"),
        ],
        ..NOTHING_ALLOWED
    };
    let v = t.check(&policy);
    let subjects: Vec<_> = v.iter().map(|v| (v.rule, v.subject.as_str())).collect();
    assert_eq!(
        subjects,
        [
            (Rule::Stale, "crates/app"),
            (Rule::Stale, "crates/app/src/lib.rs"),
            (Rule::Stale, "crates/app/src/sys.rs"),
        ]
    );
    assert!(v[0]
        .message
        .contains("TEMPORARY_EXCEPTIONS allows `crates/app` for rule layout"));
}

/// `fn name` with `inner` lines between its braces: `inner + 2` in all.
fn function(name: &str, inner: usize) -> String {
    let body: String = (0..inner).map(|k| format!("    step({k});\n")).collect();
    format!("fn {name}() {{\n{body}}}\n")
}

#[test]
fn fn_length_fails_on_long_production_functions_only() {
    let t = Tree::new();
    let prod = format!("\n{}{}", function("long", 99), function("short", 98));
    t.write("crates/app/src/steps.rs", &prod);
    let tests = format!(
        "#[test]\n{}#[cfg(test)]\nmod tests {{\n{}}}\n",
        function("a_long_test", 150),
        function("helper", 150)
    );
    t.write("crates/app/src/checked.rs", &tests);
    t.write("crates/app/tests/t.rs", &function("suite", 150));
    t.write("tests/e2e/t.rs", &function("e2e", 150));
    let v = t.check(&NOTHING_ALLOWED);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(
        v[0].to_string(),
        "crates/app/src/steps.rs:2: fn-length: fn `long` is 101 lines long (limit 100): \
         split it into named steps"
    );
    let policy = Policy {
        temporary: &[(Rule::FnLength, "crates/app/src/steps.rs")],
        ..NOTHING_ALLOWED
    };
    assert_eq!(t.check(&policy), []);
}

#[test]
fn xml_reading_elements_by_name_fails_in_production_only() {
    let t = Tree::new();
    t.write(
        "crates/app/src/print.rs",
        "fn f(r: &Response) {\n    for d in r.texts(\"data\") {}\n}\n",
    );
    t.write(
        "crates/app/tests/t.rs",
        "fn g(r: &Response) { r.texts(\"error\").count(); }\n",
    );
    assert_eq!(t.findings(), ["crates/app/src/print.rs:2 xml"]);
}
