//! The tar header block, defined once for the reader ([`super::TarReader`]), the
//! writer (`pack::tarwrite`) and the test builder: where each ustar and GNU field
//! lies, how numbers are written in it (octal text, GNU base-256), the checksum,
//! the type flags, and the records of pax extended headers.
//!
//! Parsing functions report problems as plain text; the reader adds the stream
//! offset when it turns them into a [`super::TarError`].

use std::ops::Range;

/// Size of a header block; entry bodies are padded to a multiple of it.
pub const BLOCK: usize = 512;

// The ustar layout (POSIX.1-1988 plus the 2001 `prefix`). Ranges are byte offsets
// in the header block.
pub const NAME: Range<usize> = 0..100;
pub const MODE: Range<usize> = 100..108;
pub const UID: Range<usize> = 108..116;
pub const GID: Range<usize> = 116..124;
pub const SIZE: Range<usize> = 124..136;
pub const MTIME: Range<usize> = 136..148;
pub const CHKSUM: Range<usize> = 148..156;
pub const TYPEFLAG: usize = 156;
pub const LINKNAME: Range<usize> = 157..257;
pub const MAGIC: Range<usize> = 257..263;
pub const VERSION: Range<usize> = 263..265;
pub const UNAME: Range<usize> = 265..297;
pub const GNAME: Range<usize> = 297..329;
pub const DEVMAJOR: Range<usize> = 329..337;
pub const DEVMINOR: Range<usize> = 337..345;
pub const PREFIX: Range<usize> = 345..500;

/// POSIX magic and version. GNU tar's own format writes `"ustar  \0"` over both
/// fields instead; such headers have no `prefix` (the area holds GNU fields).
pub const USTAR_MAGIC: &[u8; 6] = b"ustar\0";
pub const USTAR_VERSION: &[u8; 2] = b"00";

// The old GNU sparse header (typeflag `S`) reuses the prefix area: four map
// entries, a flag saying extension blocks follow, and the file's real size.
pub const GNU_SPARSE_MAP: Range<usize> = 386..482;
pub const GNU_IS_EXTENDED: usize = 482;
pub const GNU_REALSIZE: Range<usize> = 483..495;
/// A sparse extension block: 21 more map entries, then its own "more follow" flag.
pub const EXT_SPARSE_MAP: Range<usize> = 0..504;
pub const EXT_IS_EXTENDED: usize = 504;
/// One sparse map entry: a 12-byte offset then a 12-byte length, both numbers.
const SPARSE_ENTRY: usize = 24;

/// Type flags (the byte at [`TYPEFLAG`]).
pub mod typeflag {
    pub const REGULAR: u8 = b'0';
    /// Pre-POSIX archives mark regular files with a NUL.
    pub const REGULAR_OLD: u8 = 0;
    pub const HARD_LINK: u8 = b'1';
    pub const SYMLINK: u8 = b'2';
    pub const CHAR_DEVICE: u8 = b'3';
    pub const BLOCK_DEVICE: u8 = b'4';
    pub const DIRECTORY: u8 = b'5';
    pub const FIFO: u8 = b'6';
    /// Contiguous file: a regular file everywhere that matters.
    pub const CONTIGUOUS: u8 = b'7';
    pub const PAX_LOCAL: u8 = b'x';
    pub const PAX_GLOBAL: u8 = b'g';
    pub const GNU_LONG_NAME: u8 = b'L';
    pub const GNU_LONG_LINK: u8 = b'K';
    pub const GNU_SPARSE: u8 = b'S';
    /// GNU incremental dump directory: a directory with a listing as data.
    pub const GNU_DUMP_DIR: u8 = b'D';
    pub const GNU_MULTI_VOLUME: u8 = b'M';
    pub const GNU_OLD_NAMES: u8 = b'N';
}

/// Entry type, from the typeflag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    HardLink,
    Symlink,
    CharDevice,
    BlockDevice,
    Directory,
    Fifo,
    /// A typeflag we do not handle; its data is skipped.
    Other(u8),
}

impl Kind {
    /// The kind a header's typeflag declares. `name` matters because old archives
    /// mark directories only by a trailing `/` on a regular-file entry.
    pub fn from_typeflag(flag: u8, name: &[u8]) -> Kind {
        use typeflag::*;
        match flag {
            REGULAR | REGULAR_OLD if name.ends_with(b"/") => Kind::Directory,
            REGULAR | REGULAR_OLD | CONTIGUOUS | GNU_SPARSE => Kind::File,
            HARD_LINK => Kind::HardLink,
            SYMLINK => Kind::Symlink,
            CHAR_DEVICE => Kind::CharDevice,
            BLOCK_DEVICE => Kind::BlockDevice,
            DIRECTORY | GNU_DUMP_DIR => Kind::Directory,
            FIFO => Kind::Fifo,
            other => Kind::Other(other),
        }
    }

    /// The typeflag a writer puts in a header for this kind.
    pub fn typeflag(self) -> u8 {
        match self {
            Kind::File => typeflag::REGULAR,
            Kind::HardLink => typeflag::HARD_LINK,
            Kind::Symlink => typeflag::SYMLINK,
            Kind::CharDevice => typeflag::CHAR_DEVICE,
            Kind::BlockDevice => typeflag::BLOCK_DEVICE,
            Kind::Directory => typeflag::DIRECTORY,
            Kind::Fifo => typeflag::FIFO,
            Kind::Other(flag) => flag,
        }
    }
}

/// True for a block of zeros (two of them end an archive).
pub fn is_zero_block(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// A text field up to its first NUL (a field that fills its space has none).
pub fn cstr_field(f: &[u8]) -> &[u8] {
    match f.iter().position(|&b| b == 0) {
        Some(p) => &f[..p],
        None => f,
    }
}

/// Zero bytes that follow a body of `size` bytes to fill its last block.
pub fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// Splits a path for ustar's `prefix` (155) and `name` (100) fields.
pub fn split_ustar(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= NAME.len() {
        return Some((&[], path));
    }
    // the name part must be non-empty and ≤ 100; the prefix ≤ 155
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    for (i, &b) in trimmed.iter().enumerate() {
        if b == b'/' && i <= PREFIX.len() && path.len() - i - 1 <= NAME.len() && i > 0 {
            return Some((&path[..i], &path[i + 1..]));
        }
    }
    None
}

// ----------------------------------------------------------------------------
// Numbers
// ----------------------------------------------------------------------------

/// Parses a numeric header field: octal text, or GNU base-256 when the top bit of the
/// first byte is set (0x80 positive, 0xff negative).
pub fn parse_num(f: &[u8]) -> Result<i128, String> {
    if f.is_empty() {
        return Ok(0);
    }
    if f[0] & 0x80 != 0 {
        parse_base256(f)
    } else {
        parse_octal(f)
    }
}

fn parse_base256(f: &[u8]) -> Result<i128, String> {
    let negative = f[0] == 0xff;
    if f[0] != 0x80 && !negative {
        return Err("bad base-256 number".into());
    }
    if f.len() > 16 {
        // only the low 15 bytes may be significant for an i128
        let sign = if negative { 0xff } else { 0x00 };
        if f[1..f.len() - 15].iter().any(|&b| b != sign) {
            return Err("base-256 number too large".into());
        }
    }
    let start = f.len().saturating_sub(15).max(1);
    let mut v: i128 = if negative { -1 } else { 0 };
    for &b in &f[start..] {
        v = (v << 8) | i128::from(b);
    }
    Ok(v)
}

/// Octal digits, optionally surrounded by spaces or NULs (writers disagree on both).
fn parse_octal(f: &[u8]) -> Result<i128, String> {
    let mut v: i128 = 0;
    let mut seen = false;
    for &b in f {
        match b {
            b'0'..=b'7' => {
                seen = true;
                v = v * 8 + i128::from(b - b'0');
                if v > i128::from(u64::MAX) {
                    return Err("octal number too large".into());
                }
            }
            b' ' | 0 if !seen => continue,
            b' ' | 0 => break,
            _ => return Err(format!("bad octal digit {:?}", b as char)),
        }
    }
    Ok(v)
}

/// A numeric field that must be a non-negative `u64`; `what` names it in errors.
pub fn parse_u64(f: &[u8], what: &str) -> Result<u64, String> {
    let v = parse_num(f).map_err(|e| format!("{what}: {e}"))?;
    u64::try_from(v).map_err(|_| format!("{what}: negative or too large"))
}

/// A decimal number as pax records and sparse maps write them.
pub fn parse_dec(v: &[u8], what: &str) -> Result<u64, String> {
    let s = std::str::from_utf8(v).map_err(|_| format!("{what}: not a number"))?;
    s.trim()
        .parse::<u64>()
        .map_err(|_| format!("{what}: not a number: {s:?}"))
}

/// Writes `v` as zero-padded octal ended by a NUL. Returns false, leaving the field
/// untouched, when it does not fit.
pub fn write_octal(field: &mut [u8], v: u64) -> bool {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    if s.len() > digits {
        return false;
    }
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
    true
}

/// Writes `v` in GNU base-256: 0x80, then the value big-endian in the other bytes.
pub fn write_base256(field: &mut [u8], v: u64) {
    field.fill(0);
    field[0] = 0x80;
    let n = field.len();
    for (i, b) in v.to_be_bytes().iter().rev().enumerate() {
        if i + 1 < n {
            field[n - 1 - i] = *b;
        }
    }
}

/// Octal when it fits, else base-256 (what GNU tar does for big sizes and devices).
pub fn write_number(field: &mut [u8], v: u64) {
    if !write_octal(field, v) {
        write_base256(field, v);
    }
}

/// Reads the 24-byte sparse map entries of `area` (offset, length) onto `map`;
/// an entry starting with NUL is unused.
pub fn push_sparse_entries(area: &[u8], map: &mut Vec<(u64, u64)>) -> Result<(), String> {
    for e in area.chunks_exact(SPARSE_ENTRY) {
        if e[0] == 0 {
            continue;
        }
        let off = parse_u64(&e[0..12], "sparse offset")?;
        let len = parse_u64(&e[12..24], "sparse numbytes")?;
        map.push((off, len));
    }
    Ok(())
}

// ----------------------------------------------------------------------------
// Checksum
// ----------------------------------------------------------------------------

/// The block's byte sum with the checksum field counted as spaces, over unsigned
/// bytes (POSIX) and over signed bytes (what some old tars stored).
fn checksum_sums(blk: &[u8; BLOCK]) -> (i64, i64) {
    let mut unsigned: i64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in blk.iter().enumerate() {
        let b = if CHKSUM.contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    (unsigned, signed)
}

/// Whether the stored checksum matches either sum.
pub fn checksum_ok(blk: &[u8; BLOCK]) -> bool {
    let Ok(stored) = parse_num(&blk[CHKSUM]) else {
        return false;
    };
    let (unsigned, signed) = checksum_sums(blk);
    stored == i128::from(unsigned) || stored == i128::from(signed)
}

/// Stores the checksum the way GNU tar does: six octal digits, NUL, space.
pub fn set_checksum(blk: &mut [u8; BLOCK]) {
    let (sum, _) = checksum_sums(blk);
    blk[CHKSUM].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// A ustar header block being filled in; [`Header::finish`] seals it.
#[derive(Debug, Clone)]
pub struct Header {
    block: [u8; BLOCK],
}

impl Header {
    /// A zeroed block carrying the POSIX magic and version.
    pub fn ustar() -> Header {
        let mut block = [0u8; BLOCK];
        block[MAGIC].copy_from_slice(USTAR_MAGIC);
        block[VERSION].copy_from_slice(USTAR_VERSION);
        Header { block }
    }

    /// Copies `value` into a text field, cut to the field's length.
    pub fn set_bytes(&mut self, field: Range<usize>, value: &[u8]) {
        let n = value.len().min(field.len());
        self.block[field.start..field.start + n].copy_from_slice(&value[..n]);
    }

    /// See [`write_octal`].
    pub fn set_octal(&mut self, field: Range<usize>, v: u64) -> bool {
        write_octal(&mut self.block[field], v)
    }

    /// See [`write_number`].
    pub fn set_number(&mut self, field: Range<usize>, v: u64) {
        write_number(&mut self.block[field], v);
    }

    pub fn set_typeflag(&mut self, flag: u8) {
        self.block[TYPEFLAG] = flag;
    }

    /// The finished block, with its checksum.
    pub fn finish(mut self) -> [u8; BLOCK] {
        set_checksum(&mut self.block);
        self.block
    }
}

// ----------------------------------------------------------------------------
// pax extended headers
// ----------------------------------------------------------------------------

/// Modification time with nanoseconds; seconds may be negative (before 1970).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct Mtime {
    pub sec: i64,
    pub nsec: u32,
}

/// One pax record: (keyword, value).
pub type PaxRecord = (Vec<u8>, Vec<u8>);

/// Splits a pax extended header body into (keyword, value) records, in order.
pub fn parse_pax(data: &[u8]) -> Result<Vec<PaxRecord>, String> {
    pax_records(data)
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect()
}

/// The records of a pax extended header body, borrowed from it, so a reader can
/// check a budget (or drop keywords it ignores) before copying anything.
pub fn pax_records(data: &[u8]) -> PaxRecords<'_> {
    PaxRecords {
        data,
        failed: false,
    }
}

/// Iterator of [`pax_records`]; it ends after the first error.
pub struct PaxRecords<'a> {
    data: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for PaxRecords<'a> {
    type Item = Result<PaxRecordRef<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        // GNU tar and others may pad the body with NULs
        if self.failed || self.data.iter().all(|&b| b == 0) {
            return None;
        }
        let r = split_pax_record(self.data);
        match r {
            Ok((rec, rest)) => {
                self.data = rest;
                Some(Ok(rec))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// A pax record borrowed from its header body: (keyword, value).
pub type PaxRecordRef<'a> = (&'a [u8], &'a [u8]);

/// One record off the front of a non-empty body: (record, rest).
fn split_pax_record(data: &[u8]) -> Result<(PaxRecordRef<'_>, &[u8]), String> {
    if data[0] == 0 {
        return Err("NUL inside pax header".into());
    }
    let sp = data
        .iter()
        .position(|&b| b == b' ')
        .ok_or("pax record without length")?;
    let len = parse_dec(&data[..sp], "pax record length")?;
    let len = usize::try_from(len).map_err(|_| "pax record length out of range")?;
    if len <= sp + 1 || len > data.len() {
        return Err("pax record length out of range".into());
    }
    let rec = data[sp + 1..len]
        .strip_suffix(b"\n")
        .ok_or("pax record not terminated by newline")?;
    let eq = rec
        .iter()
        .position(|&b| b == b'=')
        .ok_or("pax record without '='")?;
    Ok(((&rec[..eq], &rec[eq + 1..]), &data[len..]))
}

/// Appends one record, `"<len> <key>=<value>\n"`, where `<len>` counts the whole
/// record including its own digits.
pub fn push_pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    loop {
        let total = rest + len.to_string().len();
        if total == len {
            break;
        }
        len = total;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Parses a pax time (`-12.5`, `1795630474.207379268`) into seconds and nanoseconds.
pub fn parse_pax_time(v: &[u8]) -> Option<Mtime> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let sec: i64 = int.parse().ok()?;
    let mut nsec: u32 = 0;
    for (i, c) in frac.bytes().take(9).enumerate() {
        nsec += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
    }
    if !neg {
        return Some(Mtime { sec, nsec });
    }
    if nsec == 0 {
        Some(Mtime { sec: -sec, nsec: 0 })
    } else {
        Some(Mtime {
            sec: -sec - 1,
            nsec: 1_000_000_000 - nsec,
        })
    }
}

/// pax time text: seconds and fraction, with correct handling of negative times
/// (-1.5 means 1.5 s before the epoch).
pub fn pax_time(sec: i64, nsec: u32) -> String {
    if nsec == 0 {
        return sec.to_string();
    }
    if sec >= 0 {
        format!("{sec}.{nsec:09}")
    } else {
        let whole = -(sec + 1);
        format!("-{whole}.{:09}", 1_000_000_000 - nsec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_num(b"0000644\0").unwrap(), 0o644);
        assert_eq!(parse_num(b"   17 \0").unwrap(), 0o17);
        assert_eq!(parse_num(b"\0\0\0\0").unwrap(), 0);
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[11] = 0x01;
        f[10] = 0x02;
        assert_eq!(parse_num(&f).unwrap(), 0x0201);
        let f = [0xffu8; 12];
        assert_eq!(parse_num(&f).unwrap(), -1);
        assert!(parse_num(b"12x4").is_err());
    }

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time(b"1795630474.207379268"),
            Some(Mtime {
                sec: 1795630474,
                nsec: 207379268
            })
        );
        assert_eq!(parse_pax_time(b"12"), Some(Mtime { sec: 12, nsec: 0 }));
        assert_eq!(
            parse_pax_time(b"-1.5"),
            Some(Mtime {
                sec: -2,
                nsec: 500_000_000
            })
        );
        assert_eq!(
            parse_pax_time(b"1.1234567891"),
            Some(Mtime {
                sec: 1,
                nsec: 123456789
            })
        );
        assert_eq!(parse_pax_time(b"x"), None);
    }

    #[test]
    fn pax_records() {
        let r = parse_pax(b"12 path=abc\n20 SCHILY.xattr.a=b\n").unwrap();
        assert_eq!(
            r,
            vec![
                (b"path".to_vec(), b"abc".to_vec()),
                (b"SCHILY.xattr.a".to_vec(), b"b".to_vec())
            ]
        );
        // value containing newline and '=' (length-delimited, not line-delimited)
        let r = parse_pax(b"13 path=a\nb=\n").unwrap();
        assert_eq!(r[0].1, b"a\nb=".to_vec());
        assert!(parse_pax(b"99 path=abc\n").is_err());
        assert!(parse_pax(b"5 a=b\n").is_err());
    }

    #[test]
    fn records_and_times() {
        let mut v = Vec::new();
        push_pax_record(&mut v, b"path", b"abc");
        assert_eq!(v, b"12 path=abc\n");
        let mut v = Vec::new();
        // a record whose length crosses a digit boundary
        push_pax_record(&mut v, b"k", &[b'x'; 93]);
        assert_eq!(v.len(), 99);
        assert!(v.starts_with(b"99 k="));
        let mut v = Vec::new();
        // one more byte: 2 digits would make 100, so the length needs 3 digits
        push_pax_record(&mut v, b"k", &[b'x'; 94]);
        assert_eq!(v.len(), 101);
        assert!(v.starts_with(b"101 k="));
        assert_eq!(pax_time(5, 7), "5.000000007");
        assert_eq!(pax_time(-2, 500_000_000), "-1.500000000");
        assert_eq!(pax_time(-2, 0), "-2");
    }

    #[test]
    fn ustar_split() {
        let long = [b"d".repeat(120), b"/".to_vec(), b"f".repeat(90)].concat();
        let (p, n) = split_ustar(&long).unwrap();
        assert_eq!(p.len(), 120);
        assert_eq!(n.len(), 90);
        assert!(split_ustar(&b"x".repeat(300)).is_none());
    }
}
