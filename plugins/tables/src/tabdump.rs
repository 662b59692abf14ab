//! `tabdump [table]`: a table in xCAT's CSV format, or the list of tables.

use xcat_db::Db;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

use crate::args::{args, is_help, send_usage, usage_text};

const USAGE: &[&str] = &["Usage: tabdump [table]", "       tabdump [-?|-h|--help]"];

pub struct Tabdump;

#[async_trait]
impl Handler for Tabdump {
    fn commands(&self) -> &'static [&'static str] {
        &["tabdump"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let a = args(&req);
        if a.iter().any(|x| is_help(x)) {
            send_usage(&out, USAGE).await?;
            return Ok(());
        }
        if let Some(bad) = a.iter().find(|x| x.starts_with('-')) {
            return Err(HandlerError::Usage(format!(
                "Unsupported option {bad}\n{}",
                usage_text(USAGE)
            )));
        }
        match a.as_slice() {
            [] => {
                for t in Db::tables() {
                    out.data(t).await?;
                }
                Ok(())
            }
            [table] => {
                if Db::columns(table).is_err() {
                    return Err(HandlerError::Failed(format!(
                        "No such table: {table} (tabdump without arguments lists the tables)"
                    )));
                }
                let text = ctx.db.dump(table).await?;
                for (i, line) in text.lines().enumerate() {
                    if i % 1024 == 0 {
                        ctx.check_cancelled()?;
                    }
                    out.data(line).await?;
                }
                Ok(())
            }
            _ => Err(HandlerError::Usage(format!(
                "tabdump takes one table name\n{}",
                usage_text(USAGE)
            ))),
        }
    }
}
