//! The files a netbooted image gets on top of its own: DHCP through
//! systemd-networkd on every Ethernet NIC, SSH host keys made at boot
//! (capimage's sysclean removed the node's, so that nodes do not share them),
//! and the `booted` report to xCAT's install monitor (`nodelist.status`).
//!
//! One list, two carriers: packimage's boot add-on unpacks it over the image as
//! a second initramfs, and the stateless initrd copies it from
//! `/rootfs-additions/` over the new root before `switch_root`.

use xcat_image::beneath::Root;
use xcat_jobkit::kernel::is_regular;

/// One entry, by its path relative to the image's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addition {
    File {
        path: String,
        mode: u32,
        text: &'static str,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl Addition {
    pub fn path(&self) -> &str {
        match self {
            Addition::File { path, .. } | Addition::Symlink { path, .. } => path,
        }
    }
}

/// The additions for one image, and what the admin should know about them.
#[derive(Debug, Default, Clone)]
pub struct Additions {
    pub entries: Vec<Addition>,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
}

const NETWORK_FILE: &str = "\
# Written by xcatd: DHCP on every Ethernet interface of a netbooted node.
[Match]
Type=ether

[Network]
DHCP=yes
# The initrd's lease is kept while networkd takes the link over, and a lease
# is never dropped: a statelite node's root or state is on NFS through it.
KeepConfiguration=yes
";

const HOSTKEYS_UNIT: &str = "\
# Written by xcatd: a netbooted image has no SSH host keys (they are removed at
# capture so nodes do not share them); generate this boot's keys before sshd starts.
[Unit]
Description=Generate SSH host keys for a netbooted node
Before=ssh.service sshd.service
ConditionPathExists=/usr/bin/ssh-keygen

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target ssh.service
";

const HOSTKEYS: &str = "etc/systemd/system/xcat-ssh-hostkeys.service";

const BOOTED_UNIT: &str = "\
# Written by xcatd: tell the install monitor this node has booted (nodelist.status).
[Unit]
Description=Report booted to the xCAT install monitor
After=network.target ssh.service sshd.service
ConditionPathExists=/bin/bash

[Service]
Type=oneshot
ExecStart=/usr/lib/xcat/report-status booted
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
";

/// bash for its /dev/tcp (the image may have no nc). The master is `XCAT=`'s
/// host, the port `XCATIPORT=` or xCAT's 3002; `nonodestatus` turns it off.
/// The network may come up after this starts: a minute of tries, then silence
/// (a status report never holds up the boot).
const REPORT_SCRIPT: &str = r#"#!/bin/bash
# Written by xcatd: send "installstatus <status>" to the install monitor.
master= port=3002
for w in $(cat /proc/cmdline); do
    case $w in
    XCAT=*) master=${w#XCAT=}; master=${master%%:*} ;;
    XCATIPORT=*) port=${w#XCATIPORT=} ;;
    nonodestatus) exit 0 ;;
    esac
done
[ -n "$master" ] || exit 0
for _ in $(seq 1 30); do
    # ready, the status line, done; in a subshell, so a refused connection
    # is a failed try and not the end of the script
    if (exec 3<>"/dev/tcp/$master/$port" && read -r -t 10 _ <&3 &&
        echo "installstatus $1" >&3 && read -r -t 10 _ <&3) 2>/dev/null; then
        exit 0
    fi
    sleep 2
done
echo "report-status: the install monitor $master:$port did not answer; nodelist.status keeps its value" >&2
"#;

const BOOTED: &str = "etc/systemd/system/xcat-status-booted.service";
const WANTS: &str = "etc/systemd/system/multi-user.target.wants";

/// What `root` (the image) gets: the files, the links enabling the units, and
/// a warning when the image lacks systemd-networkd (then nothing configures its
/// network), a note when it has no ssh-keygen.
pub fn rootfs_additions(root: &Root) -> Additions {
    let mut a = Additions::default();
    a.entries.push(Addition::File {
        path: "etc/systemd/network/90-xcat-netboot.network".into(),
        mode: 0o644,
        text: NETWORK_FILE,
    });
    a.entries.push(Addition::File {
        path: HOSTKEYS.into(),
        mode: 0o644,
        text: HOSTKEYS_UNIT,
    });
    a.entries.push(Addition::Symlink {
        path: format!("{WANTS}/xcat-ssh-hostkeys.service"),
        target: format!("/{HOSTKEYS}"),
    });
    a.entries.push(Addition::File {
        path: "usr/lib/xcat/report-status".into(),
        mode: 0o755,
        text: REPORT_SCRIPT,
    });
    a.entries.push(Addition::File {
        path: BOOTED.into(),
        mode: 0o644,
        text: BOOTED_UNIT,
    });
    a.entries.push(Addition::Symlink {
        path: format!("{WANTS}/xcat-status-booted.service"),
        target: format!("/{BOOTED}"),
    });
    let networkd = ["usr/lib/systemd/system", "lib/systemd/system"]
        .iter()
        .find(|d| is_regular(root, &format!("{d}/systemd-networkd.service")));
    match networkd {
        Some(d) => a.entries.push(Addition::Symlink {
            path: format!("{WANTS}/systemd-networkd.service"),
            target: format!("/{d}/systemd-networkd.service"),
        }),
        None => a.warnings.push(
            "the image has no systemd-networkd: the DHCP configuration netbooted nodes get will not be used; \
             configure the node's network in the image"
                .into(),
        ),
    }
    if !["usr/bin/ssh-keygen", "bin/ssh-keygen"]
        .iter()
        .any(|p| is_regular(root, p))
    {
        a.notes.push(
            "the image has no ssh-keygen (no SSH server?); no host keys will be generated".into(),
        );
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networkd_is_enabled_where_the_image_has_it() {
        let t = tempfile::tempdir().unwrap();
        let unit = t
            .path()
            .join("usr/lib/systemd/system/systemd-networkd.service");
        std::fs::create_dir_all(unit.parent().unwrap()).unwrap();
        std::fs::write(&unit, "[Unit]\n").unwrap();
        let a = rootfs_additions(&Root::open(t.path()).unwrap());
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
        assert!(a.notes[0].contains("no ssh-keygen"), "{:?}", a.notes);
        assert!(a.entries.contains(&Addition::Symlink {
            path: format!("{WANTS}/systemd-networkd.service"),
            target: "/usr/lib/systemd/system/systemd-networkd.service".into(),
        }));
        let paths: Vec<&str> = a.entries.iter().map(Addition::path).collect();
        assert_eq!(paths.len(), 7, "{paths:?}");
        assert!(paths.contains(&"usr/lib/xcat/report-status"), "{paths:?}");
        std::fs::remove_file(&unit).unwrap();
        let a = rootfs_additions(&Root::open(t.path()).unwrap());
        assert!(
            a.warnings[0].contains("no systemd-networkd"),
            "{:?}",
            a.warnings
        );
        assert_eq!(a.entries.len(), 6);
    }
}
