//! Reading one request head off a connection: bounded in size (the buffer
//! never grows past `max_header_bytes`) and in time (a peer that drips a
//! byte a second is cut off at the header deadline, whatever it sends).
//! Parsing is `httparse`'s, the parser hyper uses.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

/// Most header lines accepted in one request.
const MAX_HEADERS: usize = 48;

/// What the server needs of one request.
#[derive(Debug, Clone, Default)]
pub struct Head {
    pub method: String,
    /// The raw request target, as sent (not decoded).
    pub target: Vec<u8>,
    /// HTTP/1.1 (true) or 1.0.
    pub http11: bool,
    /// The peer asked to close (`Connection: close`), or did not ask to
    /// keep an HTTP/1.0 connection.
    pub close: bool,
    pub range: Option<Vec<u8>>,
    pub if_range: Option<Vec<u8>>,
    pub if_modified_since: Option<Vec<u8>>,
    /// A request body was announced (`Content-Length` other than 0, or
    /// `Transfer-Encoding`): refused, since GET and HEAD carry none and
    /// skipping one would let a peer smuggle a second request.
    pub has_body: bool,
}

/// Why no request could be read.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// The peer closed or went quiet between requests: nothing to answer.
    Closed,
    /// The head did not arrive in time.
    Timeout,
    /// The head is larger than the buffer (431).
    TooLarge,
    /// Not HTTP/1.x (400).
    Malformed,
}

/// A connection's read buffer: what arrived past one request's head is the
/// start of the next (pipelining).
pub struct Reader {
    buf: Vec<u8>,
    max: usize,
}

impl Reader {
    pub fn new(max: usize) -> Reader {
        Reader {
            buf: Vec::new(),
            max,
        }
    }

    /// The next request's head: the first byte within `idle`, the whole head
    /// within `header` after that.
    pub async fn next(
        &mut self,
        tcp: &mut TcpStream,
        idle: Duration,
        header: Duration,
    ) -> Result<Head, HeadError> {
        if self.buf.is_empty() {
            match timeout(idle, self.fill(tcp)).await {
                Ok(Ok(true)) => {}
                Ok(_) | Err(_) => return Err(HeadError::Closed),
            }
        }
        let deadline = Instant::now() + header;
        loop {
            if let Some((head, used)) = parse(&self.buf)? {
                self.buf.drain(..used);
                return Ok(head);
            }
            if self.buf.len() >= self.max {
                return Err(HeadError::TooLarge);
            }
            match timeout_at(deadline, self.fill(tcp)).await {
                Ok(Ok(true)) => {}
                Ok(_) => return Err(HeadError::Closed),
                Err(_) => return Err(HeadError::Timeout),
            }
        }
    }

    /// Read what is there, never past `max`; false at end of stream.
    async fn fill(&mut self, tcp: &mut TcpStream) -> std::io::Result<bool> {
        let room = self.max.saturating_sub(self.buf.len()).max(1);
        let mut chunk = vec![0u8; room.min(4096)];
        let n = tcp.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }
}

/// Parse a complete head; None while more bytes are needed.
fn parse(buf: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    let http11 = req.version == Some(1);
    let mut head = Head {
        method: req.method.unwrap_or_default().to_string(),
        target: req.path.unwrap_or_default().as_bytes().to_vec(),
        http11,
        close: !http11,
        ..Head::default()
    };
    for h in req.headers.iter() {
        let v = h.value.to_vec();
        match h.name.to_ascii_lowercase().as_str() {
            "range" => head.range = Some(v),
            "if-range" => head.if_range = Some(v),
            "if-modified-since" => head.if_modified_since = Some(v),
            "content-length" => head.has_body |= h.value.trim_ascii() != b"0",
            "transfer-encoding" => head.has_body = true,
            "connection" => connection_tokens(&mut head, h.value),
            _ => {}
        }
    }
    Ok(Some((head, used)))
}

fn connection_tokens(head: &mut Head, value: &[u8]) {
    for t in value.split(|&b| b == b',') {
        let t = t.trim_ascii();
        if t.eq_ignore_ascii_case(b"close") {
            head.close = true;
        } else if t.eq_ignore_ascii_case(b"keep-alive") && !head.http11 {
            head.close = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        parse(text.as_bytes()).unwrap().expect("complete").0
    }

    #[test]
    fn the_headers_that_matter_are_kept() {
        let h = head(
            "GET /install/x HTTP/1.1\r\nHost: a\r\nRANGE: bytes=0-1\r\n\
             If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: keep-alive, Close\r\n\r\n",
        );
        assert_eq!(
            (h.method.as_str(), h.target.as_slice()),
            ("GET", &b"/install/x"[..])
        );
        assert_eq!(h.range.as_deref(), Some(&b"bytes=0-1"[..]));
        assert!(h.if_modified_since.is_some() && h.close && h.http11 && !h.has_body);
        let h10 = head("HEAD /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(!h10.close && !h10.http11);
        assert!(head("GET /x HTTP/1.0\r\n\r\n").close);
        assert!(head("GET /x HTTP/1.1\r\nContent-Length: 5\r\n\r\n").has_body);
        assert!(!head("GET /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n").has_body);
        assert!(head("GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").has_body);
    }

    #[test]
    fn partial_and_broken_heads() {
        assert!(parse(b"GET /x HTTP/1.1\r\nHost:").unwrap().is_none());
        assert_eq!(
            parse(b"\x16\x03\x01hello\r\n\r\n").unwrap_err(),
            HeadError::Malformed
        );
        let many: String = (0..100).map(|i| format!("X-{i}: y\r\n")).collect();
        let text = format!("GET /x HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(text.as_bytes()).unwrap_err(), HeadError::TooLarge);
    }
}
