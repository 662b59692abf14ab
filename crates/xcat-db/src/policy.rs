//! Policy rows and xCAT's matching rules.
//!
//! [`evaluate`] is pure: the caller passes the active rows (as [`crate::Db::policies`]
//! returns them) and a `covers` callback for the `noderange` column, so the
//! rules can be tested without a database and the daemon can decide how to
//! expand rule noderanges (e.g. with [`crate::Db::policy_noderange_covers`]
//! precomputed, since the callback is synchronous).

use std::cmp::Ordering;

use regex::Regex;

/// One active row of the `policy` table.
#[derive(Debug, Clone, Default)]
pub struct PolicyRow {
    pub priority: String,
    pub name: Option<String>,
    pub host: Option<String>,
    pub commands: Option<String>,
    pub noderange: Option<String>,
    pub parameters: Option<String>,
    pub time: Option<String>,
    pub rule: Option<String>,
}

/// What a request looks like to the policy engine.
#[derive(Debug, Clone, Default)]
pub struct PolicyQuery {
    /// Certificate CN; None when the peer sent no certificate.
    pub user: Option<String>,
    /// The client's short hostname (or address text when it has no name).
    pub host: Option<String>,
    pub command: String,
    pub args: Vec<String>,
    /// Nodes the request targets (already expanded).
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyDecision {
    /// Allowed by the row with this priority; `trusted` when its rule is `trusted`.
    Allow { priority: String, trusted: bool },
    /// Denied by the row with this priority (rule not allow/accept/trusted).
    Deny { priority: String },
    /// No row matched.
    NoMatch,
}

impl PolicyDecision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, PolicyDecision::Allow { .. })
    }
}

/// The numeric value of a priority text (xCAT compares priorities as numbers:
/// `1.2 < 1.10` is false, `1.10 < 1.2` is true). Non-numbers sort last.
pub fn priority_value(p: &str) -> f64 {
    p.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .unwrap_or(f64::INFINITY)
}

/// Sort rows by numeric priority (stable: equal priorities keep their order).
pub fn sort_rows(rows: &mut [PolicyRow]) {
    rows.sort_by(|a, b| {
        priority_value(&a.priority)
            .partial_cmp(&priority_value(&b.priority))
            .unwrap_or(Ordering::Equal)
    });
}

fn blank(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A user name as an identity: an empty or blank name (an empty
/// `<username>` from a trusted peer, a certificate whose CN is empty) is no
/// identity at all, so it can never pass as "any authenticated user".
pub fn identity_name(name: Option<&str>) -> Option<&str> {
    name.filter(|n| !n.trim().is_empty())
}

/// Does this row match the request (ignoring its rule)?
pub fn row_matches(
    row: &PolicyRow,
    q: &PolicyQuery,
    covers: &dyn Fn(&str, &[String]) -> bool,
) -> bool {
    if !row_matches_except_nodes(row, q) {
        return false;
    }
    // noderange: every requested node must be inside the rule's noderange.
    // A rule limited to nodes never matches a request without nodes.
    if let Some(nr) = blank(&row.noderange) {
        if q.nodes.is_empty() || !covers(nr, &q.nodes) {
            return false;
        }
    }
    true
}

/// Does this row match the request in everything but its `noderange`?
fn row_matches_except_nodes(row: &PolicyRow, q: &PolicyQuery) -> bool {
    // name: empty = anyone (even without a certificate); `*` = any
    // authenticated user; otherwise exactly that user.
    let user = identity_name(q.user.as_deref());
    let name_ok = match blank(&row.name) {
        None => true,
        Some("*") => user.is_some(),
        Some(n) => user == Some(n),
    };
    if !name_ok {
        return false;
    }
    // host: empty or `*` = any; otherwise the client's short hostname.
    match blank(&row.host) {
        None | Some("*") => {}
        Some(h) => {
            let Some(qh) = q.host.as_deref() else {
                return false;
            };
            let short = |s: &str| s.split('.').next().unwrap_or(s).to_string();
            // Addresses are compared whole; names by their short form.
            let same = qh == h
                || (!qh.contains(':')
                    && !qh.chars().all(|c| c.is_ascii_digit() || c == '.')
                    && short(qh) == short(h));
            if !same {
                return false;
            }
        }
    }
    // commands: empty or `*` = any; otherwise a comma list, exact names.
    match blank(&row.commands) {
        None | Some("*") => {}
        Some(list) => {
            if !list.split(',').map(str::trim).any(|c| c == q.command) {
                return false;
            }
        }
    }
    // parameters: a regular expression searched in the joined arguments.
    if let Some(p) = blank(&row.parameters) {
        let joined = q.args.join(" ");
        match Regex::new(p) {
            Ok(re) => {
                if !re.is_match(&joined) {
                    return false;
                }
            }
            // A rule that cannot be understood never matches (it cannot grant).
            Err(_) => return false,
        }
    }
    true
}

/// What a matching row decides.
fn decision(row: &PolicyRow) -> PolicyDecision {
    let rule = blank(&row.rule).unwrap_or("").to_ascii_lowercase();
    match rule.as_str() {
        "allow" | "accept" => PolicyDecision::Allow {
            priority: row.priority.clone(),
            trusted: false,
        },
        "trusted" => PolicyDecision::Allow {
            priority: row.priority.clone(),
            trusted: true,
        },
        _ => PolicyDecision::Deny {
            priority: row.priority.clone(),
        },
    }
}

fn sorted(rows: &[PolicyRow]) -> Vec<&PolicyRow> {
    let mut sorted: Vec<&PolicyRow> = rows.iter().collect();
    sorted.sort_by(|a, b| {
        priority_value(&a.priority)
            .partial_cmp(&priority_value(&b.priority))
            .unwrap_or(Ordering::Equal)
    });
    sorted
}

/// Decide a request: active rows sorted numerically by priority, the first
/// matching row decides; its rule `allow`, `accept` or `trusted`
/// (case-insensitive) allows, anything else denies; no match -> `NoMatch`
/// (which callers must treat as a denial).
///
/// `covers(rule_noderange, nodes)` must say whether all `nodes` are inside the
/// expansion of `rule_noderange` (an unexpandable rule noderange covers nothing).
/// `rows` need not be sorted; the `time` column is not interpreted.
pub fn evaluate(
    rows: &[PolicyRow],
    q: &PolicyQuery,
    covers: impl Fn(&str, &[String]) -> bool,
) -> PolicyDecision {
    sorted(rows)
        .into_iter()
        .find(|row| row_matches(row, q, &covers))
        .map_or(PolicyDecision::NoMatch, decision)
}

/// Decide a request that targets nodes *before* its noderange is expanded,
/// when no row limited to a noderange can change the outcome; None when
/// one can (the nodes are needed). `q.nodes` is ignored.
///
/// This is what keeps a peer that no rule allows from making the daemon
/// expand anything: rows are walked in priority order as by [`evaluate`];
/// a node-limited row that could match and would allow needs the nodes; a
/// node-limited row that would deny does not (denied by it or by a later
/// row, the request is denied), except in front of a row that would allow
/// without nodes. A denial found this way names the first row that denies
/// whatever the nodes (or none), which may be a later row than [`evaluate`]
/// would name.
pub fn evaluate_before_expansion(rows: &[PolicyRow], q: &PolicyQuery) -> Option<PolicyDecision> {
    let mut node_limited_deny = false;
    for row in sorted(rows) {
        if !row_matches_except_nodes(row, q) {
            continue;
        }
        let d = decision(row);
        match (blank(&row.noderange).is_some(), d.is_allowed()) {
            (true, true) => return None,
            (true, false) => node_limited_deny = true,
            (false, true) if node_limited_deny => return None,
            (false, _) => return Some(d),
        }
    }
    Some(PolicyDecision::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(prio: &str, name: &str, rule: &str) -> PolicyRow {
        PolicyRow {
            priority: prio.into(),
            name: (!name.is_empty()).then(|| name.to_string()),
            rule: Some(rule.into()),
            ..Default::default()
        }
    }

    fn q(user: Option<&str>, cmd: &str, args: &[&str]) -> PolicyQuery {
        PolicyQuery {
            user: user.map(str::to_string),
            host: Some("client1".into()),
            command: cmd.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            nodes: vec![],
        }
    }

    fn no_nodes(_: &str, _: &[String]) -> bool {
        false
    }

    #[test]
    fn priorities_compare_numerically() {
        assert!(priority_value("1.10") < priority_value("1.2"));
        assert!(priority_value("2") < priority_value("10"));
        assert!(priority_value("x") > priority_value("1000"));
    }

    #[test]
    fn defaults_and_names() {
        let rows = vec![row("1", "root", "allow"), row("1.2", "mn", "trusted")];
        assert_eq!(
            evaluate(&rows, &q(Some("root"), "nodels", &[]), no_nodes),
            PolicyDecision::Allow {
                priority: "1".into(),
                trusted: false
            }
        );
        assert_eq!(
            evaluate(&rows, &q(Some("mn"), "nodels", &[]), no_nodes),
            PolicyDecision::Allow {
                priority: "1.2".into(),
                trusted: true
            }
        );
        assert_eq!(
            evaluate(&rows, &q(Some("bob"), "nodels", &[]), no_nodes),
            PolicyDecision::NoMatch
        );
        assert_eq!(
            evaluate(&rows, &q(None, "nodels", &[]), no_nodes),
            PolicyDecision::NoMatch
        );
    }

    #[test]
    fn star_needs_a_certificate_and_empty_matches_anyone() {
        let rows = vec![row("5", "*", "allow"), row("6", "", "deny")];
        assert!(evaluate(&rows, &q(Some("bob"), "x", &[]), no_nodes).is_allowed());
        assert_eq!(
            evaluate(&rows, &q(None, "x", &[]), no_nodes),
            PolicyDecision::Deny {
                priority: "6".into()
            }
        );
    }

    #[test]
    fn host_commands_parameters_noderange() {
        let mut r = row("3", "bob", "Accept");
        r.host = Some("client1".into());
        r.commands = Some("nodels, tabdump".into());
        r.parameters = Some("^site$|-d".into());
        r.noderange = Some("rack1".into());
        let rows = vec![r, row("4", "bob", "deny")];
        let covers =
            |nr: &str, nodes: &[String]| nr == "rack1" && nodes.iter().all(|n| n.starts_with('r'));
        let mut query = q(Some("bob"), "tabdump", &["site"]);
        query.nodes = vec!["r1".into()];
        assert!(evaluate(&rows, &query, covers).is_allowed());
        query.nodes = vec!["r1".into(), "x".into()];
        assert!(!evaluate(&rows, &query, covers).is_allowed());
        // A noderange-limited rule does not match a request without nodes.
        query.nodes = vec![];
        assert!(!evaluate(&rows, &query, |_: &str, _: &[String]| true).is_allowed());
        query.nodes = vec!["r1".into()];
        query.args = vec!["nodelist".into()];
        assert_eq!(
            evaluate(&rows, &query, |_: &str, _: &[String]| true),
            PolicyDecision::Deny {
                priority: "4".into()
            }
        );
        query.args = vec!["-d".into(), "x".into()];
        assert!(evaluate(&rows, &query, |_: &str, _: &[String]| true).is_allowed());
        query.command = "chtab".into();
        assert!(!evaluate(&rows, &query, |_: &str, _: &[String]| true).is_allowed());
        query.command = "tabdump".into();
        query.host = Some("client2.example.com".into());
        assert!(!evaluate(&rows, &query, |_: &str, _: &[String]| true).is_allowed());
        query.host = Some("client1.example.com".into());
        assert!(evaluate(&rows, &query, |_: &str, _: &[String]| true).is_allowed());
    }

    fn limited(prio: &str, name: &str, noderange: &str, rule: &str) -> PolicyRow {
        PolicyRow {
            noderange: Some(noderange.into()),
            ..row(prio, name, rule)
        }
    }

    #[test]
    fn decided_before_expansion_unless_a_node_limited_row_could_change_it() {
        let defaults = vec![row("1", "root", "allow"), row("1.2", "mgmt", "trusted")];
        // No rule names a peer without a certificate: denied, nothing expanded.
        assert_eq!(
            evaluate_before_expansion(&defaults, &q(None, "nodels", &[])),
            Some(PolicyDecision::NoMatch)
        );
        assert!(
            evaluate_before_expansion(&defaults, &q(Some("root"), "nodels", &[]))
                .is_some_and(|d| d.is_allowed())
        );
        let bob = vec![limited("1", "bob", "rack1", "allow"), row("2", "", "deny")];
        assert_eq!(
            evaluate_before_expansion(&bob, &q(Some("alice"), "nodels", &[])),
            Some(PolicyDecision::Deny {
                priority: "2".into()
            })
        );
        assert_eq!(
            evaluate_before_expansion(&bob, &q(Some("bob"), "nodels", &[])),
            None,
            "bob's rule may allow: the nodes decide"
        );
        let fenced = vec![limited("1", "", "mgmt", "deny"), row("2", "*", "allow")];
        assert_eq!(
            evaluate_before_expansion(&fenced, &q(Some("bob"), "nodels", &[])),
            None,
            "a node-limited denial in front of an allow: the nodes decide"
        );
        assert_eq!(
            evaluate_before_expansion(&fenced, &q(None, "nodels", &[])),
            Some(PolicyDecision::NoMatch)
        );
    }

    #[test]
    fn an_empty_name_is_no_identity() {
        let rows = vec![row("1", "*", "allow")];
        for blank in ["", "  "] {
            assert_eq!(
                evaluate(&rows, &q(Some(blank), "x", &[]), no_nodes),
                PolicyDecision::NoMatch,
                "{blank:?}"
            );
        }
        assert_eq!(identity_name(Some(" ")), None);
        assert_eq!(identity_name(Some("bob")), Some("bob"));
    }
}
