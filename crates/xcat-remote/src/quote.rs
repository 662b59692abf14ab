//! Building remote command lines.
//!
//! ssh joins its command arguments with spaces and hands the result to the
//! remote user's login shell, so everything we send is shell text. Values that
//! come from users or tables must be quoted with [`shell_quote`].

/// Quote `s` as one POSIX shell word: `'...'`, with every `'` written as `'\''`.
///
/// Words made only of characters that are never special to a shell are left
/// bare so command lines stay readable in logs.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b':' | b',' | b'+' | b'=' | b'@' | b'%'
                )
        });
    if plain {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Join words into one command line, quoting each.
pub fn shell_join<I, S>(words: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    words
        .into_iter()
        .map(|w| shell_quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// First line the wrapper writes on stderr once the session runs. Everything
/// ssh printed before it belongs to the connection phase (refused, host key,
/// authentication), which is how an ssh failure is told apart from a command
/// that itself exits with 255.
pub(crate) const SESSION_MARKER: &[u8] = b"::xcat-remote:session-started::\n";

/// The remote side of every command: a small POSIX sh script that runs the
/// user's command in the user's login shell (`$SHELL`, as a plain ssh command
/// would) and kills its process group when the ssh session goes away.
///
/// Why: when the ssh client dies (cancel, timeout, daemon stop), OpenSSH's
/// sshd closes the session but does not signal a command that has no tty; a
/// `sleep 1000` would live on. The watcher polls the session process (the
/// wrapper's parent, sshd) and, once it has gone, sends TERM then KILL to the
/// wrapper's process group (sshd makes every session a new process group;
/// if the wrapper is not a group leader, `kill -- -$$` fails and only the
/// command itself is signalled). The watcher exits as soon as the command has
/// ended or the wrapper tells it to (TERM), and its output goes to /dev/null
/// so it never holds the channel open. `exec 3<&0` keeps the command's stdin
/// (a background job would otherwise get /dev/null).
const WRAPPER: &str = r#"p=$PPID
printf '::xcat-remote:session-started::\n' >&2
exec 3<&0
"${SHELL:-/bin/sh}" -c "$1" 0<&3 3<&- &
c=$!
exec 3<&-
(
  trap 'exit 0' TERM
  trap '' HUP
  while kill -0 "$c" 2>/dev/null; do
    if [ ! -d "/proc/$p" ] && ! kill -0 "$p" 2>/dev/null; then
      trap '' TERM
      kill -s TERM -- "-$$" 2>/dev/null || kill -s TERM "$c" 2>/dev/null
      sleep 0.5 2>/dev/null || sleep 1
      kill -s KILL -- "-$$" 2>/dev/null || kill -s KILL "$c" 2>/dev/null
      exit 0
    fi
    sleep 0.3 2>/dev/null || sleep 1
  done
) </dev/null >/dev/null 2>&1 &
w=$!
wait "$c"
s=$?
kill "$w" 2>/dev/null
exit "$s""#;

/// The full remote command line for `command` (wrapped, see [`WRAPPER`]).
pub(crate) fn wrap_command(command: &str) -> String {
    format!(
        "exec /bin/sh -c {} xcat-remote {}",
        shell_quote(WRAPPER),
        shell_quote(command)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Run `sh -c 'echo <quoted>'`-style round trips through a real shell.
    fn through_sh(word: &str) -> String {
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("printf '%s' {}", shell_quote(word)))
            .output()
            .expect("run /bin/sh");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn quoting_survives_a_real_shell() {
        for w in [
            "",
            "plain",
            "two words",
            "it's",
            "'",
            "''",
            "$HOME `id` $(id) \\ \" ; & | < > * ? [a] ~ # !",
            "line\nbreak",
            "-n",
            "ünïcödé",
        ] {
            assert_eq!(through_sh(w), w, "word {w:?}");
        }
    }

    #[test]
    fn plain_words_stay_bare() {
        assert_eq!(shell_quote("/usr/bin/ls"), "/usr/bin/ls");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_join(["ls", "-l", "my dir"]), "ls -l 'my dir'");
    }

    #[test]
    fn wrapper_runs_the_command_and_keeps_its_status() {
        // Run the wrapper locally, as the remote login shell would (in its
        // own session, as sshd starts it).
        let out = Command::new("setsid")
            .arg("/bin/sh")
            .arg("-c")
            .arg(wrap_command(
                "echo out; echo err >&2; read x; echo \"in=$x\"; exit 7",
            ))
            .env("SHELL", "/bin/sh")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(b"hello\n")?;
                c.wait_with_output()
            })
            .unwrap();
        assert_eq!(out.status.code(), Some(7));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "out\nin=hello\n");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err, "::xcat-remote:session-started::\nerr\n");
        assert_eq!(SESSION_MARKER, b"::xcat-remote:session-started::\n");
    }
}
