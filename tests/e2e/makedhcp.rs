//! makedhcp through the real daemon, with the dnsmasq it supervises on the
//! PXE test bed's bridge, and real boot firmware in qemu guests: SeaBIOS
//! with iPXE's ROM, and OVMF's own PXE client.

use std::path::Path;
use std::time::{Duration, Instant};

use xcatd_tests::netboot::{alive, Supervising};
use xcatd_tests::{Daemon, DaemonOptions, HttpRecorder, PxeBed, PXE_SERVER};

const BOOT_WAIT: Duration = Duration::from_secs(120);
const HTTP_PORT: u16 = 8080;

const N1_MAC: &str = "52:54:00:60:00:10";
const N2_MAC: &str = "52:54:00:60:00:11";
const N3_MAC: &str = "52:54:00:60:00:12";

/// A daemon that supervises dnsmasq on the bed's bridge, with the bed's
/// network and three nodes: n1 (BIOS), n2 (UEFI), n3 (state boot).
fn daemon() -> Supervising {
    let d = Daemon::start_with(DaemonOptions {
        extra_config:
            "tftp_dir = \"tftpboot\"\n[dhcp]\ninterfaces = [\"xpxebr0\"]\nlog_dhcp = true\n".into(),
        ..Default::default()
    });
    // dnsmasq drops root: it must be able to reach its files (the test
    // directory is 0700 by default, as a private state directory may be).
    xcatd_tests::host("chmod", &["0755", d.root().to_str().unwrap()]);
    d.ok(&[
        "chtab",
        "net=10.99.60.0,mask=255.255.255.0",
        "networks.netname=pxebed",
        "networks.gateway=<xcatmaster>",
        "networks.mgtifname=xpxebr0",
    ]);
    d.ok(&["chtab", "key=httpport", &format!("site.value={HTTP_PORT}")]);
    for (n, mac, ip) in [
        ("n1", N1_MAC, "10.99.60.10"),
        ("n2", N2_MAC, "10.99.60.11"),
        ("n3", N3_MAC, "10.99.60.12"),
    ] {
        d.ok(&["chtab", &format!("node={n}"), "nodelist.groups=pxe,all"]);
        d.ok(&["chtab", &format!("node={n}"), &format!("mac.mac={mac}")]);
        d.ok(&["chtab", &format!("node={n}"), &format!("hosts.ip={ip}")]);
    }
    d.ok(&["chtab", "node=n3", "chain.currstate=boot"]);
    Supervising(d)
}

/// The dnsmasq pid the supervisor recorded.
fn dnsmasq_pid(d: &Daemon) -> u32 {
    let p = d.root().join("state/dhcp/dnsmasq.pid");
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .parse()
        .expect("pid")
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// dnsmasq's lines about one DHCP transaction (by its id) that ended with
/// an ACK for `ip`.
fn ack_transaction(log: &str, ip: &str) -> Option<Vec<String>> {
    let ack = log
        .lines()
        .find(|l| l.contains("DHCPACK(xpxebr0)") && l.contains(&format!(" {ip} ")))?;
    let xid = ack.split("]: ").nth(1)?.split(' ').next()?.to_string();
    Some(
        log.lines()
            .filter(|l| l.contains(&format!("]: {xid} ")))
            .map(String::from)
            .collect(),
    )
}

fn serial(log: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned()
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn firmware_gets_its_boot_answers_and_the_supervisor_keeps_dnsmasq() {
    let bed = PxeBed::up();
    let mut d = daemon();
    let d = &mut *d;
    d.ok(&["makedhcp", "-n"]);
    d.wait_log("dnsmasq started on xpxebr0", Duration::from_secs(20));
    d.ok(&["makedhcp", "pxe"]);
    let q = d.ok(&["makedhcp", "-q", "n1"]);
    assert_eq!(
        q.trim(),
        format!("n1: ip-address = 10.99.60.10, hardware-address = {N1_MAC}")
    );
    let recorder = HttpRecorder::listen(&format!("{PXE_SERVER}:{HTTP_PORT}"));
    let logs = d.root().join("guests");
    std::fs::create_dir_all(&logs).unwrap();

    // BIOS: iPXE's ROM is an iPXE client and is offered its node's script
    // URL, which it then asks for; n3 (state boot) is offered no boot file.
    let mut g1 = bed.guest(0, N1_MAC, "bios", &logs.join("n1.log"));
    let mut g3 = bed.guest(2, N3_MAC, "bios", &logs.join("n3.log"));
    let n1_url = "GET /tftpboot/xcat/xnba/nodes/n1 HTTP";
    assert!(
        recorder.wait_for(n1_url, BOOT_WAIT),
        "n1 never asked for its script; requests {:?}\nserial:\n{}\nlog:\n{}",
        recorder.lines.lock().unwrap(),
        serial(&logs.join("n1.log")),
        d.log()
    );
    g1.stop();
    let n1 = ack_transaction(&d.log(), "10.99.60.10").expect("an ACK for n1");
    let url = format!("http://{PXE_SERVER}:{HTTP_PORT}/tftpboot/xcat/xnba/nodes/n1");
    assert!(n1.iter().any(|l| l.contains("user class: iPXE")), "{n1:#?}");
    assert!(
        n1.iter()
            .any(|l| l.contains("bootfile-name") && l.ends_with(&url)),
        "{n1:#?}"
    );
    wait_until("n3's ACK", BOOT_WAIT, || {
        ack_transaction(&d.log(), "10.99.60.12").is_some()
    });
    // The ACK and its options are logged together; give the guest a moment
    // to show it has nothing to boot.
    std::thread::sleep(Duration::from_secs(2));
    g3.stop();
    let n3 = ack_transaction(&d.log(), "10.99.60.12").unwrap();
    assert!(
        !n3.iter()
            .any(|l| l.contains("sent") && l.contains("option: 67")),
        "{n3:#?}"
    );
    assert!(!recorder.wait_for("nodes/n3", Duration::from_millis(1)));

    // UEFI with OVMF's own PXE: xnba.efi by TFTP, then, as iPXE, the
    // .uefi script URL.
    let mut g2 = bed.guest(1, N2_MAC, "uefi-pxe", &logs.join("n2.log"));
    assert!(
        recorder.wait_for("GET /tftpboot/xcat/xnba/nodes/n2.uefi HTTP", BOOT_WAIT),
        "n2 never asked for its script; requests {:?}\nserial:\n{}\nlog:\n{}",
        recorder.lines.lock().unwrap(),
        serial(&logs.join("n2.log")),
        d.log()
    );
    g2.stop();
    let log = d.log();
    assert!(log.contains("xcat/xnba.efi to 10.99.60.11"), "{log}");
    assert!(
        log.contains("vendor class: PXEClient:Arch:00007"),
        "OVMF's PXE asked first: {log}"
    );

    // After -d, dnsmasq ignores n1 (static range: no address for it).
    d.ok(&["makedhcp", "-d", "n1"]);
    assert_eq!(d.ok(&["makedhcp", "-q", "n1"]).trim(), "");
    let before = d.log().len();
    let mut g1 = bed.guest(0, N1_MAC, "bios", &logs.join("n1-deleted.log"));
    wait_until("dnsmasq to refuse n1", BOOT_WAIT, || {
        d.log()[before..].contains(&format!(
            "DHCPDISCOVER(xpxebr0) {N1_MAC} no address available"
        ))
    });
    g1.stop();
    assert!(!d.log()[before..].contains("DHCPOFFER(xpxebr0) 10.99.60.10"));

    supervisor_restarts_and_stops(d);
}

/// A killed dnsmasq is restarted; a killed daemon's dnsmasq is stopped by
/// the next start; a stopped daemon leaves none.
fn supervisor_restarts_and_stops(d: &mut Daemon) {
    let first = dnsmasq_pid(d);
    assert!(alive(first));
    xcatd_tests::host("kill", &["-KILL", &first.to_string()]);
    d.wait_log("dnsmasq exited (signal: 9", Duration::from_secs(10));
    wait_until("a new dnsmasq", Duration::from_secs(20), || {
        std::fs::read_to_string(d.root().join("state/dhcp/dnsmasq.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .is_some_and(|p| p != first && alive(p))
    });
    let second = dnsmasq_pid(d);

    d.kill_hard();
    assert!(alive(second), "a killed daemon cannot take dnsmasq with it");
    d.restart();
    d.wait_log("left running by an earlier xcatd", Duration::from_secs(20));
    wait_until("the orphan to stop", Duration::from_secs(10), || {
        !alive(second)
    });
    wait_until("the new daemon's dnsmasq", Duration::from_secs(20), || {
        std::fs::read_to_string(d.root().join("state/dhcp/dnsmasq.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .is_some_and(|p| p != second && alive(p))
    });
    let third = dnsmasq_pid(d);

    let status = d.stop().expect("the daemon was running");
    assert!(status.success(), "{status}");
    assert!(!alive(third), "dnsmasq {third} outlived the daemon");
    assert!(!d.root().join("state/dhcp/dnsmasq.pid").exists());
}
