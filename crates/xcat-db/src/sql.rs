//! The pieces every statement is built from. Names reach SQL only through
//! [`table_def`] and [`column_of`] (checked against the catalogue) and are
//! quoted by [`q`]; values only ever appear as `$n` placeholders.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::schema::{self, q, TableDef};
use crate::{Attrs, DbError};

/// SQL condition selecting active rows.
pub(crate) const ACTIVE: &str = "(\"disable\" IS NULL OR LOWER(\"disable\") IN ('', '0', 'no'))";

/// Most bound parameters in one multi-row INSERT (below SQLite's and
/// PostgreSQL's limits).
const MAX_PARAMS: usize = 4000;

pub(crate) fn table_def(table: &str) -> Result<&'static TableDef, DbError> {
    schema::table(table).ok_or_else(|| DbError::UnknownTable(table.to_string()))
}

pub(crate) fn column_of(t: &'static TableDef, col: &str) -> Result<&'static str, DbError> {
    t.column(col).ok_or_else(|| DbError::UnknownColumn {
        table: t.name.to_string(),
        column: col.to_string(),
    })
}

pub(crate) fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

/// `"c1", "c2"` from catalogue names.
pub(crate) fn col_list(cols: &[&str]) -> String {
    cols.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ")
}

/// `$first, $first+1, ...` placeholders.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"k1" = $first AND "k2" = $first+1 ...` over the columns of `pairs`.
pub(crate) fn key_clause(pairs: &[(&str, &str)], first: usize) -> String {
    equals_list(pairs, first, " AND ")
}

/// `"c1" = $first, "c2" = $first+1 ...`: the SET list of an UPDATE.
pub(crate) fn set_clause(pairs: &[(&str, &str)], first: usize) -> String {
    equals_list(pairs, first, ", ")
}

fn equals_list(pairs: &[(&str, &str)], first: usize, sep: &str) -> String {
    pairs
        .iter()
        .enumerate()
        .map(|(i, (c, _))| format!("{} = ${}", q(c), first + i))
        .collect::<Vec<_>>()
        .join(sep)
}

pub(crate) fn row_values(row: &AnyRow, n: usize) -> Result<Vec<Option<String>>, DbError> {
    (0..n)
        .map(|i| row.try_get::<Option<String>, _>(i).map_err(DbError::from))
        .collect()
}

pub(crate) fn attrs_of(cols: &[&str], vals: Vec<Option<String>>) -> Attrs {
    cols.iter()
        .zip(vals)
        .filter_map(|(c, v)| non_empty(v).map(|v| (c.to_string(), v)))
        .collect()
}

/// An `INSERT` of whole rows into catalogue columns: the one place that
/// writes `INSERT ... VALUES (...), (...)`.
pub(crate) struct Insert<'c> {
    table: &'static str,
    cols: &'c [&'static str],
}

impl<'c> Insert<'c> {
    pub(crate) fn new(table: &'static str, cols: &'c [&'static str]) -> Self {
        Insert { table, cols }
    }

    /// The statement for `rows` rows, placeholders numbered row by row.
    pub(crate) fn sql(&self, rows: usize) -> String {
        let n = self.cols.len();
        let values = (0..rows)
            .map(|i| format!("({})", placeholders(i * n + 1, n)))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO {} ({}) VALUES {values}",
            q(self.table),
            col_list(self.cols)
        )
    }

    /// Insert `rows` (`values` gives one value per column of a row) with as
    /// few statements as the parameter limit allows; an empty value is
    /// stored as NULL. A failure comes with the index of the first row of
    /// the statement that failed, so callers can say where it was.
    pub(crate) async fn execute_all<R>(
        &self,
        tx: &mut Transaction<'static, Any>,
        rows: &[R],
        values: impl Fn(&R) -> &[Option<String>],
    ) -> Result<(), (usize, sqlx::Error)> {
        let per_statement = (MAX_PARAMS / self.cols.len().max(1)).max(1);
        for (n, chunk) in rows.chunks(per_statement).enumerate() {
            let sql = self.sql(chunk.len());
            let mut qy = sqlx::query(&sql);
            for r in chunk {
                for v in values(r) {
                    qy = qy.bind(v.as_deref().filter(|s| !s.is_empty()));
                }
            }
            qy.execute(&mut **tx)
                .await
                .map_err(|e| (n * per_statement, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_numbers_placeholders_row_by_row() {
        let cols = ["node", "groups"];
        assert_eq!(
            Insert::new("nodelist", &cols).sql(2),
            "INSERT INTO \"nodelist\" (\"node\", \"groups\") VALUES ($1, $2), ($3, $4)"
        );
    }

    #[test]
    fn key_and_set_clauses_start_where_told() {
        let pairs = [("node", "n1"), ("os", "x")];
        assert_eq!(key_clause(&pairs, 3), "\"node\" = $3 AND \"os\" = $4");
        assert_eq!(set_clause(&pairs, 1), "\"node\" = $1, \"os\" = $2");
    }
}
