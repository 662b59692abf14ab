//! `xcatclient`: the command-line client.
//!
//! The command is this program's own name when it is called through a link
//! (`capimage`, `tabdump`, ...), else its first argument. It sends one request
//! to xcatd, prints the reply as it streams in, and exits with the OR of the
//! reply's errorcodes (1 if the reply ends without `serverdone`).
#![forbid(unsafe_code)]

mod args;
mod output;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use xcatd_proto::client::{connect, ClientConfig};
use xcatd_proto::Request;

use crate::output::Printer;

const USAGE: &str = "\
Usage: xcatclient <command> [noderange] [args...]
       <command> [noderange] [args...]      (called through a link named after the command)
       xcatclient -h | --help
       xcatclient --noderange-commands   (the commands whose first word is a noderange)

Sends one request to xcatd and prints the reply.

Environment:
  XCATHOST                    server as host:port or [v6]:port (default localhost:3001)
  XCATCLIENT_CONNECT_TIMEOUT  seconds to connect and handshake (default 10)
  XCATCLIENT_READ_TIMEOUT     seconds of silence tolerated from the server (default 3600; 0 = none)
  XCATCLIENT_VERIFY_HOSTNAME  1 to also check the server certificate's name
  XCAT_*                      passed to the server with the request
Credentials: $HOME/.xcat/client-cred.pem (certificate and key) and $HOME/.xcat/ca.pem.
Exit status: the OR of the reply's errorcodes; 1 if the reply ended early.";

fn env_secs(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name} must be a number of seconds, not {v:?}")),
        Err(_) => Ok(default),
    }
}

fn client_config() -> anyhow::Result<ClientConfig> {
    let host = std::env::var("XCATHOST").unwrap_or_else(|_| "localhost:3001".into());
    let home = PathBuf::from(std::env::var("HOME").context("HOME is not set")?);
    let dir = home.join(".xcat");
    let mut cfg = ClientConfig::new(host, dir.join("ca.pem"));
    let cred = dir.join("client-cred.pem");
    cfg.client_cred = cred.exists().then_some(cred);
    cfg.connect_timeout = Duration::from_secs(env_secs("XCATCLIENT_CONNECT_TIMEOUT", 10)?);
    let read = env_secs("XCATCLIENT_READ_TIMEOUT", 3600)?;
    cfg.read_timeout = (read > 0).then(|| Duration::from_secs(read));
    cfg.verify_hostname = std::env::var("XCATCLIENT_VERIFY_HOSTNAME").is_ok_and(|v| v == "1");
    Ok(cfg)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let mut request = match args::build_request(&argv) {
        Ok(args::Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(args::Parsed::NoderangeCommands(commands)) => {
            for c in commands {
                println!("{c}");
            }
            return ExitCode::SUCCESS;
        }
        Ok(args::Parsed::Request(r)) => *r,
        Err(e) => {
            eprintln!("Error: {e}\n{USAGE}");
            return ExitCode::from(1);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let out_file = args::take_output_file(&mut request);
    match rt.block_on(run(request, out_file)) {
        Ok(code) => ExitCode::from(
            u8::try_from(code & 0xff)
                .unwrap_or(1)
                .max(u8::from(code != 0)),
        ),
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(request: Request, out_file: Option<String>) -> anyhow::Result<i32> {
    use tokio::signal::unix::{signal, SignalKind};
    let cfg = client_config()?;
    let (mut tx, mut rx) = connect(&cfg)
        .await
        .with_context(|| format!("cannot reach xcatd at {}", cfg.host))?;
    tx.send(&request).await.context("cannot send the request")?;

    // `tabdump -f FILE` writes the answer to FILE, here on the client.
    let out: Box<dyn std::io::Write> = match &out_file {
        Some(f) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(f).with_context(|| format!("cannot write {f}"))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let mut printer = Printer::new(out, std::io::stderr());
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut aborted = false;
    let mut abort_deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        tokio::select! {
            next = rx.next() => match next {
                Ok(Some(resp)) => {
                    printer.print(&resp);
                    if resp.is_serverdone() {
                        printer.finish();
                        return Ok(printer.errorcode());
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    printer.finish();
                    eprintln!("Error: {e}");
                    break;
                }
            },
            _ = async { tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} } }, if !aborted => {
                // Ask the server to cancel, then give it a moment to say so.
                aborted = true;
                let _ = tx.send_abort().await;
                abort_deadline = Some(Box::pin(tokio::time::sleep(Duration::from_secs(5))));
            }
            _ = async { abort_deadline.as_mut().expect("set").await }, if abort_deadline.is_some() => {
                printer.finish();
                eprintln!("Error: aborted; the server did not confirm in time");
                return Ok(130);
            }
        }
    }
    printer.finish();
    let _ = std::io::stderr().flush();
    eprintln!("Error: communication with xcatd ended prematurely (no serverdone)");
    Ok(printer.errorcode() | 1)
}
