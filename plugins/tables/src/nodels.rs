//! `nodels [noderange] [-H] [-S] [table.col | shortname | table | table.col==value ...]`
//!
//! Output as xCAT's: without attributes one line per node name; with
//! attributes one `node` record per node and attribute, whose text is
//! `table.col: value` (or just `value` when exactly one attribute was asked
//! for and `-H` was not given), so clients print `node: table.col: value`.
//! Selection arguments (`==`, `!=`, `=~`, `!~`) filter nodes; values are the
//! resolved ones (group inheritance, templates), unset compares as empty.

use std::collections::BTreeMap;

use xcat_db::{Attrs, Db};
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, NodeRecord,
    Responder,
};

use crate::args::{args, is_help, send_usage, usage_text};

const USAGE: &[&str] = &[
    "Usage:",
    "  nodels [noderange] [-H|--with-fieldname] [-S] [table.attribute | shortname | table] [...]",
    "  nodels [noderange] table.attribute==value | table.attribute!=value | table.attribute=~regex | table.attribute!~regex",
    "  nodels [-?|-h|--help]",
];

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

#[async_trait]
impl Handler for Nodels {
    fn commands(&self) -> &'static [&'static str] {
        &["nodels"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let a = args(&req);
        let usage_err = |msg: &str| HandlerError::Usage(format!("{msg}\n{}", usage_text(USAGE)));
        let mut with_names = false;
        let mut show_hidden = false;
        let mut specs: Vec<Spec> = Vec::new();
        let mut terse: i32 = 2;
        for x in &a {
            match x.as_str() {
                h if is_help(h) => {
                    send_usage(&out, USAGE).await?;
                    return Ok(());
                }
                "-H" | "--with-fieldname" => with_names = true,
                "-S" => show_hidden = true,
                o if o.starts_with('-') => {
                    return Err(usage_err(&format!("Unsupported option {o}")))
                }
                spec => {
                    let (lhs, criterion) = split_op(spec);
                    let (table, col) = if lhs == "groups" || lhs == "tags" {
                        ("nodelist".to_string(), "groups".to_string())
                    } else if let Some((t, c)) = lhs.split_once('.') {
                        (t.to_string(), c.to_string())
                    } else if let Ok(cols) = Db::columns(&lhs) {
                        if criterion.is_some() {
                            return Err(usage_err(&format!(
                                "{spec}: a selection needs table.attribute"
                            )));
                        }
                        terse = i32::MIN / 2;
                        for c in cols {
                            specs.push(Spec {
                                table: lhs.clone(),
                                col: c.to_string(),
                                label: format!("{lhs}.{c}"),
                                criterion: None,
                            });
                        }
                        continue;
                    } else {
                        return Err(HandlerError::Failed(format!(
                            "{lhs} not a valid table.column description"
                        )));
                    };
                    let cols = Db::columns(&table).map_err(|_| {
                        HandlerError::Failed(format!("{lhs} not a valid table.column description"))
                    })?;
                    if !cols.contains(&col.as_str()) {
                        return Err(HandlerError::Failed(format!(
                            "{table}.{col} not a valid table.column description"
                        )));
                    }
                    if !xcat_db::schema::table(&table).is_some_and(|t| t.is_node_keyed()) {
                        return Err(HandlerError::Failed(format!(
                            "table {table} is not keyed by node; use tabdump {table}"
                        )));
                    }
                    terse -= 1;
                    specs.push(Spec {
                        table,
                        col,
                        label: lhs.to_string(),
                        criterion,
                    });
                }
            }
        }
        if with_names {
            terse = 0;
        }

        // Compile selection regexes once, before any output.
        let mut regexes: Vec<Option<regex::Regex>> = Vec::with_capacity(specs.len());
        for s in &specs {
            regexes.push(match &s.criterion {
                Some((Op::Re | Op::NotRe, re)) => Some(regex::Regex::new(re).map_err(|e| {
                    HandlerError::Failed(format!("bad regular expression {re}: {e}"))
                })?),
                _ => None,
            });
        }
        // The columns to load, per table.
        let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in &specs {
            let cols = tables.entry(s.table.clone()).or_default();
            if !cols.contains(&s.col) {
                cols.push(s.col.clone());
            }
        }
        // A selection column is displayed only when also asked for plainly.
        let displayed: Vec<&Spec> = specs.iter().filter(|s| s.criterion.is_none()).fold(
            Vec::new(),
            |mut acc: Vec<&Spec>, s| {
                if !acc.iter().any(|x| x.table == s.table && x.col == s.col) {
                    acc.push(s);
                }
                acc
            },
        );
        // Table and column errors come before any output, whatever the nodes.
        for (t, cols) in &tables {
            let c: Vec<&str> = cols.iter().map(String::as_str).collect();
            ctx.db.node_attrs(&[], t, &c).await?;
        }
        let job = Job {
            ctx: &ctx,
            out: &out,
            show_hidden,
            terse,
            specs: &specs,
            regexes: &regexes,
            tables: &tables,
            displayed: &displayed,
        };

        // Nodes are resolved and sent CHUNK at a time, in order, so the
        // memory a request holds does not grow with the node count: the
        // whole node list is either the database's shared node set or the
        // request's own (already expanded) list.
        let no_noderange = req.request.noderange.is_none() && req.request.nodes.is_empty();
        if no_noderange && req.nodes.is_empty() {
            let all = ctx.db.nodes().await?;
            let mut names = all.sorted();
            loop {
                let chunk: Vec<String> = names.by_ref().take(CHUNK).map(str::to_string).collect();
                if chunk.is_empty() {
                    break;
                }
                job.run(&chunk).await?;
            }
        } else {
            let mut nodes = req.nodes;
            let sorted = nodes
                .windows(2)
                .all(|w| xcat_db::noderange::natural_cmp(&w[0], &w[1]).is_lt());
            if !sorted {
                xcat_db::noderange::sort_nodes(&mut nodes);
            }
            for chunk in nodes.chunks(CHUNK) {
                job.run(chunk).await?;
            }
        }
        Ok(())
    }
}

/// Nodes resolved and sent per step.
const CHUNK: usize = 500;

/// One `nodels` request after its arguments were parsed.
struct Job<'a> {
    ctx: &'a Context,
    out: &'a Responder,
    show_hidden: bool,
    terse: i32,
    specs: &'a [Spec],
    regexes: &'a [Option<regex::Regex>],
    /// table -> columns to load.
    tables: &'a BTreeMap<String, Vec<String>>,
    displayed: &'a [&'a Spec],
}

impl Job<'_> {
    /// Resolve and send one chunk of (sorted) nodes.
    async fn run(&self, chunk: &[String]) -> HandlerResult {
        self.ctx.check_cancelled()?;
        let visible: Vec<String>;
        let nodes: &[String] = if self.show_hidden {
            chunk
        } else {
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
            if chunk.iter().any(is_hidden) {
                visible = chunk.iter().filter(|n| !is_hidden(n)).cloned().collect();
                &visible
            } else {
                chunk
            }
        };

        if self.specs.is_empty() {
            for n in nodes {
                self.out.data(n.as_str()).await?;
            }
            return Ok(());
        }

        let mut values: BTreeMap<&str, BTreeMap<String, Attrs>> = BTreeMap::new();
        for (t, cols) in self.tables {
            let c: Vec<&str> = cols.iter().map(String::as_str).collect();
            values.insert(t.as_str(), self.ctx.db.node_attrs(nodes, t, &c).await?);
        }
        let value_of = |node: &str, s: &Spec| -> String {
            values
                .get(s.table.as_str())
                .and_then(|m| m.get(node))
                .and_then(|a| a.get(&s.col))
                .cloned()
                .unwrap_or_default()
        };

        for node in nodes {
            let selected = self
                .specs
                .iter()
                .zip(self.regexes)
                .all(|(s, re)| match &s.criterion {
                    Some((op, want)) => matches(*op, re.as_ref(), want, &value_of(node, s)),
                    None => true,
                });
            if !selected {
                continue;
            }
            if self.displayed.is_empty() {
                self.out.data(node.as_str()).await?;
                continue;
            }
            for s in self.displayed {
                let v = value_of(node, s);
                let text = if self.terse > 0 {
                    v
                } else {
                    format!("{}: {v}", s.label)
                };
                self.out
                    .node(NodeRecord {
                        name: node.clone(),
                        data: vec![text],
                        ..Default::default()
                    })
                    .await?;
            }
        }
        Ok(())
    }
}
