//! Byte streams between threads: [`channel`] gives a [`Sender`] and a
//! [`ChunkReader`] (a `Read` + `BufRead`) joined by a bounded queue of 1 MiB
//! buffers. The reader hands each buffer back once it has consumed it, so the
//! stages reuse a handful of buffers instead of allocating one per chunk, and
//! the queue's bound keeps a fast producer from running ahead of a slow
//! consumer by more than a few MiB.
//!
//! A stream ends with an explicit end mark or an error: a producer that
//! vanishes without either (a panic) is an error to the reader, never a
//! silent end of file.

use crate::CHUNK;
use std::io::{self, BufRead, Read};
use std::sync::mpsc::{self, Receiver, SyncSender};

enum Msg {
    /// A buffer and how many of its bytes are data.
    Data(Vec<u8>, usize),
    End,
    Failed(io::Error),
}

/// The producing end.
pub struct Sender {
    tx: SyncSender<Msg>,
    spare: Receiver<Vec<u8>>,
}

/// The consumer has gone (it failed or finished early): stop producing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the consumer of the stream stopped")]
pub struct Gone;

/// A stream of `depth` buffers in flight at most.
pub fn channel(depth: usize) -> (Sender, ChunkReader) {
    let (tx, rx) = mpsc::sync_channel(depth);
    let (back, spare) = mpsc::channel();
    (
        Sender { tx, spare },
        ChunkReader {
            rx,
            back,
            cur: Vec::new(),
            pos: 0,
            len: 0,
            state: State::Open,
        },
    )
}

impl Sender {
    /// A buffer of [`CHUNK`] bytes to fill (one handed back, or a new one).
    pub fn buffer(&self) -> Vec<u8> {
        self.spare.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK])
    }

    /// Sends the first `len` bytes of `buf`.
    pub fn send(&self, buf: Vec<u8>, len: usize) -> Result<(), Gone> {
        self.tx.send(Msg::Data(buf, len)).map_err(|_| Gone)
    }

    pub fn end(self) {
        let _ = self.tx.send(Msg::End);
    }

    pub fn fail(self, e: io::Error) {
        let _ = self.tx.send(Msg::Failed(e));
    }
}

/// Why [`pump`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    #[error("{0}")]
    Read(io::Error),
    /// `each` refused the bytes.
    #[error("{0}")]
    Check(io::Error),
    #[error(transparent)]
    Gone(#[from] Gone),
}

/// Reads `r` to its end in full buffers, shows each to `each` (a hash, a
/// counter), sends it, and returns the bytes passed. The stream is not ended
/// here: the caller ends or fails it once it knows the outcome.
pub fn pump(
    mut r: impl Read,
    tx: &Sender,
    mut each: impl FnMut(&[u8]) -> io::Result<()>,
) -> Result<u64, PumpError> {
    let mut total = 0u64;
    loop {
        let mut buf = tx.buffer();
        let n = read_full(&mut r, &mut buf).map_err(PumpError::Read)?;
        if n == 0 {
            return Ok(total);
        }
        each(&buf[..n]).map_err(PumpError::Check)?;
        total += n as u64;
        tx.send(buf, n)?;
    }
}

/// Fills `buf` as far as `r` has bytes; short only at the end.
pub fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Ended,
    Failed,
}

/// The consuming end; see the module documentation.
pub struct ChunkReader {
    rx: Receiver<Msg>,
    back: mpsc::Sender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    len: usize,
    state: State,
}

impl ChunkReader {
    /// Reads and discards the rest of the stream; returns how many bytes that was.
    pub fn drain(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.len {
            match self.state {
                State::Ended => return Ok(&[]),
                State::Failed => {
                    return Err(io::Error::other("the stream failed earlier"));
                }
                State::Open => {}
            }
            if self.cur.capacity() > 0 {
                // the producer may have stopped: then the buffer is simply dropped
                let _ = self.back.send(std::mem::take(&mut self.cur));
            }
            match self.rx.recv() {
                Ok(Msg::Data(buf, len)) => {
                    self.cur = buf;
                    self.len = len;
                    self.pos = 0;
                }
                Ok(Msg::End) => self.state = State::Ended,
                Ok(Msg::Failed(e)) => {
                    self.state = State::Failed;
                    return Err(e);
                }
                Err(_) => {
                    self.state = State::Failed;
                    return Err(io::Error::other(
                        "the stream's producer stopped without ending it",
                    ));
                }
            }
        }
        Ok(&self.cur[self.pos..self.len])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.len);
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_in_order_and_buffers_are_reused() {
        let data: Vec<u8> = (0..5 * CHUNK + 123).map(|i| (i % 251) as u8).collect();
        let (tx, mut rx) = channel(2);
        let src = data.clone();
        let t = std::thread::spawn(move || {
            let n = pump(&src[..], &tx, |_| Ok(())).unwrap();
            tx.end();
            n
        });
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        assert_eq!(t.join().unwrap(), data.len() as u64);
        assert!(got == data, "the bytes differ");
        assert_eq!(rx.read(&mut [0u8; 4]).unwrap(), 0, "the end stays the end");
    }

    #[test]
    fn a_failure_reaches_the_reader_and_a_vanished_producer_is_not_an_end() {
        let (tx, mut rx) = channel(2);
        let b = tx.buffer();
        tx.send(b, 3).unwrap();
        tx.fail(io::Error::other("checksum mismatch"));
        let mut got = Vec::new();
        let e = rx.read_to_end(&mut got).unwrap_err();
        assert_eq!(e.to_string(), "checksum mismatch");
        assert_eq!(got.len(), 3);
        assert!(rx.read(&mut [0u8; 4]).is_err());

        let (tx, mut rx) = channel(2);
        drop(tx);
        assert!(rx.read(&mut [0u8; 4]).is_err());
    }

    #[test]
    fn a_gone_reader_stops_the_producer() {
        let (tx, rx) = channel(1);
        drop(rx);
        let e = pump(&[1u8; 10][..], &tx, |_| Ok(())).unwrap_err();
        assert!(matches!(e, PumpError::Gone(Gone)));
    }
}
