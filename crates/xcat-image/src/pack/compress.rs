//! Compression on all cores for packed images.
//!
//! * gzip: our own block-parallel deflate (the scheme `pigz` uses): the input is cut
//!   into 128 KiB blocks, each compressed on a worker thread as raw deflate primed with
//!   the previous 32 KiB as dictionary and ended with a sync flush (the last one with
//!   a final block); the pieces concatenate into **one** ordinary gzip member whose
//!   CRC-32 is combined from the per-block CRCs. Any gzip reader (gzip, zcat, the Linux
//!   kernel's initramfs unpacker) accepts it.
//! * zstd: libzstd's multi-threaded encoder (one frame, checksummed).
//! * xz: liblzma's multi-threaded encoder with a CRC-32 check (the kernel's xz
//!   decoder supports CRC-32 and none, not xz's default CRC-64).
//!
//! Every encoder is a [`FinishWrite`]: write the stream, then call `finish`, which
//! flushes the trailer; dropping without `finish` leaves a truncated stream.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The compressors packimage offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    /// Parses packimage's `-c` value (`pigz` is xCAT's name for parallel gzip).
    pub fn parse(s: &str) -> Option<Compression> {
        Some(match s {
            "gzip" | "gz" | "pigz" => Compression::Gzip,
            "xz" => Compression::Xz,
            "zstd" | "zst" => Compression::Zstd,
            "none" => Compression::None,
            _ => return None,
        })
    }

    /// File name suffix (without the dot), empty for none.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => "gz",
            Compression::Xz => "xz",
            Compression::Zstd => "zst",
        }
    }

    /// The default level (gzip 6 like gzip and pigz, zstd 3, xz preset 6).
    pub fn default_level(self) -> i32 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 6,
            Compression::Xz => 6,
            Compression::Zstd => 3,
        }
    }
}

impl Compression {
    /// The compression a file name's suffix says (`x.ko.xz`, `fw.bin.zst`,
    /// `x.gz`); [`Compression::None`] for any other name.
    pub fn of_name(name: &[u8]) -> Compression {
        for (suffix, kind) in [
            (&b".gz"[..], Compression::Gzip),
            (b".xz", Compression::Xz),
            (b".zst", Compression::Zstd),
        ] {
            if name.ends_with(suffix) {
                return kind;
            }
        }
        Compression::None
    }
}

/// A reader decoding `kind` from `input` (gzip: every member, as `zcat` reads).
pub fn decoder<'a, R: io::Read + 'a>(
    kind: Compression,
    input: R,
) -> io::Result<Box<dyn io::Read + 'a>> {
    Ok(match kind {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(input)?),
    })
}

/// A writer that must be finished to produce a complete stream.
pub trait FinishWrite: Write + Send {
    /// Writes the trailer and flushes everything to the underlying writer.
    fn finish(self: Box<Self>) -> io::Result<()>;
}

struct Plain<W: Write + Send>(W);
impl<W: Write + Send> Write for Plain<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
impl<W: Write + Send> FinishWrite for Plain<W> {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.0.flush()
    }
}

struct Zstd<W: Write + Send>(zstd::stream::write::Encoder<'static, W>);
impl<W: Write + Send> Write for Zstd<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
impl<W: Write + Send> FinishWrite for Zstd<W> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        self.0.finish()?.flush()
    }
}

struct Xz<W: Write + Send>(liblzma::write::XzEncoder<W>);
impl<W: Write + Send> Write for Xz<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
impl<W: Write + Send> FinishWrite for Xz<W> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        self.0.finish()?.flush()
    }
}

/// The number of worker threads "all cores" means here.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// An encoder of `kind` writing to `out`, using `threads` workers (0 = all cores) and
/// `level` (None = [`Compression::default_level`]).
pub fn encoder<W: Write + Send + 'static>(
    kind: Compression,
    level: Option<i32>,
    threads: usize,
    out: W,
) -> io::Result<Box<dyn FinishWrite>> {
    let threads = if threads == 0 { cores() } else { threads };
    let level = level.unwrap_or(kind.default_level());
    Ok(match kind {
        Compression::None => Box::new(Plain(out)),
        Compression::Gzip => Box::new(ParallelGzip::new(out, level.clamp(1, 9) as u32, threads)),
        Compression::Zstd => {
            let mut e = zstd::stream::write::Encoder::new(out, level)?;
            e.include_checksum(true)?;
            if threads > 1 {
                e.multithread(threads as u32)?;
            }
            Box::new(Zstd(e))
        }
        Compression::Xz => {
            let stream = liblzma::stream::MtStreamBuilder::new()
                .threads(threads as u32)
                .preset(level.clamp(0, 9) as u32)
                .check(liblzma::stream::Check::Crc32)
                .encoder()
                .map_err(io::Error::other)?;
            Box::new(Xz(liblzma::write::XzEncoder::new_stream(out, stream)))
        }
    })
}

/// Input block size of the parallel gzip (pigz's default).
pub const GZIP_BLOCK: usize = 128 * 1024;
const DICT: usize = 32 * 1024;

struct Job {
    seq: u64,
    data: Vec<u8>,
    dict: Vec<u8>,
    last: bool,
}

struct Done {
    seq: u64,
    out: io::Result<Vec<u8>>,
    crc: crc32fast::Hasher,
    /// The input buffer, returned for reuse.
    data: Vec<u8>,
}

/// Block-parallel gzip writer producing a single gzip member (see the module docs).
pub struct ParallelGzip<W: Write> {
    out: W,
    buf: Vec<u8>,
    dict: Vec<u8>,
    next_seq: u64,
    write_seq: u64,
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    ready: BTreeMap<u64, Done>,
    in_flight: usize,
    max_in_flight: usize,
    spare: Vec<Vec<u8>>,
    workers: Vec<JoinHandle<()>>,
    crc: crc32fast::Hasher,
    len: u64,
    header: bool,
}

fn deflate_block(level: u32, data: &[u8], dict: &[u8], last: bool) -> io::Result<Vec<u8>> {
    use flate2::{Compress, FlushCompress, Status};
    let mut c = Compress::new(flate2::Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(data.len() / 2 + 4096);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(16 * 1024));
        }
        let pos = c.total_in() as usize;
        let st = c
            .compress_vec(&data[pos..], &mut out, flush)
            .map_err(io::Error::other)?;
        let consumed = c.total_in() as usize == data.len();
        match st {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is in and output space remained.
            _ if !last && consumed && out.len() < out.capacity() => break,
            _ => {}
        }
    }
    Ok(out)
}

impl<W: Write> ParallelGzip<W> {
    /// A writer compressing at `level` (1-9) on `threads` workers.
    pub fn new(out: W, level: u32, threads: usize) -> Self {
        let threads = threads.max(1);
        let (jtx, jrx) = mpsc::sync_channel::<Job>(threads * 2);
        let (dtx, drx) = mpsc::channel::<Done>();
        let jrx = Arc::new(Mutex::new(jrx));
        let workers = (0..threads)
            .map(|i| {
                let jrx = jrx.clone();
                let dtx = dtx.clone();
                std::thread::Builder::new()
                    .name(format!("gzip-{i}"))
                    .spawn(move || loop {
                        let job = {
                            let Ok(rx) = jrx.lock() else { return };
                            match rx.recv() {
                                Ok(j) => j,
                                Err(_) => return,
                            }
                        };
                        let mut crc = crc32fast::Hasher::new();
                        crc.update(&job.data);
                        let out = deflate_block(level, &job.data, &job.dict, job.last);
                        if dtx
                            .send(Done {
                                seq: job.seq,
                                out,
                                crc,
                                data: job.data,
                            })
                            .is_err()
                        {
                            return;
                        }
                    })
                    .expect("spawning a compression thread")
            })
            .collect();
        ParallelGzip {
            out,
            buf: Vec::with_capacity(GZIP_BLOCK),
            dict: Vec::new(),
            next_seq: 0,
            write_seq: 0,
            jobs: Some(jtx),
            done: drx,
            ready: BTreeMap::new(),
            in_flight: 0,
            max_in_flight: threads * 3,
            spare: Vec::new(),
            workers,
            crc: crc32fast::Hasher::new(),
            len: 0,
            header: false,
        }
    }

    fn write_ready(&mut self) -> io::Result<()> {
        while let Some(d) = self.ready.remove(&self.write_seq) {
            let bytes = d.out?;
            if !self.header {
                // magic, deflate, no flags, no mtime, no extra flags, OS = Unix
                self.out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])?;
                self.header = true;
            }
            self.out.write_all(&bytes)?;
            self.crc.combine(&d.crc);
            self.write_seq += 1;
            self.in_flight -= 1;
            let mut data = d.data;
            data.clear();
            if self.spare.len() < self.max_in_flight {
                self.spare.push(data);
            }
        }
        Ok(())
    }

    fn receive_one(&mut self) -> io::Result<()> {
        let d = self
            .done
            .recv()
            .map_err(|_| io::Error::other("a compression thread died"))?;
        self.ready.insert(d.seq, d);
        self.write_ready()
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        while self.in_flight >= self.max_in_flight {
            self.receive_one()?;
        }
        let next = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(GZIP_BLOCK));
        let data = std::mem::replace(&mut self.buf, next);
        self.len += data.len() as u64;
        let dict = std::mem::take(&mut self.dict);
        if !last {
            self.dict = data[data.len().saturating_sub(DICT)..].to_vec();
        }
        let job = Job {
            seq: self.next_seq,
            data,
            dict,
            last,
        };
        self.next_seq += 1;
        self.in_flight += 1;
        self.jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))?
            .send(job)
            .map_err(|_| io::Error::other("a compression thread died"))?;
        // Collect whatever is done without waiting.
        while let Ok(d) = self.done.try_recv() {
            self.ready.insert(d.seq, d);
        }
        self.write_ready()
    }

    /// Writes the final block and the trailer; returns the inner writer.
    pub fn finish_inner(mut self) -> io::Result<W> {
        self.submit(true)?;
        while self.in_flight > 0 {
            self.receive_one()?;
        }
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let crc = std::mem::take(&mut self.crc).finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(&(self.len as u32).to_le_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write + Send> FinishWrite for ParallelGzip<W> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        (*self).finish_inner().map(|_| ())
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, mut b: &[u8]) -> io::Result<usize> {
        let n = b.len();
        while !b.is_empty() {
            let k = (GZIP_BLOCK - self.buf.len()).min(b.len());
            self.buf.extend_from_slice(&b[..k]);
            b = &b[k..];
            if self.buf.len() == GZIP_BLOCK {
                self.submit(false)?;
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// What each encoder writes, its decoder reads back, chosen by file name.
    #[test]
    fn every_encoding_decodes_back() {
        let text: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for (name, kind) in [
            ("m.ko", Compression::None),
            ("m.ko.gz", Compression::Gzip),
            ("m.ko.xz", Compression::Xz),
            ("m.ko.zst", Compression::Zstd),
        ] {
            assert_eq!(Compression::of_name(name.as_bytes()), kind, "{name}");
            let buf = Arc::new(Mutex::new(Vec::new()));
            let mut e = encoder(kind, None, 2, Shared(buf.clone())).unwrap();
            e.write_all(&text).unwrap();
            e.finish().unwrap();
            let packed = buf.lock().unwrap().clone();
            let mut back = Vec::new();
            decoder(kind, &packed[..])
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == text, "{name}: {} bytes back", back.len());
        }
        let mut junk = decoder(Compression::Xz, &b"not xz"[..]).unwrap();
        assert!(junk.read_to_end(&mut Vec::new()).is_err());
    }

    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}
