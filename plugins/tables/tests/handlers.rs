//! The table commands end to end through the Handler interface, against a
//! real database (SQLite, and PostgreSQL on the server named by
//! XCATD_TEST_PG_URL, which must be set).

use xcat_db::test_support::TempDatabase;
use xcat_plugin::testing::{Harness, Outcome};
use xcat_plugin::Db;

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn run(
    h: &Harness,
    cmd: &str,
    args: &[&str],
    noderange: Option<&[&str]>,
    stdin: Option<&str>,
) -> Outcome {
    let mut call = h.request(cmd, args);
    if let Some(n) = noderange {
        call = call.nodes(n);
    }
    if let Some(text) = stdin {
        call = call.stdin(text);
    }
    call.run().await
}

const NODELIST: &str = "#node,groups,status,statustime,appstatus,appstatustime,primarysn,hidden,updatestatus,updatestatustime,zonename,comments,disable\n\
\"node01\",\"compute,all\",\"booted\",,,,,,,,,,\n\
\"node02\",\"compute,all\",,,,,,,,,,,\n\
\"node10\",\"compute,all\",,,,,,,,,,,\n\
\"bmc1\",\"all\",,,,,,\"1\",,,,,\n";

async fn scenario(h: &Harness) {
    let db = h.db();
    // tabdump: list, usage, unknown table, empty table.
    let o = run(h, "tabdump", &[], None, None).await;
    assert!(o.ok().lines().contains(&"nodelist".to_string()));
    assert_eq!(o.lines().len(), xcat_db::schema::TABLES.len());
    let o = run(h, "tabdump", &["-h"], None, None).await;
    assert!(o.ok().lines()[0].starts_with("Usage: tabdump"));
    assert!(run(h, "tabdump", &["nosuch"], None, None)
        .await
        .err()
        .contains("No such table: nosuch"));
    assert!(run(h, "tabdump", &["a", "b"], None, None)
        .await
        .err()
        .contains("Usage"));
    let o = run(h, "tabdump", &["site"], None, None).await;
    assert_eq!(o.ok().lines(), vec!["#key,value,comments,disable"]);

    // tabrestore from stdin; table from the file name; errors name the line.
    run(
        h,
        "tabrestore",
        &["/root/nodelist.csv"],
        None,
        Some(NODELIST),
    )
    .await
    .ok();
    let o = run(h, "tabdump", &["nodelist"], None, None).await;
    assert_eq!(
        o.ok().lines().join("\n") + "\n",
        NODELIST,
        "tabdump output equals the restored file"
    );
    let e = run(
        h,
        "tabrestore",
        &["-t", "nodelist", "x.csv"],
        None,
        Some("#node,groups\n\"a\",\"b\"\n\"c\",\"d\",\"e\"\n"),
    )
    .await
    .err();
    assert!(e.contains("line 3") && e.contains("not changed"), "{e}");
    assert_eq!(
        run(h, "tabdump", &["nodelist"], None, None)
            .await
            .lines()
            .len(),
        5,
        "failed restore kept the table"
    );
    assert!(run(h, "tabrestore", &["site.csv"], None, None)
        .await
        .err()
        .contains("stdin"));
    assert!(run(h, "tabrestore", &["bogus.csv"], None, Some("#a\n"))
        .await
        .err()
        .contains("No such table"));
    run(
        h,
        "tabrestore",
        &["-a", "site.csv"],
        None,
        Some("#key,value\n\"domain\",\"cluster\"\n"),
    )
    .await
    .ok();

    // chtab: upsert (several columns of one table), delete, errors.
    run(
        h,
        "chtab",
        &[
            "key=xcatdport",
            "site.value=3001",
            "site.comments=port, \"main\"",
        ],
        None,
        None,
    )
    .await
    .ok();
    assert_eq!(db.site("xcatdport").await.unwrap().as_deref(), Some("3001"));
    let dump = run(h, "tabdump", &["site"], None, None).await;
    assert!(
        dump.lines()
            .contains(&"\"xcatdport\",\"3001\",\"port, \"\"main\"\"\",".to_string()),
        "{:?}",
        dump.lines()
    );
    run(
        h,
        "chtab",
        &[
            "node=compute",
            "nodetype.os=rhels9",
            "nodetype.arch=x86_64",
            "hosts.ip=|node(\\d+)|10.0.0.($1+0)|",
        ],
        None,
        None,
    )
    .await
    .ok();
    run(
        h,
        "chtab",
        &["node=node02", "nodetype.os=sles15"],
        None,
        None,
    )
    .await
    .ok();
    run(
        h,
        "chtab",
        &["key=system,username=root", "passwd.password=secret"],
        None,
        None,
    )
    .await
    .ok();
    assert_eq!(db.rows("passwd").await.unwrap()[0]["username"], "root");
    run(
        h,
        "chtab",
        &["-d", "key=system,username=root", "passwd"],
        None,
        None,
    )
    .await
    .ok();
    assert!(db.rows("passwd").await.unwrap().is_empty());
    assert!(run(h, "chtab", &["key=x", "site.nosuch=1"], None, None)
        .await
        .err()
        .contains("site.nosuch"));
    assert!(run(h, "chtab", &["key=x", "nosuch.value=1"], None, None)
        .await
        .err()
        .contains("Table nosuch does not exist"));
    assert!(run(h, "chtab", &["node=x", "site.value=1"], None, None)
        .await
        .err()
        .contains("Table site has no such column: node"));
    // A bad key is named before a bad column of the same table.
    let e = run(h, "chtab", &["nokey=x", "site.nocol=1"], None, None)
        .await
        .err();
    assert!(
        e.contains("no such column: nokey") && !e.contains("nocol"),
        "{e}"
    );
    // chtab -d names every table it does not know.
    let e = run(
        h,
        "chtab",
        &["-d", "key=x", "nosuch1", "site", "nosuch2"],
        None,
        None,
    )
    .await
    .err();
    assert!(
        e.contains("Table nosuch1 does not exist") && e.contains("Table nosuch2 does not exist"),
        "{e}"
    );
    assert!(run(h, "chtab", &["key=x"], None, None)
        .await
        .err()
        .contains("Usage"));
    assert!(run(h, "chtab", &["-d", "key=x", "site.value"], None, None)
        .await
        .err()
        .contains("delete mode"));
    assert!(run(h, "chtab", &["-h"], None, None).await.ok().lines()[0].starts_with("Usage: chtab"));

    // nodels: all nodes (hidden ones only with -S), explicit nodes, attributes.
    let o = run(h, "nodels", &[], None, None).await;
    assert_eq!(o.ok().lines(), names(&["node01", "node02", "node10"]));
    let o = run(h, "nodels", &["-S"], None, None).await;
    assert_eq!(
        o.ok().lines(),
        names(&["bmc1", "node01", "node02", "node10"])
    );
    let o = run(
        h,
        "nodels",
        &["nodetype.os"],
        Some(&["node10", "node02"]),
        None,
    )
    .await;
    assert_eq!(o.ok().lines(), names(&["node02: sles15", "node10: rhels9"]));
    let o = run(
        h,
        "nodels",
        &["nodetype.os", "hosts.ip"],
        Some(&["node10"]),
        None,
    )
    .await;
    assert_eq!(
        o.ok().lines(),
        names(&["node10: nodetype.os: rhels9", "node10: hosts.ip: 10.0.0.10"])
    );
    let o = run(h, "nodels", &["-H", "groups"], Some(&["node01"]), None).await;
    assert_eq!(o.ok().lines(), names(&["node01: groups: compute,all"]));
    let o = run(
        h,
        "nodels",
        &["nodetype.os==rhels9"],
        Some(&["node01", "node02", "node10"]),
        None,
    )
    .await;
    assert_eq!(o.ok().lines(), names(&["node01", "node10"]));
    let o = run(
        h,
        "nodels",
        &["nodetype.os!~^rh", "nodetype.os", "nodelist.status"],
        Some(&["node01", "node02"]),
        None,
    )
    .await;
    assert_eq!(
        o.ok().lines(),
        names(&["node02: nodetype.os: sles15", "node02: nodelist.status: "])
    );
    let o = run(h, "nodels", &["hosts"], Some(&["node01"]), None).await;
    assert_eq!(o.ok().lines()[0], "node01: hosts.node: node01");
    assert!(o
        .lines()
        .contains(&"node01: hosts.ip: 10.0.0.1".to_string()));
    assert!(
        run(h, "nodels", &["nodetype.bogus"], Some(&["node01"]), None)
            .await
            .err()
            .contains("not a valid")
    );
    assert!(run(h, "nodels", &["site.value"], Some(&["node01"]), None)
        .await
        .err()
        .contains("not keyed by node"));

    // lsdef -t osimage.
    let o = run(h, "lsdef", &["-t", "osimage"], None, None).await;
    assert!(o.ok().lines()[0].contains("Could not find any"));
    run(
        h,
        "chtab",
        &[
            "imagename=rh9-compute",
            "osimage.profile=compute",
            "osimage.osvers=rhels9",
            "osimage.osarch=x86_64",
            "osimage.imagetype=linux",
            "osimage.provmethod=netboot",
            "linuximage.rootimgdir=/install/netboot/rh9/compute",
            "osimage.comments=captured",
        ],
        None,
        None,
    )
    .await
    .ok();
    let o = run(h, "lsdef", &["-t", "osimage"], None, None).await;
    assert_eq!(o.ok().lines(), names(&["rh9-compute  (osimage)"]));
    let o = run(h, "lsdef", &["-t", "osimage", "rh9-compute"], None, None).await;
    assert_eq!(
        o.ok().lines(),
        names(&[
            "Object name: rh9-compute",
            "    imagetype=linux",
            "    osarch=x86_64",
            "    osvers=rhels9",
            "    profile=compute",
            "    provmethod=netboot",
            "    rootimgdir=/install/netboot/rh9/compute",
            "    usercomment=captured",
        ])
    );
    let o = run(
        h,
        "lsdef",
        &["-t", "osimage", "-o", "rh9-compute,nope"],
        None,
        None,
    )
    .await;
    assert!(o
        .err()
        .contains("Could not find an object named 'nope' of type 'osimage'."));
    assert_eq!(o.lines()[0], "Object name: rh9-compute");
    // Without -t the names are nodes.
    assert!(run(h, "lsdef", &["rh9-compute"], None, None)
        .await
        .err()
        .contains("Could not find an object named 'rh9-compute' of type 'node'."));
}

/// `nodels` over more nodes than it resolves at a time: hidden nodes (own
/// row, and inherited from a group row) in several chunks, group inheritance
/// and templates, a selection, and an unsorted node list with a duplicate:
/// the output must be exactly what one pass over all nodes would give.
async fn many_nodes(h: &Harness) {
    let db = h.db();
    const N: usize = 1234;
    let rack = |i: usize| i / 100;
    let name = |i: usize| format!("n{i:04}");
    let own_hidden = |i: usize| i.is_multiple_of(301);
    let mut text = String::from("#node,groups,hidden\n");
    for i in (1..=N).rev() {
        let hidden = if own_hidden(i) { "\"1\"" } else { "" };
        text.push_str(&format!(
            "\"{}\",\"rack{},compute\",{hidden}\n",
            name(i),
            rack(i)
        ));
    }
    text.push_str("\"rack7\",,\"1\"\n");
    db.restore("nodelist", &text, false).await.unwrap();
    db.restore(
        "nodetype",
        "#node,os\n\"compute\",\"rhels9\"\n\"rack3\",\"sles15\"\n",
        false,
    )
    .await
    .unwrap();
    db.restore(
        "hosts",
        "#node,ip\n\"compute\",\"|n(\\d+)|10.0.($1/256).($1%256)|\"\n",
        false,
    )
    .await
    .unwrap();
    let visible: Vec<usize> = (1..=N)
        .filter(|&i| !own_hidden(i) && rack(i) != 7)
        .collect();
    let os = |i: usize| if rack(i) == 3 { "sles15" } else { "rhels9" };

    let o = run(h, "nodels", &[], None, None).await;
    let want: Vec<String> = visible.iter().map(|&i| name(i)).collect();
    assert_eq!(o.ok().lines(), want);

    let o = run(h, "nodels", &["-S"], None, None).await;
    let mut want: Vec<String> = (1..=N).map(name).collect();
    want.push("rack7".into());
    assert_eq!(o.ok().lines(), want);

    let mut given: Vec<String> = (1..=N).rev().map(name).collect();
    given.push(name(5));
    let given: Vec<&str> = given.iter().map(String::as_str).collect();
    let o = run(
        h,
        "nodels",
        &["nodetype.os", "hosts.ip"],
        Some(&given),
        None,
    )
    .await;
    let want: Vec<String> = visible
        .iter()
        .flat_map(|&i| {
            [
                format!("{}: nodetype.os: {}", name(i), os(i)),
                format!("{}: hosts.ip: 10.0.{}.{}", name(i), i / 256, i % 256),
            ]
        })
        .collect();
    assert_eq!(o.ok().lines(), want);

    let o = run(h, "nodels", &["nodetype.os==sles15"], None, None).await;
    let want: Vec<String> = visible
        .iter()
        .filter(|&&i| rack(i) == 3)
        .map(|&i| name(i))
        .collect();
    assert_eq!(want.len(), 99, "rack 3 minus its one hidden node");
    assert_eq!(o.ok().lines(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_commands_sqlite() {
    let h = Harness::new(plugin_tables::handlers()).await;
    scenario(&h).await;
    many_nodes(&h).await;
}

#[ignore = "needs PostgreSQL (XCATD_TEST_PG_URL): ./scripts/test-all runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_commands_postgres() {
    let pg = TempDatabase::from_env();
    let db = Db::connect(pg.url()).await.unwrap();
    let h = Harness::with_db(db.clone(), plugin_tables::handlers());
    scenario(&h).await;
    many_nodes(&h).await;
    db.close().await;
}
