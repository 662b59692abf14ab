//! The progress line: at most one every 5 s, so a serial console at 115200
//! baud is never what slows the boot.

use crate::error::Say;
use std::time::{Duration, Instant};

pub const EVERY: Duration = Duration::from_secs(5);

/// Counts bytes of one transfer and says how far it is.
pub struct Progress {
    say: Say,
    what: String,
    total: Option<u64>,
    start: Instant,
    last: Instant,
}

impl Progress {
    pub fn new(say: Say, what: impl Into<String>, total: Option<u64>) -> Progress {
        let now = Instant::now();
        Progress {
            say,
            what: what.into(),
            total,
            start: now,
            last: now,
        }
    }

    pub fn set_total(&mut self, total: Option<u64>) {
        self.total = total;
    }

    /// `done` bytes so far; says so if the last line is 5 s old.
    pub fn tick(&mut self, done: u64) {
        let now = Instant::now();
        if now.duration_since(self.last) >= EVERY {
            self.last = now;
            (self.say)(&self.line(done, now));
        }
    }

    /// `<what>: 312.4 of 1100.0 MiB (28%), 104.2 MiB/s`
    pub fn line(&self, done: u64, now: Instant) -> String {
        let of = match self.total {
            Some(t) if t > 0 => format!(" of {} ({}%)", mib(t), done * 100 / t),
            _ => String::new(),
        };
        format!(
            "{}: {}{of}, {}",
            self.what,
            mib(done),
            rate(done, now - self.start)
        )
    }

    /// The closing summary: bytes, time, rate.
    pub fn summary(&self, done: u64) -> String {
        let took = self.start.elapsed();
        format!(
            "{}: {} in {:.1} s, {}",
            self.what,
            mib(done),
            took.as_secs_f64(),
            rate(done, took)
        )
    }
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

fn rate(bytes: u64, took: Duration) -> String {
    let s = took.as_secs_f64().max(1e-3);
    format!("{:.1} MiB/s", bytes as f64 / (1u64 << 20) as f64 / s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn lines_are_spaced_and_say_how_far() {
        let said = Arc::new(Mutex::new(Vec::<String>::new()));
        let s = said.clone();
        let say: Say = Arc::new(move |l: &str| s.lock().unwrap().push(l.to_string()));
        let mut p = Progress::new(say, "rootimg.tar.zst", Some(200 << 20));
        for i in 0..1000 {
            p.tick(i);
        }
        assert!(said.lock().unwrap().is_empty(), "nothing before 5 s");
        let line = p.line(50 << 20, p.start + Duration::from_secs(10));
        assert_eq!(
            line,
            "rootimg.tar.zst: 50.0 MiB of 200.0 MiB (25%), 5.0 MiB/s"
        );
        p.last -= EVERY;
        p.tick(1);
        assert_eq!(said.lock().unwrap().len(), 1);
    }
}
