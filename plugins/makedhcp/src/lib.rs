//! `makedhcp`: the DHCP configuration nodes boot by, for dnsmasq.
//!
//! `-n` writes the main file from `networks` and `site` and copies the iPXE
//! binaries into the TFTP root; a noderange writes each node's entry (MAC ->
//! address, name, boot file by client type); `-d` removes entries, `-q`
//! shows them, `-a` means every node of the `mac` table. The files live in
//! `<state_dir>/dhcp/` ([`xcat_plugin::boot::DhcpPaths`]); when the daemon
//! supervises dnsmasq it is told of each change through the settings'
//! [`xcat_plugin::boot::DhcpServerHandle`].
#![forbid(unsafe_code)]

pub mod conf;
pub mod files;
pub mod plan;

use std::path::PathBuf;
use std::sync::Arc;

use xcat_plugin::args::Syntax;
use xcat_plugin::boot::{DhcpChange, DhcpPaths};
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

pub const USAGE: &str = "Usage: makedhcp -n [-l|--localonly]
       makedhcp -a [-d] [-l|--localonly]
       makedhcp -d <noderange> [-l|--localonly]
       makedhcp <noderange> [-l|--localonly]
       makedhcp -q <noderange>
       makedhcp [-h|--help] [-v|--version]";

pub const SYNTAX: Syntax = Syntax::new("makedhcp", USAGE);

#[derive(Debug, clap::Parser)]
struct Args {
    /// Write a new main configuration.
    #[arg(short = 'n')]
    new: bool,
    /// Every node of the mac table.
    #[arg(short = 'a')]
    all: bool,
    /// Delete the entries.
    #[arg(short = 'd')]
    delete: bool,
    /// Show the entries.
    #[arg(short = 'q')]
    query: bool,
    /// This server only (there are no service nodes to forward to).
    #[arg(short = 'l', long = "localonly")]
    _local: bool,
    /// ISC statements: not expressible for dnsmasq. Accepted only to be
    /// refused with that reason, so no usage text or man page shows it.
    #[arg(short = 's', hide = true)]
    statements: Option<String>,
}

/// What one request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    New,
    Add,
    Delete,
    Query,
    AddAll,
    DeleteAll,
}

impl Args {
    fn action(&self, has_nodes: bool) -> Result<Action, HandlerError> {
        if self.statements.is_some() {
            return Err(SYNTAX.error("-s (ISC dhcpd statements) is not supported with dnsmasq"));
        }
        let modes = [self.new, self.all, self.query]
            .iter()
            .filter(|b| **b)
            .count();
        if modes > 1 || (self.delete && (self.new || self.query)) {
            return Err(SYNTAX.error("use one of -n, -a, -d and -q"));
        }
        let action = match (self.new, self.all, self.delete, self.query) {
            (true, ..) => Action::New,
            (_, true, true, _) => Action::DeleteAll,
            (_, true, ..) => Action::AddAll,
            (_, _, true, _) => Action::Delete,
            (.., true) => Action::Query,
            _ => Action::Add,
        };
        let wants_nodes = matches!(action, Action::Add | Action::Delete | Action::Query);
        if wants_nodes && !has_nodes {
            return Err(SYNTAX.error("makedhcp needs a noderange, -n or -a"));
        }
        if !wants_nodes && has_nodes {
            return Err(SYNTAX.error("-n and -a take no noderange"));
        }
        Ok(action)
    }
}

pub struct MakeDhcp;

pub fn handlers() -> Vec<Arc<dyn Handler>> {
    vec![Arc::new(MakeDhcp)]
}

#[async_trait]
impl Handler for MakeDhcp {
    fn commands(&self) -> &'static [&'static str] {
        &["makedhcp"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let Some(args) = SYNTAX.read::<Args>(req.args(), &out).await? else {
            return Ok(());
        };
        let paths = DhcpPaths::new(&ctx.settings.state_dir);
        match args.action(!req.nodes.is_empty())? {
            Action::New => new_config(&ctx, &paths, &out).await,
            Action::Add => add_nodes(&ctx, &paths, &req.nodes, &out).await,
            Action::AddAll => {
                let nodes = mac_table_nodes(&ctx).await?;
                add_nodes(&ctx, &paths, &nodes, &out).await
            }
            Action::Delete => delete_nodes(&ctx, &paths, Some(&req.nodes)).await,
            Action::DeleteAll => delete_nodes(&ctx, &paths, None).await,
            Action::Query => query_nodes(&paths, &req.nodes, &out).await,
        }
    }
}

/// Run file work on a blocking thread (thousands of small files, name
/// resolution).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, files::FileError> + Send + 'static,
) -> Result<T, HandlerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HandlerError::Failed(format!("makedhcp: internal error: {e}")))?
        .map_err(HandlerError::typed)
}

/// The TFTP root: site.tftpdir wins over the daemon's configuration.
fn tftp_dir(ctx: &Context, site: &plan::Site) -> PathBuf {
    site.tftpdir
        .as_ref()
        .map(PathBuf::from)
        .unwrap_or_else(|| ctx.settings.tftp_dir.clone())
}

/// `-n`.
async fn new_config(ctx: &Context, paths: &DhcpPaths, out: &Responder) -> HandlerResult {
    let site = plan::Site::read(&ctx.db).await?;
    let (networks, warnings) = plan::networks(&ctx.db.rows("networks").await?, &site);
    for w in warnings {
        out.warning(w).await?;
    }
    if networks.is_empty() {
        out.warning("the networks table has no IPv4 network: dnsmasq will answer no client")
            .await?;
    }
    let tftp = tftp_dir(ctx, &site);
    let text = conf::render_main(&conf::MainConf {
        paths,
        tftp_dir: &tftp,
        lease_secs: site.dhcplease.unwrap_or(43200),
        networks: &networks,
    });
    let dhcp = ctx.settings.dhcp.clone();
    let p = paths.clone();
    let (changed, unsearchable) = blocking(move || {
        files::make_dirs(&p)?;
        files::install_ipxe(&dhcp.ipxe_bios, &tftp, conf::XNBA_KPXE)?;
        files::install_ipxe(&dhcp.ipxe_efi, &tftp, conf::XNBA_EFI)?;
        let changed = files::differs(&p.conf, text.as_bytes());
        if changed {
            files::write_atomic(&p.conf, text.as_bytes())?;
        }
        let unsearchable = [&p.dir, &tftp]
            .into_iter()
            .find_map(|d| files::unsearchable_ancestor(d));
        Ok((changed, unsearchable))
    })
    .await?;
    if let Some(d) = unsearchable {
        out.warning(format!(
            "{} is not searchable by other users: dnsmasq, which drops root, cannot read the files beneath it (chmod o+x)",
            d.display()
        ))
        .await?;
    }
    let change = if changed {
        DhcpChange::Config
    } else {
        DhcpChange::Nodes
    };
    ctx.settings.dhcp.server.notify(change);
    out.info(format!(
        "makedhcp: {} ({} networks)",
        paths.conf.display(),
        networks.len()
    ))
    .await?;
    Ok(())
}

/// A noderange or `-a`: one plan per node, errors per node, then the files.
async fn add_nodes(
    ctx: &Context,
    paths: &DhcpPaths,
    nodes: &[String],
    out: &Responder,
) -> HandlerResult {
    let site = plan::Site::read(&ctx.db).await?;
    let (networks, _) = plan::networks(&ctx.db.rows("networks").await?, &site);
    let rows = plan::node_rows(&ctx.db, nodes).await?;
    let http_port = site.httpport.or(ctx.settings.http.port()).unwrap_or(80);
    let nodes = nodes.to_vec();
    let p = paths.clone();
    let results = blocking(move || {
        let local = plan::local_ipv4s();
        let env = plan::Env {
            networks: &networks,
            site: &site,
            http_port,
            local: &local,
            resolve: &plan::resolve_v4,
        };
        files::make_dirs(&p)?;
        let mut results = Vec::with_capacity(nodes.len());
        for (node, rows) in nodes.iter().zip(&rows) {
            match plan::plan_node(node, rows, &env) {
                Ok(plan) => {
                    let hosts = conf::render_hosts(node, &plan.hosts);
                    let opts = conf::render_opts(node, &plan.boot);
                    files::write_node(&p, node, &hosts, &opts)?;
                    results.push(Ok(()));
                }
                Err(why) => results.push(Err(format!("{node}: Error: {why}"))),
            }
        }
        Ok(results)
    })
    .await?;
    ctx.settings.dhcp.server.notify(DhcpChange::Nodes);
    for r in results {
        if let Err(line) = r {
            out.error(line).await?;
        }
    }
    Ok(())
}

/// `-d`, or `-a -d` (`nodes` None: every entry).
async fn delete_nodes(ctx: &Context, paths: &DhcpPaths, nodes: Option<&[String]>) -> HandlerResult {
    let p = paths.clone();
    let nodes = nodes.map(<[String]>::to_vec);
    blocking(move || {
        let nodes = match nodes {
            Some(n) => n,
            None => files::listed_nodes(&p)?,
        };
        for n in nodes.iter().filter(|n| conf::safe_node_name(n)) {
            files::remove_node(&p, n)?;
        }
        Ok(())
    })
    .await?;
    ctx.settings.dhcp.server.notify(DhcpChange::Nodes);
    Ok(())
}

/// `-q`: xCAT's lines for each node that has an entry.
async fn query_nodes(paths: &DhcpPaths, nodes: &[String], out: &Responder) -> HandlerResult {
    for n in nodes.iter().filter(|n| conf::safe_node_name(n)) {
        if let Some(text) = files::read_hosts(paths, n) {
            for line in conf::query_lines(n, &text) {
                out.data(line).await?;
            }
        }
    }
    Ok(())
}

/// `-a`: the nodes the mac table names (its group rows expanded).
async fn mac_table_nodes(ctx: &Context) -> Result<Vec<String>, HandlerError> {
    let keys: Vec<String> = ctx
        .db
        .rows("mac")
        .await?
        .into_iter()
        .filter_map(|r| r.get("node").cloned())
        .collect();
    let known: std::collections::HashSet<String> = ctx.db.all_nodes().await?.into_iter().collect();
    let mut nodes: Vec<String> = Vec::new();
    for k in keys {
        if known.contains(&k) {
            nodes.push(k);
        } else {
            nodes.extend(ctx.db.nodes_in_group(&k).await?);
        }
    }
    nodes.sort();
    nodes.dedup();
    Ok(nodes)
}
