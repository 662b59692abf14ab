//! xdsh's command line in-process: help, version and usage errors answered
//! before any node is contacted (no ssh, no network).

use xcat_plugin::args::VERSION;
use xcat_plugin::testing::{Harness, Outcome};

async fn run(args: &[&str], nodes: &[&str]) -> Outcome {
    let h = Harness::new(plugin_xdsh::handlers()).await;
    h.request("xdsh", args).nodes(nodes).run().await
}

#[tokio::test]
async fn help_and_version_are_data() {
    let o = run(&["-h"], &["n1"]).await;
    let kinds = o.ok().kinds();
    assert!(kinds.iter().all(|(k, _)| *k == "data"), "{kinds:?}");
    assert!(o.lines()[0].starts_with("Usage: xdsh <noderange>"));
    // xCAT's xdsh spells the version -V; its -v ("verify") is not served.
    for flag in ["-V", "--version"] {
        let o = run(&[flag], &["n1"]).await;
        let want = vec![("data", format!("xdsh Version {VERSION} (xcatd-rs)"))];
        assert_eq!(o.ok().kinds(), want);
    }
    let e = run(&["-v", "ls"], &["n1"]).await.usage_err();
    assert!(e.starts_with("unknown option -v\n"), "{e}");
}

#[tokio::test]
async fn usage_errors() {
    let cases: &[(&[&str], &[&str], &str)] = &[
        (&["-q", "ls"], &["n1"], "unknown option -q"),
        (&[], &["n1"], "no command given"),
        (&[""], &["n1"], "no command given"),
        (&["-f", "2"], &["n1"], "no command given"),
        (&["-f"], &["n1"], "option -f needs a value"),
        (&["-l", "-f", "ls"], &["n1"], "option -l needs a value"),
        (
            &["--user=", "ls"],
            &["n1"],
            "-l needs a user name, not \"\"",
        ),
        (
            &["-f", "0", "ls"],
            &["n1"],
            "-f needs a positive number, not \"0\"",
        ),
        (
            &["--timeout", "x", "ls"],
            &["n1"],
            "-t needs a positive number of seconds, not \"x\"",
        ),
        (&["ls"], &[], "no nodes given"),
    ];
    for (args, nodes, want) in cases {
        let e = run(args, nodes).await.usage_err();
        assert!(e.starts_with(want), "{args:?}: {e}");
        assert!(e.ends_with(plugin_xdsh::USAGE), "{args:?}: {e}");
    }
}

#[test]
fn flags_after_the_command_belong_to_it() {
    use xcat_plugin::args::Parsed;
    let words = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for (args, want) in [
        (&["ls", "-h"][..], "ls -h"),
        (&["uname", "-V", "--version"], "uname -V --version"),
        (&["-f", "3", "--", "-h"], "-h"),
    ] {
        match plugin_xdsh::parse_args(&words(args)) {
            Ok(Parsed::Run(a)) => assert_eq!(a.command, want),
            other => panic!("{args:?}: {other:?}"),
        }
    }
}
