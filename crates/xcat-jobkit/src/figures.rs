//! Human-readable figures for progress and summary lines (ASCII only, so every
//! client and log shows them alike).

use std::time::Duration;

/// `512 B`, `1.5 KiB`, `3.2 GiB`: binary units, one decimal above bytes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `n` bytes over `d` as `12.0 MiB/s`; `-` when no time has passed.
pub fn rate(n: u64, d: Duration) -> String {
    let s = d.as_secs_f64();
    if s <= 0.0 {
        return "-".into();
    }
    format!("{}/s", bytes((n as f64 / s) as u64))
}

/// `4.2s`, `2m05s`, `1h07m`: precise when short, coarse when long.
pub fn secs(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// ` (50%)` of `done` out of `total` (capped at 100: estimates run short), or
/// nothing when the total is unknown (zero).
pub fn percent(done: u64, total: u64) -> String {
    done.saturating_mul(100)
        .checked_div(total)
        .map(|p| format!(" ({}%)", p.min(100)))
        .unwrap_or_default()
}

/// Time left to reach `total` at the rate so far; None before any progress, past
/// the total, or when the estimate is too large to be a duration.
pub fn remaining(done: u64, total: u64, elapsed: Duration) -> Option<Duration> {
    let s = elapsed.as_secs_f64();
    if s <= 0.0 || done == 0 || total <= done {
        return None;
    }
    Duration::try_from_secs_f64((total - done) as f64 / (done as f64 / s)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(50 << 20), "50.0 MiB");
        assert_eq!(secs(Duration::from_secs(125)), "2m05s");
        assert_eq!(secs(Duration::from_secs(4020)), "1h07m");
        assert_eq!(secs(Duration::from_millis(4200)), "4.2s");
        assert_eq!(rate(3 << 20, Duration::from_secs(2)), "1.5 MiB/s");
        assert_eq!(rate(1, Duration::ZERO), "-");
    }

    #[test]
    fn percent_and_time_left() {
        assert_eq!(percent(50, 100), " (50%)");
        assert_eq!(percent(150, 100), " (100%)");
        assert_eq!(percent(5, 0), "");
        let s = Duration::from_secs(1);
        assert_eq!(remaining(50, 100, s), Some(Duration::from_secs(1)));
        assert_eq!(remaining(100, 100, s), None);
        assert_eq!(remaining(0, 100, s), None);
        assert_eq!(remaining(50, 100, Duration::ZERO), None);
        // One byte in a long time: far too long to be a Duration, not a panic.
        assert_eq!(remaining(1, u64::MAX, Duration::from_secs(1 << 40)), None);
    }
}
