//! One nodeset request, state by state: read the tables once for the whole
//! noderange, plan every node, write every file on a blocking thread,
//! record `chain.currstate`, report, then update DHCP.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use xcat_jobkit::blocking;
use xcat_plugin::{Context, HandlerError, NodeRecord, Responder, Response};

use crate::files::{self, Grub2Links};
use crate::image::{self, Image, ImageError, Prepared};
use crate::nodes::{NodeTables, Resolver};
use crate::plan::{Ctx, Loader, Plan};
use crate::site::Site;
use crate::state::State;
use crate::{dhcp, Options};

/// How one node ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Its state (what `<node>: <state>` prints).
    Done(String),
    /// The error, and the bootloader it was for when known.
    Failed(String, Option<Loader>),
}

/// The nodes of the request, how each ended and what it should know (same order).
pub struct Report {
    pub nodes: Vec<String>,
    pub outcomes: Vec<Outcome>,
    /// Warnings of a node, whatever its outcome (too little RAM for its image).
    pub warnings: Vec<Vec<String>>,
}

impl Report {
    fn new(nodes: Vec<String>) -> Report {
        let outcomes = vec![Outcome::Failed("not processed".into(), None); nodes.len()];
        let warnings = vec![Vec::new(); nodes.len()];
        Report {
            nodes,
            outcomes,
            warnings,
        }
    }

    pub fn good(&self) -> Vec<String> {
        self.nodes
            .iter()
            .zip(&self.outcomes)
            .filter(|(_, o)| matches!(o, Outcome::Done(_)))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

fn failed(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Failed(e.to_string())
}

/// Serve one state for `nodes`.
pub async fn run(
    state: State,
    opts: Options,
    nodes: Vec<String>,
    ctx: &Context,
    out: &Responder,
) -> Result<(), HandlerError> {
    let site = Site::read(ctx).await?;
    let mut report = Report::new(nodes);
    match &state {
        State::Stat => stat(&site, &mut report).await?,
        State::Genesis(word) => genesis(word, &mut report),
        State::Offline => offline(&site, &mut report, ctx).await?,
        State::Boot => boot(&site, &mut report, ctx).await?,
        State::Image(_) | State::OwnImage => {
            images(&state, opts, &site, &mut report, ctx, out).await?
        }
    }
    emit(&report, out).await?;
    if state.changes() && site.dhcp_setup && !matches!(state, State::Genesis(_)) {
        ctx.check_cancelled()?;
        dhcp::run(ctx, out, &report.good(), state == State::Offline).await?;
    }
    summary(&report, &site)
}

async fn stat(site: &Site, report: &mut Report) -> Result<(), HandlerError> {
    let (tftp, nodes) = (site.tftp_dir.clone(), report.nodes.clone());
    let states = blocking(move || {
        nodes
            .iter()
            .map(|n| files::read_state(&tftp, n))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(failed)?;
    report.outcomes = states.into_iter().map(Outcome::Done).collect();
    Ok(())
}

fn genesis(word: &str, report: &mut Report) {
    let msg = format!(
        "nodeset {word} boots the genesis kernel and initrd (xcat/genesis.kernel.<arch>, \
         xcat/genesis.fs.<arch>.gz), which this daemon does not ship; use osimage=<image>, boot or offline"
    );
    report.outcomes.fill(Outcome::Failed(msg, None));
}

async fn offline(site: &Site, report: &mut Report, ctx: &Context) -> Result<(), HandlerError> {
    let (tftp, nodes) = (site.tftp_dir.clone(), report.nodes.clone());
    let results = blocking(move || {
        let old = Grub2Links::scan(&tftp);
        let remove = |n: &String| files::remove_node(&tftp, n, &old).map_err(|e| e.to_string());
        nodes.iter().map(remove).collect::<Vec<_>>()
    })
    .await
    .map_err(failed)?;
    for (o, r) in report.outcomes.iter_mut().zip(results) {
        *o = match r {
            Ok(()) => Outcome::Done("offline".into()),
            Err(e) => Outcome::Failed(format!("Cannot remove the boot files: {e}"), None),
        };
    }
    record_states(ctx, report).await
}

async fn boot(site: &Site, report: &mut Report, ctx: &Context) -> Result<(), HandlerError> {
    let tables = NodeTables::read(&ctx.db, &report.nodes).await?;
    let resolver = Resolver::load();
    let pc = Ctx {
        site,
        tables: &tables,
        resolver: &resolver,
    };
    let mut plans = Vec::new();
    for (i, n) in report.nodes.iter().enumerate() {
        match pc.boot_state(n) {
            Ok((loader, plan)) => plans.push((i, n.clone(), loader, plan, "boot".to_string())),
            Err(e) => report.outcomes[i] = Outcome::Failed(e, None),
        }
    }
    write_plans(site, plans, report).await?;
    record_states(ctx, report).await
}

/// One node's files to write: its index, name, loader, files and state.
type Job = (usize, String, Loader, Plan, String);

/// Write every planned node's files (one blocking task), recording each
/// node's outcome.
async fn write_plans(site: &Site, jobs: Vec<Job>, report: &mut Report) -> Result<(), HandlerError> {
    let tftp = site.tftp_dir.clone();
    let results = blocking(move || write_all(&tftp, jobs))
        .await
        .map_err(failed)?;
    for (i, o) in results {
        report.outcomes[i] = o;
    }
    Ok(())
}

fn write_all(tftp: &std::path::Path, jobs: Vec<Job>) -> Vec<(usize, Outcome)> {
    if let Err(e) = files::make_dirs(tftp) {
        let msg = format!(
            "Cannot create the boot directories in {}: {e}",
            tftp.display()
        );
        return jobs
            .into_iter()
            .map(|(i, _, l, _, _)| (i, Outcome::Failed(msg.clone(), Some(l))))
            .collect();
    }
    let old = Grub2Links::scan(tftp);
    let grub2_dir = files::grub2_dir(tftp);
    jobs.into_iter()
        .map(|(i, node, loader, plan, state)| {
            let written = match &plan {
                Plan::Xnba(x) => files::write_xnba(tftp, &node, x).map(|()| true),
                Plan::Grub2(g) => files::write_grub2(tftp, &node, g, &old),
            };
            let o = match (written, &plan) {
                (Ok(true), _) => Outcome::Done(state),
                (Ok(false), Plan::Grub2(g)) => Outcome::Failed(
                    format!(
                        "Stopped the grub2 configuration for this node: \"{}\" does not exist (the configuration file is written; \
                         install a grub2 EFI binary there)",
                        grub2_dir.join(g.binary.as_deref().unwrap_or_default()).display()
                    ),
                    Some(loader),
                ),
                (Ok(false), _) => Outcome::Done(state),
                (Err(e), _) => Outcome::Failed(format!("Cannot write the boot files: {e}"), Some(loader)),
            };
            (i, o)
        })
        .collect()
}

/// `chain.currstate` of every node that is done, one statement group per state.
async fn record_states(ctx: &Context, report: &Report) -> Result<(), HandlerError> {
    let mut by_state: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (n, o) in report.nodes.iter().zip(&report.outcomes) {
        if let Outcome::Done(s) = o {
            by_state.entry(s).or_default().push(n.clone());
        }
    }
    for (state, nodes) in by_state {
        ctx.db
            .set_for_nodes("chain", &nodes, &[("currstate", state)])
            .await?;
    }
    Ok(())
}

/// Node records, a few hundred per response.
async fn emit(report: &Report, out: &Responder) -> Result<(), HandlerError> {
    for chunk in report
        .nodes
        .iter()
        .zip(&report.outcomes)
        .zip(&report.warnings)
        .collect::<Vec<_>>()
        .chunks(200)
    {
        let mut r = Response::new();
        for ((n, o), w) in chunk {
            let mut rec = match o {
                Outcome::Done(s) => NodeRecord {
                    name: n.to_string(),
                    data: vec![s.clone()],
                    ..Default::default()
                },
                Outcome::Failed(e, _) => NodeRecord {
                    name: n.to_string(),
                    errors: vec![e.clone()],
                    errorcode: Some(1),
                    ..Default::default()
                },
            };
            rec.warnings.clone_from(w);
            r.items.extend(Response::node(rec).items);
        }
        out.send(r).await?;
    }
    Ok(())
}

fn summary(report: &Report, site: &Site) -> Result<(), HandlerError> {
    let failed: Vec<&Outcome> = report
        .outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Failed(..)))
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    let mut kinds: Vec<&str> = failed
        .iter()
        .filter_map(|o| match o {
            Outcome::Failed(_, Some(l)) => Some(l.name()),
            _ => None,
        })
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    let what = if kinds.is_empty() {
        "boot".to_string()
    } else {
        kinds.join(" and ")
    };
    Err(HandlerError::Failed(format!(
        "Failed to generate {what} configurations for {} of {} node(s) on {}: see the node errors above",
        failed.len(),
        report.nodes.len(),
        site.server_name
    )))
}

/// The image states: resolve the image(s), set nodetype, copy the boot
/// files, plan and write every node, record chain.currstate.
async fn images(
    state: &State,
    opts: Options,
    site: &Site,
    report: &mut Report,
    ctx: &Context,
    out: &Responder,
) -> Result<(), HandlerError> {
    let tables = NodeTables::read(&ctx.db, &report.nodes).await?;
    let wanted = image_names(state, &tables, report);
    let mut loaded: HashMap<String, Result<Image, String>> = HashMap::new();
    for name in wanted.keys() {
        match Image::load(&ctx.db, name, &site.install_dir).await {
            Ok(i) => loaded.insert(name.clone(), Ok(i)),
            // osimage=<img>: a bad image fails the request, as in xCAT.
            Err(e) if matches!(state, State::Image(_)) => return Err(image_failure(e)),
            Err(e) => loaded.insert(name.clone(), Err(e.to_string())),
        };
    }
    // nodetype does not depend on the files nor they on it: the table
    // write runs while the boot files are found, planned and written.
    let updates = nodetype_updates(state, &report.nodes, &wanted, &loaded);
    let nodetype = set_nodetype(ctx, updates);
    let files = write_images(loaded, &wanted, &tables, opts, site, report, ctx, out);
    tokio::try_join!(nodetype, files)?;
    record_states(ctx, report).await
}

/// Copy each image's boot files, plan every node of it and write their files.
#[allow(clippy::too_many_arguments)]
async fn write_images(
    loaded: HashMap<String, Result<Image, String>>,
    wanted: &BTreeMap<String, Vec<usize>>,
    tables: &NodeTables,
    opts: Options,
    site: &Site,
    report: &mut Report,
    ctx: &Context,
    out: &Responder,
) -> Result<(), HandlerError> {
    let prepared = prepare_all(loaded, site, opts, out).await?;
    ctx.check_cancelled()?;
    let resolver = Resolver::load();
    let pc = Ctx {
        site,
        tables,
        resolver: &resolver,
    };
    let mut jobs = Vec::new();
    for (name, idx) in wanted {
        for &i in idx {
            let node = &report.nodes[i];
            let planned = match &prepared[name] {
                Ok(p) => pc
                    .image(node, p)
                    .map(|(l, plan)| (l, plan, p.image.currstate())),
                Err(e) => Err(e.clone()),
            };
            match planned {
                Ok((l, plan, s)) => jobs.push((i, node.clone(), l, plan, s)),
                Err(e) => report.outcomes[i] = Outcome::Failed(e, None),
            }
            if let (Ok(p), Some(mem)) = (&prepared[name], tables.get(node, "hwinv", "memory")) {
                report.warnings[i].extend(crate::ram::warning(name, &p.ram, mem));
            }
        }
    }
    write_plans(site, jobs, report).await
}

fn image_failure(e: ImageError) -> HandlerError {
    match e {
        ImageError::Db(e) => e.into(),
        e => HandlerError::Failed(e.to_string()),
    }
}

/// Image name -> indices of the nodes to boot it. Bare `osimage` nodes
/// without a usable `nodetype.provmethod` fail here.
fn image_names(
    state: &State,
    tables: &NodeTables,
    report: &mut Report,
) -> BTreeMap<String, Vec<usize>> {
    let mut m: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, n) in report.nodes.iter().enumerate() {
        let name = match state {
            State::Image(img) => Some(img.as_str()),
            _ => tables.get(n, "nodetype", "provmethod"),
        };
        match name {
            Some(img) => m.entry(img.to_string()).or_default().push(i),
            None => {
                report.outcomes[i] = Outcome::Failed(ImageError::NotAnImageName.to_string(), None)
            }
        }
    }
    m
}

/// One `nodetype` update: these nodes get these values.
type NodetypeUpdate = (Vec<String>, Vec<(&'static str, String)>);

/// nodetype.provmethod, os, arch and profile from each image, for its nodes.
fn nodetype_updates(
    state: &State,
    nodes: &[String],
    wanted: &BTreeMap<String, Vec<usize>>,
    loaded: &HashMap<String, Result<Image, String>>,
) -> Vec<NodetypeUpdate> {
    let mut updates = Vec::new();
    for (name, idx) in wanted {
        let Some(Ok(img)) = loaded.get(name) else {
            continue;
        };
        let names: Vec<String> = idx.iter().map(|&i| nodes[i].clone()).collect();
        let mut values = vec![
            ("os", img.osvers.clone()),
            ("arch", img.osarch.clone()),
            ("profile", img.profile.clone()),
        ];
        if matches!(state, State::Image(_)) {
            values.push(("provmethod", img.name.clone()));
        }
        updates.push((names, values));
    }
    updates
}

async fn set_nodetype(ctx: &Context, updates: Vec<NodetypeUpdate>) -> Result<(), HandlerError> {
    for (names, values) in updates {
        let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ctx.db.set_for_nodes("nodetype", &names, &values).await?;
    }
    Ok(())
}

/// Find and copy each image's files (once per image), reporting notes.
async fn prepare_all(
    loaded: HashMap<String, Result<Image, String>>,
    site: &Site,
    opts: Options,
    out: &Responder,
) -> Result<HashMap<String, Result<Prepared, String>>, HandlerError> {
    let mut prepared = HashMap::new();
    for (name, img) in loaded {
        let p = match img {
            Err(e) => Err(e),
            Ok(img) => {
                let tftp: PathBuf = site.tftp_dir.clone();
                let server = site.server_name.clone();
                let no_update = opts.no_update_initrd;
                let key = site.image_key.clone();
                blocking(move || image::prepare(img, &tftp, (&server, key.as_deref()), no_update))
                    .await
                    .map_err(failed)?
                    .map_err(|e| e.to_string())
            }
        };
        if let Ok(p) = &p {
            for n in &p.notes {
                out.info(n.clone()).await?;
            }
            for w in &p.warnings {
                out.warning(w.clone()).await?;
            }
        }
        prepared.insert(name, p);
    }
    Ok(prepared)
}
