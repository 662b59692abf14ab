//! `lsxcatd`: what this daemon is and what it serves. The smallest handler,
//! kept as the example of the plugin interface.
#![forbid(unsafe_code)]

use std::sync::Arc;

use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

const USAGE: &str = "Usage: lsxcatd [-v|--version] [-d|--database] [-a|--all] [-h|--help]";

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
        let (mut version, mut commands, mut database) = (false, false, false);
        for a in req.args() {
            match a.as_str() {
                "-v" | "--version" => version = true,
                "-d" | "--database" => database = true,
                "-a" | "--all" => (version, commands, database) = (true, true, true),
                "-h" | "--help" => {
                    out.info(USAGE).await?;
                    return Ok(());
                }
                other => {
                    return Err(HandlerError::Usage(format!(
                        "unknown option {other}\n{USAGE}"
                    )))
                }
            }
        }
        if !(version || commands || database) {
            return Err(HandlerError::Usage(USAGE.into()));
        }
        if version {
            out.data(format!("Version {} (xcatd-rs)", env!("CARGO_PKG_VERSION")))
                .await?;
        }
        if database {
            let kind = match ctx.db.backend() {
                xcat_plugin::Backend::Sqlite => "SQLite",
                xcat_plugin::Backend::Postgres => "PostgreSQL",
            };
            out.data(format!("dbengine={kind}")).await?;
        }
        if commands {
            out.data(format!("commands={}", ctx.dispatcher.commands().join(",")))
                .await?;
        }
        Ok(())
    }
}
