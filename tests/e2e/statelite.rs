//! Statelite's table commands through the real daemon and client, on SQLite
//! and PostgreSQL: `litefile`, `litetree`, `ilitefile`, `lslite` with xCAT's
//! line formats and merge order; and the boot-time path, a request sent
//! with `openssl s_client` and no certificate, as xCAT's `rc.statelite`
//! sends it, read back through rc.statelite's own text pipeline. liteimg's
//! link farm and its ramdisk archive, and packimage of a liteimg'd tree (the
//! stateless image, the farm kept), read back with GNU cpio and tar.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use xcat_image::pack::compress::Compression;
use xcat_image::pack::record::PackRecord;
use xcat_image::pack::{Format, STATELITE_ARCHIVE};
use xcatd_tests::netboot::sh;
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
    d.add_litefile(&[
        ("ALL", "/etc/adjtime", "tmpfs"),
        ("ALL", "/var/", "tmpfs"),
        ("slimg", "/var/", "persistent"),
        ("slgroup", "/etc/ssh/", ""),
        ("other", "/srv/", "tmpfs"),
    ]);
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
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn statelite_commands_answer_in_xcat_formats_on_sqlite() {
    with_backend(false, commands_answer_in_xcat_formats);
}

#[test]
#[ignore = "needs PostgreSQL (XCATD_TEST_PG_URL): ./scripts/test-all runs it"]
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
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn a_node_without_a_certificate_gets_its_statelite_entries_and_nothing_else() {
    with_backend(false, boot_time_requests_without_a_certificate);
}

/// A statelite image whose tree is made here: `/etc/adjtime`, `/etc/ssh/`,
/// `/var/`, and `/etc/mtab` as Debian links it. Returns its tree.
fn statelite_image(d: &Daemon) -> std::path::PathBuf {
    let dir = d.install_dir().join("netboot/debian12/x86_64/sl");
    let root = dir.join("rootimg");
    std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/misc")).unwrap();
    std::fs::write(root.join("etc/adjtime"), "0.0 0 0.0\n").unwrap();
    std::fs::write(root.join("etc/ssh/sshd_config"), "Port 22\n").unwrap();
    std::os::unix::fs::symlink("../proc/self/mounts", root.join("etc/mtab")).unwrap();
    d.ok(&[
        "chtab",
        "imagename=slimg",
        "osimage.provmethod=statelite",
        "osimage.osvers=debian12",
        "osimage.osarch=x86_64",
        "osimage.profile=sl",
    ]);
    d.ok(&[
        "chtab",
        "imagename=slimg",
        &format!("linuximage.rootimgdir={}", dir.display()),
    ]);
    for (file, options) in [
        ("/etc/adjtime", ""),
        ("/etc/ssh/", "link"),
        ("/var/", "tmpfs"),
    ] {
        d.ok(&[
            "chtab",
            &format!("image=ALL,file={file}"),
            &format!("litefile.options={options}"),
        ]);
    }
    root
}

/// Every entry of a tree: path, type, link target, mode: what liteimg changes.
fn listing(root: &std::path::Path) -> String {
    sh(&format!(
        "cd '{}' && find . -printf '%p %y %l %m\\n' | sort",
        root.display()
    ))
}

fn liteimg_links_idempotently_and_undoes_removed_entries(d: &Daemon) {
    let root = statelite_image(d);
    let before = listing(&root);
    let first = d.ok(&["liteimg", "slimg"]);
    assert!(
        first.contains("2 entries linked now, 1 already linked")
            && first.contains(&format!("Modifying {} done.", root.display())),
        "{first}"
    );
    assert!(
        !first.contains("packed") && !ramdisk_archive(&root).exists(),
        "no rootfstype is nfs: nothing to pack\n{first}"
    );
    let link = |p: &str| std::fs::read_link(root.join(p)).unwrap();
    assert_eq!(
        link("etc/adjtime"),
        std::path::Path::new("../.statelite/tmpfs/etc/adjtime")
    );
    assert_eq!(
        link(".statelite/tmpfs/etc/ssh"),
        std::path::Path::new("../../../.default/etc/ssh")
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/ssh/sshd_config")).unwrap(),
        "Port 22\n",
        "through the links, the original"
    );
    assert_eq!(
        link("etc/mtab"),
        std::path::Path::new("../proc/self/mounts"),
        "an mtab already linked to the mount list stays"
    );
    assert!(root.join("var/lib/misc").is_dir() && !link_exists(&root.join("var")));
    assert_eq!(
        std::fs::read_to_string(root.join(".statelite/litefile.save")).unwrap(),
        "slimg: link          /etc/adjtime\nslimg: link          /etc/mtab\nslimg: link          /etc/ssh/\nslimg: tmpfs         /var/\n"
    );

    let linked = listing(&root);
    let second = d.ok(&["liteimg", "slimg"]);
    assert!(
        second.contains("0 entries linked now, 3 already linked"),
        "{second}"
    );
    assert_eq!(listing(&root), linked, "a second liteimg changed the tree");

    d.ok(&["chtab", "-d", "image=ALL,file=/etc/ssh/", "litefile"]);
    d.ok(&["chtab", "-d", "image=ALL,file=/etc/adjtime", "litefile"]);
    let undone = d.ok(&["liteimg", "-V", "slimg"]);
    assert!(
        undone.contains("restored /etc/ssh/ from .default") && undone.contains("2 restored"),
        "{undone}"
    );
    let now = listing(&root);
    let kept: Vec<&str> = now
        .lines()
        .filter(|l| !l.starts_with("./.statelite") && !l.starts_with("./.default"))
        .collect();
    let orig: Vec<&str> = before.lines().collect();
    assert_eq!(
        kept, orig,
        "the tree outside liteimg's own directories is back as it was"
    );
}

fn link_exists(p: &std::path::Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

fn liteimg_refuses_what_xcat_refuses(d: &Daemon) {
    let root = statelite_image(d);
    let before = listing(&root);
    d.ok(&["chtab", "image=ALL,file=/opt/", "litefile.options=ro"]);
    d.ok(&["chtab", "image=ALL,file=/opt/a", "litefile.options=ro"]);
    let out = d.client(&["liteimg", "slimg"]);
    let text = xcatd_tests::output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("the directory \"/opt/\" should not be with \"ro\" or \"con\" as its option"),
        "{text}"
    );
    d.ok(&["chtab", "-d", "image=ALL,file=/opt/a", "litefile"]);
    d.ok(&[
        "chtab",
        "image=ALL,file=/opt/",
        "litefile.options=sometimes",
    ]);
    let text = xcatd_tests::output_text(&d.client(&["liteimg", "slimg"]));
    assert!(
        text.contains(" /opt/ has invalid option. The valid options:"),
        "{text}"
    );
    d.ok(&["chtab", "imagename=slimg", "osimage.provmethod=netboot"]);
    let text = xcatd_tests::output_text(&d.client(&["liteimg", "slimg"]));
    assert!(
        text.contains("Please make sure that osimage.provmethod is set to statelite before calling this command."),
        "{text}"
    );
    let text = xcatd_tests::output_text(&d.client(&["liteimg", "nosuch"]));
    assert!(
        text.contains("Cannot find image 'nosuch' from the osimage table."),
        "{text}"
    );
    assert_eq!(listing(&root), before, "a refused liteimg changed the tree");
    d.ok(&["chtab", "imagename=slimg", "osimage.provmethod=statelite"]);
    d.ok(&["chtab", "-d", "image=ALL,file=/opt/", "litefile"]);
    a_planted_symlink_is_refused_and_what_was_done_is_undone_later(d, &root, &before);
}

/// A link the node left in its tree (`/srv` to a server directory): the
/// entry beneath it is refused, nothing is made outside the tree, and
/// what liteimg did before it stopped is recorded, so removing the entries
/// and running it again brings the tree back.
fn a_planted_symlink_is_refused_and_what_was_done_is_undone_later(
    d: &Daemon,
    root: &std::path::Path,
    before: &str,
) {
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("srv")).unwrap();
    d.ok(&["chtab", "image=ALL,file=/srv/data", "litefile.options=link"]);
    let out = d.client(&["liteimg", "slimg"]);
    let text = xcatd_tests::output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("/srv/data in ") && text.contains("name the real path in litefile"),
        "{text}"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    for file in ["/srv/data", "/etc/ssh/", "/etc/adjtime"] {
        d.ok(&["chtab", "-d", &format!("image=ALL,file={file}"), "litefile"]);
    }
    d.ok(&["liteimg", "slimg"]);
    std::fs::remove_file(root.join("srv")).unwrap();
    let kept: Vec<String> = listing(root)
        .lines()
        .filter(|l| !l.starts_with("./.statelite") && !l.starts_with("./.default"))
        .map(str::to_string)
        .collect();
    assert_eq!(kept, before.lines().map(str::to_string).collect::<Vec<_>>());
}

#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn liteimg_makes_the_link_farm_once_and_undoes_removed_entries() {
    with_backend(false, liteimg_links_idempotently_and_undoes_removed_entries);
}

#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn liteimg_refuses_bad_entries_and_non_statelite_images_with_xcat_messages() {
    with_backend(false, liteimg_refuses_what_xcat_refuses);
}

/// Where liteimg puts the ramdisk archive of the tree at `root`.
fn ramdisk_archive(root: &Path) -> PathBuf {
    root.parent().unwrap().join(STATELITE_ARCHIVE)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The type letter (`-`, `d`, `l`) of `path` in a `cpio -tv` or `tar -tv`
/// listing.
fn listed_type(listing: &str, path: &str) -> char {
    let line = listing
        .lines()
        .find(|l| {
            let name = l.split(" -> ").next().unwrap_or(l);
            name.ends_with(&format!(" {path}")) || name.ends_with(&format!(" {path}/"))
        })
        .unwrap_or_else(|| panic!("{path} is not in the archive:\n{listing}"));
    line.chars().next().unwrap()
}

/// `rootfstype=ramdisk`: the whole tree, link farm and liteimg's directories
/// included, as a gzip cpio newc with its record; `nfs`: nothing packed.
fn liteimg_packs_the_tree_for_a_ramdisk_boot(d: &Daemon) {
    let root = statelite_image(d);
    d.ok(&["chtab", "imagename=slimg", "osimage.rootfstype=ramdisk"]);
    let out = d.ok(&["liteimg", "slimg"]);
    let archive = ramdisk_archive(&root);
    let info = archive.with_file_name(format!("{STATELITE_ARCHIVE}.info"));
    assert!(
        out.contains(&format!("liteimg: packed {} (", archive.display()))
            && out.contains("for rootfstype=ramdisk; a node needs"),
        "{out}"
    );
    let rec = PackRecord::parse(&std::fs::read_to_string(&info).unwrap()).unwrap();
    assert_eq!(
        (rec.format, rec.compression),
        (Format::Cpio, Compression::Gzip)
    );
    assert_eq!(rec.size, std::fs::metadata(&archive).unwrap().len());
    let sum = sh(&format!("sha256sum '{}'", archive.display()));
    assert_eq!(sum.split_whitespace().next(), Some(rec.sha256.as_str()));
    assert!(rec.tree_bytes > 0 && rec.ram_mib > 0, "{rec:?}");
    assert_eq!((mode(&archive), mode(&info)), (0o644, 0o644));
    let names = sh(&format!(
        "gzip -dc '{}' | cpio -itv --quiet",
        archive.display()
    ));
    for (path, kind) in [
        ("./etc/adjtime", 'l'),
        ("./.statelite/tmpfs/etc/ssh", 'l'),
        ("./.default/etc/ssh", 'd'),
        ("./.default/etc/adjtime", '-'),
        ("./.statelite/litefile.save", '-'),
        ("./etc/mtab", 'l'),
    ] {
        assert_eq!(listed_type(&names, path), kind, "{path}");
    }
    // What a node's initrd unpacks is the tree itself.
    let unpacked = tempfile::tempdir().unwrap();
    sh(&format!(
        "cd '{}' && gzip -dc '{}' | cpio -idm --quiet",
        unpacked.path().display(),
        archive.display()
    ));
    assert_eq!(listing(unpacked.path()), listing(&root));

    std::fs::remove_file(&archive).unwrap();
    std::fs::remove_file(&info).unwrap();
    d.ok(&["chtab", "imagename=slimg", "osimage.rootfstype=nfs"]);
    let out = d.ok(&["liteimg", "slimg"]);
    assert!(
        !out.contains("packed") && !archive.exists() && !info.exists(),
        "{out}"
    );
}

#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn liteimg_packs_rootimg_statelite_gz_for_rootfstype_ramdisk_only() {
    with_backend(false, liteimg_packs_the_tree_for_a_ramdisk_boot);
}

/// packimage of a liteimg'd tree: the archive is the tree as it was before
/// liteimg (originals, not links; none of liteimg's directories), the link
/// farm is there again afterwards, also after a pack that failed, and the
/// ramdisk archive beside it stays.
fn packimage_packs_a_liteimged_tree_as_the_stateless_image(d: &Daemon) {
    let root = statelite_image(d);
    let before = listing(&root);
    d.ok(&["chtab", "imagename=slimg", "osimage.rootfstype=ramdisk"]);
    d.ok(&["liteimg", "slimg"]);
    let linked = listing(&root);
    let lite = std::fs::read(ramdisk_archive(&root)).unwrap();
    let dir = root.parent().unwrap();
    for (method, name, list, unpack) in [
        (
            "cpio",
            "rootimg.cpio.gz",
            "gzip -dc {a} | cpio -itv --quiet",
            "gzip -dc {a} | cpio -idm --quiet",
        ),
        ("tar", "rootimg.tar.gz", "tar -tvzf {a}", "tar -xzpf {a}"),
    ] {
        let out = d.ok(&["packimage", "-m", method, "-c", "gzip", "slimg"]);
        assert!(
            out.contains("slimg: a statelite tree, packed as the stateless image: the originals of its 2 link entries are in place"),
            "{out}"
        );
        assert_eq!(
            listing(&root),
            linked,
            "packimage -m {method} left the link farm changed"
        );
        assert_eq!(
            std::fs::read(ramdisk_archive(&root)).unwrap(),
            lite,
            "packimage -m {method} touched {STATELITE_ARCHIVE}"
        );
        assert!(dir.join(format!("{STATELITE_ARCHIVE}.info")).is_file());
        let a = format!("'{}'", dir.join(name).display());
        let names = sh(&list.replace("{a}", &a));
        assert!(
            !names.contains("./.statelite") && !names.contains("./.default"),
            "{method}: {names}"
        );
        assert_eq!(listed_type(&names, "./etc/adjtime"), '-', "{method}");
        assert_eq!(listed_type(&names, "./etc/ssh"), 'd', "{method}");
        let unpacked = tempfile::tempdir().unwrap();
        let at = unpacked.path();
        sh(&format!(
            "cd '{}' && {}",
            at.display(),
            unpack.replace("{a}", &a)
        ));
        assert_eq!(
            std::fs::read_to_string(at.join("etc/adjtime")).unwrap(),
            "0.0 0 0.0\n"
        );
        assert_eq!(
            std::fs::read_to_string(at.join("etc/ssh/sshd_config")).unwrap(),
            "Port 22\n"
        );
        assert_eq!(listing(at), before, "{method}: not the tree before liteimg");
    }
    // cpio refuses a file of 4 GiB once the farm is swapped back: put back all the same.
    let big = root.join("var/big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let out = d.client(&["packimage", "-m", "cpio", "slimg"]);
    let text = xcatd_tests::output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("cpio newc cannot hold files of 4 GiB"),
        "{text}"
    );
    std::fs::remove_file(&big).unwrap();
    assert_eq!(
        listing(&root),
        linked,
        "a failed packimage left the link farm changed; daemon log:\n{}",
        d.log()
    );
}

#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn packimage_of_a_liteimged_tree_packs_the_originals_and_keeps_the_link_farm() {
    with_backend(
        false,
        packimage_packs_a_liteimged_tree_as_the_stateless_image,
    );
}
