//! The PostgreSQL inbox: one row per handled event identity, inserted in the transaction
//! the handler's own writes go into.
//!
//! The primary key `(consumer_group, source, event_id)` does the deduplication: a second
//! insert of the same identity conflicts (nothing inserted: a duplicate), and while the
//! first transaction is still open, PostgreSQL makes the second insert wait for its
//! outcome: committed, a duplicate; rolled back, the second one goes ahead. So two
//! consumers that get the same event at once (a rebalance) never both run its handler to
//! a commit.
//!
//! Each claim holds a connection until its handler returns, and an app may have more records
//! in flight (`ordering: key` takes `max-in-flight` per partition) than its pool has
//! connections. So the open claims are bounded by the pool: one connection fewer than
//! `mq.datasource.pool-size` (at least one), keeping one for the relay, the purge and the
//! handlers' other queries. A record waits for a claim of its own as long as it takes: waiting
//! is not a failure, and spends none of its attempts. The pool itself being busy all the same
//! (other users of it) is waited out too; only a database that cannot be reached fails the
//! claim (a transient failure, retried).

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Claim, Identity, Pending, StoreError};

/// The PostgreSQL store of one inbox table.
#[derive(Clone, Debug)]
pub(crate) struct PostgresStore {
    pool: PgPool,
    claim_sql: String,
    purge_sql: String,
    /// Claims that may be open at once (see the module's notes).
    claims: Arc<Semaphore>,
}

/// An open claim: its transaction, and its share of the pool.
#[derive(Debug)]
pub(crate) struct OpenClaim {
    pub(crate) tx: sqlx::Transaction<'static, sqlx::Postgres>,
    _permit: OwnedSemaphorePermit,
}

/// How many claims may be open at once on a pool of `pool_size` connections.
pub(crate) fn claim_limit(pool_size: u32) -> usize {
    pool_size.saturating_sub(1).max(1) as usize
}

impl PostgresStore {
    /// A store on `table` (already checked to be a plain name).
    pub(crate) fn new(pool: PgPool, table: &str) -> Self {
        let claims = Arc::new(Semaphore::new(claim_limit(
            pool.options().get_max_connections(),
        )));
        PostgresStore {
            claims,
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
        let permit = self
            .claims
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::from_message("the inbox is closed"))?;
        let mut tx = self.begin().await?;
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
        Ok(Claim::New(Pending::Postgres(OpenClaim {
            tx,
            _permit: permit,
        })))
    }

    /// Begins a transaction, waiting for a connection while the pool is busy (all its
    /// connections open and taken); any other error (the database is unreachable) fails.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        loop {
            match self.pool.begin().await {
                Ok(tx) => return Ok(tx),
                Err(sqlx::Error::PoolTimedOut) if self.busy() => {
                    tracing::debug!("inbox: every connection of the pool is in use; waiting");
                }
                Err(e) => return Err(StoreError::from(e)),
            }
        }
    }

    /// The pool's size (`mq.datasource.pool-size`).
    pub(crate) fn pool_size(&self) -> u32 {
        self.pool.options().get_max_connections()
    }

    /// Every connection of the pool is open and in use.
    fn busy(&self) -> bool {
        self.pool.size() >= self.pool.options().get_max_connections() && self.pool.num_idle() == 0
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
