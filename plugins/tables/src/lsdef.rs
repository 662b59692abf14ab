//! `lsdef -t osimage [-l] [name[,name...]]`: show image definitions (the
//! `osimage` row merged with its `linuximage` row), in xCAT's stanza style:
//! `Object name: NAME` followed by `    attr=value` lines sorted by attribute.
//! Without names (and without `-l`) it lists `NAME  (osimage)` lines.

use std::collections::BTreeMap;

use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

use crate::args::{args, is_help, send_usage, usage_text};

const USAGE: &[&str] = &[
    "Usage: lsdef -t osimage [-l|--long] [-o] [name[,name...]]",
    "       lsdef [-?|-h|--help]",
    "  Only object type osimage is served by this daemon.",
];

pub struct Lsdef;

/// Every attribute of an image: osimage columns, then linuximage columns
/// (`comments` shown as `usercomment`, as xCAT does).
async fn image_attrs(
    ctx: &Context,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>, HandlerError> {
    let Some(os) = ctx.db.get_row("osimage", name).await? else {
        return Ok(None);
    };
    let mut attrs = BTreeMap::new();
    let linux = ctx
        .db
        .get_row("linuximage", name)
        .await?
        .unwrap_or_default();
    for (k, v) in linux.into_iter().chain(os) {
        match k.as_str() {
            "imagename" | "disable" => {}
            "comments" => {
                attrs.insert("usercomment".to_string(), v);
            }
            _ => {
                attrs.insert(k, v);
            }
        }
    }
    Ok(Some(attrs))
}

#[async_trait]
impl Handler for Lsdef {
    fn commands(&self) -> &'static [&'static str] {
        &["lsdef"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let a = args(&req);
        let usage_err = |msg: &str| HandlerError::Usage(format!("{msg}\n{}", usage_text(USAGE)));
        let mut objtype: Option<String> = None;
        let mut long = false;
        let mut names: Vec<String> = Vec::new();
        let mut it = a.iter();
        while let Some(x) = it.next() {
            match x.as_str() {
                h if is_help(h) => {
                    send_usage(&out, USAGE).await?;
                    return Ok(());
                }
                "-t" | "--type" => match it.next() {
                    Some(t) => objtype = Some(t.clone()),
                    None => return Err(usage_err("-t needs an object type")),
                },
                "-o" | "--object" => match it.next() {
                    Some(o) => {
                        names.extend(o.split(',').filter(|s| !s.is_empty()).map(str::to_string))
                    }
                    None => return Err(usage_err("-o needs object names")),
                },
                "-l" | "--long" => long = true,
                o if o.starts_with('-') => {
                    return Err(usage_err(&format!("Unsupported option {o}")))
                }
                n => names.extend(n.split(',').filter(|s| !s.is_empty()).map(str::to_string)),
            }
        }
        // Names given as the noderange by a client that treats lsdef as a
        // noderange command arrive as nodes: accept them too.
        names.extend(req.nodes.iter().cloned());
        match objtype.as_deref() {
            Some("osimage") => {}
            Some(t) => {
                return Err(HandlerError::Failed(format!(
                    "Object type '{t}' is not supported by this daemon; use lsdef -t osimage"
                )))
            }
            None => return Err(usage_err("Give the object type: lsdef -t osimage")),
        }

        if names.is_empty() {
            let rows = ctx.db.rows("osimage").await?;
            let mut all: Vec<String> = rows
                .into_iter()
                .filter_map(|r| r.get("imagename").cloned())
                .collect();
            all.sort();
            if all.is_empty() {
                out.info("Could not find any object definitions to display.")
                    .await?;
                return Ok(());
            }
            if !long {
                for n in &all {
                    out.data(format!("{n}  (osimage)")).await?;
                }
                return Ok(());
            }
            names = all;
        }

        let mut missing = Vec::new();
        for name in &names {
            ctx.check_cancelled()?;
            match image_attrs(&ctx, name).await? {
                Some(attrs) => {
                    out.data(format!("Object name: {name}")).await?;
                    for (k, v) in attrs {
                        out.data(format!("    {k}={v}")).await?;
                    }
                }
                None => missing.push(name.clone()),
            }
        }
        if !missing.is_empty() {
            let msgs: Vec<String> = missing
                .iter()
                .map(|n| format!("Could not find an object named '{n}' of type 'osimage'."))
                .collect();
            return Err(HandlerError::Failed(msgs.join("\n")));
        }
        Ok(())
    }
}
