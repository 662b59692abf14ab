//! The `xdsh` handler: run one command on many nodes over ssh.
//!
//! `xdsh <noderange> [-f fanout] [-t timeout] [-l user] <command...>`
//!
//! The command is the remaining arguments joined by spaces, as xCAT does, and
//! is run by the remote user's shell. Output lines are streamed as they
//! arrive, each as a `data` response `node: line` (xCAT's xdsh output form;
//! stdout and stderr lines alike, since the client prints `error` responses
//! with an `Error:` prefix). A node that cannot be reached, or whose command
//! exits non-zero, gets one `error` response `node: message` whose errorcode
//! is 1 for ssh failures or the command's exit code; the request's exit code
//! is the OR of them. Nodes are reached at `hosts.ip`, else by their name.
//!
//! Formatting lives in pure functions ([`parse_args`], [`output_line`],
//! [`finish_response`]) so it can be tested without nodes.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use xcat_plugin::args::{Parsed, Syntax, VersionFlag};
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder, Response,
};
use xcat_remote::{NodeEvent, Remote, RemoteError, Target};

pub const USAGE: &str =
    "Usage: xdsh <noderange> [-f|--fanout fanout] [-t|--timeout timeout] [-l|--user user] <command>
       xdsh -h|--help
       xdsh -V|--version";

/// The command's name and usage for the shared parser. The version flag is
/// xCAT's xdsh's `-V`: its `-v` means "verify", which this xdsh does not do.
pub const SYNTAX: Syntax = Syntax::new("xdsh", USAGE).version_flag(VersionFlag::Upper);

/// The handlers of this plugin.
pub fn handlers() -> Vec<Arc<dyn Handler>> {
    vec![Arc::new(Xdsh)]
}

/// Parsed `xdsh` arguments (the noderange is already expanded by the daemon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdshArgs {
    /// At most this many nodes at once (None: `[ssh] fanout`).
    pub fanout: Option<usize>,
    /// Seconds each node may take (None: no limit).
    pub timeout: Option<Duration>,
    /// Remote user (None: `[ssh] user`).
    pub user: Option<String>,
    /// The command line to run.
    pub command: String,
}

/// xdsh's options as clap reads them: options first; the first other word
/// (or everything after `--`) starts the command.
#[derive(Debug, clap::Parser)]
struct Cli {
    #[arg(short = 'f', long = "fanout", value_parser = fanout)]
    fanout: Option<usize>,
    #[arg(short = 't', long = "timeout", value_parser = timeout)]
    timeout: Option<Duration>,
    #[arg(short = 'l', long = "user", value_parser = user)]
    user: Option<String>,
    /// The command's words: options after its first word belong to it.
    #[arg(trailing_var_arg = true)]
    command: Vec<String>,
}

fn fanout(v: &str) -> Result<usize, String> {
    let n = v.parse().ok().filter(|n| *n > 0);
    n.ok_or_else(|| format!("-f needs a positive number, not {v:?}"))
}

fn timeout(v: &str) -> Result<Duration, String> {
    let n = v.parse().ok().filter(|n| *n > 0);
    n.map(Duration::from_secs)
        .ok_or_else(|| format!("-t needs a positive number of seconds, not {v:?}"))
}

fn user(v: &str) -> Result<String, String> {
    if v.is_empty() || v.starts_with('-') {
        return Err(format!("-l needs a user name, not {v:?}"));
    }
    Ok(v.to_string())
}

/// Parse the arguments after the noderange. The command is the remaining
/// words joined by spaces.
pub fn parse_args(args: &[String]) -> Result<Parsed<XdshArgs>, HandlerError> {
    SYNTAX.parse::<Cli>(args)?.and_then(|cli| {
        let command = cli.command.join(" ");
        if command.trim().is_empty() {
            return Err(SYNTAX.error("no command given"));
        }
        Ok(XdshArgs {
            fanout: cli.fanout,
            timeout: cli.timeout,
            user: cli.user,
            command,
        })
    })
}

/// One line of a node's output, as the client should print it.
pub fn output_line(node: &str, line: &str) -> Response {
    Response::data(format!("{node}: {line}"))
}

/// The response for a finished node, if it failed, with its errorcode.
pub fn finish_response(
    node: &str,
    result: &Result<std::process::ExitStatus, RemoteError>,
) -> Option<(Response, i32)> {
    let (msg, code) = match result {
        Ok(st) => match st.code() {
            Some(0) => return None,
            Some(c) => (format!("command exited with status {c}"), c),
            None => (format!("command ended abnormally ({st})"), 1),
        },
        Err(e) => (e.to_string(), 1),
    };
    Some((Response::error_code(format!("{node}: {msg}"), code), code))
}

/// Where to reach each node: `hosts.ip`, else the node name.
pub async fn node_targets(ctx: &Context, nodes: &[String]) -> Result<Vec<Target>, HandlerError> {
    let addrs = xcat_jobkit::node_addresses(&ctx.db, nodes).await?;
    Ok(nodes
        .iter()
        .zip(addrs)
        .map(|(n, addr)| Target::new(n.clone(), addr))
        .collect())
}

/// The `xdsh` command.
#[derive(Debug)]
pub struct Xdsh;

#[async_trait]
impl Handler for Xdsh {
    fn commands(&self) -> &'static [&'static str] {
        &["xdsh"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let parsed = parse_args(req.args())?;
        let Some(args) = SYNTAX.answer(parsed, &out).await? else {
            return Ok(());
        };
        if req.nodes.is_empty() {
            return Err(SYNTAX.error("no nodes given"));
        }
        let targets = node_targets(&ctx, &req.nodes).await?;
        let mut config = ctx.settings.ssh.clone();
        if let Some(u) = &args.user {
            config.user = u.clone();
        }
        let remote = Remote::new(config).with_cancel(ctx.cancel.clone());
        // Dropping `rx` (an early return) stops every node's ssh.
        let mut rx = remote.stream_many(targets, &args.command, args.fanout, args.timeout);
        while let Some(ev) = rx.recv().await {
            let resp = match &ev {
                NodeEvent::Stdout { node, line } | NodeEvent::Stderr { node, line } => {
                    Some(output_line(node, line))
                }
                NodeEvent::Done { node, result } => {
                    if matches!(result, Err(RemoteError::Cancelled { .. }))
                        && ctx.cancel.is_cancelled()
                    {
                        return Err(HandlerError::Cancelled);
                    }
                    finish_response(node, result).map(|(r, _)| r)
                }
            };
            if let Some(r) = resp {
                out.send(r).await?;
            }
        }
        ctx.check_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn run(v: &[&str]) -> XdshArgs {
        match parse_args(&s(v)) {
            Ok(Parsed::Run(a)) => a,
            other => panic!("{v:?}: {other:?}"),
        }
    }

    #[test]
    fn parses_options_then_joins_the_command() {
        let a = run(&[
            "-f", "4", "-t", "30", "-l", "admin", "uname", "-a;", "echo", "'x y'",
        ]);
        assert_eq!(a.fanout, Some(4));
        assert_eq!(a.timeout, Some(Duration::from_secs(30)));
        assert_eq!(a.user.as_deref(), Some("admin"));
        assert_eq!(a.command, "uname -a; echo 'x y'");
        // Options after the first command word belong to the command.
        let a = run(&["ls", "-f", "/"]);
        assert_eq!(a.command, "ls -f /");
        assert_eq!(a.fanout, None);
        let a = run(&["--", "-x"]);
        assert_eq!(a.command, "-x");
        let a = run(&["date; hostname"]);
        assert_eq!(a.command, "date; hostname");
    }

    #[test]
    fn rejects_bad_arguments_with_usage() {
        for bad in [
            &[][..],
            &["-f"],
            &["-f", "0", "ls"],
            &["-t", "x", "ls"],
            &["-q", "ls"],
            &["-l", "-f", "ls"],
            &["-f", "2"],
        ] {
            let e = parse_args(&s(bad)).unwrap_err().to_string();
            assert!(e.ends_with(USAGE), "{bad:?}: {e}");
        }
    }

    #[test]
    fn formats_lines_and_failures_like_xcat() {
        let r = output_line("node1", "hello world");
        assert_eq!(
            r.texts("data").collect::<Vec<_>>(),
            vec!["node1: hello world"]
        );
        assert_eq!(r.errorcode(), 0);

        assert!(finish_response("node1", &Ok(std::process::ExitStatus::from_raw(0))).is_none());
        let (r, code) =
            finish_response("node1", &Ok(std::process::ExitStatus::from_raw(3 << 8))).unwrap();
        assert_eq!(code, 3);
        assert_eq!(
            r.texts("error").collect::<Vec<_>>(),
            vec!["node1: command exited with status 3"]
        );
        assert_eq!(r.errorcode(), 3);

        let e = RemoteError::Timeout {
            node: "node2".into(),
            after: Duration::from_secs(5),
        };
        let (r, code) = finish_response("node2", &Err(e)).unwrap();
        assert_eq!(code, 1);
        let text: Vec<_> = r.texts("error").collect();
        assert_eq!(
            text,
            vec!["node2: node2 did not finish within 5 s; the command was stopped"]
        );
        assert_eq!(r.errorcode(), 1);
    }

    #[test]
    fn exports_the_handler() {
        let h = handlers();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].commands(), &["xdsh"]);
    }
}
