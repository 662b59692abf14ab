//! xCAT's cluster tables.
//!
//! One schema and one set of SQL statements over sqlx's `Any` driver, so the
//! embedded SQLite file and a shared PostgreSQL database behave identically;
//! only the DDL of the hidden row-id column and the way a write transaction
//! starts differ (SQLite takes its write lock up front with `BEGIN IMMEDIATE`,
//! so concurrent writers queue on the busy timeout instead of failing).
//!
//! Every table has xCAT's columns plus a hidden `xcat_rowid` that records
//! insertion order, which is the order of `tabdump`. A row is *active* when
//! `disable` is NULL, empty, `0` or `no` (any case); every read except
//! [`Db::dump`] honours this. Table and column names are always checked
//! against the static catalogue in [`schema`] before they reach SQL; values
//! are always bound as parameters.
//!
//! The methods of [`Db`] are spread over one module per job: opening
//! ([`connect`](Db::connect)), migrations, the `table_versions` counters and
//! their triggers, the node cache, noderange expansion, attribute
//! resolution, plain row access, writes, `restore`, policy decisions and
//! first-start defaults.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use sqlx::AnyPool;

mod attrs;
pub mod audit;
mod authorize;
mod connect;
pub mod csv;
pub mod describe;
mod expand;
mod migrate;
mod node_cache;
pub mod noderange;
pub mod objects;
pub mod policy;
mod restore;
mod rows;
pub mod schema;
mod seed;
mod sql;
mod table_versions;
pub mod template;
#[cfg(feature = "test-support")]
pub mod test_support;
mod transaction;
mod write;

pub use attrs::Blamed;
pub use audit::AuditEntry;
pub use connect::with_database;
pub use noderange::{NoderangeError, Nodes, Universe};
pub use policy::{PolicyDecision, PolicyQuery, PolicyRow};
pub use schema::{Backend, TableDef};
pub use seed::SiteSeeds;

use node_cache::NodeCache;

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
    /// A `restore` input problem, with the 1-based line of the CSV text.
    #[error("line {line}: {message}")]
    Restore { line: usize, message: String },
}

/// Attribute values of one row or one node: column -> value (only set values).
pub type Attrs = BTreeMap<String, String>;

/// A handle to the cluster tables; cheap to clone (a connection pool and the
/// node cache inside, both shared by the clones).
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    cache: Arc<NodeCache>,
    /// What one noderange expansion may cost (see [`noderange::Limits`]).
    noderange_limits: noderange::Limits,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend)
            .finish()
    }
}
