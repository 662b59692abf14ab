//! The boot interface, for `xcat-netinit nic`.
//!
//! In order: the interface whose MAC is `BOOTIF=` (what the node's firmware
//! booted from), the one `netdev=` names, else the first interface (by name)
//! that is not a loopback and has carrier. Drivers and links come up while
//! the initrd runs, so each is waited for (30 s by default) before giving up.

use crate::cmdline::Cmdline;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long and how often `nic` looks.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    pub total: Duration,
    pub poll: Duration,
}

impl Default for Wait {
    fn default() -> Self {
        Wait {
            total: Duration::from_secs(30),
            poll: Duration::from_millis(250),
        }
    }
}

/// Why no interface was chosen: a sentence for the console line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NicError {
    #[error("no interface has the MAC address {0} that BOOTIF= gives")]
    NoBootif(String),
    #[error("there is no interface {0}, which netdev= names")]
    NoNetdev(String),
    #[error("no interface other than the loopback has carrier")]
    NoCarrier,
}

/// The boot interface's name; `sysfs` is `/sys/class/net`.
pub fn boot_interface(cmd: &Cmdline, sysfs: &Path, wait: Wait) -> Result<String, NicError> {
    let deadline = Instant::now() + wait.total;
    loop {
        let found = match (&cmd.bootif, &cmd.netdev) {
            (Some(mac), _) => by_mac(sysfs, &mac.to_string()),
            (None, Some(name)) => sysfs.join(name).exists().then(|| name.clone()),
            (None, None) => with_carrier(sysfs),
        };
        if let Some(name) = found {
            return Ok(name);
        }
        if Instant::now() >= deadline {
            return Err(match (&cmd.bootif, &cmd.netdev) {
                (Some(mac), _) => NicError::NoBootif(mac.to_string()),
                (None, Some(name)) => NicError::NoNetdev(name.clone()),
                (None, None) => NicError::NoCarrier,
            });
        }
        std::thread::sleep(wait.poll);
    }
}

/// Interface names, sorted (the kernel lists them in no particular order).
fn interfaces(sysfs: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(sysfs)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

fn attr(sysfs: &Path, name: &str, what: &str) -> Option<String> {
    let v = std::fs::read_to_string(sysfs.join(name).join(what)).ok()?;
    Some(v.trim().to_ascii_lowercase())
}

fn by_mac(sysfs: &Path, mac: &str) -> Option<String> {
    interfaces(sysfs)
        .into_iter()
        .find(|n| attr(sysfs, n, "address").as_deref() == Some(mac))
}

/// `type` 772 is ARPHRD_LOOPBACK.
fn with_carrier(sysfs: &Path) -> Option<String> {
    interfaces(sysfs).into_iter().find(|n| {
        n != "lo"
            && attr(sysfs, n, "type").as_deref() != Some("772")
            && attr(sysfs, n, "carrier").as_deref() == Some("1")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn fake(dir: &Path, name: &str, mac: &str, carrier: &str, kind: &str) {
        let d = dir.join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("address"), format!("{mac}\n")).unwrap();
        fs::write(d.join("carrier"), format!("{carrier}\n")).unwrap();
        fs::write(d.join("type"), format!("{kind}\n")).unwrap();
    }

    fn quick() -> Wait {
        Wait {
            total: Duration::from_millis(50),
            poll: Duration::from_millis(10),
        }
    }

    #[test]
    fn chosen_by_bootif_netdev_or_carrier() {
        let t = tempfile::tempdir().unwrap();
        let s = t.path();
        fake(s, "lo", "00:00:00:00:00:00", "1", "772");
        fake(s, "eno1", "52:54:00:00:00:01", "0", "1");
        fake(s, "eno2", "52:54:00:00:00:02", "1", "1");
        fake(s, "enp9s0", "52:54:00:00:00:03", "1", "1");
        let cmd = |line: &str| Cmdline::parse(line).unwrap();
        let pick = |line: &str| boot_interface(&cmd(line), s, quick());
        assert_eq!(pick("BOOTIF=01-52-54-00-00-00-01").unwrap(), "eno1");
        assert_eq!(
            pick("BOOTIF=52:54:00:00:00:03 netdev=eno2").unwrap(),
            "enp9s0"
        );
        assert_eq!(pick("netdev=eno1").unwrap(), "eno1");
        assert_eq!(pick("quiet").unwrap(), "eno2");
        assert_eq!(
            pick("BOOTIF=52:54:00:00:00:09").unwrap_err(),
            NicError::NoBootif("52:54:00:00:00:09".into())
        );
        assert!(matches!(pick("netdev=eth7"), Err(NicError::NoNetdev(_))));
    }

    #[test]
    fn waits_for_carrier() {
        let t = tempfile::tempdir().unwrap();
        let s = t.path().to_path_buf();
        fake(&s, "eth0", "52:54:00:00:00:01", "0", "1");
        assert_eq!(
            boot_interface(&Cmdline::default(), &s, quick()).unwrap_err(),
            NicError::NoCarrier
        );
        let s2 = s.clone();
        let up = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            fs::write(s2.join("eth0/carrier"), "1\n").unwrap();
        });
        let wait = Wait {
            total: Duration::from_secs(5),
            poll: Duration::from_millis(10),
        };
        assert_eq!(
            boot_interface(&Cmdline::default(), &s, wait).unwrap(),
            "eth0"
        );
        up.join().unwrap();
    }
}
