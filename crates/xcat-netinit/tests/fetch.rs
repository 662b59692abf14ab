//! The fetch against a local server that answers 503, 404, cuts the
//! connection, ignores ranges or replaces the file: the bytes read are the
//! file's, exactly, or the fetch fails for a reason that will not mend.

mod common;

use common::*;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use xcat_netinit::error::Say;
use xcat_netinit::fetch::{fetch_error, Fetch, FetchError, FetchOptions};
use xcat_netinit::http::{Timeouts, Url};

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn quick(retry_not_found: bool) -> FetchOptions {
    FetchOptions {
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            read: Duration::from_secs(2),
        },
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        retry_not_found,
    }
}

/// A [`Say`] that keeps the lines.
fn recorder() -> (Say, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    (
        Arc::new(move |s: &str| l.lock().unwrap().push(s.to_string())),
        lines,
    )
}

fn fetch(server: &Server, path: &str, opts: FetchOptions, say: Say) -> Fetch {
    Fetch::new(Url::parse(&server.url(path)).unwrap(), opts, say)
}

#[test]
fn cuts_and_503s_are_resumed_with_range_and_the_bytes_are_exact() {
    let server = Server::start();
    let d = data(3_000_000);
    server.put(
        "/img/rootimg.tar.zst",
        d.clone(),
        "Tue, 01 Apr 2025 10:00:00 GMT",
    );
    server.faults([
        Fault::Unavailable,
        Fault::CutAfter(1_000_000),
        Fault::Close,
        Fault::Unavailable,
        Fault::CutAfter(777),
    ]);
    let (say, lines) = recorder();
    let got = read_all(fetch(&server, "/img/rootimg.tar.zst", quick(true), say)).unwrap();
    assert!(got == d, "the bytes differ ({} read)", got.len());
    let seen = server.seen();
    let ranges: Vec<Option<&str>> = seen.iter().map(|s| s.range.as_deref()).collect();
    assert_eq!(
        ranges,
        [
            None,
            None,
            Some("bytes=1000000-"),
            Some("bytes=1000000-"),
            Some("bytes=1000000-"),
            Some("bytes=1000777-"),
        ]
    );
    assert!(seen[2..]
        .iter()
        .all(|s| s.if_range.as_deref() == Some("Tue, 01 Apr 2025 10:00:00 GMT")));
    let lines = lines.lock().unwrap();
    assert_eq!(lines.len(), 5, "one line per retry: {lines:?}");
    assert!(
        lines[0].contains("503") && lines[0].contains("retrying in 10 ms"),
        "{lines:?}"
    );
    assert!(lines[1].contains("from byte 1000000"), "{lines:?}");
}

#[test]
fn a_missing_image_is_waited_for_and_a_missing_record_is_final() {
    let server = Server::start();
    let d = data(10_000);
    server.put("/img/rootimg.cpio.gz", d.clone(), "v1");
    server.faults([Fault::NotFound, Fault::NotFound]);
    let (say, lines) = recorder();
    let got = read_all(fetch(&server, "/img/rootimg.cpio.gz", quick(true), say)).unwrap();
    assert!(got == d);
    assert_eq!(lines.lock().unwrap().len(), 2);
    assert!(
        lines.lock().unwrap()[0].contains("404"),
        "{:?}",
        lines.lock().unwrap()
    );

    let (say, _) = recorder();
    let e = read_all(fetch(
        &server,
        "/img/rootimg.cpio.gz.info",
        quick(false),
        say,
    ))
    .unwrap_err();
    assert!(matches!(fetch_error(&e), Some(FetchError::NotFound)), "{e}");
}

#[test]
fn a_file_replaced_during_the_fetch_is_refused_not_spliced() {
    let server = Server::start();
    server.put("/f", data(100_000), "v1");
    server.faults([Fault::CutAfter(40_000)]);
    let s = server.clone();
    // the server's file changes while the fetch waits to retry
    let say: Say = Arc::new(move |_: &str| s.put("/f", vec![1u8; 100_000], "v2"));
    let e = read_all(fetch(&server, "/f", quick(true), say)).unwrap_err();
    assert!(
        matches!(fetch_error(&e), Some(FetchError::Changed { at: 40_000 })),
        "{e}"
    );
    assert_eq!(server.seen()[1].if_range.as_deref(), Some("v1"));
}

#[test]
fn a_server_that_ignores_ranges_is_read_again_from_the_start() {
    let server = Server::start();
    let d = data(200_000);
    server.put("/f", d.clone(), "v1");
    server.ignore_ranges(true);
    server.faults([Fault::CutAfter(150_000)]);
    let (say, lines) = recorder();
    let got = read_all(fetch(&server, "/f", quick(true), say)).unwrap();
    assert!(got == d, "the bytes differ");
    assert!(lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("ignores byte ranges")));
}

#[test]
fn a_length_other_than_the_record_says_is_refused_at_once() {
    let server = Server::start();
    server.put("/f", data(1000), "v1");
    let (say, _) = recorder();
    let mut f = fetch(&server, "/f", quick(true), say).expect_size(Some(999));
    let e = f.read(&mut [0u8; 10]).unwrap_err();
    assert!(
        matches!(
            fetch_error(&e),
            Some(FetchError::Size {
                got: 1000,
                expected: 999
            })
        ),
        "{e}"
    );
}

#[test]
fn a_refused_connection_is_retried_until_the_server_is_up() {
    // a port nobody listens on, for a while
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = Url::parse(&format!("http://127.0.0.1:{port}/f")).unwrap();
    let (say, lines) = recorder();
    let reader = std::thread::spawn(move || read_all(Fetch::new(url, quick(true), say)));
    std::thread::sleep(Duration::from_millis(150));
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 1024];
    let _ = std::io::Read::read(&mut conn, &mut buf).unwrap();
    std::io::Write::write_all(
        &mut conn,
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    )
    .unwrap();
    assert_eq!(reader.join().unwrap().unwrap(), b"hello");
    let lines = lines.lock().unwrap();
    assert!(
        !lines.is_empty() && lines[0].contains("cannot connect"),
        "{lines:?}"
    );
}
