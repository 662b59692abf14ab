//! A small blocking HTTP/1.1 client: one `GET` per connection over a plain
//! `TcpStream`, with a byte range when resuming. Enough for a static file
//! served by the boot service, Apache or nginx: the body must come with a
//! `Content-Length` (a chunked body is refused with a clear error: a file
//! server does not send one, and without a length a cut connection could not
//! be told from the end). Host names are not resolved: the URL names an
//! address (see the crate documentation).

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// An `http://` URL whose host is an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    text: String,
    /// The `Host` header: the URL's host and port as written.
    host: String,
    addr: SocketAddr,
    /// The request target: the path (and query) as written, `/` when empty.
    path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{0} is not an http:// URL (https is not built into the initrd)")]
    NotHttp(String),
    #[error("the host {host} in {url} is not an IP address (the initrd resolves no names)")]
    NotAnAddress { url: String, host: String },
    #[error("{0} is not a valid URL")]
    Malformed(String),
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, UrlError> {
        let rest = text
            .strip_prefix("http://")
            .ok_or_else(|| UrlError::NotHttp(text.to_string()))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let malformed = || UrlError::Malformed(text.to_string());
        if authority.contains('@') || path.contains(char::is_whitespace) {
            return Err(malformed());
        }
        let (host, port) = split_port(authority).ok_or_else(malformed)?;
        let ip: IpAddr = host.parse().map_err(|_| UrlError::NotAnAddress {
            url: text.to_string(),
            host: host.to_string(),
        })?;
        // fragments are never sent
        let path = path.split('#').next().unwrap_or("/");
        Ok(Url {
            text: text.to_string(),
            host: authority.to_string(),
            addr: SocketAddr::new(ip, port),
            path: path.to_string(),
        })
    }

    /// The URL of a file beside this one: `<url><suffix>` (`.info`).
    pub fn with_suffix(&self, suffix: &str) -> Url {
        Url {
            text: format!("{}{suffix}", self.text),
            path: format!("{}{suffix}", self.path),
            ..self.clone()
        }
    }

    /// The URL of another file of this one's directory (`image-record.txt`).
    pub fn sibling(&self, name: &str) -> Url {
        let cut = |s: &str| s.rfind('/').map_or(String::new(), |i| s[..=i].to_string());
        Url {
            text: format!("{}{name}", cut(&self.text)),
            path: format!("{}{name}", cut(&self.path)),
            ..self.clone()
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The last component of the path (`rootimg.tar.zst`).
    pub fn file_name(&self) -> &str {
        let p = self.path.split('?').next().unwrap_or("");
        p.rsplit('/').next().unwrap_or(p)
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `host[:port]` with `[v6]` brackets; port 80 when absent.
fn split_port(authority: &str) -> Option<(&str, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, 80)),
            p => Some((host, p.strip_prefix(':')?.parse().ok()?)),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => Some((h, p.parse().ok()?)),
        Some(_) => None,
        None if !authority.is_empty() => Some((authority, 80)),
        None => None,
    }
}

/// Connect and read timeouts of one request.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// Longest wait for any byte of the head or the body.
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(30),
        }
    }
}

/// A resumed request: the bytes from `from` on, if the file is still the one
/// `validator` (an `ETag` or `Last-Modified` value) names.
#[derive(Debug, Clone, Copy, Default)]
pub struct Resume<'a> {
    pub from: u64,
    pub validator: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the server answered {status} {reason}")]
    Status { status: u16, reason: String },
    #[error("malformed response from the server: {0}")]
    Malformed(String),
    #[error(
        "the server sent the file in chunks, without a length (a file server sends Content-Length)"
    )]
    Chunked,
}

impl HttpError {
    /// Whether trying again later may succeed: the server down or restarting,
    /// the network cut, a timeout, a 5xx (and 408, 429). A 404 is the caller's
    /// decision; a malformed answer will not mend itself.
    pub fn transient(&self) -> bool {
        match self {
            HttpError::Connect { .. } | HttpError::Io(_) => true,
            HttpError::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
            HttpError::Malformed(_) | HttpError::Chunked => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `Content-Range: bytes start-end/total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    pub end: u64,
    pub total: Option<u64>,
}

/// A 2xx answer; its body is read through [`Body`].
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub range: Option<ContentRange>,
    /// A strong `ETag`, else `Last-Modified`: what `If-Range` sends back.
    pub validator: Option<String>,
    pub body: Body,
}

/// The body of a response: exactly its `Content-Length` bytes. A connection
/// that ends sooner is an [`io::ErrorKind::UnexpectedEof`] error, never a short
/// end.
#[derive(Debug)]
pub struct Body {
    conn: BufReader<TcpStream>,
    remaining: u64,
    length: u64,
}

impl Body {
    /// The body's length (`Content-Length`).
    pub fn len(&self) -> u64 {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.conn.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the connection closed after {} of {} bytes",
                    self.length - self.remaining,
                    self.length
                ),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// The most bytes a response head may take.
const MAX_HEAD: usize = 64 * 1024;

/// `GET url` (from `resume.from` on when it is not 0). Any status other than
/// 200 and 206 is an [`HttpError::Status`].
pub fn get(url: &Url, resume: Resume<'_>, t: Timeouts) -> Result<Response, HttpError> {
    let stream =
        TcpStream::connect_timeout(&url.addr, t.connect).map_err(|source| HttpError::Connect {
            addr: url.addr,
            source,
        })?;
    stream.set_read_timeout(Some(t.read))?;
    stream.set_write_timeout(Some(t.read))?;
    (&stream).write_all(request(url, resume).as_bytes())?;
    let mut conn = BufReader::with_capacity(MAX_HEAD, stream);
    let head = read_head(&mut conn)?;
    let h = parse_head(&head)?;
    if !matches!(h.status, 200 | 206) {
        return Err(HttpError::Status {
            status: h.status,
            reason: h.reason,
        });
    }
    let length = h
        .length
        .ok_or_else(|| HttpError::Malformed("no Content-Length".into()))?;
    Ok(Response {
        status: h.status,
        range: h.range,
        validator: h.validator,
        body: Body {
            conn,
            remaining: length,
            length,
        },
    })
}

fn request(url: &Url, resume: Resume<'_>) -> String {
    let mut r = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: xcat-netinit/{}\r\n\
         Accept-Encoding: identity\r\nConnection: close\r\n",
        url.path,
        url.host,
        env!("CARGO_PKG_VERSION")
    );
    if resume.from > 0 {
        r.push_str(&format!("Range: bytes={}-\r\n", resume.from));
        if let Some(v) = resume.validator {
            r.push_str(&format!("If-Range: {v}\r\n"));
        }
    }
    r.push_str("\r\n");
    r
}

/// Reads up to and including the blank line that ends the head; the body's
/// first bytes stay in `conn`'s buffer.
fn read_head(conn: &mut BufReader<TcpStream>) -> Result<Vec<u8>, HttpError> {
    let mut head: Vec<u8> = Vec::new();
    loop {
        let avail = conn.fill_buf()?;
        if avail.is_empty() {
            return Err(HttpError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed before the response head ended",
            )));
        }
        let before = head.len();
        // the blank line may straddle two reads
        let from = before.saturating_sub(3);
        head.extend_from_slice(avail);
        let n = avail.len();
        if let Some(p) = find(&head[from..], b"\r\n\r\n") {
            let end = from + p + 4;
            conn.consume(end - before);
            head.truncate(end);
            return Ok(head);
        }
        conn.consume(n);
        if head.len() > MAX_HEAD {
            return Err(HttpError::Malformed(format!(
                "a response head of more than {MAX_HEAD} bytes"
            )));
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The parts of a response head this client uses.
#[derive(Debug, Default, PartialEq, Eq)]
struct Head {
    status: u16,
    reason: String,
    length: Option<u64>,
    range: Option<ContentRange>,
    validator: Option<String>,
}

fn parse_head(raw: &[u8]) -> Result<Head, HttpError> {
    let text = String::from_utf8_lossy(raw);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let bad = |what: &str| HttpError::Malformed(what.to_string());
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(bad(&format!("status line {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("status line {status_line:?}")))?;
    let mut h = Head {
        status,
        reason: parts.next().unwrap_or("").trim().to_string(),
        ..Head::default()
    };
    let (mut etag, mut modified) = (None, None);
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(&format!("header line {line:?}")))?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                h.length = Some(value.parse().map_err(|_| bad("Content-Length"))?);
            }
            "transfer-encoding" if !value.eq_ignore_ascii_case("identity") => {
                return Err(HttpError::Chunked)
            }
            "content-encoding" if !value.eq_ignore_ascii_case("identity") => {
                return Err(bad(&format!(
                    "Content-Encoding {value} (identity was asked for)"
                )))
            }
            "content-range" => {
                h.range = Some(parse_content_range(value).ok_or_else(|| bad("Content-Range"))?)
            }
            // a weak tag cannot be used in If-Range
            "etag" if !value.starts_with("W/") => etag = Some(value.to_string()),
            "last-modified" => modified = Some(value.to_string()),
            _ => {}
        }
    }
    h.validator = etag.or(modified);
    Ok(h)
}

fn parse_content_range(v: &str) -> Option<ContentRange> {
    let spec = v.strip_prefix("bytes ")?.trim();
    let (range, total) = spec.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let total = match total {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let (start, end): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    (end >= start).then_some(ContentRange { start, end, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://10.99.60.1:80//install/netboot/img/rootimg.tar.zst").unwrap();
        assert_eq!(u.addr(), "10.99.60.1:80".parse().unwrap());
        assert_eq!(u.path(), "//install/netboot/img/rootimg.tar.zst");
        assert_eq!(u.file_name(), "rootimg.tar.zst");
        assert_eq!(u.host, "10.99.60.1:80");
        let r = u.sibling("image-record.txt");
        assert_eq!(r.path(), "//install/netboot/img/image-record.txt");
        let i = u.with_suffix(".info");
        assert_eq!(i.path(), "//install/netboot/img/rootimg.tar.zst.info");
        assert_eq!(
            i.to_string(),
            "http://10.99.60.1:80//install/netboot/img/rootimg.tar.zst.info"
        );
        let v6 = Url::parse("http://[fd00::1]:8080/a").unwrap();
        assert_eq!(v6.addr(), "[fd00::1]:8080".parse().unwrap());
        assert_eq!(Url::parse("http://10.0.0.1").unwrap().path(), "/");
        assert_eq!(Url::parse("http://10.0.0.1/x").unwrap().addr().port(), 80);
    }

    #[test]
    fn refused_urls() {
        assert!(matches!(
            Url::parse("https://10.0.0.1/x"),
            Err(UrlError::NotHttp(_))
        ));
        assert!(matches!(Url::parse("ftp://h/x"), Err(UrlError::NotHttp(_))));
        assert!(matches!(
            Url::parse("http://mgmt:80/x"),
            Err(UrlError::NotAnAddress { .. })
        ));
        for bad in [
            "http://10.0.0.1:x/a",
            "http://:80/a",
            "http:///a",
            "http://u@10.0.0.1/a",
            "http://[::1/a",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn heads() {
        let h = parse_head(
            b"HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\
              content-range: bytes 90-99/100\r\nETag: \"abc\"\r\n\
              Last-Modified: Tue, 01 Apr 2025 10:00:00 GMT\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.status, 206);
        assert_eq!(h.length, Some(10));
        assert_eq!(
            h.range,
            Some(ContentRange {
                start: 90,
                end: 99,
                total: Some(100)
            })
        );
        assert_eq!(h.validator.as_deref(), Some("\"abc\""));
        let weak = parse_head(
            b"HTTP/1.0 200 OK\r\nETag: W/\"x\"\r\nLast-Modified: Tue, 01 Apr 2025 10:00:00 GMT\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            weak.validator.as_deref(),
            Some("Tue, 01 Apr 2025 10:00:00 GMT")
        );
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HttpError::Chunked)
        ));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n").is_err());
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").is_err());
    }

    #[test]
    fn transient_errors() {
        let st = |status| HttpError::Status {
            status,
            reason: String::new(),
        };
        assert!(st(503).transient());
        assert!(st(500).transient());
        assert!(!st(404).transient());
        assert!(!st(403).transient());
        assert!(HttpError::Io(io::ErrorKind::ConnectionReset.into()).transient());
        assert!(!HttpError::Chunked.transient());
    }
}
