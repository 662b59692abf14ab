//! xCAT's cluster tables.
//!
//! STUB: the signatures below are what the daemon and plugins rely on; bodies to be written.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

pub mod noderange;
pub mod policy;

pub use noderange::NoderangeError;
pub use policy::{PolicyDecision, PolicyQuery, PolicyRow};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("unknown table: {0}")]
    UnknownTable(String),
    #[error("table {table} has no column {column}")]
    UnknownColumn { table: String, column: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Noderange(#[from] NoderangeError),
}

/// Attribute values of one row or one node: column -> value (only set values).
pub type Attrs = BTreeMap<String, String>;

/// A handle to the cluster tables; cheap to clone (a connection pool inside).
#[derive(Clone)]
pub struct Db {}

impl Db {
    /// Open `sqlite://PATH` (file created on first use, WAL) or `postgres://...`,
    /// and run migrations.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        let _ = url;
        todo!()
    }

    /// An active `site` value.
    pub async fn site(&self, key: &str) -> Result<Option<String>, DbError> {
        let _ = key;
        todo!()
    }

    /// Active policy rows sorted numerically by priority.
    pub async fn policies(&self) -> Result<Vec<PolicyRow>, DbError> {
        todo!()
    }

    /// Expand a noderange into sorted, de-duplicated node names.
    pub async fn expand_noderange(&self, noderange: &str) -> Result<Vec<String>, DbError> {
        let _ = noderange;
        todo!()
    }

    /// Resolve `table.col` attributes for nodes, with group inheritance and
    /// regex templates. Result: node -> (col -> value), unset values absent.
    pub async fn node_attrs(
        &self,
        nodes: &[String],
        table: &str,
        cols: &[&str],
    ) -> Result<BTreeMap<String, Attrs>, DbError> {
        let _ = (nodes, table, cols);
        todo!()
    }

    /// One active row of a table by its key column value (e.g. osimage by imagename).
    pub async fn get_row(&self, table: &str, key: &str) -> Result<Option<Attrs>, DbError> {
        let _ = (table, key);
        todo!()
    }

    /// Insert or update the row whose key columns equal `keys`, setting `values`.
    pub async fn upsert(
        &self,
        table: &str,
        keys: &[(&str, &str)],
        values: &[(&str, &str)],
    ) -> Result<(), DbError> {
        let _ = (table, keys, values);
        todo!()
    }
}
