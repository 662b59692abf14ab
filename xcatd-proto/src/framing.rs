//! Reading whole documents off a byte stream, with limits.
//!
//! STUB: signatures fixed; bodies to be written.
use std::time::Duration;
use tokio::io::AsyncRead;

use crate::codec::CodecError;
use crate::types::{Request, Response};

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

/// Reads `<xcatrequest>` documents from the client side of a connection.
pub struct RequestReader<R> {
    #[allow(dead_code)]
    inner: R,
    #[allow(dead_code)]
    limits: FrameLimits,
    #[allow(dead_code)]
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> RequestReader<R> {
    pub fn new(inner: R, limits: FrameLimits) -> Self {
        RequestReader { inner, limits, buf: Vec::new() }
    }

    /// Next request; `Ok(None)` on a clean end of stream before any byte.
    /// Applies `first_byte_timeout` and `total_timeout`. Cancel-safe: bytes
    /// already read stay buffered in `self` if the future is dropped.
    pub async fn next_request(&mut self) -> Result<Option<Request>, FrameError> {
        todo!()
    }

    /// Like [`Self::next_request`] but without the first-byte timeout: used while
    /// a command runs to wait for an abort document or the end of the stream.
    pub async fn next_request_untimed(&mut self) -> Result<Option<Request>, FrameError> {
        todo!()
    }
}

/// Reads `<xcatresponse>` documents from the server side of a connection.
pub struct ResponseReader<R> {
    #[allow(dead_code)]
    inner: R,
    #[allow(dead_code)]
    max_bytes: usize,
    #[allow(dead_code)]
    read_timeout: Option<Duration>,
    #[allow(dead_code)]
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> ResponseReader<R> {
    /// `read_timeout`: longest silence tolerated between bytes (None = wait forever).
    pub fn new(inner: R, max_bytes: usize, read_timeout: Option<Duration>) -> Self {
        ResponseReader { inner, max_bytes, read_timeout, buf: Vec::new() }
    }

    /// Next response; `Ok(None)` on end of stream between documents.
    pub async fn next_response(&mut self) -> Result<Option<Response>, FrameError> {
        todo!()
    }
}
