//! The daemon, the protocol and the client, end to end.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xcatd_proto::{client, Request, Response};
use xcatd_tests::{raw_exchange, raw_tls, Daemon};

/// Exactly the bytes xCAT's Perl client sends for `capimage node1 -p compute -V` from /root.
const PERL_REQUEST: &str =
    "<xcatrequest>\n  <arg>-p</arg>\n  <arg>compute</arg>\n  <arg>-V</arg>\n  \
<clienttype>cli</clienttype>\n  <command>capimage</command>\n  <cwd>/root</cwd>\n  \
<noderange>node1</noderange>\n</xcatrequest>\n";

/// Split a reply into its documents, checking the line-per-element layout.
fn documents(reply: &str) -> Vec<Response> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    for line in reply.lines() {
        let indent = line.len() - line.trim_start().len();
        assert_eq!(indent % 2, 0, "indent must be a multiple of two: {line:?}");
        let t = line.trim_start();
        assert!(
            t.starts_with('<') && t.ends_with('>'),
            "one element per line: {line:?}"
        );
        assert!(line.is_ascii(), "ASCII only: {line:?}");
        cur.push_str(line);
        cur.push('\n');
        if line == "</xcatresponse>" {
            docs.push(xcatd_proto::decode_response(cur.as_bytes()).expect("document parses"));
            cur.clear();
        }
    }
    assert!(
        cur.trim().is_empty(),
        "bytes after the last document: {cur:?}"
    );
    docs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
async fn perl_client_request_bytes_are_answered_with_serverdone_last() {
    let d = Daemon::start();
    let cred = d.home.join(".xcat/client-cred.pem");
    let mut s = raw_tls(d.addr, &d.home.join(".xcat/ca.pem"), Some(&cred))
        .await
        .unwrap();
    let reply = raw_exchange(&mut s, PERL_REQUEST.as_bytes(), Duration::from_secs(20)).await;
    let docs = documents(&reply);
    assert!(docs.len() >= 2, "reply: {reply}");
    let last = docs.last().unwrap();
    assert!(last.is_serverdone(), "serverdone must be last: {reply}");
    assert!(docs[..docs.len() - 1].iter().all(|r| !r.is_serverdone()));
    // node1 is not defined: the noderange error, with an errorcode.
    let errors: Vec<&str> = docs.iter().flat_map(|r| r.texts("error")).collect();
    assert_eq!(
        errors,
        vec!["Invalid nodes and/or groups in noderange: node1"],
        "{reply}"
    );
    assert_eq!(
        docs.iter().map(Response::errorcode).fold(0, |a, b| a | b),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
async fn authcheck_reports_certificate_identity() {
    let d = Daemon::start();
    let ca = d.home.join(".xcat/ca.pem");
    let cred = d.home.join(".xcat/client-cred.pem");
    let req = xcatd_proto::encode_request(&Request::new("authcheck", vec![]));

    let mut s = raw_tls(d.addr, &ca, Some(&cred)).await.unwrap();
    let docs = documents(&raw_exchange(&mut s, req.as_bytes(), Duration::from_secs(10)).await);
    assert_eq!(
        docs[0].texts("data").collect::<Vec<_>>(),
        vec!["Authenticated"]
    );
    assert_eq!(docs[0].texts("username").collect::<Vec<_>>(), vec!["root"]);

    let mut s = raw_tls(d.addr, &ca, None).await.unwrap();
    let docs = documents(&raw_exchange(&mut s, req.as_bytes(), Duration::from_secs(10)).await);
    assert_eq!(
        docs[0].texts("data").collect::<Vec<_>>(),
        vec!["Unauthenticated"]
    );

    // A certificate from another CA: the handshake fails and the daemon says why.
    let other = Daemon::start();
    let foreign = other.home.join(".xcat/client-cred.pem");
    let res = async {
        let mut s = raw_tls(d.addr, &ca, Some(&foreign)).await?;
        s.write_all(req.as_bytes()).await?;
        s.flush().await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    }
    .await;
    assert!(
        res.as_ref().map(|b| b.is_empty()).unwrap_or(true),
        "a foreign certificate must not get an answer: {res:?}"
    );
    let log = d.wait_log("TLS handshake failed", Duration::from_secs(5));
    assert!(
        log.contains("UnknownIssuer") || log.contains("unknown issuer"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
async fn hostile_connections_are_closed_while_others_are_served() {
    let d = Daemon::start_with(xcatd_tests::DaemonOptions {
        extra_config:
            "request_idle_timeout = 2\nrequest_timeout = 3\nmax_request_bytes = 1048576\n".into(),
        ..Default::default()
    });
    let ca = d.home.join(".xcat/ca.pem");
    let cred = d.home.join(".xcat/client-cred.pem");
    let addr = d.addr;

    let garbage = {
        let (ca, cred) = (ca.clone(), cred.clone());
        tokio::spawn(async move {
            let mut s = raw_tls(addr, &ca, Some(&cred)).await.unwrap();
            raw_exchange(
                &mut s,
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                Duration::from_secs(10),
            )
            .await
        })
    };
    let huge = {
        let (ca, cred) = (ca.clone(), cred.clone());
        tokio::spawn(async move {
            let mut s = raw_tls(addr, &ca, Some(&cred)).await.unwrap();
            let start = Instant::now();
            let chunk = vec![b'a'; 1 << 20];
            let mut sent = 0usize;
            let _ = s.write_all(b"<xcatrequest><arg>").await;
            // Up to 100 MiB; the server closes long before that.
            while sent < 100 << 20 {
                if s.write_all(&chunk).await.is_err() {
                    break;
                }
                sent += chunk.len();
            }
            (sent, start.elapsed())
        })
    };
    let endless = {
        let (ca, cred) = (ca.clone(), cred.clone());
        tokio::spawn(async move {
            let mut s = raw_tls(addr, &ca, Some(&cred)).await.unwrap();
            let start = Instant::now();
            let _ = s.write_all(b"<xcatrequest>\n").await;
            loop {
                if s.write_all(b"  <arg>x</arg>\n").await.is_err() || s.flush().await.is_err() {
                    break;
                }
                let mut b = [0u8; 1];
                if let Ok(Ok(0)) =
                    tokio::time::timeout(Duration::from_millis(200), s.read(&mut b)).await
                {
                    break;
                }
                if start.elapsed() > Duration::from_secs(20) {
                    break;
                }
            }
            start.elapsed()
        })
    };
    let silent = {
        let (ca, cred) = (ca.clone(), cred.clone());
        tokio::spawn(async move {
            let mut s = raw_tls(addr, &ca, Some(&cred)).await.unwrap();
            let start = Instant::now();
            let mut b = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut b)).await;
            start.elapsed()
        })
    };
    let dtd = {
        let (ca, cred) = (ca.clone(), cred.clone());
        tokio::spawn(async move {
            let mut s = raw_tls(addr, &ca, Some(&cred)).await.unwrap();
            let doc = "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]>\
                       <xcatrequest><command>&lol2;</command></xcatrequest>";
            raw_exchange(&mut s, doc.as_bytes(), Duration::from_secs(10)).await
        })
    };
    // Meanwhile, legitimate clients keep getting answers.
    let cfg = d.client_config();
    for _ in 0..20 {
        let replies = client::run(&cfg, &Request::new("authcheck", vec![]))
            .await
            .unwrap();
        assert_eq!(replies[0].texts("data").next(), Some("Authenticated"));
        assert!(replies.last().unwrap().is_serverdone());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let g = garbage.await.unwrap();
    assert!(
        !g.contains("xcatresponse") || g.contains("<error>"),
        "garbage reply: {g}"
    );
    let (sent, took) = huge.await.unwrap();
    assert!(sent < 100 << 20, "the server read all 100 MiB");
    assert!(took < Duration::from_secs(15));
    assert!(
        endless.await.unwrap() < Duration::from_secs(10),
        "endless request not cut"
    );
    assert!(
        silent.await.unwrap() < Duration::from_secs(10),
        "silent client not cut"
    );
    let dt = dtd.await.unwrap();
    assert!(
        !dt.contains("lollol"),
        "entities must not be expanded: {dt}"
    );
    // An undeclared entity inside a well-framed request: a clear error reply.
    let mut s = raw_tls(addr, &ca, Some(&cred)).await.unwrap();
    let reply = raw_exchange(
        &mut s,
        b"<xcatrequest><command>&xxe;</command></xcatrequest>",
        Duration::from_secs(10),
    )
    .await;
    let docs = documents(&reply);
    assert!(docs.last().unwrap().is_serverdone(), "{reply}");
    assert!(
        docs.iter()
            .any(|r| r.texts("error").any(|e| e.starts_with("Invalid request"))),
        "{reply}"
    );

    let log = d.log();
    for needle in [
        "does not start with",
        "exceeds",
        "not complete within",
        "no data within",
    ] {
        assert!(log.contains(needle), "log lacks {needle:?}:\n{log}");
    }
    // The garbage and the DTD document are both refused before any parsing.
    assert_eq!(log.matches("does not start with").count(), 2, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
async fn two_hundred_concurrent_clients_get_complete_replies() {
    let d = Daemon::start();
    let cfg = d.client_config();
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let cfg = cfg.clone();
        tasks.push(tokio::spawn(async move {
            let n = 20 + (i % 7);
            let replies =
                client::run(&cfg, &Request::new("teststream", vec![n.to_string()])).await?;
            let lines: Vec<String> = replies
                .iter()
                .flat_map(|r| r.texts("data").map(str::to_string))
                .collect();
            let want: Vec<String> = (0..n).map(|k| format!("line {k}")).collect();
            anyhow::ensure!(lines == want, "client {i}: {lines:?}");
            anyhow::ensure!(
                replies.last().map(Response::is_serverdone) == Some(true),
                "no serverdone"
            );
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
async fn ten_thousand_streamed_responses_arrive_in_order() {
    let d = Daemon::start();
    let replies = client::run(
        &d.client_config(),
        &Request::new("teststream", vec!["10000".into()]),
    )
    .await
    .unwrap();
    let lines: Vec<&str> = replies.iter().flat_map(|r| r.texts("data")).collect();
    assert_eq!(lines.len(), 10_000);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(*l, format!("line {i}"));
    }
    assert!(replies.last().unwrap().is_serverdone());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
async fn abort_document_and_disconnect_cancel_within_a_second() {
    let d = Daemon::start();
    let cfg = d.client_config();

    // 1. The abort document.
    let marker = d.root().join("abort-marker");
    let (mut tx, mut rx) = client::connect(&cfg).await.unwrap();
    tx.send(&Request::new(
        "testsleep",
        vec!["60".into(), marker.display().to_string()],
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    tx.send_abort().await.unwrap();
    let mut done = false;
    while let Some(r) = rx.next().await.unwrap() {
        if r.is_serverdone() {
            done = true;
            break;
        }
    }
    assert!(done, "reply must still end with serverdone");
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "abort took {:?}",
        t0.elapsed()
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "cleaned-up");

    // 2. A dropped connection.
    let marker2 = d.root().join("drop-marker");
    let (mut tx, rx) = client::connect(&cfg).await.unwrap();
    tx.send(&Request::new(
        "testsleep",
        vec!["60".into(), marker2.display().to_string()],
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    drop(tx);
    drop(rx);
    while !marker2.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "disconnect did not cancel within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.wait_log("outcome=cancelled", Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
async fn sub_request_responses_reach_the_client_in_order() {
    let d = Daemon::start();
    let replies = client::run(
        &d.client_config(),
        &Request::new("testsub", vec!["50".into()]),
    )
    .await
    .unwrap();
    let lines: Vec<&str> = replies.iter().flat_map(|r| r.texts("data")).collect();
    let mut want = vec!["before".to_string()];
    want.extend((0..50).map(|i| format!("line {i}")));
    want.push("after (sub-request errorcode 0)".into());
    assert_eq!(lines, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
async fn a_panicking_handler_gets_an_error_reply_and_the_daemon_lives() {
    let d = Daemon::start();
    let cfg = d.client_config();
    let replies = client::run(&cfg, &Request::new("testpanic", vec![]))
        .await
        .unwrap();
    assert!(replies
        .iter()
        .any(|r| r.texts("error").any(|e| e.contains("failed unexpectedly"))));
    assert!(replies.last().unwrap().is_serverdone());
    let again = client::run(&cfg, &Request::new("authcheck", vec![]))
        .await
        .unwrap();
    assert_eq!(again[0].texts("data").next(), Some("Authenticated"));
}

#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn client_exit_codes_follow_errorcodes_and_unknown_commands_fail() {
    let d = Daemon::start();
    let out = d.client(&["xcatclient", "authcheck"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Authenticated\n");

    let out = d.client(&["nosuchcmd", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Error: Unsupported request: nosuchcmd"));

    // Errorcodes 2 and 4 in one reply: the client exits with 6.
    let out = d.client(&["testcodes", "2", "4"]);
    assert_eq!(out.status.code(), Some(6), "{out:?}");
}

#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn client_exits_1_when_the_reply_ends_without_serverdone() {
    // A test double for a server that dies mid-reply: a real TLS listener
    // with the daemon's own credentials that answers one document and hangs up.
    let d = Daemon::start();
    let cred = d.root().join("cert/server-cred.pem");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let certs = xcatd_proto::client::load_certs(&cred).unwrap();
            let key = xcatd_proto::client::load_key(&cred).unwrap();
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let cfg = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
            listener.set_nonblocking(true).unwrap();
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let (tcp, _) = l.accept().await.unwrap();
            let mut s = acceptor.accept(tcp).await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            let doc = xcatd_proto::encode_response(&Response::data("partial"));
            s.write_all(doc.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
        });
    });
    let out = std::process::Command::new(xcatd_tests::bin("xcatclient"))
        .args(["authcheck"])
        .env("HOME", &d.home)
        .env("XCATHOST", addr.to_string())
        .output()
        .unwrap();
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "partial\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ended prematurely"));
}

#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn sigterm_stops_the_daemon_cleanly() {
    let mut d = Daemon::start();
    let st = d.stop().expect("status");
    assert!(st.success(), "{st:?}");
    let log = d.log();
    assert!(log.contains("shutdown complete"), "{log}");
}

#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn lsxcatd_reports_version_database_and_commands() {
    let d = Daemon::start();
    let out = d.ok(&["lsxcatd", "-a"]);
    assert!(out.starts_with("Version "), "{out}");
    assert!(out.contains("dbengine=SQLite"), "{out}");
    let cmds = out
        .lines()
        .find(|l| l.starts_with("commands="))
        .expect("commands line");
    for c in [
        "authcheck",
        "capimage",
        "chtab",
        "lsxcatd",
        "noderange",
        "tabdump",
        "xdsh",
    ] {
        assert!(
            cmds.split(['=', ',']).any(|x| x == c),
            "{c} missing: {cmds}"
        );
    }
    let bad = d.client(&["lsxcatd", "--bogus"]);
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn init_is_idempotent_and_force_replaces_keys() {
    let d = Daemon::start();
    let cred = d.root().join("cert/server-cred.pem");
    let ca = d.root().join("cert/ca.pem");
    let client = d.home.join(".xcat/client-cred.pem");
    let before = (
        xcatd_tests::slurp(&cred),
        xcatd_tests::slurp(&ca),
        xcatd_tests::slurp(&client),
    );
    use std::os::unix::fs::PermissionsExt;
    for p in [&cred, &client, &d.root().join("cert/ca-key.pem")] {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} mode {mode:o}", p.display());
    }
    let init = |extra: &[&str]| {
        let out = std::process::Command::new(xcatd_tests::bin("xcatd"))
            .arg("--config")
            .arg(&d.config_path)
            .arg("init")
            .arg("--client-dir")
            .arg(d.home.join(".xcat"))
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let again = init(&[]);
    assert!(again.contains("kept"), "{again}");
    assert_eq!(
        before,
        (
            xcatd_tests::slurp(&cred),
            xcatd_tests::slurp(&ca),
            xcatd_tests::slurp(&client)
        )
    );
    // The default policy rows are seeded once, not duplicated.
    let pol = d.ok(&["tabdump", "policy"]);
    assert_eq!(
        pol.lines().filter(|l| l.starts_with("\"1\",")).count(),
        1,
        "{pol}"
    );
    assert!(pol.contains("\"1.2\",\"testmn\""), "{pol}");
    // --force starts over (the running daemon keeps its loaded credential).
    init(&["--force"]);
    assert_ne!(
        before.1,
        xcatd_tests::slurp(&ca),
        "--force must make a new CA"
    );
    assert_ne!(before.0, xcatd_tests::slurp(&cred));
}
