//! Row writes: upsert by key, delete by key, bulk insert.

use std::collections::HashSet;

use sqlx::{Any, Row, Transaction};

use crate::schema::{q, TableDef};
use crate::sql::{column_of, key_clause, placeholders, set_clause, table_def, Insert};
use crate::transaction::with_retries;
use crate::{Db, DbError};

impl Db {
    /// Insert or update the row whose key columns equal `keys`, setting
    /// `values` (an empty value clears the column). Atomic; concurrent
    /// upserts of the same new key end in one row.
    pub async fn upsert(
        &self,
        table: &str,
        keys: &[(&str, &str)],
        values: &[(&str, &str)],
    ) -> Result<(), DbError> {
        let t = table_def(table)?;
        let keys = checked(t, keys)?;
        let values = checked(t, values)?;
        if keys.is_empty() {
            return Err(DbError::Invalid(format!(
                "no key given for table {table} (e.g. {}=...)",
                t.keys[0]
            )));
        }
        if let Some((k, _)) = keys.iter().find(|(_, v)| v.is_empty()) {
            return Err(DbError::Invalid(format!("empty key value for {table}.{k}")));
        }
        if let Some((c, _)) = values
            .iter()
            .find(|(c, _)| keys.iter().any(|(k, _)| k == c))
        {
            return Err(DbError::Invalid(format!(
                "{table}.{c} is used as a key and cannot also be assigned"
            )));
        }
        with_retries(20, 5, || self.upsert_once(t, &keys, &values)).await
    }

    async fn upsert_once(
        &self,
        t: &'static TableDef,
        keys: &[(&'static str, &str)],
        values: &[(&'static str, &str)],
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        let found = if values.is_empty() {
            key_exists(&mut tx, t.name, keys).await?
        } else {
            update(&mut tx, t.name, keys, values).await? > 0
        };
        if !found {
            let cols: Vec<&'static str> = keys.iter().chain(values).map(|(c, _)| *c).collect();
            let sql = Insert::new(t.name, &cols).sql(1);
            let mut qy = sqlx::query(&sql);
            for (_, v) in keys.iter().chain(values) {
                qy = qy.bind((!v.is_empty()).then_some(*v));
            }
            qy.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Delete the rows whose columns equal `keys` (at least one); returns how
    /// many were deleted.
    pub async fn delete(&self, table: &str, keys: &[(&str, &str)]) -> Result<u64, DbError> {
        let t = table_def(table)?;
        let keys = checked(t, keys)?;
        if keys.is_empty() {
            return Err(DbError::Invalid(format!(
                "refusing to delete from {table} without a key"
            )));
        }
        let sql = format!("DELETE FROM {} WHERE {}", q(t.name), key_clause(&keys, 1));
        let mut tx = self.begin_write().await?;
        let mut qy = sqlx::query(&sql);
        for (_, v) in &keys {
            qy = qy.bind(*v);
        }
        let n = qy.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// Insert many rows at once (e.g. initial node definitions), in one
    /// transaction. `rows` hold one value per column of `cols`.
    pub async fn insert_rows(
        &self,
        table: &str,
        cols: &[&str],
        rows: &[Vec<Option<String>>],
    ) -> Result<(), DbError> {
        let t = table_def(table)?;
        let cols: Vec<&'static str> = cols
            .iter()
            .map(|c| column_of(t, c))
            .collect::<Result<_, _>>()?;
        if rows.iter().any(|r| r.len() != cols.len()) {
            return Err(DbError::Invalid(
                "row length differs from column count".into(),
            ));
        }
        let mut tx = self.begin_write().await?;
        Insert::new(t.name, &cols)
            .execute_all(&mut tx, rows, Vec::as_slice)
            .await
            .map_err(|(_, e)| e)?;
        tx.commit().await?;
        Ok(())
    }
}

impl Db {
    /// Set the same `values` on the rows of node-keyed `table` for every
    /// one of `nodes` (an empty value clears the column), inserting a row for
    /// each node without one: `upsert` for a whole noderange, in one
    /// transaction and a few statements per thousand nodes (nodeset writes
    /// ten thousand nodes' `nodetype` and `chain` rows this way).
    pub async fn set_for_nodes(
        &self,
        table: &str,
        nodes: &[String],
        values: &[(&str, &str)],
    ) -> Result<(), DbError> {
        let t = table_def(table)?;
        if !t.is_node_keyed() {
            return Err(DbError::Invalid(format!(
                "table {table} is not keyed by node"
            )));
        }
        let values = checked(t, values)?;
        if values.iter().any(|(c, _)| *c == "node") || values.is_empty() {
            return Err(DbError::Invalid(format!(
                "set_for_nodes on {table} needs values other than the node"
            )));
        }
        if let Some(n) = nodes.iter().find(|n| n.is_empty()) {
            return Err(DbError::Invalid(format!("empty node name {n:?}")));
        }
        with_retries(20, 5, || self.set_for_nodes_once(t, nodes, &values)).await
    }

    async fn set_for_nodes_once(
        &self,
        t: &'static TableDef,
        nodes: &[String],
        values: &[(&'static str, &str)],
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        set_rows(&mut tx, t, ("node", None), nodes, values).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The key of the rows a write sets: the column holding the names, and for
/// a table with two keys the second one's column and value.
pub(crate) type RowKey<'a> = (&'static str, Option<(&'static str, &'a str)>);

/// ` AND "second" = $n` for a second key, bound after the names.
fn second_key_clause(second: Option<(&'static str, &str)>, n: usize) -> String {
    second.map_or(String::new(), |(c, _)| format!(" AND {} = ${n}", q(c)))
}

/// Set the same `values` on the rows of `t` whose key column is one of
/// `names` (and whose second key, if any, holds its value), inserting a row
/// for each name without one; a few statements per five hundred names,
/// inside the caller's transaction.
pub(crate) async fn set_rows(
    tx: &mut Transaction<'static, Any>,
    t: &'static TableDef,
    (key, second): RowKey<'_>,
    names: &[String],
    values: &[(&'static str, &str)],
) -> Result<(), DbError> {
    let mut missing: Vec<Vec<Option<String>>> = Vec::new();
    for chunk in names.chunks(NODES_PER_STATEMENT) {
        let found = existing_keys(tx, t.name, (key, second), chunk).await?;
        if !values.is_empty() {
            let sql = format!(
                "UPDATE {} SET {} WHERE {} IN ({}){}",
                q(t.name),
                set_clause(values, 1),
                q(key),
                placeholders(values.len() + 1, chunk.len()),
                second_key_clause(second, values.len() + chunk.len() + 1)
            );
            let mut qy = sqlx::query(&sql);
            for (_, v) in values {
                qy = qy.bind((!v.is_empty()).then_some(*v));
            }
            for n in chunk {
                qy = qy.bind(n.as_str());
            }
            if let Some((_, v)) = second {
                qy = qy.bind(v);
            }
            qy.execute(&mut **tx).await?;
        }
        for n in chunk.iter().filter(|n| !found.contains(n.as_str())) {
            let mut row = vec![Some(n.clone())];
            row.extend(second.map(|(_, v)| Some(v.to_string())));
            row.extend(values.iter().map(|(_, v)| Some(v.to_string())));
            missing.push(row);
        }
    }
    let mut cols = vec![key];
    cols.extend(second.map(|(c, _)| c));
    cols.extend(values.iter().map(|(c, _)| *c));
    Insert::new(t.name, &cols)
        .execute_all(tx, &missing, Vec::as_slice)
        .await
        .map_err(|(_, e)| e)?;
    Ok(())
}

/// Delete the rows of `t` whose `key` column is one of `names`, inside the
/// caller's transaction.
pub(crate) async fn delete_rows(
    tx: &mut Transaction<'static, Any>,
    t: &'static TableDef,
    key: &'static str,
    names: &[String],
) -> Result<(), DbError> {
    for chunk in names.chunks(NODES_PER_STATEMENT) {
        let sql = format!(
            "DELETE FROM {} WHERE {} IN ({})",
            q(t.name),
            q(key),
            placeholders(1, chunk.len())
        );
        let mut qy = sqlx::query(&sql);
        for n in chunk {
            qy = qy.bind(n.as_str());
        }
        qy.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Node names bound in one statement of [`Db::set_for_nodes`] (below both
/// backends' parameter limits).
const NODES_PER_STATEMENT: usize = 500;

/// Which of `names` already have a row in `table` under `key` (disabled
/// rows too, as [`key_exists`] counts them).
async fn existing_keys(
    tx: &mut Transaction<'static, Any>,
    table: &'static str,
    (key, second): RowKey<'_>,
    nodes: &[String],
) -> Result<HashSet<String>, DbError> {
    let sql = format!(
        "SELECT {} FROM {} WHERE {} IN ({}){}",
        q(key),
        q(table),
        q(key),
        placeholders(1, nodes.len()),
        second_key_clause(second, nodes.len() + 1)
    );
    let mut qy = sqlx::query(&sql);
    for n in nodes {
        qy = qy.bind(n.as_str());
    }
    if let Some((_, v)) = second {
        qy = qy.bind(v);
    }
    let mut found = HashSet::new();
    for r in qy.fetch_all(&mut **tx).await? {
        if let Some(n) = r.try_get::<Option<String>, _>(0)? {
            found.insert(n);
        }
    }
    Ok(found)
}

/// Does a row with these key values exist (counting disabled rows too)?
pub(crate) async fn key_exists(
    tx: &mut Transaction<'static, Any>,
    table: &'static str,
    keys: &[(&'static str, &str)],
) -> Result<bool, DbError> {
    let sql = format!(
        "SELECT COUNT(*) FROM {} WHERE {}",
        q(table),
        key_clause(keys, 1)
    );
    let mut qy = sqlx::query(&sql);
    for (_, v) in keys {
        qy = qy.bind(*v);
    }
    let n: i64 = qy.fetch_one(&mut **tx).await?.try_get(0)?;
    Ok(n != 0)
}

/// Set `values` on the rows matching `keys`; an empty value stores NULL.
/// Returns how many rows matched.
async fn update(
    tx: &mut Transaction<'static, Any>,
    table: &'static str,
    keys: &[(&'static str, &str)],
    values: &[(&'static str, &str)],
) -> Result<u64, DbError> {
    // Key placeholders follow the values'.
    let sql = format!(
        "UPDATE {} SET {} WHERE {}",
        q(table),
        set_clause(values, 1),
        key_clause(keys, values.len() + 1)
    );
    let mut qy = sqlx::query(&sql);
    for (_, v) in values {
        qy = qy.bind((!v.is_empty()).then_some(*v));
    }
    for (_, v) in keys {
        qy = qy.bind(*v);
    }
    Ok(qy.execute(&mut **tx).await?.rows_affected())
}

/// Validate `(column, value)` pairs against a table.
fn checked<'v>(
    t: &'static TableDef,
    pairs: &[(&str, &'v str)],
) -> Result<Vec<(&'static str, &'v str)>, DbError> {
    let mut seen = HashSet::new();
    pairs
        .iter()
        .map(|(c, v)| {
            let c = column_of(t, c)?;
            if !seen.insert(c) {
                return Err(DbError::Invalid(format!(
                    "column {}.{c} given twice",
                    t.name
                )));
            }
            Ok((c, *v))
        })
        .collect()
}

/// Change the key of the rows of `t` named `from` to `to` (inside the
/// caller's transaction).
pub(crate) async fn rename_key(
    tx: &mut Transaction<'static, Any>,
    t: &'static TableDef,
    key: &'static str,
    from: &str,
    to: &str,
) -> Result<(), DbError> {
    let sql = format!(
        "UPDATE {} SET {} = $1 WHERE {} = $2",
        q(t.name),
        q(key),
        q(key)
    );
    sqlx::query(&sql)
        .bind(to)
        .bind(from)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
