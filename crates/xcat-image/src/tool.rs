//! Running a local program (mksquashfs, depmod, ...) from blocking code.
//!
//! Both output pipes are drained at once, each on its own thread: a program that
//! fills the pipe we do not read would otherwise block forever. The cancellation
//! flag is polled while it runs, and the end of its stderr is kept, because that is
//! what explains a failure.
//!
//! It lives here, at the bottom of the image crates, so that the packer's
//! mksquashfs and the image jobs' tools (through `xcat_jobkit::tool`) share it.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How much of the end of stderr is kept for the error message.
pub const STDERR_TAIL: usize = 4096;
/// Polling starts fast (short tools finish at once) and slows to this.
const MAX_POLL: Duration = Duration::from_millis(100);

/// Why a local program did not do its job.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot run {program} ({source})")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("waiting for {program}: {source}")]
    Wait {
        program: String,
        #[source]
        source: io::Error,
    },
    /// It ran and failed; `stderr_tail` is the end of what it said (trimmed).
    #[error("{name} failed: {}", if stderr_tail.is_empty() { status.to_string() } else { stderr_tail.clone() })]
    Failed {
        name: String,
        status: ExitStatus,
        stderr_tail: String,
    },
    #[error("{program} was stopped: the request was cancelled")]
    Cancelled { program: String },
}

/// A local program to run: `LocalTool::new("depmod").named("depmod -b").arg(...)`.
#[derive(Debug)]
pub struct LocalTool {
    command: Command,
    program: String,
    name: String,
}

impl LocalTool {
    /// The program (looked up in `PATH`), with stdin closed.
    pub fn new(program: &str) -> LocalTool {
        let mut command = Command::new(program);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so cancelling stops what it started too (a
            // helper left running would hold the pipes open and the job with them).
            .process_group(0);
        LocalTool {
            command,
            program: program.to_string(),
            name: program.to_string(),
        }
    }

    /// How failure messages name it (default: the program), e.g. `depmod -b`.
    pub fn named(mut self, name: &str) -> LocalTool {
        self.name = name.to_string();
        self
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> LocalTool {
        self.command.arg(a);
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, a: I) -> LocalTool {
        self.command.args(a);
        self
    }

    /// Runs it to the end. `on_poll` is called every few milliseconds while it runs
    /// (to read its progress, e.g. an output file's size). When `cancel` is set the
    /// program is killed. Success returns the tail of its stderr.
    pub fn run(mut self, cancel: &AtomicBool, on_poll: impl FnMut()) -> Result<String, ToolError> {
        let mut child = self.command.spawn().map_err(|source| ToolError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        let stdout = child.stdout.take().map(|s| drain(s, 0));
        let stderr = child.stderr.take().map(|s| drain(s, STDERR_TAIL));
        let status = wait(&mut child, cancel, on_poll);
        // The pipes end with the program: join even on failure, to not leak threads.
        let _ = stdout.map(JoinHandle::join);
        let tail = stderr
            .and_then(|t| t.join().ok())
            .map(|b| tail_text(&b))
            .unwrap_or_default();
        let program = self.program;
        match status {
            Ok(Some(st)) if st.success() => Ok(tail),
            Ok(Some(status)) => Err(ToolError::Failed {
                name: self.name,
                status,
                stderr_tail: tail,
            }),
            Ok(None) => Err(ToolError::Cancelled { program }),
            Err(source) => Err(ToolError::Wait { program, source }),
        }
    }
}

/// Waits for `child`, polling `cancel`; None when it was killed for cancellation.
fn wait(
    child: &mut Child,
    cancel: &AtomicBool,
    mut on_poll: impl FnMut(),
) -> io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(2);
    loop {
        if cancel.load(Ordering::Relaxed) {
            kill_group(child);
            child.wait()?;
            return Ok(None);
        }
        match child.try_wait() {
            Ok(Some(st)) => return Ok(Some(st)),
            Ok(None) => {}
            Err(e) => {
                kill_group(child);
                let _ = child.wait();
                return Err(e);
            }
        }
        on_poll();
        std::thread::sleep(pause);
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// Kills the program's process group (it leads it: see [`LocalTool::new`]).
fn kill_group(child: &mut Child) {
    let pid = rustix::process::Pid::from_child(child);
    if rustix::process::kill_process_group(pid, rustix::process::Signal::Kill).is_err() {
        let _ = child.kill();
    }
}

/// Reads `pipe` to its end on a thread, keeping only its last `keep` bytes.
fn drain(mut pipe: impl Read + Send + 'static, keep: usize) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > keep {
                        kept.drain(..kept.len() - keep);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        kept
    })
}

/// The kept bytes as text: when cut, from the first whole line on.
fn tail_text(b: &[u8]) -> String {
    let b = if b.len() >= STDERR_TAIL {
        b.iter()
            .position(|&c| c == b'\n')
            .map_or(b, |i| &b[i + 1..])
    } else {
        b
    };
    String::from_utf8_lossy(b).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn sh(script: &str) -> LocalTool {
        LocalTool::new("sh").arg("-c").arg(script)
    }

    #[test]
    fn success_and_its_stderr() {
        let never = AtomicBool::new(false);
        let said = sh("echo out; echo warn >&2").run(&never, || {}).unwrap();
        assert_eq!(said, "warn");
    }

    #[test]
    fn failure_keeps_the_stderr_tail_and_names_the_tool() {
        let never = AtomicBool::new(false);
        // Far more output than a pipe holds, on both pipes: drained, not deadlocked.
        let script =
            "i=0; while [ $i -lt 4000 ]; do echo line$i; echo err$i >&2; i=$((i+1)); done; \
                      echo last words >&2; exit 3";
        let e = sh(script).named("the tool").run(&never, || {}).unwrap_err();
        let ToolError::Failed {
            status,
            stderr_tail,
            ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(status.code(), Some(3));
        assert!(
            stderr_tail.ends_with("err3999\nlast words"),
            "{stderr_tail}"
        );
        assert!(stderr_tail.len() <= STDERR_TAIL);
        assert!(
            stderr_tail.starts_with("err"),
            "cut at a line: {stderr_tail}"
        );
        assert!(e.to_string().starts_with("the tool failed: err"), "{e}");
        let quiet = sh("exit 2").run(&never, || {}).unwrap_err();
        assert_eq!(quiet.to_string(), "sh failed: exit status: 2");
    }

    #[test]
    fn a_missing_program_says_so() {
        let never = AtomicBool::new(false);
        let e = LocalTool::new("no-such-tool-here")
            .run(&never, || {})
            .unwrap_err();
        assert!(matches!(e, ToolError::Spawn { .. }), "{e:?}");
        assert!(
            e.to_string().starts_with("cannot run no-such-tool-here ("),
            "{e}"
        );
    }

    #[test]
    fn cancellation_kills_it_and_progress_is_polled() {
        let cancel = AtomicBool::new(false);
        let t = Instant::now();
        let mut polls = 0;
        let e = sh("sleep 30").run(&cancel, || {
            polls += 1;
            if polls == 5 {
                cancel.store(true, Ordering::Relaxed);
            }
        });
        assert!(matches!(e, Err(ToolError::Cancelled { .. })), "{e:?}");
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
