//! `tabdump [table]`: a table in xCAT's CSV format, or the list of tables;
//! `-w attr==value` (repeatable; `!=`, `=~`, `!~` too) keeps the rows that
//! pass, `-f FILE` writes the CSV to a file on the server instead.

use std::path::{Path, PathBuf};

use xcat_db::objects::Where;
use xcat_db::{csv, Attrs, Db};
use xcat_plugin::args::Syntax;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

const SYNTAX: Syntax = Syntax::new(
    "tabdump",
    "Usage: tabdump [table]
       tabdump [-f filename] [-w attr==val [-w attr=~val] ...] table
       tabdump [-?|-h|--help]
       tabdump [-v|--version]",
);

#[derive(Debug, clap::Parser)]
struct Args {
    /// Write the CSV to this file (relative to the client's directory).
    #[arg(short = 'f')]
    file: Option<String>,
    #[arg(short = 'w')]
    wheres: Vec<String>,
    /// The table to dump; without it, the list of tables.
    table: Option<String>,
}

pub struct Tabdump;

#[async_trait]
impl Handler for Tabdump {
    fn commands(&self) -> &'static [&'static str] {
        &["tabdump"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let Some(args) = SYNTAX.read::<Args>(req.args(), &out).await? else {
            return Ok(());
        };
        let Some(table) = args.table else {
            if args.file.is_some() || !args.wheres.is_empty() {
                return Err(SYNTAX.error("-f and -w need a table"));
            }
            for t in Db::tables() {
                out.data(t).await?;
            }
            return Ok(());
        };
        let Ok(cols) = Db::columns(&table) else {
            return Err(HandlerError::Failed(format!(
                "No such table: {table} (tabdump without arguments lists the tables)"
            )));
        };
        let filters: Vec<Where> = args
            .wheres
            .iter()
            .map(|w| Where::parse(w).map_err(HandlerError::Failed))
            .collect::<Result<_, _>>()?;
        let text = if filters.is_empty() {
            ctx.db.dump(&table).await?
        } else {
            let rows = ctx.db.all_rows(&table).await?;
            let kept: Vec<Vec<Option<String>>> = rows
                .into_iter()
                .filter(|r| {
                    let a = row_attrs(cols, r);
                    filters.iter().all(|f| f.matches(&a))
                })
                .collect();
            csv::format_table(cols, &kept)
        };
        if let Some(f) = args.file {
            let path = in_cwd(req.request.cwd.as_deref(), &f);
            return std::fs::write(&path, text).map_err(|e| {
                HandlerError::Failed(format!("Cannot write {}: {e}", path.display()))
            });
        }
        for (i, line) in text.lines().enumerate() {
            if i % 1024 == 0 {
                ctx.check_cancelled()?;
            }
            out.data(line).await?;
        }
        Ok(())
    }
}

fn row_attrs(cols: &[&str], row: &[Option<String>]) -> Attrs {
    cols.iter()
        .zip(row)
        .filter_map(|(c, v)| v.clone().map(|v| (c.to_string(), v)))
        .collect()
}

/// `file` resolved against the client's working directory when relative.
fn in_cwd(cwd: Option<&str>, file: &str) -> PathBuf {
    match cwd {
        Some(d) if Path::new(file).is_relative() => Path::new(d).join(file),
        _ => PathBuf::from(file),
    }
}
