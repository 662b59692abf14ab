//! Range, HEAD and conditional answers on a 1 GiB (sparse) file, the
//! access log, keep-alive, and a file replaced while it is downloaded.

mod common;
use common::*;
use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GIB: u64 = 1 << 30;

/// A 1 GiB sparse file with marks at its start and end.
fn big(path: &std::path::Path) {
    let mut f = std::fs::File::create(path).unwrap();
    f.set_len(GIB).unwrap();
    f.write_all(b"FIRST-BYTES").unwrap();
    f.seek(SeekFrom::Start(GIB - 10)).unwrap();
    f.write_all(b"LAST-BYTES").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gib_file_answers_every_kind_of_range() {
    let s = serve().await;
    let img = s.install().join("netboot/img");
    std::fs::create_dir_all(&img).unwrap();
    big(&img.join("rootimg.cpio.gz"));
    let t = "/install/netboot/img/rootimg.cpio.gz";
    let range = |r: &str| format!("Range: {r}\r\n");

    let r = request(s.addr, "GET", t, &range("bytes=0-10")).await;
    assert_eq!((r.status, r.body.as_slice()), (206, &b"FIRST-BYTES"[..]));
    assert_eq!(
        r.header("content-range").unwrap(),
        format!("bytes 0-10/{GIB}")
    );
    assert_eq!(r.header("content-length").unwrap(), "11");

    let r = request(
        s.addr,
        "GET",
        t,
        &range(&format!("bytes={}-{}", GIB - 10, GIB - 1)),
    )
    .await;
    assert_eq!((r.status, r.body.as_slice()), (206, &b"LAST-BYTES"[..]));

    let r = request(s.addr, "GET", t, &range("bytes=-10")).await;
    assert_eq!((r.status, r.body.as_slice()), (206, &b"LAST-BYTES"[..]));
    assert_eq!(
        r.header("content-range").unwrap(),
        format!("bytes {}-{}/{GIB}", GIB - 10, GIB - 1)
    );

    let r = request(s.addr, "GET", t, &range(&format!("bytes={}-", GIB - 4))).await;
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range").unwrap(),
        format!("bytes {}-{}/{GIB}", GIB - 4, GIB - 1)
    );
    assert_eq!(r.body, b"YTES");

    let r = request(s.addr, "GET", t, &range(&format!("bytes={GIB}-"))).await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range").unwrap(), format!("bytes */{GIB}"));
    assert!(r.body.is_empty());

    let r = request(s.addr, "HEAD", t, "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length").unwrap(), GIB.to_string());
    assert_eq!(r.header("accept-ranges").unwrap(), "bytes");
    assert!(r.header("last-modified").is_some());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_gib_streams_and_if_modified_since_answers_304() {
    let s = serve().await;
    big(&s.install().join("big"));
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /install/big HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut tcp, true).await.unwrap();
    assert_eq!(r.status, 200);
    let lm = r.header("last-modified").unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let (mut total, mut head, mut tail) = (0u64, Vec::new(), Vec::new());
    while total < GIB {
        let n = tcp
            .read(&mut buf[..(GIB - total).min(1 << 20) as usize])
            .await
            .unwrap();
        assert!(n > 0, "cut at {total}");
        if head.len() < 11 {
            head.extend_from_slice(&buf[..n.min(11 - head.len())]);
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 20 {
            tail.drain(..tail.len() - 20);
        }
        total += n as u64;
    }
    assert_eq!(
        (head.as_slice(), &tail[10..]),
        (&b"FIRST-BYTES"[..], &b"LAST-BYTES"[..])
    );
    // The same connection carries the next request (keep-alive).
    tcp.write_all(
        format!("GET /install/big HTTP/1.1\r\nIf-Modified-Since: {lm}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let r = read_response(&mut tcp, true).await.unwrap();
    assert_eq!(r.status, 304, "{}", r.head);
    let older =
        httpdate::fmt_http_date(httpdate::parse_http_date(&lm).unwrap() - Duration::from_secs(60));
    tcp.write_all(
        format!("HEAD /install/big HTTP/1.1\r\nIf-Modified-Since: {older}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(read_response(&mut tcp, true).await.unwrap().status, 200);
    drop(tcp);
    let log = s.access_log();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(
        lines[0].starts_with(&format!("127.0.0.1 GET /install/big 200 {GIB} ")),
        "{log}"
    );
    assert!(
        lines[1].starts_with("127.0.0.1 GET /install/big 304 0 "),
        "{log}"
    );
    assert!(
        lines[2].starts_with("127.0.0.1 HEAD /install/big 200 0 "),
        "{log}"
    );
    s.stop().await;
}

/// Pattern files: every byte of `a` is b'A', of `b` b'B' (and a different length).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_renamed_over_during_a_download_is_served_whole() {
    let s = serve().await;
    let path = s.install().join("rootimg.tar.zst");
    let old = vec![b'A'; 64 << 20];
    let new = vec![b'B'; 48 << 20];
    put(&path, &old);
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /install/rootimg.tar.zst HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut tcp, true).await.unwrap();
    assert_eq!(r.header("content-length").unwrap(), old.len().to_string());
    let mut got = vec![0u8; 1 << 20];
    tcp.read_exact(&mut got).await.unwrap();
    // packimage's way: a temporary name, then rename into place.
    put(&s.install().join(".rootimg.tar.zst.tmp"), &new);
    std::fs::rename(s.install().join(".rootimg.tar.zst.tmp"), &path).unwrap();
    // Truncating the old inode would show; rename must not touch it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    tcp.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), old.len());
    assert!(got == old, "the old content, whole");
    let after = get(s.addr, "/install/rootimg.tar.zst").await;
    assert!(after.body == new, "a new request gets the new file");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_files_replaced_while_many_clients_download_never_mix() {
    let s = serve().await;
    let path = s.install().join("initrd-stateless.gz");
    put(&path, &vec![b'0'; 8 << 20]);
    let addr = s.addr;
    let readers: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async move {
                let mut seen = 0;
                for _ in 0..10 {
                    let r = get(addr, "/install/initrd-stateless.gz").await;
                    assert_eq!(r.status, 200, "{}", r.head);
                    let body = r.body;
                    let first = body[0];
                    assert!(body.iter().all(|&b| b == first), "mixed content");
                    assert_eq!(body.len(), (8 << 20) + usize::from(first - b'0') * 4096);
                    seen += 1;
                }
                seen
            })
        })
        .collect();
    for gen in 1..=9u8 {
        let tmp = s.install().join(".tmp");
        put(&tmp, &vec![b'0' + gen; (8 << 20) + usize::from(gen) * 4096]);
        std::fs::rename(&tmp, &path).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for r in readers {
        assert_eq!(r.await.unwrap(), 10);
    }
    s.stop().await;
}
