//! Time `nodeset <10,000 nodes> osimage=<image>` in-process (the handler
//! as the daemon runs it, real tables, real files), interleaving the cases
//! so drift hits them alike, and print each case's median beside the 2 s
//! target. Run by `bench/nodeset`.
//!
//! ```text
//! cargo run --release -p plugin-nodeset --example bench -- [NODES] [RUNS]
//! ```
//! With `XCATD_TEST_PG_URL` set, PostgreSQL cases run too.

use std::time::{Duration, Instant};

use xcat_db::test_support::TempDatabase;
use xcat_db::Db;
use xcat_plugin::testing::Harness;

const IMG: &str = "rocky9.4-x86_64-netboot-compute";
/// A second image of the same files: switching to it changes every node's
/// files (their state line), the re-deploy case.
const IMG2: &str = "rocky9.4-x86_64-netboot-compute2";
const TARGET: Duration = Duration::from_secs(2);

async fn cluster(h: &Harness, n: usize, netboot: &str) -> Vec<String> {
    let db = h.db();
    let nodes: Vec<String> = (1..=n).map(|i| format!("cn{i:05}")).collect();
    let rows = |f: &dyn Fn(usize, &str) -> Vec<Option<String>>| -> Vec<Vec<Option<String>>> {
        nodes.iter().enumerate().map(|(i, n)| f(i, n)).collect()
    };
    db.insert_rows(
        "nodelist",
        &["node", "groups"],
        &rows(&|_, n| vec![Some(n.into()), Some("compute,all".into())]),
    )
    .await
    .unwrap();
    db.insert_rows(
        "hosts",
        &["node", "ip"],
        &rows(&|i, n| {
            vec![
                Some(n.into()),
                Some(format!("10.99.{}.{}", i / 250, i % 250 + 1)),
            ]
        }),
    )
    .await
    .unwrap();
    db.insert_rows(
        "mac",
        &["node", "mac"],
        &rows(&|i, n| {
            vec![
                Some(n.into()),
                Some(format!("aa:bb:cc:00:{:02x}:{:02x}", i / 256, i % 256)),
            ]
        }),
    )
    .await
    .unwrap();
    db.upsert(
        "noderes",
        &[("node", "compute")],
        &[("netboot", netboot), ("xcatmaster", "10.99.255.1")],
    )
    .await
    .unwrap();
    db.upsert("site", &[("key", "dhcpsetup")], &[("value", "n")])
        .await
        .unwrap();
    let dir = h
        .settings()
        .install_dir
        .join("netboot/rocky9.4/x86_64/compute");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["kernel", "initrd-stateless.gz", "rootimg.cpio.gz"] {
        std::fs::write(dir.join(f), vec![0u8; 1 << 20]).unwrap();
    }
    std::fs::create_dir_all(h.settings().tftp_dir.join("boot/grub2")).unwrap();
    std::fs::write(
        h.settings().tftp_dir.join("boot/grub2/grub2.x86_64"),
        b"efi",
    )
    .unwrap();
    let kv = [
        ("provmethod", "netboot"),
        ("osvers", "rocky9.4"),
        ("osarch", "x86_64"),
        ("profile", "compute"),
    ];
    let d = dir.display().to_string();
    for (img, profile) in [(IMG, "compute"), (IMG2, "compute2")] {
        let mut kv = kv.to_vec();
        kv[3] = ("profile", profile);
        db.upsert("osimage", &[("imagename", img)], &kv)
            .await
            .unwrap();
        db.upsert("linuximage", &[("imagename", img)], &[("rootimgdir", &d)])
            .await
            .unwrap();
    }
    nodes
}

struct Case {
    name: String,
    /// None: the baseline (files only).
    h: Option<Harness>,
    nodes: Vec<String>,
    /// Every node's files removed before each run (first nodeset), else
    /// left from the run before (a repeated nodeset: nothing changed).
    fresh: bool,
    /// Alternate between two images: every file exists and changes.
    switch: bool,
    runs: usize,
    times: Vec<Duration>,
    _pg: Option<TempDatabase>,
}

async fn case(name: &str, backend_pg: bool, netboot: &str, n: usize, fresh: bool) -> Case {
    let (h, pg) = if backend_pg {
        let pg = TempDatabase::from_env();
        let db = Db::connect(pg.url()).await.unwrap();
        (Harness::with_db(db, plugin_nodeset::handlers()), Some(pg))
    } else {
        (Harness::new(plugin_nodeset::handlers()).await, None)
    };
    let nodes = cluster(&h, n, netboot).await;
    Case {
        name: name.into(),
        h: Some(h),
        nodes,
        fresh,
        switch: false,
        runs: 0,
        times: Vec::new(),
        _pg: pg,
    }
}

/// Remove the per-node files of a tree (everything in `dir` but `keep`).
fn clear(dir: &std::path::Path, keep: &str) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name() != keep {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
}

/// The floor: the same number of files of the same size written by
/// temporary name and rename in a bare loop (what the file system costs).
fn baseline(dir: &std::path::Path, nodes: &[String]) {
    let body = vec![b'x'; 600];
    for n in nodes {
        for name in [n.clone(), format!("{n}.uefi")] {
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, &body).unwrap();
            std::fs::rename(&tmp, dir.join(name)).unwrap();
        }
    }
}

async fn once(c: &mut Case, scratch: &std::path::Path) {
    if c.fresh {
        match &c.h {
            None => clear(scratch, ""),
            Some(h) => {
                let tftp = &h.settings().tftp_dir;
                clear(&tftp.join("xcat/xnba/nodes"), "");
                clear(&tftp.join("boot/grub2"), "grub2.x86_64");
            }
        }
        // the removals' journal commits (and discards) belong to no run
        std::process::Command::new("sync").status().unwrap();
    }
    let Some(h) = &c.h else {
        let t = Instant::now();
        baseline(scratch, &c.nodes);
        c.times.push(t.elapsed());
        return;
    };
    let nodes: Vec<&str> = c.nodes.iter().map(String::as_str).collect();
    c.runs += 1;
    let img = if c.switch && c.runs.is_multiple_of(2) {
        IMG2
    } else {
        IMG
    };
    let arg = format!("osimage={img}");
    let t = Instant::now();
    let o = h.request("nodeset", &[&arg]).nodes(&nodes).run().await;
    let d = t.elapsed();
    if let Err(e) = &o.result {
        panic!("{}: nodeset failed: {e}", c.name);
    }
    c.times.push(d);
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let runs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let pg = std::env::var("XCATD_TEST_PG_URL").is_ok_and(|u| !u.is_empty());
    let scratch = tempfile::tempdir().unwrap();
    let mut cases = vec![
        Case {
            name: "files created".into(),
            h: None,
            nodes: (1..=n).map(|i| format!("cn{i:05}")).collect(),
            fresh: true,
            switch: false,
            runs: 0,
            times: Vec::new(),
            _pg: None,
        },
        Case {
            name: "files replaced".into(),
            h: None,
            nodes: (1..=n).map(|i| format!("cn{i:05}")).collect(),
            fresh: false,
            switch: false,
            runs: 0,
            times: Vec::new(),
            _pg: None,
        },
        case("sqlite xnba", false, "xnba", n, true).await,
        case("sqlite xnba again", false, "xnba", n, false).await,
        Case {
            switch: true,
            ..case("sqlite xnba changed", false, "xnba", n, false).await
        },
        case("sqlite grub2", false, "grub2", n, true).await,
        case("sqlite grub2 again", false, "grub2", n, false).await,
    ];
    if pg {
        cases.push(case("postgres xnba", true, "xnba", n, true).await);
        cases.push(case("postgres grub2", true, "grub2", n, true).await);
    }
    // BENCH_CASES=<word>: only the cases whose name holds it (to profile one).
    if let Ok(only) = std::env::var("BENCH_CASES") {
        cases.retain(|c| c.name.contains(&only));
    }
    // One warm-up each (first file creation, caches), then interleaved runs.
    for c in cases.iter_mut() {
        once(c, scratch.path()).await;
        c.times.clear();
    }
    for _ in 0..runs {
        for c in cases.iter_mut() {
            once(c, scratch.path()).await;
        }
    }
    println!(
        "nodeset {n} nodes osimage=<image>, {runs} interleaved runs, {} cores",
        std::thread::available_parallelism()
            .map(|p| p.get())
            .unwrap_or(1)
    );
    println!(
        "{:<20} {:>10} {:>18} {:>8} {:>5}",
        "case", "median s", "range s", "target", "met"
    );
    for c in &mut cases {
        c.times.sort();
        let med = c.times[c.times.len() / 2];
        let (lo, hi) = (c.times[0], c.times[c.times.len() - 1]);
        println!(
            "{:<20} {:>10.3} {:>8.3} - {:<7.3} {:>7}s {:>5}",
            c.name,
            med.as_secs_f64(),
            lo.as_secs_f64(),
            hi.as_secs_f64(),
            TARGET.as_secs(),
            if med < TARGET { "yes" } else { "NO" }
        );
    }
}
