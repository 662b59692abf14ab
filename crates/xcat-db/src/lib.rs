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
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};

pub mod csv;
pub mod noderange;
pub mod policy;
pub mod schema;
pub mod template;

pub use noderange::{NoderangeError, Nodes, Universe};
pub use policy::{PolicyDecision, PolicyQuery, PolicyRow};
pub use schema::{Backend, TableDef};

use schema::{q, TableDef as Def, ROWID};

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

/// SQL condition selecting active rows.
const ACTIVE: &str = "(\"disable\" IS NULL OR LOWER(\"disable\") IN ('', '0', 'no'))";

/// Migrations, applied in order; `schema_version` records the last one done.
/// Version 1 creates every catalogue table with its unique key index.
/// Version 2 adds `table_versions` and the triggers that maintain it.
const SCHEMA_VERSION: i64 = 2;

/// Tables whose every change bumps their counter row in `table_versions`
/// (by triggers, so writes from any program or any daemon sharing the
/// database count): the node cache depends on exactly these, `nodelist` for
/// the nodes and groups and `site` for `excludenodes`.
const VERSIONED_TABLES: [&str; 2] = ["nodelist", "site"];

/// Node lists of at most this many names are looked up with `IN (...)`;
/// longer ones read the whole table (cheaper than binding that many values).
const IN_LIST_MAX: usize = 1000;

/// Node lists of at most this many names get their groups by a direct
/// lookup when the node cache is stale, instead of reloading it.
const SMALL_LOOKUP: usize = 200;

/// Most bound parameters in one multi-row INSERT (below SQLite's and
/// PostgreSQL's limits).
const MAX_PARAMS: usize = 4000;

/// `url` (a `postgres://` URL) with its database name replaced by `name`,
/// query string kept: for reaching another database on the same server
/// (administration, and the test suites' throwaway databases).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// A handle to the cluster tables; cheap to clone (a connection pool and the
/// node cache inside, both shared by the clones).
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    cache: Arc<NodeCache>,
}

/// The counters of [`VERSIONED_TABLES`], in that order (None: row missing,
/// which never matches, so nothing is cached against it).
type Versions = [Option<i64>; VERSIONED_TABLES.len()];

/// Every active node and its groups plus the `site.excludenodes` set, as of
/// the table versions read *before* the data: a write that commits in
/// between makes the cached versions older than the data, which costs one
/// needless reload but can never leave stale data marked current.
#[derive(Clone)]
struct Snapshot {
    versions: Versions,
    nodes: Arc<Nodes>,
    /// `nodes` with the excluded set applied; cloned for each expansion.
    base: Universe,
}

/// The node universe shared by every clone of a [`Db`]. Each use reads the
/// version counters (one small `SELECT`) and reloads only when they changed,
/// so several daemons on one PostgreSQL database stay coherent.
#[derive(Default)]
struct NodeCache {
    current: Mutex<Option<Snapshot>>,
    /// Serialises reloads, so a burst of requests after a write reloads once.
    reload: tokio::sync::Mutex<()>,
}

impl NodeCache {
    fn get(&self, versions: &Versions) -> Option<Snapshot> {
        let cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        cur.as_ref()
            .filter(|s| versions.iter().all(Option::is_some) && s.versions == *versions)
            .cloned()
    }

    fn nodes_if_version(&self, nodelist: Option<i64>) -> Option<Arc<Nodes>> {
        let cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        cur.as_ref()
            .filter(|s| nodelist.is_some() && s.versions[0] == nodelist)
            .map(|s| s.nodes.clone())
    }

    fn store(&self, s: Snapshot) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
    }
}

/// Where attribute resolution gets each node's groups from.
enum GroupSource {
    Cached(Arc<Nodes>),
    Queried(HashMap<String, String>),
}

impl GroupSource {
    fn of(&self, node: &str) -> &str {
        match self {
            GroupSource::Cached(n) => n.groups_of(node),
            GroupSource::Queried(m) => m.get(node).map(String::as_str),
        }
        .unwrap_or("")
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend)
            .finish()
    }
}

fn table_def(table: &str) -> Result<&'static Def, DbError> {
    schema::table(table).ok_or_else(|| DbError::UnknownTable(table.to_string()))
}

fn column_of(t: &'static Def, col: &str) -> Result<&'static str, DbError> {
    t.column(col).ok_or_else(|| DbError::UnknownColumn {
        table: t.name.to_string(),
        column: col.to_string(),
    })
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

/// Is this error worth retrying a write transaction for (lock contention, or
/// two writers inserting the same new key at once)?
fn retryable(e: &DbError) -> bool {
    match e {
        DbError::Sql(sqlx::Error::Database(d)) => {
            d.is_unique_violation()
                || d.message().contains("database is locked")
                || d.message().contains("busy")
                || d.code().as_deref() == Some("40001")
                || d.code().as_deref() == Some("40P01")
        }
        _ => false,
    }
}

/// `"c1", "c2"` from catalogue names.
fn col_list(cols: &[&str]) -> String {
    cols.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ")
}

/// `$first, $first+1, ...` placeholders.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn row_values(row: &AnyRow, n: usize) -> Result<Vec<Option<String>>, DbError> {
    (0..n)
        .map(|i| row.try_get::<Option<String>, _>(i).map_err(DbError::from))
        .collect()
}

fn attrs_of(cols: &[&str], vals: Vec<Option<String>>) -> Attrs {
    cols.iter()
        .zip(vals)
        .filter_map(|(c, v)| non_empty(v).map(|v| (c.to_string(), v)))
        .collect()
}

impl Db {
    /// Open `sqlite://PATH` (file and parent directory created on first use,
    /// WAL journal, busy timeout) or `postgres://...`, and run migrations.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or("");
            if path.is_empty() || path == ":memory:" {
                return Err(DbError::Invalid(format!(
                    "sqlite URL needs a file path (sqlite:///var/lib/xcatd/xcat.db): {url}"
                )));
            }
            if let Some(parent) = Path::new(path).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        DbError::Invalid(format!(
                            "cannot create database directory {}: {e}",
                            parent.display()
                        ))
                    })?;
                }
            }
            let enc: String = path
                .chars()
                .map(|c| match c {
                    '%' => "%25".to_string(),
                    '?' => "%3F".to_string(),
                    '#' => "%23".to_string(),
                    ' ' => "%20".to_string(),
                    c => c.to_string(),
                })
                .collect();
            (Backend::Sqlite, format!("sqlite://{enc}?mode=rwc"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(DbError::Invalid(format!(
                "unsupported database URL (use sqlite://PATH or postgres://...): {url}"
            )));
        };

        let opts = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(60));
        let pool = match backend {
            Backend::Sqlite => {
                opts.max_connections(8)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // WAL lets readers run beside the writer; the busy timeout
                            // makes writers queue instead of failing.
                            conn.execute(
                                "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=30000; \
                                 PRAGMA foreign_keys=OFF; PRAGMA synchronous=NORMAL;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => opts.max_connections(10).connect(&url).await?,
        };
        let db = Db {
            pool,
            backend,
            cache: Arc::default(),
        };
        db.migrate().await?;
        Ok(db)
    }

    /// Which database engine is behind this handle.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Close the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Start a write transaction (SQLite: take the write lock immediately).
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, DbError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    async fn migrate(&self) -> Result<(), DbError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.migrate_once().await {
                Err(e) if attempt < 5 && retryable(&e) => {
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                r => return r,
            }
        }
    }

    async fn migrate_once(&self) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // Serialise concurrent first starts of several daemons.
            tx.execute("SELECT pg_advisory_xact_lock(738201)").await?;
        }
        tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .await?;
        let current: Option<i64> = sqlx::query("SELECT MAX(version) FROM schema_version")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let current = current.unwrap_or(0);
        if current > SCHEMA_VERSION {
            return Err(DbError::Invalid(format!(
                "database schema version {current} is newer than this program ({SCHEMA_VERSION}); upgrade xcatd"
            )));
        }
        if current < 1 {
            for t in schema::TABLES {
                tx.execute(schema::create_table_sql(t, self.backend).as_str())
                    .await?;
                tx.execute(schema::create_key_index_sql(t).as_str()).await?;
            }
            sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                .bind(1i64)
                .execute(&mut *tx)
                .await?;
        }
        if current < 2 {
            tx.execute(
                "CREATE TABLE IF NOT EXISTS table_versions \
                 (name VARCHAR(64) PRIMARY KEY, version BIGINT NOT NULL)",
            )
            .await?;
            for t in VERSIONED_TABLES {
                sqlx::query(
                    "INSERT INTO table_versions (name, version) VALUES ($1, 0) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(t)
                .execute(&mut *tx)
                .await?;
            }
            for sql in version_trigger_sql(self.backend) {
                tx.execute(sql.as_str()).await?;
            }
            sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                .bind(2i64)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

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

    /// Active policy rows sorted numerically by priority.
    pub async fn policies(&self) -> Result<Vec<PolicyRow>, DbError> {
        let cols = [
            "priority",
            "name",
            "host",
            "commands",
            "noderange",
            "parameters",
            "time",
            "rule",
        ];
        let sql = format!(
            "SELECT {} FROM \"policy\" WHERE {ACTIVE} ORDER BY {}",
            col_list(&cols),
            q(ROWID)
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let v = row_values(&r, cols.len())?;
            let mut it = v.into_iter();
            let mut next = || non_empty(it.next().flatten());
            out.push(PolicyRow {
                priority: next().unwrap_or_default(),
                name: next(),
                host: next(),
                commands: next(),
                noderange: next(),
                parameters: next(),
                time: next(),
                rule: next(),
            });
        }
        policy::sort_rows(&mut out);
        Ok(out)
    }

    /// Are all `nodes` inside the expansion of a policy rule's noderange?
    /// False for an empty node list or a rule noderange that does not expand.
    pub async fn policy_noderange_covers(
        &self,
        rule_noderange: &str,
        nodes: &[String],
    ) -> Result<bool, DbError> {
        if nodes.is_empty() {
            return Ok(false);
        }
        let expanded = match self.expand_noderange(rule_noderange).await {
            Ok(v) => v,
            Err(DbError::Noderange(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let set: HashSet<&str> = expanded.iter().map(String::as_str).collect();
        Ok(nodes.iter().all(|n| set.contains(n.as_str())))
    }

    /// Decide a request against the policy table: loads the active rules,
    /// expands the noderanges of rules that need it, then applies
    /// [`policy::evaluate`].
    pub async fn authorize(&self, q: &PolicyQuery) -> Result<PolicyDecision, DbError> {
        let rows = self.policies().await?;
        let mut covered: HashMap<String, bool> = HashMap::new();
        if !q.nodes.is_empty() {
            for r in &rows {
                if let Some(nr) = r.noderange.as_deref() {
                    if !covered.contains_key(nr) {
                        let c = self.policy_noderange_covers(nr, &q.nodes).await?;
                        covered.insert(nr.to_string(), c);
                    }
                }
            }
        }
        Ok(policy::evaluate(&rows, q, |nr, _nodes| {
            covered.get(nr).copied().unwrap_or(false)
        }))
    }

    /// Every active node name in `nodelist` (naturally sorted).
    pub async fn all_nodes(&self) -> Result<Vec<String>, DbError> {
        Ok(self.nodes().await?.sorted().map(str::to_string).collect())
    }

    /// Active nodes whose `nodelist.groups` lists `group` (naturally sorted).
    pub async fn nodes_in_group(&self, group: &str) -> Result<Vec<String>, DbError> {
        Ok(self.nodes().await?.group_members(group))
    }

    /// Every active node and its groups, shared: from the cache when neither
    /// `nodelist` nor `site` changed since it was loaded (one small `SELECT`
    /// to find out), else reloaded. Iterating it costs no copy of the names,
    /// which is what lets a command walk 10,000 nodes in bounded memory.
    pub async fn nodes(&self) -> Result<Arc<Nodes>, DbError> {
        Ok(self.snapshot().await?.nodes)
    }

    /// The counters of [`VERSIONED_TABLES`], as committed now.
    async fn versions(&self) -> Result<Versions, DbError> {
        let rows = sqlx::query("SELECT name, version FROM table_versions")
            .fetch_all(&self.pool)
            .await?;
        let mut v: Versions = [None; VERSIONED_TABLES.len()];
        for r in rows {
            let name: String = r.try_get(0)?;
            let version: i64 = r.try_get(1)?;
            if let Some(i) = VERSIONED_TABLES.iter().position(|t| *t == name) {
                v[i] = Some(version);
            }
        }
        Ok(v)
    }

    /// The current node snapshot, reloading what changed.
    async fn snapshot(&self) -> Result<Snapshot, DbError> {
        let seen = self.versions().await?;
        if let Some(s) = self.cache.get(&seen) {
            return Ok(s);
        }
        let _reloading = self.cache.reload.lock().await;
        // Read the counters again, before any data (see `Snapshot`); another
        // task may also have reloaded while this one waited.
        let versions = self.versions().await?;
        if let Some(s) = self.cache.get(&versions) {
            return Ok(s);
        }
        let nodes = match self.cache.nodes_if_version(versions[0]) {
            Some(n) => n,
            None => Arc::new(self.load_nodes().await?),
        };
        let mut base = Universe::from_nodes(nodes.clone());
        if let Some(x) = self.site("excludenodes").await? {
            if let Err(e) = base.set_excluded(&x) {
                tracing::warn!("ignoring site.excludenodes: {e}");
            }
        }
        let s = Snapshot {
            versions,
            nodes,
            base,
        };
        self.cache.store(s.clone());
        Ok(s)
    }

    /// Read every active nodelist row's node and groups, sorted by name.
    ///
    /// The rows come as one aggregated text value (fields and records split
    /// by the ASCII unit and record separators): drivers hand rows over one
    /// at a time, which for 100,000 rows costs several times the query. A
    /// name or group list holding a separator (or any other mismatch with
    /// the row count) falls back to reading row by row.
    async fn load_nodes(&self) -> Result<Nodes, DbError> {
        let agg = match self.backend {
            Backend::Sqlite => {
                "group_concat(\"node\" || char(31) || COALESCE(\"groups\", ''), char(30))"
            }
            Backend::Postgres => {
                "string_agg(\"node\" || chr(31) || COALESCE(\"groups\", ''), chr(30))"
            }
        };
        let sql = format!(
            "SELECT COUNT(*), {agg} FROM \"nodelist\" WHERE {ACTIVE} AND \"node\" IS NOT NULL AND \"node\" <> ''"
        );
        let row = sqlx::query(&sql).fetch_one(&self.pool).await?;
        let count: i64 = row.try_get(0)?;
        let text: Option<String> = row.try_get(1)?;
        let text = text.unwrap_or_default();
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(count.max(0) as usize);
        if count > 0 {
            for rec in text.split('\u{1e}') {
                match rec.split_once('\u{1f}') {
                    Some((n, g)) if !g.contains('\u{1f}') => pairs.push((n, g)),
                    _ => return self.load_nodes_by_row().await,
                }
            }
        }
        if pairs.len() as i64 != count {
            return self.load_nodes_by_row().await;
        }
        pairs.sort_by(|a, b| noderange::natural_cmp(a.0, b.0));
        Ok(Nodes::from_pairs(pairs))
    }

    /// [`Db::load_nodes`] one row at a time.
    async fn load_nodes_by_row(&self) -> Result<Nodes, DbError> {
        let sql = format!("SELECT \"node\", \"groups\" FROM \"nodelist\" WHERE {ACTIVE}");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        let mut pairs = Vec::with_capacity(rows.len());
        for r in rows {
            let node: Option<String> = r.try_get(0)?;
            let groups: Option<String> = r.try_get(1)?;
            if let Some(n) = non_empty(node) {
                pairs.push((n, groups.unwrap_or_default()));
            }
        }
        pairs.sort_by(|a, b| noderange::natural_cmp(&a.0, &b.0));
        Ok(Nodes::from_pairs(pairs))
    }

    /// Build the [`Universe`] a parsed noderange needs: all nodes and groups
    /// and `site.excludenodes` (from the cache), and the attributes it
    /// compares (resolved with inheritance and templates, read each time).
    pub async fn universe_for(&self, expr: &noderange::Expr) -> Result<Universe, DbError> {
        let snap = self.snapshot().await?;
        let mut u = snap.base;
        let refs = expr.attr_refs();
        if refs.is_empty() {
            return Ok(u);
        }
        let names: Vec<&str> = snap.nodes.sorted().collect();
        let groups = GroupSource::Cached(snap.nodes.clone());
        for (table, col) in refs {
            let Some(t) = schema::table(&table) else {
                return Err(NoderangeError::Syntax(
                    format!("{table}.{col}"),
                    format!("unknown table {table}"),
                )
                .into());
            };
            let Some(c) = t.column(&col).filter(|_| t.is_node_keyed()) else {
                return Err(NoderangeError::Syntax(
                    format!("{table}.{col}"),
                    format!("{table}.{col} is not a node attribute"),
                )
                .into());
            };
            let vals = self.resolve_attrs(&names, t, &[c], &groups).await?;
            u.declare_attr(&table, &col);
            u.set_attr_sorted(
                &table,
                &col,
                vals.into_iter().map(|mut a| a.remove(c)).collect(),
            );
        }
        Ok(u)
    }

    /// Expand a noderange into sorted, de-duplicated node names.
    pub async fn expand_noderange(&self, noderange: &str) -> Result<Vec<String>, DbError> {
        let expr = noderange::parse(noderange)?;
        let mut u = self.universe_for(&expr).await?;
        Ok(u.expand_expr(&expr)?)
    }

    /// Resolve `table.col` attributes for nodes, with group inheritance and
    /// regex templates. Result: node -> (col -> value), unset values absent;
    /// every requested node has an entry.
    ///
    /// Per attribute: the node's own row wins; otherwise the first group in
    /// `nodelist.groups` order whose row sets it. The chosen value is then
    /// evaluated as a template against the node name; an empty result means
    /// "not set" (it does not fall through to later groups, so a node can
    /// blank out a group value with `|^.*$||`).
    ///
    /// Up to a thousand nodes only their own and their groups' rows are
    /// read, so callers that walk a long node list in chunks use memory in
    /// proportion to the chunk.
    pub async fn node_attrs(
        &self,
        nodes: &[String],
        table: &str,
        cols: &[&str],
    ) -> Result<BTreeMap<String, Attrs>, DbError> {
        let t = table_def(table)?;
        if !t.is_node_keyed() {
            return Err(DbError::Invalid(format!(
                "table {table} is not keyed by node"
            )));
        }
        let cols: Vec<&'static str> = cols
            .iter()
            .map(|c| column_of(t, c))
            .collect::<Result<_, _>>()?;
        if cols.is_empty() || nodes.is_empty() {
            return Ok(nodes.iter().map(|n| (n.clone(), Attrs::new())).collect());
        }
        let groups = self.groups_for(nodes).await?;
        let vals = self.resolve_attrs(nodes, t, &cols, &groups).await?;
        Ok(nodes.iter().cloned().zip(vals).collect())
    }

    /// Groups of `nodes`: from the node cache when it is current, or when the
    /// list is long (a reload reads `nodelist` once, as the lookup would);
    /// a short list with a stale cache is looked up directly, so one write
    /// does not make a single-node lookup pay for reloading every node.
    async fn groups_for(&self, nodes: &[String]) -> Result<GroupSource, DbError> {
        if nodes.len() > SMALL_LOOKUP {
            return Ok(GroupSource::Cached(self.nodes().await?));
        }
        let v = self.versions().await?;
        if let Some(s) = self.cache.get(&v) {
            return Ok(GroupSource::Cached(s.nodes));
        }
        let sql = format!(
            "SELECT \"node\", \"groups\" FROM \"nodelist\" WHERE {ACTIVE} AND \"node\" IN ({})",
            placeholders(1, nodes.len())
        );
        let mut qy = sqlx::query(&sql);
        for n in nodes {
            qy = qy.bind(n.as_str());
        }
        let rows = qy.fetch_all(&self.pool).await?;
        let mut m = HashMap::new();
        for r in rows {
            let n: Option<String> = r.try_get(0)?;
            let g: Option<String> = r.try_get(1)?;
            if let Some(n) = n {
                m.insert(n, g.unwrap_or_default());
            }
        }
        Ok(GroupSource::Queried(m))
    }

    /// The attribute resolution of [`Db::node_attrs`], one `Attrs` per node
    /// in the order given.
    async fn resolve_attrs<S: AsRef<str>>(
        &self,
        nodes: &[S],
        t: &'static Def,
        cols: &[&'static str],
        groups: &GroupSource,
    ) -> Result<Vec<Attrs>, DbError> {
        let mut sel = vec!["node"];
        sel.extend(cols.iter().copied());
        // The rows needed: each node's own and its groups'.
        let keys: Option<Vec<&str>> = if nodes.len() <= IN_LIST_MAX {
            let mut k: HashSet<&str> = HashSet::new();
            for n in nodes {
                k.insert(n.as_ref());
                k.extend(
                    groups
                        .of(n.as_ref())
                        .split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty()),
                );
            }
            (k.len() <= IN_LIST_MAX).then(|| {
                let mut k: Vec<&str> = k.into_iter().collect();
                k.sort_unstable();
                k
            })
        } else {
            None
        };
        let rows = match &keys {
            Some(k) => {
                let sql = format!(
                    "SELECT {} FROM {} WHERE {ACTIVE} AND \"node\" IN ({})",
                    col_list(&sel),
                    q(t.name),
                    placeholders(1, k.len())
                );
                let mut qy = sqlx::query(&sql);
                for n in k {
                    qy = qy.bind(*n);
                }
                qy.fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!(
                    "SELECT {} FROM {} WHERE {ACTIVE}",
                    col_list(&sel),
                    q(t.name)
                );
                sqlx::query(&sql).fetch_all(&self.pool).await?
            }
        };
        let mut table_rows: HashMap<String, Vec<Option<String>>> =
            HashMap::with_capacity(rows.len());
        for r in rows {
            let mut v = row_values(&r, sel.len())?;
            if let Some(n) = v.remove(0) {
                table_rows.entry(n).or_insert(v);
            }
        }

        let mut templates: HashMap<String, Option<template::Template>> = HashMap::new();
        let mut out = Vec::with_capacity(nodes.len());
        for node in nodes {
            let node = node.as_ref();
            let own = table_rows.get(node);
            let groups = groups.of(node);
            let mut attrs = Attrs::new();
            for (ci, col) in cols.iter().enumerate() {
                if *col == "node" {
                    // The key column names the node itself, wherever the row came from.
                    let any_row = own.is_some()
                        || groups
                            .split(',')
                            .map(str::trim)
                            .any(|g| !g.is_empty() && table_rows.contains_key(g));
                    if any_row {
                        attrs.insert("node".to_string(), node.to_string());
                    }
                    continue;
                }
                fn pick(row: Option<&Vec<Option<String>>>, ci: usize) -> Option<&str> {
                    row.and_then(|r| r[ci].as_deref()).filter(|v| !v.is_empty())
                }
                let raw = pick(own, ci).or_else(|| {
                    groups
                        .split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .find_map(|g| pick(table_rows.get(g), ci))
                });
                let Some(raw) = raw else { continue };
                let value = if template::is_template(raw) {
                    let t = templates
                        .entry(raw.to_string())
                        .or_insert_with(|| template::Template::parse(raw));
                    match t {
                        Some(t) => t.apply(node),
                        None => Some(raw.to_string()),
                    }
                } else {
                    Some(raw.to_string())
                };
                if let Some(v) = value {
                    attrs.insert(col.to_string(), v);
                }
            }
            out.push(attrs);
        }
        Ok(out)
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
        let sql = format!(
            "SELECT {} FROM {} WHERE {ACTIVE} ORDER BY {}",
            col_list(t.columns),
            q(t.name),
            q(ROWID)
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok(attrs_of(t.columns, row_values(r, t.columns.len())?)))
            .collect()
    }

    /// Every row (including disabled ones), all columns, insertion order.
    pub async fn all_rows(&self, table: &str) -> Result<Vec<Vec<Option<String>>>, DbError> {
        let t = table_def(table)?;
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            col_list(t.columns),
            q(t.name),
            q(ROWID)
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| row_values(r, t.columns.len()))
            .collect()
    }

    /// The table in xCAT's CSV format, byte for byte as `tabdump` prints it:
    /// header with every column, then every row (disabled ones too).
    pub async fn dump(&self, table: &str) -> Result<String, DbError> {
        let t = table_def(table)?;
        let rows = self.all_rows(table).await?;
        Ok(csv::format_table(t.columns, &rows))
    }

    /// Validate `(column, value)` pairs against a table.
    fn checked<'v>(
        t: &'static Def,
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
        let keys = Self::checked(t, keys)?;
        let values = Self::checked(t, values)?;
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
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            match self.upsert_once(t, &keys, &values).await {
                Err(e) if attempt < 20 && retryable(&e) => {
                    tokio::time::sleep(Duration::from_millis(5 * attempt)).await;
                }
                r => return r,
            }
        }
    }

    async fn upsert_once(
        &self,
        t: &'static Def,
        keys: &[(&'static str, &str)],
        values: &[(&'static str, &str)],
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        let nv = values.len();
        // Key placeholders follow the values' in an UPDATE, start at $1 alone.
        let where_from = |first: usize| {
            keys.iter()
                .enumerate()
                .map(|(i, (k, _))| format!("{} = ${}", q(k), first + i))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        let where_sql = where_from(nv + 1);
        let updated = if nv > 0 {
            let set_sql = values
                .iter()
                .enumerate()
                .map(|(i, (c, _))| format!("{} = ${}", q(c), i + 1))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("UPDATE {} SET {set_sql} WHERE {where_sql}", q(t.name));
            let mut qy = sqlx::query(&sql);
            for (_, v) in values {
                qy = qy.bind((!v.is_empty()).then_some(*v));
            }
            for (_, v) in keys {
                qy = qy.bind(*v);
            }
            qy.execute(&mut *tx).await?.rows_affected()
        } else {
            let where_only = where_from(1);
            let sql = format!("SELECT COUNT(*) FROM {} WHERE {where_only}", q(t.name));
            let mut qy = sqlx::query(&sql);
            for (_, v) in keys {
                qy = qy.bind(*v);
            }
            let n: i64 = qy.fetch_one(&mut *tx).await?.try_get(0)?;
            n as u64
        };
        if updated == 0 {
            let cols: Vec<&str> = keys.iter().chain(values).map(|(c, _)| *c).collect();
            let sql = format!(
                "INSERT INTO {} ({}) VALUES ({})",
                q(t.name),
                col_list(&cols),
                placeholders(1, cols.len())
            );
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
        let keys = Self::checked(t, keys)?;
        if keys.is_empty() {
            return Err(DbError::Invalid(format!(
                "refusing to delete from {table} without a key"
            )));
        }
        let where_sql = keys
            .iter()
            .enumerate()
            .map(|(i, (k, _))| format!("{} = ${}", q(k), i + 1))
            .collect::<Vec<_>>()
            .join(" AND ");
        let sql = format!("DELETE FROM {} WHERE {where_sql}", q(t.name));
        let mut tx = self.begin_write().await?;
        let mut qy = sqlx::query(&sql);
        for (_, v) in &keys {
            qy = qy.bind(*v);
        }
        let n = qy.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(n)
    }

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
        let mut cols: Vec<&'static str> = Vec::with_capacity(header.len());
        for h in &header {
            let c = t.column(h).ok_or_else(|| DbError::Restore {
                line: 1,
                message: format!(
                    "the header names column '{h}', which table {} does not have",
                    t.name
                ),
            })?;
            if cols.contains(&c) {
                return Err(DbError::Restore {
                    line: 1,
                    message: format!("column '{h}' appears twice in the header"),
                });
            }
            cols.push(c);
        }
        // Key checks up front so duplicate keys are reported with their line.
        let key_idx: Vec<Option<usize>> = t
            .keys
            .iter()
            .map(|k| cols.iter().position(|c| c == k))
            .collect();
        if key_idx[0].is_none() {
            return Err(DbError::Restore {
                line: 1,
                message: format!("the header lacks the key column '{}'", t.keys[0]),
            });
        }
        let key_of = |vals: &[Option<String>]| -> Vec<Option<String>> {
            key_idx
                .iter()
                .map(|i| i.and_then(|i| vals[i].clone()))
                .collect()
        };
        let mut seen: HashMap<Vec<Option<String>>, usize> = HashMap::new();
        for r in &records {
            let k = key_of(&r.values);
            if k[0].is_none() {
                return Err(DbError::Restore {
                    line: r.line,
                    message: format!("empty key column '{}'", t.keys[0]),
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

        let mut tx = self.begin_write().await?;
        if !append {
            tx.execute(format!("DELETE FROM {}", q(t.name)).as_str())
                .await?;
        } else if !records.is_empty() {
            let keys_sql = col_list(t.keys);
            let existing = sqlx::query(&format!("SELECT {keys_sql} FROM {}", q(t.name)))
                .fetch_all(&mut *tx)
                .await?;
            let mut have = HashSet::new();
            for r in existing {
                have.insert(row_values(&r, t.keys.len())?);
            }
            for r in &records {
                let k = key_of(&r.values);
                if k.iter().all(Option::is_some) && have.contains(&k) {
                    return Err(DbError::Restore {
                        line: r.line,
                        message: "a row with this key already exists in the table".into(),
                    });
                }
            }
        }
        let per_batch = (MAX_PARAMS / cols.len().max(1)).max(1);
        for chunk in records.chunks(per_batch) {
            let mut sql = format!("INSERT INTO {} ({}) VALUES ", q(t.name), col_list(&cols));
            for (i, _) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                sql.push_str(&placeholders(i * cols.len() + 1, cols.len()));
                sql.push(')');
            }
            let mut qy = sqlx::query(&sql);
            for r in chunk {
                for v in &r.values {
                    qy = qy.bind(v.clone());
                }
            }
            qy.execute(&mut *tx).await.map_err(|e| DbError::Restore {
                line: chunk[0].line,
                message: format!("database error in the rows starting here: {e}"),
            })?;
        }
        tx.commit().await?;
        Ok(records.len())
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
        let per_batch = (MAX_PARAMS / cols.len().max(1)).max(1);
        let mut tx = self.begin_write().await?;
        for chunk in rows.chunks(per_batch) {
            let mut sql = format!("INSERT INTO {} ({}) VALUES ", q(t.name), col_list(&cols));
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                sql.push_str(&placeholders(i * cols.len() + 1, cols.len()));
                sql.push(')');
            }
            let mut qy = sqlx::query(&sql);
            for r in chunk {
                for v in r {
                    qy = qy.bind(v.clone().filter(|s| !s.is_empty()));
                }
            }
            qy.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// First-start defaults, inserted only when missing (idempotent):
    /// policy 1 `root` allow, policy 1.2 `<server_name>` trusted, and site
    /// `xcatdport=3001`, `master=<server_name>`, `installdir=<install_dir>` (the daemon's configured install directory),
    /// `domain=localdomain`.
    pub async fn seed_defaults(&self, server_name: &str, install_dir: &str) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        let policies: [(&str, &str, &str); 2] =
            [("1", "root", "allow"), ("1.2", server_name, "trusted")];
        for (prio, name, rule) in policies {
            let n: i64 = sqlx::query("SELECT COUNT(*) FROM \"policy\" WHERE \"priority\" = $1")
                .bind(prio)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            if n == 0 {
                sqlx::query(
                    "INSERT INTO \"policy\" (\"priority\", \"name\", \"rule\") VALUES ($1, $2, $3)",
                )
                .bind(prio)
                .bind(name)
                .bind(rule)
                .execute(&mut *tx)
                .await?;
            }
        }
        let site: [(&str, &str); 4] = [
            ("xcatdport", "3001"),
            ("master", server_name),
            ("installdir", install_dir),
            ("domain", "localdomain"),
        ];
        for (k, v) in site {
            let n: i64 = sqlx::query("SELECT COUNT(*) FROM \"site\" WHERE \"key\" = $1")
                .bind(k)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            if n == 0 {
                sqlx::query("INSERT INTO \"site\" (\"key\", \"value\") VALUES ($1, $2)")
                    .bind(k)
                    .bind(v)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// DDL of the triggers that bump `table_versions` on every change of a
/// [`VERSIONED_TABLES`] table. SQLite has only row triggers (one counter
/// update per row; writes are serialised anyway); PostgreSQL gets statement
/// triggers, TRUNCATE included, so a bulk write bumps the counter once.
fn version_trigger_sql(backend: Backend) -> Vec<String> {
    let mut out = Vec::new();
    match backend {
        Backend::Sqlite => {
            for t in VERSIONED_TABLES {
                for ev in ["INSERT", "UPDATE", "DELETE"] {
                    out.push(format!(
                        "CREATE TRIGGER IF NOT EXISTS {} AFTER {ev} ON {} FOR EACH ROW BEGIN \
                         UPDATE table_versions SET version = version + 1 WHERE name = '{t}'; END",
                        q(&format!("xcat_version_{t}_{}", ev.to_lowercase())),
                        q(t)
                    ));
                }
            }
        }
        Backend::Postgres => {
            out.push(
                "CREATE OR REPLACE FUNCTION xcat_bump_table_version() RETURNS trigger \
                 LANGUAGE plpgsql AS $$ BEGIN \
                 UPDATE table_versions SET version = version + 1 WHERE name = TG_TABLE_NAME; \
                 RETURN NULL; END $$"
                    .to_string(),
            );
            for t in VERSIONED_TABLES {
                out.push(format!(
                    "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {} \
                     FOR EACH STATEMENT EXECUTE FUNCTION xcat_bump_table_version()",
                    q(&format!("xcat_version_{t}")),
                    q(t)
                ));
            }
        }
    }
    out
}
