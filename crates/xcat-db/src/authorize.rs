//! Policy decisions against the `policy` table: loading the active rules
//! and expanding the noderanges they name; the decision itself is
//! [`policy::evaluate`] (pure).

use std::collections::{HashMap, HashSet};

use crate::schema::{q, ROWID};
use crate::sql::{col_list, non_empty, row_values, table_def, ACTIVE};
use crate::{policy, Db, DbError, PolicyDecision, PolicyQuery, PolicyRow};

impl Db {
    /// Active policy rows sorted numerically by priority.
    pub async fn policies(&self) -> Result<Vec<PolicyRow>, DbError> {
        let t = table_def("policy")?;
        // Every column but `comments` and `disable`, which the catalogue
        // keeps last; they fill the fields of `PolicyRow` in this order.
        let cols = &t.columns[..t.columns.len() - 2];
        let sql = format!(
            "SELECT {} FROM \"policy\" WHERE {ACTIVE} ORDER BY {}",
            col_list(cols),
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

    /// Decide a request that targets nodes before they are expanded, when
    /// the policy table allows it: see [`policy::evaluate_before_expansion`];
    /// None when a rule limited to a noderange needs the request's nodes.
    pub async fn authorize_before_expansion(
        &self,
        q: &PolicyQuery,
    ) -> Result<Option<PolicyDecision>, DbError> {
        let rows = self.policies().await?;
        Ok(policy::evaluate_before_expansion(&rows, q))
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
}
