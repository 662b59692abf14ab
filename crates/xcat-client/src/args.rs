//! From argv to a request, with xCAT's rules.
//!
//! The client does not parse the commands' options: it forwards the words,
//! and the daemon's handlers parse them with the one parser they share
//! (`xcat_plugin::args`). Kept apart on purpose: a client that knew every
//! command's options would have to be upgraded with the daemon, would
//! disagree with xCAT's own client (which forwards too) and with older
//! daemons, and would pull the handler interface (and its database
//! crate) into a small binary. What it must know is xCAT's noderange rule
//! and, for `tabrestore`, which word is the file to send.

use std::path::Path;

use anyhow::{bail, Context as _};
use xcatd_proto::Request;

/// Commands whose first word not starting with `-` is a noderange (xCAT's
/// `xcatclient` family); every other command gets all words as arguments
/// (`xcatclientnnr`).
const NODERANGE_COMMANDS: &[&str] = &[
    "capimage",
    "nodels",
    "xdsh",
    "noderange",
    "nodeset",
    "makedhcp",
    "rpower",
    "rinv",
    "nodestat",
    "psh",
    "xdcp",
    "testnodes",
    "litefile",
    "litetree",
];

/// Commands that read a stanza file from stdin with `-z` (`cat f | mkdef -z`).
const STANZA_COMMANDS: &[&str] = &["mkdef", "chdef"];

pub enum Parsed {
    Help,
    /// `xcatclient --noderange-commands`: the commands whose first word is a
    /// noderange, one a line (the shell completion asks).
    NoderangeCommands(&'static [&'static str]),
    Request(Box<Request>),
}

fn base_name(arg0: &str) -> &str {
    Path::new(arg0)
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or(arg0)
}

/// Build the request for `argv` (argv[0] included).
pub fn build_request(argv: &[String]) -> anyhow::Result<Parsed> {
    let prog = base_name(argv.first().map(String::as_str).unwrap_or("xcatclient"));
    let (command, words): (String, &[String]) = if prog == "xcatclient" {
        match argv.get(1).map(String::as_str) {
            None | Some("-h") | Some("--help") => return Ok(Parsed::Help),
            Some("--noderange-commands") => {
                return Ok(Parsed::NoderangeCommands(NODERANGE_COMMANDS))
            }
            Some(c) => (c.to_string(), &argv[2..]),
        }
    } else {
        (prog.to_string(), &argv[1..])
    };
    let mut req = Request::new(command.clone(), Vec::new());
    if NODERANGE_COMMANDS.contains(&command.as_str()) {
        let mut noderange = None;
        for w in words {
            if noderange.is_none() && !w.starts_with('-') {
                noderange = Some(w.clone());
            } else {
                req.args.push(w.clone());
            }
        }
        req.noderange = noderange.map(|r| {
            let prefix = std::env::var("XCAT_NODE_PREFIX").unwrap_or_else(|_| "node".into());
            let suffix = std::env::var("XCAT_NODE_SUFFIX").unwrap_or_default();
            with_node_affixes(&r, &prefix, &suffix)
        });
    } else {
        req.args = words.to_vec();
    }
    if command == "tabrestore" {
        attach_table_file(&mut req)?;
    }
    if STANZA_COMMANDS.contains(&command.as_str()) {
        attach_stanza_input(&mut req)?;
    }
    req.cwd = std::env::current_dir()
        .ok()
        .map(|p| p.display().to_string());
    req.clienttype = Some("cli".into());
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("XCAT_"))
        .collect();
    env.sort();
    req.environment = env;
    Ok(Parsed::Request(Box::new(req)))
}

/// xCAT's numeric shorthand in a noderange: a top-level atom `10-20` or
/// `10+3` names `PREFIX10SUFFIX` onwards (`XCAT_NODE_PREFIX`, default
/// `node`; `XCAT_NODE_SUFFIX`, default empty). Everything else is kept.
fn with_node_affixes(range: &str, prefix: &str, suffix: &str) -> String {
    let mut atoms = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in range.char_indices() {
        match c {
            '[' | '(' | '{' => depth += 1,
            ']' | ')' | '}' => depth -= 1,
            ',' if depth == 0 => {
                atoms.push(&range[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    atoms.push(&range[start..]);
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let expand = |atom: &str| -> String {
        if let Some((a, b)) = atom
            .split_once('-')
            .filter(|(a, b)| numeric(a) && numeric(b))
        {
            return format!("{prefix}{a}{suffix}-{prefix}{b}{suffix}");
        }
        if let Some((a, n)) = atom
            .split_once('+')
            .filter(|(a, n)| numeric(a) && numeric(n))
        {
            let (Ok(first), Ok(count)) = (a.parse::<u64>(), n.parse::<u64>()) else {
                return atom.to_string();
            };
            let width = a.len();
            return (first..=first.saturating_add(count))
                .map(|i| format!("{prefix}{i:0width$}{suffix}"))
                .collect::<Vec<_>>()
                .join(",");
        }
        atom.to_string()
    };
    atoms.into_iter().map(expand).collect::<Vec<_>>().join(",")
}

/// `tabrestore FILE`: the server cannot read the client's files, so the
/// file's contents travel in `<stdin>`; the file name stays an argument
/// because the table name is its base name.
fn attach_table_file(req: &mut Request) -> anyhow::Result<()> {
    // The daemon's help and version flags, which every command shares.
    const ANSWERED: &[&str] = &["-h", "--help", "-?", "-v", "--version"];
    if req.args.iter().any(|a| ANSWERED.contains(&a.as_str())) {
        return Ok(());
    }
    let mut skip_next = false;
    let mut file = None;
    for a in &req.args {
        if skip_next {
            skip_next = false;
            continue;
        }
        if a == "-t" || a == "--table" {
            skip_next = true;
        } else if !a.starts_with('-') {
            file = Some(a.clone());
        }
    }
    let Some(file) = file else {
        bail!("tabrestore needs a CSV file");
    };
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {file}"))?;
    req.stdin = Some(text);
    Ok(())
}

/// `tabdump -f FILE`: the file is the client's. The words `-f FILE` (or
/// `-fFILE`) come off the request, and the caller writes the answer to
/// FILE: the daemon writes no file for a request. With `-d` the request is
/// left whole: descriptions are printed, not written (as xCAT's tabdump
/// does), and the daemon answers `-f` without a table as xCAT does.
pub fn take_output_file(req: &mut Request) -> Option<String> {
    if req.command != "tabdump" || req.args.iter().any(|a| a == "-d") {
        return None;
    }
    let mut file = None;
    let mut kept = Vec::new();
    let mut words = std::mem::take(&mut req.args).into_iter();
    while let Some(w) = words.next() {
        if w == "-f" {
            file = words.next();
        } else if let Some(f) = w.strip_prefix("-f").filter(|f| !f.is_empty()) {
            file = Some(f.to_string());
        } else {
            kept.push(w);
        }
    }
    req.args = kept;
    file
}

/// `mkdef -z` / `chdef -z`: the server cannot read the client's stdin, so
/// a piped stanza file travels in `<stdin>` (a terminal is not read).
fn attach_stanza_input(req: &mut Request) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Read};
    if !req.args.iter().any(|a| a == "-z" || a == "--stanza") {
        return Ok(());
    }
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(());
    }
    let mut text = String::new();
    stdin
        .read_to_string(&mut text)
        .context("cannot read the stanza file from stdin")?;
    req.stdin = Some(text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(argv: &[&str]) -> Request {
        let v: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        match build_request(&v).unwrap() {
            Parsed::Request(r) => *r,
            _ => panic!("not a request"),
        }
    }

    #[test]
    fn tabdump_f_is_taken_off_the_request() {
        for argv in [
            &["tabdump", "-f", "out.csv", "site"][..],
            &["tabdump", "site", "-fout.csv"],
        ] {
            let mut r = req(argv);
            assert_eq!(take_output_file(&mut r).as_deref(), Some("out.csv"));
            assert_eq!(r.args, ["site"]);
        }
        let mut r = req(&["tabdump", "-f", "out.csv", "-d", "site"]);
        assert_eq!(take_output_file(&mut r), None);
        assert_eq!(r.args, ["-f", "out.csv", "-d", "site"]);
        let mut r = req(&["nodels", "-f", "x"]);
        assert_eq!(take_output_file(&mut r), None);
    }

    #[test]
    fn command_from_link_name_and_first_word_is_noderange() {
        let r = req(&["/usr/bin/capimage", "-p", "compute", "node1", "-V"]);
        assert_eq!(r.command, "capimage");
        assert_eq!(r.noderange.as_deref(), Some("compute"));
        assert_eq!(r.args, vec!["-p", "node1", "-V"]);
    }

    #[test]
    fn command_from_first_argument() {
        let r = req(&["xcatclient", "tabdump", "site"]);
        assert_eq!(r.command, "tabdump");
        assert_eq!(r.noderange, None);
        assert_eq!(r.args, vec!["site"]);
        assert_eq!(r.clienttype.as_deref(), Some("cli"));
    }

    #[test]
    fn tabrestore_sends_the_file_not_the_table_name() {
        let dir = std::env::temp_dir().join(format!("xcatclient-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("x.csv");
        std::fs::write(&file, "#key,value\n").unwrap();
        let f = file.display().to_string();
        for argv in [
            vec!["tabrestore", "-t", "site", &f],
            vec!["tabrestore", &f, "--table", "site"],
        ] {
            assert_eq!(
                req(&argv).stdin.as_deref(),
                Some("#key,value\n"),
                "{argv:?}"
            );
        }
        // Help and version are answered without a file.
        for flag in ["-h", "-?", "--version"] {
            assert_eq!(req(&["tabrestore", flag]).stdin, None);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn numeric_shorthand_takes_the_node_prefix_and_suffix() {
        assert_eq!(with_node_affixes("10-12", "abc", ""), "abc10-abc12");
        assert_eq!(
            with_node_affixes("10-12", "abc", "def"),
            "abc10def-abc12def"
        );
        assert_eq!(
            with_node_affixes("cn1,7+2", "node", ""),
            "cn1,node7,node8,node9"
        );
        assert_eq!(
            with_node_affixes("cn[1-2],c1-c3", "node", ""),
            "cn[1-2],c1-c3"
        );
    }

    #[test]
    fn help_for_the_client_itself() {
        let v = vec!["xcatclient".to_string(), "-h".to_string()];
        assert!(matches!(build_request(&v).unwrap(), Parsed::Help));
        // Called through a link, -h belongs to the command.
        let r = req(&["tabdump", "-h"]);
        assert_eq!(r.args, vec!["-h"]);
    }
}
