//! The xcatd daemon as a library, so that dispatch, policy, panic handling
//! and logging can be tested in-process; the binary only parses its command
//! line, sets up logging and the descriptor limit, and calls in here.
//!
//! * [`Daemon::start`] does everything before the first connection
//!   (credentials, database, plugins' start-up hooks, the [`Registry`]);
//!   [`Daemon::serve`] accepts until shut down. [`serve`] is both in one call.
//! * [`init`] is `xcatd init`.
//! * [`plugin_handlers`] is the one list of plugins.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;
use xcat_plugin::{Handler, Settings};

pub mod config;

mod certs;
mod dhcp;
mod dispatch;
mod install_monitor;
pub mod logging;
pub mod manpages;
mod plugins;
mod server;
mod tls;

pub use config::Config;
pub use dispatch::{served_commands, Outcome, Registry, RegistryError};
pub use install_monitor::StatusSettings;
pub use plugins::plugin_handlers;

/// A daemon ready to accept connections.
pub struct Daemon {
    server: Arc<server::Server>,
    grace: Duration,
    /// The boot service, when `[http] listen` is set.
    boot: Option<(std::net::SocketAddr, xcat_bootserve::BootService)>,
    /// The supervised dnsmasq, when `[dhcp] interfaces` names any.
    dhcp: Option<dhcp::Supervisor>,
    /// The install monitor's address and database, when `[status] listen` is set.
    status: Option<(std::net::SocketAddr, xcat_db::Db)>,
}

/// The listeners beside port 3001 the configuration asks for (see
/// [`Daemon::bind_side`]); each None when its section is unset.
#[derive(Default)]
pub struct SideListeners {
    /// The boot service (`[http] listen`).
    pub boot: Option<TcpListener>,
    /// The install monitor (`[status] listen`).
    pub status: Option<TcpListener>,
}

impl Daemon {
    /// Load the TLS credentials, open the database, run every plugin's
    /// start-up hook and build the registry. Nothing listens yet, so a
    /// daemon that cannot serve fails before it holds the port.
    pub async fn start(config: Config) -> anyhow::Result<Daemon> {
        config.check_peer_limits()?;
        let tls = tls::server_config(&config.cert_dir)?;
        let db = open_db(&config)
            .await?
            .with_noderange_limits(xcat_db::noderange::Limits {
                max_names: config.max_noderange_names,
            });
        let mut settings = settings_of(&config);
        let boot = boot_service(&config, &db)?;
        let status = config.status.listen.map(|a| (a, db.clone()));
        let handlers = plugin_handlers(config.enable_test_commands);
        run_start_hooks(&handlers, &settings);
        let dhcp = dhcp::Supervisor::start(&config.dhcp, &config.state_dir)
            .context("cannot start the DHCP supervisor")?;
        if let Some(d) = &dhcp {
            settings.dhcp.server = d.handle();
        }
        let registry = Registry::new(handlers, db, Arc::new(settings))?;
        Ok(Daemon {
            server: Arc::new(server::Server::new(&config, registry, tls)),
            grace: Config::secs(config.shutdown_grace),
            boot,
            dhcp,
            status,
        })
    }

    /// The supervised dnsmasq, as handlers reach it (none when the daemon
    /// runs no DHCP server): SIGHUP restarts it on its configuration.
    pub fn dhcp_handle(&self) -> xcat_plugin::boot::DhcpServerHandle {
        self.dhcp
            .as_ref()
            .map(dhcp::Supervisor::handle)
            .unwrap_or_default()
    }

    /// Bind the boot service's (`[http] listen`) and the install
    /// monitor's (`[status] listen`) addresses, those configured. Port 0
    /// binds an ephemeral port: each listener's `local_addr` says which.
    pub fn bind_side(&self) -> anyhow::Result<SideListeners> {
        let boot = self
            .boot
            .as_ref()
            .map(|(addr, _)| bind(*addr).context("boot service ([http] listen)"))
            .transpose()?;
        let status = self
            .status
            .as_ref()
            .map(|(addr, _)| bind(*addr).context("install monitor ([status] listen)"))
            .transpose()?;
        Ok(SideListeners { boot, status })
    }

    /// Accept on `listener` until `shutdown` fires, then let running commands
    /// finish for the configured grace period before cancelling them. No
    /// side service is served: see [`Daemon::serve_with`].
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        self.serve_with(listener, SideListeners::default(), shutdown)
            .await;
    }

    /// [`Daemon::serve`], and the side services on `side` (from
    /// [`Daemon::bind_side`]) beside it; all stop when `shutdown` fires.
    pub async fn serve_with(
        self,
        listener: TcpListener,
        side: SideListeners,
        shutdown: CancellationToken,
    ) {
        let mut tasks = Vec::new();
        if let (Some((_, service)), Some(l)) = (self.boot, side.boot) {
            tasks.push(tokio::spawn(service.serve(l, shutdown.clone())));
        }
        if let (Some((_, db)), Some(l)) = (self.status, side.status) {
            tasks.push(tokio::spawn(install_monitor::serve(
                l,
                db,
                shutdown.clone(),
            )));
        }
        self.server.run(listener, shutdown, self.grace).await;
        for t in tasks {
            let _ = t.await;
        }
        if let Some(d) = self.dhcp {
            // Stopping waits for dnsmasq to exit: not on a runtime thread.
            let _ = tokio::task::spawn_blocking(move || d.stop()).await;
        }
    }
}

/// The boot service of `[http]`, its directories read from the site table.
fn boot_service(
    config: &Config,
    db: &xcat_db::Db,
) -> anyhow::Result<Option<(std::net::SocketAddr, xcat_bootserve::BootService)>> {
    let Some(addr) = config.http.listen else {
        return Ok(None);
    };
    let roots = xcat_bootserve::Roots::from_site(db.clone(), &config.install_dir, &config.tftp_dir);
    Ok(Some((
        addr,
        xcat_bootserve::BootService::new(&config.http, roots)?,
    )))
}

/// Start and serve in one call: what a test or an embedding program wants.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    Daemon::start(config).await?.serve(listener, shutdown).await;
    Ok(())
}

/// What handlers may know of the configuration.
fn settings_of(config: &Config) -> Settings {
    Settings {
        install_dir: config.install_dir.clone(),
        state_dir: config.state_dir.clone(),
        share_dir: config.share_dir.clone(),
        ssh: config.ssh.clone(),
        server_name: config.server_name.clone(),
        capture: config.capture.clone(),
        tftp_dir: config.tftp_dir.clone(),
        http: config.http.clone(),
        dhcp: config.dhcp.clone(),
        initrd: config.initrd.clone(),
        image_key: certs::image_key_path(&config.cert_dir),
    }
}

/// Let each handler repair what a killed daemon left behind, before serving.
fn run_start_hooks(handlers: &[Arc<dyn Handler>], settings: &Settings) {
    for h in handlers {
        for line in h.at_start(settings) {
            info!("recovery: {line}");
        }
    }
}

/// Bind, accepting IPv4 too on an IPv6 wildcard (dual stack).
pub fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
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
pub fn redact_url(url: &str) -> String {
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

/// `xcatd init`: the CA, the server credential, a client credential for
/// `user` in `client_dir` (default `~/.xcat`), the database and its default
/// rows. Reports each file on stdout, as the command does.
pub async fn init(
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
    seed(&db, &cfg).await?;
    println!("database {} ready", redact_url(&cfg.database_url()));
    Ok(())
}

/// The default rows (policy, site) `xcatd init` writes.
async fn seed(db: &xcat_db::Db, cfg: &Config) -> anyhow::Result<()> {
    let (install_dir, tftp_dir) = (cfg.install_dir.display(), cfg.tftp_dir.display());
    let (install_dir, tftp_dir) = (install_dir.to_string(), tftp_dir.to_string());
    db.seed_defaults(&xcat_db::SiteSeeds {
        server_name: &cfg.server_name,
        install_dir: &install_dir,
        tftp_dir: &tftp_dir,
        http_port: cfg.http.port(),
        // Where nodes report their install status: the monitor's port when
        // `[status] listen` is set, else xCAT's 3002 (what an initrd not
        // told otherwise assumes).
        status_port: Some(cfg.status.listen.map_or(3002, |a| a.port())),
    })
    .await
    .context("cannot seed the default table rows")
}
