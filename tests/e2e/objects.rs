//! The object commands (`mkdef`, `chdef`, `rmdef`, `lsdef`, `noderm`)
//! through the real client against the real daemon, on SQLite and on
//! PostgreSQL: xCAT's output formats, messages and exit statuses, group
//! inheritance, static and dynamic groups, stanza files, and every type.

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Instant;

use xcatd_tests::{output_text, Daemon};

use crate::tables::both_backends;

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run a command that must fail with exit status 1; returns its stderr.
pub(crate) fn fails(d: &Daemon, args: &[&str]) -> String {
    let out = d.client(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?} should fail:\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

/// Run a command with `input` on its stdin (a stanza file).
pub(crate) fn piped(d: &Daemon, args: &[&str], input: &str) -> Output {
    let mut child = d
        .client_command(&d.home, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run client");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("client output")
}

/// The `xcatdefaults` scripts lsdef shows in every node's lists.
pub(crate) const DEFAULT_SCRIPTS: &str =
    "    postbootscripts=otherpkgs\n    postscripts=syslog,remoteshell,syncfiles\n";

both_backends!(
    nodes_are_made_listed_and_removed,
    group_attributes_reach_every_member,
    chdef_edits_lists_renames_and_creates,
    every_type_and_the_site_object,
    stanza_files_round_trip,
    help_and_version_on_every_command,
    node_and_table_tools,
    ten_thousand_nodes_through_the_client,
);

// ---------------------------------------------------------------------------

fn nodes_are_made_listed_and_removed(d: &Daemon) {
    let out = d.ok(&[
        "mkdef",
        "-t",
        "node",
        "-o",
        "cn[01-04]",
        "groups=compute,all",
        "mgt=ipmi",
        "bmc=10.0.0.1",
        "os=rhels9",
    ]);
    assert_eq!(out, "4 object definitions have been created or modified.\n");
    assert_eq!(
        d.ok(&["lsdef"]),
        "cn01  (node)\ncn02  (node)\ncn03  (node)\ncn04  (node)\n"
    );
    assert_eq!(
        d.ok(&["lsdef", "cn01"]),
        format!("Object name: cn01\n    bmc=10.0.0.1\n    groups=compute,all\n    mgt=ipmi\n    os=rhels9\n{DEFAULT_SCRIPTS}")
    );
    // The tables hold what the attributes map to.
    assert!(d.ok(&["tabdump", "ipmi"]).contains("\"cn01\",\"10.0.0.1\""));
    assert!(d.ok(&["tabdump", "nodehm"]).contains("\"cn02\",,\"ipmi\""));
    assert_eq!(d.ok(&["lsdef", "-s", "cn02"]), "cn02  (node)\n");
    assert_eq!(
        d.ok(&["lsdef", "-t", "node", "-o", "cn01,cn02", "-i", "mgt,arch"]),
        "Object name: cn01\n    arch=\n    mgt=ipmi\nObject name: cn02\n    arch=\n    mgt=ipmi\n"
    );
    assert_eq!(
        d.ok(&["lsdef", "-c", "-i", "os", "cn0[1-2]"]),
        "cn01: os=rhels9\ncn02: os=rhels9\n"
    );
    // A condition: bmc is an ipmi attribute, gone when mgt says otherwise.
    d.ok(&["chdef", "cn04", "mgt=kvm"]);
    assert!(!d.ok(&["lsdef", "cn04"]).contains("bmc="));
    assert_eq!(
        d.ok(&["lsdef", "-w", "mgt==ipmi", "-w", "os=~^rhel"]),
        "cn01  (node)\ncn02  (node)\ncn03  (node)\n"
    );
    assert_eq!(d.ok(&["lsdef", "-w", "mgt!~ipmi"]), "cn04  (node)\n");
    // A noderange of groups.
    assert_eq!(d.ok(&["lsdef", "-s", "compute"]).lines().count(), 4);

    // Existing objects are kept unless -f replaces them.
    let err = fails(d, &["mkdef", "cn01", "groups=all"]);
    assert!(err.contains("Warning: A definition for 'cn01' already exists. No changes will be made.  Run again with '-f' option to force replace."), "{err}");
    assert!(
        err.contains("Error: 0 object definitions have been created or modified."),
        "{err}"
    );
    d.ok(&["mkdef", "-f", "cn01", "groups=all"]);
    assert_eq!(
        d.ok(&["lsdef", "cn01"]),
        format!("Object name: cn01\n    groups=all\n{DEFAULT_SCRIPTS}")
    );

    // xCAT's refusals, word for word.
    let err = fails(d, &["mkdef", "-t", "node", "cn09", "mgt=ipmi"]);
    assert!(err.contains("Error: Attribute 'groups' is not specified for node 'cn09', skipping to the next node."), "{err}");
    assert!(err.contains("One or more errors occured when attempting to create or modify xCAT object definitions."), "{err}");
    let err = fails(d, &["mkdef", "cn09", "bogus=1", "groups=all"]);
    assert!(
        err.contains("Error: 'bogus' is not a valid attribute name for an object type of 'node'."),
        "{err}"
    );
    let err = fails(d, &["mkdef", "-t", "widget", "-o", "w1", "a=b"]);
    assert!(
        err.contains("Error: Type 'widget' is not a valid xCAT object type."),
        "{err}"
    );
    let err = fails(d, &["mkdef", "-t", "node", "cn09"]);
    assert!(err.contains("no attributes were specified. The 'groups' attribute is required when creating node definitions."), "{err}");
    let err = fails(d, &["mkdef", "-t", "node", "groups=all"]);
    assert!(
        err.contains("Error: No object names were provided."),
        "{err}"
    );
    let err = fails(d, &["mkdef", "-t", "node", "cn1.example.com", "groups=all"]);
    assert!(
        err.contains("The object name 'cn1.example.com' is invalid, Cannot use '.' in node name."),
        "{err}"
    );
    let err = fails(d, &["mkdef", "-p", "cn09", "groups=all"]);
    assert!(
        err.contains("The '-p' and '-m' options are not valid for the mkdef command."),
        "{err}"
    );
    let err = fails(d, &["lsdef", "cn01,cn99"]);
    assert!(
        err.contains("Error: Could not find an object named 'cn99' of type 'node'."),
        "{err}"
    );
    let err = fails(d, &["lsdef", "-l", "-s"]);
    assert!(
        err.contains("The flags '-l' and '-s' cannot be used together."),
        "{err}"
    );
    let err = fails(d, &["lsdef", "-w", "mgt"]);
    assert!(
        err.contains("Incorrect selection string specified with -w flag."),
        "{err}"
    );

    // Hidden nodes are listed with -S only.
    d.ok(&["chdef", "cn03", "hidden=1"]);
    assert!(!d.ok(&["lsdef"]).contains("cn03"));
    assert!(d.ok(&["lsdef", "-S"]).contains("cn03  (node)"));

    // Removal: every table row of the node goes.
    assert_eq!(
        d.ok(&["rmdef", "-t", "node", "cn02"]),
        "1 object definitions have been removed.\n"
    );
    assert!(!d.ok(&["tabdump", "ipmi"]).contains("cn02"));
    assert!(!d.ok(&["tabdump", "nodelist"]).contains("cn02"));
    let err = fails(d, &["rmdef", "cn02"]);
    assert!(
        err.contains("Error: Could not find an object named 'cn02' of type 'node'."),
        "{err}"
    );
    assert!(
        err.contains("No objects have been removed from the xCAT database."),
        "{err}"
    );
    d.ok(&["rmdef", "-t", "node", "-w", "mgt==kvm"]);
    assert!(!d.ok(&["lsdef", "-S"]).contains("cn04"));
    let err = fails(d, &["rmdef", "-a"]);
    assert!(
        err.contains("You must use the '-f' option when using the '-a' option."),
        "{err}"
    );
    d.ok(&["noderm", "cn03"]);
    assert_eq!(d.ok(&["lsdef", "-S"]), "cn01  (node)\n");
    d.ok(&["rmdef", "-a", "-f"]);
    assert_eq!(
        d.ok(&["lsdef"]),
        "Could not find any object definitions to display.\n"
    );
}

fn group_attributes_reach_every_member(d: &Daemon) {
    d.ok(&["mkdef", "cn[1-3]", "groups=compute"]);
    d.ok(&["mkdef", "sn1", "groups=service"]);
    d.ok(&[
        "chdef",
        "-t",
        "group",
        "compute",
        "xcatmaster=10.0.0.1",
        "mgt=ipmi",
    ]);
    for n in ["cn1", "cn2", "cn3"] {
        let l = d.ok(&["lsdef", n]);
        assert!(l.contains("    xcatmaster=10.0.0.1\n"), "{l}");
    }
    // One change of the group's value changes every member's at once.
    d.ok(&["chdef", "-t", "group", "compute", "xcatmaster=10.0.0.2"]);
    assert_eq!(
        d.ok(&["lsdef", "-c", "-i", "xcatmaster", "compute"]),
        "cn1: xcatmaster=10.0.0.2\ncn2: xcatmaster=10.0.0.2\ncn3: xcatmaster=10.0.0.2\n"
    );
    // A node's own value wins over its group's.
    d.ok(&["chdef", "cn2", "xcatmaster=10.0.0.9"]);
    assert!(d.ok(&["lsdef", "cn2"]).contains("xcatmaster=10.0.0.9"));
    let g = d.ok(&["lsdef", "-t", "group", "compute"]);
    assert!(g.starts_with("Object name: compute\n"), "{g}");
    assert!(g.contains("    members=cn1,cn2,cn3\n"), "{g}");
    assert!(g.contains("    xcatmaster=10.0.0.2\n"), "{g}");

    // Static groups by member list.
    d.ok(&["mkdef", "-t", "group", "-o", "rack1", "members=cn1,sn1"]);
    assert!(d.ok(&["lsdef", "sn1"]).contains("groups=service,rack1"));
    let err = fails(d, &["lsdef", "-t", "group", "-o", "rack9"]);
    assert!(
        err.contains("Could not find an object named 'rack9' of type 'group'."),
        "{err}"
    );
    d.ok(&["chdef", "-t", "group", "rack1", "-p", "members=cn3"]);
    assert!(d.ok(&["lsdef", "cn3"]).contains("groups=compute,rack1"));

    // Dynamic groups select by attributes.
    d.ok(&[
        "mkdef",
        "-t",
        "group",
        "-o",
        "ipmis",
        "-d",
        "-w",
        "mgt==ipmi",
    ]);
    let g = d.ok(&["lsdef", "-t", "group", "ipmis"]);
    assert!(g.contains("    grouptype=dynamic\n"), "{g}");
    assert!(g.contains("    members=cn1,cn2,cn3\n"), "{g}");
    assert!(g.contains("    wherevals=mgt==ipmi\n"), "{g}");
    d.ok(&["chdef", "sn1", "mgt=ipmi"]);
    assert!(d
        .ok(&["lsdef", "-t", "group", "ipmis", "-i", "members"])
        .contains("members=cn1,cn2,cn3,sn1"));
    let err = fails(
        d,
        &[
            "mkdef",
            "-t",
            "group",
            "-o",
            "g2",
            "members=cn1",
            "-w",
            "mgt==ipmi",
        ],
    );
    assert!(
        err.contains("Cannot use a list of members together with the '-w' option."),
        "{err}"
    );

    let groups = d.ok(&["lsdef", "-t", "group"]);
    assert_eq!(
        groups,
        "compute  (group)\nipmis  (group)\nrack1  (group)\nservice  (group)\n"
    );
    // Removing a group takes it out of its members' lists.
    d.ok(&["rmdef", "-t", "group", "rack1"]);
    assert!(d.ok(&["lsdef", "cn1"]).contains("groups=compute\n"));
    assert!(d.ok(&["lsdef", "sn1"]).contains("groups=service\n"));
}

fn chdef_edits_lists_renames_and_creates(d: &Daemon) {
    d.ok(&["mkdef", "cn1", "groups=all,compute", "postscripts=setupntp"]);
    // A default script (the xcatdefaults row) is not written again.
    let out = output_text(&d.client(&[
        "chdef",
        "-p",
        "cn1",
        "groups=gpu",
        "postscripts=ntp,syslog,setupntp",
    ]));
    assert!(
        out.contains(
            "Warning: cn1: postscripts 'syslog' is already included in the 'xcatdefaults'."
        ),
        "{out}"
    );
    let l = d.ok(&["lsdef", "cn1"]);
    assert!(l.contains("    groups=all,compute,gpu\n"), "{l}");
    assert!(
        l.contains("    postscripts=syslog,remoteshell,syncfiles,setupntp,ntp\n"),
        "{l}"
    );
    // A stanza file holds the node's own list only.
    let z = d.ok(&["lsdef", "-z", "cn1"]);
    assert!(z.contains("    postscripts=setupntp,ntp\n"), "{z}");
    d.ok(&["chdef", "-m", "cn1", "groups=compute"]);
    assert!(d.ok(&["lsdef", "cn1"]).contains("    groups=all,gpu\n"));
    // An empty value clears an attribute: the defaults remain.
    d.ok(&["chdef", "cn1", "postscripts="]);
    assert!(d
        .ok(&["lsdef", "cn1"])
        .contains("    postscripts=syslog,remoteshell,syncfiles\n"));

    // chdef creates objects that do not exist.
    let out = d.ok(&["chdef", "-t", "node", "cn2", "groups=all"]);
    assert!(
        out.contains("New object definitions 'cn2' have been created."),
        "{out}"
    );
    assert!(
        out.contains("1 object definitions have been created or modified."),
        "{out}"
    );
    let err = fails(d, &["chdef", "-m", "-t", "node", "cn3", "groups=all"]);
    assert!(
        err.contains("The '-m' option is not valid since the 'cn3' definition does not exist."),
        "{err}"
    );
    let err = fails(d, &["chdef", "-f", "cn1", "groups=all"]);
    assert!(
        err.contains("The '-f' option is not valid for the chdef command."),
        "{err}"
    );

    // -w picks the objects to change.
    d.ok(&["chdef", "-t", "node", "-w", "groups=~gpu", "arch=ppc64le"]);
    assert!(d.ok(&["lsdef", "cn1"]).contains("arch=ppc64le"));
    assert!(!d.ok(&["lsdef", "cn2"]).contains("arch"));

    // Renaming moves every row.
    let out = d.ok(&["chdef", "-t", "node", "-o", "cn1", "-n", "cn10"]);
    assert_eq!(out, "Changed the object name from cn1 to cn10.\n");
    assert!(d.ok(&["lsdef", "cn10"]).contains("arch=ppc64le"));
    let err = fails(d, &["chdef", "-t", "node", "-o", "cn10", "-n", "cn2"]);
    assert!(err.contains("Object cn2 already exists."), "{err}");
    let err = fails(d, &["chdef", "-t", "node", "-o", "cn77", "-n", "cn78"]);
    assert!(err.contains("The cn77 is not a valid object."), "{err}");
    let err = fails(d, &["chdef", "-t", "node", "-o", "cn10,cn2", "-n", "cn5"]);
    assert!(
        err.contains("The '-n' option (changing object name) can only work on one object."),
        "{err}"
    );
}

fn every_type_and_the_site_object(d: &Daemon) {
    let err = fails(
        d,
        &["mkdef", "-t", "network", "-o", "net1", "mask=255.255.255.0"],
    );
    assert!(
        err.contains("Net or mask value should not be empty for xCAT network object 'net1'."),
        "{err}"
    );
    d.ok(&[
        "mkdef",
        "-t",
        "network",
        "-o",
        "net1",
        "net=10.99.0.0",
        "mask=255.255.0.0",
        "gateway=10.99.0.1",
    ]);
    assert_eq!(
        d.ok(&["lsdef", "-t", "network", "-l", "net1"]),
        "Object name: net1\n    gateway=10.99.0.1\n    mask=255.255.0.0\n    net=10.99.0.0\n"
    );
    assert_eq!(
        d.ok(&["lsdef", "-t", "network", "-i", "net"]),
        "Object name: net1\n    net=10.99.0.0\n"
    );
    // A second network with the same net and mask is refused by mkdef and
    // chdef alike, naming the first; none is made.
    let same = ["net2", "net=10.99.0.0", "mask=255.255.0.0"];
    for cmd in [
        &["mkdef", "-t", "network", "-o"][..],
        &["chdef", "-t", "network"],
    ] {
        let err = fails(d, &[cmd, &same].concat());
        assert!(
            err.contains("A network definition called 'net1' already exists that contains the same net and mask values. Cannot create a definition for 'net2'."),
            "{cmd:?}: {err}"
        );
    }
    assert!(!d.ok(&["lsdef", "-t", "network"]).contains("net2"));
    // Another mask is another network.
    d.ok(&[
        "mkdef",
        "-t",
        "network",
        "-o",
        "net2",
        "net=10.99.0.0",
        "mask=255.255.255.0",
    ]);
    d.ok(&["rmdef", "-t", "network", "net2"]);

    d.ok(&[
        "mkdef",
        "-t",
        "osimage",
        "-o",
        "img1",
        "imagetype=linux",
        "osvers=rhels9",
        "kernelver=5.14",
    ]);
    d.ok(&["chdef", "-t", "osimage", "-o", "img1", "kernelver=5.15"]);
    let l = d.ok(&["lsdef", "-t", "osimage", "img1"]);
    assert!(l.contains("    kernelver=5.15\n"), "{l}");
    assert!(d.ok(&["tabdump", "linuximage"]).contains("\"img1\""));

    for (t, name, attr) in [
        ("route", "r1", "net=10.99.1.0"),
        ("zone", "z1", "sshkeydir=/keys"),
        ("policy", "7", "name=alice"),
        ("boottarget", "bt1", "kernel=vmlinuz"),
        ("kit", "kit1", "version=1"),
    ] {
        d.ok(&["mkdef", "-t", t, "-o", name, attr]);
        let l = d.ok(&["lsdef", "-t", t, name]);
        assert!(l.contains(&format!("    {attr}\n")), "{t}: {l}");
    }
    d.ok(&["rmdef", "-t", "route", "r1"]);
    assert!(!d.ok(&["tabdump", "routes"]).contains("r1"));

    // The site object: every site row is an attribute.
    d.ok(&["chdef", "-t", "site", "clustersite", "domain=cluster.test"]);
    let s = d.ok(&["lsdef", "-t", "site"]);
    assert!(
        s.starts_with("Object name: clustersite\n") || s == "clustersite  (site)\n",
        "{s}"
    );
    let s = d.ok(&["lsdef", "-t", "site", "-l"]);
    assert!(s.contains("    domain=cluster.test\n"), "{s}");
    assert!(s.contains("    xcatdport=3001\n"), "{s}");

    // Several types at once name the type beside each object.
    d.ok(&["mkdef", "cn1", "groups=all"]);
    let all = d.ok(&["lsdef", "-t", "node,network", "-l"]);
    assert!(all.contains("Object name: cn1  (node)\n"), "{all}");
    assert!(all.contains("Object name: net1  (network)\n"), "{all}");
    let a = d.ok(&["lsdef", "-a"]);
    for want in [
        "cn1  (node)",
        "net1  (network)",
        "img1  (osimage)",
        "clustersite  (site)",
    ] {
        assert!(a.contains(want), "lsdef -a lacks {want}:\n{a}");
    }
}

fn stanza_files_round_trip(d: &Daemon) {
    d.ok(&[
        "mkdef",
        "cn[1-2]",
        "groups=all,compute",
        "mgt=ipmi",
        "bmc=10.99.0.5",
    ]);
    d.ok(&[
        "mkdef",
        "-t",
        "network",
        "-o",
        "net1",
        "net=10.99.0.0",
        "mask=255.255.0.0",
    ]);
    let z = d.ok(&["lsdef", "-z", "cn1"]);
    assert_eq!(
        z,
        "# <xCAT data object stanza file>\n\ncn1:\n    objtype=node\n    bmc=10.99.0.5\n    groups=all,compute\n    mgt=ipmi\n"
    );
    let nodes = d.ok(&["lsdef", "-z", "-l"]);
    let nets = d.ok(&["lsdef", "-z", "-t", "network", "-l"]);
    d.ok(&["rmdef", "-t", "node", "cn1,cn2"]);
    d.ok(&["rmdef", "-t", "network", "net1"]);
    let file = format!(
        "{nodes}{}",
        nets.replace("# <xCAT data object stanza file>\n", "")
    );
    let out = piped(d, &["mkdef", "-z"], &file);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "3 object definitions have been created or modified.\n"
    );
    assert_eq!(d.ok(&["lsdef", "-z", "-l"]), nodes);
    assert_eq!(d.ok(&["lsdef", "-z", "-t", "network", "-l"]), nets);
    // chdef -z changes what the file names.
    let out = piped(d, &["chdef", "-z"], "cn2:\n    objtype=node\n    mgt=kvm\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(d.ok(&["lsdef", "cn2"]).contains("mgt=kvm"));
    let out = piped(d, &["mkdef", "-z"], "junk\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Could not process file input data"),
        "{}",
        text(&out.stderr)
    );
    let err = fails(d, &["mkdef", "-z", "cn5"]);
    assert!(
        err.contains("Cannot use '-z' with '-o' or a noderange."),
        "{err}"
    );
}

fn help_and_version_on_every_command(d: &Daemon) {
    for cmd in [
        "mkdef", "chdef", "rmdef", "lsdef", "noderm", "nodech", "nodeadd", "gettab", "tabgrep",
        "tabprune", "tabch", "chtab", "tabdump", "nodels",
    ] {
        let v = d.ok(&[cmd, "-v"]);
        // Scripts written for xCAT look for "Version" in the answer.
        assert!(
            v.starts_with(&format!("{cmd} Version ")) && v.ends_with(" (xcatd-rs)\n"),
            "{v}"
        );
        assert_eq!(d.ok(&[cmd, "--version"]), v);
        let h = d.ok(&[cmd, "-h"]);
        assert!(h.starts_with("Usage:"), "{cmd}: {h}");
        let err = fails(d, &[cmd, "--bogus"]);
        assert!(err.contains("unknown option --bogus"), "{cmd}: {err}");
    }
}

fn node_and_table_tools(d: &Daemon) {
    // nodeadd: new nodes by table column; groups are required.
    d.ok(&[
        "nodeadd",
        "cn[1-3]",
        "groups=all,compute",
        "nodehm.mgt=ipmi",
        "nodepos.rack=1",
    ]);
    let err = fails(d, &["nodeadd", "cn4", "nodehm.mgt=ipmi"]);
    assert!(
        err.contains("At least one groupname must be given"),
        "{err}"
    );
    assert_eq!(d.ok(&["nodels"]), "cn1\ncn2\ncn3\n");
    // nodech: set, add to and take from lists, narrowed by a selection.
    d.ok(&["nodech", "cn3", "nodepos.rack=2"]);
    d.ok(&["nodech", "all", "nodepos.rack==2", "groups,=rack2"]);
    assert!(d.ok(&["lsdef", "cn3"]).contains("groups=rack2,all,compute"));
    assert!(d.ok(&["lsdef", "cn2"]).contains("groups=all,compute\n"));
    d.ok(&["nodech", "cn3", "groups^=rack2", "groups,=rack3"]);
    assert!(d.ok(&["lsdef", "cn3"]).contains("groups=rack3,all,compute"));
    d.ok(&["nodech", "cn1", "nodelist.comments=@=foo"]);
    assert!(d.ok(&["lsdef", "cn1"]).contains("usercomment==foo"));
    d.ok(&["nodech", "-d", "cn1", "nodepos"]);
    assert!(!d.ok(&["tabdump", "nodepos"]).contains("cn1"));
    let err = fails(d, &["nodech", "cn1", "site.value=1"]);
    assert!(err.contains("site is not a table keyed by node"), "{err}");
    // xCAT's short names: mgt for nodehm.mgt (nodels), tags for
    // nodelist.groups (nodech and nodels).
    assert_eq!(d.ok(&["nodels", "cn1", "mgt"]), "cn1: ipmi\n");
    assert_eq!(
        d.ok(&["nodels", "-H", "cn2", "groups", "mgt"]),
        "cn2: groups: all,compute\ncn2: mgt: ipmi\n"
    );
    d.ok(&["nodech", "cn2", "tags,=rack9"]);
    assert_eq!(d.ok(&["nodels", "cn2", "tags"]), "cn2: rack9,all,compute\n");
    d.ok(&["nodech", "cn2", "tags^=rack9"]);
    // A selection with a short name is a noderange by itself.
    assert_eq!(d.ok(&["nodels", "groups=~rack"]), "cn3\n");
    assert_eq!(d.ok(&["nodels", "mgt==ipmi", "tags"]).lines().count(), 3);
    d.ok(&["nodech", "groups!~rack", "nodepos.u=7"]);
    assert_eq!(d.ok(&["nodels", "nodepos.u==7"]), "cn1\ncn2\n");
    // A `!~` selection narrows the nodes too.
    d.ok(&[
        "nodech",
        "cn[1-3]",
        "nodelist.groups!~rack",
        "nodepos.room=r1",
    ]);
    assert_eq!(
        d.ok(&["nodels", "cn[1-3]", "nodepos.room"]),
        "cn1: r1\ncn2: r1\ncn3: \n"
    );
    assert!(d.ok(&["lsdef", "cn2"]).contains("groups=all,compute\n"));

    // gettab: values by any key; the name beside them with -H or several.
    assert_eq!(d.ok(&["gettab", "key=xcatdport", "site.value"]), "3001\n");
    assert_eq!(
        d.ok(&["gettab", "-H", "key=xcatdport", "site.value"]),
        "site.value: 3001\n"
    );
    assert_eq!(d.ok(&["gettab", "mgt=ipmi", "nodehm.node"]), "cn1\n");
    // tabgrep: the tables with a row for the node or one of its groups.
    d.ok(&["chdef", "-t", "group", "compute", "xcatmaster=10.99.0.1"]);
    assert_eq!(
        d.ok(&["tabgrep", "cn2"]),
        "nodehm\nnodelist\nnodepos\nnoderes\n"
    );
    let err = fails(d, &["tabgrep", "cn9"]);
    assert!(
        err.contains("Invalid nodes and/or groups in noderange: cn9"),
        "{err}"
    );

    // chtab/tabch: += adds to a list once.
    d.ok(&["tabch", "key=ntpservers", "site.value=10.99.0.1"]);
    d.ok(&["chtab", "key=ntpservers", "site.value+=10.99.0.2"]);
    d.ok(&["tabch", "key=ntpservers", "site.value+=10.99.0.2"]);
    assert_eq!(
        d.ok(&["gettab", "key=ntpservers", "site.value"]),
        "10.99.0.1,10.99.0.2\n"
    );

    // tabprune: every record (-a, any table), or the oldest of a log.
    for i in 1..=4 {
        d.ok(&["mkdef", "-t", "eventlog", "-o", &i.to_string(), "message=m"]);
    }
    let out = d.ok(&["tabprune", "eventlog", "-n", "2", "-V"]);
    assert!(out.starts_with("#recid,"), "{out}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert_eq!(
        d.ok(&["lsdef", "-t", "eventlog"]),
        "3  (eventlog)\n4  (eventlog)\n"
    );
    assert_eq!(
        d.ok(&["tabprune", "nodepos", "-a"]),
        "tabprune of nodepos complete.\n"
    );
    assert_eq!(d.ok(&["tabdump", "nodepos"]).lines().count(), 1);
    requests_are_audited_once_allowed_to_be(d);
    let err = fails(d, &["tabprune", "nodelist", "-n", "1"]);
    assert!(err.contains("other tables take -a"), "{err}");

    // tabdump: rows that pass -w (=~ is SQL LIKE, values compare as
    // text), or into a file.
    assert_eq!(
        d.ok(&["tabdump", "-w", "mgt==ipmi", "-w", "node=~cn_", "-w", "node<cn3", "nodehm"]),
        "#node,power,mgt,cons,termserver,termport,conserver,serialport,serialspeed,serialflow,getmac,cmdmapping,consoleondemand,consoleenabled,comments,disable\n\"cn1\",,\"ipmi\",,,,,,,,,,,,,\n\"cn2\",,\"ipmi\",,,,,,,,,,,,,\n"
    );
    let later = d.ok(&["tabdump", "-w", "node>cn1", "-w", "node<=cn3", "nodelist"]);
    assert!(
        later.contains("\n\"cn2\",") && later.contains("\n\"cn3\",") && !later.contains("\"cn1\""),
        "{later}"
    );
    assert!(!d
        .ok(&["tabdump", "-w", "node=~cn", "nodelist"])
        .contains("cn1"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("site.csv");
    d.ok(&["tabdump", "-f", file.to_str().expect("utf-8"), "site"]);
    assert_eq!(
        std::fs::read_to_string(&file).expect("dump file"),
        d.ok(&["tabdump", "site"])
    );
    // The file is the client's to write: a request that still carries -f
    // (another client, or a user allowed only to read tables) writes
    // nothing on the server.
    let server_file = dir.path().join("written-by-the-daemon.csv");
    let reply = root_request(
        d,
        &format!(
            "<xcatrequest><command>tabdump</command><arg>-f</arg><arg>{}</arg><arg>site</arg></xcatrequest>",
            server_file.display()
        ),
    );
    assert!(
        reply.contains("the client writes the file") && reply.contains("<errorcode>1</errorcode>"),
        "{reply}"
    );
    assert!(
        !server_file.exists(),
        "the daemon wrote a file for a request"
    );

    // The client spells xCAT's numeric shorthand with the node prefix and suffix.
    let out = d.client_as(&d.home, &["nodels", "1-2"], &[("XCAT_NODE_PREFIX", "cn")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "cn1\ncn2\n");
    let out = d.client_as(
        &d.home,
        &["nodels", "10-11"],
        &[("XCAT_NODE_PREFIX", "abc"), ("XCAT_NODE_SUFFIX", "def")],
    );
    assert!(
        text(&out.stderr).contains("abc10def,abc11def"),
        "{}",
        text(&out.stderr)
    );
}

/// The auditlog: nothing while `site.auditskipcmds` is `ALL` (its first
/// value), then a row per request with secrets hidden, a refused request
/// marked `Denied`, and the oldest rows pruned by record id.
fn requests_are_audited_once_allowed_to_be(d: &Daemon) {
    assert_eq!(
        d.ok(&["gettab", "key=auditskipcmds", "site.value"]),
        "ALL\n"
    );
    d.ok(&["lsdef", "-t", "site"]);
    assert_eq!(d.ok(&["tabdump", "auditlog"]).lines().count(), 1);
    d.ok(&["chtab", "key=auditskipcmds", "site.value=tabdump"]);
    d.ok(&[
        "chdef",
        "-t",
        "node",
        "cn1",
        "bmcpassword=s3cret",
        "mgt=ipmi",
    ]);
    d.ok(&["tabdump", "auditlog"]);
    let home = d.add_user("auditee");
    let out = d.client_as(&home, &["chtab", "key=x", "site.value=y"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let log = d.ok(&["tabdump", "auditlog"]);
    let rows: Vec<&str> = log.lines().skip(1).collect();
    // The chtab that emptied the list was judged while it still said ALL;
    // tabdump is on the list.
    assert_eq!(rows.len(), 2, "{log}");
    assert!(
        rows[0].starts_with("\"1\",\"")
            && rows[0].contains(",\"root\",")
            && rows[0].contains("\"chdef\",")
            && rows[0].contains("bmcpassword=xxxxxxxx mgt=ipmi\",\"Allowed\""),
        "{log}"
    );
    assert!(!log.contains("s3cret"), "{log}");
    assert!(
        rows[1].starts_with("\"2\",")
            && rows[1].contains("\"auditee\"")
            && rows[1].ends_with("\"Denied\",,"),
        "{log}"
    );
    assert_eq!(
        d.ok(&["tabprune", "auditlog", "-i", "2"]),
        "tabprune of auditlog complete.\n"
    );
    // Left: the refused request, then the tabprune and this lsdef.
    let ids: Vec<String> = d
        .ok(&["lsdef", "-t", "auditlog"])
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(ids[..2], ["2", "3"]);
    // Ids only grow: the new row is numbered after the rows tabprune rewrote.
    assert!(ids[2].parse::<u64>().is_ok_and(|n| n > 3), "{ids:?}");
    let err = fails(d, &["lsdef", "-t", "auditlog", "-l", "1"]);
    assert!(
        err.contains("Could not get xCAT object definitions."),
        "{err}"
    );
    d.ok(&["chtab", "key=auditskipcmds", "site.value=ALL"]);
}

/// The scale case: ten thousand nodes defined in one command, a group
/// attribute changed once, and every member listed with the new value.
/// Prints its timings (`bench/objects` runs it against release binaries
/// and reports them beside the targets: mkdef 5 s, lsdef -l 2 s).
fn ten_thousand_nodes_through_the_client(d: &Daemon) {
    const N: usize = 10_000;
    let t = Instant::now();
    let out = d.ok(&[
        "mkdef",
        "-t",
        "node",
        "-o",
        "cn[00001-10000]",
        "groups=compute,all",
        "mgt=ipmi",
        "os=rhels9",
        "arch=x86_64",
    ]);
    let mkdef = t.elapsed();
    assert_eq!(
        out,
        format!("{N} object definitions have been created or modified.\n")
    );
    let t = Instant::now();
    d.ok(&["chdef", "-t", "group", "compute", "xcatmaster=10.99.255.1"]);
    let chdef = t.elapsed();
    let t = Instant::now();
    let out = d.ok(&["lsdef", "-l", "compute"]);
    let lsdef = t.elapsed();
    assert_eq!(out.matches("Object name: ").count(), N);
    assert_eq!(out.matches("\n    xcatmaster=10.99.255.1\n").count(), N);
    assert!(out.starts_with("Object name: cn00001\n"), "{}", &out[..200]);
    let backend = if d.log().contains("database=postgres://") {
        "postgres"
    } else {
        "sqlite"
    };
    eprintln!(
        "objects e2e {backend} ({N} nodes): mkdef {:.3} s, chdef group {:.3} s, lsdef -l {:.3} s",
        mkdef.as_secs_f64(),
        chdef.as_secs_f64(),
        lsdef.as_secs_f64()
    );
}

/// `xml` sent as is with root's certificate; the raw reply.
fn root_request(d: &Daemon, xml: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let cred = d.home.join(".xcat/client-cred.pem");
        let mut s = xcatd_tests::raw_tls(d.addr, &d.home.join(".xcat/ca.pem"), Some(&cred))
            .await
            .expect("tls");
        xcatd_tests::raw_exchange(&mut s, xml.as_bytes(), std::time::Duration::from_secs(20)).await
    })
}
