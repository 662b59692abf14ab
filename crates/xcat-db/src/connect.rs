//! Opening a database: URL checks, the connection pool and SQLite's pragmas.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

use crate::{Backend, Db, DbError};

/// `url` (a `postgres://` URL) with its database name replaced by `name`,
/// query string kept: for reaching another database on the same server
/// (administration, and the test suites' throwaway databases).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl Db {
    /// Open `sqlite://PATH` (file and parent directory created on first use,
    /// WAL journal, busy timeout) or `postgres://...`, and run migrations.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = driver_url(url)?;
        let pool = open_pool(backend, &url).await?;
        let db = Db {
            pool,
            backend,
            cache: Arc::default(),
            noderange_limits: Default::default(),
        };
        db.migrate().await?;
        Ok(db)
    }

    /// This handle with `limits` on every noderange it expands (the
    /// request's own and the policy rules'); clones made from it keep them.
    pub fn with_noderange_limits(mut self, limits: crate::noderange::Limits) -> Db {
        self.noderange_limits = limits;
        self
    }

    /// Which database engine is behind this handle.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Close the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The backend of a user's URL and the URL to hand to sqlx for it.
fn driver_url(url: &str) -> Result<(Backend, String), DbError> {
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        Ok((Backend::Sqlite, sqlite_file_url(url, rest)?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok((Backend::Postgres, url.to_string()))
    } else {
        Err(DbError::Invalid(format!(
            "unsupported database URL (use sqlite://PATH or postgres://...): {url}"
        )))
    }
}

/// sqlx's URL for the SQLite file named after the scheme (`rest`), with its
/// parent directory created so a fresh state directory just works.
fn sqlite_file_url(url: &str, rest: &str) -> Result<String, DbError> {
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return Err(DbError::Invalid(format!(
            "sqlite URL needs a file path (sqlite:///var/lib/xcatd/xcat.db): {url}"
        )));
    }
    if let Some(parent) = Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|e| {
                DbError::Invalid(format!(
                    "cannot create database directory {}: {e}",
                    parent.display()
                ))
            })?;
        }
    }
    // sqlx parses this as a URL: characters that would end the path or
    // start an escape must not be read as such.
    let enc: String = path
        .chars()
        .map(|c| match c {
            '%' => "%25".to_string(),
            '?' => "%3F".to_string(),
            '#' => "%23".to_string(),
            ' ' => "%20".to_string(),
            c => c.to_string(),
        })
        .collect();
    Ok(format!("sqlite://{enc}?mode=rwc"))
}

async fn open_pool(backend: Backend, url: &str) -> Result<AnyPool, DbError> {
    let opts = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(60));
    Ok(match backend {
        Backend::Sqlite => {
            opts.max_connections(8)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        // WAL lets readers run beside the writer; the busy timeout
                        // makes writers queue instead of failing.
                        conn.execute(
                            "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=30000; \
                             PRAGMA foreign_keys=OFF; PRAGMA synchronous=NORMAL;",
                        )
                        .await?;
                        Ok(())
                    })
                })
                .connect(url)
                .await?
        }
        Backend::Postgres => opts.max_connections(10).connect(url).await?,
    })
}
