//! Descriptions and attribution through the real daemon and client, as
//! xCAT's commands give them: `tabdump -d` (every table, one table's
//! columns, `-f` beside `-d`), the seeded `site.xcatiport`, `gettab` on
//! columns a table lacks, `nodels -b` naming the group a value came from,
//! and `lsdef -h -t TYPE -i attrs`. Each scenario runs on SQLite and on
//! PostgreSQL (`XCATD_TEST_PG_URL`), as the table tests do.

use std::process::Output;

use xcat_db::describe::column_description;
use xcatd_tests::Daemon;

use crate::tables::both_backends;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run(d: &Daemon, args: &[&str]) -> (Option<i32>, String, String) {
    let out: Output = d.client(args);
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

both_backends!(
    tabdump_d_describes_tables_and_columns,
    tabdump_f_with_d_prints_and_writes_nothing,
    site_xcatiport_is_seeded_and_gettab_reads_it,
    gettab_unknown_key_fails_unknown_column_prints_nothing,
    nodels_blame_names_the_group,
    lsdef_h_describes_attributes,
);

fn tabdump_d_describes_tables_and_columns(d: &Daemon) {
    let tables = d.ok(&["tabdump"]);
    let described = d.ok(&["tabdump", "-d"]);
    let lines: Vec<&str> = described.lines().collect();
    assert_eq!(lines.len(), tables.lines().count(), "{described}");
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(lines, sorted, "tabdump -d is sorted");
    for (line, table) in lines.iter().zip(tables.lines()) {
        let gap = if table.len() < 7 { "\t\t" } else { "\t" };
        let rest = line
            .strip_prefix(&format!("{table}:{gap}"))
            .unwrap_or_else(|| panic!("{line:?} does not describe {table}"));
        assert!(!rest.trim().is_empty(), "{line:?}");
    }
    assert!(
        described.contains("\nsite:\t\tGlobal settings"),
        "{described}"
    );

    // One table: its columns in order, each described.
    let site = d.ok(&["tabdump", "-d", "site"]);
    let names: Vec<&str> = site
        .lines()
        .map(|l| l.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(names, ["key", "value", "comments", "disable"], "{site}");
    assert!(
        site.starts_with("key:\t\tThe site setting's name."),
        "{site}"
    );
    assert!(site.contains("xcatiport"), "{site}");
    assert!(site.contains("\ncomments:\tFree-form notes.\n"), "{site}");
    let nodehm = d.ok(&["tabdump", "-d", "nodehm"]);
    assert_eq!(nodehm.lines().count(), 16, "{nodehm}");
    let mgt = column_description("nodehm", "mgt").expect("described");
    assert!(nodehm.contains(&format!("\nmgt:\t\t{mgt}\n")), "{nodehm}");
    assert!(nodehm.contains("\nconsoleondemand:\t"), "{nodehm}");
    // No values: a set site key is not shown.
    d.ok(&["chtab", "key=marker", "site.value=shown-only-in-dumps"]);
    assert!(!d
        .ok(&["tabdump", "-d", "site"])
        .contains("shown-only-in-dumps"));

    let (rc, out, err) = run(d, &["tabdump", "-d", "nosuch"]);
    assert_eq!(rc, Some(1), "{out}{err}");
    assert!(err.contains("table nosuch does not exist."), "{err}");
    assert!(out.is_empty(), "{out}");
}

fn tabdump_f_with_d_prints_and_writes_nothing(d: &Daemon) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("table");
    let f = file.to_str().expect("utf-8");
    let (rc, out, err) = run(d, &["tabdump", "-f", f, "-d", "site"]);
    assert_eq!(rc, Some(0), "{out}{err}");
    assert_eq!(out, d.ok(&["tabdump", "-d", "site"]));
    assert!(!file.exists(), "tabdump -f FILE -d wrote the file");
    // Without -d the file gets the dump, stdout nothing.
    let (rc, out, err) = run(d, &["tabdump", "-f", f, "site"]);
    assert_eq!(rc, Some(0), "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(
        std::fs::read_to_string(&file).expect("dump"),
        d.ok(&["tabdump", "site"])
    );
    let (rc, out, err) = run(d, &["tabdump", "-f", f, "-d"]);
    assert_eq!(rc, Some(1), "{out}{err}");
    assert!(err.contains("table name missing"), "{err}");
}

fn site_xcatiport_is_seeded_and_gettab_reads_it(d: &Daemon) {
    let site = d.ok(&["tabdump", "site"]);
    assert!(site.contains("\n\"xcatiport\",\"3002\",,\n"), "{site}");
    assert_eq!(d.ok(&["gettab", "key=xcatiport", "site.value"]), "3002\n");
}

fn gettab_unknown_key_fails_unknown_column_prints_nothing(d: &Daemon) {
    let (rc, out, err) = run(d, &["gettab", "-H", "groups=master", "site.key"]);
    assert_eq!(rc, Some(1), "{out}{err}");
    assert!(err.contains("Error: Unknown key groups to site"), "{err}");
    for args in [
        &["gettab", "-H", "key=master", "site.groups"][..],
        &["gettab", "key=master", "site.groups"],
    ] {
        let (rc, out, err) = run(d, args);
        assert_eq!(
            (rc, out.as_str(), err.as_str()),
            (Some(0), "", ""),
            "{args:?}"
        );
    }
    // A known column beside an unknown one is still printed.
    assert_eq!(
        d.ok(&["gettab", "key=xcatdport", "site.nosuch", "site.value"]),
        "site.value: 3001\n"
    );
    let (rc, _, err) = run(d, &["gettab", "key=master", "nosuch.value"]);
    assert_eq!(rc, Some(1), "{err}");
}

fn nodels_blame_names_the_group(d: &Daemon) {
    d.ok(&[
        "chtab",
        "node=compute",
        "nodehm.mgt=ipmi",
        "nodehm.serialspeed=115200",
    ]);
    d.ok(&["chtab", "node=rack1", "nodehm.serialspeed=9600"]);
    d.ok(&["chtab", "node=n1", "nodelist.groups=compute,all"]);
    d.ok(&[
        "chtab",
        "node=n2",
        "nodelist.groups=rack1,compute",
        "nodehm.mgt=openbmc",
    ]);
    assert_eq!(
        d.ok(&["nodels", "n1,n2", "-b", "nodehm.mgt"]),
        "n1: ipmi (inherited from group compute)\nn2: openbmc\n"
    );
    assert_eq!(
        d.ok(&["nodels", "n1,n2", "--blame", "nodehm.serialspeed", "groups"]),
        "n1: nodehm.serialspeed: 115200 (inherited from group compute)\n\
         n1: groups: compute,all\n\
         n2: nodehm.serialspeed: 9600 (inherited from group rack1)\n\
         n2: groups: rack1,compute\n"
    );
    // Without -b the values are bare; selections compare the plain value.
    assert_eq!(
        d.ok(&["nodels", "n1,n2", "nodehm.mgt"]),
        "n1: ipmi\nn2: openbmc\n"
    );
    assert_eq!(
        d.ok(&["nodels", "n1,n2", "-b", "nodehm.mgt==ipmi", "nodehm.mgt"]),
        "n1: nodehm.mgt: ipmi (inherited from group compute)\n"
    );
    assert_eq!(d.ok(&["nodels", "n1", "-b", "groups"]), "n1: compute,all\n");
}

fn lsdef_h_describes_attributes(d: &Daemon) {
    let out = d.ok(&[
        "lsdef",
        "-t",
        "node",
        "-h",
        "-i",
        "status,groups,nicips.eth0",
    ]);
    let groups = column_description("nodelist", "groups").expect("described");
    let status = column_description("nodelist", "status").expect("described");
    let nicips = column_description("nics", "nicips").expect("described");
    assert_eq!(
        out,
        format!(
            "Attribute          Description\ngroups:\t\t{groups}\n\nnicips:\t\t{nicips}\n\nstatus:\t\t{status}\n"
        )
    );
    let all = d.ok(&["lsdef", "-h", "-t", "node"]);
    assert!(
        all.starts_with("The valid attribute names for object type 'node' are:\n"),
        "{all}"
    );
    let mgt = column_description("nodehm", "mgt").expect("described");
    assert!(all.contains(&format!("\nmgt:\t\t{mgt}\n")), "{all}");
    let osimage = d.ok(&["lsdef", "-t", "osimage", "-h", "-i", "template"]);
    assert!(osimage.contains("template:\t"), "{osimage}");
    let site = d.ok(&["lsdef", "-t", "site", "-h"]);
    assert!(site.contains("xcatiport"), "{site}");
    // -h without -t is still the usage text.
    assert!(d.ok(&["lsdef", "-h"]).starts_with("Usage: lsdef"));
}
