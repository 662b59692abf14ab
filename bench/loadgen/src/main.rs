//! `loadgen`: the measuring half of `bench/run`.
//!
//! * `loadgen daemon`: starts a real `xcatd` (fresh credentials, a 10,000-node
//!   table), drives it with concurrent TLS clients (one handshake per request,
//!   as xCAT clients do) and measures requests per second, latency and the
//!   daemon's memory. The baseline is a bare TLS server in this process, with
//!   the same credentials, that replays the daemon's own reply bytes: what
//!   any server speaking this protocol over TLS on this machine costs.
//! * `loadgen tables`: noderange expansion and attribute lookup for 100,000
//!   nodes on SQLite and (given a URL) PostgreSQL, beside a plain SQL fetch
//!   of the same rows.
//! * `loadgen report`: merges JSON result files into `latest.json` and
//!   prints the table.
#![forbid(unsafe_code)]

mod daemon;
mod report;
mod tables;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "loadgen", about = "xcatd benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load a real daemon over TLS.
    Daemon(daemon::Args),
    /// Noderange and attribute lookups against SQLite and PostgreSQL.
    Tables(tables::Args),
    /// Merge result files, write the report and print the table.
    Report {
        /// Result files (a JSON list of rows, or an object with `results`).
        #[arg(long = "input", required = true)]
        inputs: Vec<PathBuf>,
        /// Where the merged report goes.
        #[arg(long)]
        out: PathBuf,
        /// Commit the figures were measured on.
        #[arg(long, default_value = "")]
        commit: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Daemon(a) => runtime()?.block_on(daemon::run(a)),
        Cmd::Tables(a) => runtime()?.block_on(tables::run(a)),
        Cmd::Report {
            inputs,
            out,
            commit,
        } => report::merge(&inputs, &out, &commit),
    }
}

/// Two workers: the machine the targets are stated for has two cores.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
