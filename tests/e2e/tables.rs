//! Cluster tables through the real daemon and the real client: xCAT `tabdump`
//! files restored and dumped back byte for byte, group inheritance, noderange
//! expansion, policy decisions with real client certificates, and concurrent
//! writers. Every scenario runs twice: against the embedded SQLite database
//! and against a fresh database on the PostgreSQL server named by
//! `XCATD_TEST_PG_URL` (required: a missing server fails the PostgreSQL
//! variants, it never skips them).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use xcat_db::test_support::TempDatabase;
use xcatd_tests::{repo_root, Daemon, DaemonOptions};

/// The xCAT-format fixture files, one per table.
const FIXTURE_TABLES: &[&str] = &["site", "nodelist", "nodetype", "hosts", "policy"];

fn fixture(table: &str) -> PathBuf {
    repo_root()
        .join("tests/fixtures/tables")
        .join(format!("{table}.csv"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "{args:?} -> {}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Assert that a client run was refused by policy.
fn assert_denied(out: &Output, args: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "{}", describe(args, out));
    assert!(
        text(&out.stderr).contains("Error: Permission denied for request"),
        "{}",
        describe(args, out)
    );
    assert!(out.stdout.is_empty(), "{}", describe(args, out));
}

fn assert_allowed(out: &Output, args: &[&str]) {
    assert!(out.status.success(), "{}", describe(args, out));
    assert!(
        !text(&out.stderr).contains("Permission denied"),
        "{}",
        describe(args, out)
    );
}

fn restore(d: &Daemon, tables: &[&str]) {
    for t in tables {
        let path = fixture(t);
        d.ok(&["tabrestore", path.to_str().expect("utf-8 path")]);
    }
}

/// Run `body` against a daemon on SQLite (`pg == false`) or on a fresh
/// PostgreSQL database.
pub(crate) fn with_backend(pg: bool, body: fn(&Daemon)) {
    with_backend_config(pg, String::new(), body)
}

/// [`with_backend`] with `extra_config` appended to the daemon's
/// configuration.
pub(crate) fn with_backend_config(pg: bool, extra_config: String, body: fn(&Daemon)) {
    let t = Instant::now();
    if pg {
        let db = TempDatabase::from_env();
        let mut d = Daemon::start_with(DaemonOptions {
            database: db.url().to_string(),
            extra_config,
            ..Default::default()
        });
        let log = d.log();
        assert!(
            log.contains("database=postgres://") && log.contains(db.name()),
            "the daemon must run on the test database {}; log:\n{log}",
            db.name()
        );
        body(&d);
        d.stop();
        drop(db);
    } else {
        let d = Daemon::start_with(DaemonOptions {
            database: String::new(),
            extra_config,
            ..Default::default()
        });
        body(&d);
        assert!(
            d.root().join("state/xcatd.sqlite").exists(),
            "the SQLite variant must use the embedded database"
        );
    }
    eprintln!(
        "{} backend: {:.2} s",
        if pg { "postgres" } else { "sqlite" },
        t.elapsed().as_secs_f64()
    );
}

/// One `#[test]` per backend for each scenario, run by
/// [`with_backend`] or by the `run = path;` given first (a function of the
/// same shape).
macro_rules! both_backends {
    (run = $run:path; $($name:ident),* $(,)?) => {
        $(
        mod $name {
            #[test]
            #[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
            fn sqlite() {
                $run(false, super::$name);
            }

            #[test]
            #[ignore = "needs PostgreSQL (XCATD_TEST_PG_URL): ./scripts/test-all runs it"]
            fn postgres() {
                $run(true, super::$name);
            }
        }
        )*
    };
    ($($name:ident),* $(,)?) => {
        $crate::tables::both_backends!(run = $crate::tables::with_backend; $($name),*);
    };
}
pub(crate) use both_backends;

both_backends!(
    tabrestore_then_tabdump_is_byte_identical,
    nodels_resolves_group_inheritance,
    noderange_through_the_daemon,
    policy_decides_by_certificate_command_and_priority,
    concurrent_chtab_writers_lose_nothing,
);

// ---------------------------------------------------------------------------
// Scenarios.

fn tabrestore_then_tabdump_is_byte_identical(d: &Daemon) {
    // The first start seeded site and policy; the fixtures must replace them.
    let seeded = d.ok(&["tabdump", "site"]);
    assert!(seeded.contains("\"xcatdport\",\"3001\""), "{seeded}");
    restore(d, FIXTURE_TABLES);
    for t in FIXTURE_TABLES {
        let want = std::fs::read_to_string(fixture(t)).expect("fixture");
        let got = d.ok(&["tabdump", t]);
        assert_eq!(got, want, "tabdump {t} differs from the restored file");
    }
    // Disabled rows are dumped but not read: cn04 is no node.
    assert_eq!(d.ok(&["nodels"]), "cn01\ncn02\ncn03\ncn05\nsvc1\n");

    // A file named after another table restores into that table; `-t` overrides.
    let dir = tempfile::tempdir().expect("tempdir");
    let other = dir.path().join("export-2024.csv");
    std::fs::copy(fixture("site"), &other).expect("copy");
    let out = d.client(&["tabrestore", other.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        describe(&["tabrestore"], &out)
    );
    assert!(
        text(&out.stderr).contains("No such table: export-2024"),
        "{}",
        text(&out.stderr)
    );
    // Append mode: one more row at the end, the rest unchanged.
    let extra = dir.path().join("more.csv");
    std::fs::write(
        &extra,
        "#key,value,comments,disable\n\"ntpservers\",\"10.0.0.1,10.0.0.2\",,\n",
    )
    .expect("write");
    d.ok(&["tabrestore", "-a", "-t", "site", extra.to_str().unwrap()]);
    let want = format!(
        "{}\"ntpservers\",\"10.0.0.1,10.0.0.2\",,\n",
        std::fs::read_to_string(fixture("site")).unwrap()
    );
    assert_eq!(d.ok(&["tabdump", "site"]), want);

    // A broken file names its line and changes nothing.
    let bad = dir.path().join("site.csv");
    std::fs::write(
        &bad,
        "#key,value,comments,disable\n\"a\",\"1\",,\n\"b\",\"never closed,,\n",
    )
    .expect("write");
    let out = d.client(&["tabrestore", bad.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        describe(&["tabrestore"], &out)
    );
    let err = text(&out.stderr);
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("was not changed"), "{err}");
    assert_eq!(
        d.ok(&["tabdump", "site"]),
        want,
        "a failed restore changed the table"
    );

    // A missing file is the client's error, before anything is sent.
    let out = d.client(&["tabrestore", "/nonexistent/site.csv"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot read /nonexistent/site.csv"),
        "{}",
        text(&out.stderr)
    );
}

fn nodels_resolves_group_inheritance(d: &Daemon) {
    restore(d, &["nodelist", "nodetype", "hosts"]);
    // cn01: own row disabled, `compute` listed before `rack1` wins;
    // cn02: its own value beats its groups'; cn03: `gpu` is listed first;
    // cn05: `rack1` is listed first. cn04 is disabled, svc1 not in compute.
    assert_eq!(
        d.ok(&["nodels", "compute", "nodetype.os"]),
        "cn01: rhels9.4\ncn02: debian12\ncn03: rhels9.2\ncn05: sles15\n"
    );
    // Inheritance is per attribute: gpu has no arch, so cn03 takes compute's;
    // cn02 has only its own os and inherits the rest.
    assert_eq!(
        d.ok(&["nodels", "cn02,cn03", "nodetype.arch", "nodetype.profile"]),
        "cn02: nodetype.arch: x86_64\ncn02: nodetype.profile: compute\n\
         cn03: nodetype.arch: x86_64\ncn03: nodetype.profile: gpu\n"
    );
    // Regular-expression values are evaluated per node; a node's own row
    // beats the group template, unless that row is disabled (cn05).
    assert_eq!(
        d.ok(&["nodels", "compute", "hosts.ip"]),
        "cn01: 10.0.0.1\ncn02: 10.0.0.2\ncn03: 10.0.1.3\ncn05: 10.0.0.5\n"
    );
    assert_eq!(
        d.ok(&["nodels", "cn01", "hosts.hostnames"]),
        "cn01: cn01.cluster.example.com\n"
    );
    // Selections use the resolved values.
    assert_eq!(
        d.ok(&["nodels", "all", "nodetype.os=~^rhels"]),
        "cn01\ncn03\nsvc1\n"
    );
    // A value changed on the group shows on every member that inherits it.
    d.ok(&["chtab", "node=compute", "nodetype.os=rhels9.5"]);
    assert_eq!(
        d.ok(&["nodels", "compute", "nodetype.os"]),
        "cn01: rhels9.5\ncn02: debian12\ncn03: rhels9.2\ncn05: sles15\n"
    );
    // Group membership itself is a node attribute.
    assert_eq!(
        d.ok(&["nodels", "svc1", "nodelist.groups"]),
        "svc1: service,all\n"
    );
}

fn noderange_through_the_daemon(d: &Daemon) {
    restore(d, &["nodelist", "nodetype"]);
    let cases: &[(&str, &str)] = &[
        ("cn01-cn03", "cn01\ncn02\ncn03\n"),
        ("cn[01-02],cn0[3,5]", "cn01\ncn02\ncn03\ncn05\n"),
        ("cn05+0,cn01+1", "cn01\ncn02\ncn05\n"),
        ("compute,-cn02", "cn01\ncn03\ncn05\n"),
        ("rack1@compute", "cn01\ncn05\n"),
        ("/cn0[12]", "cn01\ncn02\n"),
        ("svc1,cn03,svc1", "cn03\nsvc1\n"),
        ("all@nodetype.os=~^rhels", "cn01\ncn03\nsvc1\n"),
        ("compute,-(rack1,gpu)", "cn02\n"),
    ];
    for (nr, want) in cases {
        assert_eq!(&d.ok(&["noderange", nr]), want, "noderange {nr}");
    }
    // Unknown names: every bad atom listed, exit 1, nothing on stdout.
    let out = d.client(&["nodels", "nosuch"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        describe(&["nodels", "nosuch"], &out)
    );
    assert_eq!(
        text(&out.stderr),
        "Error: Invalid nodes and/or groups in noderange: nosuch\n"
    );
    assert!(out.stdout.is_empty());
    let out = d.client(&["nodels", "cn01,nosuch,cn04"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Invalid nodes and/or groups in noderange: nosuch,cn04"),
        "{}",
        text(&out.stderr)
    );
    // A range naming a disabled node names it as invalid.
    let out = d.client(&["noderange", "cn[03-05]"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "Error: Invalid nodes and/or groups in noderange: cn04\n"
    );
    // An unbalanced bracket is a clear error, and the daemon keeps serving.
    let out = d.client(&["noderange", "cn[01-02"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        describe(&["noderange"], &out)
    );
    assert!(
        text(&out.stderr).starts_with("Error: "),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("unbalanced brackets: '[' without ']'"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(d.ok(&["noderange", "cn05"]), "cn05\n");
    // site.excludenodes is always removed.
    d.ok(&["chtab", "key=excludenodes", "site.value=cn03,cn05"]);
    assert_eq!(d.ok(&["noderange", "compute"]), "cn01\ncn02\n");
}

/// A client HOME with the CA certificate but no client credential.
fn anonymous_home(d: &Daemon) -> PathBuf {
    let home = d.root().join("home-anonymous");
    std::fs::create_dir_all(home.join(".xcat")).expect("mkdir");
    std::fs::copy(d.home.join(".xcat/ca.pem"), home.join(".xcat/ca.pem")).expect("ca");
    assert!(!home.join(".xcat/client-cred.pem").exists());
    home
}

fn policy_decides_by_certificate_command_and_priority(d: &Daemon) {
    restore(d, &["nodelist", "policy"]);
    let alice = d.add_user("alice");
    let bob = d.add_user("bob");
    let carol = d.add_user("carol");
    let anon = anonymous_home(d);
    let run = |home: &Path, args: &[&str]| d.client_as(home, args, &[]);

    // Who the daemon thinks each caller is.
    assert_eq!(run(&alice, &["authcheck"]).stdout, b"Authenticated\n");
    assert_eq!(run(&anon, &["authcheck"]).stdout, b"Unauthenticated\n");

    // root (priority 1) may do anything.
    assert_allowed(&d.client(&["tabdump", "policy"]), &["root tabdump policy"]);
    assert_allowed(
        &d.client(&["chtab", "key=a", "site.value=1"]),
        &["root chtab"],
    );

    // alice: priority 2 allows tabdump only with parameters matching ^site$.
    let out = run(&alice, &["tabdump", "site"]);
    assert_allowed(&out, &["alice tabdump site"]);
    assert!(text(&out.stdout).starts_with("#key,value,comments,disable\n"));
    assert_denied(
        &run(&alice, &["tabdump", "policy"]),
        &["alice tabdump policy"],
    );
    assert_denied(
        &run(&alice, &["tabdump", "site", "-h"]),
        &["alice tabdump site -h"],
    );
    // Priority 6 (`*`, any certified user) allows tabdump nodelist.
    assert_allowed(
        &run(&alice, &["tabdump", "nodelist"]),
        &["alice tabdump nodelist"],
    );
    // 1.5 deny beats 3 allow for nodels; lsdef is allowed by 3 before 7 denies.
    assert_denied(&run(&alice, &["nodels", "cn01"]), &["alice nodels"]);
    assert_allowed(&run(&alice, &["lsdef", "-t", "osimage"]), &["alice lsdef"]);
    // No rule for chtab: denied, and the table is unchanged.
    assert_denied(
        &run(&alice, &["chtab", "key=a", "site.value=2"]),
        &["alice chtab"],
    );
    assert!(d.ok(&["tabdump", "site"]).contains("\"a\",\"1\",,\n"));

    // bob's own row is disabled: only the generic rows apply to him.
    assert_denied(&run(&bob, &["tabdump", "site"]), &["bob tabdump site"]);
    assert_allowed(
        &run(&bob, &["tabdump", "nodelist"]),
        &["bob tabdump nodelist"],
    );
    assert_denied(&run(&bob, &["lsdef", "-t", "osimage"]), &["bob lsdef"]);
    assert_denied(&run(&carol, &["nodels"]), &["carol nodels"]);
    // `host` is the client's short name (loopback peers are `localhost`).
    d.ok(&[
        "chtab",
        "priority=2.5",
        "policy.name=carol",
        "policy.host=mgmt2",
        "policy.rule=allow",
    ]);
    assert_denied(
        &run(&carol, &["nodels"]),
        &["carol nodels from the wrong host"],
    );
    d.ok(&[
        "chtab",
        "priority=2.6",
        "policy.name=carol",
        "policy.host=localhost",
        "policy.rule=allow",
    ]);
    assert_allowed(&run(&carol, &["nodels"]), &["carol nodels from localhost"]);

    // Without a certificate only rows with an empty name match: 5 allows
    // noderange, `*` (6) does not apply, 7 denies lsdef.
    let out = run(&anon, &["noderange", "cn01,cn02"]);
    assert_allowed(&out, &["anonymous noderange"]);
    assert_eq!(out.stdout, b"cn01\ncn02\n");
    assert_denied(
        &run(&anon, &["tabdump", "nodelist"]),
        &["anonymous tabdump nodelist"],
    );
    assert_denied(
        &run(&anon, &["lsdef", "-t", "osimage"]),
        &["anonymous lsdef"],
    );
    assert_denied(
        &run(&anon, &["tabdump", "site"]),
        &["anonymous tabdump site"],
    );

    // Enabling bob's row (priority 4) changes his answers at once.
    d.ok(&["chtab", "priority=4", "policy.disable="]);
    assert_allowed(
        &run(&bob, &["tabdump", "site"]),
        &["bob tabdump site, row enabled"],
    );
    // A new earlier row overrides: priority 0.5 denies bob everything.
    d.ok(&[
        "chtab",
        "priority=0.5",
        "policy.name=bob",
        "policy.rule=deny",
    ]);
    assert_denied(&run(&bob, &["tabdump", "site"]), &["bob after 0.5 deny"]);

    // Every decision is logged with who, from where, what and which rule.
    let log = d.log();
    let decisions: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("policy allows") || l.contains("policy denies"))
        .collect();
    let find = |verdict: &str, user: &str, command: &str, rule: Option<&str>| {
        decisions.iter().any(|l| {
            l.contains(verdict)
                && l.contains(&format!("user=\"{user}\""))
                && l.contains(&format!("command={command}"))
                && l.contains("peer=127.0.0.1")
                && match rule {
                    Some(r) => l.ends_with(&format!(" rule={r}")),
                    None => l.contains("no rule matches"),
                }
        })
    };
    for (verdict, user, command, rule) in [
        ("policy allows", "root", "tabdump", Some("1")),
        ("policy allows", "alice", "tabdump", Some("2")),
        ("policy denies", "alice", "tabdump", None),
        ("policy denies", "alice", "nodels", Some("1.5")),
        ("policy allows", "alice", "lsdef", Some("3")),
        ("policy allows", "bob", "tabdump", Some("6")),
        ("policy denies", "bob", "lsdef", Some("7")),
        ("policy denies", "carol", "nodels", None),
        ("policy allows", "carol", "nodels", Some("2.6")),
        ("policy allows", "(unauthenticated)", "noderange", Some("5")),
        ("policy denies", "(unauthenticated)", "lsdef", Some("7")),
        ("policy allows", "bob", "tabdump", Some("4")),
        ("policy denies", "bob", "tabdump", Some("0.5")),
    ] {
        assert!(
            find(verdict, user, command, rule),
            "no log line {verdict} user={user} command={command} rule={rule:?}; decisions:\n{}",
            decisions.join("\n")
        );
    }
    // One decision per request above (authcheck is answered for anyone, unlogged).
    assert!(
        decisions.len() >= 20,
        "{} decisions:\n{}",
        decisions.len(),
        decisions.join("\n")
    );
}

fn concurrent_chtab_writers_lose_nothing(d: &Daemon) {
    const NEW_NODES: usize = 40;
    const SAME_ROW: &[&str] = &[
        "servicenode",
        "netboot",
        "tftpserver",
        "tftpdir",
        "nfsserver",
        "monserver",
        "nfsdir",
        "installnic",
        "primarynic",
        "discoverynics",
    ];
    // The client link exists before the writers race to use it.
    d.ok(&["chtab", "key=warmup", "site.value=1"]);
    let mut jobs: Vec<Vec<String>> = Vec::new();
    for i in 0..NEW_NODES {
        jobs.push(vec![
            "chtab".into(),
            format!("node=w{i:03}"),
            "nodelist.groups=writers,all".into(),
            format!("hosts.ip=10.7.0.{i}"),
        ]);
    }
    // Ten writers on one row that does not exist yet, each its own column.
    for col in SAME_ROW {
        jobs.push(vec![
            "chtab".into(),
            "node=hot".into(),
            format!("noderes.{col}={col}-value"),
        ]);
    }
    assert_eq!(jobs.len(), 50);
    let start = Instant::now();
    let results: Vec<(Vec<String>, Output)> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|args| {
                s.spawn(move || {
                    let a: Vec<&str> = args.iter().map(String::as_str).collect();
                    (args.clone(), d.client(&a))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect()
    });
    eprintln!(
        "50 concurrent chtab clients finished in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    for (args, out) in &results {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        assert!(
            out.status.success(),
            "{}\ndaemon log:\n{}",
            describe(&a, out),
            d.log()
        );
    }
    let want_nodes: String = (0..NEW_NODES).map(|i| format!("w{i:03}\n")).collect();
    assert_eq!(d.ok(&["nodels", "writers"]), want_nodes);
    let want_ips: String = (0..NEW_NODES)
        .map(|i| format!("w{i:03}: 10.7.0.{i}\n"))
        .collect();
    assert_eq!(d.ok(&["nodels", "writers", "hosts.ip"]), want_ips);
    // Exactly one `hot` row, holding all ten values.
    let dump = d.ok(&["tabdump", "noderes"]);
    let hot: Vec<&str> = dump.lines().filter(|l| l.starts_with("\"hot\"")).collect();
    assert_eq!(hot.len(), 1, "{dump}");
    for col in SAME_ROW {
        assert!(
            hot[0].contains(&format!("\"{col}-value\"")),
            "{col} lost: {}",
            hot[0]
        );
    }
    let hosts = d.ok(&["tabdump", "hosts"]);
    assert_eq!(hosts.lines().count(), 1 + NEW_NODES, "{hosts}");
}
