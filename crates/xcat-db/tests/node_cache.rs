//! The node cache inside `Db`: writes through another handle on the same
//! database (as another daemon would make), and writes in plain SQL that
//! bypass `Db` entirely, must be seen by the very next expansion; unchanged
//! tables must not cause a reload. Run against SQLite and PostgreSQL.

mod common;

use std::sync::Arc;

use sqlx::{AnyConnection, Connection, Executor};
use xcat_db::{Backend, Db, DbError, NoderangeError};

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A plain connection, outside any `Db`.
async fn raw(url: &str) -> AnyConnection {
    sqlx::any::install_default_drivers();
    AnyConnection::connect(url).await.expect("raw connection")
}

async fn invalid(db: &Db, nr: &str) -> Vec<String> {
    match db.expand_noderange(nr).await {
        Err(DbError::Noderange(NoderangeError::Invalid(bad))) => bad,
        other => panic!("{nr}: expected invalid nodes, got {other:?}"),
    }
}

async fn writes_through_another_handle_are_seen(a: &Db, url: &str) {
    let b = Db::connect(url).await.unwrap();
    a.restore(
        "nodelist",
        "#node,groups\n\"n1\",\"compute\"\n\"n2\",\"compute\"\n",
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        a.expand_noderange("compute").await.unwrap(),
        names(&["n1", "n2"])
    );
    // Warm b's cache too: its own later expansions must not be stale either.
    assert_eq!(b.all_nodes().await.unwrap(), names(&["n1", "n2"]));

    b.upsert("nodelist", &[("node", "n3")], &[("groups", "compute")])
        .await
        .unwrap();
    assert_eq!(
        a.expand_noderange("compute").await.unwrap(),
        names(&["n1", "n2", "n3"]),
        "upsert (insert) by another handle"
    );
    b.upsert("nodelist", &[("node", "n1")], &[("groups", "other")])
        .await
        .unwrap();
    assert_eq!(
        a.expand_noderange("compute").await.unwrap(),
        names(&["n2", "n3"]),
        "upsert (update) by another handle"
    );
    assert_eq!(a.nodes_in_group("other").await.unwrap(), names(&["n1"]));
    b.upsert("nodelist", &[("node", "n2")], &[("disable", "1")])
        .await
        .unwrap();
    assert_eq!(invalid(a, "n2,n3").await, names(&["n2"]), "disabled node");
    assert_eq!(b.delete("nodelist", &[("node", "n3")]).await.unwrap(), 1);
    assert_eq!(a.all_nodes().await.unwrap(), names(&["n1"]), "delete");
    b.insert_rows(
        "nodelist",
        &["node", "groups"],
        &[
            vec![Some("n11".into()), Some("rack".into())],
            vec![Some("n10".into()), Some("rack".into())],
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        a.expand_noderange("rack").await.unwrap(),
        names(&["n10", "n11"]),
        "bulk insert"
    );
    b.restore("nodelist", "#node,groups\n\"m1\",\"mgmt\"\n", false)
        .await
        .unwrap();
    assert_eq!(a.all_nodes().await.unwrap(), names(&["m1"]), "restore");
    assert_eq!(invalid(a, "rack").await, names(&["rack"]));
    b.restore("nodelist", "#node,groups\n\"m2\",\"mgmt\"\n", true)
        .await
        .unwrap();
    assert_eq!(
        a.expand_noderange("mgmt").await.unwrap(),
        names(&["m1", "m2"]),
        "restore --append"
    );
    b.upsert("site", &[("key", "excludenodes")], &[("value", "m1")])
        .await
        .unwrap();
    assert_eq!(
        a.expand_noderange("mgmt").await.unwrap(),
        names(&["m2"]),
        "site.excludenodes set by another handle"
    );
    b.delete("site", &[("key", "excludenodes")]).await.unwrap();
    assert_eq!(
        a.expand_noderange("mgmt").await.unwrap(),
        names(&["m1", "m2"]),
        "site.excludenodes removed by another handle"
    );

    // Attribute inheritance follows the groups the other handle changed, for
    // a short node list (direct lookup or current cache) and a long one.
    b.restore(
        "nodetype",
        "#node,os\n\"mgmt\",\"rhels9\"\n\"rack\",\"sles15\"\n",
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        a.node_attrs(&names(&["m1"]), "nodetype", &["os"])
            .await
            .unwrap()["m1"]["os"],
        "rhels9"
    );
    b.upsert("nodelist", &[("node", "m1")], &[("groups", "rack")])
        .await
        .unwrap();
    assert_eq!(
        a.node_attrs(&names(&["m1"]), "nodetype", &["os"])
            .await
            .unwrap()["m1"]["os"],
        "sles15",
        "short lookup after another handle changed the groups"
    );
    let rows: Vec<Vec<Option<String>>> = (0..300)
        .map(|i| vec![Some(format!("big{i:03}")), Some("mgmt".into())])
        .collect();
    b.insert_rows("nodelist", &["node", "groups"], &rows)
        .await
        .unwrap();
    let mut many: Vec<String> = (0..300).map(|i| format!("big{i:03}")).collect();
    many.push("m1".into());
    let got = a.node_attrs(&many, "nodetype", &["os"]).await.unwrap();
    assert_eq!(got["big299"]["os"], "rhels9");
    assert_eq!(got["m1"]["os"], "sles15");
    assert_eq!(
        a.expand_noderange("nodetype.os==rhels9")
            .await
            .unwrap()
            .len(),
        301,
        "selector over the reloaded nodes (m2 and big000-big299)"
    );
    b.close().await;
}

async fn plain_sql_writes_are_seen(a: &Db, url: &str) {
    a.restore("nodelist", "#node,groups\n\"n1\",\"compute\"\n", false)
        .await
        .unwrap();
    assert_eq!(a.all_nodes().await.unwrap(), names(&["n1"]));
    let mut c = raw(url).await;
    c.execute("INSERT INTO nodelist (node, groups) VALUES ('r1', 'raw')")
        .await
        .unwrap();
    assert_eq!(
        a.expand_noderange("raw").await.unwrap(),
        names(&["r1"]),
        "INSERT"
    );
    c.execute("UPDATE nodelist SET groups = 'raw2' WHERE node = 'r1'")
        .await
        .unwrap();
    assert_eq!(
        a.expand_noderange("raw2").await.unwrap(),
        names(&["r1"]),
        "UPDATE"
    );
    c.execute("DELETE FROM nodelist WHERE node = 'n1'")
        .await
        .unwrap();
    assert_eq!(a.all_nodes().await.unwrap(), names(&["r1"]), "DELETE");
    c.execute("INSERT INTO site (key, value) VALUES ('excludenodes', 'r1')")
        .await
        .unwrap();
    assert_eq!(invalid(a, "raw3").await, names(&["raw3"]));
    assert_eq!(
        a.expand_noderange("raw2").await.unwrap(),
        Vec::<String>::new(),
        "site change in plain SQL"
    );
    // Several statements in one transaction count once they commit.
    c.execute("BEGIN").await.unwrap();
    c.execute("INSERT INTO nodelist (node, groups) VALUES ('t1', 'tx')")
        .await
        .unwrap();
    c.execute("INSERT INTO nodelist (node, groups) VALUES ('t2', 'tx')")
        .await
        .unwrap();
    assert_eq!(invalid(a, "tx").await, names(&["tx"]), "uncommitted");
    c.execute("COMMIT").await.unwrap();
    assert_eq!(
        a.expand_noderange("tx").await.unwrap(),
        names(&["t1", "t2"]),
        "committed"
    );
    if a.backend() == Backend::Postgres {
        c.execute("TRUNCATE nodelist").await.unwrap();
        assert_eq!(
            a.all_nodes().await.unwrap(),
            Vec::<String>::new(),
            "TRUNCATE"
        );
    }
    c.close().await.unwrap();
}

async fn unchanged_tables_reuse_the_snapshot(a: &Db, url: &str) {
    a.restore(
        "nodelist",
        "#node,groups\n\"n1\",\"compute\"\n\"n2\",\"compute\"\n",
        false,
    )
    .await
    .unwrap();
    let first = a.nodes().await.unwrap();
    assert!(
        Arc::ptr_eq(&first, &a.nodes().await.unwrap()),
        "no write: same snapshot"
    );
    assert_eq!(first.sorted().collect::<Vec<_>>(), ["n1", "n2"]);
    assert_eq!(first.groups_of("n2"), Some("compute"));
    // A clone of the handle shares the cache.
    assert!(Arc::ptr_eq(&first, &a.clone().nodes().await.unwrap()));
    // Tables the node set does not depend on leave it alone.
    a.upsert("hosts", &[("node", "n1")], &[("ip", "10.0.0.1")])
        .await
        .unwrap();
    assert!(
        Arc::ptr_eq(&first, &a.nodes().await.unwrap()),
        "hosts write"
    );
    // A site change recomputes the exclusions, not the nodes.
    let b = Db::connect(url).await.unwrap();
    b.upsert("site", &[("key", "excludenodes")], &[("value", "n1")])
        .await
        .unwrap();
    assert_eq!(a.expand_noderange("compute").await.unwrap(), names(&["n2"]));
    assert!(Arc::ptr_eq(&first, &a.nodes().await.unwrap()), "site write");
    // A nodelist write, even one that changes nothing visible, reloads.
    b.upsert("nodelist", &[("node", "n2")], &[("status", "booted")])
        .await
        .unwrap();
    let second = a.nodes().await.unwrap();
    assert!(!Arc::ptr_eq(&first, &second), "nodelist write");
    assert!(Arc::ptr_eq(&second, &a.nodes().await.unwrap()));
    b.close().await;
}

/// Writers on one handle while readers expand on another: every reader sees
/// the group only grow, and everyone sees every node once the writers end.
async fn concurrent_writers_and_readers_converge(a: &Db, url: &str) {
    let b = Db::connect(url).await.unwrap();
    let mut writers = Vec::new();
    for w in 0..4 {
        let b = b.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..15 {
                b.upsert(
                    "nodelist",
                    &[("node", &format!("w{w}n{i:02}"))],
                    &[("groups", "g")],
                )
                .await
                .unwrap();
            }
        }));
    }
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let a = a.clone();
        let done = done.clone();
        readers.push(tokio::spawn(async move {
            let mut last = 0;
            let mut rounds = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || rounds == 0 {
                let n = match a.expand_noderange("g").await {
                    Ok(v) => v.len(),
                    Err(DbError::Noderange(NoderangeError::Invalid(_))) => 0,
                    Err(e) => panic!("{e}"),
                };
                assert!(n >= last, "a reader saw the group shrink: {last} -> {n}");
                last = n;
                rounds += 1;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for r in readers {
        r.await.unwrap();
    }
    assert_eq!(a.expand_noderange("g").await.unwrap().len(), 60);
    assert_eq!(b.expand_noderange("g").await.unwrap().len(), 60);
    b.close().await;
}

/// A database made before the version counters existed (schema 1) gets them,
/// with working triggers, when a newer program opens it.
async fn schema_1_database_is_upgraded(a: &Db, url: &str) {
    a.restore("nodelist", "#node,groups\n\"n1\",\"compute\"\n", false)
        .await
        .unwrap();
    let mut c = raw(url).await;
    match a.backend() {
        Backend::Sqlite => {
            for t in ["nodelist", "site"] {
                for ev in ["insert", "update", "delete"] {
                    c.execute(format!("DROP TRIGGER \"xcat_version_{t}_{ev}\"").as_str())
                        .await
                        .unwrap();
                }
            }
        }
        Backend::Postgres => {
            c.execute("DROP FUNCTION xcat_bump_table_version() CASCADE")
                .await
                .unwrap();
        }
    }
    c.execute("DROP TABLE table_versions").await.unwrap();
    c.execute("DELETE FROM schema_version WHERE version > 1")
        .await
        .unwrap();
    let upgraded = Db::connect(url).await.unwrap();
    assert_eq!(upgraded.all_nodes().await.unwrap(), names(&["n1"]));
    c.execute("INSERT INTO nodelist (node, groups) VALUES ('n2', 'compute')")
        .await
        .unwrap();
    assert_eq!(
        upgraded.expand_noderange("compute").await.unwrap(),
        names(&["n1", "n2"]),
        "triggers recreated by the upgrade"
    );
    // Opening it again runs no migration twice.
    let again = Db::connect(url).await.unwrap();
    assert_eq!(again.all_nodes().await.unwrap(), names(&["n1", "n2"]));
    again.close().await;
    upgraded.close().await;
    c.close().await.unwrap();
}

/// A database made before the boot tables existed (schema 2) gets them
/// when a newer program opens it, with its other rows kept.
async fn schema_2_database_gets_the_boot_tables(a: &Db, url: &str) {
    a.restore("nodelist", "#node,groups\n\"n1\",\"compute\"\n", false)
        .await
        .unwrap();
    let mut c = raw(url).await;
    for t in ["chain", "mac", "networks"] {
        c.execute(format!("DROP TABLE \"{t}\"").as_str())
            .await
            .unwrap();
    }
    c.execute("DELETE FROM schema_version WHERE version > 2")
        .await
        .unwrap();
    let upgraded = Db::connect(url).await.unwrap();
    assert_eq!(upgraded.all_nodes().await.unwrap(), names(&["n1"]));
    upgraded
        .restore("chain", "#node,currstate\n\"n1\",\"boot\"\n", false)
        .await
        .expect("the chain table is back");
    upgraded
        .restore(
            "networks",
            "#net,mask\n\"10.99.0.0\",\"255.255.0.0\"\n",
            false,
        )
        .await
        .expect("the networks table is back");
    let dump = upgraded.dump("chain").await.unwrap();
    assert!(dump.contains("\"n1\",\"boot\""), "{dump}");
    upgraded.close().await;
    c.close().await.unwrap();
}

/// A database made before `osimage.nfsrootopts` (schema 4) gets the column
/// when a newer program opens it, with its rows kept.
async fn schema_4_database_gets_new_columns(a: &Db, url: &str) {
    a.restore(
        "osimage",
        "#imagename,provmethod\n\"img\",\"statelite\"\n",
        false,
    )
    .await
    .unwrap();
    let mut c = raw(url).await;
    c.execute("ALTER TABLE \"osimage\" DROP COLUMN \"nfsrootopts\"")
        .await
        .unwrap();
    c.execute("DELETE FROM schema_version WHERE version > 4")
        .await
        .unwrap();
    let upgraded = Db::connect(url).await.unwrap();
    upgraded
        .upsert(
            "osimage",
            &[("imagename", "img")],
            &[("nfsrootopts", "vers=4.1")],
        )
        .await
        .expect("the column is back");
    let row = upgraded.get_row("osimage", "img").await.unwrap().unwrap();
    assert_eq!(row.get("provmethod").map(String::as_str), Some("statelite"));
    assert_eq!(row.get("nfsrootopts").map(String::as_str), Some("vers=4.1"));
    upgraded.close().await;
    c.close().await.unwrap();
}

/// Names holding the characters the bulk node load splits on still load
/// exactly (through the row-by-row fallback).
async fn separator_characters_in_names(a: &Db, _url: &str) {
    a.restore(
        "nodelist",
        "#node,groups\n\"n1\",\"compute\"\n\"n2\",\n",
        false,
    )
    .await
    .unwrap();
    assert_eq!(a.all_nodes().await.unwrap(), names(&["n1", "n2"]));
    a.upsert(
        "nodelist",
        &[("node", "odd\u{1e}one")],
        &[("groups", "compute")],
    )
    .await
    .unwrap();
    assert_eq!(
        a.expand_noderange("compute").await.unwrap(),
        names(&["n1", "odd\u{1e}one"])
    );
    a.upsert(
        "nodelist",
        &[("node", "odd\u{1f}two")],
        &[("groups", "g\u{1f}x")],
    )
    .await
    .unwrap();
    let nodes = a.nodes().await.unwrap();
    assert_eq!(nodes.len(), 4);
    assert_eq!(nodes.groups_of("odd\u{1f}two"), Some("g\u{1f}x"));
    assert_eq!(nodes.groups_of("n2"), Some(""));
}

both_backends!(
    with_url:
    separator_characters_in_names,
    writes_through_another_handle_are_seen,
    plain_sql_writes_are_seen,
    unchanged_tables_reuse_the_snapshot,
    concurrent_writers_and_readers_converge,
    schema_1_database_is_upgraded,
    schema_2_database_gets_the_boot_tables,
    schema_4_database_gets_new_columns,
);
