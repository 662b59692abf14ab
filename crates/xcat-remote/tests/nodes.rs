//! Remote execution against real sshd nodes of the test bed (needs root).

use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use xcat_remote::testbed::{NodeOptions, TestBed};
use xcat_remote::{NodeEvent, Remote, RemoteError, SshConfig, Target};

fn target(n: &xcat_remote::testbed::Node) -> Target {
    Target::new(&n.name, &n.addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
async fn each_node_answers_with_its_own_name_as_root() {
    let t = Instant::now();
    let a = TestBed::node("alpha");
    let b = TestBed::node("beta");
    eprintln!("two full nodes up in {:.2} s", t.elapsed().as_secs_f64());
    let remote = Remote::new(TestBed::ssh_config());
    let mut seen = Vec::new();
    let mut results = remote.run_many(
        vec![target(&a), target(&b)],
        "hostname; id -u",
        Some(2),
        None,
    );
    while let Some((t, r)) = results.next().await {
        let out = r.unwrap_or_else(|e| panic!("{}: {e}", t.node));
        assert!(out.success());
        assert_eq!(out.stdout_text(), format!("{}\n0\n", t.node));
        seen.push(t.node);
    }
    seen.sort();
    assert_eq!(seen, vec![a.name.clone(), b.name.clone()]);

    // `/` is the node's own ext4 disk and the other filesystem is there.
    let out = remote
        .run(
            &a.name,
            &a.addr,
            "findmnt -n -o FSTYPE /; cat /mnt/otherfs/MARKER-otherfs",
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        out.stdout_text(),
        "ext4\nthis file lives on another filesystem\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
async fn exit_codes_stderr_and_quoting() {
    let n = TestBed::node_with("codes", &NodeOptions::light());
    let remote = Remote::new(n.ssh_config());
    // A command exiting 255 is the command's status, not an ssh failure.
    let out = remote
        .run(&n.name, &n.addr, "echo oops >&2; exit 255", None)
        .await
        .unwrap();
    assert_eq!(out.code(), 255);
    assert_eq!(out.stderr, "oops\n");
    let out = remote.run(&n.name, &n.addr, "exit 3", None).await.unwrap();
    assert_eq!(out.code(), 3);
    // The remote login shell (bash) runs the command, as with plain ssh.
    let out = remote
        .run(&n.name, &n.addr, "echo {1..3}", None)
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "1 2 3\n");
    // shell_quote round-trips awkward text through ssh and the remote shell.
    let nasty = "it's $HOME `id` \"q\" \\ ; | & * \n second line";
    let cmd = format!("printf '%s' {}", xcat_remote::shell_quote(nasty));
    let out = remote.run(&n.name, &n.addr, &cmd, None).await.unwrap();
    assert_eq!(out.stdout_text(), nasty);
    // Output limit.
    let small = Remote::new(n.ssh_config()).with_output_limit(1000);
    let out = small
        .run(&n.name, &n.addr, "head -c 100000 /dev/zero", None)
        .await
        .unwrap();
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.stdout_truncated);
    assert!(out.success());
}

/// Down node, wrong host key, unknown host key and refused key give distinct
/// errors naming the node, while the healthy nodes of the same run answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
async fn ssh_failures_are_told_apart_per_node() {
    let good1 = TestBed::node_with("good", &NodeOptions::light());
    let good2 = TestBed::node_with("good", &NodeOptions::light());
    let down = TestBed::node_with("down", &NodeOptions::light());
    let badkey = TestBed::node_with("hostkey", &NodeOptions::light());
    let unknown = TestBed::node_with("unknown", &NodeOptions::light());
    let refuse = TestBed::node_with("refuse", &NodeOptions::light());
    down.kill();
    // `refuse` only accepts a key we do not have.
    refuse.sh("ssh-keygen -q -t ed25519 -N '' -f /tmp/other && cp /tmp/other.pub /root/.ssh/authorized_keys");

    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    let other_pub = std::fs::read_to_string(dir.path().join("other.pub")).unwrap();
    let other_key: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    let line = |n: &xcat_remote::testbed::Node| std::fs::read_to_string(&n.known_hosts).unwrap();
    let known = dir.path().join("known_hosts");
    std::fs::write(
        &known,
        format!(
            "{}{}{}{}{} {}\n",
            line(&good1),
            line(&good2),
            line(&down),
            line(&refuse),
            badkey.addr,
            other_key.join(" ")
        ),
    )
    .unwrap();
    let cfg = SshConfig {
        known_hosts: known.clone(),
        ..TestBed::ssh_config()
    };
    let remote = Remote::new(cfg);
    let targets = [&good1, &good2, &down, &badkey, &unknown, &refuse]
        .iter()
        .map(|n| target(n))
        .collect();
    let t = Instant::now();
    let mut results: Vec<_> = remote
        .run_many(targets, "hostname", Some(6), None)
        .collect()
        .await;
    eprintln!(
        "six nodes (four failing) in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    results.sort_by(|a, b| a.0.node.cmp(&b.0.node));
    for (t, r) in &results {
        match r {
            Ok(o) => eprintln!("{}: ok {}", t.node, o.stdout_text().trim()),
            Err(e) => eprintln!("{}: {e}", t.node),
        }
    }
    let get = |n: &xcat_remote::testbed::Node| {
        results
            .iter()
            .find(|(t, _)| t.node == n.name)
            .map(|(_, r)| r)
            .unwrap()
    };
    for g in [&good1, &good2] {
        let out = get(g).as_ref().unwrap();
        assert_eq!(out.stdout_text().trim(), g.name);
    }
    match get(&down) {
        Err(e @ RemoteError::Unreachable { .. }) => {
            let m = e.to_string();
            assert!(
                m.starts_with(&format!("{} is unreachable at {}", down.name, down.addr)),
                "{m}"
            );
            assert!(m.contains("Connection refused"), "{m}");
        }
        other => panic!("down node: {other:?}"),
    }
    match get(&badkey) {
        Err(e @ RemoteError::HostKeyMismatch { .. }) => {
            let m = e.to_string();
            assert!(
                m.starts_with(&format!(
                    "host key of {} ({}) does not match",
                    badkey.name, badkey.addr
                )),
                "{m}"
            );
            assert!(m.contains("ssh-keygen -R"), "{m}");
        }
        other => panic!("wrong host key: {other:?}"),
    }
    match get(&unknown) {
        Err(e @ RemoteError::HostKeyUnknown { .. }) => {
            let m = e.to_string();
            assert!(
                m.starts_with(&format!(
                    "host key of {} ({}) is not known",
                    unknown.name, unknown.addr
                )),
                "{m}"
            );
        }
        other => panic!("unknown host key: {other:?}"),
    }
    match get(&refuse) {
        Err(e @ RemoteError::AuthRefused { .. }) => {
            let m = e.to_string();
            assert!(
                m.starts_with(&format!("{} refused our key", refuse.name)),
                "{m}"
            );
            assert!(m.contains("authorized_keys"), "{m}");
        }
        other => panic!("refused key: {other:?}"),
    }
    // With accept_new_host_keys the unknown node is accepted and recorded.
    let remote = Remote::new(SshConfig {
        known_hosts: known.clone(),
        accept_new_host_keys: true,
        ..TestBed::ssh_config()
    });
    let lines_before = std::fs::read_to_string(&known).unwrap().lines().count();
    let out = remote
        .run(&unknown.name, &unknown.addr, "hostname", None)
        .await
        .unwrap();
    assert_eq!(out.stdout_text().trim(), unknown.name);
    // Recorded (possibly hashed): strict checking now accepts it.
    assert_eq!(
        std::fs::read_to_string(&known).unwrap().lines().count(),
        lines_before + 1
    );
    let strict = Remote::new(SshConfig {
        known_hosts: known.clone(),
        ..TestBed::ssh_config()
    });
    let out = strict
        .run(&unknown.name, &unknown.addr, "hostname", None)
        .await
        .unwrap();
    assert_eq!(out.stdout_text().trim(), unknown.name);
}

/// Poll the node until no process mentions `marker`; returns how long it took.
fn wait_gone(node: &xcat_remote::testbed::Node, marker: &str, limit: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let ps = node.sh("ps -eo pid,args");
        let left: Vec<&str> = ps.lines().filter(|l| l.contains(marker)).collect();
        if left.is_empty() {
            return t.elapsed();
        }
        if t.elapsed() > limit {
            panic!(
                "still running on {} after {:?}: {left:?}",
                node.name,
                t.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_running(node: &xcat_remote::testbed::Node, marker: &str) {
    let t = Instant::now();
    while !node
        .sh("ps -eo args")
        .lines()
        .any(|l| l.starts_with(&format!("sleep {marker}")))
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "command never started on {}",
            node.name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Cancelling, dropping or timing out a remote command leaves nothing behind
/// on the node within 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
async fn cancelled_commands_die_on_the_node() {
    let n = TestBed::node_with("cancel", &NodeOptions::light());

    // Cancellation token.
    let token = CancellationToken::new();
    let remote = Remote::new(n.ssh_config()).with_cancel(token.clone());
    let p = remote
        .spawn(&n.name, &n.addr, "sleep 1001; echo never")
        .unwrap();
    let waiter = tokio::spawn(p.wait());
    tokio::task::block_in_place(|| wait_running(&n, "1001"));
    let t = Instant::now();
    token.cancel();
    let r = waiter.await.unwrap();
    assert!(matches!(r, Err(RemoteError::Cancelled { .. })), "{r:?}");
    let took = tokio::task::block_in_place(|| wait_gone(&n, "1001", Duration::from_secs(2)));
    eprintln!(
        "cancel: remote command gone {:.2} s after cancel",
        (t.elapsed()).as_secs_f64()
    );
    assert!(took <= Duration::from_secs(2));
    // A cancelled Remote starts nothing new.
    assert!(matches!(
        remote.spawn(&n.name, &n.addr, "true"),
        Err(RemoteError::Cancelled { .. })
    ));

    // Dropping the process (kill_on_drop), with a pipeline and a child shell.
    let remote = Remote::new(n.ssh_config());
    let p = remote
        .spawn(&n.name, &n.addr, "sleep 1002 | cat; sh -c 'sleep 1003'")
        .unwrap();
    tokio::task::block_in_place(|| wait_running(&n, "1002"));
    let t = Instant::now();
    drop(p);
    tokio::task::block_in_place(|| wait_gone(&n, "100", Duration::from_secs(2)));
    eprintln!(
        "drop: remote command gone {:.2} s after drop",
        t.elapsed().as_secs_f64()
    );

    // Timeout.
    let t = Instant::now();
    let r = remote
        .run(
            &n.name,
            &n.addr,
            "sleep 1004",
            Some(Duration::from_millis(1500)),
        )
        .await;
    match r {
        Err(e @ RemoteError::Timeout { .. }) => {
            assert!(
                e.to_string()
                    .starts_with(&format!("{} did not finish within 1.5 s", n.name)),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(3));
    tokio::task::block_in_place(|| wait_gone(&n, "1004", Duration::from_secs(2)));

    // A command that ends normally leaves no watcher behind either.
    let out = remote
        .run(&n.name, &n.addr, "echo done", None)
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "done\n");
    tokio::task::block_in_place(|| wait_gone(&n, "xcat-remote", Duration::from_secs(2)));
}

/// stream_many delivers stdout and stderr lines per node as they arrive and
/// one Done per node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
async fn streams_lines_from_many_nodes() {
    let nodes = TestBed::nodes("stream", 3, &NodeOptions::light());
    let remote = Remote::new(TestBed::ssh_config());
    let targets = nodes.iter().map(target).collect();
    let mut rx = remote.stream_many(
        targets,
        "echo one; echo err >&2; printf 'two'; exit 4",
        Some(2),
        None,
    );
    let mut lines = std::collections::BTreeMap::<String, Vec<String>>::new();
    let mut done = Vec::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            NodeEvent::Stdout { node, line } => {
                lines.entry(node).or_default().push(format!("out:{line}"))
            }
            NodeEvent::Stderr { node, line } => {
                lines.entry(node).or_default().push(format!("err:{line}"))
            }
            NodeEvent::Done { node, result } => {
                assert_eq!(result.unwrap().code(), Some(4));
                done.push(node);
            }
        }
    }
    assert_eq!(done.len(), 3);
    for n in &nodes {
        let mut l = lines.remove(&n.name).unwrap();
        l.sort();
        assert_eq!(l, vec!["err:err", "out:one", "out:two"], "{}", n.name);
    }
}

/// A node built with the edge-case tree carries it on its own ext4 root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
async fn edge_case_tree_is_on_the_node() {
    let n = TestBed::node_with(
        "edge",
        &NodeOptions {
            edgecases: true,
            ..NodeOptions::default()
        },
    );
    let remote = Remote::new(n.ssh_config());
    let cmd = "cd /srv/edgecases && stat -c '%F %a %h' fifo socket char-null block-loop200 setuid sticky hard/b/file \
               && stat -c %s sparse-1g && du -k sparse-1g | cut -f1 && stat -c %Y mtime-2038 \
               && find names -mindepth 1 -printf x | wc -c";
    let out = remote.run(&n.name, &n.addr, cmd, None).await.unwrap();
    let text = out.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        &lines[..7],
        &[
            "fifo 644 1",
            "socket 755 1",
            "character special file 644 1",
            "block special file 644 1",
            "regular file 4755 1",
            "directory 1777 2",
            "regular file 644 3"
        ],
        "{text}"
    );
    assert_eq!(lines[7], "1073741824");
    assert!(
        lines[8].parse::<u64>().unwrap() < 1024,
        "sparse file is not sparse: {text}"
    );
    assert_eq!(lines[9], "2159006400");
    assert_eq!(lines[10], "6");
    // The node has no getcap; look at its file from the host through its root.
    let caps = std::process::Command::new("getcap")
        .arg(format!(
            "/proc/{}/root/srv/edgecases/cap-net-raw",
            n.init_pid
        ))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&caps.stdout).contains("cap_net_raw=ep"),
        "{caps:?}"
    );
}
