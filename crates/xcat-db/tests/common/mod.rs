//! Test databases: a fresh SQLite file, or a fresh PostgreSQL database on the
//! server named by `XCATD_TEST_PG_URL` (created per test, dropped afterwards,
//! so tests run in parallel without sharing state).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Connection;
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

pub struct PgGuard {
    admin_url: String,
    name: String,
    pub url: String,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Message for a missing PostgreSQL test server.
pub const PG_URL_MISSING: &str =
    "XCATD_TEST_PG_URL is not set: the PostgreSQL table tests must run. \
Run ./scripts/test-all (it starts a private server and sets the variable), or start one with \
`tests/testbed/pg.sh start DIR PORT` and export the URL it prints as XCATD_TEST_PG_URL";

/// The PostgreSQL server to test against. A missing URL is a failure, never
/// a silent skip: the suite promises both backends were exercised.
pub fn pg_admin_url() -> String {
    match std::env::var("XCATD_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => panic!("{PG_URL_MISSING}"),
    }
}

pub async fn pg_db() -> (Db, PgGuard) {
    let admin_url = pg_admin_url();
    let name = format!(
        "xcattest_{}_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("connect to XCATD_TEST_PG_URL");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .expect("create test database");
    admin.close().await.ok();
    let url = xcat_db::with_database(&admin_url, &name);
    let db = Db::connect(&url)
        .await
        .expect("open postgres test database");
    (
        db,
        PgGuard {
            admin_url,
            name,
            url,
        },
    )
}

impl PgGuard {
    pub async fn drop_db(self, db: Db) {
        db.close().await;
        let mut admin = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .expect("connect to XCATD_TEST_PG_URL");
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .expect("drop test database");
        admin.close().await.ok();
    }
}

/// Run one async test body against SQLite and against PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let (db, _guard) = $crate::common::sqlite_db().await;
                super::$name(&db).await;
                db.close().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let (db, guard) = $crate::common::pg_db().await;
                super::$name(&db).await;
                guard.drop_db(db).await;
            }
        }
        )*
    };
}
