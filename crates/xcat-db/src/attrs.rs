//! Node attributes: per-attribute group inheritance and `/re/repl/` and
//! `|re|arith|` templates, over the rows of one node-keyed table.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use sqlx::Row;

use crate::schema::{q, TableDef};
use crate::sql::{col_list, column_of, placeholders, row_values, table_def, ACTIVE};
use crate::{template, Attrs, Db, DbError, Nodes};

/// Node lists of at most this many names are looked up with `IN (...)`;
/// longer ones read the whole table (cheaper than binding that many values).
const IN_LIST_MAX: usize = 1000;

/// Node lists of at most this many names get their groups by a direct
/// lookup when the node cache is stale, instead of reloading it.
const SMALL_LOOKUP: usize = 200;

/// A table's rows by their `node` key (a node or a group name): the values
/// of the requested columns, in the order requested.
type RowsByKey = HashMap<String, Vec<Option<String>>>;

/// A resolved value and the group whose row it came from (None: the
/// node's own row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blamed {
    pub value: String,
    pub group: Option<String>,
}

/// Where attribute resolution gets each node's groups from.
pub(crate) enum GroupSource {
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

/// The group names of a `nodelist.groups` value, in order.
fn group_names(groups: &str) -> impl Iterator<Item = &str> {
    groups.split(',').map(str::trim).filter(|g| !g.is_empty())
}

impl Db {
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
        let (t, cols) = node_keyed_columns(table, cols)?;
        if cols.is_empty() || nodes.is_empty() {
            return Ok(nodes.iter().map(|n| (n.clone(), Attrs::new())).collect());
        }
        let groups = self.groups_for(nodes).await?;
        let vals = self.resolve_attrs(nodes, t, &cols, &groups).await?;
        Ok(nodes.iter().cloned().zip(vals).collect())
    }

    /// [`Db::node_attrs`] with each value's origin, for `nodels -b`: the
    /// group whose row gave it, or None when it is the node's own. The
    /// origin is the row the value was taken from, before any template.
    pub async fn node_attrs_blamed(
        &self,
        nodes: &[String],
        table: &str,
        cols: &[&str],
    ) -> Result<BTreeMap<String, BTreeMap<String, Blamed>>, DbError> {
        let (t, cols) = node_keyed_columns(table, cols)?;
        let mut all: BTreeMap<String, BTreeMap<String, Blamed>> =
            nodes.iter().map(|n| (n.clone(), BTreeMap::new())).collect();
        if cols.is_empty() || nodes.is_empty() {
            return Ok(all);
        }
        let groups = self.groups_for(nodes).await?;
        let keys = rows_needed(nodes, &groups);
        let rows = self.rows_by_key(t, &cols, keys.as_deref()).await?;
        let mut templates = HashMap::new();
        for n in nodes {
            let attrs = all.entry(n.clone()).or_default();
            resolve_each(
                n,
                groups.of(n),
                &rows,
                &cols,
                &mut templates,
                |col, value, group| {
                    let group = group.map(str::to_string);
                    attrs.insert(col.to_string(), Blamed { value, group });
                },
            );
        }
        Ok(all)
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
    pub(crate) async fn resolve_attrs<S: AsRef<str>>(
        &self,
        nodes: &[S],
        t: &'static TableDef,
        cols: &[&'static str],
        groups: &GroupSource,
    ) -> Result<Vec<Attrs>, DbError> {
        let keys = rows_needed(nodes, groups);
        let rows = self.rows_by_key(t, cols, keys.as_deref()).await?;
        let mut templates = HashMap::new();
        Ok(nodes
            .iter()
            .map(|n| {
                resolve_node(
                    n.as_ref(),
                    groups.of(n.as_ref()),
                    &rows,
                    cols,
                    &mut templates,
                )
            })
            .collect())
    }

    /// The rows of `t` keyed by `keys` (all rows for None), first row of a
    /// key winning.
    async fn rows_by_key(
        &self,
        t: &'static TableDef,
        cols: &[&'static str],
        keys: Option<&[&str]>,
    ) -> Result<RowsByKey, DbError> {
        let mut sel = vec!["node"];
        sel.extend(cols.iter().copied());
        let sql = format!(
            "SELECT {} FROM {} WHERE {ACTIVE}",
            col_list(&sel),
            q(t.name)
        );
        let rows = match keys {
            Some(k) => {
                let sql = format!("{sql} AND \"node\" IN ({})", placeholders(1, k.len()));
                let mut qy = sqlx::query(&sql);
                for n in k {
                    qy = qy.bind(*n);
                }
                qy.fetch_all(&self.pool).await?
            }
            None => sqlx::query(&sql).fetch_all(&self.pool).await?,
        };
        let mut by_key = RowsByKey::with_capacity(rows.len());
        for r in rows {
            let mut v = row_values(&r, sel.len())?;
            if let Some(n) = v.remove(0) {
                by_key.entry(n).or_insert(v);
            }
        }
        Ok(by_key)
    }
}

/// The keys of the rows resolution needs (each node's own and its groups'),
/// sorted; None when there are too many to list and the whole table is read.
fn rows_needed<'a, S: AsRef<str>>(nodes: &'a [S], groups: &'a GroupSource) -> Option<Vec<&'a str>> {
    if nodes.len() > IN_LIST_MAX {
        return None;
    }
    let mut k: HashSet<&str> = HashSet::new();
    for n in nodes {
        k.insert(n.as_ref());
        k.extend(group_names(groups.of(n.as_ref())));
    }
    (k.len() <= IN_LIST_MAX).then(|| {
        let mut k: Vec<&str> = k.into_iter().collect();
        k.sort_unstable();
        k
    })
}

/// One node's attributes from its own row and its groups' rows.
fn resolve_node(
    node: &str,
    groups: &str,
    rows: &RowsByKey,
    cols: &[&'static str],
    templates: &mut HashMap<String, Option<template::Template>>,
) -> Attrs {
    let mut attrs = Attrs::new();
    resolve_each(node, groups, rows, cols, templates, |col, v, _| {
        attrs.insert(col.to_string(), v);
    });
    attrs
}

/// One node's set attributes, each handed to `found` with the group whose
/// row it came from (None: the node's own row, or the `node` key itself).
fn resolve_each(
    node: &str,
    groups: &str,
    rows: &RowsByKey,
    cols: &[&'static str],
    templates: &mut HashMap<String, Option<template::Template>>,
    mut found: impl FnMut(&'static str, String, Option<&str>),
) {
    let own = rows.get(node);
    for (ci, col) in cols.iter().enumerate() {
        if *col == "node" {
            // The key column names the node itself, wherever the row came from.
            if own.is_some() || group_names(groups).any(|g| rows.contains_key(g)) {
                found(col, node.to_string(), None);
            }
            continue;
        }
        fn pick(row: Option<&Vec<Option<String>>>, ci: usize) -> Option<&str> {
            row.and_then(|r| r[ci].as_deref()).filter(|v| !v.is_empty())
        }
        let raw = pick(own, ci).map(|v| (v, None)).or_else(|| {
            group_names(groups).find_map(|g| pick(rows.get(g), ci).map(|v| (v, Some(g))))
        });
        let Some((raw, group)) = raw else { continue };
        if let Some(v) = apply_template(raw, node, templates) {
            found(col, v, group);
        }
    }
}

/// `raw` evaluated for `node` when it is a template (None: the template
/// yields nothing, which means "not set"); anything else as it is.
fn apply_template(
    raw: &str,
    node: &str,
    templates: &mut HashMap<String, Option<template::Template>>,
) -> Option<String> {
    if !template::is_template(raw) {
        return Some(raw.to_string());
    }
    let t = templates
        .entry(raw.to_string())
        .or_insert_with(|| template::Template::parse(raw));
    match t {
        Some(t) => t.apply(node),
        None => Some(raw.to_string()),
    }
}

/// A node-keyed table and the named columns of it, checked against the
/// catalogue.
fn node_keyed_columns(
    table: &str,
    cols: &[&str],
) -> Result<(&'static TableDef, Vec<&'static str>), DbError> {
    let t = table_def(table)?;
    if !t.is_node_keyed() {
        return Err(DbError::Invalid(format!(
            "table {table} is not keyed by node"
        )));
    }
    let cols = cols
        .iter()
        .map(|c| column_of(t, c))
        .collect::<Result<_, _>>()?;
    Ok((t, cols))
}
