//! nodeset's command line in-process: help, version, usage errors and the
//! refused state words.

use xcat_plugin::args::VERSION;
use xcat_plugin::testing::Harness;

const USAGE_END: &str = "  nodeset [-v|--version]";

#[tokio::test]
async fn help_and_version_are_data() {
    let h = Harness::new(plugin_nodeset::handlers()).await;
    for flag in ["-h", "--help", "-?"] {
        let o = h.run("nodeset", &[flag]).await;
        assert_eq!(o.ok().kinds()[0].0, "data");
        assert_eq!(o.lines()[0], "Usage:");
        assert!(
            o.lines()[1].starts_with("  nodeset <noderange>"),
            "{:?}",
            o.lines()
        );
    }
    let o = h.run("nodeset", &["-v"]).await;
    assert_eq!(
        o.ok().lines(),
        [format!("nodeset Version {VERSION} (xcatd-rs)")]
    );
}

#[tokio::test]
async fn usage_errors() {
    let h = Harness::new(plugin_nodeset::handlers()).await;
    for (args, want) in [
        (&[][..], "nodeset needs a state"),
        (&["--bogus"], "unknown option --bogus"),
        (&["boot", "extra"], "unexpected argument \"extra\""),
        (
            &["install"],
            "The options \"install\", \"netboot\", and \"statelite\" are deprecated",
        ),
        (&["netboot"], "The options \"install\""),
        (&["dance"], "Unknown state dance requested"),
        (&["osimage="], "osimage= needs an image name"),
        (&["runimage=x,osimage=y"], "Chained states"),
    ] {
        let o = h.request("nodeset", args).nodes(&["n1"]).run().await;
        let e = o.usage_err();
        assert!(e.starts_with(want), "{args:?}: {e}");
        assert!(e.ends_with(USAGE_END), "{args:?}: {e}");
    }
    // A state without nodes.
    let e = h.run("nodeset", &["boot"]).await.usage_err();
    assert!(e.starts_with("nodeset needs a noderange"), "{e}");
}
