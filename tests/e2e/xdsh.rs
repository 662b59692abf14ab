//! `xdsh` end to end: the real client, the real daemon, real sshd test-bed
//! nodes. Output is prefixed by node, failures of one node (down, wrong host
//! key, key refused) are told apart and do not stop the others, and a client
//! abort stops the remote command.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use xcat_remote::testbed::{Node, NodeOptions, TestBed};
use xcatd_tests::{bin, Daemon, DaemonOptions};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// A daemon reaching `nodes` with the bed's key and the given known_hosts
/// file, the nodes defined as `Daemon::for_nodes` does.
fn daemon_with_known_hosts(nodes: &[&Node], known_hosts: &Path) -> Daemon {
    let d = Daemon::start_with(DaemonOptions {
        extra_config: format!(
            "[ssh]\nidentity = {:?}\nknown_hosts = {:?}\nconnect_timeout = 5\n",
            nodes[0].identity.display().to_string(),
            known_hosts.display().to_string()
        ),
        ..Default::default()
    });
    d.define_nodes(nodes);
    d
}

/// `ssh-keygen -t` argument for a known_hosts key type.
fn keygen_type(key_type: &str) -> &'static str {
    match key_type {
        "ssh-ed25519" => "ed25519",
        "ssh-rsa" => "rsa",
        t if t.starts_with("ecdsa-") => "ecdsa",
        t => panic!("unexpected host key type {t} in the bed's known_hosts"),
    }
}

/// The node's known_hosts lines with every key replaced by a freshly
/// generated key of the same type: what ssh sees when a node was reinstalled
/// or is impersonated.
fn forged_known_hosts(node: &Node, dir: &Path) -> String {
    let real = std::fs::read_to_string(&node.known_hosts).expect("node known_hosts");
    let mut out = String::new();
    for (i, line) in real.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let mut f = line.split_whitespace();
        let (hosts, key_type) = (f.next().expect("hosts"), f.next().expect("type"));
        let key = dir.join(format!("forged{i}"));
        let st = Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-t", keygen_type(key_type), "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen");
        assert!(st.success());
        let public = std::fs::read_to_string(key.with_extension("pub")).expect("pub");
        let mut p = public.split_whitespace();
        let (t, k) = (p.next().unwrap(), p.next().unwrap());
        assert_eq!(t, key_type);
        assert!(!real.contains(k), "the forged key must differ");
        out.push_str(&format!("{hosts} {t} {k}\n"));
    }
    assert!(
        !out.is_empty(),
        "{} holds no keys",
        node.known_hosts.display()
    );
    out
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn runs_on_every_node_with_the_node_name_prefixed() {
    let t = Instant::now();
    let n1 = TestBed::node_with("xdok", &NodeOptions::light());
    let n2 = TestBed::node_with("xdok", &NodeOptions::light());
    eprintln!("two nodes up in {:.1} s", t.elapsed().as_secs_f64());
    let d = Daemon::for_nodes(&[&n1, &n2], "");

    let t = Instant::now();
    let range = format!("{},{}", n1.name, n2.name);
    let out = d.client(&["xdsh", &range, "hostname; id -u"]);
    eprintln!("xdsh on two nodes: {:.2} s", t.elapsed().as_secs_f64());
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr), "");
    let mut want = vec![
        format!("{0}: {0}", n1.name),
        format!("{}: 0", n1.name),
        format!("{0}: {0}", n2.name),
        format!("{}: 0", n2.name),
    ];
    want.sort();
    assert_eq!(sorted_lines(&text(&out.stdout)), want);
    // Each node's own lines keep their order.
    for n in [&n1, &n2] {
        let mine: Vec<String> = text(&out.stdout)
            .lines()
            .filter(|l| l.starts_with(&format!("{}: ", n.name)))
            .map(str::to_string)
            .collect();
        assert_eq!(
            mine,
            vec![format!("{0}: {0}", n.name), format!("{}: 0", n.name)]
        );
    }

    // A group noderange reaches the same nodes.
    let out = d.client(&["xdsh", "compute", "hostname"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut want = vec![format!("{0}: {0}", n1.name), format!("{0}: {0}", n2.name)];
    want.sort();
    assert_eq!(sorted_lines(&text(&out.stdout)), want);

    // A command that fails: its output still arrives (stderr too), the
    // failure names the node and the exit code is the command's.
    let out = d.client(&["xdsh", &n1.name, "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(
        sorted_lines(&text(&out.stdout)),
        vec![format!("{}: err", n1.name), format!("{}: out", n1.name)]
    );
    assert_eq!(
        text(&out.stderr),
        format!("Error: {}: command exited with status 3\n", n1.name)
    );
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn down_node_wrong_host_key_and_refused_key_are_told_apart() {
    let t = Instant::now();
    let good = TestBed::node_with("xdgood", &NodeOptions::light());
    let down = TestBed::node_with("xddown", &NodeOptions::light());
    let forged = TestBed::node_with("xdkey", &NodeOptions::light());
    let refusing = TestBed::node_with("xdauth", &NodeOptions::light());
    eprintln!("four nodes up in {:.1} s", t.elapsed().as_secs_f64());

    // Our known_hosts: the real keys, except another key for `forged`'s address.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut kh = String::new();
    for n in [&good, &down, &refusing] {
        kh.push_str(&std::fs::read_to_string(&n.known_hosts).expect("known_hosts"));
    }
    kh.push_str(&forged_known_hosts(&forged, dir.path()));
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, &kh).expect("write known_hosts");

    let d = daemon_with_known_hosts(&[&good, &down, &forged, &refusing], &known_hosts);
    // Everything works before the faults (except the forged key).
    let out = d.client(&["xdsh", &format!("{},{}", down.name, refusing.name), "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    down.kill();
    refusing.sh("rm -f /root/.ssh/authorized_keys");

    let range = [&good, &down, &forged, &refusing]
        .iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let t = Instant::now();
    let out = d.client(&["xdsh", &range, "echo alive-$(hostname)"]);
    let took = t.elapsed();
    eprintln!("xdsh with three failing nodes: {:.2} s", took.as_secs_f64());
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    let ctx = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    eprintln!("{ctx}");
    assert_ne!(out.status.code(), Some(0), "{ctx}");
    assert_eq!(out.status.code(), Some(1), "{ctx}");
    // The good node answered.
    assert_eq!(stdout, format!("{0}: alive-{0}\n", good.name), "{ctx}");
    // One error line per failing node, each naming it and saying what is wrong.
    let err_of = |n: &Node| -> String {
        let prefix = format!("Error: {}: ", n.name);
        let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&prefix)).collect();
        assert_eq!(lines.len(), 1, "one error for {}: {ctx}", n.name);
        lines[0].to_string()
    };
    let e_down = err_of(&down);
    assert!(e_down.contains("is unreachable at"), "{e_down}");
    assert!(e_down.contains(&down.addr), "{e_down}");
    let e_key = err_of(&forged);
    assert!(e_key.contains("host key"), "{e_key}");
    assert!(e_key.contains("does not match"), "{e_key}");
    assert!(
        e_key.contains(&known_hosts.display().to_string()),
        "{e_key}"
    );
    let e_auth = err_of(&refusing);
    assert!(e_auth.contains("refused our key"), "{e_auth}");
    assert!(e_auth.contains("authorized_keys"), "{e_auth}");
    assert_eq!(stderr.lines().count(), 3, "{ctx}");
    assert!(
        !stderr.lines().any(|l| l.contains(&good.name)),
        "the good node must not be reported: {ctx}"
    );
    // Nothing waits for a timeout: refused connections fail at once.
    assert!(took < Duration::from_secs(15), "took {took:?}");
    // The daemon still serves the good node alone.
    let out = d.client(&["xdsh", &good.name, "echo again"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}: again\n", good.name));
}

/// Remote `sleep` processes of the test (the wrapper's own short sleeps do
/// not match: their command line is `sleep 0.3`).
fn remote_sleeps(node: &Node) -> Vec<String> {
    let out = node.exec_inside("pgrep -f '^sleep 317$' || true");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn client_abort_kills_the_remote_command() {
    let n1 = TestBed::node_with("xdabort", &NodeOptions::light());
    let d = Daemon::for_nodes(&[&n1], "");
    assert!(remote_sleeps(&n1).is_empty());

    // The client through a link named xdsh, as an admin would run it.
    let links = tempfile::tempdir().expect("tempdir");
    let link = links.path().join("xdsh");
    std::os::unix::fs::symlink(bin("xcatclient"), &link).expect("link");
    let child = Command::new(&link)
        .args([n1.name.as_str(), "sleep 317"])
        .env("HOME", &d.home)
        .env("XCATHOST", d.addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start client");

    let deadline = Instant::now() + Duration::from_secs(20);
    while remote_sleeps(&n1).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the remote sleep never started; log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let t = Instant::now();
    while !remote_sleeps(&n1).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "the remote sleep survived the abort for 2 s; log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let gone = t.elapsed();
    eprintln!(
        "remote command gone {:.2} s after SIGINT",
        gone.as_secs_f64()
    );

    let out: Output = child.wait_with_output().expect("client exit");
    let client_done = t.elapsed();
    eprintln!(
        "client exited {:.2} s after SIGINT",
        client_done.as_secs_f64()
    );
    eprintln!(
        "aborted client: {}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(!out.status.success(), "an aborted command must not exit 0");
    assert!(
        client_done < Duration::from_secs(6),
        "client took {client_done:?}"
    );
    // The daemon cancelled the request (and logged it), and still serves.
    d.wait_log("command=xdsh outcome=cancelled", Duration::from_secs(5));
    let out = d.client(&["xdsh", &n1.name, "echo still-here"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}: still-here\n", n1.name));
}
