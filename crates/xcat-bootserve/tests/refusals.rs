//! What the boot service refuses, over real sockets on real files: each
//! request below names something that exists on disk, and the answer must
//! be a bare 404 (no detail) while the legitimate files beside it are served.

mod common;
use common::*;
use std::os::unix::fs::symlink;

/// A server file the planted links point at.
const SECRET: &[u8] = b"root:secret-hash:19000:0:99999:7:::\n";

async fn refused(s: &Served, target: &str) {
    let r = get(s.addr, target).await;
    assert_eq!(r.status, 404, "{target}: {}", r.head);
    assert!(r.body.is_empty(), "{target}: no detail in the body");
    assert!(!String::from_utf8_lossy(&r.body).contains("secret"));
}

/// An image directory as capimage and packimage leave it: the node's tree
/// in `.private/rootimg`, `rootimg` a link to it, packed files beside.
fn image(install: &std::path::Path, secret: &std::path::Path) -> std::path::PathBuf {
    let img = install.join("netboot/deb12/x86_64/compute");
    put(&img.join(".private/rootimg/etc/shadow"), SECRET);
    put(&img.join(".private/rootimg.gen-1/etc/shadow"), SECRET);
    symlink(".private/rootimg", img.join("rootimg")).unwrap();
    put(&img.join("rootimg.cpio.gz"), b"packed");
    put(&img.join("kernel"), b"kernel");
    put(&img.join(".lock"), b"lock");
    // A hostile link a node put inside its own tree, pointing at a server file.
    symlink(secret, img.join(".private/rootimg/etc/evil")).unwrap();
    img
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_directory_serves_its_packed_files_and_nothing_of_the_tree() {
    let s = serve().await;
    let secret = s.dir.path().join("shadow");
    put(&secret, SECRET);
    image(&s.install(), &secret);
    let base = "/install/netboot/deb12/x86_64/compute";
    assert_eq!(
        get(s.addr, &format!("{base}/rootimg.cpio.gz")).await.body,
        b"packed"
    );
    assert_eq!(get(s.addr, &format!("{base}/kernel")).await.body, b"kernel");
    for rel in [
        "rootimg/etc/shadow",
        "rootimg/etc/evil",
        "rootimg",
        ".private/rootimg/etc/shadow",
        ".private/rootimg/etc/evil",
        "%2eprivate/rootimg/etc/shadow",
        "rootimg.gen-1/etc/shadow",
        ".lock",
        ".",
        "",
    ] {
        refused(&s, &format!("{base}/{rel}")).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_planted_in_the_tree_is_never_followed() {
    let s = serve().await;
    let secret = s.dir.path().join("shadow");
    put(&secret, SECRET);
    put(&s.tftp().join("xcat/real"), b"real");
    symlink(&secret, s.tftp().join("xcat/abs")).unwrap();
    symlink("../../shadow", s.tftp().join("xcat/rel")).unwrap();
    symlink("real", s.tftp().join("xcat/inside")).unwrap();
    symlink(s.dir.path(), s.tftp().join("dirlink")).unwrap();
    // A rootimg directory that is a real directory (the old layout) with a link inside.
    put(&s.install().join("img/rootimg/etc/hostname"), b"n1");
    symlink(&secret, s.install().join("img/rootimg/etc/evil")).unwrap();
    assert_eq!(get(s.addr, "/tftpboot/xcat/real").await.body, b"real");
    for t in [
        "/tftpboot/xcat/abs",
        "/tftpboot/xcat/rel",
        "/tftpboot/xcat/inside",
        "/tftpboot/dirlink/shadow",
        "/install/img/rootimg/etc/evil",
        "/install/img/rootimg/etc/hostname",
    ] {
        refused(&s, t).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_dot_in_any_encoding_and_bad_bytes_are_refused() {
    let s = serve().await;
    put(&s.dir.path().join("outside"), SECRET);
    put(&s.install().join("a/file"), b"file");
    put(&s.install().join("a b"), b"space");
    put(&s.install().join("%2e%2e"), b"literal");
    assert_eq!(get(s.addr, "/install/a/file").await.body, b"file");
    assert_eq!(get(s.addr, "/install/a%20b").await.body, b"space");
    // Decoded once: %252e%252e is the literal name "%2e%2e", not "..".
    assert_eq!(get(s.addr, "/install/%252e%252e").await.body, b"literal");
    // xCAT's imgurl form (`:80//install/...`): empty components are skipped
    assert_eq!(get(s.addr, "//install//a/file").await.status, 200);
    for t in [
        "/install/../outside",
        "/install/a/../../outside",
        "/install/%2e%2e/outside",
        "/install/%2E%2e/outside",
        "/install/a/%2e%2e/%2e%2e/outside",
        "/install/%252e%252e/outside",
        "/install/a%2ffile",
        "/install/a%2Ffile",
        "/install/a%5cfile",
        "/install/a\\file",
        "/install/a/file%00",
        "/install/a/fil%",
        "/install/a/fil%g0",
        "/install/a/",
        "/install/a",
        "/install/",
        "/install",
        "/outside",
        "/tftpboot/../install/a/file",
    ] {
        refused(&s, t).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_fifos_and_dot_files_are_not_files_to_serve() {
    let s = serve().await;
    put(&s.tftp().join("xcat/.hidden"), b"x");
    put(&s.tftp().join(".nodeset.lock"), b"x");
    std::fs::create_dir_all(s.tftp().join("xcat/dir")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        s.tftp().join("xcat/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    for t in [
        "/tftpboot/xcat/.hidden",
        "/tftpboot/.nodeset.lock",
        "/tftpboot/xcat/dir",
        "/tftpboot/xcat",
        // Opening a FIFO would block: it is type-checked before any open.
        "/tftpboot/xcat/fifo",
    ] {
        refused(&s, t).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_bodies_and_oversized_heads_are_refused() {
    let s = serve_with(|h| h.max_header_bytes = 1024).await;
    put(&s.install().join("f"), b"data");
    for m in ["POST", "PUT", "DELETE", "OPTIONS", "TRACE"] {
        let r = request(s.addr, m, "/install/f", "").await;
        assert_eq!(r.status, 405, "{m}");
        assert_eq!(r.header("allow").as_deref(), Some("GET, HEAD"));
    }
    let r = request(s.addr, "GET", "/install/f", "Content-Length: 4\r\n").await;
    assert_eq!(r.status, 400);
    let big = format!("X-Pad: {}\r\n", "a".repeat(2000));
    assert_eq!(request(s.addr, "GET", "/install/f", &big).await.status, 431);
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"\x16\x03\x01 not http\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut tcp, true).await.unwrap().status, 400);
    let log = s.access_log();
    assert!(log.contains(" POST /install/f 405 0 "), "{log}");
    assert!(log.contains(" - - 431 0 "), "{log}");
    s.stop().await;
}
