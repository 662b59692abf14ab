//! capimage options end to end: exclusion lists and their lookup, dry runs,
//! sysclean, table registration and `-o`, usage errors, progress lines and
//! files over 4 GiB. Real daemon, real client, real test-bed nodes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use xcat_remote::testbed::{Mode, Node, NodeOptions, TestBed};
use xcatd_proto::{client, Request, Response};
use xcatd_tests::{bin, output_text as text, shape_uplink, Daemon, DaemonOptions};

/// The node's root as the host sees it.
fn node_root(node: &Node) -> PathBuf {
    Path::new("/proc")
        .join(node.init_pid.to_string())
        .join("root")
}

/// Run the real client as `args[0]` from the directory `cwd` (for options
/// whose relative paths the daemon resolves against the client's cwd).
fn client_in(d: &Daemon, cwd: &Path, args: &[&str]) -> Output {
    let links = d.root().join("cwd-bin");
    std::fs::create_dir_all(&links).expect("link dir");
    let link = links.join(args[0]);
    if !link.exists() {
        std::os::unix::fs::symlink(bin("xcatclient"), &link).expect("link");
    }
    Command::new(&link)
        .args(&args[1..])
        .current_dir(cwd)
        .env("HOME", &d.home)
        .env("XCATHOST", d.addr.to_string())
        .env("XCATCLIENT_READ_TIMEOUT", "120")
        .output()
        .expect("run client")
}

/// Run a capture that must succeed; returns stdout and stderr together.
fn capture_ok(d: &Daemon, args: &[&str]) -> String {
    let t = Instant::now();
    let out = d.client(args);
    let all = text(&out);
    assert!(
        out.status.success(),
        "{args:?} failed:\n{all}\ndaemon log:\n{}",
        d.log()
    );
    eprintln!("{args:?} took {:.1} s", t.elapsed().as_secs_f64());
    all
}

/// Run a command that must fail with exit status 1; returns its output.
fn fails(out: Output, what: &str) -> String {
    let all = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what} should fail with 1:\n{all}"
    );
    all
}

/// Entries of a directory, or empty when it does not exist.
fn entries(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A daemon reaching `node` whose share directory is `share`.
fn daemon_with_share(node: &Node, share: &Path) -> Daemon {
    Daemon::for_nodes(
        &[node],
        &format!("share_dir = {:?}", share.display().to_string()),
    )
}

/// The exclusion list file a (dry) run says it used.
fn exlist_source(output: &str) -> String {
    let line = output
        .lines()
        .find(|l| l.contains("exclusion list "))
        .unwrap_or_else(|| panic!("no exclusion list line in:\n{output}"));
    line.rsplit("exclusion list ")
        .next()
        .unwrap()
        .trim()
        .to_string()
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn exclusion_lists_lookup_order_reincludes_includes_and_dry_run() {
    let t0 = Instant::now();
    let node = TestBed::node("exl");
    node.sh(
        "mkdir -p /srv/exl/drop/keepdir /srv/exl/stay /srv/exl/incdrop /srv/exl/lookup-only /srv/exl/xonly && \
         echo gone > /srv/exl/drop/gone.txt && echo k > /srv/exl/drop/keepdir/k1 && \
         echo k > /srv/exl/drop/keepfile.txt && echo s > /srv/exl/stay/s.txt && \
         echo i > /srv/exl/incdrop/i.txt && echo l > /srv/exl/lookup-only/l.txt && \
         echo x > /srv/exl/xonly/x.txt && mkdir -p /srv/exl/deep/keep/sub /srv/exl/deep/other && \
         echo k > /srv/exl/deep/keep/sub/k2 && echo o > /srv/exl/deep/other/o.txt && \
         echo f > /srv/exl/deep/file.txt && echo f > /srv/exl/deepfile && chmod 0750 /srv/exl/deep",
    );
    let share = tempfile::tempdir().unwrap();
    let d = daemon_with_share(&node, share.path());
    let dir = d.image_dir("compute");
    let dry = |extra: &[&str]| -> String {
        let mut args = vec!["capimage", node.name.as_str(), "--dry-run"];
        args.extend_from_slice(extra);
        let out = d.client(&args);
        let all = text(&out);
        assert!(out.status.success(), "{args:?}:\n{all}\n{}", d.log());
        all
    };

    // No file anywhere: the built-in list; a dry run shows it and the estimate.
    let out = dry(&[]);
    assert_eq!(exlist_source(&out), "(built-in default)", "{out}");
    for p in [
        "./tmp/*",
        "./proc/*",
        "./xcatpost/*",
        "./install/*",
        "./mnt/otherfs/*",
    ] {
        assert!(
            out.contains(&format!("exclude {p}")),
            "dry run does not show {p}:\n{out}"
        );
    }
    assert!(out.contains("dry run: nothing transferred"), "{out}");
    let estimate = out
        .lines()
        .find(|l| l.contains("dry run:"))
        .and_then(|l| l.split("about ").nth(1))
        .unwrap_or_else(|| panic!("no estimate:\n{out}"));
    assert!(
        estimate.contains("MiB") || estimate.contains("GiB"),
        "estimate: {estimate}"
    );
    assert!(
        !estimate.starts_with("0 B") && !estimate.starts_with("0.0"),
        "estimate: {estimate}"
    );

    // The share directory's generic file.
    let share_deb = share.path().join("netboot/debian");
    std::fs::create_dir_all(&share_deb).unwrap();
    let share_file = share_deb.join("compute.imgcapture.exlist");
    std::fs::write(&share_file, "./srv/exl/share-only*\n").unwrap();
    let out = dry(&[]);
    assert_eq!(
        exlist_source(&out),
        share_file.display().to_string(),
        "{out}"
    );
    assert!(out.contains("exclude ./srv/exl/share-only*"), "{out}");
    assert!(
        !out.contains("exclude ./tmp/*"),
        "a file replaces the built-in list:\n{out}"
    );

    // A file of the same name under <install_dir>/custom beats the share directory.
    let custom = d.install_dir().join("custom/netboot/debian");
    std::fs::create_dir_all(&custom).unwrap();
    let custom_generic = custom.join("compute.imgcapture.exlist");
    std::fs::write(&custom_generic, "./srv/exl/custom-generic*\n").unwrap();
    assert_eq!(
        exlist_source(&dry(&[])),
        custom_generic.display().to_string()
    );

    // More specific names beat less specific ones; `capimage.exlist` is accepted.
    let by_os = custom.join("compute.debian12.capimage.exlist");
    std::fs::write(&by_os, "./srv/exl/by-os*\n").unwrap();
    assert_eq!(exlist_source(&dry(&[])), by_os.display().to_string());
    let specific = custom.join("compute.debian12.x86_64.imgcapture.exlist");
    std::fs::write(
        &specific,
        "# the lookup file\n./tmp/*\n./srv/exl/lookup-only\n",
    )
    .unwrap();
    let out = dry(&["-V"]);
    assert_eq!(exlist_source(&out), specific.display().to_string(), "{out}");
    // A share-dir file with the most specific name still loses to custom/.
    std::fs::write(
        share_deb.join("compute.debian12.x86_64.imgcapture.exlist"),
        "./nothing\n",
    )
    .unwrap();
    assert_eq!(exlist_source(&dry(&[])), specific.display().to_string());

    // -x FILE, relative to the client's cwd, beats every lookup file.
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(
        cwd.path().join("mine.exlist"),
        "# capimage test list\n\n./tmp/*\n./srv/exl/drop/*\n+./srv/exl/drop/keep*\n  ./srv/exl/xonly/  \n\
         ./srv/exl/deep*\n+./srv/exl/deep/keep\n#INCLUDE:more.exlist#\n",
    )
    .unwrap();
    std::fs::write(cwd.path().join("more.exlist"), "./srv/exl/incdrop/*\n").unwrap();
    let out = client_in(
        &d,
        cwd.path(),
        &["capimage", &node.name, "-x", "mine.exlist", "--dry-run"],
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert_eq!(
        exlist_source(&all),
        cwd.path().join("mine.exlist").display().to_string(),
        "{all}"
    );
    for l in [
        "exclude ./srv/exl/drop/*",
        "include ./srv/exl/drop/keep*",
        "exclude ./srv/exl/incdrop/*",
        "exclude ./srv/exl/xonly\n",
        "exclude ./srv/exl/deep*",
        "include ./srv/exl/deep/keep\n",
    ] {
        assert!(all.contains(l), "dry run lacks {l:?}:\n{all}");
    }
    // A missing -x file is a clear error, before anything else.
    let out = client_in(
        &d,
        cwd.path(),
        &["capimage", &node.name, "-x", "nosuch.exlist"],
    );
    let all = fails(out, "a missing -x file");
    assert!(
        all.contains(&cwd.path().join("nosuch.exlist").display().to_string()),
        "{all}"
    );

    // None of the dry runs (nor the refused run) transferred anything.
    assert!(
        !dir.exists(),
        "dry runs created {}: {:?}",
        dir.display(),
        entries(&dir)
    );

    // A real capture with -x: `+` re-includes, #INCLUDE pulls in more.
    let out = client_in(
        &d,
        cwd.path(),
        &["capimage", &node.name, "-x", "mine.exlist"],
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}\n{}", d.log());
    let r = dir.join("rootimg/srv/exl");
    assert!(r.join("drop").is_dir(), "the excluded tree's top stays");
    assert!(!r.join("drop/gone.txt").exists(), "excluded file captured");
    assert_eq!(
        std::fs::read_to_string(r.join("drop/keepdir/k1")).unwrap(),
        "k\n",
        "+ did not re-include"
    );
    assert_eq!(
        std::fs::read_to_string(r.join("drop/keepfile.txt")).unwrap(),
        "k\n"
    );
    assert_eq!(
        std::fs::read_to_string(r.join("stay/s.txt")).unwrap(),
        "s\n"
    );
    assert!(r.join("incdrop").is_dir());
    assert!(
        entries(&r.join("incdrop")).is_empty(),
        "#INCLUDE ignored: {:?}",
        entries(&r.join("incdrop"))
    );
    assert!(
        !r.join("xonly").exists(),
        "a pattern without /* excludes the directory itself"
    );
    // A re-include beneath a directory the exclude pattern names itself: the
    // directory stays (with its mode), only the re-included subtree inside.
    assert_eq!(
        std::fs::read_to_string(r.join("deep/keep/sub/k2")).unwrap(),
        "k\n",
        "+ under ./deep* lost"
    );
    assert_eq!(
        entries(&r.join("deep")),
        vec!["keep"],
        "excluded entries beside the re-included one"
    );
    assert_eq!(
        std::fs::metadata(r.join("deep")).unwrap().mode() & 0o7777,
        0o750
    );
    assert!(!r.join("deepfile").exists());
    // -x overrides the lookup file, which excluded lookup-only.
    assert!(r.join("lookup-only/l.txt").is_file());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("capimage-report.json")).unwrap())
            .unwrap();
    let excl = report["exclusions"].to_string();
    assert!(
        excl.contains("./srv/exl/incdrop/*") && excl.contains("./srv/exl/drop/*"),
        "{excl}"
    );

    // A real capture without -x applies the lookup file.
    capture_ok(&d, &["capimage", &node.name]);
    let r = dir.join("rootimg/srv/exl");
    assert!(
        !r.join("lookup-only").exists(),
        "the lookup file was not applied"
    );
    assert!(r.join("xonly/x.txt").is_file());
    assert!(r.join("drop/gone.txt").is_file());
    eprintln!("exclusion test took {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn sysclean_cleans_and_reports_and_no_sysclean_keeps() {
    let t0 = Instant::now();
    let node = TestBed::node("scl");
    node.sh(
        "set -e; mkdir -p /etc/ssh /var/lib/dbus; \
         for t in ed25519 ecdsa; do ssh-keygen -q -t $t -N '' -f /etc/ssh/ssh_host_${t}_key </dev/null; done; \
         echo 0123456789abcdef0123456789abcdef > /etc/machine-id; \
         echo 0123456789abcdef0123456789abcdef > /var/lib/dbus/machine-id; \
         printf 'UUID=1234-abcd / ext4 errors=remount-ro 0 1\\n/dev/sda2 none swap sw 0 0\\n\
proc /proc proc defaults 0 0\\ntmpfs /tmp tmpfs defaults 0 0\\n# a comment\\n' > /etc/fstab",
    );
    let d = Daemon::for_nodes(&[&node], "");
    let dir = d.image_dir("compute");
    let rootimg = dir.join("rootimg");
    let keys = [
        "ssh_host_ed25519_key",
        "ssh_host_ed25519_key.pub",
        "ssh_host_ecdsa_key",
        "ssh_host_ecdsa_key.pub",
    ];

    let out = capture_ok(&d, &["capimage", &node.name]);
    for k in keys {
        assert!(
            !rootimg.join("etc/ssh").join(k).exists(),
            "{k} survived sysclean"
        );
    }
    // The node's own key of another name is not a host key by sysclean's rule.
    assert!(rootimg.join("etc/ssh/xtb_host_ed25519_key").is_file());
    let mid = std::fs::metadata(rootimg.join("etc/machine-id")).unwrap();
    assert!(mid.is_file() && mid.len() == 0, "machine-id not emptied");
    assert!(
        !rootimg.join("var/lib/dbus/machine-id").exists(),
        "dbus machine-id kept"
    );
    let fstab = std::fs::read_to_string(rootimg.join("etc/fstab")).unwrap();
    let lines: Vec<&str> = fstab.lines().collect();
    assert_eq!(lines.len(), 5, "{fstab}");
    assert!(
        lines[0].starts_with('#') && lines[0].contains("UUID=1234-abcd / ext4"),
        "{fstab}"
    );
    assert!(
        lines[1].starts_with('#') && lines[1].contains("/dev/sda2 none swap"),
        "{fstab}"
    );
    assert_eq!(lines[2], "proc /proc proc defaults 0 0", "{fstab}");
    assert_eq!(lines[3], "tmpfs /tmp tmpfs defaults 0 0", "{fstab}");
    assert_eq!(lines[4], "# a comment");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("capimage-report.json")).unwrap())
            .unwrap();
    let actions = report["sysclean"]
        .as_array()
        .expect("sysclean array")
        .clone();
    let has = |action: &str, path: &str| {
        actions
            .iter()
            .any(|a| a["action"] == action && a["path"].as_str().is_some_and(|p| p.ends_with(path)))
    };
    for k in keys {
        assert!(
            has("removed", &format!("etc/ssh/{k}")),
            "report lacks removal of {k}: {actions:?}"
        );
        assert!(
            out.contains(&format!("etc/ssh/{k}")),
            "output lacks {k}:\n{out}"
        );
    }
    assert!(has("truncated", "etc/machine-id"), "{actions:?}");
    assert!(has("removed", "var/lib/dbus/machine-id"), "{actions:?}");
    let fstab_action = actions
        .iter()
        .find(|a| a["path"].as_str().is_some_and(|p| p.ends_with("etc/fstab")))
        .unwrap_or_else(|| panic!("no fstab action: {actions:?}"));
    assert!(
        fstab_action.to_string().contains("local disk"),
        "{fstab_action}"
    );
    for p in ["etc/machine-id", "var/lib/dbus/machine-id", "etc/fstab"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("capimage: ") && l.contains(p)),
            "output does not list the action on {p}:\n{out}"
        );
    }

    // --no-sysclean: everything stays as on the node.
    let out = capture_ok(&d, &["capimage", &node.name, "--no-sysclean"]);
    let nr = node_root(&node);
    for k in keys {
        let (a, b) = (rootimg.join("etc/ssh").join(k), nr.join("etc/ssh").join(k));
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{k}"
        );
        assert!(
            !out.lines()
                .any(|l| l.starts_with("capimage: removed") && l.contains(&format!("etc/ssh/{k} "))),
            "--no-sysclean removed {k}:\n{out}"
        );
        // kept, a private host key is a secret the audit names
        let named = out.contains(&format!("/etc/ssh/{k}: a PEM private key"));
        assert_eq!(named, !k.ends_with(".pub"), "{k}:\n{out}");
    }
    for p in ["etc/machine-id", "var/lib/dbus/machine-id", "etc/fstab"] {
        assert_eq!(
            std::fs::read(rootimg.join(p)).unwrap(),
            std::fs::read(nr.join(p)).unwrap(),
            "{p} changed under --no-sysclean"
        );
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("capimage-report.json")).unwrap())
            .unwrap();
    let cleaned: Vec<&serde_json::Value> = report["sysclean"]
        .as_array()
        .expect("sysclean array")
        .iter()
        .filter(|a| !a["action"].as_str().unwrap_or("").starts_with("skeleton"))
        .collect();
    assert!(
        cleaned.is_empty(),
        "--no-sysclean still cleaned: {cleaned:?}"
    );
    eprintln!("sysclean test took {:.1} s", t0.elapsed().as_secs_f64());
}

/// `lsdef` output as attribute -> value.
fn attrs(lsdef: &str) -> std::collections::BTreeMap<String, String> {
    lsdef
        .lines()
        .filter_map(|l| l.trim().split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect()
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn capture_registers_tables_and_osimage_option() {
    let t0 = Instant::now();
    let node = TestBed::node("tab");
    let kernel = node.sh("uname -r").trim().to_string();
    let d = Daemon::for_nodes(&[&node], "");
    let dir = d.image_dir("compute");

    capture_ok(&d, &["capimage", &node.name]);
    let a = attrs(&d.ok(&["lsdef", "-t", "osimage", "debian12-x86_64-netboot-compute"]));
    for (k, v) in [
        ("imagetype", "linux"),
        ("provmethod", "netboot"),
        ("osname", "Linux"),
        ("osvers", "debian12"),
        ("osarch", "x86_64"),
        ("profile", "compute"),
        ("kernelver", kernel.as_str()),
    ] {
        assert_eq!(a.get(k).map(String::as_str), Some(v), "{k}: {a:?}");
    }
    assert_eq!(
        a.get("rootimgdir"),
        Some(&dir.display().to_string()),
        "{a:?}"
    );
    let desc = a.get("description").cloned().unwrap_or_default();
    assert!(
        desc.starts_with(&format!("captured from {} at ", node.name)),
        "{desc}"
    );

    // -o IMAGE: the tree goes to linuximage.rootimgdir.
    let elsewhere = tempfile::tempdir().unwrap();
    let mydir = elsewhere.path().join("images/myimg");
    d.ok(&[
        "chtab",
        "imagename=myimg",
        "osimage.osvers=debian12",
        "osimage.osarch=x86_64",
        "osimage.profile=compute",
    ]);
    d.ok(&[
        "chtab",
        "imagename=myimg",
        &format!("linuximage.rootimgdir={}", mydir.display()),
    ]);
    let out = capture_ok(
        &d,
        &[
            "capimage",
            &node.name,
            "-o",
            "myimg",
            "-i",
            "eth1",
            "-n",
            "igb,e1000e",
        ],
    );
    assert!(out.contains("myimg"), "{out}");
    assert!(
        mydir.join("rootimg/etc/os-release").is_file(),
        "nothing in {}",
        mydir.display()
    );
    assert!(mydir.join("capimage-report.json").is_file());
    let a = attrs(&d.ok(&["lsdef", "-t", "osimage", "myimg"]));
    assert_eq!(
        a.get("rootimgdir"),
        Some(&mydir.display().to_string()),
        "{a:?}"
    );
    assert_eq!(
        a.get("nodebootif").map(String::as_str),
        Some("eth1"),
        "{a:?}"
    );
    assert_eq!(
        a.get("netdrivers").map(String::as_str),
        Some("igb,e1000e"),
        "{a:?}"
    );
    assert_eq!(a.get("kernelver"), Some(&kernel), "{a:?}");
    assert!(
        a.get("description")
            .is_some_and(|v| v.starts_with("captured from ")),
        "{a:?}"
    );
    assert_eq!(
        a.get("provmethod").map(String::as_str),
        Some("netboot"),
        "{a:?}"
    );

    // Mismatched osvers / osarch and unknown images are refused before any transfer.
    let bad = elsewhere.path().join("images/bad");
    for (img, col, val) in [
        ("rhimg", "osimage.osvers", "rhels9.4"),
        ("ppcimg", "osimage.osarch", "ppc64le"),
    ] {
        let other = if col == "osimage.osvers" {
            "osimage.osarch=x86_64"
        } else {
            "osimage.osvers=debian12"
        };
        d.ok(&[
            "chtab",
            &format!("imagename={img}"),
            &format!("{col}={val}"),
            other,
            "osimage.profile=compute",
        ]);
        d.ok(&[
            "chtab",
            &format!("imagename={img}"),
            &format!("linuximage.rootimgdir={}", bad.display()),
        ]);
        let all = fails(d.client(&["capimage", &node.name, "-o", img]), img);
        assert!(all.contains(img) && all.contains(val), "{img}: {all}");
        assert!(
            all.contains(if col == "osimage.osvers" {
                "debian12"
            } else {
                "x86_64"
            }),
            "{all}"
        );
        assert!(
            !all.contains("checking"),
            "{img}: the node was contacted:\n{all}"
        );
    }
    d.ok(&[
        "chtab",
        "imagename=relimg",
        "osimage.osvers=debian12",
        "osimage.osarch=x86_64",
    ]);
    d.ok(&[
        "chtab",
        "imagename=relimg",
        "linuximage.rootimgdir=images/rel",
    ]);
    let all = fails(
        d.client(&["capimage", &node.name, "-o", "relimg"]),
        "relative rootimgdir",
    );
    assert!(all.contains("not an absolute path"), "{all}");
    let all = fails(
        d.client(&["capimage", &node.name, "-o", "nosuchimg"]),
        "unknown image",
    );
    assert!(
        all.contains("nosuchimg") && all.contains("not defined"),
        "{all}"
    );
    assert!(!bad.exists(), "a refused capture created {}", bad.display());
    // The default image is untouched by all this.
    assert!(dir.join("rootimg/etc/os-release").is_file());
    eprintln!("tables test took {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn usage_errors_exit_one_with_a_clear_message() {
    // Nodes here are never reached: ssh goes to a closed loopback port.
    let d = Daemon::start_with(DaemonOptions {
        extra_config:
            "[ssh]\nknown_hosts = \"known_hosts\"\nconnect_timeout = 2\noptions = [\"Port=1\"]\n"
                .into(),
        ..Default::default()
    });
    d.ok(&[
        "chtab",
        "node=compute",
        "nodetype.os=debian12",
        "nodetype.arch=x86_64",
        "nodetype.profile=compute",
    ]);
    for n in ["u1", "u2"] {
        d.ok(&["chtab", &format!("node={n}"), "nodelist.groups=compute,all"]);
        d.ok(&["chtab", &format!("node={n}"), "hosts.ip=127.0.0.1"]);
    }
    let usage = "Usage: capimage <node>";
    for (args, want) in [
        (&["capimage", "u1", "--bogus"][..], "unknown option --bogus"),
        (&["capimage", "u1", "-Z"], "unknown option -Z"),
        (
            &["capimage", "u1", "stray"],
            "unexpected argument \"stray\"",
        ),
        (
            &["capimage", "u1", "-t", "sysclone"],
            "sysclone is not supported",
        ),
        (
            &["capimage", "u1", "-t", "statelite"],
            "only type is diskless",
        ),
        (&["capimage", "u1", "--pack", "zip"], "unknown --pack"),
        (
            &["capimage", "u1", "--keep", "many"],
            "--keep needs a number",
        ),
        (&["capimage", "u1", "-p"], "-p needs a value"),
        (&["capimage"], "needs the node"),
    ] {
        let all = fails(d.client(args), &format!("{args:?}"));
        assert!(all.contains(want), "{args:?}: no {want:?} in:\n{all}");
        assert!(all.contains(usage), "{args:?}: no usage text in:\n{all}");
    }
    let all = fails(d.client(&["capimage", "u1,u2"]), "two nodes");
    assert!(
        all.contains("one node at a time") && all.contains("u1,u2"),
        "{all}"
    );
    let all = fails(d.client(&["capimage", "compute"]), "a group of two");
    assert!(all.contains("u1") && all.contains("u2"), "{all}");

    let out = d.client(&["capimage", "-h"]);
    assert!(out.status.success(), "{}", text(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains(usage) && help.contains("--dry-run"), "{help}");
    let out = d.client(&["capimage", "--version"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("capimage "));

    // Missing attributes name the table column to set (no group supplies them).
    d.ok(&["chtab", "node=bare", "nodelist.groups=all"]);
    d.ok(&["chtab", "node=bare", "hosts.ip=127.0.0.1"]);
    let all = fails(d.client(&["capimage", "bare"]), "no nodetype");
    assert!(all.contains("nodetype.os"), "{all}");
    d.ok(&["chtab", "node=bare", "nodetype.os=debian12"]);
    let all = fails(d.client(&["capimage", "bare"]), "no arch");
    assert!(all.contains("nodetype.arch"), "{all}");
    d.ok(&["chtab", "node=bare", "nodetype.arch=x86_64"]);
    let all = fails(d.client(&["capimage", "bare"]), "no profile");
    assert!(all.contains("nodetype.profile"), "{all}");
    // -p supplies the profile; the node is then contacted (and unreachable here).
    let all = fails(
        d.client(&["capimage", "bare", "-p", "compute", "--dry-run"]),
        "unreachable",
    );
    assert!(!all.contains("nodetype.profile"), "{all}");
    assert!(all.contains("checking bare (127.0.0.1)"), "{all}");
    assert!(
        !d.install_dir().join("netboot").exists(),
        "a refused capture created files"
    );
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn a_node_whose_root_is_not_on_disk_is_refused() {
    let node = TestBed::node_with("ovl", &NodeOptions::light());
    let fstype = node.sh("awk '$2 == \"/\" {t=$3} END {print t}' /proc/self/mounts");
    assert_eq!(
        fstype.trim(),
        "overlay",
        "the light node's / should be overlayfs"
    );
    let d = Daemon::for_nodes(&[&node], "");
    let all = fails(d.client(&["capimage", &node.name]), "overlay root");
    assert!(
        all.contains(&format!(
            "{} is not a diskful node: / is overlay",
            node.name
        )),
        "{all}"
    );
    assert!(
        !d.image_dir("compute").exists(),
        "a refused capture created the image directory"
    );
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn progress_lines_stream_about_once_a_second() {
    let node = TestBed::node("prg");
    // A few hundred MB that neither zstd nor sparse detection shrink, and many files.
    node.sh(
        "set -e; mkdir -p /srv/bulk/many; head -c 200M /dev/urandom > /srv/bulk/random.bin; \
         i=0; while [ $i -lt 300 ]; do head -c 4096 /dev/urandom > /srv/bulk/many/f$i; i=$((i+1)); done",
    );
    // A link of 400 Mbit/s out of the node (token bucket on its interface):
    // the capture lasts several seconds however fast this machine is.
    shape_uplink(&node, "400mbit", "256kb", "200ms");
    let name = node.name.clone();
    let d = Daemon::for_nodes(&[&node], "");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (got, total) = rt.block_on(async {
        let mut cfg = d.client_config();
        cfg.read_timeout = Some(Duration::from_secs(120));
        let (mut tx, mut rx) = client::connect(&cfg).await.expect("connect");
        let mut req = Request::new("capimage", vec![]);
        req.noderange = Some(name.clone());
        let t0 = Instant::now();
        tx.send(&req).await.expect("send");
        let mut got: Vec<(Duration, Response)> = Vec::new();
        while let Some(r) = rx.next().await.expect("read") {
            got.push((t0.elapsed(), r));
        }
        let total = t0.elapsed();
        (got, total)
    });
    let all: Vec<String> = got
        .iter()
        .flat_map(|(_, r)| r.items.iter().map(|e| format!("{}: {}", e.name, e.text)))
        .collect();
    let dump = all.join("\n");
    eprintln!(
        "capture over the protocol took {:.1} s:\n{dump}",
        total.as_secs_f64()
    );

    // serverdone last, exactly once, and success.
    assert!(got.last().is_some_and(|(_, r)| r.is_serverdone()), "{dump}");
    assert_eq!(
        got.iter().filter(|(_, r)| r.is_serverdone()).count(),
        1,
        "{dump}"
    );
    assert!(
        got.iter().all(|(_, r)| r.errorcode() == 0),
        "{dump}\n{}",
        d.log()
    );
    // ASCII only, everywhere.
    for (_, r) in &got {
        for e in &r.items {
            assert!(e.text.is_ascii(), "non-ASCII text: {:?}", e.text);
        }
    }
    let sinfo: Vec<(Duration, &str)> = got
        .iter()
        .flat_map(|(t, r)| r.texts("sinfo").map(move |s| (*t, s)))
        .collect();
    assert!(
        sinfo.len() >= 2,
        "expected several progress lines in {:.1} s:\n{dump}",
        total.as_secs_f64()
    );
    // At most about one a second.
    assert!(
        sinfo.len() as f64 <= total.as_secs_f64() + 1.0,
        "{} progress lines in {:.1} s",
        sinfo.len(),
        total.as_secs_f64()
    );
    for w in sinfo.windows(2) {
        let gap = w[1].0.saturating_sub(w[0].0);
        assert!(
            gap >= Duration::from_millis(500),
            "progress lines {gap:?} apart:\n{dump}"
        );
    }
    // Each line: bytes, files, estimate, rate; bytes grow; a time-left estimate appears.
    let mut last_bytes = 0.0;
    for (_, l) in &sinfo {
        assert!(l.starts_with(&format!("capturing {name}: ")), "{l}");
        assert!(
            l.contains(" of ~") && l.contains("%)") && l.contains(" files, ") && l.contains("/s"),
            "{l}"
        );
        let done: f64 = l
            .split(": ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no byte count in {l}"));
        let unit = l
            .split(": ")
            .nth(1)
            .and_then(|s| s.split(' ').nth(1))
            .unwrap_or("");
        let scale = match unit {
            "B" => 1.0,
            "KiB" => 1024.0,
            "MiB" => 1048576.0,
            "GiB" => 1073741824.0,
            other => panic!("unit {other} in {l}"),
        };
        assert!(done * scale >= last_bytes, "progress went backwards: {l}");
        last_bytes = done * scale;
    }
    assert!(
        sinfo.iter().any(|(_, l)| l.contains(" left")),
        "no time-left estimate:\n{dump}"
    );
    assert!(
        last_bytes > 50.0 * 1048576.0,
        "progress never passed 50 MiB:\n{dump}"
    );
    // The final summary: image, directory, counts, duration, throughput and next steps.
    let info: Vec<&str> = got.iter().flat_map(|(_, r)| r.texts("info")).collect();
    let summary = info
        .iter()
        .find(|l| l.starts_with(&format!("capimage: captured {name} into ")))
        .unwrap_or_else(|| panic!("no summary:\n{dump}"));
    assert!(
        summary.contains("debian12-x86_64-netboot-compute")
            && summary.contains("entries")
            && summary.contains("/s"),
        "{summary}"
    );
    assert!(info.iter().any(|l| l.contains("next: packimage")), "{dump}");
    let rootimg = d.image_dir("compute").join("rootimg/srv/bulk");
    assert_eq!(
        std::fs::metadata(rootimg.join("random.bin")).unwrap().len(),
        200 << 20
    );
    assert_eq!(entries(&rootimg.join("many")).len(), 300);
    drop(d);
    drop(node);
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn files_over_4_gib_survive_sparse() {
    let t0 = Instant::now();
    let node = TestBed::node_with(
        "big",
        &NodeOptions {
            edgecases: true,
            big_edgecases: true,
            mode: Mode::Full,
            ..Default::default()
        },
    );
    eprintln!("big node up in {:.1} s", t0.elapsed().as_secs_f64());
    let src = node_root(&node).join("srv/edgecases/sparse-5g");
    let src_meta = std::fs::metadata(&src).expect("the node has the 5 GiB sparse file");
    assert_eq!(src_meta.len(), 5 << 30);
    let d = Daemon::for_nodes(&[&node], "");
    let t = Instant::now();
    capture_ok(&d, &["capimage", &node.name]);
    eprintln!(
        "capture with a 5 GiB sparse file took {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let got = d
        .image_dir("compute")
        .join("rootimg/srv/edgecases/sparse-5g");
    let meta = std::fs::metadata(&got).expect("the big file was captured");
    assert_eq!(meta.len(), 5 << 30, "size");
    assert!(
        meta.blocks() * 512 < 8 << 20,
        "the big file was expanded: {} blocks",
        meta.blocks()
    );
    let offset = (4u64 << 30) + 4096;
    let want = b"beyond 4 GiB";
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(&got).unwrap();
    f.seek(SeekFrom::Start(offset - 16)).unwrap();
    let mut buf = vec![0u8; 16 + want.len() + 16];
    f.read_exact(&mut buf).unwrap();
    assert_eq!(&buf[..16], &[0u8; 16], "zeros before the data");
    assert_eq!(
        &buf[16..16 + want.len()],
        want,
        "content at the data offset"
    );
    assert_eq!(&buf[16 + want.len()..], &[0u8; 16], "zeros after the data");
    assert_eq!(meta.mtime(), src_meta.mtime(), "mtime");
    assert_eq!(meta.mode(), src_meta.mode(), "mode");
    eprintln!("big file test took {:.1} s", t0.elapsed().as_secs_f64());
}
