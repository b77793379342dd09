//! The PostgreSQL inbox: one row per handled event identity, inserted in the transaction
//! the handler's own writes go into.
//!
//! The primary key `(consumer_group, source, event_id)` does the deduplication: a second
//! insert of the same identity conflicts (nothing inserted: a duplicate), and while the
//! first transaction is still open, PostgreSQL makes the second insert wait for its
//! outcome: committed, a duplicate; rolled back, the second one goes ahead. So two
//! consumers that get the same event at once (a rebalance) never both run its handler to
//! a commit.

use std::time::Duration;

use sqlx::PgPool;

use super::{Claim, Identity, Pending, StoreError};

/// The PostgreSQL store of one inbox table.
#[derive(Clone, Debug)]
pub(crate) struct PostgresStore {
    pool: PgPool,
    claim_sql: String,
    purge_sql: String,
}

impl PostgresStore {
    /// A store on `table` (already checked to be a plain name).
    pub(crate) fn new(pool: PgPool, table: &str) -> Self {
        PostgresStore {
            pool,
            // An expired identity (older than the window, not purged yet) counts as new.
            claim_sql: format!(
                "INSERT INTO {table} (consumer_group, source, event_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (consumer_group, source, event_id) DO UPDATE SET processed_at = now() \
                 WHERE {table}.processed_at < now() - make_interval(secs => $4)"
            ),
            purge_sql: format!(
                "DELETE FROM {table} WHERE processed_at < now() - make_interval(secs => $1)"
            ),
        }
    }

    /// Begins a transaction and records `identity` in it (none: a tombstone, nothing to
    /// record).
    pub(crate) async fn claim(
        &self,
        identity: Option<Identity>,
        window: Duration,
    ) -> Result<Claim, StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        if let Some(identity) = identity {
            let inserted = sqlx::query(&self.claim_sql)
                .bind(&identity.group)
                .bind(&identity.source)
                .bind(&identity.id)
                .bind(window.as_secs_f64())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?
                .rows_affected();
            if inserted == 0 {
                // Ends the transaction now rather than when the pool reuses the connection.
                tx.rollback().await.map_err(StoreError::from)?;
                return Ok(Claim::Duplicate);
            }
        }
        Ok(Claim::New(Pending::Postgres(tx)))
    }

    /// Deletes identities older than `window`; how many.
    pub(crate) async fn purge(&self, window: Duration) -> Result<u64, StoreError> {
        Ok(sqlx::query(&self.purge_sql)
            .bind(window.as_secs_f64())
            .execute(&self.pool)
            .await
            .map_err(StoreError::from)?
            .rows_affected())
    }
}
