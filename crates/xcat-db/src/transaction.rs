//! Write transactions: how one starts on each backend, and retrying one that
//! lost a race with another writer.

use std::future::Future;
use std::time::Duration;

use sqlx::{Any, Transaction};

use crate::{Backend, Db, DbError};

impl Db {
    /// Start a write transaction (SQLite: take the write lock immediately).
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Any>, DbError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }
}

/// Run `attempt` up to `attempts` times while it fails with a [`retryable`]
/// error, waiting `step_ms` longer before each new try.
pub(crate) async fn with_retries<F, Fut>(
    attempts: u64,
    step_ms: u64,
    mut attempt: F,
) -> Result<(), DbError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), DbError>>,
{
    let mut n = 0;
    loop {
        n += 1;
        match attempt().await {
            Err(e) if n < attempts && retryable(&e) => {
                tokio::time::sleep(Duration::from_millis(step_ms * n)).await;
            }
            r => return r,
        }
    }
}

/// Is this error worth retrying a write transaction for (lock contention, or
/// two writers inserting the same new key at once)?
fn retryable(e: &DbError) -> bool {
    match e {
        DbError::Sql(sqlx::Error::Database(d)) => {
            d.is_unique_violation()
                || d.message().contains("database is locked")
                || d.message().contains("busy")
                || d.code().as_deref() == Some("40001")
                || d.code().as_deref() == Some("40P01")
        }
        _ => false,
    }
}
