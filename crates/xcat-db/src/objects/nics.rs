//! Per-interface node attributes (`nicips.eth0=10.1.0.5`): xCAT keeps all
//! interfaces of one attribute in one `nics` column, as
//! `eth0!10.1.0.5,ib0!10.2.0.5`, and the object commands show and take one
//! `attr.<nic>` attribute per interface.

use crate::template;
use crate::Attrs;

/// The attributes stored per interface: the `nics` table's columns other
/// than its key and bookkeeping (all named `nic...`).
pub fn nic_attrs() -> impl Iterator<Item = &'static str> {
    crate::schema::table("nics")
        .map_or(&[][..], |t| t.columns)
        .iter()
        .copied()
        .filter(|c| c.starts_with("nic"))
}

/// `nicips.eth0` -> `("nicips", "eth0")`, for per-interface attributes only.
pub fn split_nic_attr(name: &str) -> Option<(&str, &str)> {
    let (base, nic) = name.split_once('.')?;
    (nic_attrs().any(|a| a == base) && !nic.is_empty()).then_some((base, nic))
}

/// The `(nic, value)` items of a stored value, in order.
fn items(stored: &str) -> Vec<(String, String)> {
    stored
        .split(',')
        .filter_map(|item| item.split_once('!'))
        .map(|(n, v)| (n.trim().to_string(), v.to_string()))
        .collect()
}

/// Show each stored per-interface value as its `attr.<nic>` attributes;
/// for a node (`node` given) each interface's value is evaluated as a
/// template against the node name, as a group's `|...|...|` is.
pub fn expand(attrs: &mut Attrs, node: Option<&str>) {
    for base in nic_attrs() {
        let Some(stored) = attrs.remove(base) else {
            continue;
        };
        for (nic, v) in items(&stored) {
            let v = match node {
                Some(n) => template::evaluate(&v, n),
                None => Some(v),
            };
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                attrs.insert(format!("{base}.{nic}"), v);
            }
        }
    }
}

/// Fold `attr.<nic>` attributes of a change into their stored column value,
/// on top of the object's `own` stored value: a given interface's value
/// replaces its old one, an empty one removes the interface.
pub fn collapse(change: &mut Attrs, own: &Attrs) {
    for base in nic_attrs() {
        let given: Vec<(String, String)> = change
            .iter()
            .filter_map(|(k, v)| {
                let (b, nic) = split_nic_attr(k)?;
                (b == base).then(|| (nic.to_string(), v.clone()))
            })
            .collect();
        if given.is_empty() {
            continue;
        }
        let start = change
            .get(base)
            .or_else(|| own.get(base))
            .map_or_else(Vec::new, |s| items(s));
        let mut merged = start;
        for (nic, v) in given {
            change.remove(&format!("{base}.{nic}"));
            match merged.iter_mut().find(|(n, _)| *n == nic) {
                Some(slot) if v.is_empty() => slot.1.clear(),
                Some(slot) => slot.1 = v,
                None if v.is_empty() => {}
                None => merged.push((nic, v)),
            }
        }
        let joined: Vec<String> = merged
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| format!("{n}!{v}"))
            .collect();
        change.insert(base.to_string(), joined.join(","));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Attrs {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn interfaces_fold_into_one_column_and_back() {
        let own = attrs(&[("nicips", "eth0!10.0.0.1,ib0!10.1.0.1")]);
        let mut change = attrs(&[("nicips.ib0", "10.1.0.9"), ("nicips.eth1", "10.2.0.1")]);
        collapse(&mut change, &own);
        assert_eq!(
            change,
            attrs(&[("nicips", "eth0!10.0.0.1,ib0!10.1.0.9,eth1!10.2.0.1")])
        );
        let mut removed = attrs(&[("nicips.eth0", "")]);
        collapse(&mut removed, &own);
        assert_eq!(removed, attrs(&[("nicips", "ib0!10.1.0.1")]));
        let mut shown = change.clone();
        expand(&mut shown, None);
        assert_eq!(
            shown.get("nicips.ib0").map(String::as_str),
            Some("10.1.0.9")
        );
        assert!(!shown.contains_key("nicips"));
    }

    #[test]
    fn a_group_template_per_interface_is_evaluated_per_node() {
        let mut a = attrs(&[("nicips", "eth1!|\\D+(\\d+)|172.20.254.($1%100)|")]);
        expand(&mut a, Some("sn07"));
        assert_eq!(
            a.get("nicips.eth1").map(String::as_str),
            Some("172.20.254.7")
        );
        assert_eq!(split_nic_attr("nicips.eth0"), Some(("nicips", "eth0")));
        assert_eq!(split_nic_attr("bmc.eth0"), None);
    }
}
