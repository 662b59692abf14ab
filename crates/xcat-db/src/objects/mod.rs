//! xCAT's data objects over the tables: the one implementation of reading,
//! writing, renaming and removing objects of every type in [`spec::TYPES`],
//! which every object command uses.
//!
//! Reads resolve a node's attributes with group inheritance and templates
//! (as `nodels` does); a group's attributes are the rows named after it,
//! and its `members` are computed (static groups from `nodelist.groups`,
//! dynamic ones from their `wherevals`). Writes go to the column each
//! attribute maps to, one transaction for the whole request, and objects
//! given the same values share statements, so defining ten thousand nodes
//! costs a few statements per five hundred of them.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{Any, Transaction};

use crate::noderange::natural_cmp;
use crate::schema::{self, TableDef};
use crate::sql::table_def;
use crate::transaction::with_retries;
use crate::write::{delete_rows, set_rows};
use crate::{Attrs, Db, DbError};

pub mod filter;
pub mod nics;
pub mod rules;
pub mod spec;

pub use filter::Where;
pub use spec::{Attr, Kind, ObjType, SITE_OBJECT, TYPES};

/// Look an object type up by name.
pub fn obj_type(name: &str) -> Option<&'static ObjType> {
    TYPES.iter().find(|t| t.name == name)
}

impl ObjType {
    /// Every attribute name of the type, sorted, each once.
    pub fn attr_names(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self.attrs.iter().map(|a| a.name).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Is `name` an attribute of this type? (Every name is one of the site
    /// object, whose attributes are the `site` keys.)
    pub fn is_attr(&self, name: &str) -> bool {
        let base = nics::split_nic_attr(name).map_or(name, |(b, _)| b);
        self.kind == Kind::Site || self.attrs.iter().any(|a| a.name == base)
    }

    /// The column of `table` that holds the object's name.
    fn key_column(&self, table: &'static TableDef) -> &'static str {
        if table.name == self.table {
            self.key
        } else {
            table.keys[0]
        }
    }

    /// The definition of attribute `name` for an object whose other values
    /// are `known`: the first whose condition holds (or that has none).
    fn def_for(&self, name: &str, known: &Attrs) -> Option<&'static Attr> {
        let all: Vec<&'static Attr> = self.attrs.iter().filter(|a| a.name == name).collect();
        let holds = |a: &&'static Attr| match a.only_if {
            None => true,
            Some((k, v)) => known.get(k).is_some_and(|have| condition_holds(have, v)),
        };
        all.iter()
            .copied()
            .find(holds)
            .or_else(|| all.first().copied())
    }

    /// Does attribute `name` have a definition with a condition?
    pub fn is_conditional(&self, name: &str) -> bool {
        self.attrs
            .iter()
            .any(|a| a.name == name && a.only_if.is_some())
    }

    /// xCAT's only-if rule: an attribute whose every definition has a
    /// condition can be set only when one of them holds in `known` (the
    /// object's values, then its groups'). One message per such attribute,
    /// e.g. `Cannot set the attr='bmc' attribute unless mgt value is ipmi or
    /// openbmc.`
    pub fn unmet_conditions(&self, attrs: &Attrs, known: &Attrs) -> Vec<String> {
        let mut out = Vec::new();
        for name in attrs.keys() {
            let defs: Vec<&Attr> = self.attrs.iter().filter(|a| a.name == name).collect();
            let mut wanted: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            let mut settable = defs.is_empty();
            for d in &defs {
                match d.only_if {
                    None => settable = true,
                    Some((k, v)) if known.get(k).is_some_and(|h| condition_holds(h, v)) => {
                        settable = true
                    }
                    Some((k, v)) => wanted.entry(k).or_default().push(v),
                }
            }
            if settable {
                continue;
            }
            if let Some((k, mut values)) = wanted.into_iter().next() {
                values.sort_unstable();
                values.dedup();
                out.push(format!(
                    "Cannot set the attr='{name}' attribute unless {k} value is {}.",
                    values.join(" or ")
                ));
            }
        }
        out
    }

    /// The tables with rows named after a node: every node-keyed table,
    /// and the others the type's attributes live in.
    fn node_rows_tables(&self) -> Vec<&'static TableDef> {
        let mut v: Vec<&'static TableDef> = schema::TABLES
            .iter()
            .filter(|x| x.is_node_keyed())
            .collect();
        v.extend(self.tables().into_iter().filter(|x| !x.is_node_keyed()));
        v
    }

    /// The tables holding this type's attributes, each once, main table first.
    fn tables(&self) -> Vec<&'static TableDef> {
        let mut names = vec![self.table];
        for a in self.attrs {
            if !names.contains(&a.table) {
                names.push(a.table);
            }
        }
        names.into_iter().filter_map(schema::table).collect()
    }
}

/// Is `row` the one attribute `a` lives in (for an attribute of a two-key
/// table, the row whose second key holds the attribute's value)?
fn in_its_row(a: &Attr, row: &Attrs) -> bool {
    a.row
        .is_none_or(|(k, v)| row.get(k).map(String::as_str) == Some(v))
}

/// Does a condition's value `want` hold for the value `have`? As in xCAT,
/// it is a whole word of it (`mgt=ipmi` holds for `ipmi`, not `ipmi2`).
fn condition_holds(have: &str, want: &str) -> bool {
    have.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|w| w == want)
}

/// Attribute values from raw `(table, column)` values: the unconditional
/// attributes first, so an attribute with a condition (`mgt=ipmi`) is
/// judged against the object's own values.
fn apply_conditions(t: &ObjType, raw: RawValues) -> Attrs {
    let mut out = Attrs::new();
    for a in t.attrs.iter().filter(|a| a.only_if.is_none()) {
        if let Some(v) = raw.get(&a.slot()) {
            out.entry(a.name.to_string()).or_insert_with(|| v.clone());
        }
    }
    let mut conditional = Attrs::new();
    for a in t.attrs.iter().filter(|a| a.only_if.is_some()) {
        let (k, want) = a.only_if.expect("filtered");
        if !out.get(k).is_some_and(|have| condition_holds(have, want)) || out.contains_key(a.name) {
            continue;
        }
        if let Some(v) = raw.get(&a.slot()) {
            conditional
                .entry(a.name.to_string())
                .or_insert_with(|| v.clone());
        }
    }
    out.extend(conditional);
    out
}

/// Values as stored, by [`Attr::slot`].
type RawValues = HashMap<(&'static str, &'static str), String>;

/// One object to write: its name and the attributes to set (an empty value
/// clears the attribute).
pub type Change = (String, Attrs);

impl Db {
    /// Every object of type `t`, in natural order.
    pub async fn object_names(&self, t: &ObjType) -> Result<Vec<String>, DbError> {
        let mut names: Vec<String> = match t.kind {
            Kind::Site => vec![SITE_OBJECT.to_string()],
            Kind::Node => self.nodes().await?.sorted().map(str::to_string).collect(),
            Kind::Group => {
                let mut set: HashSet<String> = self.keys_of(t.table, t.key).await?;
                let nodes = self.nodes().await?;
                for n in nodes.sorted() {
                    for g in nodes.groups_of(n).unwrap_or("").split(',') {
                        let g = g.trim();
                        if !g.is_empty() && !set.contains(g) {
                            set.insert(g.to_string());
                        }
                    }
                }
                set.into_iter().collect()
            }
            Kind::Plain => self.keys_of(t.table, t.key).await?.into_iter().collect(),
        };
        names.sort_by(|a, b| natural_cmp(a, b));
        Ok(names)
    }

    /// The distinct values of `col` over the active rows of `table`.
    async fn keys_of(&self, table: &str, col: &str) -> Result<HashSet<String>, DbError> {
        Ok(self
            .rows(table)
            .await?
            .into_iter()
            .filter_map(|mut r| r.remove(col))
            .collect())
    }

    /// The attributes of objects `names` of type `t` (set values only), in
    /// the order given; a node's are resolved with inheritance and
    /// templates, a group's carry its computed `members`.
    pub async fn object_attrs(&self, t: &ObjType, names: &[String]) -> Result<Vec<Attrs>, DbError> {
        match t.kind {
            Kind::Site => {
                let site: Attrs = self
                    .rows("site")
                    .await?
                    .into_iter()
                    .filter_map(|mut r| Some((r.remove("key")?, r.remove("value")?)))
                    .collect();
                Ok(names.iter().map(|_| site.clone()).collect())
            }
            Kind::Node => {
                let mut v = self.node_objects(t, names).await?;
                for (name, attrs) in names.iter().zip(v.iter_mut()) {
                    nics::expand(attrs, Some(name));
                }
                Ok(v)
            }
            Kind::Group => {
                let mut v = self.stored_objects(t, names).await?;
                for (name, attrs) in names.iter().zip(v.iter_mut()) {
                    let members = self.group_members(attrs, name).await?;
                    if !members.is_empty() {
                        attrs.insert("members".into(), members.join(","));
                    }
                    nics::expand(attrs, None);
                }
                Ok(v)
            }
            Kind::Plain => self.stored_objects(t, names).await,
        }
    }

    /// The values stored under the objects' own names (no inheritance):
    /// what `chdef -p`/`-m` edit.
    pub async fn own_attrs(&self, t: &ObjType, names: &[String]) -> Result<Vec<Attrs>, DbError> {
        match t.kind {
            Kind::Node | Kind::Group => self.stored_objects(t, names).await,
            _ => self.object_attrs(t, names).await,
        }
    }

    /// Nodes' attributes: node-keyed tables with group inheritance and
    /// templates; the others (`switches`, `ppchcp`, keyed by a device name
    /// that is the node's own) from the node's own rows.
    async fn node_objects(&self, t: &ObjType, names: &[String]) -> Result<Vec<Attrs>, DbError> {
        let (inherited, own): (Vec<_>, Vec<_>) =
            t.tables().into_iter().partition(|x| x.is_node_keyed());
        let mut raw = self.own_rows(t, names, &own).await?;
        for table in inherited {
            let defs: Vec<&'static Attr> =
                t.attrs.iter().filter(|a| a.table == table.name).collect();
            let cols: Vec<&str> = defs.iter().map(|a| a.column).collect();
            let vals = self.node_attrs(names, table.name, &cols).await?;
            for (i, n) in names.iter().enumerate() {
                let Some(a) = vals.get(n) else { continue };
                for def in &defs {
                    if let Some(v) = a.get(def.column) {
                        raw[i].insert(def.slot(), v.clone());
                    }
                }
            }
        }
        Ok(raw.into_iter().map(|r| apply_conditions(t, r)).collect())
    }

    /// Attributes from the rows keyed by each object's name.
    async fn stored_objects(&self, t: &ObjType, names: &[String]) -> Result<Vec<Attrs>, DbError> {
        let raw = self.own_rows(t, names, &t.tables()).await?;
        Ok(raw.into_iter().map(|r| apply_conditions(t, r)).collect())
    }

    /// The raw values of `tables` in the rows keyed by each object's name,
    /// one map per name in order.
    async fn own_rows(
        &self,
        t: &ObjType,
        names: &[String],
        tables: &[&'static TableDef],
    ) -> Result<Vec<RawValues>, DbError> {
        let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
        let mut raw: Vec<RawValues> = vec![HashMap::new(); names.len()];
        let index: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        for &table in tables {
            let key = t.key_column(table);
            let defs: Vec<&'static Attr> =
                t.attrs.iter().filter(|a| a.table == table.name).collect();
            for row in self.rows(table.name).await? {
                let Some(name) = row.get(key).filter(|k| wanted.contains(k.as_str())) else {
                    continue;
                };
                let i = index[name.as_str()];
                for def in defs.iter().filter(|d| in_its_row(d, &row)) {
                    if let Some(v) = row.get(def.column) {
                        raw[i].entry(def.slot()).or_insert_with(|| v.clone());
                    }
                }
            }
        }
        Ok(raw)
    }

    /// A group's members: the nodes listing it in `nodelist.groups`, or for
    /// a dynamic group the nodes its `wherevals` select.
    async fn group_members(&self, group: &Attrs, name: &str) -> Result<Vec<String>, DbError> {
        if group.get("grouptype").map(String::as_str) != Some("dynamic") {
            return Ok(self.nodes().await?.group_members(name));
        }
        let filters = Where::parse_list(group.get("wherevals").map_or("", String::as_str))
            .map_err(DbError::Invalid)?;
        self.nodes_where(&filters).await
    }

    /// Every node whose resolved attributes pass all `filters`.
    pub async fn nodes_where(&self, filters: &[Where]) -> Result<Vec<String>, DbError> {
        let node = obj_type("node").expect("node type");
        let all = self.object_names(node).await?;
        if filters.is_empty() {
            return Ok(all);
        }
        let attrs = self.node_objects(node, &all).await?;
        Ok(all
            .into_iter()
            .zip(attrs)
            .filter(|(_, a)| filters.iter().all(|f| f.matches(a)))
            .map(|(n, _)| n)
            .collect())
    }

    /// Do these objects exist? (One flag per name, in order.)
    pub async fn objects_exist(&self, t: &ObjType, names: &[String]) -> Result<Vec<bool>, DbError> {
        let known: HashSet<String> = self.object_names(t).await?.into_iter().collect();
        Ok(names.iter().map(|n| known.contains(n)).collect())
    }

    /// Changes with their `attr.<nic>` attributes folded into the stored
    /// per-interface columns, over the objects' own values.
    async fn fold_nic_attrs(
        &self,
        t: &ObjType,
        changes: &[Change],
    ) -> Result<Vec<Change>, DbError> {
        let names: Vec<String> = changes.iter().map(|(n, _)| n.clone()).collect();
        let own = match t.kind {
            Kind::Node | Kind::Group => self.stored_objects(t, &names).await?,
            _ => vec![Attrs::new(); names.len()],
        };
        Ok(changes
            .iter()
            .zip(own)
            .map(|((n, a), own)| {
                let mut a = a.clone();
                nics::collapse(&mut a, &own);
                (n.clone(), a)
            })
            .collect())
    }

    /// What an only-if condition of each change is judged against: the
    /// change's own values, then (with `stored`) the object's resolved
    /// ones, then for a node the attributes of the groups the change names.
    pub async fn condition_context(
        &self,
        t: &ObjType,
        changes: &[Change],
        stored: bool,
    ) -> Result<Vec<Attrs>, DbError> {
        let names: Vec<String> = changes.iter().map(|(n, _)| n.clone()).collect();
        let mut known = if stored && t.kind != Kind::Site {
            self.object_attrs(t, &names).await?
        } else {
            vec![Attrs::new(); names.len()]
        };
        let groups_of = |attrs: &Attrs| match attrs.get("groups") {
            Some(g) if t.kind == Kind::Node => split_list(g),
            _ => Vec::new(),
        };
        // Every group the changes name, read in one pass over the tables.
        let mut group_names: Vec<String> = changes.iter().flat_map(|(_, a)| groups_of(a)).collect();
        group_names.sort_unstable();
        group_names.dedup();
        let group_attrs: HashMap<String, Attrs> = if group_names.is_empty() {
            HashMap::new()
        } else {
            let group = obj_type("group").expect("group type");
            let attrs = self.stored_objects(group, &group_names).await?;
            group_names.into_iter().zip(attrs).collect()
        };
        for ((_, attrs), k) in changes.iter().zip(known.iter_mut()) {
            k.extend(attrs.iter().map(|(a, v)| (a.clone(), v.clone())));
            for g in groups_of(attrs) {
                for (a, v) in &group_attrs[&g] {
                    k.entry(a.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        Ok(known)
    }

    /// Write `changes` to objects of type `t`, creating those that do not
    /// exist, in one transaction. A group's `members` attribute sets its
    /// member list (in the members' `nodelist.groups`).
    pub async fn write_objects(&self, t: &ObjType, changes: &[Change]) -> Result<(), DbError> {
        let folded;
        let changes = if changes
            .iter()
            .any(|(_, a)| a.keys().any(|k| nics::split_nic_attr(k).is_some()))
        {
            folded = self.fold_nic_attrs(t, changes).await?;
            &folded
        } else {
            changes
        };
        let plan = self.plan_writes(t, changes).await?;
        with_retries(20, 5, || self.apply_plan(&plan)).await
    }

    /// The statements of a write, grouped: per table and identical values,
    /// the names to set them on.
    async fn plan_writes(&self, t: &ObjType, changes: &[Change]) -> Result<Plan, DbError> {
        let mut plan = Plan::default();
        let needs_known = changes
            .iter()
            .any(|(_, a)| a.keys().any(|k| t.is_conditional(k)));
        let names: Vec<String> = changes.iter().map(|(n, _)| n.clone()).collect();
        let known = if needs_known {
            self.condition_context(t, changes, true).await?
        } else {
            vec![Attrs::new(); names.len()]
        };
        let main = table_def(t.table)?;
        if t.kind != Kind::Site {
            plan.add(main, t.key, Vec::new(), names.iter().cloned());
        }
        for ((name, attrs), mut known) in changes.iter().zip(known) {
            known.extend(attrs.iter().map(|(k, v)| (k.clone(), v.clone())));
            let mut per_row: BTreeMap<RowOf, Vec<(&'static str, String)>> = BTreeMap::new();
            for (attr, value) in attrs {
                if t.kind == Kind::Site {
                    plan.add(main, "key", vec![("value", value.clone())], [attr.clone()]);
                    continue;
                }
                if t.kind == Kind::Group && attr == "members" {
                    plan.members.push((name.clone(), value.clone()));
                    continue;
                }
                let def = t.def_for(attr, &known).ok_or_else(|| {
                    DbError::Invalid(format!(
                        "'{attr}' is not a valid attribute name for an object type of '{}'.",
                        t.name
                    ))
                })?;
                per_row
                    .entry((def.table, def.row))
                    .or_default()
                    .push((def.column, value.clone()));
            }
            for ((table, row), values) in per_row {
                let td = table_def(table)?;
                plan.add_in_row(td, t.key_column(td), row, values, [name.clone()]);
            }
        }
        if !plan.members.is_empty() {
            plan.member_groups = self.membership_changes(&plan.members).await?;
        }
        Ok(plan)
    }

    /// The new `nodelist.groups` of every node whose membership the
    /// `(group, members)` assignments change.
    async fn membership_changes(
        &self,
        assignments: &[(String, String)],
    ) -> Result<BTreeMap<String, String>, DbError> {
        let nodes = self.nodes().await?;
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let current = |n: &str, groups: &BTreeMap<String, Vec<String>>| -> Vec<String> {
            groups
                .get(n)
                .cloned()
                .unwrap_or_else(|| split_list(nodes.groups_of(n).unwrap_or("")))
        };
        for (group, members) in assignments {
            let wanted: HashSet<String> = split_list(members).into_iter().collect();
            for old in nodes.group_members(group) {
                if !wanted.contains(&old) {
                    let mut g = current(&old, &groups);
                    g.retain(|x| x != group);
                    groups.insert(old, g);
                }
            }
            for n in &wanted {
                let mut g = current(n, &groups);
                if !g.contains(group) {
                    g.push(group.clone());
                }
                groups.insert(n.clone(), g);
            }
        }
        Ok(groups.into_iter().map(|(n, g)| (n, g.join(","))).collect())
    }

    async fn apply_plan(&self, plan: &Plan) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        apply_in(&mut tx, plan).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Remove objects of type `t` and every row keyed by their names (a
    /// node's rows in every node-keyed table; a group's rows and its name in
    /// its members' `nodelist.groups`).
    pub async fn remove_objects(&self, t: &ObjType, names: &[String]) -> Result<(), DbError> {
        let member_groups = if t.kind == Kind::Group {
            let empty: Vec<(String, String)> =
                names.iter().map(|g| (g.clone(), String::new())).collect();
            self.membership_changes(&empty).await?
        } else {
            BTreeMap::new()
        };
        let tables: Vec<&'static TableDef> = match t.kind {
            Kind::Node => t.node_rows_tables(),
            _ => t.tables(),
        };
        let plan = Plan {
            member_groups,
            ..Plan::default()
        };
        with_retries(20, 5, || async {
            let mut tx = self.begin_write().await?;
            for table in &tables {
                delete_rows(&mut tx, table, t.key_column(table), names).await?;
            }
            apply_in(&mut tx, &plan).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Rename one object: its key in every table holding its attributes (for
    /// a node, every node-keyed table).
    pub async fn rename_object(&self, t: &ObjType, from: &str, to: &str) -> Result<(), DbError> {
        let tables: Vec<&'static TableDef> = match t.kind {
            Kind::Node => t.node_rows_tables(),
            Kind::Plain => t.tables(),
            _ => {
                return Err(DbError::Invalid(format!(
                    "objects of type '{}' cannot be renamed",
                    t.name
                )))
            }
        };
        with_retries(20, 5, || async {
            let mut tx = self.begin_write().await?;
            for table in &tables {
                let key = t.key_column(table);
                crate::write::rename_key(&mut tx, table, key, from, to).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}

/// Run a plan's statements inside `tx`.
async fn apply_in(tx: &mut Transaction<'static, Any>, plan: &Plan) -> Result<(), DbError> {
    for ((table, key, row, values), names) in &plan.groups {
        let td = table_def(table)?;
        let v: Vec<(&'static str, &str)> = values.iter().map(|(c, v)| (*c, v.as_str())).collect();
        set_rows(tx, td, (key, *row), names, &v).await?;
    }
    let nodelist = table_def("nodelist")?;
    let mut by_value: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (n, g) in &plan.member_groups {
        by_value.entry(g.as_str()).or_default().push(n.clone());
    }
    for (g, names) in by_value {
        set_rows(tx, nodelist, ("node", None), &names, &[("groups", g)]).await?;
    }
    Ok(())
}

/// The items of a comma-separated list, trimmed, empty ones dropped.
pub fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A table and, for a two-key table, the second key's column and value.
type RowOf = (&'static str, Option<(&'static str, &'static str)>);

/// One statement group of a write: table, key column, second key and the
/// values set.
type Statement = (
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
    Vec<(&'static str, String)>,
);

/// The statements of one write.
#[derive(Default)]
struct Plan {
    /// (table, key column, second key, values) -> the names to set them on.
    groups: BTreeMap<Statement, Vec<String>>,
    /// `(group, members)` assignments.
    members: Vec<(String, String)>,
    /// Nodes whose `nodelist.groups` the assignments change, with the new value.
    member_groups: BTreeMap<String, String>,
}

impl Plan {
    fn add(
        &mut self,
        table: &'static TableDef,
        key: &'static str,
        values: Vec<(&'static str, String)>,
        names: impl IntoIterator<Item = String>,
    ) {
        self.add_in_row(table, key, None, values, names)
    }

    fn add_in_row(
        &mut self,
        table: &'static TableDef,
        key: &'static str,
        row: Option<(&'static str, &'static str)>,
        mut values: Vec<(&'static str, String)>,
        names: impl IntoIterator<Item = String>,
    ) {
        values.sort();
        self.groups
            .entry((table.name, key, row, values))
            .or_default()
            .extend(names);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attribute_maps_to_a_catalogue_column() {
        for t in TYPES {
            let main = schema::table(t.table).unwrap_or_else(|| panic!("{}", t.table));
            assert!(main.has_column(t.key), "{}.{}", t.table, t.key);
            for a in t.attrs {
                let table = schema::table(a.table).unwrap_or_else(|| panic!("{}", a.table));
                assert!(
                    table.has_column(a.column),
                    "{}: {}.{}",
                    t.name,
                    a.table,
                    a.column
                );
                if let Some((k, _)) = a.only_if {
                    assert!(t.is_attr(k), "{}: condition {k}", t.name);
                }
            }
        }
        assert_eq!(obj_type("node").unwrap().kind, Kind::Node);
        assert!(obj_type("node").unwrap().is_attr("mgt"));
        assert!(!obj_type("node").unwrap().is_attr("nosuch"));
    }

    #[test]
    fn conditional_attributes_follow_their_condition() {
        let node = obj_type("node").unwrap();
        let mut known = Attrs::new();
        known.insert("mgt".into(), "ipmi".into());
        assert_eq!(node.def_for("bmc", &known).unwrap().table, "ipmi");
        let raw: HashMap<(&'static str, &'static str), String> = [
            (("nodehm", "mgt"), "kvm".to_string()),
            (("ipmi", "bmc"), "10.0.0.1".to_string()),
        ]
        .into_iter()
        .collect();
        let a = apply_conditions(node, raw);
        assert_eq!(a.get("mgt").map(String::as_str), Some("kvm"));
        assert!(!a.contains_key("bmc"), "bmc is an ipmi attribute: {a:?}");
    }
}
