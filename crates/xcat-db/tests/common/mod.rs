//! Test databases: a fresh SQLite file, or a fresh PostgreSQL database on the
//! server named by `XCATD_TEST_PG_URL` (created per test, dropped afterwards,
//! so tests run in parallel without sharing state).
#![allow(dead_code)]

use xcat_db::test_support::TempDatabase;
use xcat_db::Db;

pub struct SqliteGuard {
    pub dir: tempfile::TempDir,
    pub url: String,
}

pub async fn sqlite_db() -> (Db, SqliteGuard) {
    let dir = tempfile::tempdir().expect("tempdir");
    // A parent directory that does not exist yet: connect must create it.
    let path = dir.path().join("state").join("xcat.db");
    let url = format!("sqlite://{}", path.display());
    let db = Db::connect(&url).await.expect("open sqlite");
    (db, SqliteGuard { dir, url })
}

/// A PostgreSQL test database; it is dropped with the returned guard, which
/// callers keep until they have closed the `Db`.
pub async fn pg_db() -> (Db, TempDatabase) {
    let pg = TempDatabase::from_env();
    let db = Db::connect(pg.url())
        .await
        .expect("open postgres test database");
    (db, pg)
}

/// One test per backend for each scenario: `both_backends!(a, b)` runs
/// `a(&db)` and `b(&db)`; `both_backends!(with_url: a, b)` passes the
/// database URL too (`a(&db, &url)`), for bodies that open more handles on
/// the same database. The PostgreSQL variants are of the PostgreSQL tier.
#[macro_export]
macro_rules! both_backends {
    (with_url: $($name:ident),* $(,)?) => {
        $crate::both_backends!(@each [url] $($name)*);
    };
    ($($name:ident),* $(,)?) => {
        $crate::both_backends!(@each [] $($name)*);
    };
    (@each $url:tt $name:ident $($rest:ident)*) => {
        $crate::both_backends!(@one $url $name);
        $crate::both_backends!(@each $url $($rest)*);
    };
    (@each $url:tt) => {};
    (@one [$($url:ident)?] $name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let (db, _guard) = $crate::common::sqlite_db().await;
                $(let $url = _guard.url.clone();)?
                super::$name(&db $(, &$url)?).await;
                db.close().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            #[ignore = "needs PostgreSQL (XCATD_TEST_PG_URL): ./scripts/test-all runs it"]
            async fn postgres() {
                let (db, _pg) = $crate::common::pg_db().await;
                $(let $url = _pg.url().to_string();)?
                super::$name(&db $(, &$url)?).await;
                db.close().await;
            }
        }
    };
}
