//! Reading rows as they are stored: the catalogue, `site` values, single
//! rows by key, whole tables, and `tabdump`'s CSV.

use sqlx::Row;

use crate::schema::{self, q, TableDef, ROWID};
use crate::sql::{attrs_of, col_list, non_empty, row_values, table_def, ACTIVE};
use crate::{csv, Attrs, Db, DbError};

impl Db {
    /// The tables this daemon knows, sorted.
    pub fn tables() -> Vec<&'static str> {
        schema::TABLES.iter().map(|t| t.name).collect()
    }

    /// The columns of a table in xCAT's order (keys first, `comments`, `disable` last).
    pub fn columns(table: &str) -> Result<&'static [&'static str], DbError> {
        Ok(table_def(table)?.columns)
    }

    /// An active `site` value (None when absent or empty).
    pub async fn site(&self, key: &str) -> Result<Option<String>, DbError> {
        let sql = format!("SELECT \"value\" FROM \"site\" WHERE \"key\" = $1 AND {ACTIVE}");
        let row = sqlx::query(&sql)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => non_empty(r.try_get::<Option<String>, _>(0)?),
            None => None,
        })
    }

    /// One active row of a table by its (first) key column value, e.g. an
    /// osimage by imagename. Set values only.
    pub async fn get_row(&self, table: &str, key: &str) -> Result<Option<Attrs>, DbError> {
        let t = table_def(table)?;
        let sql = format!(
            "SELECT {} FROM {} WHERE {} = $1 AND {ACTIVE} ORDER BY {}",
            col_list(t.columns),
            q(t.name),
            q(t.keys[0]),
            q(ROWID)
        );
        let row = sqlx::query(&sql)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => Ok(Some(attrs_of(t.columns, row_values(&r, t.columns.len())?))),
            None => Ok(None),
        }
    }

    /// Active rows of a table in insertion order (set values only).
    pub async fn rows(&self, table: &str) -> Result<Vec<Attrs>, DbError> {
        let t = table_def(table)?;
        let rows = self.stored_rows(t, true).await?;
        Ok(rows.into_iter().map(|v| attrs_of(t.columns, v)).collect())
    }

    /// Every row (including disabled ones), all columns, insertion order.
    pub async fn all_rows(&self, table: &str) -> Result<Vec<Vec<Option<String>>>, DbError> {
        self.stored_rows(table_def(table)?, false).await
    }

    /// The table in xCAT's CSV format, byte for byte as `tabdump` prints it:
    /// header with every column, then every row (disabled ones too).
    pub async fn dump(&self, table: &str) -> Result<String, DbError> {
        let t = table_def(table)?;
        let rows = self.all_rows(table).await?;
        Ok(csv::format_table(t.columns, &rows))
    }

    /// All columns of `t`'s rows (only the active ones with `active_only`)
    /// in insertion order.
    async fn stored_rows(
        &self,
        t: &'static TableDef,
        active_only: bool,
    ) -> Result<Vec<Vec<Option<String>>>, DbError> {
        let filter = if active_only {
            format!(" WHERE {ACTIVE}")
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT {} FROM {}{filter} ORDER BY {}",
            col_list(t.columns),
            q(t.name),
            q(ROWID)
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| row_values(r, t.columns.len()))
            .collect()
    }
}

impl Db {
    /// The first key of every active row of `table` whose `column` is
    /// exactly `value` (for example the nodes whose `hosts.ip` is an
    /// address), in insertion order.
    pub async fn keys_where(
        &self,
        table: &str,
        column: &str,
        value: &str,
    ) -> Result<Vec<String>, DbError> {
        let t = table_def(table)?;
        if !t.columns.contains(&column) {
            return Err(DbError::UnknownColumn {
                table: t.name.to_string(),
                column: column.to_string(),
            });
        }
        let sql = format!(
            "SELECT {} FROM {} WHERE {} = $1 AND {ACTIVE} ORDER BY {}",
            q(t.keys[0]),
            q(t.name),
            q(column),
            q(ROWID)
        );
        let rows = sqlx::query(&sql).bind(value).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>(0)?))
            .collect()
    }
}
