//! Streaming 2 GiB from a node into a slow consumer keeps this process small
//! (its own test binary, so other tests do not count in its peak RSS).

use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use xcat_remote::testbed::{NodeOptions, TestBed};
use xcat_remote::Remote;

fn vm_hwm_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
async fn two_gib_through_a_slow_reader_stays_small() {
    let n = TestBed::node_with("stream", &NodeOptions::light());
    let remote = Remote::new(n.ssh_config());
    let mut p = remote
        .spawn(&n.name, &n.addr, "head -c 2G /dev/zero")
        .unwrap();
    let mut out = p.take_stdout().unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    let t = Instant::now();

    // Slow phase: about 32 MiB/s for 3 s. The node must be held back: what
    // `head` has written may exceed what we read only by the pipes and ssh's
    // buffers (a few MiB), not by what ssh could move meanwhile (GiBs).
    let slow_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < slow_until {
        let k = out.read(&mut buf).await.unwrap();
        assert!(k > 0, "stream ended early");
        total += k as u64;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let written: u64 = tokio::task::block_in_place(|| {
        let io = n.sh("cat /proc/$(pgrep -x head)/io");
        io.lines()
            .find_map(|l| l.strip_prefix("wchar:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    });
    let ahead = written.saturating_sub(total);
    eprintln!(
        "slow phase: read {} MiB in {:.1} s; the node had written {} MiB ({} MiB ahead)",
        total >> 20,
        t.elapsed().as_secs_f64(),
        written >> 20,
        ahead >> 20
    );
    assert!(
        ahead < 48 << 20,
        "node ran {ahead} bytes ahead of the reader: no back-pressure"
    );

    // Then as fast as we can.
    loop {
        let k = out.read(&mut buf).await.unwrap();
        if k == 0 {
            break;
        }
        total += k as u64;
    }
    let status = p.wait().await.unwrap();
    assert!(status.success());
    assert_eq!(total, 2 << 30);
    let secs = t.elapsed().as_secs_f64();
    let hwm = vm_hwm_kib();
    eprintln!(
        "streamed 2 GiB in {secs:.1} s ({:.0} MiB/s overall); peak RSS (VmHWM) {} KiB",
        2048.0 / secs,
        hwm
    );
    assert!(hwm < 64 * 1024, "peak RSS {hwm} KiB exceeds 64 MiB");
}
