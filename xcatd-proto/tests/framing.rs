//! Reading documents off real byte streams with size and time limits.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{duplex, AsyncWriteExt, DuplexStream};
use xcatd_proto::{
    encode_request, encode_response, CodecError, FrameError, FrameLimits, Request, RequestReader,
    Response, ResponseReader,
};

const SHORT: Duration = Duration::from_millis(200);

fn limits(max_bytes: usize) -> FrameLimits {
    FrameLimits {
        max_bytes,
        first_byte_timeout: SHORT,
        total_timeout: Duration::from_secs(2),
    }
}

/// What a peer sent before the reader starts: a request reader over `bytes`,
/// and the peer's end (drop it for end of stream, keep it to hold the
/// connection open).
async fn requests_after(bytes: &[u8]) -> (RequestReader<DuplexStream>, DuplexStream) {
    let (mut peer, ours) = duplex(bytes.len().max(64));
    peer.write_all(bytes).await.unwrap();
    (RequestReader::new(ours, limits(1 << 20)), peer)
}

/// A response reader over `bytes` already sent, as [`requests_after`].
async fn responses_after(
    bytes: &[u8],
    max_bytes: usize,
    timeout: Option<Duration>,
) -> (ResponseReader<DuplexStream>, DuplexStream) {
    let (mut peer, ours) = duplex(bytes.len().max(64));
    peer.write_all(bytes).await.unwrap();
    (ResponseReader::new(ours, max_bytes, timeout), peer)
}

fn sample_request() -> Request {
    let mut r = Request::new("nodels", vec!["-v".into(), "a b".into()]);
    r.noderange = Some("n1-n4".into());
    r.cwd = Some("/tmp".into());
    r
}

#[tokio::test]
async fn two_documents_in_one_write() {
    let (mut client, server) = duplex(64 * 1024);
    let mut reader = RequestReader::new(server, limits(1 << 20));
    let both = format!(
        "{}{}",
        encode_request(&sample_request()),
        encode_request(&Request::abort_document())
    );
    client.write_all(both.as_bytes()).await.unwrap();
    assert_eq!(
        reader.next_request().await.unwrap().unwrap(),
        sample_request()
    );
    let abort = reader.next_request().await.unwrap().unwrap();
    assert!(abort.abort);
    drop(client);
    assert!(reader.next_request().await.unwrap().is_none());
}

#[tokio::test]
async fn compact_documents_back_to_back_without_newline() {
    let (mut client, server) = duplex(64 * 1024);
    let mut reader = RequestReader::new(server, limits(1 << 20));
    client
        .write_all(b"<xcatrequest><command>a</command></xcatrequest><xcatrequest><command>b</command></xcatrequest>")
        .await
        .unwrap();
    drop(client);
    assert_eq!(reader.next_request().await.unwrap().unwrap().command, "a");
    assert_eq!(reader.next_request().await.unwrap().unwrap().command, "b");
    assert!(reader.next_request().await.unwrap().is_none());
}

#[tokio::test]
async fn document_in_one_byte_writes() {
    let (mut client, server) = duplex(1);
    let doc = encode_request(&sample_request());
    let writer = tokio::spawn(async move {
        for b in doc.as_bytes() {
            client.write_all(&[*b]).await.unwrap();
            tokio::task::yield_now().await;
        }
        client
    });
    let mut reader = RequestReader::new(server, limits(1 << 20));
    assert_eq!(
        reader.next_request().await.unwrap().unwrap(),
        sample_request()
    );
    let client = writer.await.unwrap();
    drop(client);
    assert!(reader.next_request().await.unwrap().is_none());
}

#[tokio::test]
async fn cancelled_read_loses_nothing() {
    let (mut client, server) = duplex(64 * 1024);
    let mut reader = RequestReader::new(server, limits(1 << 20));
    let doc = encode_request(&sample_request());
    let (head, tail) = doc.split_at(20);
    client.write_all(head.as_bytes()).await.unwrap();
    // Drop the read future while the document is incomplete.
    let r = tokio::time::timeout(Duration::from_millis(50), reader.next_request_untimed()).await;
    assert!(r.is_err(), "must still be waiting for the rest");
    client.write_all(tail.as_bytes()).await.unwrap();
    assert_eq!(
        reader.next_request().await.unwrap().unwrap(),
        sample_request()
    );
}

#[tokio::test]
async fn garbage_is_bad_start_within_15_bytes() {
    let (mut client, server) = duplex(64 * 1024);
    // Something that never stops sending: the reader must decide from the start.
    let sent = Arc::new(AtomicUsize::new(0));
    let sent2 = sent.clone();
    let writer = tokio::spawn(async move {
        client.write_all(b"GET / HTTP/1.0\r\n").await.ok();
        sent2.fetch_add(16, Ordering::SeqCst);
        // Keep the connection open.
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(client);
    });
    let mut reader = RequestReader::new(server, limits(1 << 20));
    let err = reader.next_request().await.unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::BadStart {
                expected: "xcatrequest"
            }
        ),
        "{err:?}"
    );
    writer.abort();

    // Decided on the first differing byte, even before 15 bytes arrived.
    let (mut reader, mut client) = requests_after(b"  \n<xcatreq").await;
    let r = tokio::time::timeout(Duration::from_millis(50), reader.next_request_untimed()).await;
    assert!(r.is_err(), "a valid prefix must wait for more bytes");
    client.write_all(b"X").await.unwrap();
    assert!(matches!(
        reader.next_request().await,
        Err(FrameError::BadStart { .. })
    ));

    // An XML declaration is not what xCAT clients send either.
    let (mut reader, _client) = requests_after(b"<?xml version=\"1.0\"?>").await;
    assert!(matches!(
        reader.next_request().await,
        Err(FrameError::BadStart { .. })
    ));
}

#[tokio::test]
async fn oversized_is_too_large_without_reading_everything() {
    const CAP: usize = 64 * 1024;
    const TOTAL: usize = 16 << 20;
    let (mut client, server) = duplex(4096);
    let written = Arc::new(AtomicUsize::new(0));
    let written2 = written.clone();
    let writer = tokio::spawn(async move {
        client.write_all(b"<xcatrequest><arg>").await.unwrap();
        let chunk = vec![b'a'; 1024];
        while written2.load(Ordering::SeqCst) < TOTAL {
            if client.write_all(&chunk).await.is_err() {
                return;
            }
            written2.fetch_add(chunk.len(), Ordering::SeqCst);
        }
    });
    let mut reader = RequestReader::new(server, limits(CAP));
    let err = reader.next_request().await.unwrap_err();
    assert!(
        matches!(err, FrameError::TooLarge { limit: CAP }),
        "{err:?}"
    );
    let seen = written.load(Ordering::SeqCst);
    // cap + one read (16 KiB) + the pipe buffer + one chunk in flight.
    assert!(
        seen < CAP + 16 * 1024 + 4096 + 2048,
        "wrote {seen} bytes before the error"
    );
    drop(reader);
    writer.await.unwrap();
}

#[tokio::test]
async fn complete_but_oversized_document_is_too_large() {
    let (mut client, server) = duplex(64 * 1024);
    let doc = encode_request(&Request::new("x", vec!["a".repeat(500)]));
    client.write_all(doc.as_bytes()).await.unwrap();
    let mut reader = RequestReader::new(server, limits(200));
    assert!(matches!(
        reader.next_request().await,
        Err(FrameError::TooLarge { limit: 200 })
    ));
}

#[tokio::test]
async fn silent_peer_is_idle_timeout() {
    let (_client, server) = duplex(64);
    let mut reader = RequestReader::new(server, limits(1 << 20));
    let t0 = Instant::now();
    let err = reader.next_request().await.unwrap_err();
    let took = t0.elapsed();
    assert!(
        matches!(err, FrameError::IdleTimeout(d) if d == SHORT),
        "{err:?}"
    );
    assert!(took >= SHORT && took < SHORT * 5, "{took:?}");
}

#[tokio::test]
async fn whitespace_does_not_count_as_first_byte() {
    let (mut client, server) = duplex(64);
    let writer = tokio::spawn(async move {
        for _ in 0..20 {
            if client.write_all(b"\n").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut reader = RequestReader::new(server, limits(1 << 20));
    let t0 = Instant::now();
    let err = reader.next_request().await.unwrap_err();
    assert!(matches!(err, FrameError::IdleTimeout(_)), "{err:?}");
    assert!(t0.elapsed() < SHORT * 5);
    writer.abort();
}

#[tokio::test]
async fn endless_slow_document_is_total_timeout() {
    let (mut client, server) = duplex(64);
    let writer = tokio::spawn(async move {
        client.write_all(b"<xcatrequest><arg>").await.unwrap();
        // Always within the idle limit, never finishing.
        loop {
            if client.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let lim = FrameLimits {
        max_bytes: 1 << 20,
        first_byte_timeout: SHORT,
        total_timeout: Duration::from_millis(600),
    };
    let mut reader = RequestReader::new(server, lim);
    let t0 = Instant::now();
    let err = reader.next_request().await.unwrap_err();
    let took = t0.elapsed();
    assert!(
        matches!(err, FrameError::TotalTimeout(d) if d == Duration::from_millis(600)),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(3),
        "{took:?}"
    );
    writer.abort();
}

#[tokio::test]
async fn untimed_waits_past_first_byte_timeout_but_total_applies() {
    let (mut client, server) = duplex(64);
    let mut reader = RequestReader::new(server, limits(1 << 20));
    let r = tokio::time::timeout(SHORT * 3, reader.next_request_untimed()).await;
    assert!(r.is_err(), "untimed read must not fail on silence");
    client
        .write_all(encode_request(&Request::abort_document()).as_bytes())
        .await
        .unwrap();
    assert!(reader.next_request_untimed().await.unwrap().unwrap().abort);
    drop(client);
    assert!(reader.next_request_untimed().await.unwrap().is_none());
}

#[tokio::test]
async fn eof_mid_document_is_truncated() {
    let (mut reader, _) = requests_after(b"<xcatrequest>\n  <command>nodels</comm").await;
    assert!(matches!(
        reader.next_request().await,
        Err(FrameError::Truncated)
    ));

    // EOF after only a partial start tag is also a truncation.
    let (mut reader, _) = requests_after(b"<xcat").await;
    assert!(matches!(
        reader.next_request().await,
        Err(FrameError::Truncated)
    ));

    // Only whitespace then EOF is a clean end.
    let (mut reader, _) = requests_after(b" \n\n").await;
    assert!(reader.next_request().await.unwrap().is_none());
}

#[tokio::test]
async fn billion_laughs_refused_before_the_end_tag() {
    // The connection stays open: the refusal must not wait for the end tag.
    let (mut reader, _client) =
        requests_after(b"<xcatrequest>\n<!DOCTYPE lolz [<!ENTITY lol \"lol\">").await;
    let err = reader.next_request().await.unwrap_err();
    assert!(matches!(err, FrameError::Codec(CodecError::Dtd)), "{err:?}");
}

#[tokio::test]
async fn malformed_document_is_codec_error() {
    let (mut reader, _client) =
        requests_after(b"<xcatrequest><arg>x</command></xcatrequest>").await;
    assert!(matches!(
        reader.next_request().await,
        Err(FrameError::Codec(CodecError::Malformed(_)))
    ));
}

#[tokio::test]
async fn responses_back_to_back() {
    let (mut server, client) = duplex(64 * 1024);
    let docs = [
        Response::data("line 1"),
        Response::node(xcatd_proto::NodeRecord {
            name: "n1".into(),
            data: vec!["on".into()],
            ..Default::default()
        }),
        Response::serverdone(),
    ];
    let mut all = String::new();
    for d in &docs {
        all.push_str(&encode_response(d));
    }
    // An empty document as an old daemon might write it.
    all.push_str("\n<xcatresponse/>\n");
    let writer = tokio::spawn(async move {
        // Uneven pieces across document boundaries.
        for piece in all.as_bytes().chunks(7) {
            server.write_all(piece).await.unwrap();
        }
    });
    let mut reader = ResponseReader::new(client, 1 << 20, Some(Duration::from_secs(2)));
    for d in &docs {
        assert_eq!(&reader.next_response().await.unwrap().unwrap(), d);
    }
    assert_eq!(
        reader.next_response().await.unwrap().unwrap(),
        Response::new()
    );
    writer.await.unwrap();
    assert!(reader.next_response().await.unwrap().is_none());
}

#[tokio::test]
async fn response_reader_limits() {
    // Silence.
    let (_server, client) = duplex(64);
    let mut reader = ResponseReader::new(client, 1 << 20, Some(SHORT));
    assert!(matches!(reader.next_response().await, Err(FrameError::IdleTimeout(d)) if d == SHORT));

    // Silence mid-document.
    let (mut reader, _server) =
        responses_after(b"<xcatresponse><data>", 1 << 20, Some(SHORT)).await;
    assert!(matches!(
        reader.next_response().await,
        Err(FrameError::IdleTimeout(_))
    ));

    // EOF inside.
    let (mut reader, _) = responses_after(b"<xcatresponse><data>x</data>", 1 << 20, None).await;
    assert!(matches!(
        reader.next_response().await,
        Err(FrameError::Truncated)
    ));

    // Too large.
    let (mut reader, _server) = responses_after(
        encode_response(&Response::data("y".repeat(5000))).as_bytes(),
        1000,
        None,
    )
    .await;
    assert!(matches!(
        reader.next_response().await,
        Err(FrameError::TooLarge { limit: 1000 })
    ));

    // Wrong start.
    let (mut reader, _server) = responses_after(b"<xcatrequest>", 1000, None).await;
    assert!(matches!(
        reader.next_response().await,
        Err(FrameError::BadStart {
            expected: "xcatresponse"
        })
    ));
}
