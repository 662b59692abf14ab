//! Bring-up and teardown of test-bed nodes, twice in a row and after a run
//! whose owner was killed with SIGKILL (nothing ran its teardown).
//! One test in its own binary: `node.sh cleanup` needs the bed unused.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xcat_remote::testbed::{TestBed, STATE_DIR};
use xcat_remote::Remote;

fn sh(cmd: &str) -> String {
    let o = Command::new("/bin/sh").arg("-c").arg(cmd).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every bed object still present on the host.
fn bed_objects() -> Vec<String> {
    let mut v = Vec::new();
    v.extend(
        sh("ip netns list | awk '$1 ~ /^xtbns/ {print \"netns \" $1}'")
            .lines()
            .map(String::from),
    );
    v.extend(
        sh("ip -o link show | awk -F': ' '{print $2}' | grep -E '^xtb' | sed 's/@.*//; s/^/link /'")
            .lines()
            .map(String::from),
    );
    v.extend(
        sh("losetup -n -l -O NAME,BACK-FILE | grep -E '/var/tmp/xcatd-testbed/' | sed 's/^/loop /'")
            .lines()
            .map(String::from),
    );
    v.extend(
        sh("pgrep -a -f '/run/xcatd-testbed/node-[0-9]+/init.sh' | sed 's/^/proc /'")
            .lines()
            .map(String::from),
    );
    v.extend(
        sh("ls -d /run/xcatd-testbed/node-* /var/tmp/xcatd-testbed/* 2>/dev/null | sed 's/^/file /'")
            .lines()
            .map(String::from),
    );
    v
}

async fn check_node(n: &xcat_remote::testbed::Node) {
    let remote = Remote::new(n.ssh_config());
    let out = remote
        .run(&n.name, &n.addr, "hostname", None)
        .await
        .unwrap();
    assert_eq!(out.stdout_text().trim(), n.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
async fn bring_up_teardown_and_recovery_after_a_killed_run() {
    let node_sh = TestBed::scripts_dir().join("node.sh");

    // A bed owner that takes an index lock, brings a node up, and is then
    // killed with SIGKILL: its node, namespace, veth and disk stay behind.
    let script = format!(
        r#"set -e
mkdir -p {state}
for i in $(seq 200 244); do exec 9>{state}/index-$i.lock; if flock -n 9; then break; fi; done
TB_MODE=overlay TB_KEYS={state}/beds/killed-owner {node_sh} up victim $i 9>&- >/dev/null
echo "up $i"
exec sleep 1000
"#,
        state = STATE_DIR,
        node_sh = node_sh.display()
    );
    let mut owner = Command::new("/bin/bash")
        .arg("-c")
        .arg(&script)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(owner.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let index: u32 = line
        .trim()
        .strip_prefix("up ")
        .unwrap_or_else(|| panic!("owner failed: {line:?}"))
        .parse()
        .unwrap();
    owner.kill().unwrap(); // SIGKILL
    owner.wait().unwrap();
    let stale = bed_objects();
    eprintln!("left behind by the killed run: {stale:?}");
    assert!(stale.contains(&format!("netns xtbns{index}")), "{stale:?}");
    assert!(
        stale.iter().any(|o| o.starts_with("proc ")),
        "the node outlives its owner: {stale:?}"
    );
    assert!(
        stale.contains(&format!("file /var/tmp/xcatd-testbed/node-{index}.img")),
        "{stale:?}"
    );

    let t = Instant::now();
    let out = TestBed::cleanup();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "cleanup after the killed run: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    // Mount namespaces are released asynchronously; give loop devices a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = bed_objects();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "cleanup left {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(sh("ip link show xtbbr0 2>&1").contains("does not exist"));
    // Cleanup is idempotent.
    assert!(TestBed::cleanup().status.success());

    // Up and down twice in a row; each teardown leaves nothing.
    for round in 1..=2 {
        let t = Instant::now();
        let n = TestBed::node("cycle");
        let up = t.elapsed();
        check_node(&n).await;
        let index = n.index;
        let t = Instant::now();
        drop(n);
        eprintln!(
            "round {round}: full node up in {:.2} s, down in {:.2} s",
            up.as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
        // The kernel detaches a loop device when the last mount namespace
        // using it is gone, which can lag the node's death a little.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left: Vec<String> = bed_objects()
                .into_iter()
                .filter(|o| {
                    o.contains(&format!("xtbns{index}")) || o.contains(&format!("node-{index}"))
                })
                .collect();
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "teardown left {left:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // While this process holds nodes, a cleanup refuses to run.
    let n = TestBed::node("busy");
    let out = TestBed::cleanup();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
    check_node(&n).await;
}
