//! File data written so that zero pages become holes: a tmpfs allocates a
//! page for every page written, zeros or not, and a root tree often holds
//! files that are mostly zeros (preallocated logs, sparse images, databases).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The unit of a hole: tmpfs allocates whole pages.
pub const PAGE: u64 = 4096;

/// Writes `data` at `offset` of a new file (whose unwritten bytes read as
/// zeros), skipping every page-aligned piece that is all zeros. Returns the
/// offset just past the last byte written, if any was.
pub fn write_at(file: &File, data: &[u8], offset: u64) -> io::Result<Option<u64>> {
    let mut end = None;
    let mut run: Option<usize> = None;
    let mut i = 0usize;
    while i < data.len() {
        // the piece up to the next page boundary of the file
        let to_boundary = (PAGE - (offset + i as u64) % PAGE) as usize;
        let j = (i + to_boundary).min(data.len());
        if is_zero(&data[i..j]) {
            if let Some(s) = run.take() {
                file.write_all_at(&data[s..i], offset + s as u64)?;
                end = Some(offset + i as u64);
            }
        } else if run.is_none() {
            run = Some(i);
        }
        i = j;
    }
    if let Some(s) = run {
        file.write_all_at(&data[s..], offset + s as u64)?;
        end = Some(offset + data.len() as u64);
    }
    Ok(end)
}

/// Whether every byte is zero; 64 bytes at a time, stopping at the first
/// non-zero block (data pages usually fail in the first one).
pub fn is_zero(b: &[u8]) -> bool {
    let mut blocks = b.chunks_exact(64);
    for block in &mut blocks {
        let mut acc = 0u64;
        for w in block.chunks_exact(8) {
            acc |= u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        }
        if acc != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&x| x == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn zeros() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0u8; 4096]));
        for at in [0, 63, 64, 4000, 4095] {
            let mut b = [0u8; 4096];
            b[at] = 1;
            assert!(!is_zero(&b), "{at}");
        }
        assert!(!is_zero(&[0, 0, 0, 9]));
    }

    /// Zero pages leave holes, partial pages and data are written, and the
    /// content reads back exactly (the caller sets the size).
    #[test]
    fn zero_pages_become_holes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = File::create(&path).unwrap();
        let mut data = vec![0u8; 64 * 4096];
        data[100] = 1; // page 0 (partial, the write starts at 1000)
        data[40 * 4096 + 5] = 2; // one data page in the middle
        let last = data.len() - 1;
        data[last] = 3;
        let end = write_at(&f, &data, 1000).unwrap();
        assert_eq!(end, Some(1000 + data.len() as u64));
        assert_eq!(write_at(&f, &[0u8; 3 * 4096], 10 << 20).unwrap(), None);
        f.set_len(1000 + data.len() as u64).unwrap();
        let back = std::fs::read(&path).unwrap();
        assert!(back[..1000].iter().all(|&b| b == 0));
        assert!(back[1000..] == data[..], "content differs");
        let blocks = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(
            blocks <= 6 * 4096,
            "{blocks} bytes allocated for 3-4 data pages"
        );
    }
}
