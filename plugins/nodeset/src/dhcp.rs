//! The DHCP step after the files: xCAT's nodeset ends with the sub-request
//! `makedhcp <good nodes>` (`makedhcp -d <nodes>` for `offline`) unless
//! `site.dhcpsetup` is off. Kept apart: makedhcp is its own command, and
//! this is the one place that knows the request's shape.

use xcat_plugin::{ClientGone, Context, Request, Responder};
use xcatd_proto::Shown;

/// The sub-request for `nodes`: `makedhcp [-d]`, the nodes as its noderange.
pub fn request(nodes: &[String], remove: bool) -> Request {
    let args = if remove {
        vec!["-d".to_string()]
    } else {
        Vec::new()
    };
    let mut req = Request::new("makedhcp", args);
    req.noderange = Some(nodes.join(","));
    req
}

/// Run makedhcp for `nodes` and pass its responses on. A daemon without
/// makedhcp gets one warning line and nodeset still succeeds. Returns the
/// OR of makedhcp's error codes.
pub async fn run(
    ctx: &Context,
    out: &Responder,
    nodes: &[String],
    remove: bool,
) -> Result<i32, ClientGone> {
    if nodes.is_empty() {
        return Ok(0);
    }
    if !ctx.dispatcher.commands().iter().any(|c| c == "makedhcp") {
        out.warning(not_served()).await?;
        return Ok(0);
    }
    let mut sub = ctx.sub_request(request(nodes, remove));
    let mut code = 0;
    while let Some(r) = sub.next().await {
        let unsupported = r.shown().any(
            |s| matches!(s, Shown::Error(e) if e.starts_with("Unsupported request: makedhcp")),
        );
        if unsupported {
            out.warning(not_served()).await?;
            continue;
        }
        code |= r.errorcode();
        out.send(r).await?;
    }
    Ok(code)
}

fn not_served() -> &'static str {
    "makedhcp is not served by this daemon: the DHCP server was not updated (run makedhcp, or set site.dhcpsetup=n)"
}
