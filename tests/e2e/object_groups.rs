//! Dynamic node groups and object templates through the real client against
//! the real daemon, on SQLite and on PostgreSQL, as xCAT's man pages
//! describe them: `mkdef -t group -o G -d -w attr==val` defines a group by
//! a selection whose members are the nodes that match when the group is
//! read (in noderanges, `lsdef`, `nodels`, `rmdef -t node`); `chdef -d -p`
//! and `-m` edit the selection; `lsdef --template` shows the shipped node
//! templates and `mkdef --template NAME` starts a node from one (its
//! `MANDATORY:` attributes given on the command line, which wins over the
//! template) or from an existing node.

use xcatd_tests::{shipped_share_config, Daemon};

use crate::objects::{fails, piped, text, DEFAULT_SCRIPTS};
use crate::tables::{both_backends, with_backend_config};

/// A daemon reading the repository's `share/` (the templates), on SQLite
/// or on the PostgreSQL server of `XCATD_TEST_PG_URL`.
fn with_shipped_share(pg: bool, body: fn(&Daemon)) {
    with_backend_config(pg, shipped_share_config(), body)
}

both_backends!(
    run = crate::object_groups::with_shipped_share;
    dynamic_groups_resolve_when_read,
    dynamic_group_definitions_are_checked,
    templates_are_listed_and_shown,
    nodes_are_made_from_templates,
);

// ---------------------------------------------------------------------------

/// Four nodes: n1, n2 (hmc consoles, in systemp) and n3, n4 (ipmi
/// consoles, in systemx).
fn four_nodes(d: &Daemon) {
    d.ok(&[
        "mkdef",
        "-t",
        "node",
        "-o",
        "n1-n2",
        "mgt=hmc",
        "cons=hmc",
        "groups=all,systemp",
    ]);
    d.ok(&[
        "mkdef",
        "-t",
        "node",
        "-o",
        "n3-n4",
        "mgt=hmc",
        "cons=ipmi",
        "groups=all,systemx",
    ]);
}

fn short(nodes: &[&str]) -> String {
    nodes.iter().map(|n| format!("{n}  (node)\n")).collect()
}

fn dynamic_groups_resolve_when_read(d: &Daemon) {
    four_nodes(d);
    assert_eq!(
        d.ok(&["mkdef", "-t", "group", "-o", "dyn", "-d", "-w", "cons==hmc"]),
        "1 object definitions have been created or modified.\n"
    );
    // The definition is a nodegroup row; no node lists the group.
    let rows = d.ok(&["tabdump", "nodegroup"]);
    assert!(
        rows.contains("\"dyn\",\"dynamic\",,,\"cons==hmc\""),
        "{rows}"
    );
    assert!(!d.ok(&["tabdump", "nodelist"]).contains("dyn"));

    // As a noderange: lsdef, nodels, and combined with other elements.
    assert_eq!(d.ok(&["lsdef", "-s", "dyn"]), short(&["n1", "n2"]));
    assert_eq!(d.ok(&["nodels", "dyn"]), "n1\nn2\n");
    assert_eq!(d.ok(&["nodels", "dyn,n4"]), "n1\nn2\nn4\n");
    assert_eq!(d.ok(&["nodels", "dyn,-n1"]), "n2\n");
    assert_eq!(d.ok(&["nodels", "all,-dyn"]), "n3\nn4\n");
    let g = d.ok(&["lsdef", "-t", "group", "dyn"]);
    assert_eq!(
        g,
        "Object name: dyn\n    grouptype=dynamic\n    members=n1,n2\n    wherevals=cons==hmc\n"
    );

    // Members are whatever matches when the group is read.
    d.ok(&["chdef", "n3", "cons=hmc"]);
    assert_eq!(d.ok(&["lsdef", "-s", "dyn"]), short(&["n1", "n2", "n3"]));

    // chdef -d -p adds selections (joined by '::'), -m takes them out,
    // and plain -d -w replaces the selection.
    d.ok(&[
        "chdef",
        "-t",
        "group",
        "-o",
        "dyn",
        "-d",
        "-p",
        "-w",
        "groups=~systemp",
    ]);
    assert!(d
        .ok(&["lsdef", "-t", "group", "dyn"])
        .contains("    wherevals=cons==hmc::groups=~systemp\n"));
    assert_eq!(d.ok(&["lsdef", "-s", "dyn"]), short(&["n1", "n2"]));
    d.ok(&[
        "chdef",
        "-t",
        "group",
        "-o",
        "dyn",
        "-d",
        "-m",
        "-w",
        "cons==hmc",
    ]);
    let g = d.ok(&["lsdef", "-t", "group", "dyn"]);
    assert!(g.contains("    wherevals=groups=~systemp\n"), "{g}");
    assert!(
        g.contains("    grouptype=dynamic\n"),
        "-m keeps the type: {g}"
    );
    d.ok(&["chdef", "-t", "group", "-o", "dyn", "-d", "-w", "mgt==hmc"]);
    assert_eq!(
        d.ok(&["lsdef", "-s", "dyn"]),
        short(&["n1", "n2", "n3", "n4"])
    );

    // A selection whose value holds a comma.
    d.ok(&[
        "mkdef",
        "-t",
        "group",
        "-o",
        "exact",
        "-d",
        "-w",
        "groups==all,systemp",
        "-w",
        "mgt==hmc",
    ]);
    assert_eq!(d.ok(&["nodels", "exact"]), "n1\nn2\n");
    assert!(d
        .ok(&["lsdef", "-t", "group", "exact"])
        .contains("    wherevals=groups==all,systemp::mgt==hmc\n"));

    // A group nothing matches names no node.
    d.ok(&[
        "mkdef",
        "-t",
        "group",
        "-o",
        "none",
        "-d",
        "-w",
        "mgt==hmc",
        "-w",
        "cons==kvm",
    ]);
    let out = d.client(&["lsdef", "-s", "none"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!text(&out.stdout).contains("n1"), "{}", text(&out.stdout));

    // rmdef -t node of the group removes its members, not the group.
    assert_eq!(
        d.ok(&["rmdef", "-t", "node", "-o", "exact"]),
        "2 object definitions have been removed.\n"
    );
    let err = fails(d, &["lsdef", "-t", "node", "n1,n2"]);
    assert!(
        err.contains("Could not find an object named 'n1' of type 'node'."),
        "{err}"
    );
    assert!(
        err.contains("Could not find an object named 'n2' of type 'node'."),
        "{err}"
    );
    assert_eq!(d.ok(&["nodels", "dyn"]), "n3\nn4\n");
    d.ok(&["rmdef", "-t", "group", "-o", "dyn,exact,none"]);
    assert!(!d.ok(&["tabdump", "nodegroup"]).contains("dyn"));
    let err = fails(d, &["lsdef", "-t", "group", "-o", "dyn"]);
    assert!(
        err.contains("Could not find an object named 'dyn' of type 'group'."),
        "{err}"
    );
}

fn dynamic_group_definitions_are_checked(d: &Daemon) {
    four_nodes(d);
    // Each refusal: the words after `mkdef -t group -o g`, and what it says.
    let refusals: [(&[&str], &str); 5] = [
        (
            &["-d"],
            "Error: The 'where' attributes and values were not provided for dynamic group 'g'.",
        ),
        (&["grouptype=dynamic"], "dynamic group 'g'"),
        (
            &["-d", "-w", "mgt==hmc", "usercomment=nope"],
            "Error: Can not assign attributes to dynamic node group 'g'.",
        ),
        (
            &["-d", "-w", "mgt"],
            "Incorrect selection string specified with -w flag.",
        ),
        (
            &["-d", "-w", "mgt==hmc", "members=n1"],
            "Cannot use a list of members together with the '-w' option.",
        ),
    ];
    for (words, says) in refusals {
        let err = fails(
            d,
            &[&["mkdef", "-t", "group", "-o", "g"][..], words].concat(),
        );
        assert!(err.contains(says), "{words:?}: {err}");
    }
    // None of these made anything.
    fails(d, &["lsdef", "-t", "group", "g"]);
    assert!(!d.ok(&["tabdump", "nodegroup"]).contains("\"g\""));

    // A rejected -f replacement leaves the old static group whole.
    d.ok(&["mkdef", "-t", "group", "-o", "keep", "members=n1,n2"]);
    fails(
        d,
        &[
            "mkdef",
            "-f",
            "-t",
            "group",
            "-o",
            "keep",
            "grouptype=dynamic",
        ],
    );
    assert_eq!(d.ok(&["nodels", "keep"]), "n1\nn2\n");
    assert!(d
        .ok(&["lsdef", "n1"])
        .contains("    groups=all,systemp,keep\n"));
    // An accepted one turns it into a dynamic group: its old members no
    // longer list it.
    d.ok(&[
        "mkdef",
        "-f",
        "-t",
        "group",
        "-o",
        "keep",
        "-d",
        "-w",
        "cons==ipmi",
    ]);
    assert_eq!(d.ok(&["nodels", "keep"]), "n3\nn4\n");
    assert!(d.ok(&["lsdef", "n1"]).contains("    groups=all,systemp\n"));
}

/// Every node template shipped, as `lsdef --template` lists them.
const SHIPPED: &[&str] = &[
    "cec-template",
    "hmc-template",
    "onieswitch",
    "ppc64le-openbmc-template",
    "ppc64le-template",
    "ppc64lekvmguest-template",
    "switch-template",
    "x86_64-template",
    "x86_64kvmguest-template",
];

fn templates_are_listed_and_shown(d: &Daemon) {
    assert_eq!(d.ok(&["lsdef", "--template"]), short(SHIPPED));
    assert_eq!(
        d.ok(&["lsdef", "-t", "node", "--template"]),
        short(SHIPPED),
        "node is the default type"
    );
    assert_eq!(
        d.ok(&["lsdef", "--template", "switch-template"]),
        format!(
            "Object name: switch-template\n    groups=switch\n    ip=OPTIONAL:the ip address of the switch\n    mac=OPTIONAL:the MAC address of the switch\n    mgt=switch\n    nodetype=switch\n{}    switchtype=OPTIONAL:The type of switch, which selects the code that manages it: Mellanox, Cisco, BNT or Juniper.\n    usercomment=the switch definition template\n",
            DEFAULT_SCRIPTS
        )
    );
    let two = d.ok(&[
        "lsdef",
        "--template",
        "cec-template,hmc-template",
        "-i",
        "mgt",
    ]);
    assert_eq!(
        two,
        "Object name: cec-template\n    mgt=hmc\nObject name: hmc-template\n    mgt=hmc\n"
    );
    let z = d.ok(&["lsdef", "-z", "--template", "cec-template"]);
    assert!(
        z.starts_with("# <xCAT data object stanza file>\n\ncec-template:\n    objtype=node\n"),
        "{z}"
    );
    assert!(z.contains("    serial=MANDATORY:"), "{z}");
    // Templates are not objects: none is a node.
    assert!(!d.ok(&["lsdef", "-a"]).contains("template"));

    let err = fails(d, &["lsdef", "--template", "nosuch"]);
    assert!(
        err.contains("Error: Could not find nosuch in xCAT templates."),
        "{err}"
    );
    let err = fails(d, &["lsdef", "--template", "switch-template,nosuch"]);
    assert!(
        err.contains("Could not find nosuch in xCAT templates."),
        "{err}"
    );
    // No type but node has templates.
    assert_eq!(
        d.ok(&["lsdef", "-t", "osimage", "--template"]),
        "Could not find any object definitions to display.\n"
    );
}

fn nodes_are_made_from_templates(d: &Daemon) {
    // Every MANDATORY attribute must be given; nothing is made until then.
    for given in [&[][..], &["serial=S1"][..], &["serial=S1", "hcp=hmc1"][..]] {
        let mut args = vec![
            "mkdef",
            "-t",
            "node",
            "-o",
            "cec1",
            "--template",
            "cec-template",
        ];
        args.extend_from_slice(given);
        let err = fails(d, &args);
        assert!(err.contains("must be specified!"), "{given:?}: {err}");
    }
    let err = fails(d, &["mkdef", "cec1", "--template", "cec-template", "mtm=M"]);
    assert!(
        err.contains("Error: The attribute \"hcp\" must be specified!"),
        "{err}"
    );
    fails(d, &["lsdef", "cec1"]);

    assert_eq!(
        d.ok(&[
            "mkdef",
            "-t",
            "node",
            "-o",
            "cec1",
            "--template",
            "cec-template",
            "serial=S1",
            "mtm=9119-MHE",
            "hcp=hmc1",
        ]),
        "1 object definitions have been created or modified.\n"
    );
    assert_eq!(
        d.ok(&["lsdef", "cec1"]),
        format!(
            "Object name: cec1\n    groups=cec,all\n    hcp=hmc1\n    hwtype=cec\n    mgt=hmc\n    mtm=9119-MHE\n    nodetype=ppc\n{DEFAULT_SCRIPTS}    serial=S1\n    usercomment=the cec definition template\n"
        )
    );
    // hwtype of an hmc-managed node is ppc.nodetype, as the object model says.
    assert!(d.ok(&["tabdump", "ppc"]).contains("\"cec1\",\"hmc1\""));

    // The command line wins over the template; OPTIONAL values are no values.
    d.ok(&[
        "mkdef",
        "sw[1-3]",
        "--template",
        "switch-template",
        "groups=switch,rack1",
        "ip=10.1.1.1",
    ]);
    let sw = d.ok(&["lsdef", "sw2"]);
    assert!(sw.contains("    groups=switch,rack1\n"), "{sw}");
    assert!(sw.contains("    ip=10.1.1.1\n"), "{sw}");
    assert!(!sw.contains("OPTIONAL"), "{sw}");
    assert!(!sw.contains("switchtype="), "{sw}");
    assert!(!sw.contains("mac="), "{sw}");
    assert_eq!(d.ok(&["nodels", "rack1"]), "sw1\nsw2\nsw3\n");

    // An existing node as the template: its values, the command line's first.
    d.ok(&["chdef", "cec1", "groups=cec,all,frame1"]);
    d.ok(&["mkdef", "cec2", "--template", "cec1", "serial=S2"]);
    let c2 = d.ok(&["lsdef", "cec2"]);
    assert!(c2.contains("    serial=S2\n"), "{c2}");
    assert!(c2.contains("    groups=cec,all,frame1\n"), "{c2}");
    assert!(c2.contains("    hcp=hmc1\n    hwtype=cec\n"), "{c2}");
    assert!(c2.contains("    mtm=9119-MHE\n"), "{c2}");
    let err = fails(d, &["mkdef", "cec1", "--template", "cec1"]);
    assert!(
        err.contains("The template node cannot be the same as the node to create."),
        "{err}"
    );

    // A shipped template wins over a node of the same name.
    d.ok(&[
        "mkdef",
        "-o",
        "cec-template",
        "--template",
        "cec-template",
        "serial=S3",
        "mtm=M3",
        "hcp=hmc3",
        "groups=mine",
    ]);
    d.ok(&[
        "mkdef",
        "cec4",
        "--template",
        "cec-template",
        "serial=S4",
        "mtm=M4",
        "hcp=hmc4",
    ]);
    let c4 = d.ok(&["lsdef", "cec4"]);
    assert!(c4.contains("    groups=cec,all\n"), "{c4}");

    // xCAT's refusals.
    let err = fails(d, &["mkdef", "x1", "--template", "nosuch"]);
    assert!(
        err.contains("Error: Could not find the template object named 'nosuch' of type 'node'."),
        "{err}"
    );
    let err = fails(d, &["mkdef", "x1", "--template"]);
    assert!(
        err.contains("no object definition template specified for mkdef --template!"),
        "{err}"
    );
    let err = fails(d, &["mkdef", "x1", "--template", "a,b"]);
    assert!(
        err.contains("Only 1 template object definition should be specified for mkdef!"),
        "{err}"
    );
    let out = piped(
        d,
        &["mkdef", "-z", "--template", "cec-template"],
        "x1:\n    objtype=node\n    groups=all\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("The file input can not be used with --template option!"),
        "{}",
        text(&out.stderr)
    );
    fails(d, &["lsdef", "x1"]);
}
