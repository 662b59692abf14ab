//! xcatd: the daemon binary. `xcatd [--config FILE]` serves; `xcatd init`
//! creates credentials, the database and its default rows. The daemon itself
//! is the `xcatd` library; this file is only the process around it.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};
use xcatd::config::{self, Config};
use xcatd::logging::{self, LogFormat};

#[derive(Parser)]
#[command(name = "xcatd", version, about = "xCAT-compatible management daemon")]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log lines as text or as one JSON object each (for log shippers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log to this file (appending; SIGHUP opens it again after rotation)
    /// instead of stderr.
    #[arg(long, global = true, value_name = "FILE")]
    log_file: Option<PathBuf>,
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
    /// List the commands the daemon serves, one a line (the client's link names).
    Commands,
    /// Write the man pages (man1/ for every command, man5/, man8/) under DIR.
    Manpages {
        /// The directory (created when missing).
        dir: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Neither reads a configuration: they describe the program itself.
    match &cli.cmd {
        Some(Cmd::Commands) => return list_commands(),
        Some(Cmd::Manpages { dir }) => return write_manpages(dir),
        _ => {}
    }
    let env_filter = std::env::var("XCATD_LOG").ok();
    let log = match logging::init(
        cli.log_format,
        cli.log_file.as_deref(),
        env_filter.as_deref().unwrap_or("info"),
    ) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("xcatd: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
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
        let log = Log {
            handle: log,
            env_filter,
            config: path,
            explicit,
        };
        log.apply_level(&cfg)?;
        match cli.cmd.unwrap_or(Cmd::Run) {
            Cmd::Run => serve(cfg, log).await,
            Cmd::Init {
                client_dir,
                user,
                force,
            } => xcatd::init(cfg, client_dir, &user, force).await,
            Cmd::Commands | Cmd::Manpages { .. } => {
                unreachable!("answered before the configuration is read")
            }
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

fn list_commands() -> std::process::ExitCode {
    for c in xcatd::served_commands(&xcatd::plugin_handlers(false)) {
        println!("{c}");
    }
    std::process::ExitCode::SUCCESS
}

fn write_manpages(dir: &std::path::Path) -> std::process::ExitCode {
    use clap::CommandFactory;
    match xcatd::manpages::write_all(dir, &Cli::command()) {
        Ok(pages) => {
            for p in pages {
                println!("{}", p.display());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xcatd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
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

/// Start, then listen: the credentials, database and plugins' start-up
/// work come before the port is bound, so a daemon that cannot serve never
/// holds it, and "listening on" means requests are served.
async fn serve(cfg: Config, log: Log) -> anyhow::Result<()> {
    raise_fd_limit();
    let daemon = xcatd::Daemon::start(cfg.clone()).await?;
    // Signal handlers first, so a SIGTERM right after start-up is a clean stop.
    let signals = Signals::install()?;
    let listener = xcatd::bind(cfg.listen)?;
    let side = daemon.bind_side()?;
    if let Some(b) = &side.boot {
        let addr = b.local_addr()?;
        info!(%addr, "boot service listening");
        println!("boot service listening on {addr}");
    }
    if let Some(s) = &side.status {
        let addr = s.local_addr()?;
        info!(%addr, "install monitor listening");
        println!("install monitor listening on {addr}");
    }
    let addr = listener.local_addr()?;
    info!(%addr, database = %xcatd::redact_url(&cfg.database_url()), "xcatd listening");
    // Tests and scripts wait for this line on stdout to learn the bound port.
    println!("listening on {addr}");
    notify_ready();

    let shutdown = CancellationToken::new();
    let dhcp = daemon.dhcp_handle();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            signals.wait(|| log.reload(&dhcp)).await;
            info!("signal received; shutting down");
            shutdown.cancel();
        }
    });
    daemon.serve_with(listener, side, shutdown).await;
    Ok(())
}

/// Tell systemd (`Type=notify`) that requests are served: one `READY=1`
/// datagram on `$NOTIFY_SOCKET`, a path or an abstract name (`@...`).
/// Without the variable there is no service manager to tell.
fn notify_ready() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = name.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name),
        None => SocketAddr::from_pathname(&name),
    };
    let sent = addr.and_then(|a| UnixDatagram::unbound()?.send_to_addr(b"READY=1", &a));
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot tell the service manager that xcatd is ready");
    }
}

/// The log and what SIGHUP reloads it from.
struct Log {
    handle: logging::LogHandle,
    /// `XCATD_LOG`: when set, it wins over the configuration's `log_level`.
    env_filter: Option<String>,
    config: PathBuf,
    explicit: bool,
}

impl Log {
    fn apply_level(&self, cfg: &Config) -> anyhow::Result<()> {
        if self.env_filter.is_none() {
            self.handle.set_filter(&cfg.log_level)?;
        }
        Ok(())
    }

    /// SIGHUP: what can change without a restart. The log file is opened
    /// again (after rotation), the configuration read again for its
    /// `log_level`, and a supervised dnsmasq restarted on the configuration
    /// makedhcp wrote. Policy needs nothing: every request reads the policy
    /// table as it is. Any failure is logged and the rest still done.
    fn reload(&self, dhcp: &xcat_plugin::boot::DhcpServerHandle) {
        if let Err(e) = self.handle.reopen() {
            error!("SIGHUP: {e}");
        }
        match Config::load(&self.config, self.explicit) {
            Ok(cfg) => {
                if let Err(e) = self.apply_level(&cfg) {
                    error!("SIGHUP: {e:#}");
                }
            }
            Err(e) => error!("SIGHUP: the configuration is unchanged: {e:#}"),
        }
        let restarted = dhcp.notify(xcat_plugin::boot::DhcpChange::Config);
        info!(dnsmasq_restarted = restarted, "SIGHUP: reloaded");
    }
}

/// SIGTERM and SIGINT, both meaning "shut down gracefully"; SIGHUP, "reload".
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            hup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        })
    }

    /// Until SIGTERM or SIGINT, calling `reload` at each SIGHUP.
    async fn wait(mut self, reload: impl Fn()) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => reload(),
            }
        }
    }
}
