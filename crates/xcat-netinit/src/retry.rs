//! Trying a step again with doubling waits, as the statelite mounts and
//! requests do (the image fetch has its own, cancellable, in [`crate::fetch`]).

use std::time::Duration;

/// How often a step is tried and how long the waits between tries are.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub tries: u32,
    pub first_wait: Duration,
    pub max_wait: Duration,
}

impl Retry {
    /// Runs `step` until it succeeds or `tries` are spent; before each wait,
    /// `failed(try number, error, wait)` is told (to say a line). The last
    /// error is returned.
    pub fn run<T, E>(
        &self,
        mut step: impl FnMut() -> Result<T, E>,
        mut failed: impl FnMut(u32, &E, Duration),
    ) -> Result<T, E> {
        let mut wait = self.first_wait;
        let mut attempt = 1;
        loop {
            match step() {
                Ok(v) => return Ok(v),
                Err(e) if attempt >= self.tries => return Err(e),
                Err(e) => failed(attempt, &e, wait),
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(self.max_wait);
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_then_gives_the_last_error() {
        let r = Retry {
            tries: 3,
            first_wait: Duration::from_millis(1),
            max_wait: Duration::from_millis(2),
        };
        let mut seen = Vec::new();
        let mut n = 0;
        let out: Result<(), u32> = r.run(
            || {
                n += 1;
                Err(n)
            },
            |a, e, w| seen.push((a, *e, w.as_millis())),
        );
        assert_eq!(out, Err(3));
        assert_eq!(seen, [(1, 1, 1), (2, 2, 2)]);
        let mut n = 0;
        assert_eq!(
            r.run(
                || {
                    n += 1;
                    if n < 2 {
                        Err(())
                    } else {
                        Ok(n)
                    }
                },
                |_, _, _| {}
            ),
            Ok(2)
        );
    }
}
