//! Noderange expansion against the tables: the cached node universe plus
//! whatever node attributes the expression compares.

use crate::attrs::GroupSource;
use crate::objects::Where;
use crate::{noderange, schema, Db, DbError, NoderangeError, Universe};

impl Db {
    /// Build the [`Universe`] a parsed noderange needs: all nodes and groups
    /// and `site.excludenodes` (from the cache), and the attributes it
    /// compares (resolved with inheritance and templates, read each time).
    pub async fn universe_for(&self, expr: &noderange::Expr) -> Result<Universe, DbError> {
        let snap = self.snapshot().await?;
        let mut u = snap.base;
        u.set_limits(self.noderange_limits);
        self.add_dynamic_groups(expr, &mut u).await?;
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

    /// The dynamic groups (`nodegroup.grouptype=dynamic`) among the names
    /// the expression mentions, with the members their `wherevals` select
    /// now. Nothing is read when every name is a node.
    async fn add_dynamic_groups(
        &self,
        expr: &noderange::Expr,
        u: &mut Universe,
    ) -> Result<(), DbError> {
        let names: Vec<String> = expr
            .plain_names()
            .into_iter()
            .filter(|n| !u.is_node(n))
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        for row in self.rows("nodegroup").await? {
            let Some(name) = row.get("groupname").filter(|g| names.contains(g)) else {
                continue;
            };
            if row.get("grouptype").map(String::as_str) != Some("dynamic") {
                continue;
            }
            let filters = Where::parse_list(row.get("wherevals").map_or("", String::as_str))
                .map_err(DbError::Invalid)?;
            if filters.is_empty() {
                continue;
            }
            let members = self.nodes_where(&filters).await?;
            u.set_dynamic_group(name, &members);
        }
        Ok(())
    }

    /// Expand a noderange into sorted, de-duplicated node names.
    pub async fn expand_noderange(&self, noderange: &str) -> Result<Vec<String>, DbError> {
        let expr = noderange::parse(noderange)?;
        let mut u = self.universe_for(&expr).await?;
        Ok(u.expand_expr(&expr)?)
    }
}
