//! Archives written by a hostile node. Each must fail (or be neutralised) without
//! writing anything outside the staging directory.
mod common;

use common::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use xcat_image::tar::testing::TarBuilder;
use xcat_image::tar::TarError;
use xcat_image::{extract, scan_tree, ExtractError, ExtractOptions, Manifest};

struct Bed {
    _top: tempfile::TempDir,
    staging: std::path::PathBuf,
    canary: std::path::PathBuf,
    before: Manifest,
}

/// The bed of the root tier's tests: their archives carry owners (and
/// device nodes) that only root may apply.
fn root_bed() -> Bed {
    require_root_and_tools(&[]);
    bed()
}

fn bed() -> Bed {
    let top = tempfile::tempdir().unwrap();
    let staging = top.path().join("staging");
    let canary = top.path().join("canary");
    std::fs::create_dir(&staging).unwrap();
    std::fs::create_dir_all(canary.join("etc")).unwrap();
    std::fs::write(canary.join("etc/shadow"), b"root:secret\n").unwrap();
    std::fs::write(canary.join("file"), b"precious\n").unwrap();
    let before = scan_tree(&canary).unwrap();
    Bed {
        _top: top,
        staging,
        canary,
        before,
    }
}

impl Bed {
    fn run(&self, archive: &[u8]) -> Result<xcat_image::ExtractSummary, ExtractError> {
        extract(archive, &self.staging, &ExtractOptions::default())
    }

    fn canary_intact(&self) {
        let after = scan_tree(&self.canary).unwrap();
        assert_eq!(
            self.before.diff(&after),
            vec![],
            "the canary directory outside the staging root changed"
        );
        // nothing appeared next to the staging dir either
        let names: Vec<_> = std::fs::read_dir(self.staging.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names.len(),
            2,
            "unexpected entries beside staging: {names:?}"
        );
    }

    fn c(&self) -> Vec<u8> {
        self.canary.to_str().unwrap().as_bytes().to_vec()
    }
}

fn assert_err_names(
    r: Result<xcat_image::ExtractSummary, ExtractError>,
    needle: &str,
) -> ExtractError {
    let e = r.expect_err("hostile archive must be refused");
    let msg = e.to_string();
    assert!(msg.contains(needle), "error should name {needle:?}: {msg}");
    e
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn dotdot_entries_abort_naming_the_entry() {
    let b = root_bed();
    let up = format!("../{}", b.canary.file_name().unwrap().to_str().unwrap());
    for name in [
        format!("{up}/file"),
        "./a/../../x".to_string(),
        "ok/../../../../etc/passwd".into(),
    ] {
        let a = TarBuilder::new()
            .file(b"fine", b"1")
            .file(name.as_bytes(), b"owned")
            .end();
        let e = assert_err_names(b.run(&a), &name);
        assert!(matches!(e, ExtractError::UnsafePath { .. }), "{e:?}");
    }
    b.canary_intact();
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn absolute_paths_are_made_relative() {
    let b = root_bed();
    let mut abs = b.c();
    abs.extend_from_slice(b"/file");
    let a = TarBuilder::new()
        .file(&abs, b"owned")
        .file(b"/etc/passwd2", b"x")
        .end();
    let s = b.run(&a).unwrap();
    assert!(
        s.notes.iter().any(|n| n.contains("leading '/' removed")),
        "{:?}",
        s.notes
    );
    let inside = b
        .staging
        .join(b.canary.strip_prefix("/").unwrap())
        .join("file");
    assert_eq!(std::fs::read(inside).unwrap(), b"owned");
    assert!(b.staging.join("etc/passwd2").exists());
    b.canary_intact();
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn nothing_is_written_through_an_image_symlink() {
    let b = root_bed();
    // symlink to / then a file under it; symlink to the canary then a file and a dir under it
    let cases: Vec<Vec<u8>> = vec![
        TarBuilder::new()
            .symlink(b"root", b"/")
            .file(b"root/tmp/pwned", b"x")
            .end(),
        TarBuilder::new()
            .symlink(b"esc", &b.c())
            .file(b"esc/file", b"x")
            .end(),
        TarBuilder::new()
            .symlink(b"esc", &b.c())
            .dir(b"esc/newdir")
            .end(),
        TarBuilder::new()
            .symlink(b"esc", &b.c())
            .hardlink(b"esc/etc/hl", b"x")
            .end(),
        TarBuilder::new()
            .symlink(b"rel", b"../../..")
            .file(b"rel/x", b"x")
            .end(),
        // a directory replaced by a symlink, then an entry "through" the old name
        TarBuilder::new()
            .dir(b"d")
            .symlink(b"d", &b.c())
            .file(b"d/file", b"x")
            .end(),
    ];
    for (i, a) in cases.iter().enumerate() {
        let e = b.run(a).expect_err(&format!("case {i} must fail"));
        assert!(e.to_string().contains("symbolic link"), "case {i}: {e}");
        b.canary_intact();
    }
    // a regular file entry replaces a symlink instead of writing through it
    let mut target = b.c();
    target.extend_from_slice(b"/file");
    let a = TarBuilder::new()
        .symlink(b"x", &target)
        .file(b"x", b"new")
        .end();
    b.run(&a).unwrap();
    assert_eq!(std::fs::read(b.staging.join("x")).unwrap(), b"new");
    b.canary_intact();
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn hard_links_only_to_entries_of_this_archive() {
    let b = root_bed();
    let shadow_nlink = std::fs::metadata("/etc/shadow").map(|m| m.nlink()).ok();
    let mut canary_shadow = b.c();
    canary_shadow.extend_from_slice(b"/etc/shadow");
    // pre-existing file in the staging dir that the archive did not create
    std::fs::create_dir_all(b.staging.join("etc")).unwrap();
    std::fs::write(b.staging.join("etc/shadow"), b"stale").unwrap();
    for (i, target) in [
        &b"/etc/shadow"[..],
        b"etc/shadow",
        &canary_shadow,
        b"../../../../etc/shadow",
        b"later",
    ]
    .iter()
    .enumerate()
    {
        let a = TarBuilder::new()
            .hardlink(b"evil", target)
            .file(b"later", b"x")
            .end();
        let e = b.run(&a).expect_err(&format!("case {i}"));
        assert!(
            matches!(e, ExtractError::HardLink { .. }),
            "case {i}: {e:?}"
        );
        assert!(e.to_string().contains("evil"), "{e}");
        assert!(!b.staging.join("evil").exists());
    }
    assert_eq!(
        std::fs::metadata("/etc/shadow").map(|m| m.nlink()).ok(),
        shadow_nlink
    );
    assert_eq!(
        std::fs::metadata(b.staging.join("etc/shadow"))
            .unwrap()
            .nlink(),
        1
    );
    // a valid one works
    let a = TarBuilder::new()
        .file(b"a", b"x")
        .hardlink(b"b", b"./a")
        .end();
    b.run(&a).unwrap();
    assert_eq!(std::fs::metadata(b.staging.join("b")).unwrap().nlink(), 2);
    b.canary_intact();
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn replacing_devices_fifos_and_files_never_writes_through_them() {
    let b = root_bed();
    // a FIFO then a regular file of the same name: opening the FIFO would hang
    // a char device (1,3 = /dev/null) then a regular file: writing would vanish
    let a = TarBuilder::new()
        .file(b"etc/passwd", b"root:x:0:0\n")
        .node(b"etc/passwd", b'3', (1, 3))
        .node(b"p", b'6', (0, 0))
        .file(b"p", b"after fifo")
        .node(b"n", b'3', (1, 3))
        .file(b"n", b"after dev")
        .node(b"blk", b'4', (7, 0))
        .end();
    let s = b.run(&a).unwrap();
    let m = std::fs::symlink_metadata(b.staging.join("etc/passwd")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!((m.rdev() >> 8, m.rdev() & 0xff), (1, 3));
    assert_eq!(std::fs::read(b.staging.join("p")).unwrap(), b"after fifo");
    assert_eq!(std::fs::read(b.staging.join("n")).unwrap(), b"after dev");
    assert!(std::fs::symlink_metadata(b.staging.join("blk"))
        .unwrap()
        .file_type()
        .is_block_device());
    assert_eq!(s.manifest.get(b"n").unwrap().unwrap().size, 9);
    b.canary_intact();
}

#[test]
fn declared_10gb_with_short_body_is_truncated_without_preallocation() {
    let b = bed();
    let a = TarBuilder::new()
        .declared(b"huge", b'0', 10_000_000_000, &[7u8; 4096])
        .0;
    let e = b.run(&a).expect_err("short body");
    assert!(
        matches!(e, ExtractError::Archive(TarError::Truncated { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("huge"), "{e}");
    let m = std::fs::metadata(b.staging.join("huge")).unwrap();
    assert!(
        m.len() <= 4096 && m.blocks() <= 16,
        "nothing preallocated: {} bytes, {} blocks",
        m.len(),
        m.blocks()
    );

    // the same with a pax size and a sparse map claiming a 10 GB file
    let mut body = b"1\n0\n1024\n".to_vec();
    body.resize(512, 0);
    body.extend_from_slice(&[1u8; 100]);
    let a = TarBuilder::new()
        .pax(&[
            ("GNU.sparse.major", b"1"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", b"sp"),
            ("GNU.sparse.realsize", b"10000000000"),
            ("size", b"1536"),
        ])
        .declared(b"GNUSparseFile.0/sp", b'0', 1536, &body)
        .0;
    let e = b.run(&a).expect_err("short sparse body");
    assert!(
        matches!(e, ExtractError::Archive(TarError::Truncated { .. })),
        "{e:?}"
    );
    assert!(
        std::fs::metadata(b.staging.join("sp")).unwrap().len() < 4096,
        "size applied only after the full body"
    );
    b.canary_intact();
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn truncated_streams_are_errors() {
    let b = root_bed();
    let full = TarBuilder::new()
        .file(b"a", &[1u8; 2000])
        .file(b"b", b"x")
        .end();
    for cut in [100usize, 512, 700, 2560, 3072 + 512, full.len() - 1024] {
        let e = b.run(&full[..cut]).expect_err(&format!("cut at {cut}"));
        assert!(
            matches!(e, ExtractError::Archive(TarError::Truncated { .. })),
            "cut {cut}: {e:?}"
        );
    }
    // an empty stream is not an empty image
    assert!(b.run(&[]).is_err());
    b.run(&full).unwrap();
    b.canary_intact();
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn metadata_limits_and_corruption() {
    let b = root_bed();
    // a pax header declaring 2 MiB: refused before reading it
    let a = TarBuilder::new()
        .declared(b"PaxHeader", b'x', 2 << 20, &[b'a'; 4096])
        .0;
    let e = b.run(&a).unwrap_err();
    assert!(
        matches!(e, ExtractError::Archive(TarError::Limit { .. })),
        "{e:?}"
    );
    // a path over the limit
    let long = vec![b'a'; 5000];
    let a = TarBuilder::new()
        .pax(&[("path", &long)])
        .file(b"short", b"x")
        .end();
    assert!(matches!(
        b.run(&a).unwrap_err(),
        ExtractError::Archive(TarError::Limit { .. })
    ));
    // an xattr value over 64 KiB
    let big = vec![b'v'; 70000];
    let a = TarBuilder::new()
        .pax(&[("SCHILY.xattr.user.big", &big)])
        .file(b"f", b"x")
        .end();
    assert!(matches!(
        b.run(&a).unwrap_err(),
        ExtractError::Archive(TarError::Limit { .. })
    ));
    // a bad checksum
    let mut a = TarBuilder::new().file(b"f", b"x").end();
    a[0] = b'g';
    assert!(matches!(
        b.run(&a).unwrap_err(),
        ExtractError::Archive(TarError::Checksum { .. })
    ));
    // an unsupported namespace is skipped with a warning, not applied
    let a = TarBuilder::new()
        .pax(&[
            ("SCHILY.xattr.system.evil", b"1"),
            ("SCHILY.xattr.user.ok", b"1"),
        ])
        .file(b"g", b"x")
        .end();
    let s = b.run(&a).unwrap();
    assert!(
        s.warnings.iter().any(|w| w.contains("system.evil")),
        "{:?}",
        s.warnings
    );
    assert!(s
        .manifest
        .get(b"g")
        .unwrap()
        .unwrap()
        .xattrs
        .contains_key(&b"user.ok"[..]));
    b.canary_intact();
}

#[test]
fn uid_minus_one_is_refused() {
    let b = bed();
    let a = TarBuilder::new()
        .pax(&[("uid", b"4294967295")])
        .file(b"f", b"x")
        .end();
    let e = b.run(&a).unwrap_err();
    assert!(e.to_string().contains("uid"), "{e}");
    let _ = Path::new("/");
    b.canary_intact();
}

/// The value of xattr `name` of `path` itself (not followed), if any.
fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// A FIFO at `path` with a writer blocked until someone opens it for reading: the
/// returned flag turns true the moment anything opens the FIFO (as a watchdog device
/// would start counting down when opened). `release` unblocks the writer afterwards.
fn watched_fifo(path: &Path) -> (std::sync::Arc<std::sync::atomic::AtomicBool>, impl FnOnce()) {
    use std::sync::atomic::{AtomicBool, Ordering};
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let opened = std::sync::Arc::new(AtomicBool::new(false));
    let (p, flag) = (path.to_path_buf(), opened.clone());
    let writer = std::thread::spawn(move || {
        let _w = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        flag.store(true, Ordering::SeqCst);
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    let p = path.to_path_buf();
    let release = move || {
        let _r = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&p);
        writer.join().unwrap();
    };
    (opened, release)
}

/// An ACL naming a user, which only the image's etc/passwd can resolve.
const NAMED_ACL: &[u8] = b"user::rw-\nuser:alice:r--\ngroup::r--\nmask::r--\nother::---\n";

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn the_images_passwd_is_never_opened_unless_it_is_a_regular_file() {
    use std::sync::atomic::Ordering;
    let b = root_bed();
    std::fs::create_dir(b.staging.join("etc")).unwrap();
    let (opened, release) = watched_fifo(&b.staging.join("etc/passwd"));
    let a = TarBuilder::new()
        .pax(&[("SCHILY.acl.access", NAMED_ACL)])
        .file(b"f", b"x")
        .end();
    let s = b.run(&a);
    let was_opened = opened.load(Ordering::SeqCst);
    release();
    let s = s.unwrap();
    assert!(
        !was_opened,
        "the extractor opened the image's etc/passwd FIFO"
    );
    assert!(
        s.warnings.iter().any(|w| w.contains("alice")),
        "the ACL naming an unknown user is reported: {:?}",
        s.warnings
    );
    b.canary_intact();
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn a_deferred_acl_never_lands_on_what_replaced_its_file() {
    let b = root_bed();
    let passwd = b"root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/:/bin/sh\n";
    let a = TarBuilder::new()
        .file(b"etc/passwd", passwd)
        .pax(&[("SCHILY.acl.access", NAMED_ACL)])
        .file(b"f", b"x")
        .node(b"f", b'6', (0, 0))
        .pax(&[("SCHILY.acl.access", NAMED_ACL)])
        .file(b"g", b"x")
        .end();
    let s = b.run(&a).unwrap();
    let f = b.staging.join("f");
    assert!(std::fs::symlink_metadata(&f).unwrap().file_type().is_fifo());
    assert_eq!(
        xattr(&f, "system.posix_acl_access"),
        None,
        "ACL on the FIFO"
    );
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("no longer the entry extracted")),
        "{:?}",
        s.warnings
    );
    // the file that stayed got its ACL, alice resolved with the image's passwd
    let v = xattr(&b.staging.join("g"), "system.posix_acl_access").expect("ACL of g");
    assert!(
        v.windows(8).any(|w| w == [2, 0, 4, 0, 0xe8, 3, 0, 0]),
        "{v:?}"
    );
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn a_default_acl_is_not_inherited_by_files_extracted_below_it() {
    let b = root_bed();
    let default = b"user::rwx\nuser:1234:rwx\ngroup::r-x\nmask::rwx\nother::r-x\n";
    let a = TarBuilder::new()
        .pax(&[("SCHILY.acl.default", default)])
        .dir(b"d")
        .file(b"d/f", b"x")
        .dir(b"d/sub")
        .end();
    b.run(&a).unwrap();
    for child in ["d/f", "d/sub"] {
        let p = b.staging.join(child);
        assert_eq!(
            xattr(&p, "system.posix_acl_access"),
            None,
            "{child} inherited an ACL it never had"
        );
        assert_eq!(xattr(&p, "system.posix_acl_default"), None, "{child}");
    }
    let v = xattr(&b.staging.join("d"), "system.posix_acl_default").expect("d's default ACL");
    assert!(
        v.windows(8).any(|w| w == [2, 0, 7, 0, 0xd2, 4, 0, 0]),
        "{v:?}"
    );
}

/// `n` entries of a type the extractor skips (each with a note), then `tail`.
fn skipped_entries(n: usize) -> TarBuilder {
    (0..n).fold(TarBuilder::new(), |t, i| {
        t.declared(format!("s{i}").as_bytes(), b'Q', 0, b"")
    })
}

/// The error of an extraction that must fail (without printing a whole summary).
fn refused(r: Result<xcat_image::ExtractSummary, ExtractError>) -> ExtractError {
    match r {
        Ok(s) => panic!("accepted over the budget: {} entries", s.entries),
        Err(e) => e,
    }
}

fn with_budget(f: impl FnOnce(&mut xcat_image::budget::Budget)) -> ExtractOptions {
    let mut o = ExtractOptions::default();
    f(&mut o.budget);
    o
}

#[test]
fn notes_are_listed_up_to_the_budget_and_the_rest_counted() {
    let b = bed();
    let a = skipped_entries(50).end();
    let opts = with_budget(|b| b.max_notes = 10);
    let s = extract(&a[..], &b.staging, &opts).unwrap();
    assert_eq!(s.counts.skipped, 50);
    assert_eq!(s.notes.len(), 11, "{:?}", s.notes);
    assert!(s.notes[10].contains("40 more notes"), "{:?}", s.notes[10]);
}

#[test]
fn the_entry_budget_fails_the_extraction_naming_the_entry() {
    let b = bed();
    let a = skipped_entries(6).end();
    let opts = with_budget(|b| b.max_entries = 5);
    let e = refused(extract(&a[..], &b.staging, &opts));
    let msg = e.to_string();
    assert!(matches!(e, ExtractError::Budget(_)), "{e:?}");
    assert!(
        msg.contains("entry s5") && msg.contains("max_entries"),
        "{msg}"
    );
    extract(&skipped_entries(5).end()[..], &b.staging, &opts).unwrap();
}

#[test]
fn the_manifest_budget_counts_names_and_xattrs() {
    let b = bed();
    // owned by whoever runs the test, so that no privilege is needed
    let uid = rustix::process::getuid().as_raw().to_string();
    let gid = rustix::process::getgid().as_raw().to_string();
    let big = vec![b'v'; 60_000];
    let a = (0..20)
        .fold(TarBuilder::new(), |t, i| {
            t.pax(&[
                ("uid", uid.as_bytes()),
                ("gid", gid.as_bytes()),
                ("SCHILY.xattr.user.big", &big),
            ])
            .dir(format!("d{i}").as_bytes())
        })
        .end();
    let opts = with_budget(|b| b.max_manifest_bytes = 1 << 20);
    let e = refused(extract(&a[..], &b.staging, &opts));
    let msg = e.to_string();
    assert!(matches!(e, ExtractError::Budget(_)), "{e:?}");
    assert!(
        msg.contains("entry d17") && msg.contains("max_manifest_bytes"),
        "{msg}"
    );
}

#[test]
fn the_metadata_budget_counts_what_waits_in_memory_for_the_end() {
    let b = bed();
    let uid = rustix::process::getuid().as_raw().to_string();
    let gid = rustix::process::getgid().as_raw().to_string();
    // default ACLs are set at the end: each one waits in memory until then
    let acl = (0..4000)
        .map(|i| format!("user:{}:r-x", 10_000 + i))
        .collect::<Vec<_>>()
        .join(",");
    let acl = format!("user::rwx,group::r-x,other::r-x,mask::r-x,{acl}");
    let a = (0..40)
        .fold(TarBuilder::new(), |t, i| {
            t.pax(&[
                ("uid", uid.as_bytes()),
                ("gid", gid.as_bytes()),
                ("SCHILY.acl.default", acl.as_bytes()),
            ])
            .dir(format!("d{i}").as_bytes())
        })
        .end();
    let opts = with_budget(|b| b.max_metadata_bytes = 1 << 20);
    let e = refused(extract(&a[..], &b.staging, &opts));
    let msg = e.to_string();
    assert!(matches!(e, ExtractError::Budget(_)), "{e:?}");
    assert!(msg.contains("max_metadata_bytes"), "{msg}");
    // with room for them in memory, the same archive is accepted
    let opts = with_budget(|b| b.max_metadata_bytes = 8 << 20);
    extract(&a[..], &b.staging, &opts).expect("within the budget");
}

#[test]
fn pax_metadata_bombs_are_refused_naming_the_budget() {
    let b = bed();
    // chained pax headers, each within the single-header limit
    let mut t = TarBuilder::new();
    for _ in 0..5 {
        t = t.pax(&[("comment", &vec![b'c'; 1_000_000])]);
    }
    let a = t.file(b"f", b"x").end();
    let e = assert_err_names(b.run(&a), "max_pax_entry");
    assert!(
        matches!(e, ExtractError::Archive(TarError::Limit { .. })),
        "{e:?}"
    );
    // a global header whose keywords would apply to every later entry
    let mut body = Vec::new();
    for i in 0..2000 {
        let k = format!("SCHILY.xattr.user.g{i}");
        xcat_image::tar::header::push_pax_record(&mut body, k.as_bytes(), b"v");
    }
    let a = TarBuilder::new()
        .pax_body(b'g', &body)
        .file(b"f", b"x")
        .end();
    assert_err_names(b.run(&a), "max_pax_global_keywords");
    b.canary_intact();
}

#[test]
fn a_size_that_overflows_is_refused_not_wrapped() {
    let b = bed();
    let a = TarBuilder::new()
        .pax(&[("size", u64::MAX.to_string().as_bytes())])
        .file(b"f", b"")
        .file(b"g", b"")
        .end();
    let e = assert_err_names(b.run(&a), "entry f: size");
    assert!(
        matches!(e, ExtractError::Archive(TarError::Malformed { .. })),
        "{e:?}"
    );
    b.canary_intact();
}
