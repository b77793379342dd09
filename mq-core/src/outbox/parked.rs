//! Rows set aside: the relay stops trying a row the broker refused for good (the record is
//! too large or invalid, the destination is invalid, unknown or not authorized) or whose
//! event does not parse. It sets `failed_at` and `last_error` and keeps the row until an
//! operator retries it (once the cause is fixed) or drops it. In SQL:
//!
//! ```sql
//! -- what is set aside, and why
//! SELECT id, destination, msg_key, failed_at, attempts, last_error FROM mq_outbox
//!  WHERE failed_at IS NOT NULL ORDER BY id;
//! -- publish again (the relay takes them in its next round)
//! UPDATE mq_outbox SET failed_at = NULL WHERE failed_at IS NOT NULL AND destination = 'orders';
//! -- give up on them
//! DELETE FROM mq_outbox WHERE failed_at IS NOT NULL AND id IN (17, 18);
//! ```
//!
//! [`retry_parked`] and [`drop_parked`] do the same from code.

use sqlx::PgPool;

use super::OutboxError;

/// Which rows set aside [`retry_parked`] and [`drop_parked`] apply to.
///
/// ```
/// let which = mq_core::outbox::ParkedRows::Destination("orders".into());
/// assert_ne!(which, mq_core::outbox::ParkedRows::All);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParkedRows {
    /// Every row set aside.
    All,
    /// The rows set aside with these ids.
    Ids(Vec<i64>),
    /// The rows set aside for this destination.
    Destination(String),
}

impl ParkedRows {
    /// The condition (`$1`) and its bound value.
    fn condition(&self) -> (&'static str, Filter) {
        match self {
            ParkedRows::All => ("TRUE", Filter::Nothing),
            ParkedRows::Ids(ids) => ("id = ANY($1::bigint[])", Filter::Ids(ids.clone())),
            ParkedRows::Destination(d) => ("destination = $1::text", Filter::Text(d.clone())),
        }
    }
}

enum Filter {
    Nothing,
    Text(String),
    Ids(Vec<i64>),
}

async fn apply(pool: &PgPool, sql: String, filter: Filter) -> Result<u64, OutboxError> {
    let query = sqlx::query(&sql);
    let query = match filter {
        Filter::Nothing => query,
        Filter::Text(t) => query.bind(t),
        Filter::Ids(ids) => query.bind(ids),
    };
    Ok(query.execute(pool).await?.rows_affected())
}

fn checked(table: &str) -> Result<(), OutboxError> {
    if crate::config::valid_table_name(table) {
        Ok(())
    } else {
        Err(OutboxError::from_message(format!(
            "{table:?} is not a table name"
        )))
    }
}

/// Puts the rows of `table` set aside that `which` selects back into the relay's queue
/// (their ids unchanged: a key's later rows that were published meanwhile went before
/// them). Returns how many.
///
/// ```no_run
/// # async fn f(pool: mq_core::sqlx::PgPool) -> Result<(), mq_core::outbox::OutboxError> {
/// use mq_core::outbox::{retry_parked, ParkedRows};
/// let n = retry_parked(&pool, "mq_outbox", &ParkedRows::Destination("orders".into())).await?;
/// println!("{n} rows will be published again");
/// # Ok(()) }
/// ```
pub async fn retry_parked(
    pool: &PgPool,
    table: &str,
    which: &ParkedRows,
) -> Result<u64, OutboxError> {
    checked(table)?;
    let (condition, filter) = which.condition();
    let sql = format!(
        "UPDATE {table} SET failed_at = NULL WHERE failed_at IS NOT NULL AND ({condition})"
    );
    apply(pool, sql, filter).await
}

/// Deletes the rows of `table` set aside that `which` selects (their events are never
/// published). Returns how many.
///
/// ```no_run
/// # async fn f(pool: mq_core::sqlx::PgPool) -> Result<(), mq_core::outbox::OutboxError> {
/// use mq_core::outbox::{drop_parked, ParkedRows};
/// drop_parked(&pool, "mq_outbox", &ParkedRows::Ids(vec![17, 18])).await?;
/// # Ok(()) }
/// ```
pub async fn drop_parked(
    pool: &PgPool,
    table: &str,
    which: &ParkedRows,
) -> Result<u64, OutboxError> {
    checked(table)?;
    let (condition, filter) = which.condition();
    let sql = format!("DELETE FROM {table} WHERE failed_at IS NOT NULL AND ({condition})");
    apply(pool, sql, filter).await
}
