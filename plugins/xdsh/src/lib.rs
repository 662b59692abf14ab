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

use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder, Response,
};
use xcat_remote::{NodeEvent, Remote, RemoteError, Target};

pub const USAGE: &str = "Usage: xdsh <noderange> [-f fanout] [-t timeout] [-l user] <command>";

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

/// Parse the arguments after the noderange. Options come first; the first
/// other word (or everything after `--`) starts the command.
pub fn parse_args(args: &[String]) -> Result<XdshArgs, String> {
    let mut fanout = None;
    let mut timeout = None;
    let mut user = None;
    let mut i = 0;
    fn value<'a>(args: &'a [String], i: &mut usize, opt: &str) -> Result<&'a str, String> {
        *i += 1;
        args.get(*i)
            .map(String::as_str)
            .ok_or_else(|| format!("option {opt} needs a value\n{USAGE}"))
    }
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "--" => {
                i += 1;
                break;
            }
            "-f" | "--fanout" => {
                let v = value(args, &mut i, a)?;
                let n: usize = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("-f needs a positive number, not {v:?}\n{USAGE}"))?;
                fanout = Some(n);
            }
            "-t" | "--timeout" => {
                let v = value(args, &mut i, a)?;
                let n: u64 = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("-t needs a positive number of seconds, not {v:?}\n{USAGE}")
                })?;
                timeout = Some(Duration::from_secs(n));
            }
            "-l" | "--user" => {
                let v = value(args, &mut i, a)?;
                if v.is_empty() || v.starts_with('-') {
                    return Err(format!("-l needs a user name, not {v:?}\n{USAGE}"));
                }
                user = Some(v.to_string());
            }
            _ if a.starts_with('-') && a.len() > 1 => {
                return Err(format!("unknown option {a}\n{USAGE}"));
            }
            _ => break,
        }
        i += 1;
    }
    let command = args[i.min(args.len())..].join(" ");
    if command.trim().is_empty() {
        return Err(format!("no command given\n{USAGE}"));
    }
    Ok(XdshArgs {
        fanout,
        timeout,
        user,
        command,
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
        let args = parse_args(req.args()).map_err(HandlerError::Usage)?;
        if req.nodes.is_empty() {
            return Err(HandlerError::Usage(format!("no nodes given\n{USAGE}")));
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

    #[test]
    fn parses_options_then_joins_the_command() {
        let a = parse_args(&s(&[
            "-f", "4", "-t", "30", "-l", "admin", "uname", "-a;", "echo", "'x y'",
        ]))
        .unwrap();
        assert_eq!(a.fanout, Some(4));
        assert_eq!(a.timeout, Some(Duration::from_secs(30)));
        assert_eq!(a.user.as_deref(), Some("admin"));
        assert_eq!(a.command, "uname -a; echo 'x y'");
        // Options after the first command word belong to the command.
        let a = parse_args(&s(&["ls", "-f", "/"])).unwrap();
        assert_eq!(a.command, "ls -f /");
        assert_eq!(a.fanout, None);
        let a = parse_args(&s(&["--", "-x"])).unwrap();
        assert_eq!(a.command, "-x");
        let a = parse_args(&s(&["date; hostname"])).unwrap();
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
            let e = parse_args(&s(bad)).unwrap_err();
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
