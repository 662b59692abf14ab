//! The `auditlog` table: one row per request the daemon judged, as xCAT's
//! daemon writes it, unless `site.auditskipcmds` skips the command (its
//! first-start value `ALL` skips every one, so a new cluster logs nothing
//! until an admin empties it). Arguments are stored with secret values
//! replaced, since the table is readable by anyone `tabdump` is allowed to.

use sqlx::Row;

use crate::schema::{q, Backend, ROWID};
use crate::transaction::with_retries;
use crate::{Db, DbError};

/// One judged request.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    /// The identity the request was judged as.
    pub userid: Option<String>,
    /// The peer's host name or address.
    pub clientname: Option<String>,
    /// `<clienttype>` of the request (`cli` from xCAT's client).
    pub clienttype: Option<String>,
    pub command: String,
    pub noderange: Option<String>,
    pub args: Vec<String>,
    /// `Allowed` or `Denied`.
    pub status: &'static str,
}

/// What an argument's value is replaced with.
const REDACTED: &str = "xxxxxxxx";

/// Does `site.auditskipcmds` (a comma-separated list of commands and
/// `clienttype:<type>` items, or `ALL`) skip this request?
pub fn skipped(skipcmds: &str, command: &str, clienttype: Option<&str>) -> bool {
    skipcmds.split(',').map(str::trim).any(|item| {
        item.eq_ignore_ascii_case("all")
            || item == command
            || item
                .strip_prefix("clienttype:")
                .is_some_and(|t| Some(t) == clienttype)
    })
}

/// The arguments as stored: a value given to a secret attribute
/// (`bmcpassword=...`, `passwd.HMC=...`, `ipmi.password=...`) or after
/// `--password` becomes `xxxxxxxx`.
pub fn redact_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut next_is_secret = false;
    for arg in args {
        if std::mem::take(&mut next_is_secret) {
            out.push(REDACTED.to_string());
            continue;
        }
        if arg == "--password" {
            next_is_secret = true;
        }
        out.push(redact_assignment(arg));
    }
    out
}

/// `name<op>value` with `value` hidden when `name` names a secret.
fn redact_assignment(arg: &str) -> String {
    let Some(op_at) = arg.find(['=', '!', '~']) else {
        return arg.to_string();
    };
    let name = arg[..op_at].trim_end_matches(['+', '-', ',', '^']);
    let lower = name.to_ascii_lowercase();
    if !(lower.contains("password") || lower.contains("passwd")) {
        return arg.to_string();
    }
    let value_at = arg[op_at..]
        .find(|c: char| !matches!(c, '=' | '!' | '~'))
        .map_or(arg.len(), |i| op_at + i);
    format!("{}{REDACTED}", &arg[..value_at])
}

impl Db {
    /// Record `entry` unless `site.auditskipcmds` skips it. Its `recid` is
    /// the row's insertion number, so ids keep growing after `tabprune`.
    pub async fn audit(&self, entry: &AuditEntry) -> Result<(), DbError> {
        let skip = self.site("auditskipcmds").await?.unwrap_or_default();
        if skipped(&skip, &entry.command, entry.clienttype.as_deref()) {
            return Ok(());
        }
        let args = redact_args(&entry.args).join(" ");
        with_retries(20, 5, || self.insert_audit_row(entry, &args)).await
    }

    async fn insert_audit_row(&self, e: &AuditEntry, args: &str) -> Result<(), DbError> {
        let now = match self.backend {
            Backend::Sqlite => "datetime('now', 'localtime')",
            Backend::Postgres => "to_char(now(), 'YYYY-MM-DD HH24:MI:SS')",
        };
        let insert = format!(
            "INSERT INTO {} (audittime, userid, clientname, clienttype, command, noderange, \
             args, status) VALUES ({now}, $1, $2, $3, $4, $5, $6, $7) RETURNING {}",
            q("auditlog"),
            q(ROWID)
        );
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&insert)
            .bind(e.userid.as_deref())
            .bind(e.clientname.as_deref())
            .bind(e.clienttype.as_deref())
            .bind(e.command.as_str())
            .bind(e.noderange.as_deref())
            .bind((!args.is_empty()).then_some(args))
            .bind(e.status)
            .fetch_one(&mut *tx)
            .await?;
        let id: i64 = row.try_get(0)?;
        let set = format!(
            "UPDATE {} SET recid = $1 WHERE {} = $2",
            q("auditlog"),
            q(ROWID)
        );
        sqlx::query(&set)
            .bind(id.to_string())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_list_names_commands_client_types_or_all() {
        assert!(skipped("ALL", "lsdef", None));
        assert!(skipped("tabdump, lsdef", "lsdef", Some("cli")));
        assert!(skipped("clienttype:web", "lsdef", Some("web")));
        assert!(!skipped("clienttype:web", "lsdef", Some("cli")));
        assert!(!skipped("tabdump", "lsdef", None));
        assert!(!skipped("", "lsdef", None));
    }

    #[test]
    fn secret_values_are_hidden() {
        let args: Vec<String> = [
            "-t",
            "node",
            "bmcpassword=s3cret",
            "passwd.HMC=abc",
            "ipmi.password!=x",
            "mgt=ipmi",
            "--password",
            "hunter2",
            "groups=all",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            redact_args(&args),
            [
                "-t",
                "node",
                "bmcpassword=xxxxxxxx",
                "passwd.HMC=xxxxxxxx",
                "ipmi.password!=xxxxxxxx",
                "mgt=ipmi",
                "--password",
                "xxxxxxxx",
                "groups=all"
            ]
        );
    }
}
