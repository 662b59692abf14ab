//! packimage's command line in-process: help, version, usage errors, and a
//! well-formed line reaching the image lookup (no root, no image needed).

use xcat_plugin::args::VERSION;
use xcat_plugin::testing::{Harness, Outcome};

async fn run(args: &[&str]) -> Outcome {
    let h = Harness::new(plugin_packimage::handlers()).await;
    h.run("packimage", args).await
}

#[tokio::test]
async fn help_and_version_are_data() {
    let o = run(&["-h"]).await;
    let kinds = o.ok().kinds();
    assert!(kinds.iter().all(|(k, _)| *k == "data"), "{kinds:?}");
    assert!(o.lines()[0].starts_with("Usage: packimage"));
    let o = run(&["img", "--version"]).await;
    let want = vec![("data", format!("packimage Version {VERSION} (xcatd-rs)"))];
    assert_eq!(o.ok().kinds(), want);
}

#[tokio::test]
async fn usage_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["-x", "img"], "unknown option -x"),
        (
            &[],
            "packimage needs the name of the image (osimage) to pack",
        ),
        (&["a", "b"], "packimage packs one image; unexpected \"b\""),
        (&["-m"], "option -m needs a value"),
        (
            &["-m", "zip", "img"],
            "unknown archive method \"zip\" (cpio, tar or squashfs)",
        ),
        (
            &["--compress=none", "img"],
            "unknown compressor \"none\" (gzip, pigz, xz or zstd)",
        ),
        (&["-c", "bzip2", "img"], "unknown compressor \"bzip2\""),
    ];
    for (args, want) in cases {
        let e = run(args).await.usage_err();
        assert!(e.starts_with(want), "{args:?}: {e}");
        assert!(e.contains("\nUsage: packimage"), "{args:?}: {e}");
    }
}

#[tokio::test]
async fn a_good_line_looks_the_image_up() {
    let e = run(&["-m", "tar", "-c", "xz", "nosuch"]).await.err();
    assert!(e.contains("nosuch is not defined in linuximage"), "{e}");
}
