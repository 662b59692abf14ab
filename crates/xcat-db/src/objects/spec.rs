//! The object model as data: every object type the object commands serve,
//! each attribute with the table column that holds it (xCAT's `defspec`,
//! restricted to the tables of this daemon's catalogue). Nothing here is
//! code per type: reads, writes and removals in [`super`] walk these lists.

/// Where an attribute lives. The row is the one whose key column holds the
/// object's name: the type's own key column in its main table, the table's
/// first key in any other (`node` for node-keyed tables, which is how a
/// group's attributes sit in rows named after the group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub name: &'static str,
    pub table: &'static str,
    pub column: &'static str,
    /// Served only when another attribute of the object has this value
    /// (`bmc` only for `mgt=ipmi`, `template` only for `imagetype=linux`).
    pub only_if: Option<(&'static str, &'static str)>,
    /// For a table with two keys (`ppcdirect`: `hcp`, `username`), the
    /// second key's column and the value that picks this attribute's row:
    /// `passwd.HMC` is the password of the row whose `username` is `HMC`.
    pub row: Option<(&'static str, &'static str)>,
}

impl Attr {
    /// Where the attribute's value sits among an object's raw values: its
    /// column, or for an attribute of a row picked by a second key its own
    /// name (several attributes share `ppcdirect.password`).
    pub fn slot(&self) -> (&'static str, &'static str) {
        match self.row {
            None => (self.table, self.column),
            Some(_) => (self.table, self.name),
        }
    }
}

const fn a(
    name: &'static str,
    table: &'static str,
    column: &'static str,
    only_if: Option<(&'static str, &'static str)>,
) -> Attr {
    Attr {
        name,
        table,
        column,
        only_if,
        row: None,
    }
}

/// An attribute in the row of a two-key table whose second key `key`
/// holds `value`.
const fn in_row(
    name: &'static str,
    table: &'static str,
    column: &'static str,
    key: (&'static str, &'static str),
) -> Attr {
    Attr {
        name,
        table,
        column,
        only_if: None,
        row: Some(key),
    }
}

/// How a type's objects are stored, which is all the code distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Nodes: `nodelist` rows; attributes in node-keyed tables, inherited
    /// from the node's groups on read.
    Node,
    /// Node groups: an optional `nodegroup` row, members from
    /// `nodelist.groups` (static) or `wherevals` (dynamic); node attributes
    /// in rows of node-keyed tables named after the group.
    Group,
    /// One row of the main table per object.
    Plain,
    /// The one `clustersite` object: every `site` row is an attribute.
    Site,
}

/// One object type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjType {
    pub name: &'static str,
    pub kind: Kind,
    /// The table whose rows are the objects.
    pub table: &'static str,
    /// The column of `table` that holds the object's name.
    pub key: &'static str,
    pub attrs: &'static [Attr],
}

/// The name of the site object.
pub const SITE_OBJECT: &str = "clustersite";

const fn t(
    name: &'static str,
    kind: Kind,
    table: &'static str,
    key: &'static str,
    attrs: &'static [Attr],
) -> ObjType {
    ObjType {
        name,
        kind,
        table,
        key,
        attrs,
    }
}

/// Every object type, in the order `lsdef -a` shows them.
pub static TYPES: &[ObjType] = &[
    t("auditlog", Kind::Plain, "auditlog", "recid", AUDITLOG),
    t(
        "boottarget",
        Kind::Plain,
        "boottarget",
        "bprofile",
        BOOTTARGET,
    ),
    t("eventlog", Kind::Plain, "eventlog", "recid", EVENTLOG),
    t("group", Kind::Group, "nodegroup", "groupname", GROUP),
    t("kit", Kind::Plain, "kit", "kitname", KIT),
    t(
        "kitcomponent",
        Kind::Plain,
        "kitcomponent",
        "kitcompname",
        KITCOMPONENT,
    ),
    t("kitrepo", Kind::Plain, "kitrepo", "kitreponame", KITREPO),
    t("monitoring", Kind::Plain, "monitoring", "name", MONITORING),
    t("network", Kind::Plain, "networks", "netname", NETWORK),
    t("node", Kind::Node, "nodelist", "node", NODE),
    t(
        "notification",
        Kind::Plain,
        "notification",
        "filename",
        NOTIFICATION,
    ),
    t("osimage", Kind::Plain, "osimage", "imagename", OSIMAGE),
    t("policy", Kind::Plain, "policy", "priority", POLICY),
    t("route", Kind::Plain, "routes", "routename", ROUTE),
    t("site", Kind::Site, "site", "key", &[]),
    t("zone", Kind::Plain, "zone", "zonename", ZONE),
];

/// The attributes a node and a group share (rows of node-keyed tables,
/// named after the node or the group), after the type's own: xCAT's
/// `defspec` lists them twice; here they are written once.
macro_rules! with_node_keyed {
    ($($own:expr),* $(,)?) => {
        &[
            $($own,)*
            a("nodetype", "nodetype", "nodetype", None),
            a("postscripts", "postscripts", "postscripts", None),
            a("postbootscripts", "postscripts", "postbootscripts", None),
            a("xcatmaster", "noderes", "xcatmaster", None),
            a("servicenode", "noderes", "servicenode", None),
            a("tftpserver", "noderes", "tftpserver", None),
            a("tftpdir", "noderes", "tftpdir", None),
            a("nfsserver", "noderes", "nfsserver", None),
            a("nimserver", "noderes", "nimserver", None),
            a("nfsdir", "noderes", "nfsdir", None),
            a("monserver", "noderes", "monserver", None),
            a("supportproxydhcp", "noderes", "proxydhcp", None),
            a("syslog", "noderes", "syslog", None),
            a("kernel", "bootparams", "kernel", None),
            a("initrd", "bootparams", "initrd", None),
            a("kcmdline", "bootparams", "kcmdline", None),
            a("addkcmdline", "bootparams", "addkcmdline", None),
            a("primarynic", "noderes", "primarynic", None),
            a("installnic", "noderes", "installnic", None),
            a("netboot", "noderes", "netboot", None),
            a("nameservers", "noderes", "nameservers", None),
            a("routenames", "noderes", "routenames", None),
            a("setupnameserver", "servicenode", "nameserver", None),
            a("setupdhcp", "servicenode", "dhcpserver", None),
            a("setuptftp", "servicenode", "tftpserver", None),
            a("setupnfs", "servicenode", "nfsserver", None),
            a("setupconserver", "servicenode", "conserver", None),
            a("setupipforward", "servicenode", "ipforward", None),
            a("setupproxydhcp", "servicenode", "proxydhcp", None),
            a("setupmonserver", "servicenode", "monserver", None),
            a("setupldap", "servicenode", "ldapserver", None),
            a("setupntp", "servicenode", "ntpserver", None),
            a("setupftp", "servicenode", "ftpserver", None),
            a("setupnim", "servicenode", "nimserver", None),
            a("dhcpinterfaces", "servicenode", "dhcpinterfaces", None),
            a("arch", "nodetype", "arch", None),
            a("supportedarchs", "nodetype", "supportedarchs", None),
            a("os", "nodetype", "os", None),
            a("profile", "nodetype", "profile", None),
            a("provmethod", "nodetype", "provmethod", None),
            a("mgt", "nodehm", "mgt", None),
            a("power", "nodehm", "power", None),
            a("cons", "nodehm", "cons", None),
            a("termserver", "nodehm", "termserver", None),
            a("termport", "nodehm", "termport", None),
            a("conserver", "nodehm", "conserver", None),
            a("getmac", "nodehm", "getmac", None),
            a("cmdmapping", "nodehm", "cmdmapping", None),
            a("serialport", "nodehm", "serialport", None),
            a("serialspeed", "nodehm", "serialspeed", None),
            a("serialflow", "nodehm", "serialflow", None),
            a("consoleondemand", "nodehm", "consoleondemand", None),
            a("consoleenabled", "nodehm", "consoleenabled", None),
            a("serial", "vpd", "serial", None),
            a("mtm", "vpd", "mtm", None),
            a("side", "vpd", "side", None),
            a("interface", "mac", "interface", None),
            a("mac", "mac", "mac", None),
            a("chain", "chain", "chain", None),
            a("ondiscover", "chain", "ondiscover", None),
            a("currstate", "chain", "currstate", None),
            a("currchain", "chain", "currchain", None),
            a("bmc", "ipmi", "bmc", Some(("mgt", "ipmi"))),
            a("bmcport", "ipmi", "bmcport", Some(("mgt", "ipmi"))),
            a("bmcusername", "ipmi", "username", Some(("mgt", "ipmi"))),
            a("bmcpassword", "ipmi", "password", Some(("mgt", "ipmi"))),
            a("bmcvlantag", "ipmi", "taggedvlan", Some(("mgt", "ipmi"))),
            a("bmc", "openbmc", "bmc", Some(("mgt", "openbmc"))),
            a("bmcusername", "openbmc", "username", Some(("mgt", "openbmc"))),
            a("bmcpassword", "openbmc", "password", Some(("mgt", "openbmc"))),
            a("bmcvlantag", "openbmc", "taggedvlan", Some(("mgt", "openbmc"))),
            a("consport", "openbmc", "consport", Some(("mgt", "openbmc"))),
            a("hcp", "ppc", "hcp", None),
            a("id", "ppc", "id", None),
            a("pprofile", "ppc", "pprofile", Some(("mgt", "hmc"))),
            a("pprofile", "ppc", "pprofile", Some(("mgt", "ivm"))),
            a("pprofile", "ppc", "pprofile", Some(("mgt", "fsp"))),
            a("parent", "ppc", "parent", Some(("mgt", "hmc"))),
            a("parent", "ppc", "parent", Some(("mgt", "ivm"))),
            a("parent", "ppc", "parent", Some(("mgt", "bpa"))),
            a("parent", "ppc", "parent", Some(("mgt", "fsp"))),
            a("hwtype", "ppc", "nodetype", Some(("mgt", "fsp"))),
            a("hwtype", "ppc", "nodetype", Some(("mgt", "bpa"))),
            a("hwtype", "ppc", "nodetype", Some(("mgt", "ivm"))),
            a("hwtype", "ppc", "nodetype", Some(("mgt", "hmc"))),
            a("hwtype", "mp", "nodetype", Some(("mgt", "blade"))),
            a("hwtype", "mp", "nodetype", Some(("mgt", "ipmi"))),
            a("hwtype", "mp", "nodetype", Some(("mgt", "openbmc"))),
            a("supernode", "ppc", "supernode", None),
            a("sfp", "ppc", "sfp", None),
            a("mpa", "mp", "mpa", None),
            a("slotid", "mp", "id", Some(("mgt", "fsp"))),
            a("slotid", "mp", "id", Some(("mgt", "ipmi"))),
            // Keyed by the hardware control point's name, which is the
            // node's own for an HMC or IVM node.
            a("username", "ppchcp", "username", Some(("nodetype", "ivm"))),
            a("username", "ppchcp", "username", Some(("nodetype", "hmc"))),
            a("username", "ppchcp", "username", Some(("nodetype", "ppc"))),
            a("password", "ppchcp", "password", Some(("nodetype", "ivm"))),
            a("password", "ppchcp", "password", Some(("nodetype", "hmc"))),
            a("password", "ppchcp", "password", Some(("nodetype", "ppc"))),
            // One row per user of a frame's or CEC's service processor.
            in_row("passwd.HMC", "ppcdirect", "password", ("username", "HMC")),
            in_row("passwd.hscroot", "ppcdirect", "password", ("username", "hscroot")),
            in_row("passwd.admin", "ppcdirect", "password", ("username", "admin")),
            in_row("passwd.general", "ppcdirect", "password", ("username", "general")),
            in_row("passwd.celogin", "ppcdirect", "password", ("username", "celogin")),
            a("switchtype", "switches", "switchtype", Some(("nodetype", "switch"))),
            a("nicips", "nics", "nicips", None),
            a("nichostnamesuffixes", "nics", "nichostnamesuffixes", None),
            a("nichostnameprefixes", "nics", "nichostnameprefixes", None),
            a("nictypes", "nics", "nictypes", None),
            a("niccustomscripts", "nics", "niccustomscripts", None),
            a("nicnetworks", "nics", "nicnetworks", None),
            a("nicaliases", "nics", "nicaliases", None),
            a("nicextraparams", "nics", "nicextraparams", None),
            a("nicdevices", "nics", "nicdevices", None),
            a("nicsadapter", "nics", "nicsadapter", None),
            a("vmmanager", "vm", "mgr", None),
            a("vmhost", "vm", "host", None),
            a("vmstorage", "vm", "storage", None),
            a("vmphyslots", "vm", "physlots", None),
            a("vmothersetting", "vm", "othersettings", None),
            a("vmstoragemodel", "vm", "storagemodel", None),
            a("vmstoragecache", "vm", "storagecache", None),
            a("vmstorageformat", "vm", "storageformat", None),
            a("vmcfgstore", "vm", "cfgstore", None),
            a("vmmemory", "vm", "memory", None),
            a("vmcpus", "vm", "cpus", None),
            a("vmnics", "vm", "nics", None),
            a("vmnicnicmodel", "vm", "nicmodel", None),
            a("vmbootorder", "vm", "bootorder", None),
            a("vmvirtflags", "vm", "virtflags", None),
            a("vmmaster", "vm", "master", None),
            a("vmvncport", "vm", "vncport", None),
            a("vmtextconsole", "vm", "textconsole", None),
            a("vmbeacon", "vm", "beacon", None),
            a("vmcluster", "vm", "cluster", None),
            a("rack", "nodepos", "rack", None),
            a("unit", "nodepos", "u", None),
            a("chassis", "nodepos", "chassis", None),
            a("slot", "nodepos", "slot", None),
            a("room", "nodepos", "room", None),
            a("height", "nodepos", "height", None),
            a("ip", "hosts", "ip", None),
            a("hostnames", "hosts", "hostnames", None),
            a("otherinterfaces", "hosts", "otherinterfaces", None),
            a("prescripts-begin", "prescripts", "begin", None),
            a("prescripts-end", "prescripts", "end", None),
            a("cputype", "hwinv", "cputype", None),
            a("cpucount", "hwinv", "cpucount", None),
            a("memory", "hwinv", "memory", None),
            a("disksize", "hwinv", "disksize", None),
        ]
    };
}

/// `node` objects.
const NODE: &[Attr] = with_node_keyed![
    a("groups", "nodelist", "groups", None),
    a("status", "nodelist", "status", None),
    a("statustime", "nodelist", "statustime", None),
    a("appstatus", "nodelist", "appstatus", None),
    a("appstatustime", "nodelist", "appstatustime", None),
    a("primarysn", "nodelist", "primarysn", None),
    a("hidden", "nodelist", "hidden", None),
    a("updatestatus", "nodelist", "updatestatus", None),
    a("updatestatustime", "nodelist", "updatestatustime", None),
    a("zonename", "nodelist", "zonename", None),
    a("usercomment", "nodelist", "comments", None),
];

/// `group` objects.
const GROUP: &[Attr] = with_node_keyed![
    a("grouptype", "nodegroup", "grouptype", None),
    a("members", "nodegroup", "members", None),
    a("membergroups", "nodegroup", "membergroups", None),
    a("wherevals", "nodegroup", "wherevals", None),
    a("usercomment", "nodegroup", "comments", None),
];

/// `osimage` objects.
const OSIMAGE: &[Attr] = &[
    a("groups", "osimage", "groups", None),
    // Not in xCAT's list (its images keep comments in linuximage), but
    // where this daemon's capimage writes them.
    a("usercomment", "osimage", "comments", None),
    a("imagetype", "osimage", "imagetype", None),
    a("description", "osimage", "description", None),
    a("provmethod", "osimage", "provmethod", None),
    a("osdistroname", "osimage", "osdistroname", None),
    a("osupdatename", "osimage", "osupdatename", None),
    a("cfmdir", "osimage", "cfmdir", None),
    a(
        "rootfstype",
        "osimage",
        "rootfstype",
        Some(("imagetype", "linux")),
    ),
    a(
        "nfsrootopts",
        "osimage",
        "nfsrootopts",
        Some(("imagetype", "linux")),
    ),
    a("profile", "osimage", "profile", None),
    a("osname", "osimage", "osname", None),
    a("osvers", "osimage", "osvers", None),
    a("osarch", "osimage", "osarch", None),
    a("synclists", "osimage", "synclists", None),
    a("postscripts", "osimage", "postscripts", None),
    a("postbootscripts", "osimage", "postbootscripts", None),
    a("serverrole", "osimage", "serverrole", None),
    a("isdeletable", "osimage", "isdeletable", None),
    a("kitcomponents", "osimage", "kitcomponents", None),
    a(
        "template",
        "linuximage",
        "template",
        Some(("imagetype", "linux")),
    ),
    a(
        "boottarget",
        "linuximage",
        "boottarget",
        Some(("imagetype", "linux")),
    ),
    a(
        "addkcmdline",
        "linuximage",
        "addkcmdline",
        Some(("imagetype", "linux")),
    ),
    a(
        "pkglist",
        "linuximage",
        "pkglist",
        Some(("imagetype", "linux")),
    ),
    a(
        "pkgdir",
        "linuximage",
        "pkgdir",
        Some(("imagetype", "linux")),
    ),
    a(
        "otherpkglist",
        "linuximage",
        "otherpkglist",
        Some(("imagetype", "linux")),
    ),
    a(
        "otherpkgdir",
        "linuximage",
        "otherpkgdir",
        Some(("imagetype", "linux")),
    ),
    a(
        "exlist",
        "linuximage",
        "exlist",
        Some(("imagetype", "linux")),
    ),
    a(
        "postinstall",
        "linuximage",
        "postinstall",
        Some(("imagetype", "linux")),
    ),
    a(
        "rootimgdir",
        "linuximage",
        "rootimgdir",
        Some(("imagetype", "linux")),
    ),
    a(
        "kerneldir",
        "linuximage",
        "kerneldir",
        Some(("imagetype", "linux")),
    ),
    a(
        "nodebootif",
        "linuximage",
        "nodebootif",
        Some(("imagetype", "linux")),
    ),
    a(
        "otherifce",
        "linuximage",
        "otherifce",
        Some(("imagetype", "linux")),
    ),
    a(
        "netdrivers",
        "linuximage",
        "netdrivers",
        Some(("imagetype", "linux")),
    ),
    a(
        "kernelver",
        "linuximage",
        "kernelver",
        Some(("imagetype", "linux")),
    ),
    a(
        "krpmver",
        "linuximage",
        "krpmver",
        Some(("imagetype", "linux")),
    ),
    a(
        "permission",
        "linuximage",
        "permission",
        Some(("imagetype", "linux")),
    ),
    a("dump", "linuximage", "dump", Some(("imagetype", "linux"))),
    a(
        "crashkernelsize",
        "linuximage",
        "crashkernelsize",
        Some(("imagetype", "linux")),
    ),
    a(
        "partitionfile",
        "linuximage",
        "partitionfile",
        Some(("imagetype", "linux")),
    ),
    a(
        "driverupdatesrc",
        "linuximage",
        "driverupdatesrc",
        Some(("imagetype", "linux")),
    ),
    a(
        "usercomment",
        "linuximage",
        "comments",
        Some(("imagetype", "linux")),
    ),
    a("environvar", "osimage", "environvar", None),
];

/// `network` objects.
const NETWORK: &[Attr] = &[
    a("net", "networks", "net", None),
    a("mask", "networks", "mask", None),
    a("mgtifname", "networks", "mgtifname", None),
    a("gateway", "networks", "gateway", None),
    a("dhcpserver", "networks", "dhcpserver", None),
    a("tftpserver", "networks", "tftpserver", None),
    a("nameservers", "networks", "nameservers", None),
    a("ntpservers", "networks", "ntpservers", None),
    a("logservers", "networks", "logservers", None),
    a("dynamicrange", "networks", "dynamicrange", None),
    a("nodehostname", "networks", "nodehostname", None),
    a("ddnsdomain", "networks", "ddnsdomain", None),
    a("vlanid", "networks", "vlanid", None),
    a("domain", "networks", "domain", None),
    a("staticrange", "networks", "staticrange", None),
    a(
        "staticrangeincrement",
        "networks",
        "staticrangeincrement",
        None,
    ),
    a("mtu", "networks", "mtu", None),
    a("usercomment", "networks", "comments", None),
];

/// `policy` objects.
const POLICY: &[Attr] = &[
    a("name", "policy", "name", None),
    a("host", "policy", "host", None),
    a("commands", "policy", "commands", None),
    a("noderange", "policy", "noderange", None),
    a("parameters", "policy", "parameters", None),
    a("time", "policy", "time", None),
    a("rule", "policy", "rule", None),
    a("usercomment", "policy", "comments", None),
];

/// `route` objects.
const ROUTE: &[Attr] = &[
    a("net", "routes", "net", None),
    a("mask", "routes", "mask", None),
    a("gateway", "routes", "gateway", None),
    a("ifname", "routes", "ifname", None),
    a("usercomment", "routes", "comments", None),
];

/// `zone` objects.
const ZONE: &[Attr] = &[
    a("sshkeydir", "zone", "sshkeydir", None),
    a("sshbetweennodes", "zone", "sshbetweennodes", None),
    a("defaultzone", "zone", "defaultzone", None),
    a("usercomment", "zone", "comments", None),
];

/// `notification` objects.
const NOTIFICATION: &[Attr] = &[
    a("tables", "notification", "tables", None),
    a("tableops", "notification", "tableops", None),
    a("comments", "notification", "comments", None),
];

/// `monitoring` objects.
const MONITORING: &[Attr] = &[
    a("nodestatmon", "monitoring", "nodestatmon", None),
    a("comments", "monitoring", "comments", None),
];

/// `eventlog` objects.
const EVENTLOG: &[Attr] = &[
    a("eventtime", "eventlog", "eventtime", None),
    a("eventtype", "eventlog", "eventtype", None),
    a("monitor", "eventlog", "monitor", None),
    a("monnode", "eventlog", "monnode", None),
    a("node", "eventlog", "node", None),
    a("application", "eventlog", "application", None),
    a("component", "eventlog", "component", None),
    a("id", "eventlog", "id", None),
    a("severity", "eventlog", "severity", None),
    a("message", "eventlog", "message", None),
    a("rawdata", "eventlog", "rawdata", None),
    a("comments", "eventlog", "comments", None),
];

/// `auditlog` objects.
const AUDITLOG: &[Attr] = &[
    a("audittime", "auditlog", "audittime", None),
    a("userid", "auditlog", "userid", None),
    a("clientname", "auditlog", "clientname", None),
    a("clienttype", "auditlog", "clienttype", None),
    a("command", "auditlog", "command", None),
    a("noderange", "auditlog", "noderange", None),
    a("args", "auditlog", "args", None),
    a("status", "auditlog", "status", None),
    a("comments", "auditlog", "comments", None),
];

/// `boottarget` objects.
const BOOTTARGET: &[Attr] = &[
    a("kernel", "boottarget", "kernel", None),
    a("initrd", "boottarget", "initrd", None),
    a("kcmdline", "boottarget", "kcmdline", None),
    a("comments", "boottarget", "comments", None),
];

/// `kit` objects.
const KIT: &[Attr] = &[
    a("basename", "kit", "basename", None),
    a("description", "kit", "description", None),
    a("version", "kit", "version", None),
    a("release", "kit", "release", None),
    a("ostype", "kit", "ostype", None),
    a("isinternal", "kit", "isinternal", None),
    a("kitdeployparams", "kit", "kitdeployparams", None),
    a("kitdir", "kit", "kitdir", None),
];

/// `kitrepo` objects.
const KITREPO: &[Attr] = &[
    a("kitname", "kitrepo", "kitname", None),
    a("osbasename", "kitrepo", "osbasename", None),
    a("osmajorversion", "kitrepo", "osmajorversion", None),
    a("osminorversion", "kitrepo", "osminorversion", None),
    a("osarch", "kitrepo", "osarch", None),
    a("compat_osbasenames", "kitrepo", "compat_osbasenames", None),
    a("kitrepodir", "kitrepo", "kitrepodir", None),
];

/// `kitcomponent` objects.
const KITCOMPONENT: &[Attr] = &[
    a("description", "kitcomponent", "description", None),
    a("kitname", "kitcomponent", "kitname", None),
    a("kitreponame", "kitcomponent", "kitreponame", None),
    a("basename", "kitcomponent", "basename", None),
    a("version", "kitcomponent", "version", None),
    a("release", "kitcomponent", "release", None),
    a("serverroles", "kitcomponent", "serverroles", None),
    a("kitpkgdeps", "kitcomponent", "kitpkgdeps", None),
    a("prerequisite", "kitcomponent", "prerequisite", None),
    a("driverpacks", "kitcomponent", "driverpacks", None),
    a("kitcompdeps", "kitcomponent", "kitcompdeps", None),
    a("postbootscripts", "kitcomponent", "postbootscripts", None),
    a(
        "genimage_postinstall",
        "kitcomponent",
        "genimage_postinstall",
        None,
    ),
    a("exlist", "kitcomponent", "exlist", None),
];
