//! `tabdump [table]`: a table in xCAT's CSV format, or the list of tables;
//! `-d` shows descriptions instead (each table's, or a table's columns',
//! from [`xcat_db::describe`]), laid out as xCAT's `tabdump -d`;
//! `-w attr==value` (repeatable; `!=`, `=~`, `!~` with SQL LIKE patterns,
//! and `>`, `>=`, `<`, `<=`) keeps the rows that pass. `-f FILE` is the client's to write (xcatclient takes it off the
//! request and writes the answer there): the daemon runs as root, and a
//! user allowed to read a table must not be able to write a file anywhere
//! on the server, so a request that still carries `-f` is refused.

use xcat_db::objects::Where;
use xcat_db::{csv, Attrs, Db};
use xcat_plugin::args::Syntax;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

const SYNTAX: Syntax = Syntax::new(
    "tabdump",
    "Usage: tabdump [-d] [table]
       tabdump [table]
       tabdump [-f filename] [-w attr==val [-w attr=~val] ...] table
       tabdump [-?|-h|--help]
       tabdump [-v|--version]",
);

#[derive(Debug, clap::Parser)]
struct Args {
    /// The file the client writes; refused here (see the module comment).
    #[arg(short = 'f')]
    file: Option<String>,
    #[arg(short = 'w')]
    wheres: Vec<String>,
    /// `-d`: descriptions, not values.
    #[arg(short = 'd')]
    describe: bool,
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
        if args.file.is_some() && args.table.is_none() {
            return Err(HandlerError::Failed(
                "table name missing from the command input.".into(),
            ));
        }
        if args.describe {
            // As xCAT's: descriptions go to the output, whatever -f and -w
            // say (the client leaves `-f` on a `-d` request and writes no file).
            return describe(args.table.as_deref(), &out).await;
        }
        if args.file.is_some() {
            return Err(HandlerError::Failed(
                "tabdump -f: the client writes the file (xcatclient does); this daemon writes no \
                 file for a request. Use xcatclient's tabdump, or redirect the output: \
                 tabdump TABLE > FILE"
                    .into(),
            ));
        }
        let Some(table) = args.table else {
            if !args.wheres.is_empty() {
                return Err(SYNTAX.error("-w needs a table"));
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
            .map(|w| Where::parse_row(w).map_err(HandlerError::Failed))
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
        for (i, line) in text.lines().enumerate() {
            if i % 1024 == 0 {
                ctx.check_cancelled()?;
            }
            out.data(line).await?;
        }
        Ok(())
    }
}

/// `tabdump -d [table]`: `name:<tab(s)>description` lines, the tables'
/// sorted by name, or one table's columns in its order.
async fn describe(table: Option<&str>, out: &Responder) -> HandlerResult {
    use xcat_db::describe::{column_description, described_line, table_description};
    let lines: Vec<String> = match table {
        None => Db::tables()
            .iter()
            .map(|t| described_line(t, table_description(t).unwrap_or_default()))
            .collect(),
        Some(t) => {
            let Ok(cols) = Db::columns(t) else {
                return Err(HandlerError::Failed(format!("table {t} does not exist.")));
            };
            cols.iter()
                .map(|c| described_line(c, column_description(t, c).unwrap_or_default()))
                .collect()
        }
    };
    for l in lines {
        out.data(l).await?;
    }
    Ok(())
}

fn row_attrs(cols: &[&str], row: &[Option<String>]) -> Attrs {
    cols.iter()
        .zip(row)
        .filter_map(|(c, v)| v.clone().map(|v| (c.to_string(), v)))
        .collect()
}
