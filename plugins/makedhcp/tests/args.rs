//! makedhcp in-process: its command line, and the files a request writes,
//! removes and shows, with the supervisor told of each change.

use std::sync::{Arc, Mutex};

use xcat_plugin::boot::{DhcpChange, DhcpPaths, DhcpServer, DhcpServerHandle};
use xcat_plugin::testing::{Harness, Outcome};

async fn run(args: &[&str]) -> Outcome {
    let h = Harness::new(plugin_makedhcp::handlers()).await;
    h.run("makedhcp", args).await
}

#[tokio::test]
async fn help_version_and_usage_errors() {
    let o = run(&["-h"]).await;
    assert!(o.ok().lines()[0].starts_with("Usage: makedhcp -n"));
    let o = run(&["-v"]).await;
    assert!(o.ok().lines()[0].starts_with("makedhcp "));
    for (args, want) in [
        (&[][..], "makedhcp needs a noderange, -n or -a"),
        (&["-d"], "makedhcp needs a noderange, -n or -a"),
        (&["-n", "-q"], "use one of -n, -a, -d and -q"),
        (&["-n", "-d"], "use one of -n, -a, -d and -q"),
        (&["-s", "x"], "-s (ISC dhcpd statements) is not supported"),
        (&["--bogus"], "unknown option --bogus"),
    ] {
        let e = run(args).await.usage_err();
        assert!(e.starts_with(want), "{args:?}: {e}");
        assert!(e.contains("\nUsage: makedhcp -n"), "{e}");
    }
}

/// Records what the handler told the DHCP server.
#[derive(Default)]
struct Recorder(Mutex<Vec<DhcpChange>>);

impl DhcpServer for Recorder {
    fn changed(&self, change: DhcpChange) {
        self.0.lock().unwrap().push(change);
    }
}

async fn harness(rec: &Arc<Recorder>) -> Harness {
    let bin = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bin.path(), b"not really iPXE").unwrap();
    let path = bin.into_temp_path().keep().unwrap();
    let rec = rec.clone();
    let h = Harness::new(plugin_makedhcp::handlers())
        .await
        .configure(move |s| {
            s.dhcp.ipxe_bios = path.clone();
            s.dhcp.ipxe_efi = path;
            s.dhcp.server = DhcpServerHandle::new(rec);
        });
    let db = h.db();
    db.upsert(
        "networks",
        &[("net", "10.99.60.0"), ("mask", "255.255.255.0")],
        &[("tftpserver", "10.99.60.1")],
    )
    .await
    .unwrap();
    for (n, mac, ip) in [
        ("n1", "52:54:00:60:00:10", "10.99.60.10"),
        ("n2", "", "10.99.60.11"),
    ] {
        db.upsert("nodelist", &[("node", n)], &[("groups", "all")])
            .await
            .unwrap();
        db.upsert("mac", &[("node", n)], &[("mac", mac)])
            .await
            .unwrap();
        db.upsert("hosts", &[("node", n)], &[("ip", ip)])
            .await
            .unwrap();
    }
    h
}

#[tokio::test]
async fn writes_removes_and_shows_entries() {
    let rec = Arc::new(Recorder::default());
    let h = harness(&rec).await;
    let paths = DhcpPaths::new(&h.settings().state_dir);
    h.run("makedhcp", &["-n"]).await.ok();
    let main = std::fs::read_to_string(&paths.conf).unwrap();
    assert!(main.contains("dhcp-range=set:xcatnet0,10.99.60.0,static,255.255.255.0,43200"));
    let tftp = &h.settings().tftp_dir;
    assert_eq!(
        std::fs::read(tftp.join("xcat/xnba.kpxe")).unwrap(),
        b"not really iPXE"
    );
    assert!(tftp.join("xcat/xnba.efi").exists());
    // Unchanged on a second -n: a reload, not a restart.
    h.run("makedhcp", &["-n"]).await.ok();
    assert_eq!(
        *rec.0.lock().unwrap(),
        [DhcpChange::Config, DhcpChange::Nodes]
    );

    // n2 has no MAC: its error is named, n1 is still done, exit non-zero.
    let o = h.request("makedhcp", &[]).nodes(&["n1", "n2"]).run().await;
    assert_eq!(
        o.kinds(),
        [(
            "error",
            "n2: Error: no MAC address in the mac table (mac.mac)".to_string()
        )]
    );
    let opts = std::fs::read_to_string(paths.opts_dir.join("n1")).unwrap();
    assert!(
        opts.contains("http://10.99.60.1/tftpboot/xcat/xnba/nodes/n1.uefi"),
        "{opts}"
    );
    assert!(!paths.hosts_dir.join("n2").exists());
    let o = h
        .request("makedhcp", &["-q"])
        .nodes(&["n1", "n2"])
        .run()
        .await;
    assert_eq!(
        o.ok().lines(),
        ["n1: ip-address = 10.99.60.10, hardware-address = 52:54:00:60:00:10"]
    );

    let o = h.request("makedhcp", &["-d"]).nodes(&["n1"]).run().await;
    o.ok();
    assert!(!paths.hosts_dir.join("n1").exists() && !paths.opts_dir.join("n1").exists());
    // -a: every node of the mac table (n2's row has no MAC: an error).
    let o = h.run("makedhcp", &["-a"]).await;
    assert_eq!(o.kinds().len(), 1, "{:?}", o.kinds());
    assert!(paths.hosts_dir.join("n1").exists());
    h.run("makedhcp", &["-a", "-d"]).await.ok();
    assert!(!paths.hosts_dir.join("n1").exists());
    assert_eq!(rec.0.lock().unwrap().len(), 6);
}

/// Thousands of nodes: one read per table, two small files per node.
/// Prints the figures; the bound is generous (a debug build on a loaded
/// machine) but would catch a per-node query or process.
#[tokio::test]
async fn five_thousand_nodes() {
    const N: usize = 5000;
    let rec = Arc::new(Recorder::default());
    let h = harness(&rec).await;
    h.run("makedhcp", &["-n"]).await.ok();
    let names: Vec<String> = (0..N).map(|i| format!("c{i:05}")).collect();
    let col = |f: &dyn Fn(usize) -> String| -> Vec<Vec<Option<String>>> {
        (0..N)
            .map(|i| vec![Some(names[i].clone()), Some(f(i))])
            .collect()
    };
    let db = h.db();
    db.insert_rows("nodelist", &["node", "groups"], &col(&|_| "all".into()))
        .await
        .unwrap();
    db.insert_rows(
        "mac",
        &["node", "mac"],
        &col(&|i| format!("52:54:01:00:{:02x}:{:02x}", i / 256, i % 256)),
    )
    .await
    .unwrap();
    db.insert_rows(
        "hosts",
        &["node", "ip"],
        &col(&|i| format!("10.99.60.{}", i % 200 + 20)),
    )
    .await
    .unwrap();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let start = std::time::Instant::now();
    let o = h.request("makedhcp", &[]).nodes(&refs).run().await;
    let add = start.elapsed();
    o.ok();
    let start = std::time::Instant::now();
    let o = h.request("makedhcp", &["-d"]).nodes(&refs).run().await;
    let del = start.elapsed();
    o.ok();
    println!("makedhcp of {N} nodes: {add:?}; -d: {del:?}");
    assert!(add.as_secs() < 30 && del.as_secs() < 30, "{add:?} {del:?}");
}
