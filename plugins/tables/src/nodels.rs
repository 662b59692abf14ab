//! `nodels [noderange] [-b] [-H] [-S] [table.col | shortname | table | table.col==value ...]`
//!
//! Output as xCAT's: without attributes one line per node name; with
//! attributes one `node` record per node and attribute, whose text is
//! `table.col: value` (or just `value` when exactly one attribute was asked
//! for and `-H` was not given), so clients print `node: table.col: value`.
//! Selection arguments (`==`, `!=`, `=~`, `!~`) filter nodes; values are the
//! resolved ones (group inheritance, templates), unset compares as empty.
//! `-b` (`--blame`) adds ` (inherited from group G)` to a value taken from
//! a group's row, as xCAT's nodels does.

use std::borrow::Cow;
use std::collections::BTreeMap;

use xcat_db::{Attrs, Db};
use xcat_plugin::args::Syntax;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, NodeRecord,
    Responder,
};

const SYNTAX: Syntax = Syntax::new(
    "nodels",
    "Usage:
  nodels [noderange] [-b|--blame] [-H|--with-fieldname] [-S] [table.attribute | shortname | table] [...]
  nodels [noderange] table.attribute==value | table.attribute!=value | table.attribute=~regex | table.attribute!~regex
  nodels [-?|-h|--help]
  nodels [-v|--version]",
);

/// The command line after the noderange.
#[derive(Debug, clap::Parser)]
struct Args {
    /// `-H`: label every value with its `table.attribute`.
    #[arg(short = 'H', long = "with-fieldname")]
    with_names: bool,
    /// `-S`: hidden nodes too.
    #[arg(short = 'S')]
    show_hidden: bool,
    /// `-b`: name the group each inherited value came from.
    #[arg(short = 'b', long = "blame")]
    blame: bool,
    /// Attributes to show and selections.
    words: Vec<String>,
}

pub struct Nodels;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Re,
    NotRe,
}

#[derive(Debug, Clone)]
struct Spec {
    table: String,
    col: String,
    label: String,
    criterion: Option<(Op, String)>,
}

fn split_op(arg: &str) -> (String, Option<(Op, String)>) {
    let before_eq = |i: usize| !arg[..i].contains('=');
    if let Some(i) = arg.find("!=").filter(|&i| before_eq(i)) {
        return (arg[..i].into(), Some((Op::Ne, arg[i + 2..].into())));
    }
    if let Some(i) = arg.find("=~").filter(|&i| before_eq(i)) {
        return (
            arg[..i].into(),
            Some((Op::Re, strip_slashes(&arg[i + 2..]))),
        );
    }
    if let Some(i) = arg.find("==").filter(|&i| before_eq(i)) {
        return (arg[..i].into(), Some((Op::Eq, arg[i + 2..].into())));
    }
    if let Some(i) = arg.find("!~").filter(|&i| before_eq(i)) {
        return (
            arg[..i].into(),
            Some((Op::NotRe, strip_slashes(&arg[i + 2..]))),
        );
    }
    (arg.into(), None)
}

fn strip_slashes(v: &str) -> String {
    let v = v.strip_prefix('/').unwrap_or(v);
    v.strip_suffix('/').unwrap_or(v).to_string()
}

fn matches(op: Op, re: Option<&regex::Regex>, want: &str, have: &str) -> bool {
    match op {
        Op::Eq => have == want,
        Op::Ne => have != want,
        Op::Re => re.is_some_and(|r| r.is_match(have)),
        Op::NotRe => !re.is_some_and(|r| r.is_match(have)),
    }
}

/// What one word of the command line asks for.
enum Asked {
    /// `table.attribute`, `groups`, or a selection on one of them.
    One(Spec),
    /// A whole table: every column, always labelled.
    Table(Vec<Spec>),
}

/// Reads one attribute word; its table and column are checked against the schema.
fn asked(word: &str) -> Result<Asked, HandlerError> {
    let (lhs, criterion) = split_op(word);
    let not_valid =
        |what: &str| HandlerError::Failed(format!("{what} not a valid table.column description"));
    // xCAT's short names: groups and tags are nodelist.groups, mgt nodehm.mgt.
    let (table, col) = if lhs == "groups" || lhs == "tags" {
        ("nodelist".to_string(), "groups".to_string())
    } else if lhs == "mgt" {
        ("nodehm".to_string(), "mgt".to_string())
    } else if let Some((t, c)) = lhs.split_once('.') {
        (t.to_string(), c.to_string())
    } else if let Ok(cols) = Db::columns(&lhs) {
        if criterion.is_some() {
            return Err(SYNTAX.error(format!("{word}: a selection needs table.attribute")));
        }
        let spec = |c: &&str| Spec {
            table: lhs.clone(),
            col: c.to_string(),
            label: format!("{lhs}.{c}"),
            criterion: None,
        };
        return Ok(Asked::Table(cols.iter().map(spec).collect()));
    } else {
        return Err(not_valid(&lhs));
    };
    let cols = Db::columns(&table).map_err(|_| not_valid(&lhs))?;
    if !cols.contains(&col.as_str()) {
        return Err(not_valid(&format!("{table}.{col}")));
    }
    if !xcat_db::schema::table(&table).is_some_and(|t| t.is_node_keyed()) {
        return Err(HandlerError::Failed(format!(
            "table {table} is not keyed by node; use tabdump {table}"
        )));
    }
    Ok(Asked::One(Spec {
        table,
        col,
        label: lhs,
        criterion,
    }))
}

/// Every word's attributes, and whether values print bare: only when exactly
/// one `table.attribute` (selections included) was asked for (or none), no whole table,
/// and no `-H`.
fn specs_of(args: &Args) -> Result<(Vec<Spec>, bool), HandlerError> {
    let (mut specs, mut single, mut whole_table) = (Vec::new(), 0, false);
    for word in &args.words {
        match asked(word)? {
            Asked::One(s) => {
                single += 1;
                specs.push(s);
            }
            Asked::Table(v) => {
                whole_table = true;
                specs.extend(v);
            }
        }
    }
    Ok((specs, single <= 1 && !whole_table && !args.with_names))
}

#[async_trait]
impl Handler for Nodels {
    fn commands(&self) -> &'static [&'static str] {
        &["nodels"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let Some(args) = SYNTAX.read::<Args>(req.args(), &out).await? else {
            return Ok(());
        };
        let (specs, bare) = specs_of(&args)?;
        let mut job = Job::new(&ctx, &out, args.show_hidden, bare, specs)?;
        job.blame = args.blame;
        // Table and column errors come before any output, whatever the nodes.
        for (t, cols) in &job.tables {
            let c: Vec<&str> = cols.iter().map(String::as_str).collect();
            ctx.db.node_attrs(&[], t, &c).await?;
        }
        // Nodes are resolved and sent CHUNK at a time, in order, so the
        // memory a request holds does not grow with the node count: the
        // whole node list is either the database's shared node set or the
        // request's own (already expanded) list.
        let no_noderange = req.request.noderange.is_none() && req.request.nodes.is_empty();
        if no_noderange && req.nodes.is_empty() {
            job.all_nodes().await
        } else {
            job.given_nodes(req.nodes).await
        }
    }
}

/// Nodes resolved and sent per step.
const CHUNK: usize = 500;

/// One `nodels` request after its arguments were parsed.
struct Job<'a> {
    ctx: &'a Context,
    out: &'a Responder,
    show_hidden: bool,
    /// Values without their `table.attribute: ` label.
    bare: bool,
    /// `-b`: inherited values name their group.
    blame: bool,
    specs: Vec<Spec>,
    /// The compiled regex of each spec with a `=~` or `!~` selection.
    regexes: Vec<Option<regex::Regex>>,
    /// table -> columns to load.
    tables: BTreeMap<String, Vec<String>>,
    /// Indexes of the specs shown, each column once.
    displayed: Vec<usize>,
}

impl<'a> Job<'a> {
    /// Compiles the selections (before any output) and works out what to
    /// load and what to show.
    fn new(
        ctx: &'a Context,
        out: &'a Responder,
        show_hidden: bool,
        bare: bool,
        specs: Vec<Spec>,
    ) -> Result<Job<'a>, HandlerError> {
        let regexes = specs
            .iter()
            .map(|s| match &s.criterion {
                Some((Op::Re | Op::NotRe, re)) => regex::Regex::new(re)
                    .map(Some)
                    .map_err(|e| HandlerError::Failed(format!("bad regular expression {re}: {e}"))),
                _ => Ok(None),
            })
            .collect::<Result<_, _>>()?;
        let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in &specs {
            let cols = tables.entry(s.table.clone()).or_default();
            if !cols.contains(&s.col) {
                cols.push(s.col.clone());
            }
        }
        // A selection column is displayed only when also asked for plainly.
        let mut displayed: Vec<usize> = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            let seen = |&j: &usize| specs[j].table == s.table && specs[j].col == s.col;
            if s.criterion.is_none() && !displayed.iter().any(seen) {
                displayed.push(i);
            }
        }
        Ok(Job {
            ctx,
            out,
            show_hidden,
            bare,
            blame: false,
            specs,
            regexes,
            tables,
            displayed,
        })
    }

    /// Every node of the database, in the node set's order.
    async fn all_nodes(&self) -> HandlerResult {
        let all = self.ctx.db.nodes().await?;
        let mut names = all.sorted();
        loop {
            let chunk: Vec<String> = names.by_ref().take(CHUNK).map(str::to_string).collect();
            if chunk.is_empty() {
                return Ok(());
            }
            self.run(&chunk).await?;
        }
    }

    /// The request's nodes, sorted (they usually already are).
    async fn given_nodes(&self, mut nodes: Vec<String>) -> HandlerResult {
        let sorted = nodes
            .windows(2)
            .all(|w| xcat_db::noderange::natural_cmp(&w[0], &w[1]).is_lt());
        if !sorted {
            xcat_db::noderange::sort_nodes(&mut nodes);
        }
        for chunk in nodes.chunks(CHUNK) {
            self.run(chunk).await?;
        }
        Ok(())
    }

    /// Resolve and send one chunk of (sorted) nodes.
    async fn run(&self, chunk: &[String]) -> HandlerResult {
        self.ctx.check_cancelled()?;
        let nodes = self.visible(chunk).await?;
        if self.specs.is_empty() {
            for n in nodes.iter() {
                self.out.data(n.as_str()).await?;
            }
            return Ok(());
        }
        let mut values: Values = BTreeMap::new();
        let mut origins: Origins = BTreeMap::new();
        for (t, cols) in &self.tables {
            let c: Vec<&str> = cols.iter().map(String::as_str).collect();
            if !self.blame {
                values.insert(t.as_str(), self.ctx.db.node_attrs(&nodes, t, &c).await?);
                continue;
            }
            let blamed = self.ctx.db.node_attrs_blamed(&nodes, t, &c).await?;
            let (vals, from) = (
                values.entry(t.as_str()).or_default(),
                origins.entry(t.as_str()).or_default(),
            );
            for (node, attrs) in blamed {
                let (v, f) = (
                    vals.entry(node.clone()).or_default(),
                    from.entry(node).or_default(),
                );
                for (col, b) in attrs {
                    if let Some(g) = b.group {
                        f.insert(col.clone(), g);
                    }
                    v.insert(col, b.value);
                }
            }
        }
        for node in nodes.iter() {
            self.send_node(node, &values, &origins).await?;
        }
        Ok(())
    }

    /// The chunk without its hidden nodes (`nodelist.hidden=1`), unless `-S`.
    async fn visible<'c>(&self, chunk: &'c [String]) -> Result<Cow<'c, [String]>, HandlerError> {
        if self.show_hidden {
            return Ok(Cow::Borrowed(chunk));
        }
        let hidden = self
            .ctx
            .db
            .node_attrs(chunk, "nodelist", &["hidden"])
            .await?;
        let is_hidden = |n: &String| {
            hidden
                .get(n)
                .and_then(|a| a.get("hidden"))
                .map(String::as_str)
                == Some("1")
        };
        Ok(if chunk.iter().any(is_hidden) {
            Cow::Owned(chunk.iter().filter(|n| !is_hidden(n)).cloned().collect())
        } else {
            Cow::Borrowed(chunk)
        })
    }

    /// One node's lines, if it passes every selection.
    async fn send_node(
        &self,
        node: &str,
        values: &Values<'_>,
        origins: &Origins<'_>,
    ) -> HandlerResult {
        let value_of = |s: &Spec| -> String {
            values
                .get(s.table.as_str())
                .and_then(|m| m.get(node))
                .and_then(|a| a.get(&s.col))
                .cloned()
                .unwrap_or_default()
        };
        let selected = self
            .specs
            .iter()
            .zip(&self.regexes)
            .all(|(s, re)| match &s.criterion {
                Some((op, want)) => matches(*op, re.as_ref(), want, &value_of(s)),
                None => true,
            });
        if !selected {
            return Ok(());
        }
        if self.displayed.is_empty() {
            self.out.data(node).await?;
            return Ok(());
        }
        for s in self.displayed.iter().map(|&i| &self.specs[i]) {
            let mut v = value_of(s);
            if let Some(g) = origins
                .get(s.table.as_str())
                .and_then(|m| m.get(node))
                .and_then(|a| a.get(&s.col))
            {
                v = format!("{v} (inherited from group {g})");
            }
            let text = if self.bare {
                v
            } else {
                format!("{}: {v}", s.label)
            };
            let record = NodeRecord {
                name: node.to_string(),
                data: vec![text],
                ..Default::default()
            };
            self.out.node(record).await?;
        }
        Ok(())
    }
}

/// Loaded values: table -> node -> attributes.
type Values<'t> = BTreeMap<&'t str, BTreeMap<String, Attrs>>;

/// With `-b`: table -> node -> column -> the group an inherited value came from.
type Origins<'t> = BTreeMap<&'t str, BTreeMap<String, Attrs>>;
