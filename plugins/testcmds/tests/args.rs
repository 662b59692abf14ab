//! The test commands in-process: their arguments, help and version.

use xcat_plugin::args::VERSION;
use xcat_plugin::testing::{Harness, Outcome};

async fn run(cmd: &str, args: &[&str]) -> Outcome {
    let h = Harness::new(plugin_testcmds::handlers()).await;
    h.run(cmd, args).await
}

const COMMANDS: &[&str] = &[
    "teststream",
    "testsleep",
    "testsub",
    "testcodes",
    "testpanic",
];

#[tokio::test]
async fn help_and_version_for_every_command() {
    for cmd in COMMANDS {
        let o = run(cmd, &["-h"]).await;
        let kinds = o.ok().kinds();
        assert_eq!(kinds.len(), 1, "{kinds:?}");
        assert_eq!(kinds[0].0, "data");
        assert!(
            kinds[0].1.starts_with(&format!("Usage: {cmd}")),
            "{kinds:?}"
        );
        let o = run(cmd, &["--version"]).await;
        assert_eq!(
            o.ok().kinds(),
            [("data", format!("{cmd} Version {VERSION} (xcatd-rs)"))]
        );
    }
}

#[tokio::test]
async fn runs() {
    assert_eq!(
        run("teststream", &["3"]).await.ok().lines(),
        ["line 0", "line 1", "line 2"]
    );
    assert_eq!(run("testsleep", &["0"]).await.ok().lines(), ["slept"]);
    let o = run("testcodes", &["2", "-1"]).await;
    let codes: Vec<i32> = o.ok().responses.iter().map(|r| r.errorcode()).collect();
    assert_eq!(codes, [2, -1]);
    // The harness runs no sub-request: testsub sees its error.
    let o = run("testsub", &["2"]).await;
    let kinds = o.ok().kinds();
    assert_eq!(kinds[0], ("data", "before".to_string()));
    assert_eq!(kinds[1].0, "error");
    assert_eq!(
        kinds[2],
        ("data", "after (sub-request errorcode 1)".to_string())
    );
}

#[tokio::test]
async fn usage_errors() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("teststream", &[], "teststream needs a number"),
        ("teststream", &["x"], "not a count: \"x\""),
        ("teststream", &["1", "2"], "unexpected argument \"2\""),
        (
            "testsleep",
            &["1", "/tmp/m", "x"],
            "unexpected argument \"x\"",
        ),
        ("testsub", &["--bogus"], "unknown option --bogus"),
        ("testcodes", &["2", "two"], "not an errorcode: \"two\""),
        ("testpanic", &["now"], "unexpected argument \"now\""),
    ];
    for (cmd, args, want) in cases {
        let e = run(cmd, args).await.usage_err();
        assert!(e.starts_with(want), "{cmd} {args:?}: {e}");
        assert!(
            e.contains(&format!("\nUsage: {cmd}")),
            "{cmd} {args:?}: {e}"
        );
    }
}
