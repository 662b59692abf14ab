//! Connection limits and slow peers: 1,000 readers that read nothing from
//! several loopback addresses do not hold up a fast client; a peer holds at
//! most its share; the pool is bounded; a drip-fed head is cut off.

mod common;
use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Is the connection closed by the server (EOF or reset) within a moment?
async fn closed_at_once(tcp: &mut tokio::net::TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_slow_readers_do_not_block_a_fast_one() {
    let s = serve_with(|h| {
        h.max_connections = 1100;
        h.max_connections_per_peer = 70;
        h.send_buffer_bytes = 64 << 10;
    })
    .await;
    let big = std::fs::File::create(s.install().join("rootimg.cpio.zst")).unwrap();
    big.set_len(1 << 30).unwrap();
    put(&s.install().join("kernel"), &vec![7u8; 64 << 20]);
    let mut slow = Vec::new();
    for i in 0..1000 {
        // 16 source addresses: 127.0.0.2 .. 127.0.0.17, 63 connections or fewer each.
        let src = format!("127.0.0.{}", 2 + i % 16);
        let mut tcp = connect_from(&src, s.addr).await.unwrap();
        tcp.write_all(b"GET /install/rootimg.cpio.zst HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        slow.push(tcp);
    }
    // Every slow reader got its response started (the server is not waiting on any of them).
    for tcp in slow.iter_mut().step_by(97) {
        let r = tokio::time::timeout(Duration::from_secs(20), read_response(tcp, true)).await;
        assert_eq!(r.expect("a head in time").unwrap().status, 200);
    }
    let t0 = Instant::now();
    let r = get(s.addr, "/install/kernel").await;
    let took = t0.elapsed();
    assert_eq!(r.status, 200);
    assert!(r.body.len() == 64 << 20 && r.body.iter().all(|&b| b == 7));
    assert!(
        took < Duration::from_secs(20),
        "the fast client took {took:?}"
    );
    drop(slow);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_holds_at_most_its_share_and_the_pool_is_bounded() {
    let s = serve_with(|h| {
        h.max_connections = 6;
        h.max_connections_per_peer = 3;
    })
    .await;
    put(&s.install().join("f"), b"data");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.21", s.addr).await.unwrap());
    }
    // Give the server time to admit them before the fourth arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = connect_from("127.0.0.21", s.addr).await.unwrap();
    assert!(closed_at_once(&mut fourth).await, "over the peer's share");
    // Another peer is still served, while the first holds its share.
    for _ in 0..3 {
        held.push(connect_from("127.0.0.22", s.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut seventh = connect_from("127.0.0.23", s.addr).await.unwrap();
    assert!(closed_at_once(&mut seventh).await, "over the pool");
    // Held connections are served, and freed slots come back.
    let tcp = &mut held[0];
    tcp.write_all(b"GET /install/f HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(tcp, false).await.unwrap().body, b"data");
    held.truncate(2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = get(s.addr, "/install/f").await;
    assert_eq!(r.body, b"data");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drip_fed_head_and_an_idle_connection_are_cut_off() {
    let s = serve_with(|h| {
        h.header_timeout_secs = 2;
        h.idle_timeout_secs = 1;
        h.send_timeout_secs = 2;
    })
    .await;
    put(&s.install().join("f"), b"data");
    let mut drip = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let t0 = Instant::now();
    let mut answer = None;
    for b in b"GET /install/f HTTP/1.1\r\nX-Slow: "
        .iter()
        .chain(&[b'a'; 100])
    {
        if drip.write_all(&[*b]).await.is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(100), drip.read(&mut buf)).await {
            answer = Some(String::from_utf8_lossy(&buf[..r.unwrap_or(0)]).to_string());
            break;
        }
    }
    let answer = answer.expect("cut off before the drip ended");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // Kept alive after one request, then idle past idle_timeout: closed.
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /install/f HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut tcp, false).await.unwrap().body, b"data");
    assert!(closed_at_once(&mut tcp).await, "idle connection closed");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_dropped_after_the_send_timeout() {
    let s = serve_with(|h| h.send_timeout_secs = 1).await;
    let f = std::fs::File::create(s.install().join("big")).unwrap();
    f.set_len(1 << 30).unwrap();
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /install/big HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut sink = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match tcp.read(&mut sink).await {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    assert!(total < 1 << 30, "cut short, not sent whole: {total}");
    let log = s.access_log();
    assert!(log.contains("GET /install/big 200 "), "{log}");
    s.stop().await;
}
