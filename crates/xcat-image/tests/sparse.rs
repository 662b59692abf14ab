//! Files with holes through the packers: a 5 GiB sparse file packed as tar comes out
//! of GNU tar and of our own extractor with the same content, the same size and its
//! holes, from a small archive; mksquashfs keeps it sparse too; the survey's tmpfs
//! estimate leaves holes out. Needs tar, cmp, mksquashfs and unsquashfs; the
//! squashfs mount needs root.
mod common;

use common::{pack_image, require_root_and_tools, require_tools, sh};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use xcat_image::pack::compress::Compression;
use xcat_image::pack::{self, sparse, Format, PackProgress, PackSpec, RecordInputs, Tree};
use xcat_image::tar::{Limits, TarReader};
use xcat_image::{extract, ExtractOptions};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// Writes `size` bytes of holes with `data` at the given offsets.
fn sparse_file(path: &Path, size: u64, data: &[(u64, &[u8])]) {
    let mut f = File::create(path).unwrap();
    f.set_len(size).unwrap();
    for (off, bytes) in data {
        f.seek(SeekFrom::Start(*off)).unwrap();
        f.write_all(bytes).unwrap();
    }
    f.sync_all().unwrap();
}

fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The tree: `big` (5 GiB, data at the start, at 1 GiB + 123, at 3 GiB and just
/// before the end), `tailhole` (ends in a hole), `holes` (nothing but a hole),
/// `dense` (no hole) and a long path to a sparse file.
fn tree(base: &Path) -> PathBuf {
    let src = base.join("src");
    std::fs::create_dir(&src).unwrap();
    let random = noise(300_000);
    sparse_file(
        &src.join("big"),
        5 * GIB,
        &[
            (0, b"head of the file"),
            (GIB + 123, &random),
            (3 * GIB, b"three gigabytes in"),
            (5 * GIB - 10, b"0123456789"),
        ],
    );
    sparse_file(&src.join("tailhole"), 64 * MIB, &[(MIB, &random[..5000])]);
    sparse_file(&src.join("holes"), 2 * GIB, &[]);
    std::fs::write(src.join("dense"), &random[..70_000]).unwrap();
    let long: String = (0..6).map(|i| format!("{}{i}/", "d".repeat(30))).collect();
    std::fs::create_dir_all(src.join(&long)).unwrap();
    sparse_file(
        &src.join(&long).join("deep-sparse-file"),
        100 * MIB,
        &[(50 * MIB, b"x")],
    );
    src
}

fn files(src: &Path) -> Vec<PathBuf> {
    let long: String = (0..6).map(|i| format!("{}{i}/", "d".repeat(30))).collect();
    ["big", "tailhole", "holes", "dense"]
        .iter()
        .map(PathBuf::from)
        .chain([PathBuf::from(long).join("deep-sparse-file")])
        .map(|p| src.join(p))
        .filter(|p| p.exists())
        .collect()
}

/// Whether two files hold the same bytes, reading only where either has data
/// (`cmp` reads holes as zeros: 5 GiB of them take half a minute here).
fn same_content(a: &Path, b: &Path, size: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let (fa, fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let mut segs = sparse::data_map(&fa, size).unwrap();
    segs.extend(sparse::data_map(&fb, size).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    segs.iter().all(|&(off, len)| {
        let mut pos = off;
        while pos < off + len {
            let n = ((off + len - pos) as usize).min(ba.len());
            fa.read_exact_at(&mut ba[..n], pos).unwrap();
            fb.read_exact_at(&mut bb[..n], pos).unwrap();
            if ba[..n] != bb[..n] {
                return false;
            }
            pos += n as u64;
        }
        true
    })
}

/// Same content, same size, and holes kept: at most 4 MiB more allocated than
/// the source has (squashfs writes whole 128 KiB blocks). Files up to 100 MiB are
/// compared with `cmp` itself, the larger ones where they hold data.
fn assert_same_sparse(src: &Path, out: &Path, what: &str) {
    for f in files(src) {
        let rel = f.strip_prefix(src).unwrap();
        let o = out.join(rel);
        let (a, b) = (
            std::fs::metadata(&f).unwrap(),
            std::fs::metadata(&o).unwrap(),
        );
        assert_eq!(a.len(), b.len(), "{what}: size of {}", rel.display());
        let same = if a.len() <= 100 * MIB {
            Command::new("cmp")
                .arg(&f)
                .arg(&o)
                .status()
                .unwrap()
                .success()
        } else {
            same_content(&f, &o, a.len())
        };
        assert!(same, "{what}: {} differs", rel.display());
        assert!(
            b.blocks() * 512 <= a.blocks() * 512 + 4 * MIB,
            "{what}: {} lost its holes: {} blocks, source {}",
            rel.display(),
            b.blocks(),
            a.blocks()
        );
    }
}

fn tar_spec() -> PackSpec {
    PackSpec {
        format: Format::Tar,
        compression: Compression::None,
        level: None,
        threads: 0,
    }
}

#[test]
fn a_5_gib_sparse_file_through_tar_gnu_tar_and_our_reader() {
    require_tools(&["tar", "cmp"]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tree(tmp.path());
    let dir = tmp.path().join("image");
    std::fs::create_dir(&dir).unwrap();
    let cancel = AtomicBool::new(false);
    let survey = pack::survey(Tree::whole(&src), &cancel).unwrap();
    let inputs = RecordInputs {
        tree_bytes: survey.tree_bytes,
        kernel_and_initrd_bytes: 0,
    };
    let s = tar_spec();
    let out = pack_image(&src, &dir, &s, &inputs, &PackProgress::default(), &cancel).unwrap();
    assert_eq!(out.stats.sparse_files, 4, "dense stays a plain entry");
    assert!(out.stats.changed.count == 0, "{:?}", out.stats.changed);
    // 5 + 2 GiB of logical size in well under a megabyte of archive.
    assert!(out.bytes < MIB, "archive of {} bytes", out.bytes);

    // GNU tar, with no option about sparse files.
    let gnu = tmp.path().join("gnu");
    std::fs::create_dir(&gnu).unwrap();
    sh(&format!(
        "tar -C '{}' -xf '{}'",
        gnu.display(),
        out.path.display()
    ));
    assert_same_sparse(&src, &gnu, "GNU tar");
    // GNU tar lists the real names and sizes.
    let list = Command::new("tar")
        .args(["-tvf"])
        .arg(&out.path)
        .output()
        .unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(
        list.lines()
            .any(|l| l.contains(" 5368709120 ") && l.ends_with("./big")),
        "{list}"
    );
    assert!(!list.contains("GNUSparseFile"), "{list}");

    // Our extractor.
    let ours = tmp.path().join("ours");
    std::fs::create_dir(&ours).unwrap();
    let archive = File::open(&out.path).unwrap();
    let summary = extract(archive, &ours, &ExtractOptions::default()).unwrap();
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    assert_same_sparse(&src, &ours, "our extractor");

    // Our reader sees the map the writer computed from SEEK_DATA.
    let mut r = TarReader::new(File::open(&out.path).unwrap(), Limits::default(), None);
    let mut seen = 0;
    while let Some(e) = r.next_entry().unwrap() {
        if e.path == b"./big" {
            let f = File::open(src.join("big")).unwrap();
            let map = sparse::data_map(&f, 5 * GIB).unwrap();
            assert_eq!(map.len(), 4, "{map:?}");
            assert_eq!(e.sparse.as_deref(), Some(&map[..]));
            assert_eq!(e.size, 5 * GIB);
            seen += 1;
        }
        if e.path == b"./holes" {
            assert_eq!(e.sparse.as_deref(), Some(&[(2 * GIB, 0)][..]));
            seen += 1;
        }
        let mut buf = vec![0u8; 1 << 16];
        while r.read_data(&mut buf).unwrap() > 0 {}
    }
    assert_eq!(seen, 2);
}

#[test]
fn the_tmpfs_estimate_leaves_holes_out() {
    require_tools(&["ln"]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // root, sub, link: 3 inodes of 4 KiB; one1: 1 page; two: 2 pages, counted once
    // for its two names; empty: nothing; sparse: two pages of data in 100 MiB.
    sh(&format!(
        "cd '{}' && mkdir sub && ln -s sub link && printf x > one1 && head -c 4097 /dev/zero | tr '\\0' a > two \
         && ln two sub/two-again && : > empty",
        src.display()
    ));
    sparse_file(
        &src.join("sparse"),
        100 * MIB,
        &[(0, b"a"), (50 * MIB, b"b")],
    );
    let s = pack::survey(Tree::whole(&src), &AtomicBool::new(false)).unwrap();
    assert_eq!(s.tree_bytes, (3 + 1 + 2 + 2) * 4096, "{s:?}");
    assert_eq!(s.bytes, 1 + 4097 + 100 * MIB);
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn squashfs_keeps_a_5_gib_sparse_file_sparse() {
    require_root_and_tools(&["mksquashfs", "unsquashfs", "cmp", "unshare", "mount"]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tree(tmp.path());
    // mksquashfs reads holes as data (about 4 s a GiB here): the big one is enough
    std::fs::remove_file(src.join("holes")).unwrap();
    let dir = tmp.path().join("image");
    std::fs::create_dir(&dir).unwrap();
    let s = PackSpec {
        format: Format::Squashfs,
        compression: Compression::Zstd,
        level: None,
        threads: 0,
    };
    let cancel = AtomicBool::new(false);
    let inputs = RecordInputs::default();
    let out = pack_image(&src, &dir, &s, &inputs, &PackProgress::default(), &cancel).unwrap();
    assert!(out.bytes < 2 * MIB, "squashfs of {} bytes", out.bytes);
    let list = Command::new("unsquashfs")
        .args(["-ll"])
        .arg(&out.path)
        .output()
        .unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(
        list.lines()
            .any(|l| l.contains(" 5368709120 ") && l.ends_with("/big")),
        "{list}"
    );
    // Mounted (in a private mount namespace), the kernel reports the holes the
    // image records: a few blocks allocated, not 5 GiB.
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t squashfs -o loop,ro '{}' '{m}' && stat -c %b '{m}/big'",
            out.path.display(),
            m = mnt.display(),
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let blocks: u64 = text.trim().parse().unwrap();
    assert!(
        blocks * 512 < 16 * MIB,
        "{blocks} blocks: stored without holes"
    );
    // unsquashfs writes the holes back.
    let un = tmp.path().join("un");
    sh(&format!(
        "unsquashfs -q -n -d '{}' '{}' >/dev/null",
        un.display(),
        out.path.display()
    ));
    assert_same_sparse(&src, &un, "unsquashfs");
}
