//! Table behaviour, run against SQLite and PostgreSQL alike.

mod common;

use std::sync::Arc;

use xcat_db::{Db, DbError, NoderangeError, PolicyDecision, PolicyQuery, SiteSeeds};

const SEEDS: SiteSeeds<'static> = SiteSeeds {
    server_name: "mn1",
    install_dir: "/install",
    tftp_dir: "/tftpboot",
    http_port: None,
    status_port: None,
};

const SITE: &str = r#"#key,value,comments,disable
"xcatdport","3001",,
"master","mn1","the ""main"" server, really",
"domain","cluster.example",,
"excludenodes","node099",,
"oldkey","x",,"1"
"keptkey","y",,"NO"
"#;

const NODELIST: &str = r#"#node,groups,status,statustime,appstatus,appstatustime,primarysn,hidden,updatestatus,updatestatustime,zonename,comments,disable
"node001","compute,rack1,all",,,,,,,,,,,
"node002","compute,rack1,all","booted",,,,,,,,,,
"node007","rack2,compute,all",,,,,,,,,,,
"node010","rack2,compute,all",,,,,,,,,,,
"node099","compute,all",,,,,,,,,,,
"mgmt1","service,all",,,,,,,,,,,
"old1","compute",,,,,,,,,,,"yes"
"#;

const NODETYPE: &str = r#"#node,os,arch,profile,provmethod,supportedarchs,nodetype,comments,disable
"compute","rhels9","x86_64","compute",,,,,
"rack2","sles15","ppc64le",,,,,,
"node002","ubuntu22",,,,,,"own os",
"rack1","never",,,,,,,"1"
"#;

const HOSTS: &str = r#"#node,ip,hostnames,otherinterfaces,comments,disable
"compute","|node(\d+)|10.0.0.($1+0)|","/$/-mgmt/",,,
"node002","10.9.9.9",,,,
"mgmt1","|^.*$||",,,,
"#;

const POLICY: &str = r#"#priority,name,host,commands,noderange,parameters,time,rule,comments,disable
"1","root",,,,,,"allow",,
"1.2","mn1",,,,,,"trusted",,
"4","*",,"nodels,tabdump",,,,"allow","read-only ""viewers""",
"5",,,,,,,"deny",,"1"
"#;

async fn load_fixture(db: &Db) {
    for (t, text) in [
        ("site", SITE),
        ("nodelist", NODELIST),
        ("nodetype", NODETYPE),
        ("hosts", HOSTS),
        ("policy", POLICY),
    ] {
        db.restore(t, text, false)
            .await
            .unwrap_or_else(|e| panic!("restore {t}: {e}"));
    }
}

fn s(v: &str) -> String {
    v.to_string()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

async fn dump_restore_round_trip(db: &Db) {
    load_fixture(db).await;
    for (t, text) in [
        ("site", SITE),
        ("nodelist", NODELIST),
        ("nodetype", NODETYPE),
        ("hosts", HOSTS),
        ("policy", POLICY),
    ] {
        let dumped = db.dump(t).await.unwrap();
        assert_eq!(
            dumped, text,
            "dump of {t} must equal the restored file byte for byte"
        );
        // Restoring the dump again (replace mode) changes nothing.
        db.restore(t, &dumped, false).await.unwrap();
        assert_eq!(db.dump(t).await.unwrap(), text, "second round trip of {t}");
    }
    // An empty table dumps as its header only.
    assert_eq!(
        db.dump("passwd").await.unwrap(),
        "#key,username,password,cryptmethod,authdomain,comments,disable\n"
    );
    // Header columns may be a subset, in another order; missing ones are empty.
    db.restore("site", "#value,key\n\"v1\",\"k1\"\n", true)
        .await
        .unwrap();
    assert!(db
        .dump("site")
        .await
        .unwrap()
        .ends_with("\"k1\",\"v1\",,\n"));
}

async fn restore_errors_name_lines_and_roll_back(db: &Db) {
    load_fixture(db).await;
    let before = db.dump("site").await.unwrap();
    let cases: &[(&str, usize, &str)] = &[
        (
            "#key,value\n\"a\",\"1\"\n\"b\",\"2\",\"3\"\n",
            3,
            "too many fields",
        ),
        (
            "#key,value\n\"a\",\"1\"\n\"b\",\"2\"\n\"a\",\"3\"\n",
            4,
            "duplicate key",
        ),
        (
            "#key,value\n\"a\",\"1\"\n\n\"b\",2\"\n",
            4,
            "missing opening",
        ),
        ("#key,bogus\n\"a\",\"1\"\n", 1, "bogus"),
        ("key,value\n", 1, "header"),
        ("#key,value\n\"a\",\"1\"\n,\"2\"\n", 3, "empty key"),
        ("#key,value\n\"a\",\"unterminated\n", 2, "unmatched"),
    ];
    for (text, line, needle) in cases {
        match db.restore("site", text, false).await {
            Err(DbError::Restore { line: l, message }) => {
                assert_eq!(l, *line, "{text:?}: {message}");
                assert!(message.contains(needle), "{text:?}: {message}");
            }
            other => panic!("{text:?}: expected a restore error, got {other:?}"),
        }
        assert_eq!(
            db.dump("site").await.unwrap(),
            before,
            "failed restore must change nothing"
        );
    }
    // Append refuses keys that already exist, naming the line.
    match db
        .restore(
            "site",
            "#key,value\n\"new\",\"1\"\n\"master\",\"x\"\n",
            true,
        )
        .await
    {
        Err(DbError::Restore { line: 3, .. }) => {}
        other => panic!("append duplicate: {other:?}"),
    }
    assert_eq!(db.dump("site").await.unwrap(), before);
    assert!(matches!(
        db.restore("nosuch", "#a\n", false).await,
        Err(DbError::UnknownTable(_))
    ));
}

async fn disable_semantics(db: &Db) {
    load_fixture(db).await;
    assert_eq!(
        db.site("oldkey").await.unwrap(),
        None,
        "disable=1 hides the row"
    );
    assert_eq!(
        db.site("keptkey").await.unwrap().as_deref(),
        Some("y"),
        "disable=NO is active"
    );
    assert_eq!(db.site("master").await.unwrap().as_deref(), Some("mn1"));
    assert_eq!(db.site("missing").await.unwrap(), None);
    let keys: Vec<String> = db
        .rows("site")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r["key"].clone())
        .collect();
    assert_eq!(
        keys,
        names(&["xcatdport", "master", "domain", "excludenodes", "keptkey"])
    );
    for (val, active) in [
        ("0", true),
        ("no", true),
        ("No", true),
        ("1", false),
        ("yes", false),
        ("true", false),
    ] {
        db.upsert("site", &[("key", "k")], &[("value", "v"), ("disable", val)])
            .await
            .unwrap();
        assert_eq!(
            db.site("k").await.unwrap().is_some(),
            active,
            "disable={val}"
        );
        assert_eq!(
            db.get_row("site", "k").await.unwrap().is_some(),
            active,
            "get_row disable={val}"
        );
    }
    // Disabled nodes are not nodes; disabled group rows are not inherited.
    let all = db.all_nodes().await.unwrap();
    assert!(!all.contains(&s("old1")));
    assert_eq!(
        all,
        names(&["mgmt1", "node001", "node002", "node007", "node010", "node099"])
    );
    let a = db
        .node_attrs(&names(&["node001"]), "nodetype", &["os"])
        .await
        .unwrap();
    assert_eq!(
        a["node001"].get("os").map(String::as_str),
        Some("rhels9"),
        "rack1 row is disabled"
    );
    // ... but the dump still shows them.
    assert!(db.dump("nodelist").await.unwrap().contains("\"old1\""));
}

async fn inheritance(db: &Db) {
    load_fixture(db).await;
    let nodes = names(&["node001", "node002", "node007", "mgmt1", "ghost"]);
    let a = db
        .node_attrs(&nodes, "nodetype", &["os", "arch", "profile", "comments"])
        .await
        .unwrap();
    let get = |n: &str, c: &str| a[n].get(c).cloned();
    // Group value when the node has none (first group: compute).
    assert_eq!(get("node001", "os").as_deref(), Some("rhels9"));
    // The node's own value beats every group.
    assert_eq!(get("node002", "os").as_deref(), Some("ubuntu22"));
    assert_eq!(get("node002", "comments").as_deref(), Some("own os"));
    // Per attribute: node002 has no arch of its own, so it inherits it.
    assert_eq!(get("node002", "arch").as_deref(), Some("x86_64"));
    // The first listed group wins: node007 lists rack2 before compute.
    assert_eq!(get("node007", "os").as_deref(), Some("sles15"));
    assert_eq!(get("node007", "arch").as_deref(), Some("ppc64le"));
    // ... and a later group still fills what the earlier one lacks.
    assert_eq!(get("node007", "profile").as_deref(), Some("compute"));
    // The key column names the node even when the row is a group's.
    let k = db
        .node_attrs(&names(&["node001", "mgmt1"]), "nodetype", &["node"])
        .await
        .unwrap();
    assert_eq!(k["node001"]["node"], "node001");
    assert!(k["mgmt1"].is_empty());
    // No groups, no rows: nothing, but the node is present.
    assert!(a["mgmt1"].is_empty());
    assert!(a["ghost"].is_empty());
    // Unknown columns and tables that are not node-keyed are errors.
    assert!(matches!(
        db.node_attrs(&nodes, "nodetype", &["nosuch"]).await,
        Err(DbError::UnknownColumn { .. })
    ));
    assert!(db.node_attrs(&nodes, "site", &["value"]).await.is_err());
    // Many nodes take the whole-table path; results must agree.
    let many: Vec<String> = (0..300)
        .map(|i| format!("x{i}"))
        .chain(nodes.clone())
        .collect();
    let b = db
        .node_attrs(&many, "nodetype", &["os", "arch", "profile"])
        .await
        .unwrap();
    assert_eq!(b["node007"].get("os"), a["node007"].get("os"));
    assert_eq!(b["node002"].get("arch"), a["node002"].get("arch"));
    assert_eq!(b.len(), many.len());
}

async fn blamed_values_name_their_group(db: &Db) {
    load_fixture(db).await;
    let nodes = names(&["node001", "node002", "node007", "node010", "mgmt1"]);
    let b = db
        .node_attrs_blamed(&nodes, "nodetype", &["os", "arch", "profile", "node"])
        .await
        .unwrap();
    let from = |n: &str, c: &str| b[n].get(c).map(|v| (v.value.as_str(), v.group.as_deref()));
    assert_eq!(from("node001", "os"), Some(("rhels9", Some("compute"))));
    assert_eq!(from("node002", "os"), Some(("ubuntu22", None)));
    assert_eq!(from("node002", "arch"), Some(("x86_64", Some("compute"))));
    assert_eq!(from("node007", "os"), Some(("sles15", Some("rack2"))));
    assert_eq!(
        from("node007", "profile"),
        Some(("compute", Some("compute")))
    );
    // The key is the node's own, wherever the row came from.
    assert_eq!(from("node001", "node"), Some(("node001", None)));
    assert!(b["mgmt1"].is_empty());
    // The values are node_attrs's, templates applied.
    let plain = db
        .node_attrs(&nodes, "nodetype", &["os", "arch", "profile", "node"])
        .await
        .unwrap();
    for n in &nodes {
        let values: xcat_db::Attrs = b[n]
            .iter()
            .map(|(c, v)| (c.clone(), v.value.clone()))
            .collect();
        assert_eq!(values, plain[n], "{n}");
    }
    let h = db
        .node_attrs_blamed(&names(&["node007"]), "hosts", &["ip"])
        .await
        .unwrap();
    assert_eq!(h["node007"]["ip"].value, "10.0.0.7");
    assert!(
        h["node007"]["ip"].group.is_some(),
        "the template is a group's"
    );
    assert!(db
        .node_attrs_blamed(&nodes, "site", &["value"])
        .await
        .is_err());
}

async fn regex_templates(db: &Db) {
    load_fixture(db).await;
    let a = db
        .node_attrs(
            &names(&["node007", "node010", "node002", "mgmt1"]),
            "hosts",
            &["ip", "hostnames"],
        )
        .await
        .unwrap();
    assert_eq!(a["node007"]["ip"], "10.0.0.7");
    assert_eq!(a["node010"]["ip"], "10.0.0.10");
    assert_eq!(a["node007"]["hostnames"], "node007-mgmt");
    assert_eq!(
        a["node002"]["ip"], "10.9.9.9",
        "own literal value beats the group template"
    );
    assert_eq!(a["node002"]["hostnames"], "node002-mgmt");
    assert!(
        !a["mgmt1"].contains_key("ip"),
        "an empty template result means unset"
    );
}

async fn upsert_get_delete(db: &Db) {
    db.upsert(
        "osimage",
        &[("imagename", "img1")],
        &[("profile", "compute"), ("osvers", "rhels9")],
    )
    .await
    .unwrap();
    db.upsert(
        "osimage",
        &[("imagename", "img1")],
        &[("osarch", "x86_64"), ("profile", "")],
    )
    .await
    .unwrap();
    let r = db.get_row("osimage", "img1").await.unwrap().unwrap();
    assert_eq!(r.get("osvers").map(String::as_str), Some("rhels9"));
    assert_eq!(r.get("osarch").map(String::as_str), Some("x86_64"));
    assert!(!r.contains_key("profile"), "empty value clears the column");
    assert_eq!(db.rows("osimage").await.unwrap().len(), 1);
    // A key-only upsert creates the row once.
    db.upsert("nodelist", &[("node", "n1")], &[]).await.unwrap();
    db.upsert("nodelist", &[("node", "n1")], &[]).await.unwrap();
    assert_eq!(db.all_nodes().await.unwrap(), names(&["n1"]));
    // passwd has a two-column key.
    db.upsert(
        "passwd",
        &[("key", "system"), ("username", "root")],
        &[("password", "a")],
    )
    .await
    .unwrap();
    db.upsert(
        "passwd",
        &[("key", "system"), ("username", "admin")],
        &[("password", "b")],
    )
    .await
    .unwrap();
    assert_eq!(db.rows("passwd").await.unwrap().len(), 2);
    assert_eq!(
        db.delete("passwd", &[("key", "system"), ("username", "root")])
            .await
            .unwrap(),
        1
    );
    assert_eq!(db.rows("passwd").await.unwrap().len(), 1);
    assert_eq!(
        db.delete("osimage", &[("imagename", "img1")])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        db.delete("osimage", &[("imagename", "img1")])
            .await
            .unwrap(),
        0
    );
    assert!(db.get_row("osimage", "img1").await.unwrap().is_none());
    // Names are checked against the catalogue before any SQL is built.
    assert!(matches!(
        db.upsert("site\"; DROP TABLE site; --", &[("key", "a")], &[])
            .await,
        Err(DbError::UnknownTable(_))
    ));
    assert!(matches!(
        db.upsert("site", &[("key", "a")], &[("value\" = 1 --", "x")])
            .await,
        Err(DbError::UnknownColumn { .. })
    ));
    assert!(db.delete("site", &[]).await.is_err());
    assert!(db
        .upsert("site", &[("key", "")], &[("value", "x")])
        .await
        .is_err());
    // Values are bound, so quotes in values are just data.
    db.upsert("site", &[("key", "q")], &[("value", "it's \"quoted\"; --")])
        .await
        .unwrap();
    assert_eq!(
        db.site("q").await.unwrap().as_deref(),
        Some("it's \"quoted\"; --")
    );
}

async fn concurrent_upserts_lose_nothing(db: &Db) {
    let db = Arc::new(db.clone());
    let mut tasks = Vec::new();
    for i in 0..50 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            db.upsert(
                "nodelist",
                &[("node", &format!("cn{i:03}"))],
                &[("groups", "compute"), ("status", &format!("s{i}"))],
            )
            .await
            .unwrap();
            // Everybody also races on one shared new key, each setting its own column.
            let col = ["status", "appstatus", "primarysn", "zonename", "comments"][i % 5];
            db.upsert("nodelist", &[("node", "shared")], &[(col, "set")])
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rows = db.rows("nodelist").await.unwrap();
    assert_eq!(rows.len(), 51, "50 distinct nodes plus one shared row");
    for i in 0..50 {
        let r = rows
            .iter()
            .find(|r| r["node"] == format!("cn{i:03}"))
            .unwrap_or_else(|| panic!("cn{i:03} lost"));
        assert_eq!(r["status"], format!("s{i}"));
    }
    let shared = db.get_row("nodelist", "shared").await.unwrap().unwrap();
    for col in ["status", "appstatus", "primarysn", "zonename", "comments"] {
        assert_eq!(
            shared.get(col).map(String::as_str),
            Some("set"),
            "{col} lost"
        );
    }
    assert_eq!(db.nodes_in_group("compute").await.unwrap().len(), 50);
}

async fn noderange_against_tables(db: &Db) {
    load_fixture(db).await;
    let ex = |nr: &'static str| async move { db.expand_noderange(nr).await };
    // node099 is in site.excludenodes, old1 is disabled.
    assert_eq!(
        ex("compute").await.unwrap(),
        names(&["node001", "node002", "node007", "node010"])
    );
    assert_eq!(
        ex("all,-rack1").await.unwrap(),
        names(&["mgmt1", "node007", "node010"])
    );
    assert_eq!(
        ex("node001-node010").await.unwrap_err().to_string(),
        "Invalid nodes and/or groups in noderange: node003,node004,node005,node006,node008,node009"
    );
    assert_eq!(
        ex("node[001,007]").await.unwrap(),
        names(&["node001", "node007"])
    );
    assert_eq!(
        ex("/node0.*").await.unwrap(),
        names(&["node001", "node002", "node007", "node010"])
    );
    // Attribute selectors see inherited values.
    assert_eq!(
        ex("nodetype.os==sles15").await.unwrap(),
        names(&["node007", "node010"])
    );
    assert_eq!(
        ex("compute@nodetype.os!=sles15").await.unwrap(),
        names(&["node001", "node002"])
    );
    assert_eq!(
        ex("hosts.ip=~^10\\.0\\.0\\.1").await.unwrap(),
        names(&["node001", "node010"])
    );
    assert_eq!(
        ex("nodelist.status==booted").await.unwrap(),
        names(&["node002"])
    );
    match ex("compute,old1,bogus").await {
        Err(DbError::Noderange(NoderangeError::Invalid(bad))) => {
            assert_eq!(bad, names(&["old1", "bogus"]))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ex("site.value==x").await,
        Err(DbError::Noderange(NoderangeError::Syntax(..)))
    ));
    assert!(matches!(
        ex("(compute").await,
        Err(DbError::Noderange(NoderangeError::Syntax(..)))
    ));
    assert_eq!(
        db.nodes_in_group("rack2").await.unwrap(),
        names(&["node007", "node010"])
    );
}

/// The policy decision on one request from host `client1`.
async fn decide(
    db: &Db,
    user: Option<&str>,
    command: &str,
    args: &[&str],
    nodes: &[&str],
) -> PolicyDecision {
    let query = PolicyQuery {
        user: user.map(str::to_string),
        host: Some("client1".into()),
        command: command.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        nodes: nodes.iter().map(|s| s.to_string()).collect(),
    };
    db.authorize(&query).await.unwrap()
}

/// A request (user, command, arguments, nodes) and whether policy allows it.
type Allowed<'a> = (Option<&'a str>, &'a str, &'a [&'a str], &'a [&'a str], bool);

/// Each request is allowed or refused, as listed.
async fn assert_allowed(db: &Db, cases: &[Allowed<'_>]) {
    for &(user, command, args, nodes, want) in cases {
        let got = decide(db, user, command, args, nodes).await;
        assert_eq!(
            got.is_allowed(),
            want,
            "{user:?} {command} {args:?} {nodes:?}: {got:?}"
        );
    }
}

/// Policy, in steps on one database: each step builds on the rows of the last.
async fn policy_rules(db: &Db) {
    seeding_is_idempotent_and_keeps_choices(db).await;
    seeded_rules_decide_by_name(db).await;
    command_and_nameless_rules(db).await;
    priority_and_noderange_rules(db).await;
}

async fn seeding_is_idempotent_and_keeps_choices(db: &Db) {
    db.seed_defaults(&SEEDS).await.unwrap();
    db.seed_defaults(&SEEDS).await.unwrap();
    let p = db.policies().await.unwrap();
    assert_eq!(p.len(), 4, "seeding is idempotent");
    assert_eq!(db.site("xcatdport").await.unwrap().as_deref(), Some("3001"));
    assert_eq!(db.site("master").await.unwrap().as_deref(), Some("mn1"));
    assert_eq!(
        db.site("installdir").await.unwrap().as_deref(),
        Some("/install")
    );
    assert_eq!(
        db.site("tftpdir").await.unwrap().as_deref(),
        Some("/tftpboot")
    );
    assert_eq!(db.site("httpport").await.unwrap(), None, "no boot service");
    // Seeding never overwrites an admin's choice.
    db.upsert("site", &[("key", "xcatdport")], &[("value", "3101")])
        .await
        .unwrap();
    db.seed_defaults(&SEEDS).await.unwrap();
    assert_eq!(db.site("xcatdport").await.unwrap().as_deref(), Some("3101"));
}

async fn seeded_rules_decide_by_name(db: &Db) {
    assert_eq!(
        decide(db, Some("root"), "chtab", &[], &[]).await,
        PolicyDecision::Allow {
            priority: "1".into(),
            trusted: false
        }
    );
    assert_eq!(
        decide(db, Some("mn1"), "chtab", &[], &[]).await,
        PolicyDecision::Allow {
            priority: "1.2".into(),
            trusted: true
        }
    );
    assert_eq!(
        decide(db, Some("alice"), "chtab", &[], &[]).await,
        PolicyDecision::NoMatch
    );
    assert_eq!(
        decide(db, None, "chtab", &[], &[]).await,
        PolicyDecision::NoMatch
    );
}

async fn command_and_nameless_rules(db: &Db) {
    // Command-limited rule with a parameters regex.
    db.upsert(
        "policy",
        &[("priority", "3")],
        &[
            ("name", "alice"),
            ("commands", "tabdump,nodels"),
            ("parameters", "^(site|policy)$"),
            ("rule", "allow"),
        ],
    )
    .await
    .unwrap();
    assert_allowed(
        db,
        &[
            (Some("alice"), "tabdump", &["site"], &[], true),
            (Some("alice"), "tabdump", &["passwd"], &[], false),
            (Some("alice"), "chtab", &["site"], &[], false),
        ],
    )
    .await;

    // Rows without a name match even requests without a certificate; `*` does not.
    db.upsert(
        "policy",
        &[("priority", "6")],
        &[("name", "*"), ("commands", "lsxcatd"), ("rule", "allow")],
    )
    .await
    .unwrap();
    db.upsert(
        "policy",
        &[("priority", "7")],
        &[("commands", "authcheck"), ("rule", "allow")],
    )
    .await
    .unwrap();
    assert_allowed(
        db,
        &[
            (None, "lsxcatd", &[], &[], false),
            (Some("bob"), "lsxcatd", &[], &[], true),
            (None, "authcheck", &[], &[], true),
        ],
    )
    .await;
}

async fn priority_and_noderange_rules(db: &Db) {
    // Numeric priority: 1.10 sorts before 1.2 (text order would say otherwise).
    db.upsert(
        "policy",
        &[("priority", "1.10")],
        &[("name", "mn1"), ("rule", "deny")],
    )
    .await
    .unwrap();
    assert_eq!(
        decide(db, Some("mn1"), "nodels", &[], &[]).await,
        PolicyDecision::Deny {
            priority: "1.10".into()
        }
    );
    // Disabling that row restores the trusted decision.
    db.upsert("policy", &[("priority", "1.10")], &[("disable", "1")])
        .await
        .unwrap();
    assert!(decide(db, Some("mn1"), "nodels", &[], &[])
        .await
        .is_allowed());

    // Noderange-limited rule: every requested node must be covered.
    db.restore("nodelist", NODELIST, false).await.unwrap();
    db.upsert(
        "policy",
        &[("priority", "8")],
        &[("name", "carol"), ("noderange", "rack1"), ("rule", "allow")],
    )
    .await
    .unwrap();
    assert_allowed(
        db,
        &[
            (Some("carol"), "rpower", &[], &["node001", "node002"], true),
            (Some("carol"), "rpower", &[], &["node001", "node007"], false),
            (Some("carol"), "rpower", &[], &[], false),
        ],
    )
    .await;
    assert!(db
        .policy_noderange_covers("rack1,node007", &names(&["node007"]))
        .await
        .unwrap());
    assert!(!db
        .policy_noderange_covers("bogus", &names(&["node007"]))
        .await
        .unwrap());
}

async fn reconnect_keeps_schema_and_data(db: &Db) {
    db.upsert("site", &[("key", "persist")], &[("value", "1")])
        .await
        .unwrap();
    assert_eq!(Db::tables().len(), xcat_db::schema::TABLES.len());
    assert!(Db::tables().contains(&"servicenode"));
    assert_eq!(
        Db::columns("site").unwrap(),
        &["key", "value", "comments", "disable"]
    );
    assert!(Db::columns("nosuch").is_err());
}

/// `set_for_nodes`: existing rows keep their other columns, missing rows are
/// made, and more nodes than one statement binds are all written.
async fn set_for_nodes_updates_and_inserts(db: &Db) {
    db.upsert(
        "nodetype",
        &[("node", "n00001")],
        &[("os", "old"), ("nodetype", "osi")],
    )
    .await
    .unwrap();
    let nodes: Vec<String> = (1..=1200).map(|i| format!("n{i:05}")).collect();
    db.set_for_nodes(
        "nodetype",
        &nodes,
        &[("os", "rocky9"), ("provmethod", "img")],
    )
    .await
    .unwrap();
    let rows = db.rows("nodetype").await.unwrap();
    assert_eq!(rows.len(), 1200, "one row per node, none doubled");
    let first = db.get_row("nodetype", "n00001").await.unwrap().unwrap();
    assert_eq!(first["os"], "rocky9");
    assert_eq!(first["nodetype"], "osi", "other columns survive");
    let last = db.get_row("nodetype", "n01200").await.unwrap().unwrap();
    assert_eq!(last["provmethod"], "img");
    // An empty value clears the column, as upsert does.
    db.set_for_nodes("nodetype", &nodes[..1], &[("provmethod", "")])
        .await
        .unwrap();
    let first = db.get_row("nodetype", "n00001").await.unwrap().unwrap();
    assert!(!first.contains_key("provmethod"));
    assert!(db
        .set_for_nodes("osimage", &nodes, &[("osvers", "x")])
        .await
        .is_err());
}

both_backends!(
    dump_restore_round_trip,
    restore_errors_name_lines_and_roll_back,
    disable_semantics,
    inheritance,
    blamed_values_name_their_group,
    regex_templates,
    upsert_get_delete,
    set_for_nodes_updates_and_inserts,
    concurrent_upserts_lose_nothing,
    noderange_against_tables,
    policy_rules,
    reconnect_keeps_schema_and_data,
);

/// Opening the same SQLite file again runs no migration twice and keeps data.
#[tokio::test]
async fn sqlite_reopen_is_idempotent() {
    let (db, guard) = common::sqlite_db().await;
    db.upsert("site", &[("key", "persist")], &[("value", "1")])
        .await
        .unwrap();
    db.close().await;
    let db2 = Db::connect(&guard.url).await.unwrap();
    assert_eq!(db2.site("persist").await.unwrap().as_deref(), Some("1"));
    let wal = guard.dir.path().join("state").join("xcat.db-wal");
    assert!(wal.exists(), "WAL journal in use");
}

/// Two handles on one file (as two daemons would have) see each other's writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_handles_share_one_file() {
    let (db, guard) = common::sqlite_db().await;
    let db2 = Db::connect(&guard.url).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let d = if i % 2 == 0 { db.clone() } else { db2.clone() };
        tasks.push(tokio::spawn(async move {
            d.upsert("site", &[("key", &format!("k{i}"))], &[("value", "v")])
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(db.rows("site").await.unwrap().len(), 20);
}

#[tokio::test]
async fn bad_urls_are_clear_errors() {
    for url in ["mysql://x", "sqlite://", "nonsense"] {
        let e = Db::connect(url).await.unwrap_err().to_string();
        assert!(e.contains("sqlite") || e.contains("URL"), "{url}: {e}");
    }
}
