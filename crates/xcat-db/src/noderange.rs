//! The noderange grammar, as a pure parser and evaluator.
//!
//! A noderange is parsed once into an [`Expr`], then evaluated against a
//! [`Universe`]: every known node, group membership and whatever node
//! attributes the expression compares (see [`Expr::attr_refs`]). The universe
//! is built once per expansion, so evaluating never queries anything per atom
//! and stays fast for 100,000 nodes (sets are bitsets over node indices).
//!
//! Grammar (comma lowest, then `@`, commas inside `[]`, `{}`, `()` do not split):
//! ```text
//! list  := item (',' item)*           empty items are ignored
//! item  := ['-'] inter                '-' excludes, applied after the list
//! inter := atom ('@' atom)*           intersection
//! atom  := '(' list ')' | text
//! text  := node | group | /regex | table.col(==|=~|!=|!~)value
//!        | name+N | f[1-2]n[01-10,15] | a01-a10 | a01:a10
//! ```

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use regex::Regex;

mod names;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoderangeError {
    #[error("Invalid nodes and/or groups in noderange: {}", .0.join(","))]
    Invalid(Vec<String>),
    /// More unknown names than an error lists: the first ones, and how
    /// many more there were.
    #[error("Invalid nodes and/or groups in noderange: {} and {more} more", .shown.join(","))]
    InvalidMany { shown: Vec<String>, more: u64 },
    /// Malformed, or over [`Limits`]; the text is shortened for messages.
    #[error("Invalid noderange {0}: {1}")]
    Syntax(String, String),
}

/// What one expansion may cost. Its memory is bounded by the node set
/// whatever the noderange says (sets are bitsets over the known nodes,
/// generated names are made one at a time, unknown names are counted rather
/// than kept); this bounds its time, and with it what a request naming a
/// few million names can make the daemon do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most nodes one noderange may look at in all: a plain or generated
    /// name counts one, a group its members, a regular expression or an
    /// attribute test every known node (each scans them all).
    pub max_names: u64,
}

/// [`Limits::max_names`] unless configured: ten times a 100,000-node
/// cluster, about a tenth of a second of expansion.
pub const DEFAULT_MAX_NAMES: u64 = 1_000_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_names: DEFAULT_MAX_NAMES,
        }
    }
}

/// Unknown names an error lists; further ones are only counted.
const SHOWN_UNKNOWN: usize = 100;
/// Characters of a name or noderange a message shows.
const SHOWN_CHARS: usize = 128;

/// A parsed noderange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    exclude: bool,
    inter: Vec<Atom>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Paren(Expr),
    Text(String),
}

/// The names a noderange of new objects spells (`cn[01-64]`, `a01-a10`,
/// `n1,n2`), without looking anything up: `mkdef` names objects that do not
/// exist yet. Only names and name-generating forms are allowed; at most
/// `max` names.
pub fn literal_names(noderange: &str, max: u64) -> Result<Vec<String>, NoderangeError> {
    let expr = parse(noderange)?;
    let mut out = Vec::new();
    for item in &expr.items {
        let [Atom::Text(text)] = item.inter.as_slice() else {
            return Err(NoderangeError::Syntax(
                shorten(noderange),
                "only names and ranges can name new objects".into(),
            ));
        };
        if item.exclude || selector(text).is_some() {
            return Err(NoderangeError::Syntax(
                shorten(noderange),
                "only names and ranges can name new objects".into(),
            ));
        }
        let pattern = names::pattern(text).map_err(|m| NoderangeError::Syntax(shorten(text), m))?;
        let Some(p) = pattern else {
            out.push(text.clone());
            continue;
        };
        if p.count().saturating_add(out.len() as u64) > max {
            return Err(NoderangeError::Syntax(
                shorten(noderange),
                format!("more than {max} names"),
            ));
        }
        let _ = p.for_each(|n| {
            out.push(n.to_string());
            Ok::<(), ()>(())
        });
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|n| seen.insert(n.clone()));
    Ok(out)
}

/// Parse a noderange. Never panics; unbalanced brackets are a `Syntax` error.
pub fn parse(noderange: &str) -> Result<Expr, NoderangeError> {
    let chars: Vec<char> = noderange.chars().collect();
    let mut p = Parser {
        s: &chars,
        i: 0,
        src: noderange,
    };
    let e = p.list(0)?;
    if p.i < chars.len() {
        // Only a stray ')' stops the top-level list early.
        return Err(p.err("unbalanced parentheses: ')' without '('"));
    }
    Ok(e)
}

struct Parser<'a> {
    s: &'a [char],
    i: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn err(&self, msg: &str) -> NoderangeError {
        NoderangeError::Syntax(shorten(self.src), msg.to_string())
    }

    fn list(&mut self, depth: usize) -> Result<Expr, NoderangeError> {
        if depth > 100 {
            return Err(self.err("parentheses nested too deeply"));
        }
        let mut items = Vec::new();
        loop {
            match self.s.get(self.i) {
                None => break,
                Some(')') => {
                    if depth == 0 {
                        return Err(self.err("unbalanced parentheses: ')' without '('"));
                    }
                    break;
                }
                Some(',') => {
                    self.i += 1;
                    continue;
                }
                _ => {}
            }
            let exclude = if self.s.get(self.i) == Some(&'-') {
                self.i += 1;
                true
            } else {
                false
            };
            let mut inter = vec![self.atom(depth)?];
            while self.s.get(self.i) == Some(&'@') {
                self.i += 1;
                inter.push(self.atom(depth)?);
            }
            items.push(Item { exclude, inter });
            match self.s.get(self.i) {
                None | Some(')') | Some(',') => {}
                Some(c) => return Err(self.err(&format!("unexpected '{c}'"))),
            }
        }
        Ok(Expr { items })
    }

    fn atom(&mut self, depth: usize) -> Result<Atom, NoderangeError> {
        if self.s.get(self.i) == Some(&'(') {
            self.i += 1;
            let e = self.list(depth + 1)?;
            if self.s.get(self.i) != Some(&')') {
                return Err(self.err("unbalanced parentheses: '(' without ')'"));
            }
            self.i += 1;
            return Ok(Atom::Paren(e));
        }
        let start = self.i;
        let mut stack: Vec<char> = Vec::new();
        while let Some(&c) = self.s.get(self.i) {
            match c {
                '[' | '{' | '(' => stack.push(c),
                ']' | '}' | ')' => {
                    let open = match c {
                        ']' => '[',
                        '}' => '{',
                        _ => '(',
                    };
                    match stack.last() {
                        Some(&o) if o == open => {
                            stack.pop();
                        }
                        None if c == ')' => break, // closes an enclosing group
                        _ => {
                            return Err(
                                self.err(&format!("unbalanced brackets: '{c}' without '{open}'"))
                            )
                        }
                    }
                }
                ',' | '@' if stack.is_empty() => break,
                _ => {}
            }
            self.i += 1;
        }
        if let Some(open) = stack.last() {
            let close = match open {
                '[' => ']',
                '{' => '}',
                _ => ')',
            };
            return Err(self.err(&format!("unbalanced brackets: '{open}' without '{close}'")));
        }
        let text: String = self.s[start..self.i].iter().collect();
        if text.is_empty() {
            return Err(self.err("empty element (check '-', '@' and parentheses)"));
        }
        Ok(Atom::Text(text))
    }
}

/// A comparison against a node attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Selector {
    table: String,
    col: String,
    op: SelOp,
    value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SelOp {
    Eq,
    Ne,
    Match,
    NoMatch,
}

/// xCAT's short names in a selection: `groups` and `tags` for
/// `nodelist.groups`, `mgt` for `nodehm.mgt`.
const SHORT_NAMES: [(&str, &str, &str); 3] = [
    ("groups", "nodelist", "groups"),
    ("tags", "nodelist", "groups"),
    ("mgt", "nodehm", "mgt"),
];

fn selector(text: &str) -> Option<Selector> {
    // table.col OP value (table and col are plain words), or a short name
    // OP value.
    let short = SHORT_NAMES.iter().find_map(|(name, t, c)| {
        let tail = text.strip_prefix(name)?;
        ["==", "!=", "=~", "!~"]
            .iter()
            .any(|op| tail.starts_with(op))
            .then_some((*t, *c, tail))
    });
    let (table, col, tail) = match short {
        Some(found) => found,
        None => {
            let dot = text.find('.')?;
            let table = &text[..dot];
            let rest = &text[dot + 1..];
            if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            let col_end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
            (table, &rest[..col_end], &rest[col_end..])
        }
    };
    let (op, value) = if let Some(v) = tail.strip_prefix("==") {
        (SelOp::Eq, v)
    } else if let Some(v) = tail.strip_prefix("!=") {
        (SelOp::Ne, v)
    } else if let Some(v) = tail.strip_prefix("=~") {
        (SelOp::Match, v)
    } else if let Some(v) = tail.strip_prefix("!~") {
        (SelOp::NoMatch, v)
    } else {
        return None;
    };
    if col.is_empty() {
        return None;
    }
    let mut value = value.to_string();
    if matches!(op, SelOp::Match | SelOp::NoMatch)
        && value.len() >= 2
        && value.starts_with('/')
        && value.ends_with('/')
    {
        value = value[1..value.len() - 1].to_string();
    }
    Some(Selector {
        table: table.to_string(),
        col: col.to_string(),
        op,
        value,
    })
}

impl Expr {
    /// The `(table, column)` pairs this noderange compares, so the caller can
    /// load exactly those attributes into the [`Universe`].
    pub fn attr_refs(&self) -> Vec<(String, String)> {
        let mut out = BTreeSet::new();
        self.collect_refs(&mut out);
        out.into_iter().collect()
    }

    fn collect_refs(&self, out: &mut BTreeSet<(String, String)>) {
        for it in &self.items {
            for a in &it.inter {
                match a {
                    Atom::Paren(e) => e.collect_refs(out),
                    Atom::Text(t) => {
                        if let Some(s) = selector(t) {
                            out.insert((s.table, s.col));
                        }
                    }
                }
            }
        }
    }

    /// The plain names this noderange mentions (no ranges, patterns,
    /// regular expressions or attribute tests), each once: the candidates
    /// for dynamic groups, whose members the caller computes.
    pub fn plain_names(&self) -> Vec<String> {
        let mut out = BTreeSet::new();
        self.collect_names(&mut out);
        out.into_iter().collect()
    }

    fn collect_names(&self, out: &mut BTreeSet<String>) {
        for it in &self.items {
            for a in &it.inter {
                match a {
                    Atom::Paren(e) => e.collect_names(out),
                    Atom::Text(t) => {
                        let plain = !t.starts_with('/')
                            && t.chars()
                                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
                        if plain {
                            out.insert(t.clone());
                        }
                    }
                }
            }
        }
    }

    /// True when the expression has no elements at all.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A set of node indices.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: u32) {
        self.0[(i / 64) as usize] |= 1 << (i % 64);
    }
    fn get(&self, i: u32) -> bool {
        self.0[(i / 64) as usize] & (1 << (i % 64)) != 0
    }
    fn or(&mut self, o: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            *a |= b;
        }
    }
    fn and(&mut self, o: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            *a &= b;
        }
    }
    fn minus(&mut self, o: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            *a &= !b;
        }
    }
}

/// Every known node and its groups: the part of a [`Universe`] that depends
/// only on `nodelist`. It is immutable once built, so the database layer keeps
/// one behind an `Arc` and shares it between expansions instead of rebuilding
/// it from the table for each.
#[derive(Debug, Default, Clone)]
pub struct Nodes {
    names: Vec<String>,
    index: HashMap<String, u32>,
    /// Each node's `nodelist.groups` text, comma-separated, in its own order
    /// (the order group inheritance follows).
    node_groups: Vec<String>,
    groups: HashMap<String, Vec<u32>>,
    /// Node indices in natural order (complete once `finish` ran).
    order: Vec<u32>,
}

impl Nodes {
    /// Build from `(node, groups)` pairs; a node given twice merges its groups.
    pub fn from_pairs<I, N, G>(pairs: I) -> Nodes
    where
        I: IntoIterator<Item = (N, G)>,
        N: AsRef<str>,
        G: AsRef<str>,
    {
        let mut n = Nodes::default();
        for (name, groups) in pairs {
            n.add(name.as_ref(), groups.as_ref());
        }
        n.finish();
        n
    }

    fn add(&mut self, name: &str, groups: &str) {
        let id = match self.index.get(name) {
            Some(&id) => {
                let g = &mut self.node_groups[id as usize];
                if !groups.trim().is_empty() {
                    if !g.is_empty() {
                        g.push(',');
                    }
                    g.push_str(groups);
                }
                id
            }
            None => {
                let id = self.names.len() as u32;
                self.names.push(name.to_string());
                self.index.insert(name.to_string(), id);
                self.node_groups.push(groups.to_string());
                id
            }
        };
        for g in groups.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            // Look up before inserting: most groups exist already, and this
            // runs for every node of a reload.
            match self.groups.get_mut(g) {
                Some(members) => {
                    if members.last() != Some(&id) {
                        members.push(id);
                    }
                }
                None => {
                    self.groups.insert(g.to_string(), vec![id]);
                }
            }
        }
    }

    fn finished(&self) -> bool {
        self.order.len() == self.names.len()
    }

    fn finish(&mut self) {
        if !self.finished() {
            let mut order: Vec<u32> = (0..self.names.len() as u32).collect();
            order.sort_by(|&a, &b| natural_cmp(&self.names[a as usize], &self.names[b as usize]));
            self.order = order;
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Is `name` a known node?
    pub fn is_node(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Is `name` a group with at least one member?
    pub fn is_group(&self, name: &str) -> bool {
        self.groups.contains_key(name)
    }

    /// A node's `nodelist.groups` text (None for an unknown node).
    pub fn groups_of(&self, node: &str) -> Option<&str> {
        self.index
            .get(node)
            .map(|&i| self.node_groups[i as usize].as_str())
    }

    /// Every node name in natural order.
    pub fn sorted(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        debug_assert!(self.finished(), "Nodes are finished when built");
        self.order.iter().map(|&i| self.names[i as usize].as_str())
    }

    /// Members of a group, naturally sorted.
    pub fn group_members(&self, group: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .groups
            .get(group)
            .map(|m| m.iter().map(|&i| self.names[i as usize].clone()).collect())
            .unwrap_or_default();
        v.sort_by(|a, b| natural_cmp(a, b));
        v.dedup();
        v
    }
}

/// Everything a noderange is evaluated against: the [`Nodes`] (shared, cheap
/// to clone), the node attributes the expression compares and the nodes
/// always excluded.
#[derive(Debug, Default, Clone)]
pub struct Universe {
    nodes: Arc<Nodes>,
    /// `table.col` -> value per node index (resolved: inheritance, templates).
    attrs: HashMap<String, Vec<Option<String>>>,
    /// Dynamic groups the expression names: their members, computed from
    /// their selections by the caller. A dynamic group wins over a static
    /// group of the same name, as in xCAT.
    dynamic: HashMap<String, Vec<u32>>,
    excluded: Option<Arc<Bits>>,
    limits: Limits,
}

impl Universe {
    pub fn new() -> Universe {
        Universe::default()
    }

    /// A universe over an existing node set (no copy of the nodes).
    pub fn from_nodes(nodes: Arc<Nodes>) -> Universe {
        Universe {
            nodes,
            ..Universe::default()
        }
    }

    /// Bound what each expansion against this universe may cost.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The node set this universe evaluates against.
    pub fn nodes(&mut self) -> &Arc<Nodes> {
        self.finish();
        &self.nodes
    }

    /// Add a node and its comma-separated groups (in `nodelist.groups` order).
    /// Adding the same node twice merges its groups.
    pub fn add_node(&mut self, name: &str, groups: &str) {
        Arc::make_mut(&mut self.nodes).add(name, groups);
    }

    /// Record the resolved value of `table.col` for `node` (a known node).
    pub fn set_attr(&mut self, table: &str, col: &str, node: &str, value: Option<String>) {
        let n = self.nodes.len();
        let Some(&id) = self.nodes.index.get(node) else {
            return;
        };
        let v = self
            .attrs
            .entry(format!("{table}.{col}"))
            .or_insert_with(|| vec![None; n]);
        if v.len() < n {
            v.resize(n, None);
        }
        v[id as usize] = value;
    }

    /// Set every node's value of `table.col` at once: `values` follows
    /// [`Nodes::sorted`] order (shorter means the rest are unset).
    pub fn set_attr_sorted(&mut self, table: &str, col: &str, values: Vec<Option<String>>) {
        self.finish();
        let n = self.nodes.len();
        let mut v = vec![None; n];
        for (&id, value) in self.nodes.order.iter().zip(values) {
            v[id as usize] = value;
        }
        self.attrs.insert(format!("{table}.{col}"), v);
    }

    /// Make `group` a dynamic group of these members (unknown names are
    /// ignored). A group without members stays unknown, as an empty static
    /// group is.
    pub fn set_dynamic_group(&mut self, group: &str, members: &[String]) {
        let ids: Vec<u32> = members
            .iter()
            .filter_map(|m| self.nodes.index.get(m).copied())
            .collect();
        if ids.is_empty() {
            self.dynamic.remove(group);
        } else {
            self.dynamic.insert(group.to_string(), ids);
        }
    }

    /// Declare that `table.col` was loaded, even when no node has a value.
    pub fn declare_attr(&mut self, table: &str, col: &str) {
        let n = self.nodes.len();
        let v = self.attrs.entry(format!("{table}.{col}")).or_default();
        v.resize(n, None);
    }

    /// Nodes always removed from results (`site.excludenodes`, itself a
    /// noderange). Unknown names in it are ignored.
    pub fn set_excluded(&mut self, noderange: &str) -> Result<(), NoderangeError> {
        self.finish();
        let e = parse(noderange)?;
        let set = Eval::new(self).list(&e)?;
        self.excluded = Some(Arc::new(set));
        Ok(())
    }

    /// Number of known nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Is `name` a known node?
    pub fn is_node(&self, name: &str) -> bool {
        self.nodes.is_node(name)
    }

    /// Members of a group (a dynamic group's computed ones), naturally sorted.
    pub fn group_members(&self, group: &str) -> Vec<String> {
        let Some(ids) = self.dynamic.get(group) else {
            return self.nodes.group_members(group);
        };
        let mut v: Vec<String> = ids
            .iter()
            .map(|&i| self.nodes.names[i as usize].clone())
            .collect();
        v.sort_by(|a, b| natural_cmp(a, b));
        v
    }

    fn finish(&mut self) {
        if !self.nodes.finished() {
            Arc::make_mut(&mut self.nodes).finish();
        }
    }

    /// Expand a noderange into naturally sorted, unique node names.
    pub fn expand(&mut self, noderange: &str) -> Result<Vec<String>, NoderangeError> {
        let e = parse(noderange)?;
        self.expand_expr(&e)
    }

    /// Expand an already parsed noderange.
    pub fn expand_expr(&mut self, e: &Expr) -> Result<Vec<String>, NoderangeError> {
        self.finish();
        let mut eval = Eval::new(self);
        let mut set = eval.list(e)?;
        if let Some(err) = eval.unknown.into_error() {
            return Err(err);
        }
        if let Some(x) = &self.excluded {
            set.minus(x);
        }
        let nodes = &self.nodes;
        Ok(nodes
            .order
            .iter()
            .filter(|&&i| set.get(i))
            .map(|&i| nodes.names[i as usize].clone())
            .collect())
    }
}

/// One evaluation of an expression: the universe, what is left of the
/// budget, and the unknown names met.
struct Eval<'a> {
    u: &'a Universe,
    left: u64,
    unknown: Unknown,
}

/// The unknown names an expansion met: the first ones (shortened) for the
/// error, the rest only counted, so a range of unknown names costs no memory
/// per name.
#[derive(Default)]
struct Unknown {
    shown: Vec<String>,
    more: u64,
}

impl Unknown {
    fn add(&mut self, name: &str) {
        if self.shown.len() >= SHOWN_UNKNOWN {
            self.more += 1;
            return;
        }
        let name = shorten(name);
        if !self.shown.contains(&name) {
            self.shown.push(name);
        }
    }

    fn into_error(self) -> Option<NoderangeError> {
        match (self.shown.is_empty(), self.more) {
            (true, _) => None,
            (false, 0) => Some(NoderangeError::Invalid(self.shown)),
            (false, more) => Some(NoderangeError::InvalidMany {
                shown: self.shown,
                more,
            }),
        }
    }
}

impl<'a> Eval<'a> {
    fn new(u: &'a Universe) -> Eval<'a> {
        Eval {
            u,
            left: u.limits.max_names,
            unknown: Unknown::default(),
        }
    }

    /// Pay for `cost` names looked at on behalf of `atom`.
    fn spend(&mut self, cost: u64, atom: &str) -> Result<(), NoderangeError> {
        if cost > self.left {
            return Err(Universe::syntax(
                atom,
                format!(
                    "the noderange names more than {} nodes in all, the server's limit \
                     (max_noderange_names; a generated name counts one, a group its members, \
                     a regular expression or attribute test every node): name fewer nodes",
                    self.u.limits.max_names
                ),
            ));
        }
        self.left -= cost;
        Ok(())
    }

    fn list(&mut self, e: &Expr) -> Result<Bits, NoderangeError> {
        let n = self.u.nodes.len();
        let mut inc = Bits::new(n);
        let mut exc = Bits::new(n);
        for it in &e.items {
            let mut acc: Option<Bits> = None;
            for a in &it.inter {
                let s = self.atom(a)?;
                match &mut acc {
                    None => acc = Some(s),
                    Some(x) => x.and(&s),
                }
            }
            if let Some(s) = acc {
                if it.exclude {
                    exc.or(&s);
                } else {
                    inc.or(&s);
                }
            }
        }
        inc.minus(&exc);
        Ok(inc)
    }

    /// Add a node or a group's members, paying for them beyond `paid`;
    /// false (and nothing paid) when the name is neither.
    fn add(
        &mut self,
        name: &str,
        set: &mut Bits,
        atom: &str,
        paid: u64,
    ) -> Result<bool, NoderangeError> {
        let nodes = &self.u.nodes;
        if let Some(&id) = nodes.index.get(name) {
            self.spend(1u64.saturating_sub(paid), atom)?;
            set.set(id);
        } else if let Some(m) = self.u.dynamic.get(name).or_else(|| nodes.groups.get(name)) {
            self.spend((m.len() as u64).saturating_sub(paid), atom)?;
            for &id in m {
                set.set(id);
            }
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    fn atom(&mut self, a: &Atom) -> Result<Bits, NoderangeError> {
        let text = match a {
            Atom::Paren(e) => return self.list(e),
            Atom::Text(t) => t.as_str(),
        };
        let mut set = Bits::new(self.u.nodes.len());
        if self.add(text, &mut set, text, 0)? {
            return Ok(set);
        }
        if let Some(re) = text.strip_prefix('/') {
            self.spend(self.u.nodes.len() as u64, text)?;
            self.regex(text, re, &mut set)?;
            return Ok(set);
        }
        if let Some(sel) = selector(text) {
            self.spend(self.u.nodes.len() as u64, text)?;
            self.u.select(text, &sel, &mut set)?;
            return Ok(set);
        }
        match names::pattern(text) {
            Ok(Some(p)) => {
                self.spend(p.count(), text)?;
                p.for_each(|name| {
                    if !self.add(name, &mut set, text, 1)? {
                        self.unknown.add(name);
                    }
                    Ok(())
                })?;
            }
            Ok(None) => {
                self.spend(1, text)?;
                self.unknown.add(text);
            }
            Err(msg) => return Err(Universe::syntax(text, msg)),
        }
        Ok(set)
    }

    /// `/re` (or `/re/`): every node whose whole name matches.
    fn regex(&self, text: &str, re: &str, set: &mut Bits) -> Result<(), NoderangeError> {
        let re = re.strip_suffix('/').unwrap_or(re);
        let re = Regex::new(&format!("^(?:{re})$"))
            .map_err(|e| Universe::syntax(text, format!("bad regular expression: {e}")))?;
        for (i, name) in self.u.nodes.names.iter().enumerate() {
            if re.is_match(name) {
                set.set(i as u32);
            }
        }
        Ok(())
    }
}

impl Universe {
    fn syntax(text: &str, msg: impl Into<String>) -> NoderangeError {
        NoderangeError::Syntax(shorten(text), msg.into())
    }

    /// `table.col OP value`: every node whose attribute compares true.
    fn select(&self, text: &str, sel: &Selector, set: &mut Bits) -> Result<(), NoderangeError> {
        let key = format!("{}.{}", sel.table, sel.col);
        let Some(vals) = self.attrs.get(&key) else {
            return Err(Self::syntax(text, format!("unknown attribute {key}")));
        };
        let re = match sel.op {
            SelOp::Match | SelOp::NoMatch => Some(
                Regex::new(&sel.value)
                    .map_err(|e| Self::syntax(text, format!("bad regular expression: {e}")))?,
            ),
            _ => None,
        };
        for i in 0..self.nodes.len() {
            let v = vals.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            let hit = match sel.op {
                SelOp::Eq => v == sel.value,
                SelOp::Ne => v != sel.value,
                SelOp::Match => re.as_ref().is_some_and(|r| r.is_match(v)),
                SelOp::NoMatch => !re.as_ref().is_some_and(|r| r.is_match(v)),
            };
            if hit {
                set.set(i as u32);
            }
        }
        Ok(())
    }
}

/// `text` cut to [`SHOWN_CHARS`] characters for a message: a noderange may
/// be as long as a request, and errors are sent back and logged.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}...", &text[..cut]),
    }
}

/// Natural order: digit runs compare by value (`node2 < node10`), the rest
/// byte-wise; ties (e.g. `n01` vs `n1`) fall back to plain string order.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let na = trim_zeros(&ab[si..i]);
            let nb = trim_zeros(&bb[sj..j]);
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            let o = ab[i].cmp(&bb[j]);
            if o != Ordering::Equal {
                return o;
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j)).then_with(|| a.cmp(b))
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let k = d.iter().position(|&c| c != b'0').unwrap_or(d.len());
    &d[k..]
}

/// Sort and de-duplicate names in natural order.
pub fn sort_nodes(v: &mut Vec<String>) {
    v.sort_by(|a, b| natural_cmp(a, b));
    v.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uni() -> Universe {
        let mut u = Universe::new();
        for i in 1..=20 {
            let g = if i <= 10 {
                "compute,rack1,all"
            } else {
                "compute,rack2,all"
            };
            u.add_node(&format!("node{i:02}"), g);
        }
        u.add_node("mgmt", "service,all");
        u.add_node("f1n1", "frame");
        u.add_node("f1n2", "frame");
        u.add_node("f2n1", "frame");
        u.add_node("f2n2", "frame");
        u.add_node("rack-a-1", "");
        u.add_node("rack-a-2", "");
        u.add_node("rack-a-3", "");
        u.declare_attr("nodetype", "os");
        for i in 1..=20 {
            let os = if i % 2 == 0 { "rhels9" } else { "sles15" };
            u.set_attr("nodetype", "os", &format!("node{i:02}"), Some(os.into()));
        }
        u
    }

    fn ex(u: &mut Universe, s: &str) -> Vec<String> {
        u.expand(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ranges() {
        let mut u = uni();
        assert_eq!(
            ex(&mut u, "node01-node03"),
            names(&["node01", "node02", "node03"])
        );
        assert_eq!(
            ex(&mut u, "node01:node03"),
            names(&["node01", "node02", "node03"])
        );
        assert_eq!(
            ex(&mut u, "node[01-03]"),
            names(&["node01", "node02", "node03"])
        );
        assert_eq!(
            ex(&mut u, "node[01,03,05]"),
            names(&["node01", "node03", "node05"])
        );
        assert_eq!(
            ex(&mut u, "node[01-02,19]"),
            names(&["node01", "node02", "node19"])
        );
        assert_eq!(
            ex(&mut u, "f[1-2]n[1-2]"),
            names(&["f1n1", "f1n2", "f2n1", "f2n2"])
        );
        assert_eq!(
            ex(&mut u, "node10+3"),
            names(&["node10", "node11", "node12", "node13"])
        );
        assert_eq!(
            ex(&mut u, "rack-a-1-rack-a-3"),
            names(&["rack-a-1", "rack-a-2", "rack-a-3"])
        );
        assert_eq!(ex(&mut u, "rack-a-2"), names(&["rack-a-2"]));
    }

    #[test]
    fn dynamic_groups_name_their_computed_members() {
        let mut u = uni();
        let e = parse("dyn,-node01,(frame@dyn2)").unwrap();
        assert_eq!(
            e.plain_names(),
            names(&["dyn", "dyn2", "frame", "node01"]),
            "plain names, each once, parentheses included"
        );
        assert!(parse("node[01-03],/f1.*,nodetype.os==x")
            .unwrap()
            .plain_names()
            .is_empty());
        u.set_dynamic_group("dyn", &names(&["node02", "node01", "nosuch"]));
        assert_eq!(ex(&mut u, "dyn"), names(&["node01", "node02"]));
        assert_eq!(ex(&mut u, "dyn,-node01"), names(&["node02"]));
        assert_eq!(u.group_members("dyn"), names(&["node01", "node02"]));
        // A dynamic group wins over a static group of the same name.
        u.set_dynamic_group("frame", &names(&["f1n1"]));
        assert_eq!(ex(&mut u, "frame"), names(&["f1n1"]));
        // One without members is unknown, as an empty static group is.
        u.set_dynamic_group("dyn", &[]);
        assert!(u.expand("dyn").is_err());
    }

    #[test]
    fn groups_regex_selectors_sorting() {
        let mut u = uni();
        assert_eq!(
            ex(&mut u, "frame"),
            names(&["f1n1", "f1n2", "f2n1", "f2n2"])
        );
        assert_eq!(ex(&mut u, "/f1.*"), names(&["f1n1", "f1n2"]));
        assert_eq!(ex(&mut u, "/n1"), Vec::<String>::new(), "regex is anchored");
        assert_eq!(ex(&mut u, "/node0[12]/"), names(&["node01", "node02"]));
        assert_eq!(
            ex(&mut u, "rack1@nodetype.os==rhels9"),
            names(&["node02", "node04", "node06", "node08", "node10"])
        );
        assert_eq!(
            ex(&mut u, "rack2@nodetype.os=~^sl"),
            names(&["node11", "node13", "node15", "node17", "node19"])
        );
        assert_eq!(ex(&mut u, "rack2@nodetype.os=~/^sl/").len(), 5);
        assert_eq!(ex(&mut u, "rack1@nodetype.os!=rhels9").len(), 5);
        assert_eq!(ex(&mut u, "rack1@nodetype.os!~rhel").len(), 5);
        // Short names stand for their table.column.
        for (short, long) in [
            ("groups==a", "nodelist.groups==a"),
            ("tags!~b", "nodelist.groups!~b"),
        ] {
            let (s, l) = (selector(short).unwrap(), selector(long).unwrap());
            assert_eq!(
                (s.table, s.col, s.op, s.value),
                (l.table, l.col, l.op, l.value)
            );
        }
        let m = selector("mgt=~ipmi").unwrap();
        assert_eq!((m.table.as_str(), m.col.as_str()), ("nodehm", "mgt"));
        assert!(selector("mgtx==a").is_none() && selector("groups").is_none());
        // Nodes without the attribute compare as empty.
        assert_eq!(ex(&mut u, "nodetype.os!=rhels9@frame").len(), 4);
        assert_eq!(
            ex(&mut u, "node10,node09+0,node02-node02"),
            names(&["node02", "node09", "node10"])
        );
    }

    #[test]
    fn exclusion_intersection_parens_dedup_sort() {
        let mut u = uni();
        assert_eq!(
            ex(&mut u, "-node01,rack1"),
            ex(&mut u, "node[02-10]"),
            "exclusion applies after inclusion"
        );
        assert_eq!(ex(&mut u, "rack1,-node[02-10],node03"), names(&["node01"]));
        assert_eq!(ex(&mut u, "compute@(rack1,mgmt)").len(), 10);
        assert_eq!(
            ex(&mut u, "(node01,node02)@rack1,-(node02)"),
            names(&["node01"])
        );
        assert_eq!(
            ex(&mut u, "node10,node02,rack1@node02,node02"),
            names(&["node02", "node10"])
        );
        let mut v = names(&["node10", "node2", "node1", "node02"]);
        sort_nodes(&mut v);
        assert_eq!(v, names(&["node1", "node02", "node2", "node10"]));
        assert_eq!(ex(&mut u, ""), Vec::<String>::new());
    }

    #[test]
    fn excludenodes_always_removed() {
        let mut u = uni();
        u.set_excluded("node01,frame,nosuch").unwrap();
        assert_eq!(ex(&mut u, "node01,node02,f1n1"), names(&["node02"]));
    }

    #[test]
    fn errors() {
        let mut u = uni();
        assert_eq!(
            u.expand("node01,bogus,node02,alsobad")
                .unwrap_err()
                .to_string(),
            "Invalid nodes and/or groups in noderange: bogus,alsobad"
        );
        assert_eq!(
            u.expand("node19-node22").unwrap_err(),
            NoderangeError::Invalid(names(&["node21", "node22"]))
        );
        for bad in [
            "node[1-2",
            "(node01",
            "node01)",
            "node]1",
            "a@",
            "@a",
            "node[5-1]",
            "/(",
            "nodetype.nosuch==1",
            "node[1-99999999]",
        ] {
            match u.expand(bad) {
                Err(NoderangeError::Syntax(..)) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_budget_is_shared_by_every_atom_and_named_in_the_error() {
        let mut u = uni();
        u.set_limits(Limits { max_names: 100 });
        assert_eq!(ex(&mut u, "node[01-20],f1n1").len(), 21);
        // Each range fits alone; together they pass the limit.
        let err = u.expand("zz[1-60],zy[1-60]").unwrap_err();
        let NoderangeError::Syntax(at, msg) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(at, "zy[1-60]");
        assert!(
            msg.contains("more than 100 nodes") && msg.contains("max_noderange_names"),
            "{msg}"
        );
        // A group costs its members, a regular expression every node.
        let four_alls = ["all"; 4].join(",");
        assert!(u.expand(&four_alls).is_ok(), "4 x 21 members fit in 100");
        assert!(u.expand(&format!("{four_alls},all")).is_err());
        assert!(
            u.expand("/node.*,/f.*,/rack.*,/m.*").is_err(),
            "4 scans of 28 nodes"
        );
        assert!(u.expand("/node.*,/f.*,/rack.*").is_ok());
    }

    #[test]
    fn a_range_past_the_budget_is_refused_before_any_name_is_made() {
        let mut u = uni();
        let bomb = ["zz[0-1999999]"; 1000].join(",");
        let start = std::time::Instant::now();
        let err = u.expand(&bomb).unwrap_err();
        assert!(err.to_string().contains("more than 1000000 nodes"), "{err}");
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn unknown_names_are_counted_not_kept() {
        let mut u = uni();
        let err = u.expand("node01,zz[0-499999],zy[0-499998]").unwrap_err();
        let NoderangeError::InvalidMany { shown, more } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(shown.len(), SHOWN_UNKNOWN);
        assert_eq!((shown[0].as_str(), shown[99].as_str()), ("zz0", "zz99"));
        assert_eq!(*more, 999_999 - 100);
        assert!(err
            .to_string()
            .starts_with("Invalid nodes and/or groups in noderange: zz0,zz1,"));
        assert!(err.to_string().ends_with(",zz99 and 999899 more"), "{err}");
        // A long name is shown shortened, in both kinds of error.
        let long = "x".repeat(5000);
        let err = u.expand(&long).unwrap_err().to_string();
        assert!(err.len() < 200 && err.ends_with("..."), "{err}");
        let err = u.expand(&format!("{long}[")).unwrap_err().to_string();
        assert!(err.len() < 300, "{err}");
    }
}
