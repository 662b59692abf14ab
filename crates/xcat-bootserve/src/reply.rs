//! What to answer for a file, from the request's conditional and range
//! headers (pure: no I/O), and the text of a response head.

use std::time::{Duration, SystemTime};

/// The answer to a GET or HEAD of a regular file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// 200: the whole file.
    Full,
    /// 206: bytes `start..start+len`.
    Partial { start: u64, len: u64 },
    /// 304: not modified since the peer's copy.
    NotModified,
    /// 416: no byte of the range is in the file.
    Unsatisfiable,
}

/// The request headers a plan depends on.
#[derive(Debug, Default, Clone, Copy)]
pub struct Conditions<'a> {
    pub range: Option<&'a [u8]>,
    pub if_range: Option<&'a [u8]>,
    pub if_modified_since: Option<&'a [u8]>,
}

/// Decide the answer for a file of `size` bytes last modified at `mtime`.
pub fn plan(c: Conditions<'_>, size: u64, mtime: SystemTime) -> Plan {
    if let Some(since) = c.if_modified_since.and_then(parse_date) {
        // HTTP dates have whole seconds: compare at that precision.
        if whole_seconds(mtime) <= since {
            return Plan::NotModified;
        }
    }
    let Some(range) = c.range else {
        return Plan::Full;
    };
    // If-Range: the range applies only to the copy the peer already has.
    if let Some(tag) = c.if_range {
        if parse_date(tag) != Some(whole_seconds(mtime)) {
            return Plan::Full;
        }
    }
    match parse_range(range, size) {
        RangeSpec::Ignore => Plan::Full,
        RangeSpec::Unsatisfiable => Plan::Unsatisfiable,
        RangeSpec::Bytes { start, len } if start == 0 && len == size => Plan::Full,
        RangeSpec::Bytes { start, len } => Plan::Partial { start, len },
    }
}

fn parse_date(v: &[u8]) -> Option<SystemTime> {
    httpdate::parse_http_date(std::str::from_utf8(v).ok()?.trim()).ok()
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    /// Malformed, another unit, or several ranges: answered with the whole
    /// file, which RFC 9110 allows for any Range header.
    Ignore,
    Unsatisfiable,
    Bytes {
        start: u64,
        len: u64,
    },
}

/// One `bytes=` range: `a-b`, `a-` or `-n`.
fn parse_range(v: &[u8], size: u64) -> RangeSpec {
    let Ok(v) = std::str::from_utf8(v) else {
        return RangeSpec::Ignore;
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return RangeSpec::Ignore;
    };
    if spec.contains(',') {
        return RangeSpec::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::Ignore;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim().is_empty(), num(a), num(b)) {
        // -n: the last n bytes
        (true, _, Some(n)) if n == 0 || size == 0 => RangeSpec::Unsatisfiable,
        (true, _, Some(n)) => RangeSpec::Bytes {
            start: size - n.min(size),
            len: n.min(size),
        },
        (false, Some(start), _) if start >= size => RangeSpec::Unsatisfiable,
        (false, Some(start), None) if b.trim().is_empty() => RangeSpec::Bytes {
            start,
            len: size - start,
        },
        (false, Some(start), Some(end)) if end >= start => RangeSpec::Bytes {
            start,
            len: end.min(size - 1) - start + 1,
        },
        _ => RangeSpec::Ignore,
    }
}

/// A response head. `extra` is added verbatim (each line ending in CRLF).
pub fn head(status: u16, length: u64, extra: &str, close: bool) -> String {
    let reason = match status {
        200 => "OK",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let date = httpdate::fmt_http_date(SystemTime::now());
    let conn = if close { "Connection: close\r\n" } else { "" };
    format!(
        "HTTP/1.1 {status} {reason}\r\nServer: xcatd\r\nDate: {date}\r\n\
         Content-Length: {length}\r\n{extra}{conn}\r\n"
    )
}

/// The file headers of a 200, 206 or 304.
pub fn file_headers(mtime: SystemTime) -> String {
    format!(
        "Last-Modified: {}\r\nAccept-Ranges: bytes\r\nContent-Type: application/octet-stream\r\n",
        httpdate::fmt_http_date(mtime)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn r(v: &str, size: u64) -> Plan {
        let c = Conditions {
            range: Some(v.as_bytes()),
            ..Default::default()
        };
        plan(c, size, SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn ranges() {
        let p = |start, len| Plan::Partial { start, len };
        assert_eq!(r("bytes=0-99", GIB), p(0, 100));
        assert_eq!(r("bytes=1073741800-", GIB), p(GIB - 24, 24));
        assert_eq!(r("bytes=-10", GIB), p(GIB - 10, 10));
        assert_eq!(r("bytes=5-2000000000000", GIB), p(5, GIB - 5));
        assert_eq!(r("bytes=0-", GIB), Plan::Full);
        assert_eq!(r("bytes=-5000000000", GIB), Plan::Full);
        assert_eq!(r("bytes=1073741824-", GIB), Plan::Unsatisfiable);
        assert_eq!(r("bytes=-0", GIB), Plan::Unsatisfiable);
        assert_eq!(r("bytes=0-0", 0), Plan::Unsatisfiable);
        for ignored in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-2",
            "bytes=x-",
            "bytes=+1-2",
        ] {
            assert_eq!(r(ignored, GIB), Plan::Full, "{ignored}");
        }
    }

    #[test]
    fn conditionals() {
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_millis(784_111_777_500);
        let date = httpdate::fmt_http_date(mtime);
        let older = httpdate::fmt_http_date(mtime - Duration::from_secs(1));
        let at = |ims: &str, range: Option<&str>, if_range: Option<&str>| {
            let c = Conditions {
                range: range.map(str::as_bytes),
                if_range: if_range.map(str::as_bytes),
                if_modified_since: Some(ims.as_bytes()),
            };
            plan(c, 100, mtime)
        };
        assert_eq!(at(&date, None, None), Plan::NotModified);
        assert_eq!(at(&older, None, None), Plan::Full);
        assert_eq!(at("garbage", None, None), Plan::Full);
        let part = Plan::Partial { start: 0, len: 1 };
        assert_eq!(at(&older, Some("bytes=0-0"), Some(&date)), part);
        assert_eq!(at(&older, Some("bytes=0-0"), Some(&older)), Plan::Full);
        assert_eq!(at(&older, Some("bytes=0-0"), Some("\"etag\"")), Plan::Full);
    }
}
