//! Crafted tar archives for tests (feature `test-support`).
//!
//! Every field is written as given, so a test can send what a hostile node would:
//! names with `..` or a leading `/`, links pointing anywhere, device nodes, sizes
//! that do not match the body, streams cut anywhere, arbitrary pax (and so sparse)
//! records. The headers themselves are well-formed ustar with valid checksums;
//! tests corrupt the bytes afterwards when they want a broken header.

use super::header::{self, typeflag, Header, BLOCK};

/// The mtime of every crafted entry: fixed, so archives are reproducible.
const MTIME: u64 = 0o14000000000;

/// An archive built entry by entry. The bytes are public so that a test can append
/// or change anything. Names are raw bytes: `&str`, `&[u8]`, `&String`, `&Vec<u8>`.
#[derive(Debug, Default, Clone)]
pub struct TarBuilder(pub Vec<u8>);

impl TarBuilder {
    pub fn new() -> Self {
        TarBuilder::default()
    }

    /// A regular file with `data` as its body.
    pub fn file(self, name: &(impl AsRef<[u8]> + ?Sized), data: &[u8]) -> Self {
        let h = header_block(
            name.as_ref(),
            typeflag::REGULAR,
            0o644,
            data.len() as u64,
            b"",
        );
        self.block(h).body(data)
    }

    pub fn dir(self, name: &(impl AsRef<[u8]> + ?Sized)) -> Self {
        self.bodiless(name.as_ref(), typeflag::DIRECTORY, 0o755, b"")
    }

    pub fn symlink(
        self,
        name: &(impl AsRef<[u8]> + ?Sized),
        target: &(impl AsRef<[u8]> + ?Sized),
    ) -> Self {
        self.bodiless(name.as_ref(), typeflag::SYMLINK, 0o777, target.as_ref())
    }

    pub fn hardlink(
        self,
        name: &(impl AsRef<[u8]> + ?Sized),
        target: &(impl AsRef<[u8]> + ?Sized),
    ) -> Self {
        self.bodiless(name.as_ref(), typeflag::HARD_LINK, 0o644, target.as_ref())
    }

    /// An entry of any `typeflag` with device numbers (devices, FIFOs).
    pub fn node(self, name: &(impl AsRef<[u8]> + ?Sized), typeflag: u8, dev: (u64, u64)) -> Self {
        let mut h = header_block(name.as_ref(), typeflag, 0o666, 0, b"");
        h.set_number(header::DEVMAJOR, dev.0);
        h.set_number(header::DEVMINOR, dev.1);
        self.block(h)
    }

    /// A header of any `typeflag` declaring `size` bytes, followed by exactly `body`
    /// and no padding: the body may be shorter or longer than declared.
    pub fn declared(
        mut self,
        name: &(impl AsRef<[u8]> + ?Sized),
        typeflag: u8,
        size: u64,
        body: &[u8],
    ) -> Self {
        self = self.block(header_block(name.as_ref(), typeflag, 0o644, size, b""));
        self.0.extend_from_slice(body);
        self
    }

    /// A regular file declaring `declared` bytes followed by only `actual` bytes.
    pub fn short_file(
        self,
        name: &(impl AsRef<[u8]> + ?Sized),
        declared: u64,
        actual: usize,
    ) -> Self {
        self.declared(name, typeflag::REGULAR, declared, &vec![b'x'; actual])
    }

    /// A pax extended header (`x`) with `records`, for the entry that follows.
    pub fn pax(self, records: &[(&str, &[u8])]) -> Self {
        self.pax_body(typeflag::PAX_LOCAL, &pax_text(records))
    }

    /// A pax 1.0 sparse file (GNU tar's `--sparse --format=posix`) named `name`
    /// of `realsize` logical bytes holding `segments` (offset, data); the rest
    /// is holes. `realsize` is taken as given, so it can be absurd.
    pub fn sparse(self, name: &str, realsize: u64, segments: &[(u64, &[u8])]) -> Self {
        let mut body = format!("{}\n", segments.len());
        for (off, data) in segments {
            body.push_str(&format!("{off}\n{}\n", data.len()));
        }
        let mut body = body.into_bytes();
        body.resize(body.len().div_ceil(512) * 512, 0);
        for (_, data) in segments {
            body.extend_from_slice(data);
        }
        let size = body.len().to_string();
        let real = realsize.to_string();
        self.pax(&[
            ("GNU.sparse.major", b"1"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", name.as_bytes()),
            ("GNU.sparse.realsize", real.as_bytes()),
            ("size", size.as_bytes()),
        ])
        .file(&format!("GNUSparseFile.0/{name}"), &body)
    }

    /// A pax global header (`g`) with `records`, for every entry that follows.
    pub fn global_pax(self, records: &[(&str, &[u8])]) -> Self {
        self.pax_body(typeflag::PAX_GLOBAL, &pax_text(records))
    }

    /// An extension header of any `typeflag` (`x`, `g`, `L`...) whose body is
    /// exactly `body` (records built with [`header::push_pax_record`], or not
    /// records at all), padded to a whole block.
    pub fn pax_body(self, typeflag: u8, body: &[u8]) -> Self {
        let h = header_block(b"PaxHeader", typeflag, 0o644, body.len() as u64, b"");
        self.block(h).body(body)
    }

    /// The archive with its end-of-archive marker.
    pub fn end(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0u8; 2 * BLOCK]);
        self.0
    }

    /// The first `len` bytes, without an end-of-archive marker.
    pub fn cut(mut self, len: usize) -> Vec<u8> {
        self.0.truncate(len);
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn bodiless(self, name: &[u8], typeflag: u8, mode: u32, link: &[u8]) -> Self {
        self.block(header_block(name, typeflag, mode, 0, link))
    }

    fn block(mut self, h: Header) -> Self {
        self.0.extend_from_slice(&h.finish());
        self
    }

    /// `data`, padded to a whole block.
    fn body(mut self, data: &[u8]) -> Self {
        self.0.extend_from_slice(data);
        let pad = header::padding(data.len() as u64) as usize;
        self.0.resize(self.0.len() + pad, 0);
        self
    }
}

/// The body of a pax header holding `records`.
fn pax_text(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in records {
        header::push_pax_record(&mut body, k.as_bytes(), v);
    }
    body
}

/// An unsealed ustar header: owner 0:0, the fixed mtime, sizes too big for octal
/// in base-256.
fn header_block(name: &[u8], typeflag: u8, mode: u32, size: u64, link: &[u8]) -> Header {
    // cutting a name would silently test something else
    assert!(
        name.len() <= header::NAME.len() && link.len() <= header::LINKNAME.len(),
        "name or link target too long for a ustar header"
    );
    let mut h = Header::ustar();
    h.set_bytes(header::NAME, name);
    h.set_number(header::MODE, u64::from(mode));
    h.set_number(header::UID, 0);
    h.set_number(header::GID, 0);
    h.set_number(header::SIZE, size);
    h.set_number(header::MTIME, MTIME);
    h.set_typeflag(typeflag);
    h.set_bytes(header::LINKNAME, link);
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Kind, Limits, TarReader};

    #[test]
    fn crafted_entries_read_back() {
        let a = TarBuilder::new()
            .pax(&[("path", b"long/name")])
            .file("f", b"abc")
            .node("c", b'3', (1, 3))
            .short_file("huge", 10 << 30, 0)
            .0;
        let mut r = TarReader::new(&a[..], Limits::default(), None);
        let f = r.next_entry().unwrap().unwrap();
        assert_eq!((&f.path[..], f.size, f.mode), (&b"long/name"[..], 3, 0o644));
        r.read_data(&mut [0u8; 3]).unwrap();
        let c = r.next_entry().unwrap().unwrap();
        assert_eq!((c.kind, c.devmajor, c.devminor), (Kind::CharDevice, 1, 3));
        let huge = r.next_entry().unwrap().unwrap();
        assert_eq!(huge.size, 10 << 30);
    }
}
