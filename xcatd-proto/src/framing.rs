//! Reading whole documents off a byte stream, with limits.
//!
//! The protocol has no length prefix: a document ends at its closing root tag.
//! Both readers keep their state (buffered bytes, how far they were searched, when
//! the current document started) in `self`, so a call may be dropped (e.g. in a
//! `select!`) and resumed later without losing data; bytes after one document
//! stay buffered for the next call.
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::codec::{decode_request, decode_response, CodecError};
use crate::types::{Request, Response};

/// Bytes asked for per read: the most a reader can hold beyond its size cap.
const READ_CHUNK: usize = 16 * 1024;

/// xCAT drops a connection whose first 15 bytes are not the request start tag.
const START_CHECK_BYTES: usize = 15;

#[derive(Debug, Clone)]
pub struct FrameLimits {
    /// Largest document accepted, in bytes.
    pub max_bytes: usize,
    /// Time allowed before the first byte of a document arrives.
    pub first_byte_timeout: Duration,
    /// Time allowed for a whole document, from its first byte.
    pub total_timeout: Duration,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_bytes: 1 << 20,
            first_byte_timeout: Duration::from_secs(15),
            total_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("document exceeds the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error("no data within {0:?}")]
    IdleTimeout(Duration),
    #[error("document not complete within {0:?}")]
    TotalTimeout(Duration),
    #[error("input does not start with <{expected}>")]
    BadStart { expected: &'static str },
    #[error("connection closed in the middle of a document")]
    Truncated,
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// What a document of one kind looks like on the wire.
struct DocKind {
    /// Root element name, for error messages.
    name: &'static str,
    /// Accepted openings; an opening ending in `/>` is a complete empty document.
    starts: &'static [&'static [u8]],
    end: &'static [u8],
}

const REQUEST: DocKind = DocKind {
    name: "xcatrequest",
    starts: &[b"<xcatrequest>"],
    end: b"</xcatrequest>",
};

const RESPONSE: DocKind = DocKind {
    name: "xcatresponse",
    starts: &[b"<xcatresponse>", b"<xcatresponse/>", b"<xcatresponse />"],
    end: b"</xcatresponse>",
};

/// Refused as soon as seen, before the document is complete.
const DTD_MARKERS: [&[u8]; 2] = [b"<!DOCTYPE", b"<!ENTITY"];

enum Scan {
    NeedMore,
    /// A complete document occupies `buf[..len]`.
    Doc(usize),
}

/// Buffer and progress of the document being assembled.
#[derive(Default)]
struct Framer {
    buf: Vec<u8>,
    /// `buf[..scanned]` was already searched for the end tag and DTD markers.
    scanned: usize,
    /// The start tag has been seen in full.
    start_ok: bool,
    /// When the first non-whitespace byte of the current document arrived.
    started: Option<Instant>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

impl Framer {
    /// Look at the buffered bytes: drop whitespace between documents, check the
    /// start, look for the end tag and enforce the size cap.
    fn scan(&mut self, kind: &DocKind, max_bytes: usize) -> Result<Scan, FrameError> {
        if self.started.is_none() {
            let ws = self
                .buf
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(self.buf.len());
            if ws > 0 {
                self.buf.drain(..ws);
            }
            if self.buf.is_empty() {
                return Ok(Scan::NeedMore);
            }
            self.started = Some(Instant::now());
            self.scanned = 0;
            self.start_ok = false;
        }

        if !self.start_ok {
            let n = self.buf.len().min(START_CHECK_BYTES);
            let head = &self.buf[..n];
            let mut complete = None;
            let mut possible = false;
            for s in kind.starts {
                let k = n.min(s.len());
                if head[..k] == s[..k] {
                    possible = true;
                    if k == s.len() {
                        complete = Some(s);
                        break;
                    }
                }
            }
            if !possible {
                return Err(FrameError::BadStart {
                    expected: kind.name,
                });
            }
            match complete {
                None => return Ok(Scan::NeedMore),
                Some(s) if s.ends_with(b"/>") => return Ok(Scan::Doc(s.len())),
                Some(_) => self.start_ok = true,
            }
        }

        // Search only what is new, backing up enough to catch a tag split
        // across two reads.
        let from = self.scanned.saturating_sub(kind.end.len() - 1);
        let end = find(&self.buf[from..], kind.end).map(|i| from + i + kind.end.len());
        let doc_len = end.unwrap_or(self.buf.len());
        let dtd_from = self.scanned.saturating_sub(8);
        if doc_len > dtd_from {
            let region = &self.buf[dtd_from..doc_len];
            if DTD_MARKERS.iter().any(|m| find(region, m).is_some()) {
                return Err(FrameError::Codec(CodecError::Dtd));
            }
        }
        if doc_len > max_bytes {
            return Err(FrameError::TooLarge { limit: max_bytes });
        }
        match end {
            Some(len) => Ok(Scan::Doc(len)),
            None => {
                self.scanned = self.buf.len();
                Ok(Scan::NeedMore)
            }
        }
    }

    /// Remove the document `buf[..len]`, keeping what follows for the next call.
    fn consume(&mut self, len: usize) {
        self.buf.drain(..len);
        self.scanned = 0;
        self.start_ok = false;
        self.started = None;
    }

    /// Read once (at most [`READ_CHUNK`] bytes) before `deadline`; `Ok(0)` is EOF.
    /// Cancel-safe: data is only ever appended to `self.buf`.
    async fn fill<R: AsyncRead + Unpin>(
        &mut self,
        inner: &mut R,
        deadline: Option<Instant>,
    ) -> Result<Option<usize>, std::io::Error> {
        self.buf.reserve(READ_CHUNK);
        let mut limited = (&mut *inner).take(READ_CHUNK as u64);
        let read = limited.read_buf(&mut self.buf);
        match deadline {
            Some(d) => match tokio::time::timeout_at(d, read).await {
                Ok(r) => r.map(Some),
                Err(_) => Ok(None),
            },
            None => read.await.map(Some),
        }
    }
}

/// Reads `<xcatrequest>` documents from the client side of a connection.
pub struct RequestReader<R> {
    inner: R,
    limits: FrameLimits,
    framer: Framer,
}

impl<R: AsyncRead + Unpin> RequestReader<R> {
    pub fn new(inner: R, limits: FrameLimits) -> Self {
        RequestReader {
            inner,
            limits,
            framer: Framer::default(),
        }
    }

    /// Next request; `Ok(None)` on a clean end of stream before any byte.
    /// Applies `first_byte_timeout` and `total_timeout`. Cancel-safe: bytes
    /// already read stay buffered in `self` if the future is dropped.
    pub async fn next_request(&mut self) -> Result<Option<Request>, FrameError> {
        let first = Instant::now() + self.limits.first_byte_timeout;
        self.read_request(Some(first)).await
    }

    /// Like [`Self::next_request`] but without the first-byte timeout: used while
    /// a command runs to wait for an abort document or the end of the stream.
    pub async fn next_request_untimed(&mut self) -> Result<Option<Request>, FrameError> {
        self.read_request(None).await
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The underlying stream and any bytes read past the last document.
    pub fn into_parts(self) -> (R, Vec<u8>) {
        (self.inner, self.framer.buf)
    }

    async fn read_request(
        &mut self,
        first_byte_deadline: Option<Instant>,
    ) -> Result<Option<Request>, FrameError> {
        loop {
            if let Scan::Doc(len) = self.framer.scan(&REQUEST, self.limits.max_bytes)? {
                let result = decode_request(&self.framer.buf[..len]);
                self.framer.consume(len);
                return Ok(Some(result?));
            }
            let (deadline, timeout_err) = match self.framer.started {
                Some(t) => (
                    Some(t + self.limits.total_timeout),
                    FrameError::TotalTimeout(self.limits.total_timeout),
                ),
                None => (
                    first_byte_deadline,
                    FrameError::IdleTimeout(self.limits.first_byte_timeout),
                ),
            };
            match self.framer.fill(&mut self.inner, deadline).await? {
                None => return Err(timeout_err),
                Some(0) => {
                    return if self.framer.started.is_none() {
                        Ok(None)
                    } else {
                        Err(FrameError::Truncated)
                    }
                }
                Some(_) => {}
            }
        }
    }
}

/// Reads `<xcatresponse>` documents from the server side of a connection.
pub struct ResponseReader<R> {
    inner: R,
    max_bytes: usize,
    read_timeout: Option<Duration>,
    framer: Framer,
}

impl<R: AsyncRead + Unpin> ResponseReader<R> {
    /// `read_timeout`: longest silence tolerated between bytes (None = wait forever).
    pub fn new(inner: R, max_bytes: usize, read_timeout: Option<Duration>) -> Self {
        ResponseReader {
            inner,
            max_bytes,
            read_timeout,
            framer: Framer::default(),
        }
    }

    /// Next response; `Ok(None)` on end of stream between documents.
    pub async fn next_response(&mut self) -> Result<Option<Response>, FrameError> {
        loop {
            if let Scan::Doc(len) = self.framer.scan(&RESPONSE, self.max_bytes)? {
                let result = decode_response(&self.framer.buf[..len]);
                self.framer.consume(len);
                return Ok(Some(result?));
            }
            let deadline = self.read_timeout.map(|t| Instant::now() + t);
            match self.framer.fill(&mut self.inner, deadline).await? {
                None => {
                    return Err(FrameError::IdleTimeout(
                        self.read_timeout.unwrap_or_default(),
                    ))
                }
                Some(0) => {
                    return if self.framer.started.is_none() {
                        Ok(None)
                    } else {
                        Err(FrameError::Truncated)
                    }
                }
                Some(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_check_is_prefix_based() {
        let mut f = Framer::default();
        f.buf.extend_from_slice(b"  \n<xcatreq");
        assert!(matches!(f.scan(&REQUEST, 1000), Ok(Scan::NeedMore)));
        assert_eq!(f.buf, b"<xcatreq");
        f.buf.extend_from_slice(b"uest>");
        assert!(matches!(f.scan(&REQUEST, 1000), Ok(Scan::NeedMore)));
        assert!(f.start_ok);
        f.buf.extend_from_slice(b"</xcatrequest>");
        assert!(matches!(f.scan(&REQUEST, 1000), Ok(Scan::Doc(27))));

        let mut f = Framer::default();
        f.buf.extend_from_slice(b"<xcatrequesX");
        assert!(matches!(
            f.scan(&REQUEST, 1000),
            Err(FrameError::BadStart { .. })
        ));
    }

    #[test]
    fn empty_response_document() {
        let mut f = Framer::default();
        f.buf.extend_from_slice(b"<xcatresponse/>\n<xcatresponse>");
        assert!(matches!(f.scan(&RESPONSE, 1000), Ok(Scan::Doc(15))));
    }

    #[test]
    fn end_tag_split_across_reads() {
        let mut f = Framer::default();
        f.buf.extend_from_slice(b"<xcatrequest><a>1</a></xcatreq");
        assert!(matches!(f.scan(&REQUEST, 1000), Ok(Scan::NeedMore)));
        f.buf.extend_from_slice(b"uest>tail");
        assert!(matches!(f.scan(&REQUEST, 1000), Ok(Scan::Doc(35))));
    }

    #[test]
    fn dtd_marker_split_across_reads() {
        let mut f = Framer::default();
        f.buf.extend_from_slice(b"<xcatrequest><!DOC");
        assert!(matches!(f.scan(&REQUEST, 1000), Ok(Scan::NeedMore)));
        f.buf.extend_from_slice(b"TYPE x>");
        assert!(matches!(
            f.scan(&REQUEST, 1000),
            Err(FrameError::Codec(CodecError::Dtd))
        ));
    }
}
