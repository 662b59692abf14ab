//! The daemon as a service: `--log-format json` writes one JSON object a
//! line, `--log-file` goes to a file that SIGHUP opens again under its name
//! after rotation, SIGHUP applies a changed `log_level`, and systemd's
//! `Type=notify` hears `READY=1` once requests are served.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xcatd_tests::{bin, Daemon};

/// xcatd on the fixture's configuration with the log options, without
/// `XCATD_LOG` (which would win over `log_level`); it is started once
/// "listening on" is printed, with the address it printed.
fn start(config: &Path, log: &Path) -> (Child, String) {
    let mut child = Command::new(bin("xcatd"))
        .arg("--config")
        .arg(config)
        .args(["--log-format", "json", "--log-file"])
        .arg(log)
        .env_remove("XCATD_LOG")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start xcatd");
    let stdout = child.stdout.take().expect("stdout");
    let addr = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listening on ").map(str::to_string));
    let addr = addr.unwrap_or_else(|| {
        panic!(
            "xcatd did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    });
    (child, addr)
}

/// The log's lines, each parsed: every one must be a JSON object.
fn entries(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            assert!(v.is_object(), "not an object: {l}");
            v
        })
        .collect()
}

fn message(v: &serde_json::Value) -> &str {
    v["fields"]["message"].as_str().unwrap_or_default()
}

fn wait_for(log: &Path, msg: &str) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let e = entries(log);
        if e.iter().any(|v| message(v).contains(msg)) {
            return e;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no {msg:?} in {e:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hup(child: &Child) {
    xcatd_tests::host("kill", &["-HUP", &child.id().to_string()]);
}

#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn json_log_file_is_reopened_and_its_level_reloaded_on_sighup() {
    let mut fixture = Daemon::start();
    fixture.stop();
    let log = fixture.dir.path().join("json.log");
    let (mut child, addr) = start(&fixture.config_path, &log);
    let first = wait_for(&log, "xcatd listening");
    assert!(
        first.iter().all(|v| v["level"] != "DEBUG"),
        "info level logged debug lines"
    );

    // logrotate's way: move the file, then SIGHUP.
    let rotated = fixture.dir.path().join("json.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    std::fs::write(
        &fixture.config_path,
        std::fs::read_to_string(&fixture.config_path).expect("config") + "log_level = \"debug\"\n",
    )
    .expect("config");
    hup(&child);
    let after = wait_for(&log, "SIGHUP: reloaded");
    let old = std::fs::read_to_string(&rotated).expect("rotated log");
    assert!(
        !old.contains("SIGHUP"),
        "the rotated file got lines after SIGHUP"
    );

    // The new level: a request's debug lines (TLS, the database) now show.
    let home = fixture.home.clone();
    let _ = fixture.client_as(&home, &["lsxcatd", "-v"], &[("XCATHOST", &addr)]);
    let start = Instant::now();
    while !entries(&log).iter().any(|v| v["level"] == "DEBUG") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no DEBUG line after SIGHUP: {after:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    hup(&child);
    wait_for(&log, "SIGHUP: reloaded");
    assert!(
        child.try_wait().expect("wait").is_none(),
        "SIGHUP stopped the daemon"
    );
    xcatd_tests::host("kill", &["-TERM", &child.id().to_string()]);
    assert!(child.wait().expect("wait").success());
}

#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn ready_is_sent_on_notify_socket_after_the_port_is_bound() {
    use std::os::unix::net::UnixDatagram;
    let mut fixture = Daemon::start();
    fixture.stop();
    let socket_path = fixture.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut child = Command::new(bin("xcatd"))
        .arg("--config")
        .arg(&fixture.config_path)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start xcatd");
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).expect("READY=1 within 30 s");
    assert_eq!(&buf[..n], b"READY=1");
    // By then the port is bound: "listening on" was printed before it. The
    // daemon is stopped first, so reading its output ends whatever it said.
    xcatd_tests::host("kill", &["-TERM", &child.id().to_string()]);
    let stdout = child.stdout.take().expect("stdout");
    let printed = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.starts_with("listening on "));
    assert!(child.wait().expect("wait").success());
    assert!(printed, "READY=1 came without \"listening on\"");
}
