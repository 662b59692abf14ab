//! `tabrestore`: a table replaced or extended from xCAT CSV text in one
//! transaction, every input problem reported with its CSV line.

use std::collections::{HashMap, HashSet};

use sqlx::{Any, Executor, Transaction};

use crate::csv::{self, Record};
use crate::schema::{q, TableDef};
use crate::sql::{col_list, row_values, table_def, Insert};
use crate::{Db, DbError};

impl Db {
    /// Replace (or with `append`, extend) a table from xCAT CSV text, in one
    /// transaction: on any error nothing changes. Errors name the CSV line.
    /// The header may list a subset of the columns, in any order. Returns the
    /// number of rows written.
    pub async fn restore(&self, table: &str, text: &str, append: bool) -> Result<usize, DbError> {
        let t = table_def(table)?;
        let (header, records) = csv::parse(text).map_err(|e| DbError::Restore {
            line: e.line,
            message: e.message,
        })?;
        let cols = header_columns(t, &header)?;
        // Key checks up front so duplicate keys are reported with their line.
        let keys = KeyColumns::new(t, &cols)?;
        keys.check_unique(&records)?;
        let mut tx = self.begin_write().await?;
        if !append {
            tx.execute(format!("DELETE FROM {}", q(t.name)).as_str())
                .await?;
        } else if !records.is_empty() {
            keys.check_not_stored(&mut tx, &records).await?;
        }
        Insert::new(t.name, &cols)
            .execute_all(&mut tx, &records, |r| &r.values)
            .await
            .map_err(|(i, e)| DbError::Restore {
                line: records[i].line,
                message: format!("database error in the rows starting here: {e}"),
            })?;
        tx.commit().await?;
        Ok(records.len())
    }
}

fn header_error(message: String) -> DbError {
    DbError::Restore { line: 1, message }
}

/// The catalogue columns the header names, in its order.
fn header_columns(t: &'static TableDef, header: &[String]) -> Result<Vec<&'static str>, DbError> {
    let mut cols: Vec<&'static str> = Vec::with_capacity(header.len());
    for h in header {
        let c = t.column(h).ok_or_else(|| {
            header_error(format!(
                "the header names column '{h}', which table {} does not have",
                t.name
            ))
        })?;
        if cols.contains(&c) {
            return Err(header_error(format!(
                "column '{h}' appears twice in the header"
            )));
        }
        cols.push(c);
    }
    Ok(cols)
}

/// Where the table's key columns stand among the restored columns.
struct KeyColumns {
    t: &'static TableDef,
    /// Per key column of the table, its index in the records (None: absent).
    idx: Vec<Option<usize>>,
}

impl KeyColumns {
    fn new(t: &'static TableDef, cols: &[&'static str]) -> Result<Self, DbError> {
        let idx: Vec<Option<usize>> = t
            .keys
            .iter()
            .map(|k| cols.iter().position(|c| c == k))
            .collect();
        if idx[0].is_none() {
            return Err(header_error(format!(
                "the header lacks the key column '{}'",
                t.keys[0]
            )));
        }
        Ok(KeyColumns { t, idx })
    }

    fn key_of(&self, vals: &[Option<String>]) -> Vec<Option<String>> {
        self.idx
            .iter()
            .map(|i| i.and_then(|i| vals[i].clone()))
            .collect()
    }

    /// Every record has its first key set, and no two share a key.
    fn check_unique(&self, records: &[Record]) -> Result<(), DbError> {
        let mut seen: HashMap<Vec<Option<String>>, usize> = HashMap::new();
        for r in records {
            let k = self.key_of(&r.values);
            if k[0].is_none() {
                return Err(DbError::Restore {
                    line: r.line,
                    message: format!("empty key column '{}'", self.t.keys[0]),
                });
            }
            // NULLs never collide in a unique index, so only fully set keys can.
            if k.iter().all(Option::is_some) {
                if let Some(prev) = seen.insert(k.clone(), r.line) {
                    return Err(DbError::Restore {
                        line: r.line,
                        message: format!("duplicate key (same as line {prev})"),
                    });
                }
            }
        }
        Ok(())
    }

    /// For an append: no record repeats the key of a row already stored.
    async fn check_not_stored(
        &self,
        tx: &mut Transaction<'static, Any>,
        records: &[Record],
    ) -> Result<(), DbError> {
        let keys_sql = col_list(self.t.keys);
        let existing = sqlx::query(&format!("SELECT {keys_sql} FROM {}", q(self.t.name)))
            .fetch_all(&mut **tx)
            .await?;
        let mut have = HashSet::new();
        for r in existing {
            have.insert(row_values(&r, self.t.keys.len())?);
        }
        for r in records {
            let k = self.key_of(&r.values);
            if k.iter().all(Option::is_some) && have.contains(&k) {
                return Err(DbError::Restore {
                    line: r.line,
                    message: "a row with this key already exists in the table".into(),
                });
            }
        }
        Ok(())
    }
}
