//! `tabrestore [-a] [-t table] <file.csv>`: replace (or with `-a`, extend) a
//! table from a `tabdump` file. The client cannot send files as such: it sends
//! the file's contents as the request's `stdin`; the path argument only names
//! the table (its base name without `.csv`) unless `-t` does.

use xcat_db::{Db, DbError};
use xcat_plugin::args::Syntax;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

const SYNTAX: Syntax = Syntax::new(
    "tabrestore",
    "Usage: tabrestore [-a|--addrows] [-t|--table table] <tablename>.csv
       tabrestore [-?|-h|--help]
       tabrestore [-v|--version]
  -a        add the rows to the table instead of replacing its contents
  -t table  restore into this table (default: the file name without .csv)",
);

#[derive(Debug, clap::Parser)]
struct Args {
    #[arg(short = 'a', long = "addrows")]
    append: bool,
    #[arg(short = 't', long = "table")]
    table: Option<String>,
    /// The file the client read; its name names the table unless `-t` does.
    file: Option<String>,
}

pub struct Tabrestore;

/// The table a file path names: its base name without `.csv`.
fn table_from_path(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.strip_suffix(".csv").unwrap_or(base)
}

#[async_trait]
impl Handler for Tabrestore {
    fn commands(&self) -> &'static [&'static str] {
        &["tabrestore"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let Some(Args {
            append,
            table,
            file,
        }) = SYNTAX.read::<Args>(req.args(), &out).await?
        else {
            return Ok(());
        };
        let table = match (table, &file) {
            (Some(t), _) => t,
            (None, Some(f)) => table_from_path(f).to_string(),
            (None, None) => return Err(SYNTAX.error("No file given")),
        };
        if Db::columns(&table).is_err() {
            return Err(HandlerError::Failed(format!(
                "No such table: {table} (name the file <table>.csv or use -t <table>)"
            )));
        }
        let Some(text) = req.request.stdin.as_deref() else {
            return Err(HandlerError::Failed(format!(
                "tabrestore received no file contents for table {table}: the client must send \
                 the CSV file as the request's stdin"
            )));
        };
        let name = file.as_deref().unwrap_or("input");
        ctx.check_cancelled()?;
        match ctx.db.restore(&table, text, append).await {
            Ok(n) => {
                tracing::info!(table = %table, rows = n, append, "tabrestore");
                Ok(())
            }
            Err(DbError::Restore { line, message }) => Err(HandlerError::Failed(format!(
                "{name} line {line}: {message}; table {table} was not changed"
            ))),
            Err(e) => Err(HandlerError::Failed(format!(
                "restoring table {table} failed: {e}; table {table} was not changed"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::table_from_path;

    #[test]
    fn table_names_from_paths() {
        assert_eq!(table_from_path("/tmp/site.csv"), "site");
        assert_eq!(table_from_path("nodelist.csv"), "nodelist");
        assert_eq!(table_from_path("dir/hosts"), "hosts");
    }
}
