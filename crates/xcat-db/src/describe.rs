//! What each table and column of the catalogue ([`crate::schema`]) holds:
//! the text `tabdump -d` shows and `lsdef -h` shows for an object's
//! attributes. Written for this project, short, one line each; the facts
//! (formats, values, defaults) are xCAT's.
//!
//! `comments` and `disable` mean the same in every table, and so does the
//! `node` key of node-keyed tables: those are described once. A unit test
//! checks that every table and every column of the catalogue has a text
//! and that no text names a column the catalogue lacks.

use crate::schema;

/// One table's text and its columns' (the shared ones left out).
struct TableText {
    name: &'static str,
    text: &'static str,
    columns: &'static [(&'static str, &'static str)],
}

const COMMENTS: &str = "Free-form notes.";
const DISABLE: &str = "Set to yes or 1 to make the row ignored (it stays in dumps).";
const NODE: &str = "The node, or a group whose nodes all take the row's values.";

/// The description of `table`, or None for a table the catalogue lacks.
pub fn table_description(table: &str) -> Option<&'static str> {
    schema::table(table)?;
    TEXTS.iter().find(|t| t.name == table).map(|t| t.text)
}

/// The description of `table.column`, or None when the catalogue has no
/// such column.
pub fn column_description(table: &str, column: &str) -> Option<&'static str> {
    let def = schema::table(table)?;
    if !def.has_column(column) {
        return None;
    }
    let own = TEXTS
        .iter()
        .find(|t| t.name == table)
        .and_then(|t| t.columns.iter().find(|(c, _)| *c == column))
        .map(|(_, d)| *d);
    own.or(match column {
        "comments" => Some(COMMENTS),
        "disable" => Some(DISABLE),
        "node" if def.is_node_keyed() => Some(NODE),
        _ => None,
    })
}

/// `tabdump -d`'s line for one name: `name:` and its text, after two tabs
/// for names shorter than seven characters and one otherwise (xCAT's
/// layout, which lines the texts up at a tab stop of eight).
pub fn described_line(name: &str, text: &str) -> String {
    let gap = if name.len() < 7 { "\t\t" } else { "\t" };
    format!("{name}:{gap}{text}")
}

static TEXTS: &[TableText] = &[
    TableText {
        name: "auditlog",
        text: "Record of the commands xcatd was asked to run, one row per request.",
        columns: &[
            ("recid", "The record's number, counted up from 1."),
            ("audittime", "When the request arrived."),
            ("userid", "The user the request came from."),
            ("clientname", "The client's host name or address."),
            ("clienttype", "The kind of client: cli, java, webui or other."),
            ("command", "The command asked for."),
            ("noderange", "The noderange the command was given."),
            ("args", "The command's arguments."),
            ("status", "allowed or denied, as policy decided."),
        ],
    },
    TableText {
        name: "bootparams",
        text: "Per-node kernel, initrd and kernel arguments for network boot, mostly written by nodeset.",
        columns: &[
            ("kernel", "The kernel file to boot, relative to the TFTP root."),
            ("initrd", "The initial ramdisk file(s), relative to the TFTP root."),
            ("kcmdline", "The kernel command line nodeset built."),
            ("addkcmdline", "Extra kernel arguments added to the generated ones."),
            ("dhcpstatements", "DHCP statements for the node, written by nodeset."),
            ("adddhcpstatements", "Extra DHCP statements added to the generated ones."),
        ],
    },
    TableText {
        name: "boottarget",
        text: "Named boot profiles: a kernel, initrd and arguments that nodes can boot by name.",
        columns: &[
            ("bprofile", "The boot profile's name (nodetype.profile of the nodes that use it)."),
            ("kernel", "The kernel file, relative to the TFTP root."),
            ("initrd", "The initial ramdisk file, relative to the TFTP root."),
            ("kcmdline", "The kernel command line."),
        ],
    },
    TableText {
        name: "chain",
        text: "What a node does next in its boot chain, and what happens when it is discovered.",
        columns: &[
            ("currstate", "The node's current boot state, written by nodeset (install, netboot, boot, ...)."),
            ("currchain", "The actions still to run in the chain."),
            ("chain", "The actions a node runs in order after discovery (e.g. runcmd=bmcsetup,standby)."),
            ("ondiscover", "What to do when the node is discovered (nodediscover)."),
        ],
    },
    TableText {
        name: "eventlog",
        text: "Events reported by the monitoring plug-ins, one row per event.",
        columns: &[
            ("recid", "The record's number, counted up from 1."),
            ("eventtime", "When the event happened."),
            ("eventtype", "The event's type, as its monitor names it."),
            ("monitor", "The monitoring plug-in that reported the event."),
            ("monnode", "The node that ran the monitor."),
            ("node", "The node the event is about."),
            ("application", "The application that raised the event."),
            ("component", "The component the event concerns."),
            ("id", "The event's identifier within its application."),
            ("severity", "How severe the event is: informational, warning or critical."),
            ("message", "The event's message text."),
            ("rawdata", "The event's data as the monitor gave it."),
        ],
    },
    TableText {
        name: "firmware",
        text: "Firmware configuration files to apply to nodes.",
        columns: &[("cfgfile", "The configuration file to apply to the node's firmware.")],
    },
    TableText {
        name: "hosts",
        text: "IP addresses and extra host names of nodes, for makehosts and makedhcp.",
        columns: &[
            ("ip", "The node's IP address on the management network."),
            ("hostnames", "Other names of the node, separated by |."),
            ("otherinterfaces", "Other interfaces' names and addresses, as name:ip,name:ip (a name starting with - is appended to the node's name)."),
        ],
    },
    TableText {
        name: "hwinv",
        text: "Hardware inventory of nodes: processors, memory and disks.",
        columns: &[
            ("cputype", "The processor model."),
            ("cpucount", "The number of processors."),
            ("memory", "The amount of memory, in MB."),
            ("disksize", "The size of each disk, in GB, separated by commas."),
        ],
    },
    TableText {
        name: "ipmi",
        text: "BMC settings of nodes managed over IPMI.",
        columns: &[
            ("bmc", "The BMC's host name or address."),
            ("bmcport", "The BMC's network port (0: dedicated, 1: shared, on machines that have both)."),
            ("taggedvlan", "The VLAN the BMC is tagged with."),
            ("bmcid", "The BMC's unique identifier (usually its MAC address)."),
            ("username", "The BMC user name; the passwd table's ipmi row when unset."),
            ("password", "The BMC password; the passwd table's ipmi row when unset."),
        ],
    },
    TableText {
        name: "kit",
        text: "The kits added to the cluster.",
        columns: &[
            ("kitname", "The kit's unique name, made when the kit is added."),
            ("basename", "The kit's base name."),
            ("description", "What the kit is."),
            ("version", "The kit's version."),
            ("release", "The kit's release."),
            ("ostype", "The operating system type the kit is for (Linux or AIX)."),
            ("isinternal", "1 for a kit only xCAT itself uses."),
            ("kitdeployparams", "The file of deployment parameters the kit's packages need."),
            ("kitdir", "The directory the kit's files were copied to."),
        ],
    },
    TableText {
        name: "kitcomponent",
        text: "The components of the kits added to the cluster.",
        columns: &[
            ("kitcompname", "The component's unique name, made when its kit is added."),
            ("description", "What the component is."),
            ("kitname", "The kit the component belongs to."),
            ("kitreponame", "The kit package repository the component belongs to."),
            ("basename", "The component's base name."),
            ("version", "The component's version."),
            ("release", "The component's release."),
            ("serverroles", "The kinds of server it can be installed on: mgtnode, servicenode, compute."),
            ("kitpkgdeps", "Packages the component depends on, separated by commas."),
            ("prerequisite", "What must come first: OS package dependencies and preinstall, preupgrade, preuninstall scripts."),
            ("driverpacks", "Driver packages, full file names separated by commas."),
            ("kitcompdeps", "Kit components this one depends on, separated by commas."),
            ("postbootscripts", "Scripts run when the node boots, separated by commas."),
            ("genimage_postinstall", "Scripts run after genimage builds an image, separated by commas."),
            ("exlist", "A file listing what to leave out of a diskless image."),
        ],
    },
    TableText {
        name: "kitrepo",
        text: "The package repositories of the kits added to the cluster.",
        columns: &[
            ("kitreponame", "The repository's unique name, made when its kit is added."),
            ("kitname", "The kit the repository belongs to."),
            ("osbasename", "The operating system the repository is for (e.g. rhels)."),
            ("osmajorversion", "The operating system's major version."),
            ("osminorversion", "The operating system's minor version."),
            ("osarch", "The architecture the repository is for."),
            ("compat_osbasenames", "Other operating systems the repository also suits, separated by commas."),
            ("kitrepodir", "The repository's directory."),
        ],
    },
    TableText {
        name: "linuximage",
        text: "Linux-specific settings of osimage definitions.",
        columns: &[
            ("imagename", "The osimage the settings belong to (osimage.imagename)."),
            ("template", "The template file for a diskful installation (kickstart, autoyast, preseed)."),
            ("boottarget", "The boottarget profile to boot from instead of the generated one."),
            ("addkcmdline", "Extra kernel arguments for the image's boots."),
            ("pkglist", "The files listing the operating system packages to install, separated by commas."),
            ("pkgdir", "The directories holding the operating system packages, separated by commas."),
            ("otherpkglist", "The files listing the other (non-OS) packages to install, separated by commas."),
            ("otherpkgdir", "The directories holding the other packages, separated by commas."),
            ("exlist", "The files listing what to leave out of a diskless image, separated by commas."),
            ("postinstall", "Scripts run on a diskless image after it is built, separated by commas."),
            ("rootimgdir", "The directory of a diskless image's tree and packed files."),
            ("kerneldir", "The directory holding the kernels to choose from."),
            ("nodebootif", "The network interface a diskless node boots from."),
            ("otherifce", "Other network interfaces a diskless node brings up with DHCP."),
            ("netdrivers", "Network driver modules the initrd loads, separated by commas (allupdate: every updated driver)."),
            ("kernelver", "The kernel version to use, when not the image's newest."),
            ("krpmver", "The kernel package version, for a kernel from a package."),
            ("permission", "The mode of a statelite node's persistent directory (default 755)."),
            ("dump", "Where a diskless node sends kernel crash dumps (an nfs:// or ssh:// URL)."),
            ("crashkernelsize", "The memory kept for the crash kernel."),
            ("partitionfile", "The custom partition file or script for a diskful installation."),
            ("driverupdatesrc", "Driver update disks or packages for the installer, separated by commas (dud: or rpm: prefixes)."),
        ],
    },
    TableText {
        name: "litefile",
        text: "The files of a statelite image that are writable or persistent, and how.",
        columns: &[
            ("image", "The image the entry applies to (ALL for every image)."),
            ("file", "The file or directory's full path (a directory ends with /)."),
            ("options", "How it is kept: tmpfs (the default), persistent, ro, rw, link, localdisk, or combinations."),
        ],
    },
    TableText {
        name: "litetree",
        text: "Where statelite nodes find the files litefile lists, in priority order.",
        columns: &[
            ("priority", "The entry's priority (lower numbers are looked at first)."),
            ("image", "The image the entry applies to (empty or ALL for every image)."),
            ("directory", "The NFS location (server:/path) of the files; $noderes.nfsserver style variables allowed."),
            ("mntopts", "Options for mounting the directory."),
        ],
    },
    TableText {
        name: "mac",
        text: "The MAC addresses of nodes' network interfaces.",
        columns: &[
            ("interface", "The interface the MAC address belongs to (e.g. eth0)."),
            ("mac", "The MAC address; several separated by |, each optionally !hostname."),
        ],
    },
    TableText {
        name: "monitoring",
        text: "The monitoring plug-ins in use and whether they report node status.",
        columns: &[
            ("name", "The monitoring plug-in's name."),
            ("nodestatmon", "yes or 1 for the plug-in to keep the nodes' status up to date."),
        ],
    },
    TableText {
        name: "monsetting",
        text: "Settings of the monitoring plug-ins.",
        columns: &[
            ("name", "The monitoring plug-in's name."),
            ("key", "The setting's name."),
            ("value", "The setting's value."),
        ],
    },
    TableText {
        name: "mp",
        text: "Management module settings of blade nodes.",
        columns: &[
            ("mpa", "The management module that controls the blade."),
            ("id", "The blade's slot number in its chassis."),
            ("nodetype", "The hardware type: mm, cmm, blade, or the like."),
        ],
    },
    TableText {
        name: "networks",
        text: "The networks of the cluster and the servers and settings each uses.",
        columns: &[
            ("netname", "The network's name."),
            ("net", "The network address."),
            ("mask", "The network mask."),
            ("mgtifname", "The interface on the management node that reaches the network."),
            ("gateway", "The network's gateway (<xcatmaster>: the node's own server)."),
            ("dhcpserver", "The DHCP server of the network."),
            ("tftpserver", "The TFTP server of the network."),
            ("nameservers", "DNS servers of the network, separated by commas."),
            ("ntpservers", "NTP servers of the network, separated by commas."),
            ("logservers", "Syslog servers of the network, separated by commas."),
            ("dynamicrange", "Addresses DHCP may hand out to unknown machines (first-last)."),
            ("staticrange", "Addresses for static assignment (first-last)."),
            ("staticrangeincrement", "The step between addresses of the static range."),
            ("nodehostname", "A template for the host names of nodes on this network."),
            ("ddnsdomain", "The domain used for dynamic DNS updates of this network."),
            ("vlanid", "The VLAN of the network."),
            ("domain", "The DNS domain of the network."),
            ("mtu", "The largest packet size on the network."),
        ],
    },
    TableText {
        name: "nics",
        text: "Per-interface settings of nodes' extra network interfaces, each value a list of interface!value pairs.",
        columns: &[
            ("nicips", "Addresses per interface: eth0!10.0.0.1,ib0!10.1.0.1 (several for one interface separated by |)."),
            ("nichostnamesuffixes", "Host name suffixes per interface: eth0!-eth0."),
            ("nichostnameprefixes", "Host name prefixes per interface: eth0!eth0-."),
            ("nictypes", "Interface types: ethernet, infiniband, bond, bridge, vlan, ..."),
            ("niccustomscripts", "Scripts that configure each interface."),
            ("nicnetworks", "The network (networks.netname) of each interface."),
            ("nicaliases", "Extra host name aliases per interface."),
            ("nicextraparams", "Extra configuration parameters per interface."),
            ("nicdevices", "The physical interfaces under a bond, bridge or VLAN interface."),
            ("nicsadapter", "Attributes of each physical adapter (e.g. mac=...)."),
        ],
    },
    TableText {
        name: "nodegroup",
        text: "Node groups, static (members listed in nodelist.groups) or dynamic (members chosen by wherevals).",
        columns: &[
            ("groupname", "The group's name."),
            ("grouptype", "static (the default) or dynamic."),
            ("members", "The group's nodes (shown; static members are kept in nodelist.groups)."),
            ("membergroups", "Groups whose nodes are members too, separated by commas."),
            ("wherevals", "For a dynamic group: the attr==val, attr=~val tests its members pass, separated by ::."),
        ],
    },
    TableText {
        name: "nodehm",
        text: "How each node's power, console and hardware are managed.",
        columns: &[
            ("power", "The method of power control, when not mgt's (ipmi, openbmc, kvm, ...)."),
            ("mgt", "The hardware management method: ipmi, openbmc, blade, hmc, ivm, fsp, kvm, esx, ..."),
            ("cons", "The console method, when not mgt's (ipmi, conserver, kvm, ...)."),
            ("termserver", "The terminal server the node's serial console is wired to."),
            ("termport", "The port of the terminal server."),
            ("conserver", "The host that runs conserver for the node."),
            ("serialport", "The serial port number of the node's console (0 is ttyS0)."),
            ("serialspeed", "The serial console's speed (e.g. 115200)."),
            ("serialflow", "The serial console's flow control: none, hard or soft."),
            ("getmac", "How getmacs finds the node's MAC address."),
            ("cmdmapping", "A file mapping hardware commands to the node's management tools."),
            ("consoleondemand", "yes to open the console only while someone watches it."),
            ("consoleenabled", "1 when the console is set up in conserver."),
        ],
    },
    TableText {
        name: "nodelist",
        text: "Every node of the cluster, its groups and its status.",
        columns: &[
            ("node", "The node's name."),
            ("groups", "The groups the node belongs to, separated by commas (all is usual)."),
            ("status", "The node's status: defined, booting, installing, netbooting, booted, powering-off, ..."),
            ("statustime", "When the status last changed."),
            ("appstatus", "Application states, as app=state pairs separated by commas."),
            ("appstatustime", "When an application state last changed."),
            ("primarysn", "The node's primary service node."),
            ("hidden", "1 to hide the node from nodels and lsdef (without -S)."),
            ("updatestatus", "The state of the node's software updates (synced, out-of-sync, ...)."),
            ("updatestatustime", "When the update state last changed."),
            ("zonename", "The zone (zone.zonename) the node belongs to."),
        ],
    },
    TableText {
        name: "nodepos",
        text: "Where each node sits: room, rack, unit, chassis and slot.",
        columns: &[
            ("rack", "The rack's name or number."),
            ("u", "The node's unit position in the rack."),
            ("chassis", "The chassis the node is in."),
            ("slot", "The slot of the chassis."),
            ("room", "The room the node is in."),
            ("height", "The node's height, in rack units."),
        ],
    },
    TableText {
        name: "noderes",
        text: "The servers and resources each node uses to install and boot.",
        columns: &[
            ("servicenode", "The service nodes that manage the node, separated by commas (the first is primary)."),
            ("netboot", "The network boot method: pxe, xnba, grub2, petitboot, yaboot, ..."),
            ("tftpserver", "The TFTP server the node boots from, when not xcatmaster."),
            ("tftpdir", "The TFTP root directory, when not site.tftpdir."),
            ("nfsserver", "The server of installation files and NFS roots, when not xcatmaster."),
            ("monserver", "The monitoring server(s) of the node."),
            ("nfsdir", "The installation directory on nfsserver, when not site.installdir."),
            ("installnic", "The interface the node installs over (mac: the one with the mac table's address)."),
            ("primarynic", "The node's main interface (mac: the one with the mac table's address)."),
            ("discoverynics", "The interfaces discovery uses, when not all."),
            ("cmdinterface", "Reserved: the interface remote commands use."),
            ("xcatmaster", "The node's xCAT server, as the node knows it (its service node, or the management node)."),
            ("current_osimage", "Reserved: the image the node runs now."),
            ("next_osimage", "Reserved: the image the node boots next."),
            ("nimserver", "The NIM server, on AIX."),
            ("routenames", "Routes (routes.routename) set up on the node, separated by commas."),
            ("nameservers", "The node's DNS servers, separated by commas (<xcatmaster>: its server)."),
            ("proxydhcp", "yes or no: whether a proxy DHCP answers the node's boot."),
            ("syslog", "ignore to leave the node's syslog set-up alone."),
        ],
    },
    TableText {
        name: "nodetype",
        text: "Each node's operating system, architecture, profile and provisioning method.",
        columns: &[
            ("os", "The operating system the node is provisioned with (e.g. rhels9.4)."),
            ("arch", "The node's architecture: x86_64, ppc64le, aarch64, ..."),
            ("profile", "The profile (a name for a set of templates and package lists)."),
            ("provmethod", "install, netboot or statelite, or the name of an osimage."),
            ("supportedarchs", "The architectures the node can run, separated by commas."),
            ("nodetype", "The node's kind: osi, hmc, fsp, ppc, mp, switch, pdu, ..."),
        ],
    },
    TableText {
        name: "notification",
        text: "Commands and modules told of changes to given tables.",
        columns: &[
            ("filename", "The module or command to tell (a path, or a module name ending in .pm)."),
            ("tables", "The tables whose changes it is told of, separated by commas."),
            ("tableops", "Which changes: a (add), d (delete), u (update), separated by commas."),
        ],
    },
    TableText {
        name: "openbmc",
        text: "BMC settings of nodes managed through OpenBMC.",
        columns: &[
            ("bmc", "The BMC's host name or address."),
            ("consport", "The port of the console (SOL) over SSH."),
            ("taggedvlan", "The VLAN the BMC is tagged with."),
            ("username", "The BMC user name; the passwd table's openbmc row when unset."),
            ("password", "The BMC password; the passwd table's openbmc row when unset."),
        ],
    },
    TableText {
        name: "osimage",
        text: "Operating system image definitions (osimage objects); linuximage holds the Linux settings.",
        columns: &[
            ("imagename", "The image's name."),
            ("groups", "Groups the image belongs to, separated by commas."),
            ("profile", "The profile the image was made for."),
            ("imagetype", "The image's type: linux, NIM, windows."),
            ("description", "What the image is."),
            ("provmethod", "install, netboot, statelite or sysclone."),
            ("rootfstype", "A diskless image's root file system type: nfs, ramdisk, overlay."),
            ("nfsrootopts", "Mount options of a statelite image's NFS root."),
            ("osdistroname", "The OS distribution (osdistro) the image is built from."),
            ("osupdatename", "OS updates applied to the image, separated by commas."),
            ("cfmdir", "The CFM directory, on AIX."),
            ("osname", "The operating system's name: Linux, AIX, ..."),
            ("osvers", "The operating system's version (e.g. rhels9.4)."),
            ("osarch", "The image's architecture."),
            ("synclists", "Files listing what to synchronise to the nodes, separated by commas."),
            ("postscripts", "Scripts run on the node after it is installed, separated by commas."),
            ("postbootscripts", "Scripts run on the node at every boot, separated by commas."),
            ("serverrole", "The role of nodes with this image: mgtnode, servicenode or compute."),
            ("isdeletable", "no to keep rmimage from removing it."),
            ("kitcomponents", "Kit components added to the image, separated by commas."),
            ("environvar", "Environment variables for genimage and installation, as name=value pairs separated by commas."),
        ],
    },
    TableText {
        name: "passwd",
        text: "User names and passwords of the cluster's services and hardware.",
        columns: &[
            ("key", "What the password is for: system (node root), ipmi, openbmc, hmc, blade, ..."),
            ("username", "The user name."),
            ("password", "The password, clear or encrypted."),
            ("cryptmethod", "How the password is encrypted: md5, sha256, sha512 (empty: clear)."),
            ("authdomain", "The authentication domain the user belongs to."),
        ],
    },
    TableText {
        name: "policy",
        text: "Who may run which commands on which nodes, decided by the lowest priority row that matches.",
        columns: &[
            ("priority", "The row's priority (a number; lower wins)."),
            ("name", "The user (certificate name) the row applies to (empty or *: anyone)."),
            ("host", "The host the request must come from."),
            ("commands", "The commands the row applies to, separated by commas."),
            ("noderange", "The nodes the row applies to."),
            ("parameters", "A regular expression the arguments must match."),
            ("time", "Reserved: when the row applies."),
            ("rule", "allow, deny, trusted (allowed and may act for others), or accept."),
        ],
    },
    TableText {
        name: "postscripts",
        text: "Scripts each node runs after it is installed and at every boot.",
        columns: &[
            ("postscripts", "Scripts run after installation, separated by commas (the xcatdefaults row applies to every node)."),
            ("postbootscripts", "Scripts run at every boot, separated by commas."),
        ],
    },
    TableText {
        name: "ppc",
        text: "IBM Power hardware: HMCs, IVMs, FSPs, BPAs, CECs, frames and LPARs.",
        columns: &[
            ("hcp", "The hardware control point that manages the node (HMC, IVM, frame or CEC)."),
            ("id", "For an LPAR its number, for a CEC its cage, for a frame its number."),
            ("pprofile", "The LPAR profile used at the next power on."),
            ("parent", "What the node sits in: a CEC for an LPAR or FSP, a frame for a CEC or BPA."),
            ("nodetype", "The hardware type: fsp, bpa, cec, frame, ivm, hmc or lpar."),
            ("supernode", "A CEC's place in the HFI network: supernode number,position."),
            ("sfp", "The frame's service focal point (an HMC)."),
        ],
    },
    TableText {
        name: "ppcdirect",
        text: "User names and passwords of FSPs and BPAs managed directly.",
        columns: &[
            ("hcp", "The FSP or BPA's host name."),
            ("username", "The user name."),
            ("password", "The password."),
        ],
    },
    TableText {
        name: "ppchcp",
        text: "User names and passwords of HMCs and IVMs.",
        columns: &[
            ("hcp", "The HMC or IVM's host name."),
            ("username", "The user name."),
            ("password", "The password."),
        ],
    },
    TableText {
        name: "prescripts",
        text: "Scripts run on the management node before and after nodeset.",
        columns: &[
            ("begin", "Scripts run at the start of nodeset, separated by commas (action:script for one action)."),
            ("end", "Scripts run at the end of nodeset, separated by commas."),
        ],
    },
    TableText {
        name: "routes",
        text: "Network routes that nodes or the management node can be given.",
        columns: &[
            ("routename", "The route's name."),
            ("net", "The destination network address."),
            ("mask", "The destination network mask (or prefix length, for IPv6)."),
            ("gateway", "The gateway the route goes through."),
            ("ifname", "The interface the route goes out of."),
        ],
    },
    TableText {
        name: "servicenode",
        text: "Which services each service node (or the management node) provides; 1 or yes sets a service up.",
        columns: &[
            ("node", "The service node, or a group of service nodes."),
            ("nameserver", "Whether to run DNS (1: yes, 2: as a secondary)."),
            ("dhcpserver", "Whether to run DHCP."),
            ("tftpserver", "Whether to run TFTP."),
            ("nfsserver", "Whether to run NFS."),
            ("conserver", "Whether to run conserver for the nodes' consoles."),
            ("monserver", "Whether to run monitoring."),
            ("ldapserver", "Whether to run an LDAP proxy."),
            ("ntpserver", "Whether to run NTP."),
            ("ftpserver", "Whether to run FTP (or HTTP for installation files)."),
            ("nimserver", "Whether to run NIM, on AIX."),
            ("ipforward", "Whether to forward IP traffic for the nodes."),
            ("dhcpinterfaces", "The interfaces DHCP serves, separated by commas (or host|ifc;host|ifc)."),
            ("proxydhcp", "Whether to run a proxy DHCP."),
        ],
    },
    TableText {
        name: "site",
        text: "Global settings of the cluster, one key and value per row (the site object).",
        columns: &[
            ("key", "The site setting's name. The settings this daemon reads: master (the management node), domain (the cluster's DNS domain), xcatdport (xcatd's port, 3001), xcatiport (the install monitor's port, where booting nodes report status, 3002), installdir (installation files, /install), tftpdir (the TFTP root, /tftpboot), httpport (the boot service's port, 80), nameservers, ntpservers, dhcpinterfaces, excludenodes, and any other key a user sets."),
            ("value", "The site setting's value."),
        ],
    },
    TableText {
        name: "statelite",
        text: "Where statelite nodes keep their persistent files.",
        columns: &[
            ("image", "Reserved: the image the entry applies to."),
            ("statemnt", "The server:/path each node's persistent directory lives under ($variables allowed)."),
            ("mntopts", "Options for mounting statemnt."),
        ],
    },
    TableText {
        name: "switches",
        text: "How to reach and log in to switches.",
        columns: &[
            ("switch", "The switch's host name or address."),
            ("snmpversion", "The SNMP version to use (1 unless set; 3 for SNMPv3)."),
            ("username", "The SNMPv3 user name."),
            ("password", "The SNMPv3 password, or the SNMPv1/v2 community string."),
            ("privacy", "The SNMPv3 privacy protocol: DES or AES (none: authNoPriv)."),
            ("auth", "The SNMPv3 authentication protocol: SHA (the default) or MD5."),
            ("linkports", "The ports that connect to other switches, as port:switch pairs separated by commas."),
            ("sshusername", "The user name for logging in to the switch (ssh or telnet)."),
            ("sshpassword", "The password for logging in to the switch."),
            ("protocol", "ssh (the default) or telnet, for the switch's commands."),
            ("switchtype", "The switch's make, which picks its driver: BNT, Cisco, Juniper, Mellanox, onie, ..."),
        ],
    },
    TableText {
        name: "vm",
        text: "Virtual machines: their host, resources and settings.",
        columns: &[
            ("mgr", "The virtualisation manager (e.g. vCenter) the machine belongs to."),
            ("host", "The hypervisor the machine runs on."),
            ("migrationdest", "A hypervisor the machine may be moved to."),
            ("storage", "The machine's disks: a storage URL or directory, several separated by |."),
            ("storagemodel", "The disk controller model: ide, scsi, virtio, ..."),
            ("storagecache", "The disk cache mode: none, writethrough, writeback."),
            ("storageformat", "The disk image format: raw, qcow2, ..."),
            ("cfgstore", "Where the machine's configuration is kept, when not with its storage."),
            ("memory", "The machine's memory, in MB (or with a G suffix)."),
            ("cpus", "The number of virtual processors."),
            ("nics", "The networks the machine's interfaces are on, separated by commas."),
            ("nicmodel", "The network interface model: virtio, e1000, ..."),
            ("bootorder", "The boot devices in order, separated by commas (net, hd, cdrom)."),
            ("clockoffset", "utc or localtime for the machine's clock."),
            ("virtflags", "Hypervisor-specific flags, as name=value pairs separated by |."),
            ("master", "The machine this one is a clone of."),
            ("vncport", "The VNC port of the machine's display (set by the hypervisor)."),
            ("textconsole", "The machine's serial console device."),
            ("powerstate", "The power state last seen (on, off, paused)."),
            ("beacon", "on to light the machine's locator, where the hypervisor has one."),
            ("datacenter", "The datacenter (vCenter) the machine is in."),
            ("cluster", "The cluster (vCenter) the machine is in."),
            ("guestostype", "The guest OS type the hypervisor is told."),
            ("othersettings", "Other settings, as name=value pairs separated by ;."),
            ("physlots", "Physical devices passed through to the machine, separated by commas."),
            ("vidmodel", "The video adapter model: vga, cirrus, qxl, virtio."),
            ("vidproto", "The remote display protocol: vnc or spice."),
            ("vidpassword", "The password of the remote display."),
        ],
    },
    TableText {
        name: "vpd",
        text: "Vital product data of nodes: serial numbers, machine types and UUIDs.",
        columns: &[
            ("serial", "The serial number."),
            ("mtm", "The machine type and model."),
            ("side", "Which side (A or B) of redundant hardware the node is."),
            ("asset", "The asset tag."),
            ("uuid", "The node's UUID (its SMBIOS system UUID)."),
        ],
    },
    TableText {
        name: "zone",
        text: "Zones: sets of nodes that share an SSH key and root login between one another.",
        columns: &[
            ("zonename", "The zone's name."),
            ("sshkeydir", "The directory holding the zone's SSH keys."),
            ("sshbetweennodes", "yes to let the zone's nodes log in to one another as root."),
            ("defaultzone", "yes for the zone nodes belong to when they name none."),
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_and_column_of_the_catalogue_is_described() {
        let mut missing = Vec::new();
        for t in schema::TABLES {
            if table_description(t.name).is_none() {
                missing.push(t.name.to_string());
            }
            for c in t.columns {
                if column_description(t.name, c).is_none() {
                    missing.push(format!("{}.{c}", t.name));
                }
            }
        }
        assert!(missing.is_empty(), "not described: {missing:?}");
    }

    #[test]
    fn no_text_names_a_table_or_column_the_catalogue_lacks() {
        let mut names: Vec<&str> = TEXTS.iter().map(|t| t.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a table described twice");
        for t in TEXTS {
            let def = schema::table(t.name).unwrap_or_else(|| panic!("no table {}", t.name));
            for (c, d) in t.columns {
                assert!(def.has_column(c), "{}.{c} is not in the catalogue", t.name);
                assert!(!d.is_empty() && !d.contains('\n'), "{}.{c}", t.name);
            }
        }
    }

    #[test]
    fn shared_columns_and_unknown_names() {
        assert_eq!(column_description("site", "comments"), Some(COMMENTS));
        assert_eq!(column_description("nodehm", "node"), Some(NODE));
        // nodelist's node is the node itself, not a group's row.
        assert_ne!(column_description("nodelist", "node"), Some(NODE));
        assert!(column_description("site", "xcatiport").is_none());
        assert!(column_description("nosuch", "node").is_none());
        assert!(table_description("nosuch").is_none());
        assert!(column_description("site", "key")
            .unwrap()
            .contains("xcatiport"));
    }

    #[test]
    fn lines_are_laid_out_as_xcat_does() {
        assert_eq!(described_line("key", "x"), "key:\t\tx");
        assert_eq!(described_line("groups", "x"), "groups:\t\tx");
        assert_eq!(described_line("comments", "x"), "comments:\tx");
    }
}
