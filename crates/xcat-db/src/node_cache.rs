//! The node cache: every active node and its groups, shared by every clone
//! of a [`Db`] and reloaded only when `table_versions` says `nodelist` or
//! `site` changed.

use std::sync::{Arc, Mutex};

use sqlx::Row;

use crate::sql::{non_empty, ACTIVE};
use crate::table_versions::Versions;
use crate::{noderange, Backend, Db, DbError, Nodes, Universe};

/// Every active node and its groups plus the `site.excludenodes` set, as of
/// the table versions read *before* the data: a write that commits in
/// between makes the cached versions older than the data, which costs one
/// needless reload but can never leave stale data marked current.
#[derive(Clone)]
pub(crate) struct Snapshot {
    versions: Versions,
    pub(crate) nodes: Arc<Nodes>,
    /// `nodes` with the excluded set applied; cloned for each expansion.
    pub(crate) base: Universe,
}

/// The node universe shared by every clone of a [`Db`]. Each use reads the
/// version counters (one small `SELECT`) and reloads only when they changed,
/// so several daemons on one PostgreSQL database stay coherent.
#[derive(Default)]
pub(crate) struct NodeCache {
    current: Mutex<Option<Snapshot>>,
    /// Serialises reloads, so a burst of requests after a write reloads once.
    reload: tokio::sync::Mutex<()>,
}

impl NodeCache {
    pub(crate) fn get(&self, versions: &Versions) -> Option<Snapshot> {
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

impl Db {
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

    /// The current node snapshot, reloading what changed.
    pub(crate) async fn snapshot(&self) -> Result<Snapshot, DbError> {
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
}
