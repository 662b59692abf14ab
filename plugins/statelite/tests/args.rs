//! The statelite commands' command lines in-process: `-h`, `-v` and the
//! usage errors.

use xcat_plugin::args::VERSION;
use xcat_plugin::testing::Harness;

#[tokio::test]
async fn help_version_and_usage_errors() {
    let h = Harness::new(plugin_statelite::handlers()).await;
    for cmd in ["litefile", "litetree", "ilitefile", "lslite", "liteimg"] {
        let o = h.run(cmd, &["-h"]).await;
        assert_eq!(o.ok().kinds()[0].0, "data", "{cmd}");
        assert!(
            o.lines().join("\n").contains("sage"),
            "{cmd}: {:?}",
            o.lines()
        );
        assert_eq!(
            h.run(cmd, &["-v"]).await.ok().lines(),
            [format!("{cmd} Version {VERSION} (xcatd-rs)")]
        );
        let e = h.run(cmd, &["--bogus"]).await.usage_err();
        assert!(e.starts_with("unknown option --bogus"), "{cmd}: {e}");
    }
    for (args, want) in [
        (&[][..], "liteimg needs an image name"),
        (&["a", "b"], "unexpected argument \"b\""),
    ] {
        let e = h.run("liteimg", args).await.usage_err();
        assert!(e.starts_with(want), "{args:?}: {e}");
        assert!(e.ends_with("  liteimg [-v|--version]"), "{e}");
    }
}

/// Without a node (none given, none matching the peer), litefile and
/// litetree answer their usage as information, as xCAT does, and ilitefile
/// without an image too.
#[tokio::test]
async fn no_node_or_image_is_answered_with_the_usage() {
    let h = Harness::new(plugin_statelite::handlers()).await;
    for (cmd, want) in [
        ("litefile", "Usage: litefile <noderange>"),
        ("litetree", "Usage: litetree <noderange>"),
        ("ilitefile", "Usage: ilitefile <imagename>"),
    ] {
        let o = h.run(cmd, &[]).await;
        assert!(
            o.ok().lines()[0].starts_with(want),
            "{cmd}: {:?}",
            o.lines()
        );
    }
}
