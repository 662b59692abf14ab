//! Packing: our cpio/tar writers and compressors read back by the standard tools
//! (GNU cpio, GNU tar, unsquashfs, gzip, xz, zstd), manifests compared with the
//! documented losses of each format, and atomic replacement under concurrent readers.
//! Needs the Debian packages cpio, tar, zstd, xz-utils, squashfs-tools, attr, acl,
//! libcap2-bin, python3; the round trip of the edge-case tree (device nodes,
//! owners, capabilities) also needs root.
mod common;

use common::{build_edge_tree, pack_image, require_root_and_tools, require_tools, sh};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use xcat_image::pack::compress::{self, Compression};
use xcat_image::pack::{
    self, expected_after, Format, PackError, PackProgress, PackSpec, RecordInputs, Tree,
};
use xcat_image::{scan_tree, Manifest};

const TOOLS: &[&str] = &[
    "cpio",
    "tar",
    "zstd",
    "xz",
    "gzip",
    "unsquashfs",
    "mksquashfs",
    "setfattr",
    "setfacl",
    "setcap",
    "python3",
];

/// Record inputs for packs whose record is not looked at.
const NO_INPUTS: RecordInputs = RecordInputs {
    tree_bytes: 0,
    kernel_and_initrd_bytes: 0,
};

fn inputs(s: &pack::Survey) -> RecordInputs {
    RecordInputs {
        tree_bytes: s.tree_bytes,
        kernel_and_initrd_bytes: 30 << 20,
    }
}

fn spec(format: Format, compression: Compression) -> PackSpec {
    PackSpec {
        format,
        compression,
        level: None,
        threads: 0,
    }
}

/// The source tree: the shared edge cases plus a long path, a sparse file with data,
/// a hard link group spanning directories and a directory mtime with nanoseconds.
fn source_tree(base: &Path) -> PathBuf {
    let src = base.join("src");
    std::fs::create_dir(&src).unwrap();
    build_edge_tree(&src, false);
    let d = src.display();
    let long: String = (0..12).map(|i| format!("{}{i}/", "n".repeat(40))).collect();
    sh(&format!(
        "cd '{d}' && mkdir -p '{long}' && echo deep > '{long}file' && ln -s '{long}file' longlink \
         && truncate -s 64M sparse64m && printf data | dd of=sparse64m bs=1 seek=33554432 conv=notrunc status=none \
         && head -c 3000000 /dev/urandom > random3m && seq 1 400000 > text \
         && touch -d '2010-01-01 00:00:00.5' hl"
    ));
    src
}

fn manifest(p: &Path) -> Manifest {
    scan_tree(p).unwrap_or_else(|e| panic!("scan {}: {e}", p.display()))
}

fn decompressor(c: Compression) -> &'static str {
    match c {
        Compression::Gzip => "gzip -dc",
        Compression::Xz => "xz -dc",
        Compression::Zstd => "zstd -dcq",
        Compression::None => "cat",
    }
}

/// Unpacks an archive with the standard tool into `out` (created by the tool or here).
fn unpack(archive: &Path, s: &PackSpec, out: &Path) {
    let a = archive.display();
    let o = out.display();
    match s.format {
        Format::Cpio => {
            std::fs::create_dir(out).unwrap();
            sh(&format!(
                "cd '{o}' && {} < '{a}' | cpio -idm --quiet --no-absolute-filenames",
                decompressor(s.compression)
            ));
        }
        Format::Tar => {
            std::fs::create_dir(out).unwrap();
            sh(&format!(
                "tar --xattrs --xattrs-include='*' --numeric-owner -C '{o}' -xf '{a}'"
            ));
        }
        Format::Squashfs => sh(&format!("unsquashfs -q -n -d '{o}' '{a}' >/dev/null")),
    }
}

/// Differences that come from the reader, not from our archive: GNU cpio does not
/// set the mtime of symlinks, and it sets a directory's times when the archive
/// leaves the directory, so a hard link written later into it (cpio puts the data
/// on a group's last link) or any later entry disturbs them. Those directory times
/// are checked in the archive itself instead ([`cpio_mtimes`]).
fn reader_artefact(s: &PackSpec, d: &xcat_image::Difference, m: &Manifest) -> bool {
    let kind = m.get(&d.path).map(|e| e.kind);
    matches!(s.format, Format::Cpio)
        && d.field == "mtime"
        && matches!(
            kind,
            Some(xcat_image::EntryType::Symlink | xcat_image::EntryType::Dir)
        )
}

/// (name, mtime) of every entry of a decompressed newc archive, read straight from
/// the headers.
fn cpio_mtimes(raw: &[u8]) -> Vec<(Vec<u8>, u32, u32)> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let hex = |b: &[u8]| u32::from_str_radix(std::str::from_utf8(b).unwrap(), 16).unwrap();
    loop {
        let h = &raw[pos..pos + 110];
        assert_eq!(&h[..6], b"070701", "bad magic at {pos}");
        let mode = hex(&h[14..22]);
        let mtime = hex(&h[46..54]);
        let size = hex(&h[54..62]) as usize;
        let namesize = hex(&h[94..102]) as usize;
        let name = raw[pos + 110..pos + 110 + namesize - 1].to_vec();
        if name == b"TRAILER!!!" {
            return out;
        }
        pos = (pos + 110 + namesize).div_ceil(4) * 4;
        pos = (pos + size).div_ceil(4) * 4;
        out.push((name, mode, mtime));
    }
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn every_format_round_trips_through_the_standard_tools() {
    require_root_and_tools(TOOLS);
    let tmp = tempfile::tempdir().unwrap();
    let src = source_tree(tmp.path());
    let before = manifest(&src);
    let cancel = AtomicBool::new(false);
    let survey = pack::survey(Tree::whole(&src), &cancel).unwrap();
    assert_eq!(survey.entries as usize, before.len());
    assert_eq!(survey.capabilities.count, 1, "{survey:?}");
    assert!(
        survey.acls.count >= 2 && survey.xattrs.count >= 2,
        "{survey:?}"
    );
    assert_eq!(survey.sockets.count, 1);
    let cpio_losses = survey.losses(Format::Cpio);
    let text: Vec<String> = cpio_losses.iter().map(|l| l.to_string()).collect();
    assert!(
        text.iter().any(|t| t.contains("file capabilities")
            && t.contains("/capfile")
            && t.contains("tar and squashfs keep")),
        "{text:?}"
    );
    assert!(survey.losses(Format::Tar)[0].to_string().contains("/sock"));

    let specs = [
        spec(Format::Cpio, Compression::Gzip),
        spec(Format::Cpio, Compression::Xz),
        spec(Format::Cpio, Compression::Zstd),
        spec(Format::Tar, Compression::Gzip),
        spec(Format::Tar, Compression::Xz),
        spec(Format::Tar, Compression::Zstd),
        spec(Format::Squashfs, Compression::Zstd),
    ];
    let dir = tmp.path().join("image");
    std::fs::create_dir(&dir).unwrap();
    let mut last: Option<PathBuf> = None;
    for s in specs {
        let progress = PackProgress::default();
        let out = pack_image(&src, &dir, &s, &inputs(&survey), &progress, &cancel)
            .unwrap_or_else(|e| panic!("{s:?}: {e}"));
        assert_eq!(out.path, dir.join(s.file_name()));
        assert!(out.bytes > 0 && out.bytes == std::fs::metadata(&out.path).unwrap().len());
        // The previous format's archive is gone, nothing else is left behind.
        if let Some(prev) = &last {
            assert!(!prev.exists(), "stale {} survived", prev.display());
            assert!(out.removed.contains(prev), "{:?}", out.removed);
        }
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let info = format!("{}.info", s.file_name());
        assert_eq!(names, vec![s.file_name(), info.clone()], "{s:?}");
        check_record(&dir.join(&info), &out, &s, &survey);
        if s.format != Format::Squashfs {
            assert_eq!(
                progress.entries.load(Ordering::Relaxed),
                before.len() as u64 - u64::from(s.format == Format::Tar),
                "{s:?}"
            );
            assert_eq!(progress.bytes_out.load(Ordering::Relaxed), out.bytes);
        }
        let unpacked = tmp.path().join(format!("out-{}", s.file_name()));
        unpack(&out.path, &s, &unpacked);
        let after = manifest(&unpacked);
        let want = expected_after(s.format, &before);
        let diffs: Vec<String> = want
            .diff(&after)
            .into_iter()
            .filter(|d| !reader_artefact(&s, d, &want))
            .map(|d| d.to_string())
            .collect();
        assert!(
            diffs.is_empty(),
            "{s:?}: unpacked tree differs:\n{}",
            diffs.join("\n")
        );
        if s.format == Format::Cpio {
            let raw = Command::new("bash")
                .args([
                    "-c",
                    &format!("{} < '{}'", decompressor(s.compression), out.path.display()),
                ])
                .output()
                .unwrap()
                .stdout;
            let entries = cpio_mtimes(&raw);
            assert_eq!(entries.len(), want.len());
            let mut dirs = 0;
            for (name, mode, mtime) in entries {
                let rel =
                    name.strip_prefix(b"./")
                        .unwrap_or(if name == b"." { b"" } else { &name });
                let e = want.get(rel).unwrap_or_else(|| {
                    panic!("{:?} not in the tree", String::from_utf8_lossy(&name))
                });
                assert_eq!(
                    i64::from(mtime),
                    e.mtime_sec,
                    "{:?}",
                    String::from_utf8_lossy(&name)
                );
                if mode & libc::S_IFMT == libc::S_IFDIR {
                    dirs += 1;
                }
            }
            assert!(dirs > 40);
        }
        // The losses are real: cpio really dropped the capability, tar kept it.
        let cap = after.get(b"capfile").unwrap();
        assert_eq!(
            cap.xattrs.contains_key(b"security.capability".as_slice()),
            s.format != Format::Cpio,
            "{s:?}"
        );
        std::fs::remove_dir_all(&unpacked).ok();
        last = Some(out.path);
    }
}

/// The record beside an archive: what `sha256sum` and `stat` say of the file, the
/// survey's tree, and the RAM rule.
fn check_record(info: &Path, out: &pack::PackOutcome, s: &PackSpec, survey: &pack::Survey) {
    let text = std::fs::read_to_string(info).unwrap();
    let rec = pack::record::PackRecord::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(rec, out.record);
    assert_eq!(rec.format, s.format);
    let stream = if s.format == Format::Squashfs {
        Compression::None
    } else {
        s.compression
    };
    assert_eq!(rec.compression, stream);
    assert_eq!(rec.size, std::fs::metadata(&out.path).unwrap().len());
    let sum = Command::new("sha256sum").arg(&out.path).output().unwrap();
    let sum = String::from_utf8(sum.stdout).unwrap();
    assert_eq!(
        sum.split_whitespace().next(),
        Some(rec.sha256.as_str()),
        "{s:?}"
    );
    assert_eq!(rec.tree_bytes, survey.tree_bytes);
    let want = pack::record::ram_need(s.format, survey.tree_bytes, rec.size, 30 << 20);
    assert_eq!(rec.ram_mib, want);
}

#[test]
fn cpio_refuses_files_of_4_gib_and_keeps_the_previous_archive() {
    // Refused from the survey: no archiver or compressor runs.
    require_tools(&["truncate"]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    sh(&format!(
        "cd '{}' && echo a > small && truncate -s 4G exactly4g && truncate -s 5G big5g",
        src.display()
    ));
    let dir = tmp.path().join("image");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("rootimg.cpio.gz"), b"previous").unwrap();
    let cancel = AtomicBool::new(false);
    let s = pack::survey(Tree::whole(&src), &cancel).unwrap();
    assert_eq!(s.huge_files.count, 2);
    let err = pack_image(
        &src,
        &dir,
        &spec(Format::Cpio, Compression::Zstd),
        &NO_INPUTS,
        &PackProgress::default(),
        &cancel,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PackError::TooLarge(_)), "{msg}");
    assert!(
        msg.starts_with("cpio newc cannot hold files of 4 GiB or more: /")
            && msg.contains("/exactly4g")
            && msg.contains("/big5g")
            && msg.contains("; pack as tar or squashfs (packimage -m tar or -m squashfs)"),
        "{msg}"
    );
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["rootimg.cpio.gz".to_string()],
        "temporary file left behind"
    );
    assert_eq!(
        std::fs::read(dir.join("rootimg.cpio.gz")).unwrap(),
        b"previous"
    );
}

#[test]
fn parallel_gzip_is_one_standard_member() {
    require_tools(&["gzip"]);
    let mut data = Vec::new();
    for i in 0..200_000u32 {
        data.extend_from_slice(format!("line {i} {}\n", i % 97).as_bytes());
    }
    let mut noise = vec![0u8; 700_000];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut noise))
        .unwrap();
    data.extend_from_slice(&noise);
    let g = compress::GZIP_BLOCK;
    for len in [0, 1, g - 1, g, g + 1, 3 * g, data.len()] {
        for threads in [1, 2, 5] {
            let mut w = compress::ParallelGzip::new(Vec::new(), 6, threads);
            // uneven writes across block boundaries
            for chunk in data[..len].chunks(77_777) {
                w.write_all(chunk).unwrap();
            }
            let gz = w.finish_inner().unwrap();
            let mut child = Command::new("gzip")
                .arg("-dc")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let gz2 = gz.clone();
            let feeder = std::thread::spawn(move || stdin.write_all(&gz2).unwrap());
            let out = child.wait_with_output().unwrap();
            feeder.join().unwrap();
            assert!(out.status.success(), "len {len} threads {threads}");
            assert_eq!(out.stdout.len(), len);
            assert!(
                out.stdout == data[..len],
                "len {len} threads {threads}: content differs"
            );
            // One member: a single-member decoder reads everything.
            let mut one = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut one)
                .unwrap();
            assert_eq!(one.len(), len, "not a single gzip member");
        }
    }
}

/// Opens whatever archive is in place and checks it completely with the standard
/// tools, through the opened file (it may be replaced right after the open).
fn validate(dir: &Path, want_entries: usize) -> Result<String, String> {
    let present: Vec<&str> = pack::ARCHIVE_NAMES
        .iter()
        .copied()
        .filter(|n| dir.join(n).exists())
        .collect();
    let Some(name) = present.first() else {
        return Err("no archive present".into());
    };
    let f = match std::fs::File::open(dir.join(name)) {
        Ok(f) => f,
        // removed between the listing and the open: a newer archive is in place
        Err(_) => return Ok(String::new()),
    };
    let cmd = match *name {
        "rootimg.cpio.gz" => "gzip -dc | cpio -it --quiet",
        "rootimg.cpio.zst" => "zstd -dcq | cpio -it --quiet",
        "rootimg.tar.zst" => "zstd -dcq | tar -tf -",
        "rootimg.tar.gz" => "gzip -dc | tar -tf -",
        other => return Err(format!("unexpected archive {other}")),
    };
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", cmd])
        .stdin(f)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(format!("{name}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let n = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    // names with a newline count as two lines; compare with a margin of those
    if n < want_entries {
        return Err(format!(
            "{name}: {n} entries, expected at least {want_entries}"
        ));
    }
    Ok(name.to_string())
}

#[test]
fn readers_always_see_a_complete_archive_while_repacking() {
    require_tools(&["cpio", "tar", "zstd", "gzip"]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    sh(&format!(
        "cd '{}' && for d in $(seq 1 40); do mkdir d$d; for f in $(seq 1 25); do head -c $((d*f*37)) /dev/urandom > d$d/f$f; done; done \
         && seq 1 2000000 > text",
        src.display()
    ));
    let entries = manifest(&src).len() - 1; // tar lists "./" too; cpio lists "."
    let dir = tmp.path().join("image");
    std::fs::create_dir(&dir).unwrap();
    let cancel = AtomicBool::new(false);
    pack_image(
        &src,
        &dir,
        &spec(Format::Cpio, Compression::Gzip),
        &NO_INPUTS,
        &PackProgress::default(),
        &cancel,
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (dir, stop) = (dir.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeMap::<String, u32>::new();
            let mut seed = 0x2545_f491_u64;
            while !stop.load(Ordering::Relaxed) {
                match validate(&dir, entries) {
                    Ok(n) => *seen.entry(n).or_default() += 1,
                    Err(e) => return Err(e),
                }
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                std::thread::sleep(std::time::Duration::from_millis(seed % 40));
            }
            Ok(seen)
        })
    };
    let cycle = [
        spec(Format::Cpio, Compression::Zstd),
        spec(Format::Tar, Compression::Zstd),
        spec(Format::Cpio, Compression::Gzip),
        spec(Format::Tar, Compression::Gzip),
    ];
    for round in 0..3 {
        for s in cycle {
            pack_image(
                &src,
                &dir,
                &s,
                &NO_INPUTS,
                &PackProgress::default(),
                &cancel,
            )
            .unwrap_or_else(|e| panic!("round {round} {s:?}: {e}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let seen = reader
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("a reader saw a bad archive: {e}"));
    let total: u32 = seen.values().sum();
    assert!(
        total >= 10 && seen.len() >= 2,
        "too few validations to mean anything: {seen:?}"
    );
}

#[test]
fn cancelling_leaves_no_partial_archive() {
    require_tools(&["gzip"]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    sh(&format!(
        "cd '{}' && for i in $(seq 1 50); do echo $i > f$i; done",
        src.display()
    ));
    let dir = tmp.path().join("image");
    std::fs::create_dir(&dir).unwrap();
    let cancel = AtomicBool::new(true);
    let err = pack_image(
        &src,
        &dir,
        &spec(Format::Cpio, Compression::Gzip),
        &NO_INPUTS,
        &PackProgress::default(),
        &cancel,
    )
    .unwrap_err();
    assert!(matches!(err, PackError::Cancelled), "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn hard_links_reaching_outside_the_tree_keep_their_data() {
    require_tools(&["cpio", "gzip"]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // a and b/c are linked to each other and to a file outside the packed tree, so
    // the group never completes during the walk and is written at the end.
    sh(&format!(
        "cd '{}' && mkdir b && echo shared > a && ln a b/c && ln a ../outside && echo solo > d",
        src.display()
    ));
    let dir = tmp.path().join("image");
    std::fs::create_dir(&dir).unwrap();
    let s = spec(Format::Cpio, Compression::Gzip);
    pack_image(
        &src,
        &dir,
        &s,
        &NO_INPUTS,
        &PackProgress::default(),
        &AtomicBool::new(false),
    )
    .unwrap();
    let out = tmp.path().join("out");
    unpack(&dir.join(s.file_name()), &s, &out);
    assert_eq!(std::fs::read_to_string(out.join("a")).unwrap(), "shared\n");
    assert_eq!(
        std::fs::read_to_string(out.join("b/c")).unwrap(),
        "shared\n"
    );
    use std::os::unix::fs::MetadataExt;
    let (ma, mc) = (
        std::fs::metadata(out.join("a")).unwrap(),
        std::fs::metadata(out.join("b/c")).unwrap(),
    );
    assert_eq!(ma.ino(), mc.ino(), "a and b/c are no longer one file");
    assert_eq!(ma.nlink(), 2);
}

/// Every name in an archive, as the standard tool lists it.
fn archive_names(archive: &Path, s: &PackSpec) -> Vec<String> {
    let a = archive.display();
    let script = match s.format {
        Format::Cpio => format!("{} < '{a}' | cpio -it --quiet", decompressor(s.compression)),
        Format::Tar => format!("tar -tf '{a}'"),
        Format::Squashfs => format!("unsquashfs -l -d . '{a}'"),
    };
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{script}: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
        .collect()
}

#[test]
fn a_statelite_archive_stands_beside_packimage_archives_which_leave_its_paths_out() {
    require_tools(&["cpio", "tar", "gzip", "zstd", "mksquashfs", "unsquashfs"]);
    use xcat_image::linkfarm::STATELITE_PATHS;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    sh(&format!(
        "cd '{}' && mkdir -p etc/init.d .statelite/tmpfs/etc .default/etc .statebackup \
         && echo boot > etc/init.d/statelite && echo other > etc/init.d/other \
         && echo 'img: link /etc/adjtime' > .statelite/litefile.save \
         && echo 0.0 > .default/etc/adjtime && ln -s ../../../.default/etc/adjtime .statelite/tmpfs/etc/adjtime \
         && ln -s ../.statelite/tmpfs/etc/adjtime etc/adjtime && echo n1 > etc/hostname",
        src.display()
    ));
    let dir = tmp.path().join("image");
    std::fs::create_dir(&dir).unwrap();
    let cancel = AtomicBool::new(false);
    let whole = pack::survey(Tree::whole(&src), &cancel).unwrap();
    let stateless = Tree {
        root: &src,
        exclude: STATELITE_PATHS,
    };
    // ".", etc, etc/init.d, other, hostname, the adjtime link.
    assert_eq!(pack::survey(stateless, &cancel).unwrap().entries, 6);
    assert!(whole.entries > 6);

    let ramdisk = spec(Format::Cpio, Compression::Gzip);
    let name = pack::STATELITE_ARCHIVE;
    let lite = pack::pack(
        Tree::whole(&src),
        &dir,
        name,
        &ramdisk,
        &inputs(&whole),
        &PackProgress::default(),
        &cancel,
    )
    .unwrap();
    assert_eq!(lite.path, dir.join(name));
    assert!(lite.removed.is_empty());
    check_record(&dir.join(format!("{name}.info")), &lite, &ramdisk, &whole);
    use std::os::unix::fs::PermissionsExt;
    for f in [name.to_string(), format!("{name}.info")] {
        let mode = std::fs::metadata(dir.join(&f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o644, "{f}");
    }
    let names = archive_names(&lite.path, &ramdisk);
    for want in [
        ".statelite/litefile.save",
        ".statelite/tmpfs/etc/adjtime",
        ".default/etc/adjtime",
        "etc/init.d/statelite",
        ".statebackup",
    ] {
        assert!(names.iter().any(|n| n == want), "{want}: {names:?}");
    }

    for s in [
        spec(Format::Cpio, Compression::Zstd),
        spec(Format::Tar, Compression::Gzip),
        spec(Format::Squashfs, Compression::Zstd),
    ] {
        let out = pack::pack(
            stateless,
            &dir,
            &s.file_name(),
            &s,
            &NO_INPUTS,
            &PackProgress::default(),
            &cancel,
        )
        .unwrap_or_else(|e| panic!("{s:?}: {e}"));
        assert!(
            !out.removed.contains(&lite.path) && lite.path.is_file(),
            "{s:?} removed {name}"
        );
        assert!(dir.join(format!("{name}.info")).is_file(), "{s:?}");
        let names = archive_names(&out.path, &s);
        assert!(
            names.iter().any(|n| n == "etc/init.d/other")
                && names.iter().any(|n| n == "etc/hostname"),
            "{s:?}: {names:?}"
        );
        for gone in STATELITE_PATHS {
            assert!(
                !names
                    .iter()
                    .any(|n| n == gone || n.starts_with(&format!("{gone}/"))),
                "{s:?} holds {gone}: {names:?}"
            );
        }
    }
}
