//! Holes of sparse files, as the packers see them.
//!
//! A regular file whose allocated blocks (`st_blocks * 512`) cover less than its
//! size may have holes; only then is `SEEK_DATA`/`SEEK_HOLE` asked where its data
//! lies (most files are dense, and the two calls per segment are not free). The
//! resulting map serves the tar writer (a pax GNU sparse 1.0 entry stores the data
//! segments only) and the survey's estimate of what the unpacked tree occupies in a
//! tmpfs (holes cost no memory there).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// (offset, length) of each data segment, in order, not overlapping.
pub type DataMap = Vec<(u64, u64)>;

/// The page size a tmpfs allocates file data in.
pub const PAGE: u64 = 4096;

/// Most segments a map may have. Our tar reader (and so the initrd's unpacker)
/// refuses more than 2^20 by default; a map of 2^16 segments is ~1.5 MiB of text,
/// and a file more fragmented than that has its closest holes stored as zeros.
pub const MAX_SEGMENTS: usize = 1 << 16;

/// Whether the file may have holes: fewer bytes allocated than its size.
#[allow(clippy::unnecessary_cast)]
pub fn may_have_holes(st: &rustix::fs::Stat) -> bool {
    let allocated = (st.st_blocks as u64).saturating_mul(512);
    allocated < st.st_size as u64
}

/// Where the data of the first `size` bytes of `file` lies. A filesystem without
/// `SEEK_DATA` reports the whole file as data (the kernel's generic fallback), so
/// the map is then one segment.
pub fn data_map(file: &File, size: u64) -> io::Result<DataMap> {
    use rustix::fs::{seek, SeekFrom};
    let mut map = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let start = match seek(file, SeekFrom::Data(pos as i64)) {
            Ok(d) => d.min(size),
            // no data after pos: the rest is a hole
            Err(rustix::io::Errno::NXIO) => size,
            Err(e) => return Err(e.into()),
        };
        if start >= size {
            break;
        }
        let end = match seek(file, SeekFrom::Hole(start as i64)) {
            Ok(h) => h.min(size),
            Err(rustix::io::Errno::NXIO) => size,
            Err(e) => return Err(e.into()),
        };
        if end <= start {
            // the file changed between the two calls: take the rest as data
            map.push((start, size - start));
            break;
        }
        map.push((start, end - start));
        pos = end;
    }
    Ok(coarsen(map, MAX_SEGMENTS))
}

/// Whether a map of a `size`-byte file has no hole at all.
pub fn is_dense(map: &[(u64, u64)], size: u64) -> bool {
    matches!(map, [(0, len)] if *len == size)
}

/// Bytes of data in the map.
pub fn data_bytes(map: &[(u64, u64)]) -> u64 {
    map.iter().map(|s| s.1).sum()
}

/// Bytes the map's data occupies in pages of [`PAGE`] bytes (a page holding any
/// byte of a segment is allocated).
pub fn page_bytes(map: &[(u64, u64)]) -> u64 {
    let mut total = 0u64;
    let mut last_page_end = 0u64;
    for &(off, len) in map.iter().filter(|s| s.1 > 0) {
        let first = (off / PAGE * PAGE).max(last_page_end);
        let end = (off + len).div_ceil(PAGE) * PAGE;
        total += end.saturating_sub(first);
        last_page_end = end;
    }
    total
}

/// Merges segments across the smallest holes until at most `max` remain: each
/// round rounds the segments out to a coarser granule (doubling from 4 KiB) and
/// joins those that then touch, so the holes kept are the large ones.
pub fn coarsen(mut map: DataMap, max: usize) -> DataMap {
    let mut granule = PAGE;
    while map.len() > max.max(1) {
        let mut out: DataMap = Vec::with_capacity(map.len() / 2 + 1);
        for (off, len) in map {
            let (start, end) = (off / granule * granule, off + len);
            match out.last_mut() {
                Some((o, l)) if start <= (*o + *l).div_ceil(granule) * granule => {
                    *l = end.max(*o + *l) - *o
                }
                _ => out.push((off, len)),
            }
        }
        map = out;
        granule = granule.saturating_mul(2);
    }
    map
}

/// Reads the segments of a map from a file, one after the other, as the tar
/// writer stores them. A segment the file no longer fills (it shrank while being
/// packed) is completed with zeros, so later segments keep their place;
/// [`Self::missing`] counts those zeros.
pub struct SegmentReader<'a> {
    file: &'a File,
    map: &'a [(u64, u64)],
    /// Index of the current segment and the bytes of it already returned.
    seg: usize,
    done: u64,
    missing: u64,
}

impl<'a> SegmentReader<'a> {
    pub fn new(file: &'a File, map: &'a [(u64, u64)]) -> Self {
        SegmentReader {
            file,
            map,
            seg: 0,
            done: 0,
            missing: 0,
        }
    }

    /// Zero bytes given in place of data the file no longer had.
    pub fn missing(&self) -> u64 {
        self.missing
    }
}

impl Read for SegmentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(&(off, len)) = self.map.get(self.seg) {
            let left = len - self.done;
            if left == 0 {
                self.seg += 1;
                self.done = 0;
                continue;
            }
            let want = (left.min(buf.len() as u64)) as usize;
            let n = match self.file.read_at(&mut buf[..want], off + self.done) {
                Ok(0) => {
                    buf[..want].fill(0);
                    self.missing += want as u64;
                    want
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.done += n as u64;
            return Ok(n);
        }
        Ok(0)
    }
}

/// The map a pax GNU sparse 1.0 entry declares: the data segments and, for a
/// file ending in a hole, a last empty segment at its size, as GNU tar writes it
/// (that segment is what makes GNU tar extend the extracted file to its size).
pub fn declared(map: &[(u64, u64)], size: u64) -> DataMap {
    let mut segs = map.to_vec();
    if segs.is_empty() || segs.last().map_or(0, |&(o, l)| o + l) < size {
        segs.push((size, 0));
    }
    segs
}

/// The declared map as it is stored ahead of the entry's data: the segment count,
/// then each offset and length, every number on its own line (not yet padded).
pub fn map_text(map: &[(u64, u64)], size: u64) -> Vec<u8> {
    let segs = declared(map, size);
    let mut t = format!("{}\n", segs.len());
    for (o, l) in segs {
        t.push_str(&format!("{o}\n{l}\n"));
    }
    t.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    fn sparse_file(dir: &std::path::Path, size: u64, data: &[(u64, &[u8])]) -> File {
        let p = dir.join("f");
        let mut f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        f.set_len(size).unwrap();
        for (off, bytes) in data {
            f.seek(SeekFrom::Start(*off)).unwrap();
            f.write_all(bytes).unwrap();
        }
        f.sync_all().unwrap();
        f
    }

    #[test]
    fn map_of_a_file_with_holes() {
        let t = tempfile::tempdir().unwrap();
        let mib = 1u64 << 20;
        let f = sparse_file(
            t.path(),
            64 * mib,
            &[(0, b"head"), (10 * mib, b"middle"), (40 * mib + 5, b"x")],
        );
        let st = rustix::fs::fstat(&f).unwrap();
        assert!(may_have_holes(&st));
        let map = data_map(&f, 64 * mib).unwrap();
        assert_eq!(map.len(), 3, "{map:?}");
        // The filesystem reports whole blocks; each holds its bytes.
        for (want, (off, len)) in [0, 10 * mib, 40 * mib].into_iter().zip(&map) {
            assert!(*off <= want && want < off + len, "{map:?}");
            assert!(*len <= 1 << 16, "{map:?}");
        }
        assert!(!is_dense(&map, 64 * mib));
        assert_eq!(page_bytes(&map), data_bytes(&map).div_ceil(PAGE) * PAGE);
        // The segments read back with their data, holes left out.
        let mut r = SegmentReader::new(&f, &map);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out.len() as u64, data_bytes(&map));
        assert!(out.starts_with(b"head"));
        assert!(out.windows(6).any(|w| w == b"middle"));
        assert_eq!(r.missing(), 0);
        // A dense file is one segment.
        let d = sparse_file(t.path(), 10_000, &[(0, &[7u8; 10_000])]);
        assert!(is_dense(&data_map(&d, 10_000).unwrap(), 10_000));
        // A file of holes only has no segment, and declares one empty at its end.
        let h = sparse_file(t.path(), 5 * mib, &[]);
        let map = data_map(&h, 5 * mib).unwrap();
        assert!(map.is_empty(), "{map:?}");
        assert_eq!(declared(&map, 5 * mib), [(5 * mib, 0)]);
        assert_eq!(map_text(&map, 5 * mib), b"1\n5242880\n0\n");
    }

    #[test]
    fn a_shrunk_file_reads_as_zeros_in_place() {
        let t = tempfile::tempdir().unwrap();
        let f = sparse_file(t.path(), 100, &[(0, &[1u8; 100])]);
        let map = vec![(0, 10), (50, 10), (200, 5)];
        let mut out = Vec::new();
        let mut r = SegmentReader::new(&f, &map);
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 25);
        assert_eq!(&out[..20], &[1u8; 20]);
        assert_eq!(&out[20..], &[0u8; 5]);
        assert_eq!(r.missing(), 5);
    }

    #[test]
    fn coarsening_keeps_the_large_holes() {
        // 1000 small segments 8 KiB apart, then one far away.
        let mut map: DataMap = (0..1000u64).map(|i| (i * 8192, 100)).collect();
        map.push((1 << 30, 10));
        let c = coarsen(map.clone(), 10);
        assert!(c.len() <= 10, "{}", c.len());
        assert_eq!(c.last(), Some(&(1 << 30, 10)), "the big hole stays");
        assert_eq!(c[0].0, 0);
        // Every byte of data is still covered.
        for (o, l) in &map {
            assert!(c.iter().any(|(co, cl)| co <= o && o + l <= co + cl));
        }
        assert_eq!(coarsen(map.clone(), 2000), map);
    }

    #[test]
    fn pages_of_a_map() {
        assert_eq!(page_bytes(&[]), 0);
        assert_eq!(page_bytes(&[(0, 1)]), PAGE);
        assert_eq!(page_bytes(&[(10, 1), (20, 1)]), PAGE, "one page shared");
        assert_eq!(page_bytes(&[(4095, 2)]), 2 * PAGE);
        assert_eq!(page_bytes(&[(0, 1), (1 << 20, 0)]), PAGE);
    }
}
