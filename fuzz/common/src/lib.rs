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
