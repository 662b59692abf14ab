//! The capture's progress line (ASCII only).

use std::time::Duration;

use xcat_jobkit::figures::{bytes, percent, rate, remaining, secs};

/// One progress line: phase, bytes and files done, estimate, rate, time left.
pub fn line(node: &str, done: u64, estimate: u64, files: u64, elapsed: Duration) -> String {
    let left = remaining(done, estimate, elapsed)
        .map(|d| format!(", about {} left", secs(d)))
        .unwrap_or_default();
    format!(
        "capturing {node}: {} of ~{}{}, {files} files, {}{left}",
        bytes(done),
        bytes(estimate),
        percent(done, estimate),
        rate(done, elapsed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures() {
        // The figures themselves are xcat-jobkit's (tested there).
        let l = line("n1", 50 << 20, 100 << 20, 10, Duration::from_secs(1));
        assert_eq!(
            l,
            "capturing n1: 50.0 MiB of ~100.0 MiB (50%), 10 files, 50.0 MiB/s, about 1.0s left"
        );
        assert!(l.is_ascii());
    }
}
