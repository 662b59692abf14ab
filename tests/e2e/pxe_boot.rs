//! The whole network boot, as an admin sets it up: a packed image,
//! `makedhcp -n`, `nodeset <nodes> osimage=<image>` (which runs makedhcp for
//! the nodes), the daemon supervising dnsmasq on the PXE test bed's bridge
//! and serving its boot service there. Diskless qemu guests (TCG) boot by
//! PXE: BIOS through iPXE's ROM, UEFI through OVMF and iPXE's EFI ROM. Each
//! gets its lease from dnsmasq, its per-node script, the kernel and the
//! initrd from the boot service, and its initrd (the probe, until our own
//! stateless initrd exists) downloads `imgurl=` from the boot service too:
//! the test checks the download is the packed image, and the access log
//! shows the four requests in boot order.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use xcatd_tests::{wait_for_console, Daemon, DaemonOptions, PxeBed, PxeGuest, PXE_SERVER};

use crate::probe_initrd::{self, CMDLINE_MARK, FAILED_MARK, IMAGE_MARK};
use xcatd_tests::netboot::{debian_kernel, define_network_and_nodes, sh, Supervising};

const HTTP_PORT: u16 = 8080;
const IMAGE: &str = "pxeimg";
/// PXE to the probe's report under TCG: 20 to 70 s measured; generous.
const BOOT_WAIT: Duration = Duration::from_secs(240);

/// The guests: name, MAC, IP, firmware, the per-node script iPXE asks for.
const GUESTS: &[(&str, &str, &str, &str, &str)] = &[
    ("pxe1", "52:54:00:60:00:30", "10.99.60.30", "bios", "pxe1"),
    (
        "pxe2",
        "52:54:00:60:00:31",
        "10.99.60.31",
        "uefi",
        "pxe2.uefi",
    ),
];

/// A daemon serving DHCP (dnsmasq) and the boot service on the bed's bridge
/// (stopped with SIGTERM on every way out, so its dnsmasq stops too).
fn daemon() -> Supervising {
    let extra = format!(
        "tftp_dir = \"tftpboot\"\n\
         [dhcp]\ninterfaces = [\"xpxebr0\"]\n\
         [http]\nlisten = \"{PXE_SERVER}:{HTTP_PORT}\"\naccess_log = \"access.log\"\n"
    );
    let d = Daemon::start_with(DaemonOptions {
        extra_config: extra,
        ..Default::default()
    });
    // dnsmasq drops root: it must reach the TFTP root inside the test directory
    xcatd_tests::host("chmod", &["0755", d.root().to_str().unwrap()]);
    Supervising(d)
}

/// A small image tree with the Debian kernel, packed as cpio.gz, registered
/// as `IMAGE`, with the probe as its stateless initrd. Returns its directory.
fn packed_image(d: &Daemon, kernel_tree: &Path, kver: &str) -> PathBuf {
    let dir = d.install_dir().join("netboot/debian12/x86_64/compute");
    let r = dir.join("rootimg");
    sh(&format!(
        "mkdir -p '{r}/boot' '{r}/etc' '{r}/usr/sbin' \
         && cp '{k}/boot/vmlinuz-{kver}' '{r}/boot/' \
         && echo pxe > '{r}/etc/hostname' && seq 1 20000 > '{r}/etc/numbers' \
         && printf '#!/bin/sh\\n' > '{r}/usr/sbin/init' && chmod 755 '{r}/usr/sbin/init'",
        r = r.display(),
        k = kernel_tree.display()
    ));
    let dirs = dir.display().to_string();
    d.ok(&[
        "chtab",
        &format!("imagename={IMAGE}"),
        "osimage.provmethod=netboot",
        "osimage.osvers=debian12",
        "osimage.osarch=x86_64",
        "osimage.profile=compute",
    ]);
    d.ok(&[
        "chtab",
        &format!("imagename={IMAGE}"),
        &format!("linuximage.rootimgdir={dirs}"),
        &format!("linuximage.kernelver={kver}"),
    ]);
    d.ok(&["packimage", "-m", "cpio", "-c", "gzip", IMAGE]);
    probe_initrd::build(kernel_tree, kver, &dir.join("initrd-stateless.gz"));
    dir
}

fn sha256_of(p: &Path) -> String {
    sh(&format!("sha256sum '{}' | cut -d' ' -f1", p.display()))
        .trim()
        .to_string()
}

/// The paths the access log shows `ip` fetching, in order.
fn fetched_by(log: &str, ip: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            let peer = l.split_whitespace().next().unwrap_or_default();
            peer == ip || peer.starts_with(&format!("{ip}:"))
        })
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| {
                    w.starts_with("/install/") || w.starts_with("/tftpboot/") || w.starts_with("//")
                })
                .map(str::to_string)
        })
        .collect()
}

/// What went wrong with one guest's boot, if anything: the probe's report
/// on its console, and what the access log shows it fetched.
fn check_guest(
    d: &Daemon,
    (node, _, ip, firmware, script): &(&str, &str, &str, &str, &str),
    console: &Path,
    started: Instant,
    want_sha: &str,
) -> Option<String> {
    let left = BOOT_WAIT.saturating_sub(started.elapsed());
    let (_, text) = wait_for_console(console, &[IMAGE_MARK, FAILED_MARK], left);
    let access = std::fs::read_to_string(d.root().join("access.log")).unwrap_or_default();
    let fetched = fetched_by(&access, ip);
    eprintln!(
        "{node} ({firmware}) after {:.1}s fetched {fetched:?}",
        started.elapsed().as_secs_f64()
    );
    let marked = |mark: &str| {
        text.lines()
            .find_map(|l| l.split(mark).nth(1))
            .map(|s| s.trim().to_string())
    };
    let cmdline = marked(CMDLINE_MARK).unwrap_or_default();
    let got_sha = marked(IMAGE_MARK);
    let want_fetched = [
        format!("/tftpboot/xcat/xnba/nodes/{script}"),
        format!("/tftpboot/xcat/osimage/{IMAGE}/kernel"),
        format!("/tftpboot/xcat/osimage/{IMAGE}/initrd-stateless.gz"),
        "//install/netboot/debian12/x86_64/compute/rootimg.cpio.gz".to_string(),
    ];
    let problems: Vec<String> = [
        (got_sha.as_deref() != Some(want_sha))
            .then(|| format!("image sha256 {got_sha:?}, want {want_sha}")),
        (!cmdline.contains(&format!("NODE={node}")) || !cmdline.contains("BOOTIF=01-"))
            .then(|| format!("kernel command line: {cmdline:?}")),
        (fetched != want_fetched).then(|| format!("fetched {fetched:?}, want {want_fetched:?}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let tail: Vec<&str> = text.lines().rev().take(40).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    (!problems.is_empty()).then(|| {
        format!(
            "{node} ({firmware}): {}\nconsole:\n{}",
            problems.join("; "),
            tail.join("\n")
        )
    })
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn diskless_guests_pxe_boot_bios_and_uefi_from_nodeset_makedhcp_and_the_boot_service() {
    let (kernel_tree, kver) = debian_kernel();
    let bed = PxeBed::up();
    let d = daemon();
    let dir = packed_image(&d, &kernel_tree, &kver);
    define_network_and_nodes(&d, "pxeboot", GUESTS.iter().map(|g| (g.0, g.1, g.2)));
    d.ok(&["makedhcp", "-n"]);
    let out = d.ok(&["nodeset", "pxeboot", &format!("osimage={IMAGE}")]);
    for (node, ..) in GUESTS {
        assert!(
            out.contains(&format!("{node}: netboot debian12-x86_64-compute")),
            "{out}"
        );
    }
    let work = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let guests: Vec<(PxeGuest, PathBuf)> = GUESTS
        .iter()
        .enumerate()
        .map(|(i, (_, mac, _, firmware, _))| {
            let console = work.path().join(format!("console-{i}.log"));
            (bed.guest(i as u8 + 3, mac, firmware, &console), console)
        })
        .collect();
    let want_sha = sha256_of(&dir.join("rootimg.cpio.gz"));
    let failures: Vec<String> = GUESTS
        .iter()
        .zip(&guests)
        .filter_map(|(g, (_, console))| check_guest(&d, g, console, started, &want_sha))
        .collect();
    drop(guests);
    assert!(
        failures.is_empty(),
        "{}\ndaemon log:\n{}",
        failures.join("\n\n"),
        d.log()
    );
}
