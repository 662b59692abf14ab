//! xCAT's own autotest cases as a yardstick: run the case files of xCAT's
//! test suite (`xCAT-test/autotest/testcase/<command>/cases*` in an
//! xcat-core checkout) through our client against a fresh daemon per case,
//! and count what passes.
//!
//!   xcat_autotest [-v] CASEFILE...        (scripts/xcat-autotest builds and runs it)
//!
//! A case is a list of `cmd:` lines, each followed by `check:` lines
//! (`rc==N`, `rc!=N`, `output=~RE`, `output!~RE`, `output==TEXT`,
//! `output!=TEXT`, on the command's stdout and stderr joined), as xCAT's
//! `xcattest` runs them. A case is not applicable, and counted apart, when
//! it needs cluster variables (`$$CN`, `__GETNODEATTR(...)__`, ...) or a
//! command that is neither ours nor on this machine (`copycds`, `rpower`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use xcatd_tests::{bin, shipped_share_config, Daemon, DaemonOptions};

#[derive(Default)]
struct Case {
    name: String,
    steps: Vec<Step>,
}

struct Step {
    cmd: String,
    checks: Vec<String>,
}

enum Outcome {
    Pass,
    Fail(String),
    NotApplicable(String),
}

fn parse(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut cur: Option<Case> = None;
    // After a `cmd:` line, lines that are no keyword continue the command
    // (a script run as a whole), as xcattest reads them.
    let mut in_cmd = false;
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if in_cmd && !is_keyword(line) {
            if let Some(s) = cur.as_mut().and_then(|c| c.steps.last_mut()) {
                s.cmd.push('\n');
                s.cmd.push_str(line);
                continue;
            }
        }
        in_cmd = line.starts_with("cmd:");
        if let Some(name) = line.strip_prefix("start:") {
            cur = Some(Case {
                name: name.trim().to_string(),
                ..Case::default()
            });
        } else if line.trim() == "end" {
            cases.extend(cur.take());
        } else if let Some(c) = cur.as_mut() {
            if let Some(cmd) = line.strip_prefix("cmd:") {
                c.steps.push(Step {
                    cmd: cmd.to_string(),
                    checks: Vec::new(),
                });
            } else if let Some(check) = line.strip_prefix("check:") {
                if let Some(s) = c.steps.last_mut() {
                    s.checks.push(check.trim().to_string());
                }
            }
        }
    }
    cases
}

/// A line of a case file that is not the rest of a command.
fn is_keyword(line: &str) -> bool {
    let words = [
        "start",
        "end",
        "cmd",
        "check",
        "cmdcheck",
        "description",
        "label",
        "os",
        "arch",
        "hcp",
        "type",
        "stop",
        "attribute",
    ];
    let word = line.split(':').next().unwrap_or("").trim();
    line.trim() == "end" || (line.contains(':') && words.contains(&word))
}

/// The commands our daemon serves (`lsxcatd -a`'s list is longer than the
/// client links need; these are the client's names).
fn our_commands(d: &Daemon) -> BTreeSet<String> {
    let out = d.ok(&["lsxcatd", "-a"]);
    out.split(|c: char| c.is_whitespace() || c == ',' || c == ':')
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(str::to_string)
        .collect()
}

/// The first word of every command in a shell line (after unquoted `|`,
/// `;`, `&`, `(`, `)` and backquotes), skipping assignments and
/// redirections: quoted text (a template such as `'|\z|-imm|'`) and the `&`
/// of `2>&1` separate nothing.
fn command_words(cmd: &str) -> Vec<String> {
    command_parts(cmd)
        .iter()
        .filter_map(|part| {
            part.split_whitespace()
                .find(|w| !w.contains('=') && !is_redirection(w) && !w.starts_with('$'))
                .map(|w| w.trim_matches(['"', '\'']).to_string())
        })
        .collect()
}

/// `cmd` cut at its unquoted command separators.
fn command_parts(cmd: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for c in cmd.chars() {
        let separates = quote.is_none()
            && matches!(c, '|' | ';' | '&' | '(' | ')' | '`' | '\n')
            && !(c == '&' && matches!(prev, '>' | '<'));
        match c {
            '\'' | '"' if quote.is_none() => quote = Some(c),
            q if quote == Some(q) => quote = None,
            _ => {}
        }
        if separates {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push(c);
        }
        prev = c;
    }
    parts
}

/// `>file`, `2>&1`, `<in` and the like.
fn is_redirection(word: &str) -> bool {
    word.trim_start_matches(|c: char| c.is_ascii_digit())
        .starts_with(['>', '<'])
}

fn on_this_machine(word: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v '{word}' >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

fn not_applicable(case: &Case, ours: &BTreeSet<String>) -> Option<String> {
    for s in &case.steps {
        let all = std::iter::once(s.cmd.as_str()).chain(s.checks.iter().map(String::as_str));
        for text in all {
            if text.contains("$$") || text.contains("__GET") || text.contains("__REPLACE") {
                return Some("needs cluster variables".into());
            }
        }
        for w in command_words(&s.cmd) {
            let name = Path::new(&w)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(w.clone());
            if !ours.contains(&name) && !on_this_machine(&w) {
                return Some(format!("needs {name}"));
            }
        }
    }
    None
}

fn check(c: &str, rc: i32, output: &str) -> Result<(), String> {
    let fail = || Err(format!("check:{c} (rc {rc}); output:\n{output}"));
    if let Some(rest) = c.strip_prefix("rc") {
        // xcattest reads `rc`, a run of `=` and `!`, and a number; only `==`
        // and `!=` can fail, so `rc=0` (one `=`) always passes there.
        let rest = rest.trim_start();
        let op_len = rest
            .find(|ch| !matches!(ch, '=' | '!'))
            .unwrap_or(rest.len());
        let (op, v) = rest.split_at(op_len);
        let v: i32 = v.trim().parse().map_err(|_| format!("bad check {c}"))?;
        return match op {
            "==" if rc != v => fail(),
            "!=" if rc == v => fail(),
            _ => Ok(()),
        };
    }
    if let Some(rest) = c.strip_prefix("output") {
        let rest = rest.trim_start();
        let (op, v) = rest.split_at(2);
        let v = v.trim_start();
        let ok = match op {
            "=~" | "!~" => {
                let re = regex::Regex::new(v).map_err(|e| format!("regex {v}: {e}"))?;
                re.is_match(output) == (op == "=~")
            }
            "==" => output == v,
            "!=" => output != v,
            _ => return Err(format!("unknown check {c}")),
        };
        return if ok { Ok(()) } else { fail() };
    }
    Err(format!("unknown check {c}"))
}

/// Links named after our commands to the client, as an admin installs them.
fn links(d: &Daemon, ours: &BTreeSet<String>) -> PathBuf {
    let dir = d.root().join("bin-autotest");
    std::fs::create_dir_all(&dir).expect("links dir");
    for c in ours {
        let _ = std::os::unix::fs::symlink(bin("xcatclient"), dir.join(c));
    }
    dir
}

fn run(case: &Case) -> Outcome {
    // The shipped files (object templates) as the package installs them.
    let d = Daemon::start_with(DaemonOptions {
        extra_config: shipped_share_config(),
        ..DaemonOptions::default()
    });
    let ours = our_commands(&d);
    if let Some(why) = not_applicable(case, &ours) {
        return Outcome::NotApplicable(why);
    }
    let path = format!(
        "{}:{}",
        links(&d, &ours).display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for s in &case.steps {
        let out = Command::new("bash")
            .args(["-c", &format!("{{\n{}\n}} 2>&1", s.cmd)])
            .env("PATH", &path)
            .env("HOME", &d.home)
            .env("XCATHOST", d.addr.to_string())
            .output()
            .expect("bash");
        let rc = out.status.code().unwrap_or(-1);
        let text = String::from_utf8_lossy(&out.stdout);
        let output = text.trim_end_matches('\n');
        for c in &s.checks {
            if let Err(e) = check(c, rc, output) {
                return Outcome::Fail(format!("cmd:{}\n{e}", s.cmd));
            }
        }
    }
    Outcome::Pass
}

fn main() {
    let mut verbose = false;
    let mut files = Vec::new();
    for a in std::env::args().skip(1) {
        if a == "-v" {
            verbose = true;
        } else {
            files.push(a);
        }
    }
    let (mut pass, mut fail, mut na) = (0, 0, 0);
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        for case in parse(&text) {
            match run(&case) {
                Outcome::Pass => {
                    pass += 1;
                    println!("PASS {}", case.name);
                }
                Outcome::Fail(why) => {
                    fail += 1;
                    println!("FAIL {}", case.name);
                    if verbose {
                        for l in why.lines().take(12) {
                            println!("     {l}");
                        }
                    }
                }
                Outcome::NotApplicable(why) => {
                    na += 1;
                    println!("N/A  {} ({why})", case.name);
                }
            }
        }
    }
    println!(
        "{} cases: {pass} passed, {fail} failed, {na} not applicable here; {pass} of {} applicable pass",
        pass + fail + na,
        pass + fail
    );
}
