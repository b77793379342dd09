//! The cleanup of sent rows: every row sent before `now - mq.outbox.retention` (the cut-off
//! is fixed when a pass starts) is deleted, in batches of [`BATCH`] rows, each batch its own
//! short READ COMMITTED transaction (`FOR UPDATE SKIP LOCKED`: two instances cleaning at
//! once share the rows instead of waiting on each other), until none is left. A pass
//! therefore keeps up with any publication rate: what the relay marked sent since the
//! previous pass is gone after this one.

use std::time::Duration;

use sqlx::PgPool;

use super::relay::BEGIN_READ_COMMITTED;

/// Rows one `DELETE` removes at most.
pub(crate) const BATCH: i64 = 5_000;

/// What one cleanup pass did.
///
/// ```
/// let c = mq_core::outbox::Cleanup::default();
/// assert_eq!((c.deleted, c.batches), (0, 0));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleanup {
    /// Sent rows deleted.
    pub deleted: u64,
    /// `DELETE` statements (each its own transaction of at most 5,000 rows).
    pub batches: u32,
}

/// Deletes the rows of `table` sent more than `retention` ago, batch after batch, until
/// none is left.
pub(crate) async fn sent_rows(
    pool: &PgPool,
    table: &str,
    retention: Duration,
) -> Result<Cleanup, sqlx::Error> {
    let (cutoff,): (f64,) =
        sqlx::query_as("SELECT extract(epoch FROM clock_timestamp())::float8 - $1")
            .bind(retention.as_secs_f64())
            .fetch_one(pool)
            .await?;
    let sql = format!(
        "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
         WHERE sent_at IS NOT NULL AND sent_at < to_timestamp($1) LIMIT $2 FOR UPDATE SKIP LOCKED)"
    );
    let mut done = Cleanup::default();
    loop {
        let mut tx = pool.begin_with(BEGIN_READ_COMMITTED).await?;
        let deleted = sqlx::query(&sql)
            .bind(cutoff)
            .bind(BATCH)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        done.deleted += deleted;
        done.batches += 1;
        if deleted < BATCH as u64 {
            return Ok(done);
        }
        tokio::task::yield_now().await;
    }
}
