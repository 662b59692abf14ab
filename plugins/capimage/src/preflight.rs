//! Preflight: one ssh round trip that tells what the node is and what to capture.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::CaptureError;

/// The shell script run on the node (POSIX sh). Every line of its output is
/// tagged so the parser never confuses a value with a marker.
pub const SCRIPT: &str = r#"
echo "@@kernel $(uname -r)"
echo "@@arch $(uname -m)"
echo "@@hostname $(cat /proc/sys/kernel/hostname 2>/dev/null)"
for t in tar zstd gzip bash find btrfs unshare lvcreate; do command -v "$t" >/dev/null 2>&1 && echo "@@tool $t"; done
if command -v tar >/dev/null 2>&1; then
  echo "@@tarversion $(tar --version 2>/dev/null | head -n 1)"
  h=$(tar --help 2>/dev/null)
  case "$h" in *--xattrs*) echo "@@tool tar-xattrs";; esac
  case "$h" in *--acls*) echo "@@tool tar-acls";; esac
fi
[ -e "/boot/vmlinuz-$(uname -r)" ] && echo "@@tool kernel-image"
echo "@@mounts"
cat /proc/self/mounts
if command -v lvs >/dev/null 2>&1; then
  echo "@@lvm"
  lvs --noheadings --nosuffix --units b --separator '|' -o lv_dm_path,lv_path,vg_name,lv_name,lv_attr,lv_size,vg_free 2>/dev/null
fi
echo "@@df"
df -P -k -l 2>/dev/null
echo "@@end"
"#;

/// Filesystem types backed by a local disk: these are captured.
const DISK_FS: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "jfs", "reiserfs", "vfat", "f2fs", "zfs", "exfat",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub point: String,
    pub fstype: String,
}

#[derive(Debug, Clone, Default)]
pub struct Preflight {
    pub kernel: String,
    pub arch: String,
    pub hostname: String,
    pub tar_version: String,
    pub tools: BTreeSet<String>,
    /// The mount table, last mount of a point winning (as the kernel shows it).
    pub mounts: Vec<Mount>,
    /// Used kibibytes per mount point, from `df`.
    pub used_kib: BTreeMap<String, u64>,
    /// The node's LVM logical volumes (when it has lvm2).
    pub lvs: Vec<LogicalVolume>,
}

/// One line of `lvs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalVolume {
    /// `/dev/mapper/VG-LV` and `/dev/VG/LV`: how a mount may name it.
    pub paths: [String; 2],
    pub vg: String,
    pub lv: String,
    /// A thin volume (`lv_attr` starting with `V`): its snapshot needs no
    /// free extents.
    pub thin: bool,
    pub size: u64,
    /// Free bytes in its volume group.
    pub vg_free: u64,
}

impl LogicalVolume {
    fn parse(line: &str) -> Option<LogicalVolume> {
        let f: Vec<&str> = line.trim().split('|').map(str::trim).collect();
        let [dm, path, vg, lv, attr, size, free] = f[..] else {
            return None;
        };
        Some(LogicalVolume {
            paths: [dm.to_string(), path.to_string()],
            vg: vg.to_string(),
            lv: lv.to_string(),
            thin: attr.starts_with('V'),
            size: size.parse().ok()?,
            vg_free: free.parse().ok()?,
        })
    }
}

/// Undo the octal escapes of /proc/self/mounts (`\040` for space, ...).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &s[i + 1..(i + 4).min(s.len())];
            if oct.len() == 3 && oct.bytes().all(|c| (b'0'..=b'7').contains(&c)) {
                if let Ok(v) = u8::from_str_radix(oct, 8) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse(text: &str) -> Preflight {
    let mut p = Preflight::default();
    let mut section = "";
    let mut by_point: Vec<Mount> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("@@") {
            let (key, val) = rest.split_once(' ').unwrap_or((rest, ""));
            match key {
                "kernel" => p.kernel = val.trim().to_string(),
                "arch" => p.arch = val.trim().to_string(),
                "hostname" => p.hostname = val.trim().to_string(),
                "tarversion" => p.tar_version = val.trim().to_string(),
                "tool" => {
                    p.tools.insert(val.trim().to_string());
                }
                "mounts" | "lvm" | "df" | "end" => section = key,
                _ => {}
            }
            continue;
        }
        match section {
            "mounts" => {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() >= 3 {
                    let m = Mount {
                        device: unescape_mount(f[0]),
                        point: unescape_mount(f[1]),
                        fstype: f[2].to_string(),
                    };
                    by_point.retain(|x| x.point != m.point);
                    by_point.push(m);
                }
            }
            "lvm" => p.lvs.extend(LogicalVolume::parse(line)),
            "df" => {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() >= 6 {
                    if let Ok(used) = f[2].parse::<u64>() {
                        p.used_kib.insert(f[5..].join(" "), used);
                    }
                }
            }
            _ => {}
        }
    }
    p.mounts = by_point;
    p
}

impl Preflight {
    pub fn root_fstype(&self) -> Option<&str> {
        self.mounts
            .iter()
            .find(|m| m.point == "/")
            .map(|m| m.fstype.as_str())
    }

    /// Refuse nodes whose root is not on a local disk.
    pub fn check_diskful(&self, node: &str) -> Result<(), CaptureError> {
        let node = node.to_string();
        match self.root_fstype() {
            Some(t) if DISK_FS.contains(&t) => Ok(()),
            Some(t) => Err(CaptureError::NotDiskful {
                node,
                fstype: t.to_string(),
            }),
            None => Err(CaptureError::UnknownRoot { node }),
        }
    }

    /// Mount points captured (disk-backed), `/` first.
    pub fn captured(&self) -> Vec<&Mount> {
        let mut v: Vec<&Mount> = self
            .mounts
            .iter()
            .filter(|m| DISK_FS.contains(&m.fstype.as_str()))
            .collect();
        v.sort_by(|a, b| a.point.cmp(&b.point));
        v
    }

    /// Mount points skipped (pseudo, network, tmpfs, ...): their contents are
    /// excluded and the directory kept empty.
    pub fn skipped(&self) -> Vec<&Mount> {
        self.mounts
            .iter()
            .filter(|m| m.point != "/" && !DISK_FS.contains(&m.fstype.as_str()))
            .collect()
    }

    /// Bytes in use on the captured filesystems.
    pub fn used_bytes(&self) -> u64 {
        self.captured()
            .iter()
            .filter_map(|m| self.used_kib.get(&m.point))
            .sum::<u64>()
            * 1024
    }

    pub fn has(&self, tool: &str) -> bool {
        self.tools.contains(tool)
    }

    /// The logical volume mounted at `m`, if any.
    pub fn lv_of(&self, m: &Mount) -> Option<&LogicalVolume> {
        self.lvs.iter().find(|lv| lv.paths.contains(&m.device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str =
        "@@kernel 6.1.0-18-amd64\n@@arch x86_64\n@@hostname node1\n@@tool tar\n@@tool zstd\n\
@@tool tar-xattrs\n@@tarversion tar (GNU tar) 1.34\n@@mounts\n/dev/loop3 / ext4 rw,relatime 0 0\n\
proc /proc proc rw 0 0\ntmpfs /mnt/other\\040fs tmpfs rw 0 0\n/dev/sda1 /boot ext4 rw 0 0\n\
nfs:/home /home nfs4 rw 0 0\n@@df\nFilesystem 1024-blocks Used Available Capacity Mounted on\n\
/dev/loop3 1000 600 400 60% /\n/dev/sda1 100 50 50 50% /boot\n@@end\n";

    #[test]
    fn parses_and_classifies_mounts() {
        let p = parse(SAMPLE);
        assert_eq!(p.kernel, "6.1.0-18-amd64");
        assert!(p.has("zstd") && p.has("tar-xattrs") && !p.has("gzip"));
        assert!(p.check_diskful("node1").is_ok());
        let cap: Vec<&str> = p.captured().iter().map(|m| m.point.as_str()).collect();
        assert_eq!(cap, vec!["/", "/boot"]);
        let skip: Vec<&str> = p.skipped().iter().map(|m| m.point.as_str()).collect();
        assert_eq!(skip, vec!["/proc", "/mnt/other fs", "/home"]);
        assert_eq!(p.used_bytes(), 650 * 1024);
    }

    #[test]
    fn names_the_logical_volumes_behind_mounts() {
        let text = "@@tool lvcreate\n@@mounts\n/dev/mapper/vg0-root / ext4 rw 0 0\n\
/dev/vg0/srv /srv xfs rw 0 0\n/dev/sda1 /boot ext4 rw 0 0\n@@lvm\n\
  /dev/mapper/vg0-root|/dev/vg0/root|vg0|root|-wi-ao----|4294967296|1073741824\n\
  /dev/mapper/vg0-srv|/dev/vg0/srv|vg0|srv|Vwi-aotz--|1073741824|1073741824\n\
  garbage\n@@df\n@@end\n";
        let p = parse(text);
        assert_eq!(p.lvs.len(), 2);
        let by_point = |pt: &str| {
            let m = p.mounts.iter().find(|m| m.point == pt).unwrap();
            p.lv_of(m).map(|lv| (lv.lv.clone(), lv.thin))
        };
        assert_eq!(by_point("/"), Some(("root".into(), false)));
        assert_eq!(by_point("/srv"), Some(("srv".into(), true)));
        assert_eq!(by_point("/boot"), None);
        assert_eq!(p.lvs[0].size, 4 << 30);
        assert_eq!(p.lvs[0].vg_free, 1 << 30);
    }

    #[test]
    fn refuses_diskless_roots() {
        let p = parse("@@mounts\nrootfs / rootfs rw 0 0\ntmpfs / tmpfs rw 0 0\n@@end\n");
        assert_eq!(
            p.check_diskful("node1").unwrap_err().to_string(),
            "node1 is not a diskful node: / is tmpfs; capimage captures nodes installed on a local disk"
        );
    }
}
