//! `tabdump [table]`: a table in xCAT's CSV format, or the list of tables.

use xcat_db::Db;
use xcat_plugin::args::Syntax;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

const SYNTAX: Syntax = Syntax::new(
    "tabdump",
    "Usage: tabdump [table]
       tabdump [-?|-h|--help]
       tabdump [-v|--version]",
);

#[derive(Debug, clap::Parser)]
struct Args {
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
            for t in Db::tables() {
                out.data(t).await?;
            }
            return Ok(());
        };
        if Db::columns(&table).is_err() {
            return Err(HandlerError::Failed(format!(
                "No such table: {table} (tabdump without arguments lists the tables)"
            )));
        }
        let text = ctx.db.dump(&table).await?;
        for (i, line) in text.lines().enumerate() {
            if i % 1024 == 0 {
                ctx.check_cancelled()?;
            }
            out.data(line).await?;
        }
        Ok(())
    }
}
