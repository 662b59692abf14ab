//! Small helpers shared by the handlers.

use xcat_plugin::{HandlerRequest, Responder};

/// The request's arguments; a lone empty argument (what xCAT's no-noderange
/// client sends when called without arguments) means none.
pub fn args(req: &HandlerRequest) -> Vec<String> {
    let a = req.args();
    if a.len() == 1 && a[0].is_empty() {
        Vec::new()
    } else {
        a.to_vec()
    }
}

/// Is this a help flag?
pub fn is_help(a: &str) -> bool {
    matches!(a, "-h" | "--help" | "-?")
}

/// Send usage lines as `data` (used for `-h`, which is not an error).
pub async fn send_usage(out: &Responder, usage: &[&str]) -> Result<(), xcat_plugin::ClientGone> {
    for l in usage {
        out.data(*l).await?;
    }
    Ok(())
}

/// Usage text joined for an error message.
pub fn usage_text(usage: &[&str]) -> String {
    usage.join("\n")
}
