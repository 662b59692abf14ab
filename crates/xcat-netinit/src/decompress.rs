//! The decompressing stage: gzip (zlib-rs), xz (liblzma's multi-threaded
//! decoder: the packer's streams are made of independent blocks), zstd, or
//! none. Concatenated members, frames and streams are all read. Once the
//! compressed stream has ended, the rest of the input is read and dropped, so
//! the fetching stage always reaches the end of the file and checks it.

use crate::pipeline::{pump, ChunkReader, PumpError, Sender};
use crate::record::Compression;
use std::io::{self, BufRead};

/// Soft limit of the xz decoder's memory for threads: beyond it liblzma
/// decodes on one thread (the node's RAM is the tree's).
const XZ_THREAD_MEMORY: u64 = 256 << 20;

/// Why the stage stopped.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    /// The input could not be decompressed (or could not be read: the fetching
    /// stage's own result says which).
    #[error("decompressing ({compression}): {source}")]
    Corrupt {
        compression: &'static str,
        source: io::Error,
    },
    #[error(transparent)]
    Gone(#[from] crate::pipeline::Gone),
}

/// Decompresses `input` into `out` (run it on a thread of its own), then ends
/// or fails `out`. Returns the bytes produced.
pub fn run(c: Compression, mut input: ChunkReader, out: Sender) -> Result<u64, DecompressError> {
    let corrupt = |source| DecompressError::Corrupt {
        compression: c.name(),
        source,
    };
    let res = decode_all(c, &mut input, &out).and_then(|n| {
        input.drain().map_err(corrupt)?;
        Ok(n)
    });
    match &res {
        Ok(_) => out.end(),
        Err(DecompressError::Corrupt { source, .. }) => {
            out.fail(io::Error::new(source.kind(), res_text(c, source)))
        }
        Err(DecompressError::Gone(_)) => {}
    }
    res
}

fn res_text(c: Compression, e: &io::Error) -> String {
    format!("decompressing ({}): {e}", c.name())
}

fn decode_all(
    c: Compression,
    input: &mut ChunkReader,
    out: &Sender,
) -> Result<u64, DecompressError> {
    let corrupt = |source| DecompressError::Corrupt {
        compression: c.name(),
        source,
    };
    let pumped = |r: Result<u64, PumpError>| match r {
        Ok(n) => Ok(n),
        Err(PumpError::Gone(g)) => Err(DecompressError::Gone(g)),
        Err(PumpError::Read(e) | PumpError::Check(e)) => Err(corrupt(e)),
    };
    match c {
        Compression::None => pumped(pump(input, out, |_| Ok(()))),
        Compression::Gzip => pumped(pump(
            flate2::bufread::MultiGzDecoder::new(input),
            out,
            |_| Ok(()),
        )),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(input).map_err(corrupt)?;
            // frames written with --long need a wider window than the default
            d.window_log_max(31).map_err(corrupt)?;
            pumped(pump(d, out, |_| Ok(())))
        }
        Compression::Xz => decode_xz(input, out, pumped),
    }
}

/// Each xz stream with a fresh multi-threaded decoder (it reads one stream),
/// the zero padding between streams skipped.
fn decode_xz(
    input: &mut ChunkReader,
    out: &Sender,
    pumped: impl Fn(Result<u64, PumpError>) -> Result<u64, DecompressError>,
) -> Result<u64, DecompressError> {
    let corrupt = |source| DecompressError::Corrupt {
        compression: "xz",
        source,
    };
    let mut total = 0;
    loop {
        let stream = xz_decoder().map_err(corrupt)?;
        total += pumped(pump(
            liblzma::bufread::XzDecoder::new_stream(&mut *input, stream),
            out,
            |_| Ok(()),
        ))?;
        if !skip_zeros(input).map_err(corrupt)? {
            return Ok(total);
        }
    }
}

fn xz_decoder() -> io::Result<liblzma::stream::Stream> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(16));
    liblzma::stream::MtStreamBuilder::new()
        .threads(threads as u32)
        .memlimit_threading(XZ_THREAD_MEMORY)
        .memlimit_stop(u64::MAX)
        .decoder()
        .map_err(io::Error::other)
}

/// Skips zero bytes; whether anything else follows.
fn skip_zeros(r: &mut impl BufRead) -> io::Result<bool> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(false);
        }
        let zeros = buf.iter().take_while(|&&b| b == 0).count();
        let more = zeros < buf.len();
        r.consume(zeros);
        if more {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::channel;
    use std::io::{Read, Write};

    fn data() -> Vec<u8> {
        (0..3_000_000u32).map(|i| (i / 1000) as u8).collect()
    }

    fn compress(c: Compression, d: &[u8]) -> Vec<u8> {
        match c {
            Compression::None => d.to_vec(),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(d).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => {
                // checksummed frames, as the packer writes them
                let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
                e.include_checksum(true).unwrap();
                e.write_all(d).unwrap();
                e.finish().unwrap()
            }
            Compression::Xz => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
                e.write_all(d).unwrap();
                e.finish().unwrap()
            }
        }
    }

    /// The stage between two channels, as the boot runs it.
    fn through(
        c: Compression,
        packed: Vec<u8>,
    ) -> (Result<u64, DecompressError>, io::Result<Vec<u8>>) {
        let (tx_in, rx_in) = channel(2);
        let (tx_out, mut rx_out) = channel(2);
        let feeder = std::thread::spawn(move || {
            pump(&packed[..], &tx_in, |_| Ok(())).unwrap();
            tx_in.end();
        });
        let stage = std::thread::spawn(move || run(c, rx_in, tx_out));
        let mut got = Vec::new();
        let read = rx_out.read_to_end(&mut got).map(|_| got);
        feeder.join().unwrap();
        (stage.join().unwrap(), read)
    }

    #[test]
    fn every_compression_and_concatenation() {
        let d = data();
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Zstd,
            Compression::Xz,
        ] {
            let mut twice = compress(c, &d[..1_000_000]);
            if c == Compression::Xz {
                twice.extend_from_slice(&[0u8; 8]); // stream padding
            }
            twice.extend(compress(c, &d[1_000_000..]));
            let (res, out) = through(c, twice);
            assert_eq!(res.unwrap(), d.len() as u64, "{c:?}");
            assert!(out.unwrap() == d, "{c:?}: the bytes differ");
        }
    }

    #[test]
    fn corrupt_input_fails_the_stream() {
        let d = data();
        for c in [Compression::Gzip, Compression::Zstd, Compression::Xz] {
            let mut packed = compress(c, &d);
            let mid = packed.len() / 2;
            packed[mid] ^= 0x55;
            let (res, out) = through(c, packed);
            assert!(res.is_err(), "{c:?}");
            assert!(out.is_err(), "{c:?}: the reader must see the failure");
        }
    }
}
