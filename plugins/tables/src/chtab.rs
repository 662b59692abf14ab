//! `chtab key=value[,key=value] table.col=value ...`: insert or update a row;
//! `chtab -d key=value table ...`: delete rows.

use std::collections::BTreeMap;

use xcat_db::Db;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

use crate::args::{args, is_help, send_usage, usage_text};

const USAGE: &[&str] = &[
    "Usage: chtab keycolname=keyvalue[,keycolname=keyvalue...] tablename.colname=newvalue [tablename.colname=newvalue...]",
    "       chtab -d keycolname=keyvalue[,keycolname=keyvalue...] tablename [tablename...]",
    "       chtab [-?|-h|--help]",
    "  e.g. chtab key=xcatdport site.value=3001",
    "       chtab node=compute nodetype.os=rhels9 nodetype.arch=x86_64",
    "       chtab -d node=node01 hosts",
];

pub struct Chtab;

/// `k=v,k2=v2` -> pairs.
fn parse_keys(spec: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for part in spec.split(',') {
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!(
                "malformed key '{part}': expected keycolname=keyvalue"
            ));
        };
        if k.is_empty() || k.contains('.') {
            return Err(format!(
                "malformed key '{part}': expected keycolname=keyvalue"
            ));
        }
        if v.is_empty() {
            return Err(format!("empty value for key {k}"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

fn check_keys(table: &str, keys: &[(String, String)]) -> Result<(), HandlerError> {
    let cols =
        Db::columns(table).map_err(|_| HandlerError::Failed(format!("No such table: {table}")))?;
    for (k, _) in keys {
        if !cols.contains(&k.as_str()) {
            return Err(HandlerError::Failed(format!(
                "{k} is not a column of table {table} (its columns: {})",
                cols.join(",")
            )));
        }
    }
    Ok(())
}

#[async_trait]
impl Handler for Chtab {
    fn commands(&self) -> &'static [&'static str] {
        &["chtab"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let a = args(&req);
        let usage_err = |msg: &str| HandlerError::Usage(format!("{msg}\n{}", usage_text(USAGE)));
        if a.iter().any(|x| is_help(x)) {
            send_usage(&out, USAGE).await?;
            return Ok(());
        }
        let mut delete = false;
        let mut rest: Vec<&str> = Vec::new();
        for x in &a {
            match x.as_str() {
                "-d" | "--delete" => delete = true,
                o if o.starts_with('-') => {
                    return Err(usage_err(&format!("Unsupported option {o}")))
                }
                o => rest.push(o),
            }
        }
        let Some((keyspec, targets)) = rest.split_first() else {
            return Err(usage_err("No key given"));
        };
        let keys = parse_keys(keyspec).map_err(|m| usage_err(&m))?;
        if targets.is_empty() {
            return Err(usage_err(if delete {
                "No table given"
            } else {
                "No table.column=value given"
            }));
        }
        let key_refs: Vec<(&str, &str)> =
            keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

        if delete {
            for t in targets {
                if t.contains('=') || t.contains('.') {
                    return Err(usage_err(
                        ". and = are not valid in delete mode: give table names",
                    ));
                }
                check_keys(t, &keys)?;
            }
            for t in targets {
                let n = ctx.db.delete(t, &key_refs).await?;
                tracing::info!(table = %t, rows = n, "chtab -d");
            }
            return Ok(());
        }

        // Group assignments by table, keeping their order.
        let mut by_table: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for t in targets {
            let Some((lhs, value)) = t.split_once('=') else {
                return Err(usage_err(&format!(
                    "malformed argument '{t}': expected table.column=value"
                )));
            };
            let Some((table, col)) = lhs.split_once('.') else {
                return Err(usage_err(&format!(
                    "malformed argument '{t}': expected table.column=value"
                )));
            };
            let cols = Db::columns(table)
                .map_err(|_| HandlerError::Failed(format!("No such table: {table}")))?;
            if !cols.contains(&col) {
                return Err(HandlerError::Failed(format!(
                    "{table}.{col} is not a valid table.column (columns of {table}: {})",
                    cols.join(",")
                )));
            }
            by_table
                .entry(table.to_string())
                .or_default()
                .push((col.to_string(), value.to_string()));
        }
        for table in by_table.keys() {
            check_keys(table, &keys)?;
        }
        for (table, vals) in &by_table {
            let v: Vec<(&str, &str)> = vals.iter().map(|(c, v)| (c.as_str(), v.as_str())).collect();
            ctx.db.upsert(table, &key_refs, &v).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_keys;

    #[test]
    fn keys() {
        assert_eq!(
            parse_keys("key=system,username=root").unwrap(),
            vec![
                ("key".into(), "system".into()),
                ("username".into(), "root".into())
            ]
        );
        assert_eq!(
            parse_keys("node=a=b").unwrap(),
            vec![("node".into(), "a=b".into())]
        );
        assert!(parse_keys("site.value=1").is_err());
        assert!(parse_keys("node=").is_err());
        assert!(parse_keys("node").is_err());
    }
}
