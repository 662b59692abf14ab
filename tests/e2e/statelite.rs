//! Statelite's table commands through the real daemon and client, on SQLite
//! and PostgreSQL: `litefile`, `litetree`, `ilitefile`, `lslite` with xCAT's
//! line formats and merge order; and the boot-time path, a request sent
//! with `openssl s_client` and no certificate, as xCAT's `rc.statelite`
//! sends it, read back through rc.statelite's own text pipeline.

use std::io::Write;
use std::process::{Command, Stdio};

use xcatd_tests::Daemon;

use crate::tables::with_backend;

/// An image, its group and a node of it; the node's address is loopback, so
/// a request from this host without a certificate is that node's.
fn define(d: &Daemon) {
    d.ok(&[
        "chtab",
        "imagename=slimg",
        "osimage.provmethod=statelite",
        "osimage.groups=slgroup",
    ]);
    for (node, ip) in [("cn1", "127.0.0.1"), ("cn2", "10.99.70.2")] {
        let n = format!("node={node}");
        d.ok(&["chtab", &n, "nodelist.groups=compute"]);
        d.ok(&["chtab", &n, &format!("hosts.ip={ip}")]);
    }
    d.ok(&["chtab", "node=compute", "nodetype.provmethod=slimg"]);
    d.ok(&[
        "chtab",
        "node=compute",
        "statelite.statemnt=10.99.70.1:/state",
    ]);
    for (image, file, options) in [
        ("ALL", "/etc/adjtime", "tmpfs"),
        ("ALL", "/var/", "tmpfs"),
        ("slimg", "/var/", "persistent"),
        ("slgroup", "/etc/ssh/", ""),
        ("other", "/srv/", "tmpfs"),
    ] {
        d.ok(&[
            "chtab",
            &format!("image={image},file={file}"),
            &format!("litefile.options={options}"),
        ]);
    }
    d.ok(&[
        "chtab",
        "priority=2",
        "litetree.image=ALL",
        "litetree.directory=10.99.70.1:/trees/$node",
        "litetree.mntopts=nfsvers=4",
    ]);
    d.ok(&[
        "chtab",
        "priority=1.5",
        "litetree.image=slimg",
        "litetree.directory=10.99.70.1:/trees/common",
    ]);
}

const CN1_FILES: &str = "cn1: tmpfs         /etc/adjtime
cn1: link          /etc/mtab
cn1: tmpfs,rw      /etc/ssh/
cn1: persistent    /var/
";

fn commands_answer_in_xcat_formats(d: &Daemon) {
    define(d);
    assert_eq!(d.ok(&["litefile", "cn1"]), CN1_FILES);
    assert_eq!(
        d.ok(&["litetree", "cn1"]),
        "cn1: 10.99.70.1:/trees/common\ncn1: 10.99.70.1:/trees/cn1 :nfsvers=4\n"
    );
    assert_eq!(
        d.ok(&["ilitefile", "slimg"]),
        CN1_FILES.replace("cn1:", "slimg:")
    );
    let ls = d.ok(&["lslite", "cn1"]);
    for want in [
        ">>>Node: cn1",
        "Osimage: slimg",
        "Persistent directory (statelite table):\n        10.99.70.1:/state\n",
        "Litefiles (litefile table):\n        tmpfs         /etc/adjtime\n",
        "        persistent    /var/\n",
        "Litetree path (litetree table):\n        1.5, 10.99.70.1:/trees/common\n        2, 10.99.70.1:/trees/cn1 :nfsvers=4\n",
    ] {
        assert!(ls.contains(want), "lslite cn1 lacks {want:?}:\n{ls}");
    }
    assert_eq!(
        d.ok(&["lslite", "-i", "slimg"]),
        "        tmpfs         /etc/adjtime\n        link          /etc/mtab\n        tmpfs,rw      /etc/ssh/\n        persistent    /var/\n"
    );
    let missing = d.client(&["lslite", "-i", "nosuch"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        xcatd_tests::output_text(&missing).contains("The osimage named 'nosuch' is not defined."),
        "{}",
        xcatd_tests::output_text(&missing)
    );
    d.ok(&["chtab", "node=cn2", "nodetype.provmethod="]);
    d.ok(&["chtab", "node=compute", "nodetype.provmethod="]);
    let none = d.client(&["litefile", "cn2"]);
    assert!(
        xcatd_tests::output_text(&none)
            .contains("cn2 does not have os, arch, or profile defined in nodetype table"),
        "{}",
        xcatd_tests::output_text(&none)
    );
}

#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): real daemon and client"]
fn statelite_commands_answer_in_xcat_formats_on_sqlite() {
    with_backend(false, commands_answer_in_xcat_formats);
}

#[test]
#[ignore = "needs PostgreSQL (XCATD_TEST_PG_URL): the same on a shared database"]
fn statelite_commands_answer_in_xcat_formats_on_postgres() {
    with_backend(true, commands_answer_in_xcat_formats);
}

/// `request` sent as rc.statelite sends it: `openssl s_client -quiet`, no
/// certificate; the raw reply.
fn s_client(d: &Daemon, request: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &d.addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client (Debian package openssl)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{request}\n").as_bytes())
        .expect("send");
    let out = child.wait_with_output().expect("s_client");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// rc.statelite's pipeline: drop tags and blank lines, trim, keep what
/// follows the first `:` (`field` 2 of `awk -F:`), or the second word.
fn as_rc_statelite_reads(reply: &str, by_colon: bool) -> Vec<String> {
    let mut tagless = String::new();
    let mut in_tag = false;
    for c in reply.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => tagless.push(c),
            _ => {}
        }
    }
    tagless
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let l = l.trim_start();
            let field = if by_colon {
                l.split(':').nth(1).unwrap_or("").to_string()
            } else {
                l.split_whitespace().nth(1).unwrap_or("").to_string()
            };
            field.trim_start().to_string()
        })
        .collect()
}

/// A node at boot, without a certificate: its litefile and litetree
/// entries (for the node its address names, whatever noderange it sends);
/// nothing else.
fn boot_time_requests_without_a_certificate(d: &Daemon) {
    define(d);
    let files = s_client(d, "<xcatrequest><command>litefile</command></xcatrequest>");
    // The closing response's `xcatdsource` (the server's name, no `:`)
    // becomes one empty line, as it does against xCAT's daemon.
    let lines = as_rc_statelite_reads(&files, true);
    let entries: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), entries.len() + 1, "raw reply:\n{files}");
    assert_eq!(
        entries,
        vec![
            "tmpfs         /etc/adjtime",
            "link          /etc/mtab",
            "tmpfs,rw      /etc/ssh/",
            "persistent    /var/"
        ],
        "raw reply:\n{files}"
    );
    let trees = s_client(d, "<xcatrequest><command>litetree</command></xcatrequest>");
    let lines = as_rc_statelite_reads(&trees, false);
    assert!(
        lines.contains(&"10.99.70.1:/trees/common".to_string())
            && lines.contains(&"10.99.70.1:/trees/cn1".to_string()),
        "{lines:?}\nraw reply:\n{trees}"
    );
    let other = s_client(
        d,
        "<xcatrequest><command>litefile</command><noderange>cn2</noderange></xcatrequest>",
    );
    assert!(
        other.contains("cn1: ") && !other.contains("cn2: "),
        "a peer without a certificate got another node's entries:\n{other}"
    );
    for cmd in ["tabdump", "lslite", "ilitefile", "nodels", "nodeset"] {
        let reply = s_client(
            d,
            &format!("<xcatrequest><command>{cmd}</command><arg>policy</arg></xcatrequest>"),
        );
        assert!(
            reply.contains("<errorcode>1</errorcode>") && !reply.contains("\"1\",\"root\""),
            "{cmd} without a certificate was not refused:\n{reply}"
        );
    }
}

#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): real daemon, openssl s_client"]
fn a_node_without_a_certificate_gets_its_statelite_entries_and_nothing_else() {
    with_backend(false, boot_time_requests_without_a_certificate);
}
