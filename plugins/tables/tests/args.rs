//! Command lines of the table commands: help, version and usage errors,
//! in-process against a throwaway SQLite database.

use xcat_plugin::args::VERSION;
use xcat_plugin::testing::Harness;

async fn harness() -> Harness {
    Harness::new(plugin_tables::handlers()).await
}

const COMMANDS: &[&str] = &[
    "tabdump",
    "tabrestore",
    "chtab",
    "nodels",
    "lsdef",
    "mkdef",
    "chdef",
    "rmdef",
    "noderm",
];

#[tokio::test]
async fn help_is_usage_as_data_for_every_spelling() {
    let h = harness().await;
    for cmd in COMMANDS {
        for flag in ["-h", "--help", "-?"] {
            let o = h.run(cmd, &[flag]).await;
            let kinds = o.ok().kinds();
            assert!(
                kinds.iter().all(|(k, _)| *k == "data"),
                "{cmd} {flag}: {kinds:?}"
            );
            let first = &o.lines()[0];
            assert!(first.starts_with("Usage:"), "{cmd} {flag}: {first}");
            assert!(
                o.lines().iter().any(|l| l.contains("-v|--version")),
                "{cmd}"
            );
        }
    }
    // Help is answered when the parser reaches it: whatever follows is not
    // looked at, an error before it is reported instead.
    let o = h.run("chtab", &["-h", "--bogus"]).await;
    assert!(o.ok().lines()[0].starts_with("Usage: chtab"));
    let e = h.run("chtab", &["--bogus", "-h"]).await.usage_err();
    assert!(e.starts_with("unknown option --bogus"), "{e}");
}

#[tokio::test]
async fn version_is_one_data_line() {
    let h = harness().await;
    for cmd in COMMANDS {
        for flag in ["-v", "--version"] {
            let o = h.run(cmd, &[flag]).await;
            let want = vec![("data", format!("{cmd} Version {VERSION} (xcatd-rs)"))];
            assert_eq!(o.ok().kinds(), want, "{cmd} {flag}");
        }
    }
}

#[tokio::test]
async fn unknown_options_are_usage_errors() {
    let h = harness().await;
    for cmd in COMMANDS {
        let e = h.run(cmd, &["--bogus"]).await.usage_err();
        assert!(
            e.starts_with("unknown option --bogus\nUsage:"),
            "{cmd}: {e}"
        );
        let e = h.run(cmd, &["-Z"]).await.usage_err();
        assert!(e.starts_with("unknown option -Z\n"), "{cmd}: {e}");
    }
}

#[tokio::test]
async fn missing_and_extra_arguments() {
    let h = harness().await;
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "tabdump",
            &["site", "nodelist"],
            "unexpected argument \"nodelist\"",
        ),
        ("tabrestore", &[], "No file given"),
        (
            "tabrestore",
            &["a.csv", "b.csv"],
            "unexpected argument \"b.csv\"",
        ),
        ("tabrestore", &["-t"], "option -t needs a value"),
        (
            "tabrestore",
            &["x.csv", "--table"],
            "option --table needs a value",
        ),
        ("chtab", &[], "No key given"),
        ("chtab", &["key=x"], "No table.column=value given"),
        ("chtab", &["-d", "key=x"], "No table given"),
        ("lsdef", &["-t"], "option -t needs a value"),
        ("lsdef", &["-t", "osimage", "-o"], "option -o needs a value"),
    ];
    for (cmd, args, want) in cases {
        let e = h.run(cmd, args).await.usage_err();
        assert!(
            e.starts_with(want) && e.contains("\nUsage"),
            "{cmd} {args:?}: {e}"
        );
    }
}

#[tokio::test]
async fn bad_values() {
    let h = harness().await;
    let usage: &[(&str, &[&str], &str)] = &[
        ("chtab", &["key", "site.value=1"], "malformed key 'key'"),
        (
            "chtab",
            &["key=x", "site.value"],
            "malformed argument 'site.value'",
        ),
        (
            "nodels",
            &["nodetype==x"],
            "nodetype==x: a selection needs table.attribute",
        ),
        // Given nothing to work on, the object commands answer their usage.
        ("mkdef", &[], "No object names were provided.\nUsage: mkdef"),
        (
            "mkdef",
            &["-t", "node"],
            "No object names were provided.\nUsage: mkdef",
        ),
        ("chdef", &[], "No object names were provided.\nUsage: chdef"),
        ("rmdef", &[], "No object names were provided.\nUsage: rmdef"),
    ];
    for (cmd, args, want) in usage {
        let e = h.run(cmd, args).await.usage_err();
        assert!(e.starts_with(want), "{cmd} {args:?}: {e}");
    }
    let failed: &[(&str, &[&str], &str)] = &[
        ("tabdump", &["nosuch"], "No such table: nosuch"),
        ("nodels", &["nodetype.os=~("], "bad regular expression"),
        (
            "lsdef",
            &["-t", "widget"],
            "Type 'widget' is not a valid xCAT object type.",
        ),
        (
            "chdef",
            &["cn1", "nosuch=1"],
            "'nosuch' is not a valid attribute name for an object type of 'node'.",
        ),
    ];
    for (cmd, args, want) in failed {
        let e = h.run(cmd, args).await.err();
        assert!(e.contains(want), "{cmd} {args:?}: {e}");
    }
}

#[tokio::test]
async fn options_still_accepted() {
    let h = harness().await;
    // A lone empty argument is what xCAT's client sends for none.
    let tables = h.run("tabdump", &[""]).await.ok().lines();
    assert_eq!(tables.len(), xcat_db::schema::TABLES.len(), "{tables:?}");
    assert!(tables.iter().any(|t| t == "servicenode"), "{tables:?}");
    assert!(tables.iter().any(|t| t == "networks"), "{tables:?}");
    assert!(h.run("nodels", &["-H", "-S"]).await.ok().lines().is_empty());
    let o = h.run("lsdef", &["--type", "osimage", "--long"]).await;
    assert!(o.ok().lines()[0].contains("Could not find any"));
    let o = h
        .run("lsdef", &["-t", "osimage", "-o", "a", "-o", "b,c"])
        .await;
    // One error line per missing object, the last one as the failure.
    assert!(o.err().contains("named 'c'"), "{}", o.err());
    let kinds = o.kinds();
    assert!(
        kinds
            .iter()
            .any(|(k, t)| *k == "error" && t.contains("named 'a'")),
        "{kinds:?}"
    );
}
