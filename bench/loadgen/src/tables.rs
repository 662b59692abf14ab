//! Noderange expansion and attribute lookup for 100,000 nodes, on SQLite and
//! PostgreSQL, through the library the daemon uses. Each figure is the best
//! of a few runs; its baseline is a plain SQL fetch of the rows it needs
//! (the floor for any implementation that keeps nodes in these tables),
//! straight through the driver (`xcat_db::test_support::raw_nodelist_read`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use xcat_db::test_support::{raw_nodelist_read, TempDatabase};
use xcat_db::{Db, Universe};

use crate::report::{write_rows, Row};

#[derive(clap::Args)]
pub struct Args {
    /// Nodes to define.
    #[arg(long, default_value_t = 100_000)]
    nodes: usize,
    /// PostgreSQL server URL; a scratch database is created on it and dropped.
    #[arg(long)]
    pg_url: Option<String>,
    /// Result rows go here (JSON).
    #[arg(long)]
    out: PathBuf,
}

fn node(i: usize) -> String {
    format!("node{i:06}")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn best_of<T, F, Fut>(runs: usize, mut f: F) -> anyhow::Result<(Duration, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f().await?;
        best = best.min(t.elapsed());
        last = Some(v);
    }
    Ok((best, last.expect("at least one run")))
}

/// The rows every backend gets: 100 racks of 1,000 nodes, an IP template
/// on the group and node types by group (rack7 overrides).
async fn load(db: &Db, n: usize) -> anyhow::Result<()> {
    let rows: Vec<Vec<Option<String>>> = (1..=n)
        .map(|i| {
            vec![
                Some(node(i)),
                Some(format!("compute,rack{},all", (i - 1) / 1000 + 1)),
            ]
        })
        .collect();
    db.insert_rows("nodelist", &["node", "groups"], &rows)
        .await?;
    db.insert_rows(
        "hosts",
        &["node", "ip"],
        &[vec![
            Some("compute".into()),
            Some(r"|node(\d+)|10.($1/65536).(($1/256)%256).($1%256)|".into()),
        ]],
    )
    .await?;
    db.insert_rows(
        "nodetype",
        &["node", "os", "arch", "profile"],
        &[
            vec![
                Some("compute".into()),
                Some("rhels9".into()),
                Some("x86_64".into()),
                None,
            ],
            vec![
                Some("rack7".into()),
                Some("sles15".into()),
                None,
                Some("special".into()),
            ],
        ],
    )
    .await?;
    Ok(())
}

/// Noderange expansion, best of three; it must give `want` nodes.
async fn timed_expand(db: &Db, noderange: &str, want: usize) -> anyhow::Result<Duration> {
    let (d, v) = best_of(3, || async { Ok(db.expand_noderange(noderange).await?) }).await?;
    anyhow::ensure!(v.len() == want, "{noderange} expanded to {} nodes", v.len());
    Ok(d)
}

async fn measure(
    db: &Db,
    backend: &str,
    raw_url: &str,
    n: usize,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let t = Instant::now();
    load(db, n).await?;
    eprintln!("{backend}: loaded {n} nodes in {:.0} ms", ms(t.elapsed()));
    // The baseline: every nodelist row read straight through the driver.
    let raw = || async {
        let count = raw_nodelist_read(raw_url).await?;
        anyhow::ensure!(count == n, "raw fetch saw {count} rows");
        Ok(())
    };
    let (raw_t, ()) = best_of(3, raw).await?;
    let what = "plain SELECT of every nodelist row (new connection), same run";
    let row = |name: String, d: Duration| Row::new(name, ms(d), "ms").baseline(ms(raw_t), what);

    let brackets = format!("node[000001-{}]", node(n).trim_start_matches("node"));
    for (noderange, label) in [
        ("compute", format!("'compute' ({n} nodes, incl. DB load)")),
        (
            brackets.as_str(),
            format!("'node[000001-{n}]' (incl. DB load)"),
        ),
    ] {
        let d = timed_expand(db, noderange, n).await?;
        let name = format!("tables {backend}: expand noderange {label}");
        rows.push(row(name, d).target(false, 100.0));
    }
    let d = timed_expand(db, "compute@nodetype.profile==special", 1000).await?;
    let name =
        format!("tables {backend}: expand 'compute@nodetype.profile==special' over {n} nodes");
    rows.push(row(name, d));

    let nodes: Vec<String> = (1..=n).map(node).collect();
    let (d, a) = best_of(3, || async {
        Ok(db.node_attrs(&nodes, "hosts", &["ip"]).await?)
    })
    .await?;
    anyhow::ensure!(
        a["node000300"]["ip"] == "10.0.1.44",
        "template ip of node000300: {:?}",
        a["node000300"]
    );
    let name = format!("tables {backend}: hosts.ip via regex template for {n} nodes");
    rows.push(row(name, d));
    let (d, a) = best_of(3, || async {
        Ok(db.node_attrs(&nodes, "nodetype", &["os", "arch"]).await?)
    })
    .await?;
    anyhow::ensure!(
        a["node006500"]["os"] == "rhels9" && a["node000001"]["arch"] == "x86_64",
        "group inheritance"
    );
    let name = format!("tables {backend}: nodetype.os,arch via group inheritance for {n} nodes");
    rows.push(row(name, d));
    Ok(())
}

/// The pure evaluator (no database), beside sorting the same names.
fn evaluator(n: usize, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let mut u = Universe::new();
    for i in 1..=n {
        u.add_node(&node(i), &format!("compute,rack{},all", (i - 1) / 1000 + 1));
    }
    let base = (0..5)
        .map(|_| {
            let t = Instant::now();
            let mut v: Vec<String> = (1..=n).rev().map(node).collect();
            v.sort();
            v.dedup();
            t.elapsed()
        })
        .min()
        .expect("runs");
    let what = "building and sorting the same node names, same run";
    for (label, nr) in [
        ("group", "compute".to_string()),
        ("range", format!("node000001-{}", node(n))),
        (
            "brackets",
            format!("node[000001-{}]", node(n).trim_start_matches("node")),
        ),
        ("exclusion", "all,-rack1,-rack2".to_string()),
        ("intersection", "compute@(all,-rack50)".to_string()),
        ("regex", "/node0[0-9]*".to_string()),
    ] {
        let mut best = Duration::MAX;
        let mut len = 0;
        for _ in 0..5 {
            let t = Instant::now();
            len = u
                .expand(&nr)
                .with_context(|| format!("expanding {nr}"))?
                .len();
            best = best.min(t.elapsed());
        }
        anyhow::ensure!(len >= n - 2000, "{nr} expanded to {len} nodes");
        rows.push(
            Row::new(
                format!("noderange evaluator: {label} '{nr}' ({len} nodes)"),
                ms(best),
                "ms",
            )
            .baseline(ms(base), what)
            .target(false, 100.0),
        );
    }
    Ok(())
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    evaluator(a.nodes, &mut rows)?;

    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let db = Db::connect(&url).await?;
    measure(&db, "SQLite", &url, a.nodes, &mut rows).await?;
    db.close().await;

    match &a.pg_url {
        Some(server) => {
            let scratch =
                TempDatabase::create_on(server).context("creating the scratch database")?;
            let url = scratch.url();
            let db = Db::connect(url).await?;
            let r = measure(&db, "PostgreSQL", url, a.nodes, &mut rows).await;
            db.close().await;
            r?;
        }
        None => eprintln!("no PostgreSQL URL given: PostgreSQL figures skipped"),
    }
    write_rows(&a.out, &rows)
}
