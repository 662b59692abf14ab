//! `lsxcatd`: what this daemon is and what it serves. The smallest handler,
//! kept as the example of the plugin interface.
#![forbid(unsafe_code)]

use std::sync::Arc;

use xcat_plugin::args::{Syntax, VersionFlag, VERSION};
use xcat_plugin::{async_trait, Context, Handler, HandlerRequest, HandlerResult, Responder};

/// The command's name and usage. Its `-v` is one item of its report (it
/// combines with `-d`), so the shared version flag is not added.
const SYNTAX: Syntax = Syntax::new(
    "lsxcatd",
    "Usage: lsxcatd [-v|--version] [-d|--database] [-a|--all] [-h|--help]",
)
.version_flag(VersionFlag::Own);

/// What to report; at least one is needed.
#[derive(Debug, clap::Parser)]
struct Args {
    #[arg(short = 'v', long = "version")]
    version: bool,
    #[arg(short = 'd', long = "database")]
    database: bool,
    /// Everything: version, database and the command list.
    #[arg(short = 'a', long = "all")]
    all: bool,
}

pub struct LsXcatd;

pub fn handlers() -> Vec<Arc<dyn Handler>> {
    vec![Arc::new(LsXcatd)]
}

#[async_trait]
impl Handler for LsXcatd {
    fn commands(&self) -> &'static [&'static str] {
        &["lsxcatd"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let Some(args) = SYNTAX.read::<Args>(req.args(), &out).await? else {
            return Ok(());
        };
        let version = args.version || args.all;
        let database = args.database || args.all;
        if !(version || database) {
            return Err(SYNTAX.error("lsxcatd needs an option"));
        }
        if version {
            out.data(format!("Version {VERSION} (xcatd-rs)")).await?;
        }
        if database {
            let kind = match ctx.db.backend() {
                xcat_plugin::Backend::Sqlite => "SQLite",
                xcat_plugin::Backend::Postgres => "PostgreSQL",
            };
            out.data(format!("dbengine={kind}")).await?;
        }
        if args.all {
            out.data(format!("commands={}", ctx.dispatcher.commands().join(",")))
                .await?;
        }
        Ok(())
    }
}
