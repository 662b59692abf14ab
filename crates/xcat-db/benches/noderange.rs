//! Speed of noderange expansion and attribute resolution for 100,000 nodes.
//!
//! Run with `cargo bench -p xcat-db --bench noderange`. Plain `std::time`
//! (no bench framework): prints one line per measurement.

use std::time::{Duration, Instant};

use xcat_db::{Db, Universe};

const N: usize = 100_000;

fn node(i: usize) -> String {
    format!("node{i:06}")
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        last = Some(v);
    }
    (best, last.expect("at least one run"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // Pure evaluator: 100,000 nodes in 100 racks of 1,000, all in `compute`.
    let t = Instant::now();
    let mut u = Universe::new();
    for i in 1..=N {
        u.add_node(&node(i), &format!("compute,rack{},all", (i - 1) / 1000 + 1));
    }
    println!("build universe of {N} nodes: {:.1} ms", ms(t.elapsed()));

    let cases = [
        ("group", "compute"),
        ("range", "node000001-node100000"),
        ("brackets", "node[000001-100000]"),
        ("regex", "/node0[0-9]*"),
        ("exclusion", "all,-rack1,-rack2"),
        ("intersection", "compute@(all,-rack50)"),
    ];
    for (what, nr) in cases {
        let (d, v) = best_of(5, || u.expand(nr).expect("expands"));
        println!(
            "expand {} nodes ({what}: {nr}): {:.1} ms (target < 100 ms)",
            v.len(),
            ms(d)
        );
    }

    // Against SQLite: node_attrs for all nodes through group inheritance and a
    // regex template, and a full noderange expansion including the DB load.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let db = Db::connect(&url).await.expect("open sqlite");
        let rows: Vec<Vec<Option<String>>> = (1..=N)
            .map(|i| {
                vec![
                    Some(node(i)),
                    Some(format!("compute,rack{},all", (i - 1) / 1000 + 1)),
                ]
            })
            .collect();
        let t = Instant::now();
        db.insert_rows("nodelist", &["node", "groups"], &rows)
            .await
            .expect("insert nodes");
        db.insert_rows(
            "hosts",
            &["node", "ip"],
            &[vec![
                Some("compute".into()),
                Some(r"|node(\d+)|10.($1/65536).(($1/256)%256).($1%256)|".into()),
            ]],
        )
        .await
        .expect("insert hosts");
        db.insert_rows(
            "nodetype",
            &["node", "os", "arch", "profile"],
            &[
                vec![Some("compute".into()), Some("rhels9".into()), Some("x86_64".into()), None],
                vec![Some("rack7".into()), Some("sles15".into()), None, Some("special".into())],
            ],
        )
        .await
        .expect("insert nodetype");
        println!("load {N} nodelist rows into SQLite: {:.1} ms", ms(t.elapsed()));

        let nodes: Vec<String> = (1..=N).map(node).collect();
        let mut best = Duration::MAX;
        let mut count = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let a = db
                .node_attrs(&nodes, "hosts", &["ip"])
                .await
                .expect("node_attrs");
            best = best.min(t.elapsed());
            count = a.values().filter(|v| v.contains_key("ip")).count();
            assert_eq!(a["node000300"]["ip"], "10.0.1.44");
        }
        println!(
            "node_attrs hosts.ip (regex template) for {N} nodes from SQLite: {:.1} ms ({count} resolved)",
            ms(best)
        );
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let a = db
                .node_attrs(&nodes, "nodetype", &["os", "arch"])
                .await
                .expect("node_attrs");
            best = best.min(t.elapsed());
            assert_eq!(a["node006500"]["os"], "rhels9");
        }
        println!(
            "node_attrs nodetype.os,arch (group inheritance) for {N} nodes from SQLite: {:.1} ms",
            ms(best)
        );
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let v = db.expand_noderange("compute").await.expect("expand");
            best = best.min(t.elapsed());
            assert_eq!(v.len(), N);
        }
        println!(
            "expand_noderange compute ({N} nodes), nodelist unchanged (cached nodes): {:.1} ms",
            ms(best)
        );
        // After each write to nodelist the node cache reloads the table.
        let mut best = Duration::MAX;
        for i in 0..3 {
            db.upsert("nodelist", &[("node", &node(1))], &[("status", &format!("s{i}"))])
                .await
                .expect("upsert");
            let t = Instant::now();
            let v = db.expand_noderange("compute").await.expect("expand");
            best = best.min(t.elapsed());
            assert_eq!(v.len(), N);
        }
        println!(
            "expand_noderange compute ({N} nodes) right after a nodelist write (reload from SQLite): {:.1} ms",
            ms(best)
        );
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let v = db
                .expand_noderange("compute@nodetype.profile==special")
                .await
                .expect("expand");
            best = best.min(t.elapsed());
            assert_eq!(v.len(), 1000);
        }
        println!(
            "expand_noderange with attribute selector over {N} nodes from SQLite: {:.1} ms",
            ms(best)
        );
        db.close().await;
    });
}
