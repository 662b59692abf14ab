//! The small table tools: `gettab` (values by any key; as xCAT's, a key
//! column the table lacks is an error, a shown one prints nothing), `tabgrep` (the
//! tables holding rows for a node) and `tabprune` (remove records).

use xcat_db::{csv, Db};
use xcat_plugin::args::Syntax;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

const GETTAB: Syntax = Syntax::new(
    "gettab",
    "Usage: gettab [-H|--with-fieldname] key=value,...  table.attribute ...
       gettab [-?|-h|--help]
       gettab [-v|--version]",
);

const TABGREP: Syntax = Syntax::new(
    "tabgrep",
    "Usage: tabgrep nodename
       tabgrep [-?|-h|--help]
       tabgrep [-v|--version]",
);

const TABPRUNE: Syntax = Syntax::new(
    "tabprune",
    "Usage: tabprune tablename -a [-V]
       tabprune eventlog|auditlog [-V] [-i recid | -n number | -p percentage | -a]
       tabprune [-h|--help] [-v|--version]",
);

#[derive(Debug, clap::Parser)]
struct GettabArgs {
    #[arg(short = 'H', long = "with-fieldname")]
    with_fieldname: bool,
    keys: String,
    attrs: Vec<String>,
}

#[derive(Debug, clap::Parser)]
struct TabgrepArgs {
    node: String,
}

#[derive(Debug, clap::Parser)]
struct TabpruneArgs {
    table: String,
    #[arg(short = 'a')]
    all: bool,
    #[arg(short = 'n')]
    number: Option<usize>,
    #[arg(short = 'p')]
    percent: Option<usize>,
    #[arg(short = 'i')]
    recid: Option<i64>,
    #[arg(short = 'V')]
    verbose: bool,
}

pub struct Gettab;
pub struct Tabgrep;
pub struct Tabprune;

fn no_table(table: &str) -> HandlerError {
    HandlerError::Failed(format!("No such table: {table}"))
}

#[async_trait]
impl Handler for Gettab {
    fn commands(&self) -> &'static [&'static str] {
        &["gettab"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let Some(args) = GETTAB.read::<GettabArgs>(req.args(), &out).await? else {
            return Ok(());
        };
        let mut keys = Vec::new();
        for part in args.keys.split(',') {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                GETTAB.error(format!("malformed key '{part}': expected key=value"))
            })?;
            keys.push((k.to_string(), v.to_string()));
        }
        if args.attrs.is_empty() {
            return Err(GETTAB.error("No table.attribute given"));
        }
        let named = args.with_fieldname || args.attrs.len() > 1;
        for spec in &args.attrs {
            let (table, col) = spec.split_once('.').ok_or_else(|| {
                GETTAB.error(format!("malformed '{spec}': expected table.attribute"))
            })?;
            let cols = Db::columns(table).map_err(|_| no_table(table))?;
            if let Some((k, _)) = keys.iter().find(|(k, _)| !cols.contains(&k.as_str())) {
                return Err(HandlerError::Failed(format!("Unknown key {k} to {table}")));
            }
            // As xCAT's gettab: a column the table lacks is a value never
            // set, so nothing is printed for it.
            if !cols.contains(&col) {
                continue;
            }
            let rows = ctx.db.rows(table).await?;
            let hit = rows.iter().find(|r| {
                keys.iter()
                    .all(|(k, v)| r.get(k).map(String::as_str) == Some(v.as_str()))
            });
            if let Some(v) = hit.and_then(|r| r.get(col)) {
                out.data(if named {
                    format!("{spec}: {v}")
                } else {
                    v.clone()
                })
                .await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Handler for Tabgrep {
    fn commands(&self) -> &'static [&'static str] {
        &["tabgrep"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let Some(args) = TABGREP.read::<TabgrepArgs>(req.args(), &out).await? else {
            return Ok(());
        };
        let nodes = ctx.db.nodes().await?;
        let Some(groups) = nodes.groups_of(&args.node) else {
            return Err(HandlerError::Failed(format!(
                "Invalid nodes and/or groups in noderange: {}",
                args.node
            )));
        };
        let mut names: Vec<String> = vec![args.node.clone()];
        names.extend(xcat_db::objects::split_list(groups));
        for t in xcat_db::schema::TABLES.iter().filter(|t| t.is_node_keyed()) {
            let rows = ctx.db.rows(t.name).await?;
            if rows
                .iter()
                .any(|r| r.get("node").is_some_and(|n| names.contains(n)))
            {
                out.data(t.name).await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Handler for Tabprune {
    fn commands(&self) -> &'static [&'static str] {
        &["tabprune"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let Some(args) = TABPRUNE.read::<TabpruneArgs>(req.args(), &out).await? else {
            return Ok(());
        };
        let cols = Db::columns(&args.table).map_err(|_| no_table(&args.table))?;
        let logs = matches!(args.table.as_str(), "eventlog" | "auditlog");
        let chosen = [
            args.all,
            args.number.is_some(),
            args.percent.is_some(),
            args.recid.is_some(),
        ];
        if chosen.iter().filter(|c| **c).count() != 1 {
            return Err(TABPRUNE.error("Give one of -a, -i, -n, -p"));
        }
        if !args.all && !logs {
            return Err(TABPRUNE.error(
                "-i, -n and -p are for the eventlog and auditlog tables; other tables take -a",
            ));
        }
        let rows = ctx.db.all_rows(&args.table).await?;
        let pruned = match (args.number, args.percent, args.recid) {
            _ if args.all => rows.len(),
            (Some(n), _, _) => n.min(rows.len()),
            (_, Some(p), _) => rows.len() * p.min(100) / 100,
            (_, _, Some(id)) => rows
                .iter()
                .take_while(|r| {
                    r[0].as_deref()
                        .and_then(|v| v.parse::<i64>().ok())
                        .is_some_and(|v| v < id)
                })
                .count(),
            _ => 0,
        };
        let (gone, kept) = rows.split_at(pruned);
        ctx.db
            .restore(&args.table, &csv::format_table(cols, kept), false)
            .await?;
        if args.verbose {
            for line in csv::format_table(cols, gone).lines() {
                out.data(line).await?;
            }
        } else {
            out.data(format!("tabprune of {} complete.", args.table))
                .await?;
        }
        Ok(())
    }
}
