//! lsxcatd in-process: its report items, help and usage errors.

use xcat_plugin::args::VERSION;
use xcat_plugin::testing::{Harness, Outcome};

async fn run(args: &[&str]) -> Outcome {
    let h = Harness::new(plugin_lsxcatd::handlers()).await;
    h.run("lsxcatd", args).await
}

#[tokio::test]
async fn report_items() {
    let version = format!("Version {VERSION} (xcatd-rs)");
    assert_eq!(run(&["-v"]).await.ok().lines(), [version.as_str()]);
    assert_eq!(run(&["--database"]).await.ok().lines(), ["dbengine=SQLite"]);
    // -v is one item of the report: it combines with the others.
    let o = run(&["-v", "-d"]).await;
    assert_eq!(o.ok().lines(), [version.as_str(), "dbengine=SQLite"]);
    let o = run(&["-a"]).await;
    assert_eq!(
        o.ok().lines(),
        [version.as_str(), "dbengine=SQLite", "commands=lsxcatd"]
    );
}

#[tokio::test]
async fn help_is_data() {
    for flag in ["-h", "--help"] {
        let o = run(&[flag]).await;
        assert_eq!(o.ok().kinds().len(), 1);
        assert_eq!(o.kinds()[0].0, "data");
        assert!(o.lines()[0].starts_with("Usage: lsxcatd"));
    }
}

#[tokio::test]
async fn usage_errors() {
    for (args, want) in [
        (&[][..], "lsxcatd needs an option"),
        (&[""], "lsxcatd needs an option"),
        (&["--bogus"], "unknown option --bogus"),
        (&["-d", "extra"], "unexpected argument \"extra\""),
    ] {
        let e = run(args).await.usage_err();
        assert!(e.starts_with(want), "{args:?}: {e}");
        assert!(
            e.ends_with("\nUsage: lsxcatd [-v|--version] [-d|--database] [-a|--all] [-h|--help]")
        );
    }
}
