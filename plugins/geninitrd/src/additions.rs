//! The files a netbooted image gets on top of its own: DHCP through
//! systemd-networkd on every Ethernet NIC, and SSH host keys made at boot
//! (capimage's sysclean removed the node's, so that nodes do not share them).
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
        assert_eq!(paths.len(), 4, "{paths:?}");
        std::fs::remove_file(&unit).unwrap();
        let a = rootfs_additions(&Root::open(t.path()).unwrap());
        assert!(
            a.warnings[0].contains("no systemd-networkd"),
            "{:?}",
            a.warnings
        );
        assert_eq!(a.entries.len(), 3);
    }
}
