//! The packed-image record packimage writes beside the packed file,
//! `<packed file>.info`: `key=value` lines (`format`, `compression`, `size`,
//! `sha256`, `tree_bytes`, `ram_mib`). Unknown keys are ignored, so a newer
//! packimage may add some; a known key with a bad value is an error (the record
//! is what the image is checked against, so a damaged one is not guessed at).

/// Archive formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Cpio,
    Tar,
    Squashfs,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Cpio => "cpio",
            Format::Tar => "tar",
            Format::Squashfs => "squashfs",
        }
    }
}

/// Compressions of a streamed archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

/// What the record says; a key it lacks is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub format: Option<Format>,
    pub compression: Option<Compression>,
    /// Bytes of the packed file.
    pub size: Option<u64>,
    /// SHA-256 of the packed file.
    pub sha256: Option<[u8; 32]>,
    /// Bytes the unpacked tree takes in a tmpfs.
    pub tree_bytes: Option<u64>,
    /// MiB of RAM a node needs to boot this format.
    pub ram_mib: Option<u64>,
}

/// A line of the record that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct RecordError {
    pub line: usize,
    pub reason: String,
}

impl Record {
    pub fn parse(text: &str) -> Result<Record, RecordError> {
        let mut r = Record::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: String| RecordError {
                line: i + 1,
                reason,
            };
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| bad(format!("{line:?} is not key=value")))?;
            let (k, v) = (k.trim(), v.trim());
            let value = |what: &str| bad(format!("{k}={v:?} is not {what}"));
            match k {
                "format" => {
                    r.format = Some(parse_format(v).ok_or_else(|| value("cpio, tar or squashfs"))?)
                }
                "compression" => {
                    r.compression =
                        Some(parse_compression(v).ok_or_else(|| value("gzip, xz, zstd or none"))?)
                }
                "size" => r.size = Some(number(v).ok_or_else(|| value("a number of bytes"))?),
                "sha256" => r.sha256 = Some(sha256(v).ok_or_else(|| value("64 hex digits"))?),
                "tree_bytes" => {
                    r.tree_bytes = Some(number(v).ok_or_else(|| value("a number of bytes"))?)
                }
                "ram_mib" => r.ram_mib = Some(number(v).ok_or_else(|| value("a number of MiB"))?),
                _ => {}
            }
        }
        Ok(r)
    }
}

fn parse_format(v: &str) -> Option<Format> {
    Some(match v {
        "cpio" => Format::Cpio,
        "tar" => Format::Tar,
        "squashfs" => Format::Squashfs,
        _ => return None,
    })
}

fn parse_compression(v: &str) -> Option<Compression> {
    Some(match v {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "xz" => Compression::Xz,
        "zstd" => Compression::Zstd,
        _ => return None,
    })
}

fn number(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn sha256(v: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(v, &mut out).ok()?;
    Some(out)
}

/// Format and compression from the packed file's name, for an image without a
/// record: xCAT's names (`rootimg.cpio.gz`, `rootimg.tar.xz`, `rootimg.sfs`)
/// and ours (`.zst`, `.squashfs`).
pub fn from_name(url_path: &str) -> Option<(Format, Compression)> {
    let name = url_path.rsplit('/').next().unwrap_or(url_path);
    if name.ends_with(".sfs") || name.ends_with(".squashfs") {
        return Some((Format::Squashfs, Compression::None));
    }
    let (stem, compression) = match name.rsplit_once('.')? {
        (stem, "gz") => (stem, Compression::Gzip),
        (stem, "xz") => (stem, Compression::Xz),
        (stem, "zst") => (stem, Compression::Zstd),
        _ => (name, Compression::None),
    };
    let format = if stem.ends_with(".cpio") {
        Format::Cpio
    } else if stem.ends_with(".tar") {
        Format::Tar
    } else {
        return None;
    };
    Some((format, compression))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUM: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn a_full_record() {
        let text = format!(
            "format=tar\ncompression=zstd\nsize=123456\nsha256={SUM}\n\
             tree_bytes=987654321\nram_mib=1400\nfuture_key=whatever\n\n"
        );
        let r = Record::parse(&text).unwrap();
        assert_eq!(r.format, Some(Format::Tar));
        assert_eq!(r.compression, Some(Compression::Zstd));
        assert_eq!(r.size, Some(123456));
        assert_eq!(hex::encode(r.sha256.unwrap()), SUM);
        assert_eq!(r.tree_bytes, Some(987654321));
        assert_eq!(r.ram_mib, Some(1400));
    }

    #[test]
    fn missing_keys_stay_unknown() {
        let r = Record::parse("format=squashfs\r\nsize=10\r\n").unwrap();
        assert_eq!(r.format, Some(Format::Squashfs));
        assert_eq!(r.size, Some(10));
        assert_eq!(r.sha256, None);
        assert_eq!(r.ram_mib, None);
        assert_eq!(Record::parse("").unwrap(), Record::default());
    }

    #[test]
    fn bad_values_are_errors_naming_the_line() {
        let e = Record::parse("format=tar\nsize=12x\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("size"), "{e}");
        assert!(Record::parse("sha256=abc").is_err());
        assert!(Record::parse(&format!("sha256={SUM}0")).is_err());
        assert!(Record::parse("format=zip").is_err());
        assert!(Record::parse("compression=bzip2").is_err());
        assert!(Record::parse("just words").is_err());
        assert!(Record::parse("ram_mib=-5").is_err());
    }

    #[test]
    fn formats_from_names() {
        let f = |n| from_name(n);
        assert_eq!(
            f("/install/x/rootimg.cpio.gz"),
            Some((Format::Cpio, Compression::Gzip))
        );
        assert_eq!(f("rootimg.cpio.xz"), Some((Format::Cpio, Compression::Xz)));
        assert_eq!(f("rootimg.tar.zst"), Some((Format::Tar, Compression::Zstd)));
        assert_eq!(f("rootimg.tar"), Some((Format::Tar, Compression::None)));
        assert_eq!(
            f("a/rootimg.sfs"),
            Some((Format::Squashfs, Compression::None))
        );
        assert_eq!(
            f("rootimg.squashfs"),
            Some((Format::Squashfs, Compression::None))
        );
        assert_eq!(f("rootimg.gz"), None);
        assert_eq!(f("kernel"), None);
    }
}
