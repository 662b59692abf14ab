//! The packed-image record `<dir>/<packed file>.info`, the RAM a node needs to boot
//! a packed image, and that figure as packimage keeps it in `osimage.description`.
//!
//! The record is `key=value` lines, read by the node's initrd (checksum, size, RAM
//! check, tmpfs size) and by nodeset (RAM check against `hwinv.memory`):
//!
//! ```text
//! format=cpio|tar|squashfs
//! compression=gzip|xz|zstd|none
//! size=<bytes of the packed file>
//! sha256=<hex of the packed file>
//! tree_bytes=<bytes the unpacked tree occupies in a tmpfs>
//! ram_mib=<MiB of RAM a node needs to boot this format>
//! ```
//! Unknown keys are ignored, so the record can grow. `compression` is how the file
//! is compressed as a stream; a squashfs compresses inside the filesystem and is
//! `none`.

use super::compress::Compression;
use super::Format;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

const MIB: u64 = 1 << 20;

/// MiB left for the running system (and, for squashfs, the overlay's upper layer).
pub const HEADROOM_MIB: u64 = 384;

/// The initrd the stateless boot uses, in the image directory (built by geninitrd).
pub const STATELESS_INITRD: &str = "initrd-stateless.gz";

/// The initrd size counted while [`STATELESS_INITRD`] is not built yet.
pub const INITRD_ASSUMED_BYTES: u64 = 64 * MIB;

/// The suffix of a record's file name.
pub const INFO_SUFFIX: &str = ".info";

/// The record's file name for a packed file name.
pub fn info_name(packed: &str) -> String {
    format!("{packed}{INFO_SUFFIX}")
}

/// MiB of RAM a node needs to boot an image packed as `format`.
///
/// cpio and tar are streamed into a tmpfs (no copy of the archive is kept): the
/// tree, plus 10% for the tmpfs's own bookkeeping and what the tree's estimate
/// misses. A squashfs file is held in RAM whole and mounted with an overlay whose
/// upper layer takes the writes from the headroom. Either way the kernel and the
/// initrd stay in memory, and [`HEADROOM_MIB`] is left for the system to run.
pub fn ram_need(
    format: Format,
    tree_bytes: u64,
    packed_size: u64,
    kernel_and_initrd_bytes: u64,
) -> u64 {
    let held = match format {
        Format::Cpio | Format::Tar => tree_bytes.saturating_add(tree_bytes.div_ceil(10)),
        Format::Squashfs => packed_size,
    };
    held.saturating_add(kernel_and_initrd_bytes)
        .div_ceil(MIB)
        .saturating_add(HEADROOM_MIB)
}

/// One `<packed file>.info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackRecord {
    pub format: Format,
    pub compression: Compression,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
    pub tree_bytes: u64,
    pub ram_mib: u64,
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the record has no {0}= line")]
    Missing(&'static str),
    #[error("the record's {key}= value {value:?} is not valid")]
    Bad { key: &'static str, value: String },
}

/// The record's name for a compression (`gzip`, not the file suffix `gz`).
fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Xz => "xz",
        Compression::Zstd => "zstd",
    }
}

impl PackRecord {
    /// The record's text.
    pub fn render(&self) -> String {
        format!(
            "format={}\ncompression={}\nsize={}\nsha256={}\ntree_bytes={}\nram_mib={}\n",
            self.format.name(),
            compression_name(self.compression),
            self.size,
            self.sha256,
            self.tree_bytes,
            self.ram_mib
        )
    }

    /// Reads a record: every key above is required, unknown keys are ignored, the
    /// last line of a repeated key counts.
    pub fn parse(text: &str) -> Result<PackRecord, RecordError> {
        let kv: BTreeMap<&str, &str> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let get = |key: &'static str| kv.get(key).copied().ok_or(RecordError::Missing(key));
        let bad = |key: &'static str, value: &str| RecordError::Bad {
            key,
            value: value.to_string(),
        };
        let num = |key: &'static str| -> Result<u64, RecordError> {
            let v = get(key)?;
            v.parse().map_err(|_| bad(key, v))
        };
        let f = get("format")?;
        let format = Format::parse(f).ok_or_else(|| bad("format", f))?;
        let c = get("compression")?;
        let compression = Compression::parse(c).ok_or_else(|| bad("compression", c))?;
        let sha256 = get("sha256")?;
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("sha256", sha256));
        }
        Ok(PackRecord {
            format,
            compression,
            size: num("size")?,
            sha256: sha256.to_ascii_lowercase(),
            tree_bytes: num("tree_bytes")?,
            ram_mib: num("ram_mib")?,
        })
    }
}

/// Passes writes through and hashes them (SHA-256), for the record's checksum of
/// an archive as it is written. The digest is shared, so it can be read after the
/// writer was consumed by the compressor chain.
pub struct Hashing<W: Write> {
    inner: W,
    hasher: Arc<Mutex<Sha256>>,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> (Self, Arc<Mutex<Sha256>>) {
        let hasher = Arc::new(Mutex::new(Sha256::new()));
        let w = Hashing {
            inner,
            hasher: hasher.clone(),
        };
        (w, hasher)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.hasher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The hex digest of what went through a [`Hashing`] writer.
pub fn hex_digest(h: &Mutex<Sha256>) -> String {
    hex::encode(
        h.lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .finalize(),
    )
}

/// SHA-256 of a whole file, read once (for archives another program wrote).
pub fn sha256_file(path: &std::path::Path) -> io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// The bracketed part of `osimage.description` where packimage keeps the RAM need
/// of each format it packed: `[ram cpio=900MiB tar=880MiB squashfs=610MiB]`. The
/// admin's text around it is kept as it is.
const RAM_OPEN: &str = "[ram ";

/// Byte range of the `[ram ...]` part in `desc`, brackets included.
fn ram_part(desc: &str) -> Option<std::ops::Range<usize>> {
    let start = desc.find(RAM_OPEN)?;
    let end = desc[start..].find(']')? + start + 1;
    Some(start..end)
}

/// The RAM needs recorded in an osimage description, in MiB per format (entries
/// that do not read as `<format>=<n>MiB` are left out).
pub fn description_ram(desc: &str) -> BTreeMap<Format, u64> {
    let Some(r) = ram_part(desc) else {
        return BTreeMap::new();
    };
    desc[r.start + RAM_OPEN.len()..r.end - 1]
        .split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let mib = v.strip_suffix("MiB")?.parse().ok()?;
            Some((Format::parse(k)?, mib))
        })
        .collect()
}

/// `desc` with the RAM need of `format` set to `mib` in its `[ram ...]` part (the
/// other formats' entries kept), the part appended when there is none.
pub fn set_description_ram(desc: &str, format: Format, mib: u64) -> String {
    let mut ram = description_ram(desc);
    ram.insert(format, mib);
    let part = format!(
        "{RAM_OPEN}{}]",
        ram.iter()
            .map(|(f, m)| format!("{}={m}MiB", f.name()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    match ram_part(desc) {
        Some(r) => format!("{}{part}{}", &desc[..r.start], &desc[r.end..]),
        None if desc.trim().is_empty() => part,
        None => format!("{} {part}", desc.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_need_by_format() {
        let gib = 1u64 << 30;
        // cpio/tar: tree + 10% + kernel and initrd + headroom.
        assert_eq!(ram_need(Format::Cpio, gib, 123, 0), 1024 + 103 + 384);
        assert_eq!(
            ram_need(Format::Tar, 10 * gib, 0, 80 * MIB),
            10 * 1024 + 1024 + 80 + 384
        );
        // The packed size does not count for streamed formats.
        assert_eq!(
            ram_need(Format::Cpio, gib, 100 * gib, 0),
            ram_need(Format::Cpio, gib, 0, 0)
        );
        // squashfs: the file itself, not the tree.
        assert_eq!(
            ram_need(Format::Squashfs, 100 * gib, 300 * MIB, 80 * MIB),
            300 + 80 + 384
        );
        // Rounded up to whole MiB; the headroom alone for nothing.
        assert_eq!(ram_need(Format::Squashfs, 0, 1, 0), 385);
        assert_eq!(ram_need(Format::Tar, 0, 0, 0), 384);
        assert_eq!(
            ram_need(Format::Tar, u64::MAX, 0, u64::MAX),
            u64::MAX / MIB + 1 + 384
        );
    }

    #[test]
    fn record_round_trip_and_errors() {
        let r = PackRecord {
            format: Format::Tar,
            compression: Compression::Zstd,
            size: 12345,
            sha256: "ab".repeat(32),
            tree_bytes: 1 << 30,
            ram_mib: 1600,
        };
        let text = r.render();
        assert_eq!(
            text,
            format!(
                "format=tar\ncompression=zstd\nsize=12345\nsha256={}\ntree_bytes=1073741824\nram_mib=1600\n",
                "ab".repeat(32)
            )
        );
        assert_eq!(PackRecord::parse(&text), Ok(r.clone()));
        // Unknown keys are ignored; case of the digest does not matter.
        let more = format!(
            "future=1\n{}",
            text.replace(&"ab".repeat(32), &"AB".repeat(32))
        );
        assert_eq!(PackRecord::parse(&more), Ok(r));
        assert_eq!(
            PackRecord::parse(&text.replace("ram_mib=1600\n", "")),
            Err(RecordError::Missing("ram_mib"))
        );
        assert!(matches!(
            PackRecord::parse(&text.replace("format=tar", "format=zip")),
            Err(RecordError::Bad { key: "format", .. })
        ));
        assert!(matches!(
            PackRecord::parse(&text.replace("size=12345", "size=-1")),
            Err(RecordError::Bad { key: "size", .. })
        ));
        assert!(matches!(
            PackRecord::parse(&text.replace(&"ab".repeat(32), "abc")),
            Err(RecordError::Bad { key: "sha256", .. })
        ));
    }

    #[test]
    fn hashing_writer_matches_a_plain_digest() {
        let (mut w, h) = Hashing::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        assert_eq!(w.inner, b"hello world");
        assert_eq!(
            hex_digest(&h),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }

    #[test]
    fn description_keeps_the_admin_text() {
        let d = set_description_ram("", Format::Cpio, 900);
        assert_eq!(d, "[ram cpio=900MiB]");
        let d = set_description_ram("Compute nodes, Rocky 9", Format::Cpio, 900);
        assert_eq!(d, "Compute nodes, Rocky 9 [ram cpio=900MiB]");
        // Only the packed format's entry changes; order is fixed.
        let d = set_description_ram(&d, Format::Squashfs, 610);
        assert_eq!(
            d,
            "Compute nodes, Rocky 9 [ram cpio=900MiB squashfs=610MiB]"
        );
        let d = set_description_ram(&d, Format::Cpio, 950);
        assert_eq!(
            d,
            "Compute nodes, Rocky 9 [ram cpio=950MiB squashfs=610MiB]"
        );
        // Text after the part stays after it.
        let d = set_description_ram("a [ram tar=1MiB] b", Format::Tar, 2);
        assert_eq!(d, "a [ram tar=2MiB] b");
        assert_eq!(
            description_ram("x [ram cpio=950MiB bogus tar=x squashfs=610MiB]"),
            BTreeMap::from([(Format::Cpio, 950), (Format::Squashfs, 610)])
        );
        assert!(description_ram("no record [ram").is_empty());
        assert!(description_ram("[random notes]").is_empty());
    }
}
