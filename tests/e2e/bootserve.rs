//! The boot service through the real daemon binary: `[http] listen` on an
//! ephemeral loopback port, the directories from the site table `xcatd
//! init` seeded, the access log file, and a clean stop on SIGTERM while a
//! download is in progress.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use xcatd_tests::{Daemon, DaemonOptions};

/// One request on its own connection: (status, head, body).
fn fetch(addr: SocketAddr, target: &str, headers: &str) -> (u16, String, Vec<u8>) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        tcp,
        "GET {target} HTTP/1.1\r\nHost: mn\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    tcp.read_to_end(&mut all).unwrap();
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let head = String::from_utf8(all[..end].to_vec()).unwrap();
    (head[9..12].parse().unwrap(), head, all[end..].to_vec())
}

fn put(path: &std::path::Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn the_daemon_serves_boot_files_and_refuses_the_rest() {
    let mut d = Daemon::start_with(DaemonOptions {
        extra_config:
            "tftp_dir = \"tftp\"\n[http]\nlisten = \"127.0.0.1:0\"\naccess_log = \"access.log\"\n"
                .into(),
        ..Default::default()
    });
    let http = d
        .http_addr
        .expect("the daemon reports the boot service's address");
    let img = d.root().join("install/netboot/deb12/x86_64/compute");
    put(&img.join(".private/rootimg/etc/shadow"), b"secret");
    std::os::unix::fs::symlink(".private/rootimg", img.join("rootimg")).unwrap();
    let packed: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
    put(&img.join("rootimg.cpio.gz"), &packed);
    put(
        &d.root().join("tftp/xcat/xnba/nodes/n1"),
        b"#!gpxe\n#netboot deb12\n",
    );
    std::os::unix::fs::symlink(d.root().join("xcatd.toml"), d.root().join("tftp/xcat/conf"))
        .unwrap();

    let (status, _, body) = fetch(http, "/tftpboot/xcat/xnba/nodes/n1", "");
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"#!gpxe\n#netboot deb12\n"[..])
    );
    let base = "/install/netboot/deb12/x86_64/compute";
    let (status, _, body) = fetch(http, &format!("{base}/rootimg.cpio.gz"), "");
    assert!(status == 200 && body == packed, "the packed image, whole");
    let (status, head, body) = fetch(
        http,
        &format!("{base}/rootimg.cpio.gz"),
        "Range: bytes=1000-1999\r\n",
    );
    assert_eq!(status, 206, "{head}");
    assert_eq!(body, &packed[1000..2000]);
    for refused in [
        format!("{base}/rootimg/etc/shadow"),
        format!("{base}/.private/rootimg/etc/shadow"),
        format!("{base}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/xcatd.toml"),
        "/tftpboot/xcat/conf".to_string(),
        "/tftpboot/../xcatd.toml".to_string(),
    ] {
        let (status, _, body) = fetch(http, &refused, "");
        assert!(status == 404 && body.is_empty(), "{refused}: {status}");
    }
    let log = std::fs::read_to_string(d.root().join("access.log")).unwrap();
    assert_eq!(log.lines().count(), 8, "{log}");
    assert!(
        log.contains(&format!("127.0.0.1 GET {base}/rootimg.cpio.gz 206 1000 ")),
        "{log}"
    );
    assert!(
        log.contains("127.0.0.1 GET /tftpboot/xcat/conf 404 0 "),
        "{log}"
    );

    // A download in progress does not hold up the stop.
    let mut slow = TcpStream::connect(http).unwrap();
    write!(
        slow,
        "GET {base}/rootimg.cpio.gz HTTP/1.1\r\nHost: mn\r\n\r\n"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let status = d.stop().expect("stopped");
    assert!(status.success(), "{status:?}: {}", d.log());
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(TcpStream::connect(http).is_err(), "the boot port is closed");
    assert!(d.log().contains("boot service listening"), "{}", d.log());
}
