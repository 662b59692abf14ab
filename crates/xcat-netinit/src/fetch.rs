//! A file over HTTP as one uninterrupted [`Read`]: whatever happens to the
//! connection, the reader sees the file's bytes once each, in order, or a
//! fatal error.
//!
//! A transient failure (connection refused, reset or cut, a timeout, a 5xx;
//! a 404 too when asked, since the server may be repacking) is said on one
//! line and retried after a pause that starts at 1 s and doubles up to 30 s,
//! for ever (the node has nothing better to do); the pause starts again at 1 s
//! once bytes flow. The retry asks for `Range: bytes=<reached>-` with
//! `If-Range: <validator of the first answer>`, so a file replaced meanwhile
//! comes back whole (200) and is refused as changed instead of being spliced.
//! A server that ignores ranges (200 with the same validator and length) is
//! read from the start and the bytes already passed are skipped.

use crate::error::Say;
use crate::http::{self, HttpError, Response, Resume, Timeouts, Url};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a [`Fetch`] waits and retries.
#[derive(Debug, Clone, Copy)]
pub struct FetchOptions {
    pub timeouts: Timeouts,
    /// The first pause after a failure; it doubles up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Whether a 404 is retried (the image) or final (its record).
    pub retry_not_found: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            timeouts: Timeouts::default(),
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            retry_not_found: true,
        }
    }
}

/// Why a fetch gave up (each is final: retrying would not help).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Http(HttpError),
    #[error("the server has no such file (404)")]
    NotFound,
    #[error("the file changed on the server while it was being fetched (at byte {at})")]
    Changed { at: u64 },
    #[error("asked for the bytes from {asked} on, the server sent them from {got}")]
    BadRange { asked: u64, got: u64 },
    #[error("the server's file is {got} bytes, the record says {expected}")]
    Size { got: u64, expected: u64 },
    /// The consumer asked the fetch to stop while it waited to retry.
    #[error("stopped")]
    Stopped,
}

/// The reader; see the module documentation.
pub struct Fetch {
    url: Url,
    opts: FetchOptions,
    say: Say,
    /// Bytes handed to the reader so far.
    pos: u64,
    total: Option<u64>,
    validator: Option<String>,
    expected_size: Option<u64>,
    body: Option<http::Body>,
    delay: Duration,
    stop: Option<Arc<AtomicBool>>,
}

impl Fetch {
    pub fn new(url: Url, opts: FetchOptions, say: Say) -> Fetch {
        Fetch {
            url,
            opts,
            say,
            pos: 0,
            total: None,
            validator: None,
            expected_size: None,
            body: None,
            delay: opts.first_delay,
            stop: None,
        }
    }

    /// Gives up (with [`FetchError::Stopped`]) instead of waiting to retry once
    /// `flag` is set: the stream's consumer has failed and nobody reads on.
    pub fn stop_on(mut self, flag: Arc<AtomicBool>) -> Fetch {
        self.stop = Some(flag);
        self
    }

    /// Refuses a file whose length is not `size` as soon as the server says it.
    pub fn expect_size(mut self, size: Option<u64>) -> Fetch {
        self.expected_size = size;
        self
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The file's length, once the server has answered.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// Bytes read so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Connects (again), retrying transient failures, until an answer is
    /// accepted or a failure is final.
    pub fn open(&mut self) -> Result<(), FetchError> {
        loop {
            let resume = Resume {
                from: self.pos,
                validator: self.validator.as_deref(),
            };
            let e = match http::get(&self.url, resume, self.opts.timeouts) {
                Ok(resp) => match self.accept(resp) {
                    Ok(()) => return Ok(()),
                    // the answer was cut while the bytes already had were skipped
                    Err(FetchError::Http(e)) if e.transient() => e,
                    Err(e) => return Err(e),
                },
                Err(e) => e,
            };
            match e.status() {
                Some(404) if self.opts.retry_not_found => self.pause(
                    "the server has no such file (404: is the image packed, and imgurl right?)",
                )?,
                Some(404) => return Err(FetchError::NotFound),
                _ if e.transient() => self.pause(&e.to_string())?,
                _ => return Err(FetchError::Http(e)),
            }
        }
    }

    /// Takes an answer: the first one sets the length and the validator; a
    /// resumed one must continue exactly where the reader is.
    fn accept(&mut self, resp: Response) -> Result<(), FetchError> {
        let len = resp.body.len();
        if self.pos == 0 || self.total.is_none() {
            self.total = Some(len);
            self.validator = resp.validator.clone();
            if let Some(expected) = self.expected_size.filter(|&e| e != len) {
                return Err(FetchError::Size { got: len, expected });
            }
            self.body = Some(resp.body);
            return Ok(());
        }
        let total = self.total.unwrap_or(0);
        match (resp.status, resp.range) {
            (206, Some(r)) if r.start == self.pos && r.total.is_none_or(|t| t == total) => {
                self.body = Some(resp.body);
                Ok(())
            }
            (206, Some(r)) if r.total.is_some_and(|t| t != total) => {
                Err(FetchError::Changed { at: self.pos })
            }
            (206, r) => Err(FetchError::BadRange {
                asked: self.pos,
                got: r.map_or(0, |r| r.start),
            }),
            // a whole answer to a range request: the file changed (If-Range
            // failed), or the server ignores ranges
            _ => {
                let same =
                    len == total && (self.validator.is_none() || resp.validator == self.validator);
                if !same {
                    return Err(FetchError::Changed { at: self.pos });
                }
                (self.say)(&format!(
                    "fetching {}: the server ignores byte ranges; reading {} bytes again to resume",
                    self.url, self.pos
                ));
                self.body = Some(resp.body);
                let at = self.pos;
                self.skip_to(at)
            }
        }
    }

    /// Discards the first `n` bytes of the current body.
    fn skip_to(&mut self, n: u64) -> Result<(), FetchError> {
        let Some(body) = self.body.as_mut() else {
            return Ok(());
        };
        match io::copy(&mut body.take(n), &mut io::sink()) {
            Ok(k) if k == n => Ok(()),
            Ok(_) => Err(FetchError::Http(HttpError::Io(
                io::ErrorKind::UnexpectedEof.into(),
            ))),
            Err(e) => {
                self.body = None;
                Err(FetchError::Http(HttpError::Io(e)))
            }
        }
    }

    /// Says why, waits, and doubles the next pause.
    fn pause(&mut self, why: &str) -> Result<(), FetchError> {
        let from = if self.pos > 0 {
            format!(" from byte {}", self.pos)
        } else {
            String::new()
        };
        (self.say)(&format!(
            "fetching {}: {why}; retrying in {}{from}",
            self.url,
            seconds(self.delay)
        ));
        let until = Instant::now() + self.delay;
        self.delay = (self.delay * 2).min(self.opts.max_delay);
        loop {
            if self
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Relaxed))
            {
                return Err(FetchError::Stopped);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            std::thread::sleep((until - now).min(Duration::from_millis(100)));
        }
    }
}

fn seconds(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

impl Read for Fetch {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.total.is_some_and(|t| self.pos >= t) || buf.is_empty() {
                return Ok(0);
            }
            if self.body.is_none() {
                self.open().map_err(io::Error::other)?;
            }
            let Some(body) = self.body.as_mut() else {
                continue;
            };
            match body.read(buf) {
                Ok(0) => self.body = None,
                Ok(n) => {
                    self.pos += n as u64;
                    self.delay = self.opts.first_delay;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.body = None;
                    self.pause(&e.to_string()).map_err(io::Error::other)?;
                }
            }
        }
    }
}

/// The [`FetchError`] inside an I/O error from a [`Fetch`], if that is what it is.
pub fn fetch_error(e: &io::Error) -> Option<&FetchError> {
    e.get_ref()?.downcast_ref::<FetchError>()
}
