//! The bash completion the package ships, in a bash session with it
//! loaded, against a daemon with a test database: node and group names for
//! a noderange (after a comma too), image names, options from `-h`.

use std::path::Path;
use std::process::Command;

use xcatd_tests::{bin, output_text, repo_root, Daemon};

/// A directory holding `xcatclient` and links to it named after commands,
/// as the package lays them out (the completion finds its commands so).
fn client_links(dir: &Path, commands: &[&str]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::os::unix::fs::symlink(bin("xcatclient"), dir.join("xcatclient")).expect("link");
    for c in commands {
        std::os::unix::fs::symlink("xcatclient", dir.join(c)).expect("link");
    }
}

/// Press Tab after `line` in a bash that has loaded the completion: the
/// function `complete` registered for the line's command is called as
/// readline calls it, and its candidates are returned sorted.
fn complete(d: &Daemon, links: &Path, line: &str) -> Vec<String> {
    let script = r#"
        source "$COMPLETION"
        read -ra COMP_WORDS <<<"$LINE"
        [[ $LINE == *" " ]] && COMP_WORDS+=("")
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        COMP_LINE=$LINE COMP_POINT=${#LINE}
        spec=$(complete -p "${COMP_WORDS[0]}") || exit 3
        fn=$(sed -n 's/.*-F \([^ ]*\) .*/\1/p' <<<"$spec")
        "$fn" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let path = format!(
        "{}:{}",
        links.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", script])
        .env(
            "COMPLETION",
            repo_root().join("packaging/xcatclient.bash-completion"),
        )
        .env("LINE", line)
        .env("PATH", path)
        .env("HOME", &d.home)
        .env("XCATHOST", d.client_config().host)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "completing {line:?}: {}",
        output_text(&out)
    );
    let mut words: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    words.sort();
    words
}

#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn bash_completes_node_group_and_image_names_and_options() {
    let d = Daemon::start();
    d.ok(&["chtab", "node=cn1", "nodelist.groups=rack1,all"]);
    d.ok(&["chtab", "node=cn2", "nodelist.groups=rack1,all"]);
    d.ok(&["chtab", "node=dn1", "nodelist.groups=all"]);
    d.ok(&[
        "chtab",
        "imagename=deb12-compute",
        "osimage.profile=compute",
    ]);
    let links = d.root().join("completion-bin");
    client_links(&links, &["capimage", "packimage", "nodels", "lsdef"]);

    assert_eq!(complete(&d, &links, "capimage c"), ["cn1", "cn2"]);
    assert_eq!(
        complete(&d, &links, "capimage cn1,c"),
        ["cn1,cn1", "cn1,cn2"]
    );
    assert_eq!(complete(&d, &links, "capimage r"), ["rack1"]);
    assert_eq!(complete(&d, &links, "capimage cn1 -o d"), ["deb12-compute"]);
    assert_eq!(complete(&d, &links, "packimage d"), ["deb12-compute"]);
    assert_eq!(
        complete(&d, &links, "capimage cn1 --p"),
        ["--pack", "--profile"]
    );
    // After the noderange, a plain word is the command's own: no names.
    assert!(complete(&d, &links, "capimage cn1 c").is_empty());
    assert_eq!(
        complete(&d, &links, "xcatclient cap"),
        ["capimage"],
        "xcatclient's first word: the commands linked to it"
    );
}
