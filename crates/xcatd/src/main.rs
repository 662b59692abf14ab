//! xcatd: the daemon binary. `xcatd [--config FILE]` serves; `xcatd init`
//! creates credentials, the database and its default rows.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

mod certs;
mod config;
mod dispatch;
mod server;
mod tls;

use config::Config;

#[derive(Parser)]
#[command(name = "xcatd", version, about = "xCAT-compatible management daemon")]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve requests (the default).
    Run,
    /// Create the CA, server and client credentials, the database and its default rows.
    Init {
        /// Where the client credential goes (default ~/.xcat).
        #[arg(long)]
        client_dir: Option<PathBuf>,
        /// Certificate CN (user name) of the client credential.
        #[arg(long, default_value = "root")]
        user: String,
        /// Replace existing keys and certificates.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("XCATD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let explicit = cli.config.is_some();
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG));
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xcatd: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let cfg = Config::load(&path, explicit)?;
        match cli.cmd.unwrap_or(Cmd::Run) {
            Cmd::Run => serve(cfg).await,
            Cmd::Init {
                client_dir,
                user,
                force,
            } => init(cfg, client_dir, &user, force).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("xcatd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn open_db(cfg: &Config) -> anyhow::Result<xcat_db::Db> {
    std::fs::create_dir_all(&cfg.state_dir).with_context(|| {
        format!(
            "cannot create the state directory {}",
            cfg.state_dir.display()
        )
    })?;
    let url = cfg.database_url();
    xcat_db::Db::connect(&url)
        .await
        .with_context(|| format!("cannot open the database {}", redact_url(&url)))
}

/// A database URL without its password, for messages and logs.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn init(
    cfg: Config,
    client_dir: Option<PathBuf>,
    user: &str,
    force: bool,
) -> anyhow::Result<()> {
    let client_dir = match client_dir {
        Some(d) => d,
        None => PathBuf::from(std::env::var("HOME").context("HOME is not set; pass --client-dir")?)
            .join(".xcat"),
    };
    let report = certs::init(&cfg.cert_dir, &cfg.server_name, &client_dir, user, force)?;
    for p in &report.created {
        println!("created {}", p.display());
    }
    for p in &report.kept {
        println!("kept    {}", p.display());
    }
    let db = open_db(&cfg).await?;
    db.seed_defaults(&cfg.server_name, &cfg.install_dir.display().to_string())
        .await
        .context("cannot seed the default table rows")?;
    println!("database {} ready", redact_url(&cfg.database_url()));
    Ok(())
}

/// Raise the open-file limit to its hard maximum: every connection and
/// every capture (ssh pipes, extracted files) needs descriptors, and the
/// usual soft limit of 1024 is below the default connection limit.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    raise_fd_limit();
    let tls = tls::server_config(&cfg.cert_dir)?;
    let db = open_db(&cfg).await?;
    let settings = Arc::new(xcat_plugin::Settings {
        install_dir: cfg.install_dir.clone(),
        state_dir: cfg.state_dir.clone(),
        share_dir: cfg.share_dir.clone(),
        ssh: cfg.ssh.clone(),
        server_name: cfg.server_name.clone(),
    });
    // Captures a killed daemon left half-done: restore and clean before serving.
    for line in plugin_capimage::recover_at_start(&settings) {
        info!("recovery: {line}");
    }
    let registry = dispatch::Registry::new(
        dispatch::plugin_handlers(cfg.enable_test_commands),
        db,
        settings,
    )?;
    // Signal handlers first, so a SIGTERM right after start-up is a clean stop.
    let signals = Signals::install()?;
    let listener = bind(cfg.listen)?;
    let addr = listener.local_addr()?;
    info!(%addr, database = %redact_url(&cfg.database_url()), "xcatd listening");
    // Tests and scripts wait for this line on stdout to learn the bound port.
    println!("listening on {addr}");

    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            signals.wait().await;
            info!("signal received; shutting down");
            shutdown.cancel();
        }
    });
    let server = Arc::new(server::Server::new(&cfg, registry, tls));
    server
        .run(listener, shutdown, Config::secs(cfg.shutdown_grace))
        .await;
    Ok(())
}

/// Bind, accepting IPv4 too on an IPv6 wildcard (dual stack).
fn bind(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let sock = if addr.is_ipv6() {
        tokio::net::TcpSocket::new_v6()?
    } else {
        tokio::net::TcpSocket::new_v4()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)
        .with_context(|| format!("cannot listen on {addr}"))?;
    Ok(sock.listen(1024)?)
}

/// SIGTERM and SIGINT, both meaning "shut down gracefully".
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
