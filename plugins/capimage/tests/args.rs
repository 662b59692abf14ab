//! capimage's command line in-process: help, version and usage errors
//! answered before any node is contacted (no root, no network).

use xcat_plugin::args::VERSION;
use xcat_plugin::testing::{Harness, Outcome};

async fn run(args: &[&str], nodes: &[&str]) -> Outcome {
    let h = Harness::new(plugin_capimage::handlers()).await;
    h.request("capimage", args).nodes(nodes).run().await
}

#[tokio::test]
async fn help_and_version_are_data() {
    for flag in ["-h", "--help", "-?"] {
        let o = run(&[flag], &[]).await;
        let kinds = o.ok().kinds();
        assert!(kinds.iter().all(|(k, _)| *k == "data"), "{kinds:?}");
        assert!(o.lines()[0].starts_with("Usage: capimage <node>"));
        assert!(o.lines().iter().any(|l| l.contains("--dry-run")));
    }
    for flag in ["-v", "--version"] {
        let o = run(&[flag], &["n1"]).await;
        let want = vec![("data", format!("capimage Version {VERSION} (xcatd-rs)"))];
        assert_eq!(o.ok().kinds(), want);
    }
}

#[tokio::test]
async fn usage_errors_name_the_problem_then_the_usage() {
    let cases: &[(&[&str], &[&str], &str)] = &[
        (&["--bogus"], &["n1"], "unknown option --bogus"),
        (&["-Z"], &["n1"], "unknown option -Z"),
        (
            &["stray"],
            &["n1"],
            "unexpected argument \"stray\" (the node must come first)",
        ),
        (&["-p"], &["n1"], "option -p needs a value"),
        (&["-t", "sysclone"], &["n1"], "-t sysclone is not supported"),
        (
            &["-t", "statelite"],
            &["n1"],
            "unknown image type \"statelite\"; the only type is diskless",
        ),
        (&["--pack", "zip"], &["n1"], "unknown --pack format \"zip\""),
        (
            &["--keep", "many"],
            &["n1"],
            "--keep needs a number, not \"many\"",
        ),
        (
            &["--transport-compress=xz"],
            &["n1"],
            "unknown --transport-compress \"xz\"",
        ),
        (&[], &[], "capimage needs the node to capture"),
        (&[""], &[], "capimage needs the node to capture"),
    ];
    for (args, nodes, want) in cases {
        let e = run(args, nodes).await.usage_err();
        assert!(e.starts_with(want), "{args:?}: {e}");
        assert!(e.contains("\nUsage: capimage <node>"), "{args:?}: {e}");
    }
    let e = run(&[], &["n1", "n2"]).await.usage_err();
    assert!(
        e.contains("one node at a time") && e.contains("n1,n2"),
        "{e}"
    );
}
