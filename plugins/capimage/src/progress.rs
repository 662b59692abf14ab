//! Human-readable figures for progress and summary lines (ASCII only).

use std::time::Duration;

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

pub fn rate(n: u64, d: Duration) -> String {
    let s = d.as_secs_f64();
    if s <= 0.0 {
        return "-".into();
    }
    format!("{}/s", bytes((n as f64 / s) as u64))
}

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

/// One progress line: phase, bytes and files done, estimate, rate, time left.
pub fn line(node: &str, done: u64, estimate: u64, files: u64, elapsed: Duration) -> String {
    let r = if elapsed.as_secs_f64() > 0.0 {
        done as f64 / elapsed.as_secs_f64()
    } else {
        0.0
    };
    let left = if r > 0.0 && estimate > done {
        format!(
            ", about {} left",
            secs(Duration::from_secs_f64((estimate - done) as f64 / r))
        )
    } else {
        String::new()
    };
    let pct = done
        .saturating_mul(100)
        .checked_div(estimate)
        .map(|p| format!(" ({}%)", p.min(100)))
        .unwrap_or_default();
    format!(
        "capturing {node}: {} of ~{}{pct}, {files} files, {}{left}",
        bytes(done),
        bytes(estimate),
        rate(done, elapsed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(secs(Duration::from_secs(125)), "2m05s");
        let l = line("n1", 50 << 20, 100 << 20, 10, Duration::from_secs(1));
        assert_eq!(
            l,
            "capturing n1: 50.0 MiB of ~100.0 MiB (50%), 10 files, 50.0 MiB/s, about 1.0s left"
        );
        assert!(l.is_ascii());
    }
}
