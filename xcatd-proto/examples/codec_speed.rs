//! Rough throughput of the request path (framing + decoding) and of response
//! encoding. Run with `cargo run --release -p xcatd-proto --example codec_speed`.
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use xcatd_proto::{
    decode_request, encode_request, encode_response, FrameLimits, NodeRecord, Request,
    RequestReader, Response,
};

fn main() {
    let mut req = Request::new("capimage", vec!["-p".into(), "compute".into(), "-V".into()]);
    req.noderange = Some("node1".into());
    req.cwd = Some("/root".into());
    req.clienttype = Some("cli".into());
    let doc = encode_request(&req);

    let n = 200_000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(decode_request(doc.as_bytes()).unwrap());
    }
    let per = t.elapsed() / n;
    println!(
        "decode_request (example request, {} bytes): {per:?} each",
        doc.len()
    );

    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(encode_request(&req));
    }
    println!("encode_request: {:?} each", t.elapsed() / n);

    let resp = Response::node(NodeRecord {
        name: "node0001".into(),
        data: vec!["on".into()],
        ..Default::default()
    });
    let t = Instant::now();
    let mut bytes = 0;
    for _ in 0..n {
        bytes += std::hint::black_box(encode_response(&resp)).len();
    }
    let el = t.elapsed();
    println!(
        "encode_response (node record): {:?} each, {:.0} MB/s",
        el / n,
        bytes as f64 / el.as_secs_f64() / 1e6
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let count = 100_000usize;
        let (mut w, r) = tokio::io::duplex(256 * 1024);
        let d = doc.clone();
        let writer = tokio::spawn(async move {
            let many = d.repeat(100);
            for _ in 0..count / 100 {
                w.write_all(many.as_bytes()).await.unwrap();
            }
        });
        let mut reader = RequestReader::new(r, FrameLimits::default());
        let t = Instant::now();
        let mut got = 0;
        while let Some(r) = reader.next_request_untimed().await.unwrap() {
            std::hint::black_box(r);
            got += 1;
        }
        writer.await.unwrap();
        let el = t.elapsed();
        println!(
            "RequestReader over a pipe: {got} requests in {el:?} ({:?} each)",
            el / got as u32
        );
    });
}
