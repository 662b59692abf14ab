//! 16 nodes with a fan-out of 4: never more than 4 ssh processes at once,
//! and every node answers.

use std::time::Instant;

use futures::StreamExt;
use xcat_remote::testbed::{NodeOptions, TestBed};
use xcat_remote::{NodeEvent, Remote, SshConfig, Target};

/// An ssh_program that counts concurrent ssh processes (current and peak).
fn counting_ssh(dir: &std::path::Path) -> std::path::PathBuf {
    let script = dir.join("ssh");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/bash
d={d}
( flock 9; n=$(( $(cat $d/cur) + 1 )); echo $n > $d/cur
  [ $n -gt $(cat $d/max) ] && echo $n > $d/max ) 9>$d/lock
ssh "$@"; rc=$?
( flock 9; echo $(( $(cat $d/cur) - 1 )) > $d/cur ) 9>$d/lock
exit $rc
"#,
            d = dir.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    reset(dir);
    script
}

fn reset(dir: &std::path::Path) {
    std::fs::write(dir.join("cur"), "0\n").unwrap();
    std::fs::write(dir.join("max"), "0\n").unwrap();
}

fn read_num(dir: &std::path::Path, f: &str) -> u32 {
    std::fs::read_to_string(dir.join(f))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
async fn sixteen_nodes_fanout_four() {
    let t = Instant::now();
    let nodes = TestBed::nodes("fan", 16, &NodeOptions::light());
    let up = t.elapsed();
    eprintln!(
        "16 light nodes up in {:.1} s ({:.2} s each)",
        up.as_secs_f64(),
        up.as_secs_f64() / 16.0
    );

    let dir = tempfile::tempdir().unwrap();
    let cfg = SshConfig {
        ssh_program: counting_ssh(dir.path()),
        ..TestBed::ssh_config()
    };
    let remote = Remote::new(cfg);
    let targets: Vec<Target> = nodes
        .iter()
        .map(|n| Target::new(&n.name, &n.addr))
        .collect();

    let t = Instant::now();
    let mut answered = Vec::new();
    let mut results = remote.run_many(targets.clone(), "sleep 0.3; hostname", Some(4), None);
    while let Some((t, r)) = results.next().await {
        let out = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.stdout_text().trim(), t.node);
        answered.push(t.node);
    }
    eprintln!(
        "run_many on 16 nodes, fanout 4: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    answered.sort();
    let mut want: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    want.sort();
    assert_eq!(answered, want);
    let peak = read_num(dir.path(), "max");
    eprintln!("peak concurrent ssh processes: {peak}");
    assert_eq!(peak, 4, "fan-out 4 must run 4 at once, never more");
    assert_eq!(read_num(dir.path(), "cur"), 0);

    // The streaming variant obeys the same limit.
    reset(dir.path());
    let t = Instant::now();
    let mut rx = remote.stream_many(targets, "sleep 0.3; hostname", Some(4), None);
    let mut lines = Vec::new();
    let mut done = 0;
    while let Some(ev) = rx.recv().await {
        match ev {
            NodeEvent::Stdout { node, line } => {
                assert_eq!(node, line);
                lines.push(line);
            }
            NodeEvent::Stderr { node, line } => panic!("{node}: unexpected stderr {line}"),
            NodeEvent::Done { node, result } => {
                assert!(result.unwrap_or_else(|e| panic!("{node}: {e}")).success());
                done += 1;
            }
        }
    }
    eprintln!(
        "stream_many on 16 nodes, fanout 4: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(done, 16);
    lines.sort();
    assert_eq!(lines, want);
    assert_eq!(read_num(dir.path(), "max"), 4);

    let t = Instant::now();
    drop(nodes);
    eprintln!("16 nodes down in {:.1} s", t.elapsed().as_secs_f64());
}
