//! The directories come from the site table, and follow it when it changes.

mod common;
use common::*;
use std::time::Duration;
use xcat_bootserve::Roots;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_installdir_and_tftpdir_are_served_and_followed() {
    let dir = tempfile::tempdir().unwrap();
    let db = xcat_db::Db::connect(&format!(
        "sqlite://{}",
        dir.path().join("db/x.sqlite").display()
    ))
    .await
    .unwrap();
    let (one, two, tftp) = (
        dir.path().join("one"),
        dir.path().join("two"),
        dir.path().join("tftp"),
    );
    put(&one.join("f"), b"one");
    put(&two.join("f"), b"two");
    put(&tftp.join("f"), b"tftp");
    let site = |k: &'static str, v: std::path::PathBuf| {
        let db = db.clone();
        async move {
            db.upsert(
                "site",
                &[("key", k)],
                &[("value", &v.display().to_string())],
            )
            .await
            .unwrap()
        }
    };
    site("installdir", one.clone()).await;
    site("tftpdir", tftp.clone()).await;
    // The defaults (the daemon's settings) are not what is served: the site table is.
    let roots = Roots::from_site(
        db.clone(),
        &dir.path().join("nowhere"),
        &dir.path().join("nowhere"),
    );
    let s = serve_roots(dir, settings(&tftp), roots).await;
    assert_eq!(get(s.addr, "/install/f").await.body, b"one");
    assert_eq!(get(s.addr, "/tftpboot/f").await.body, b"tftp");
    site("installdir", two).await;
    let mut served = Vec::new();
    for _ in 0..40 {
        served = get(s.addr, "/install/f").await.body;
        if served == b"two" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served, b"two", "followed within a few seconds");
    s.stop().await;
}
