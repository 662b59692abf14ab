//! Time the object commands for a cluster of NODES nodes in-process (the
//! handlers as the daemon runs them, real tables): `mkdef` of every node in
//! one command (target 5 s), `chdef` of a group attribute (which every
//! member resolves at once), and `lsdef -l compute` (target 2 s), runs
//! interleaved so drift hits the cases alike; prints each case's median
//! and range beside its target. Run by `bench/objects`.
//!
//! ```text
//! cargo run --release -p plugin-tables --example objects_bench -- [NODES] [RUNS]
//! ```
//! With `XCATD_TEST_PG_URL` set, PostgreSQL cases run too.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use xcat_db::test_support::TempDatabase;
use xcat_db::Db;
use xcat_plugin::testing::Harness;

/// One run's timings of every case.
type Timings = Vec<(&'static str, Duration)>;

async fn one_run(h: &Harness, nodes: usize, run: usize) -> Timings {
    let range = format!("cn[00001-{nodes:05}]");
    let mut t = Vec::new();
    let start = Instant::now();
    h.run(
        "mkdef",
        &[
            "-t",
            "node",
            "-o",
            &range,
            "groups=compute,all",
            "mgt=ipmi",
            "os=rhels9",
            "arch=x86_64",
        ],
    )
    .await
    .ok();
    t.push(("mkdef", start.elapsed()));
    let master = format!("10.99.255.{}", run % 250 + 1);
    let start = Instant::now();
    h.run(
        "chdef",
        &["-t", "group", "compute", &format!("xcatmaster={master}")],
    )
    .await
    .ok();
    t.push(("chdef group", start.elapsed()));
    let start = Instant::now();
    let out = h.run("lsdef", &["-l", "compute"]).await;
    t.push(("lsdef -l", start.elapsed()));
    let lines = out.ok().lines();
    let resolved = lines
        .iter()
        .filter(|l| **l == format!("    xcatmaster={master}"))
        .count();
    assert_eq!(
        resolved, nodes,
        "every member resolves the group's new value"
    );
    t
}

fn target(case: &str) -> Option<Duration> {
    match case {
        "mkdef" => Some(Duration::from_secs(5)),
        "lsdef -l" => Some(Duration::from_secs(2)),
        _ => None,
    }
}

#[tokio::main]
async fn main() {
    let mut a = std::env::args().skip(1);
    let nodes: usize = a.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let runs: usize = a.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let pg = std::env::var("XCATD_TEST_PG_URL").is_ok();
    let mut all: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    for run in 0..runs {
        for backend in ["sqlite", "postgres"] {
            if backend == "postgres" && !pg {
                continue;
            }
            // A fresh database per run: mkdef creates, never replaces.
            let (h, _db) = if backend == "sqlite" {
                (Harness::new(plugin_tables::handlers()).await, None)
            } else {
                let db = TempDatabase::from_env();
                let conn = Db::connect(db.url()).await.expect("PostgreSQL");
                (Harness::with_db(conn, plugin_tables::handlers()), Some(db))
            };
            for (case, d) in one_run(&h, nodes, run).await {
                all.entry(format!("{backend:8} {case}"))
                    .or_default()
                    .push(d);
            }
        }
    }
    println!("objects, {nodes} nodes, {runs} interleaved runs (median [min-max], target)");
    for (case, mut v) in all {
        v.sort();
        let median = v[v.len() / 2];
        let name = case.split_whitespace().last().unwrap_or("");
        let name = if name == "group" {
            "chdef group"
        } else if name == "-l" {
            "lsdef -l"
        } else {
            name
        };
        let t = target(name)
            .map(|t| {
                let verdict = if median <= t { "met" } else { "MISSED" };
                format!("target {:.1} s: {verdict}", t.as_secs_f64())
            })
            .unwrap_or_else(|| "no target".into());
        println!(
            "  {case:24} {:7.3} s [{:.3}-{:.3}]  {t}",
            median.as_secs_f64(),
            v[0].as_secs_f64(),
            v[v.len() - 1].as_secs_f64()
        );
    }
}
