//! What each fuzz target feeds and checks. A target function panics on a
//! finding; returning normally means the input was handled (accepted or
//! refused with an error).
//!
//! Shared by the cargo-fuzz targets (`fuzz_targets/*.rs`) and the stable
//! driver (`fuzz-stable`), so both look for the same bugs.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::Path;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use xcatd_proto::{decode_request, encode_request, FrameError, FrameLimits, RequestReader};

/// A target body: panics on a finding.
pub type Target = fn(&[u8]);

/// Every target, by name, for the drivers.
pub const TARGETS: &[(&str, Target)] = &[
    ("request", request),
    ("noderange", noderange),
    ("exlist", exlist),
    ("extract", extract),
    ("pax", pax),
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

/// A byte source that hands out its data in pieces of varying size, as a
/// network does, so the reader's resumable scanning is exercised.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    turn: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let want = if self.sizes.is_empty() {
            usize::MAX
        } else {
            self.sizes[self.turn % self.sizes.len()] as usize + 1
        };
        self.turn += 1;
        let n = want.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

/// Request framing and the XML parser.
///
/// * `decode_request` never panics, and a request it accepts re-encodes to
///   a document that decodes again and encodes to the same bytes (encoding
///   reduces text to printable ASCII, so the first pass may change it).
/// * `RequestReader` over the same bytes, delivered in pieces, yields the
///   same first request as decoding the first document directly, never
///   more than `max_bytes` per document, and ends.
pub fn request(data: &[u8]) {
    // First byte: how the stream is cut into reads.
    let (sizes, data) = match data.split_first() {
        Some((&n, rest)) => rest.split_at((n as usize % 8).min(rest.len())),
        None => (&[][..], data),
    };
    if let Ok(req) = decode_request(data) {
        let again = encode_request(&req);
        let back = decode_request(again.as_bytes())
            .unwrap_or_else(|e| panic!("re-encoded request does not decode: {e}\n{again}"));
        assert_eq!(
            encode_request(&back),
            again,
            "encoding is not stable over a decode/encode round trip"
        );
    }
    let limits = FrameLimits {
        max_bytes: 4096,
        first_byte_timeout: Duration::from_secs(5),
        total_timeout: Duration::from_secs(5),
    };
    runtime().block_on(async {
        let mut r = RequestReader::new(
            Chunked {
                data,
                sizes,
                turn: 0,
            },
            limits,
        );
        // Each successful document consumes at least one byte.
        for _ in 0..=data.len() {
            match r.next_request().await {
                Ok(Some(req)) => {
                    let again = encode_request(&req);
                    assert!(
                        decode_request(again.as_bytes()).is_ok(),
                        "framed request does not re-decode"
                    );
                }
                Ok(None) => return,
                Err(FrameError::IdleTimeout(_) | FrameError::TotalTimeout(_)) => {
                    panic!("a reader over finished data timed out instead of ending")
                }
                Err(_) => return,
            }
        }
        panic!("the reader returned more documents than there are bytes");
    });
}

/// The noderange parser and evaluator, on a small universe.
pub fn noderange(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expr) = xcat_db::noderange::parse(text) else {
        return;
    };
    let _ = expr.attr_refs();
    let mut u = xcat_db::Universe::new();
    for i in 1..=20 {
        u.add_node(
            &format!("node{i:02}"),
            if i % 2 == 0 {
                "compute,even,all"
            } else {
                "compute,odd,all"
            },
        );
    }
    u.add_node("mgmt", "service,all");
    if let Ok(v) = u.expand_expr(&expr) {
        let mut sorted = v.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            v.len(),
            "expansion of {text:?} repeats a node: {v:?}"
        );
    }
}

/// One scratch directory per process (files are reused across runs).
static SCRATCH: OnceLock<tempfile::TempDir> = OnceLock::new();

/// Remove the scratch directory; a `static` is never dropped, so drivers
/// call this before they exit.
pub fn remove_scratch() {
    if let Some(d) = SCRATCH.get() {
        let _ = std::fs::remove_dir_all(d.path());
    }
}

fn scratch() -> &'static Path {
    SCRATCH
        .get_or_init(|| {
            tempfile::Builder::new()
                .prefix("xcatd-fuzz-")
                .tempdir()
                .expect("tempdir")
        })
        .path()
}

/// The exclusion-list reader on arbitrary file content.
///
/// A list that reads must only hold patterns that came from its lines
/// (never empty, never a comment).
pub fn exlist(data: &[u8]) {
    let path = scratch().join(format!("exlist-{:?}", std::thread::current().id()));
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(data))
        .expect("write the list");
    if let Ok(list) = plugin_capimage::exlist::ExList::read(&path) {
        for p in list.exclude.iter().chain(&list.include) {
            assert!(
                !p.trim().is_empty(),
                "empty pattern from {:?}",
                String::from_utf8_lossy(data)
            );
        }
    }
}

/// Archive extraction into a scratch directory: whatever the archive says,
/// nothing may appear outside the extraction root.
pub fn extract(data: &[u8]) {
    let base = tempfile::Builder::new()
        .prefix("extract-")
        .tempdir_in(scratch())
        .expect("tempdir");
    let root = base.path().join("root");
    std::fs::create_dir(&root).expect("root");
    std::fs::write(base.path().join("sentinel"), b"untouched").expect("sentinel");
    let opts = xcat_image::ExtractOptions::default();
    let _ = xcat_image::extract(data, &root, &opts);
    let mut names: Vec<String> = std::fs::read_dir(base.path())
        .expect("read base")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["root", "sentinel"],
        "extraction wrote outside its root"
    );
    assert_eq!(
        std::fs::read(base.path().join("sentinel")).expect("sentinel"),
        b"untouched",
        "extraction changed a file outside its root"
    );
}

/// The input, read as instructions for building an archive.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.byte() as usize % (max + 1)).min(self.0.len());
        let (v, rest) = self.0.split_at(n);
        self.0 = rest;
        v.to_vec()
    }

    /// A number, mostly from those at the edges of what the reader checks.
    fn number(&mut self) -> u64 {
        const EDGES: &[u64] = &[
            0,
            1,
            511,
            512,
            513,
            4096,
            1 << 20,
            (1 << 31) - 1,
            u32::MAX as u64,
            1 << 32,
            1 << 62,
            i64::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ];
        let b = self.byte() as usize;
        match EDGES.get(b % 20) {
            Some(&v) => v,
            None => u64::from_le_bytes(std::array::from_fn(|_| self.byte())) >> (b % 64),
        }
    }

    /// A pax value: a number, a comma-separated map, a time or raw bytes.
    fn value(&mut self) -> Vec<u8> {
        match self.byte() % 5 {
            0 | 1 => self.number().to_string().into_bytes(),
            2 => {
                let n = self.byte() % 8;
                let nums: Vec<String> = (0..n).map(|_| self.number().to_string()).collect();
                nums.join(",").into_bytes()
            }
            3 => format!("-{}.{}", self.number(), self.number()).into_bytes(),
            _ => self.bytes(40),
        }
    }

    /// The body of a pax header: records with the keywords the reader knows.
    fn pax_body(&mut self) -> Vec<u8> {
        const KEYS: &[&str] = &[
            "path",
            "linkpath",
            "size",
            "uid",
            "gid",
            "mtime",
            "SCHILY.devmajor",
            "SCHILY.devminor",
            "SCHILY.acl.access",
            "SCHILY.acl.default",
            "GNU.sparse.major",
            "GNU.sparse.minor",
            "GNU.sparse.size",
            "GNU.sparse.realsize",
            "GNU.sparse.name",
            "GNU.sparse.map",
            "GNU.sparse.offset",
            "GNU.sparse.numbytes",
            "GNU.sparse.numblocks",
            "LIBARCHIVE.xattr.user.a",
            "comment",
        ];
        let mut body = Vec::new();
        for _ in 0..self.byte() % 24 + 1 {
            let k = self.byte() as usize;
            let key = match KEYS.get(k % 32) {
                Some(key) => key.as_bytes().to_vec(),
                // a few short names, so that repeats (and their de-duplication) happen
                None => format!("SCHILY.xattr.user.{}", self.byte() % 16).into_bytes(),
            };
            let v = self.value();
            xcat_image::tar::header::push_pax_record(&mut body, &key, &v);
        }
        body
    }
}

/// The old GNU sparse header (`S`): four map entries, maybe extension blocks.
fn old_gnu_sparse(s: &mut Script) -> Vec<u8> {
    use xcat_image::tar::header::{self as h, Header};
    let mut hd = Header::ustar();
    hd.set_bytes(h::NAME, b"sparse");
    hd.set_typeflag(h::typeflag::GNU_SPARSE);
    let mut stored = 0u64;
    for i in 0..4 {
        let at = h::GNU_SPARSE_MAP.start + 24 * i;
        let (off, len) = (s.number(), s.byte() as u64 * 3);
        hd.set_number(at..at + 12, off);
        hd.set_number(at + 12..at + 24, len);
        stored = stored.wrapping_add(len);
    }
    let extensions = s.byte() % 3;
    hd.set_bytes(h::GNU_IS_EXTENDED..h::GNU_IS_EXTENDED + 1, &[extensions]);
    hd.set_number(h::GNU_REALSIZE, s.number());
    hd.set_number(h::SIZE, stored);
    let mut out = hd.finish().to_vec();
    for i in 0..extensions {
        let mut blk = [0u8; h::BLOCK];
        for e in 0..s.byte() as usize % 22 {
            h::write_number(&mut blk[e * 24..e * 24 + 12], s.number());
            h::write_number(&mut blk[e * 24 + 12..e * 24 + 24], s.number() % 1024);
        }
        blk[h::EXT_IS_EXTENDED] = u8::from(i + 1 < extensions);
        out.extend_from_slice(&blk);
    }
    let data = s.bytes(255);
    out.extend_from_slice(&data);
    out.resize(out.len().next_multiple_of(h::BLOCK), 0);
    out
}

/// A file whose body starts with a sparse 1.0 map (count, then offset/size pairs).
fn sparse_1_0_body(s: &mut Script) -> Vec<u8> {
    let n = s.byte() % 6;
    let mut body = format!("{n}\n").into_bytes();
    for _ in 0..n {
        body.extend_from_slice(format!("{}\n{}\n", s.number(), s.byte()).as_bytes());
    }
    body.resize(body.len().next_multiple_of(512), 0);
    let data = s.bytes(255);
    body.extend_from_slice(&data);
    body
}

/// Archives built from the input out of pax (`x`, `g`), sparse (0.0, 0.1, 1.0,
/// old GNU) and xattr records, read by the tar reader under default limits or
/// small ones (so every budget is reached). Each input is a well-formed archive
/// far more often than a mutated byte stream is, so the records get applied.
///
/// * The reader never panics and ends: each entry consumes at least a block.
/// * What it accepts respects the limits: names within `max_path` and free of
///   NUL, xattrs unique, sorted and within `max_xattr_value`, sparse maps
///   ordered, within the real size and adding up to the stored data, which
///   reads back to exactly its declared length.
pub fn pax(data: &[u8]) {
    use xcat_image::tar::testing::TarBuilder;
    use xcat_image::tar::{header::typeflag as tf, Limits};
    let mut s = Script(data);
    let mut limits = Limits::default();
    if s.byte() % 2 == 1 {
        limits.max_path = 256;
        limits.max_pax = 2048;
        limits.max_pax_entry = 4096;
        limits.max_pax_records = 48;
        limits.max_pax_global = 512;
        limits.max_pax_global_keywords = 12;
        limits.max_xattr_value = 32;
        limits.max_sparse_segments = 16;
    }
    let mut b = TarBuilder::new();
    while !s.0.is_empty() {
        b = match s.byte() % 9 {
            0 | 1 => b.pax_body(tf::PAX_LOCAL, &s.pax_body()),
            2 => b.pax_body(tf::PAX_GLOBAL, &s.pax_body()),
            3 => b.file("f", &s.bytes(255)),
            4 => b.file("s", &sparse_1_0_body(&mut s)),
            5 => {
                let flag = [tf::CHAR_DEVICE, tf::BLOCK_DEVICE, tf::FIFO][s.byte() as usize % 3];
                b.node("d", flag, (s.number(), s.number()))
            }
            6 => {
                b.0.extend(old_gnu_sparse(&mut s));
                b
            }
            7 => b.pax_body(tf::PAX_LOCAL, &s.bytes(64)),
            _ => b.dir("d/").symlink("l", "d"),
        };
    }
    let archive = b.end();
    check_archive(&archive, &limits);
}

fn check_archive(archive: &[u8], limits: &xcat_image::tar::Limits) {
    let mut r = xcat_image::tar::TarReader::new(archive, limits.clone(), None);
    let mut buf = [0u8; 4096];
    for _ in 0..=archive.len() / 512 {
        let e = match r.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) | Err(_) => return,
        };
        assert!(!e.path.is_empty() && e.path.len() <= limits.max_path);
        assert!(e.link.len() <= limits.max_path && !e.path.contains(&0));
        let names: Vec<&Vec<u8>> = e.xattrs.iter().map(|(n, _)| n).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "xattrs not unique");
        let small = e
            .xattrs
            .iter()
            .all(|(_, v)| v.len() <= limits.max_xattr_value);
        assert!(small, "an xattr value over max_xattr_value");
        if let Some(map) = &e.sparse {
            assert!(map.len() <= limits.max_sparse_segments);
            let mut end = 0u64;
            for &(off, len) in map {
                assert!(off >= end, "sparse segments out of order: {map:?}");
                end = off.checked_add(len).expect("sparse segment overflows");
            }
            assert!(end <= e.size, "sparse map beyond the real size");
            assert_eq!(map.iter().map(|s| s.1).sum::<u64>(), e.stored_size);
        }
        let mut got = 0u64;
        loop {
            match r.read_data(&mut buf) {
                Ok(0) => break,
                Ok(n) => got += n as u64,
                Err(_) => return,
            }
        }
        assert_eq!(got, e.stored_size, "data does not read back to its size");
    }
    panic!("more entries than blocks in the archive");
}
