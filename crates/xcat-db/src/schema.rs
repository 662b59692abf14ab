//! The static table catalogue.
//!
//! Table and column names reach SQL only after being looked up here, so a user
//! can never smuggle an identifier into a statement; values are always bound.

/// One xCAT table: its name, its columns in xCAT's order (mostly keys first,
/// but `networks` starts with `netname` and is keyed by `net, mask`; always
/// `comments` and `disable` last) and the columns that identify a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableDef {
    pub name: &'static str,
    pub columns: &'static [&'static str],
    pub keys: &'static [&'static str],
}

impl TableDef {
    /// True when `col` is one of this table's columns.
    pub fn has_column(&self, col: &str) -> bool {
        self.columns.contains(&col)
    }

    /// The catalogue's own spelling of `col` (a `'static` str usable in SQL).
    pub fn column(&self, col: &str) -> Option<&'static str> {
        self.columns.iter().copied().find(|c| *c == col)
    }

    /// True for tables keyed by `node` (their rows may name a node or a group).
    pub fn is_node_keyed(&self) -> bool {
        self.keys == ["node"]
    }
}

/// Every table this daemon knows, in the order `tabdump` lists them (sorted).
pub static TABLES: &[TableDef] = &[
    TableDef {
        name: "auditlog",
        columns: &[
            "recid",
            "audittime",
            "userid",
            "clientname",
            "clienttype",
            "command",
            "noderange",
            "args",
            "status",
            "comments",
            "disable",
        ],
        keys: &["recid"],
    },
    TableDef {
        name: "bootparams",
        columns: &[
            "node",
            "kernel",
            "initrd",
            "kcmdline",
            "addkcmdline",
            "dhcpstatements",
            "adddhcpstatements",
            "comments",
            "disable",
        ],
        keys: &["node"],
    },
    TableDef {
        name: "boottarget",
        columns: &[
            "bprofile", "kernel", "initrd", "kcmdline", "comments", "disable",
        ],
        keys: &["bprofile"],
    },
    TableDef {
        name: "chain",
        columns: &[
            "node",
            "currstate",
            "currchain",
            "chain",
            "ondiscover",
            "comments",
            "disable",
        ],
        keys: &["node"],
    },
    TableDef {
        name: "eventlog",
        columns: &[
            "recid",
            "eventtime",
            "eventtype",
            "monitor",
            "monnode",
            "node",
            "application",
            "component",
            "id",
            "severity",
            "message",
            "rawdata",
            "comments",
            "disable",
        ],
        keys: &["recid"],
    },
    TableDef {
        name: "firmware",
        columns: &["node", "cfgfile", "comments", "disable"],
        keys: &["node"],
    },
    TableDef {
        name: "hosts",
        columns: &[
            "node",
            "ip",
            "hostnames",
            "otherinterfaces",
            "comments",
            "disable",
        ],
        keys: &["node"],
    },
    TableDef {
        name: "hwinv",
        columns: &[
            "node", "cputype", "cpucount", "memory", "disksize", "comments", "disable",
        ],
        keys: &["node"],
    },
    TableDef {
        name: "ipmi",
        columns: &[
            "node",
            "bmc",
            "bmcport",
            "taggedvlan",
            "bmcid",
            "username",
            "password",
            "comments",
            "disable",
        ],
        keys: &["node"],
    },
    TableDef {
        name: "kit",
        columns: &[
            "kitname",
            "basename",
            "description",
            "version",
            "release",
            "ostype",
            "isinternal",
            "kitdeployparams",
            "kitdir",
            "comments",
            "disable",
        ],
        keys: &["kitname"],
    },
    TableDef {
        name: "kitcomponent",
        columns: &[
            "kitcompname",
            "description",
            "kitname",
            "kitreponame",
            "basename",
            "version",
            "release",
            "serverroles",
            "kitpkgdeps",
            "prerequisite",
            "driverpacks",
            "kitcompdeps",
            "postbootscripts",
            "genimage_postinstall",
            "exlist",
            "comments",
            "disable",
        ],
        keys: &["kitcompname"],
    },
    TableDef {
        name: "kitrepo",
        columns: &[
            "kitreponame",
            "kitname",
            "osbasename",
            "osmajorversion",
            "osminorversion",
            "osarch",
            "compat_osbasenames",
            "kitrepodir",
            "comments",
            "disable",
        ],
        keys: &["kitreponame"],
    },
    TableDef {
        name: "linuximage",
        columns: &[
            "imagename",
            "template",
            "boottarget",
            "addkcmdline",
            "pkglist",
            "pkgdir",
            "otherpkglist",
            "otherpkgdir",
            "exlist",
            "postinstall",
            "rootimgdir",
            "kerneldir",
            "nodebootif",
            "otherifce",
            "netdrivers",
            "kernelver",
            "krpmver",
            "permission",
            "dump",
            "crashkernelsize",
            "partitionfile",
            "driverupdatesrc",
            "comments",
            "disable",
        ],
        keys: &["imagename"],
    },
    TableDef {
        name: "litefile",
        columns: &["image", "file", "options", "comments", "disable"],
        keys: &["image", "file"],
    },
    TableDef {
        name: "litetree",
        columns: &[
            "priority",
            "image",
            "directory",
            "mntopts",
            "comments",
            "disable",
        ],
        keys: &["priority"],
    },
    TableDef {
        name: "mac",
        columns: &["node", "interface", "mac", "comments", "disable"],
        keys: &["node"],
    },
    TableDef {
        name: "monitoring",
        columns: &["name", "nodestatmon", "comments", "disable"],
        keys: &["name"],
    },
    TableDef {
        name: "monsetting",
        columns: &["name", "key", "value", "comments", "disable"],
        keys: &["name", "key"],
    },
    TableDef {
        name: "mp",
        columns: &["node", "mpa", "id", "nodetype", "comments", "disable"],
        keys: &["node"],
    },
    TableDef {
        name: "networks",
        columns: &[
            "netname",
            "net",
            "mask",
            "mgtifname",
            "gateway",
            "dhcpserver",
            "tftpserver",
            "nameservers",
            "ntpservers",
            "logservers",
            "dynamicrange",
            "staticrange",
            "staticrangeincrement",
            "nodehostname",
            "ddnsdomain",
            "vlanid",
            "domain",
            "mtu",
            "comments",
            "disable",
        ],
        keys: &["net", "mask"],
    },
    TableDef {
        name: "nics",
        columns: &[
            "node",
            "nicips",
            "nichostnamesuffixes",
            "nichostnameprefixes",
            "nictypes",
            "niccustomscripts",
            "nicnetworks",
            "nicaliases",
            "nicextraparams",
            "nicdevices",
            "nicsadapter",
            "comments",
            "disable",
        ],
        keys: &["node"],
    },
    TableDef {
        name: "nodegroup",
        columns: &[
            "groupname",
            "grouptype",
            "members",
            "membergroups",
            "wherevals",
            "comments",
            "disable",
        ],
        keys: &["groupname"],
    },
    TableDef {
        name: "nodehm",
        columns: &[
            "node",
            "power",
            "mgt",
            "cons",
            "termserver",
            "termport",
            "conserver",
            "serialport",
            "serialspeed",
            "serialflow",
            "getmac",
            "cmdmapping",
            "consoleondemand",
            "consoleenabled",
            "comments",
            "disable",
        ],
        keys: &["node"],
    },
    TableDef {
        name: "nodelist",
        columns: &[
            "node",
            "groups",
            "status",
            "statustime",
            "appstatus",
            "appstatustime",
            "primarysn",
            "hidden",
            "updatestatus",
            "updatestatustime",
            "zonename",
            "comments",
            "disable",
        ],
        keys: &["node"],
    },
    TableDef {
        name: "nodepos",
        columns: &[
            "node", "rack", "u", "chassis", "slot", "room", "height", "comments", "disable",
        ],
        keys: &["node"],
    },
    TableDef {
        name: "noderes",
        columns: &[
            "node",
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
            "cmdinterface",
            "xcatmaster",
            "current_osimage",
            "next_osimage",
            "nimserver",
            "routenames",
            "nameservers",
            "proxydhcp",
            "syslog",
            "comments",
            "disable",
        ],
        keys: &["node"],
    },
    TableDef {
        name: "nodetype",
        columns: &[
            "node",
            "os",
            "arch",
            "profile",
            "provmethod",
            "supportedarchs",
            "nodetype",
            "comments",
            "disable",
        ],
        keys: &["node"],
    },
    TableDef {
        name: "notification",
        columns: &["filename", "tables", "tableops", "comments", "disable"],
        keys: &["filename"],
    },
    TableDef {
        name: "openbmc",
        columns: &[
            "node",
            "bmc",
            "consport",
            "taggedvlan",
            "username",
            "password",
            "comments",
            "disable",
        ],
        keys: &["node"],
    },
    TableDef {
        name: "osimage",
        columns: &[
            "imagename",
            "groups",
            "profile",
            "imagetype",
            "description",
            "provmethod",
            "rootfstype",
            "nfsrootopts",
            "osdistroname",
            "osupdatename",
            "cfmdir",
            "osname",
            "osvers",
            "osarch",
            "synclists",
            "postscripts",
            "postbootscripts",
            "serverrole",
            "isdeletable",
            "kitcomponents",
            "environvar",
            "comments",
            "disable",
        ],
        keys: &["imagename"],
    },
    TableDef {
        name: "passwd",
        columns: &[
            "key",
            "username",
            "password",
            "cryptmethod",
            "authdomain",
            "comments",
            "disable",
        ],
        keys: &["key", "username"],
    },
    TableDef {
        name: "policy",
        columns: &[
            "priority",
            "name",
            "host",
            "commands",
            "noderange",
            "parameters",
            "time",
            "rule",
            "comments",
            "disable",
        ],
        keys: &["priority"],
    },
    TableDef {
        name: "postscripts",
        columns: &[
            "node",
            "postscripts",
            "postbootscripts",
            "comments",
            "disable",
        ],
        keys: &["node"],
    },
    TableDef {
        name: "ppc",
        columns: &[
            "node",
            "hcp",
            "id",
            "pprofile",
            "parent",
            "nodetype",
            "supernode",
            "sfp",
            "comments",
            "disable",
        ],
        keys: &["node"],
    },
    TableDef {
        name: "ppcdirect",
        columns: &["hcp", "username", "password", "comments", "disable"],
        keys: &["hcp", "username"],
    },
    TableDef {
        name: "ppchcp",
        columns: &["hcp", "username", "password", "comments", "disable"],
        keys: &["hcp"],
    },
    TableDef {
        name: "prescripts",
        columns: &["node", "begin", "end", "comments", "disable"],
        keys: &["node"],
    },
    TableDef {
        name: "routes",
        columns: &[
            "routename",
            "net",
            "mask",
            "gateway",
            "ifname",
            "comments",
            "disable",
        ],
        keys: &["routename"],
    },
    TableDef {
        name: "servicenode",
        columns: &[
            "node",
            "nameserver",
            "dhcpserver",
            "tftpserver",
            "nfsserver",
            "conserver",
            "monserver",
            "ldapserver",
            "ntpserver",
            "ftpserver",
            "nimserver",
            "ipforward",
            "dhcpinterfaces",
            "proxydhcp",
            "comments",
            "disable",
        ],
        keys: &["node"],
    },
    TableDef {
        name: "site",
        columns: &["key", "value", "comments", "disable"],
        keys: &["key"],
    },
    TableDef {
        name: "statelite",
        columns: &[
            "node", "image", "statemnt", "mntopts", "comments", "disable",
        ],
        keys: &["node"],
    },
    TableDef {
        name: "switches",
        columns: &[
            "switch",
            "snmpversion",
            "username",
            "password",
            "privacy",
            "auth",
            "linkports",
            "sshusername",
            "sshpassword",
            "protocol",
            "switchtype",
            "comments",
            "disable",
        ],
        keys: &["switch"],
    },
    TableDef {
        name: "vm",
        columns: &[
            "node",
            "mgr",
            "host",
            "migrationdest",
            "storage",
            "storagemodel",
            "storagecache",
            "storageformat",
            "cfgstore",
            "memory",
            "cpus",
            "nics",
            "nicmodel",
            "bootorder",
            "clockoffset",
            "virtflags",
            "master",
            "vncport",
            "textconsole",
            "powerstate",
            "beacon",
            "datacenter",
            "cluster",
            "guestostype",
            "othersettings",
            "physlots",
            "vidmodel",
            "vidproto",
            "vidpassword",
            "comments",
            "disable",
        ],
        keys: &["node"],
    },
    TableDef {
        name: "vpd",
        columns: &[
            "node", "serial", "mtm", "side", "asset", "uuid", "comments", "disable",
        ],
        keys: &["node"],
    },
    TableDef {
        name: "zone",
        columns: &[
            "zonename",
            "sshkeydir",
            "sshbetweennodes",
            "defaultzone",
            "comments",
            "disable",
        ],
        keys: &["zonename"],
    },
];

/// The hidden column that records insertion order (never shown in dumps).
pub const ROWID: &str = "xcat_rowid";

/// Look a table up by name.
pub fn table(name: &str) -> Option<&'static TableDef> {
    TABLES.iter().find(|t| t.name == name)
}

/// Quote an identifier taken from the catalogue (names there are plain
/// lower-case words; quoting keeps words like `groups` or `key` from ever
/// clashing with SQL keywords).
pub(crate) fn q(ident: &str) -> String {
    debug_assert!(ident
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()));
    format!("\"{ident}\"")
}

/// Which SQL dialect a statement is for: only DDL and transaction start differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// `CREATE TABLE` for one catalogue table.
pub(crate) fn create_table_sql(t: &TableDef, backend: Backend) -> String {
    let rowid = match backend {
        Backend::Sqlite => format!("{} INTEGER PRIMARY KEY AUTOINCREMENT", q(ROWID)),
        Backend::Postgres => format!("{} BIGSERIAL PRIMARY KEY", q(ROWID)),
    };
    let mut cols = vec![rowid];
    for c in t.columns {
        cols.push(format!("{} TEXT", q(c)));
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        q(t.name),
        cols.join(", ")
    )
}

/// A column added to an existing table (migration 5).
pub(crate) fn add_column_sql(t: &TableDef, column: &str) -> String {
    format!("ALTER TABLE {} ADD COLUMN {} TEXT", q(t.name), q(column))
}

/// The unique index over a table's key columns.
pub(crate) fn create_key_index_sql(t: &TableDef) -> String {
    let keys: Vec<String> = t.keys.iter().map(|k| q(k)).collect();
    format!(
        "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})",
        q(&format!("{}_keys", t.name)),
        q(t.name),
        keys.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_ends_with_comments_and_disable_and_has_its_keys() {
        for t in TABLES {
            let n = t.columns.len();
            assert_eq!(&t.columns[n - 2..], &["comments", "disable"], "{}", t.name);
            assert!(t.keys.iter().all(|k| t.has_column(k)), "{}", t.name);
        }
    }

    #[test]
    fn catalogue_is_sorted_and_lookup_works() {
        let names: Vec<_> = TABLES.iter().map(|t| t.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(table("nodelist").unwrap().is_node_keyed());
        assert!(table("nosuch").is_none());
        assert!(table("site").unwrap().has_column("value"));
        assert!(!table("site").unwrap().has_column("value;drop"));
    }
}
