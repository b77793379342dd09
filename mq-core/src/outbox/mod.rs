//! The transactional outbox: events written in the same PostgreSQL transaction as the
//! application's own rows, and published by a relay after the commit.
//!
//! Publishing to a broker and committing to a database cannot be one atomic step: a crash
//! between the two loses the event (commit first) or announces a change that never
//! happened (publish first). With the outbox, the application writes the event as a row in
//! its own transaction ([`Outbox::send`]) and commits once; the [relay](Relay), started by
//! the `App` when `mq.datasource.url` is set, publishes committed rows
//! through the app's [`Publisher`](crate::publisher::Publisher) (Kafka topics and `amqp://`
//! destinations alike), waits for the broker's acknowledgement, then marks them sent.
//!
//! ```no_run
//! # use mq_core::outbox::Outbox;
//! # #[derive(serde::Serialize)] struct OrderCreated { order_id: String }
//! # async fn f(pool: mq_core::sqlx::PgPool, outbox: Outbox) -> Result<(), Box<dyn std::error::Error>> {
//! let mut tx = pool.begin().await?;
//! mq_core::sqlx::query("INSERT INTO orders (id, status) VALUES ($1, 'PENDING')")
//!     .bind("ord-1")
//!     .execute(&mut *tx)
//!     .await?;
//! outbox
//!     .send(&mut tx, "order-create-event", "ord-1", OrderCreated { order_id: "ord-1".into() })
//!     .await?;
//! tx.commit().await?; // the order and its event, or neither
//! # Ok(()) }
//! ```
//!
//! **Guarantees.** A committed row is published at least once (a relay that dies between
//! the broker's acknowledgement and marking the row sent publishes it again, with the
//! same event id, which an [idempotent listener](crate::inbox) recognises); a row of a
//! rolled-back transaction never is. Rows of one key are published in the order of their
//! ids, one after the other (the next only after the broker acknowledged the previous).
//! Several relays (one per instance of the service) share the work by *slots*: keys hash
//! into `mq.outbox.slots` slots and one relay at a time holds a slot (a PostgreSQL
//! advisory lock held by the transaction that publishes and marks its rows), so no row is
//! published by two relays at once and a key's order holds across relays. While the
//! broker is away, rows wait; the relay retries each round and catches up when it is back.
//! The relay's transactions are READ COMMITTED whatever the database's default isolation,
//! so a SERIALIZABLE database does not abort them after the broker has the records.
//!
//! A row the broker refuses for good (too large, an invalid, unknown or unauthorized
//! destination) is set aside (`failed_at`, `last_error`, `mq_outbox_failed_rows`), never
//! holds up another key, and waits for [`retry_parked`] or [`drop_parked`]; the key's
//! later rows are published meanwhile, or wait behind it with `mq.outbox.strict-key-order`.
//!
//! Sent rows are deleted after `mq.outbox.retention`, in batches until none older is left
//! ([`Relay::clean_up`]); the age of the oldest pending row is the metric
//! `mq_outbox_lag_seconds` and the `outbox` health component (DOWN above
//! `mq.outbox.lag-threshold`), the table's size `mq_outbox_rows`.

mod cleanup;
pub(crate) mod lag;
mod parked;
mod relay;
mod schema;

use sqlx::PgConnection;

use crate::publisher::IntoEvent;

pub use cleanup::Cleanup;
pub use lag::{LagSnapshot, OutboxHealth};
pub use parked::{drop_parked, retry_parked, ParkedRows};
pub use relay::{Relay, RoundReport};
pub use schema::migrate;

/// Why an event could not be written to the outbox.
///
/// ```
/// let e = mq_core::outbox::OutboxError::from_message("x");
/// assert_eq!(e.to_string(), "outbox: x");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("outbox: {0}")]
pub struct OutboxError(String);

impl OutboxError {
    /// An error with this message.
    pub fn from_message(message: impl Into<String>) -> OutboxError {
        OutboxError(message.into())
    }
}

impl From<sqlx::Error> for OutboxError {
    fn from(e: sqlx::Error) -> Self {
        OutboxError(e.to_string())
    }
}

/// Writes events into the outbox table, inside the caller's transaction.
///
/// ```
/// let config = mq_core::Config::from_yaml_str("mq:\n  application:\n    name: shop\n").unwrap();
/// let outbox = mq_core::outbox::Outbox::new(&config);
/// assert_eq!(outbox.table(), "mq_outbox");
/// ```
#[derive(Debug, Clone)]
pub struct Outbox {
    table: String,
    source: String,
    insert_sql: String,
}

impl Outbox {
    /// The outbox of `config` (`mq.outbox.table`; events get the source
    /// `/<mq.application.name>`).
    pub fn new(config: &crate::config::Config) -> Outbox {
        let table = config.mq.outbox.table.clone();
        Outbox {
            insert_sql: format!(
                "INSERT INTO {table} (destination, msg_key, key_hash, event) \
                 VALUES ($1, $2, $3, $4) RETURNING id"
            ),
            source: format!("/{}", config.mq.application.name),
            table,
        }
    }

    /// The table rows are written to.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Writes `message` (data of any `Serialize` type, or an [`Event`](crate::envelope::Event) built by hand, as
    /// [`Publisher::send`](crate::publisher::Publisher::send) takes them) as an event for
    /// `destination` (a Kafka topic or an `amqp://` destination) with `key`, in the
    /// transaction of `conn` (`&mut tx` of a `sqlx::Transaction`). Data becomes an event
    /// whose CloudEvents `type` is its type name; an empty `source` becomes the
    /// application's, a missing `correlationid` the event's id. Returns the row's id;
    /// nothing is published before the transaction commits.
    ///
    /// ```no_run
    /// # async fn f(pool: mq_core::sqlx::PgPool, outbox: mq_core::outbox::Outbox) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// outbox.send(&mut tx, "order-create-event", "ord-1", serde_json::json!({"qty": 2})).await?;
    /// let event = mq_core::Event::new("OrderCreated", 1u32).with_subject("ord-1");
    /// outbox.send(&mut tx, "order-create-event", "ord-1", event).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn send<M: IntoEvent>(
        &self,
        conn: &mut PgConnection,
        destination: &str,
        key: impl AsRef<[u8]>,
        message: M,
    ) -> Result<i64, OutboxError> {
        let mut event = message.into_event();
        if event.source.is_empty() {
            event.source = self.source.clone();
        }
        if event.correlationid.is_none() {
            event.correlationid = Some(event.id.clone());
        }
        let json = event
            .to_json()
            .map_err(|e| OutboxError(format!("cannot serialize the event: {e}")))?;
        let json = String::from_utf8(json).expect("serde_json writes UTF-8");
        let key = key.as_ref();
        let (id,): (i64,) = sqlx::query_as(&self.insert_sql)
            .bind(destination)
            .bind(key)
            .bind(key_hash(key))
            .bind(json)
            .fetch_one(conn)
            .await?;
        Ok(id)
    }
}

/// A stable, non-negative hash of a key (FNV-1a, 31 bits): the row's slot is this modulo
/// `mq.outbox.slots`, the same in every process and release.
pub(crate) fn key_hash(key: &[u8]) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h & 0x7fff_ffff) as i32
}

/// Applies the migrations when `mq.datasource.migrate` (before the listeners start).
pub(crate) async fn prepare(
    config: &crate::config::Config,
    pool: &sqlx::PgPool,
) -> Result<(), crate::error::Error> {
    if config.mq.datasource.migrate {
        migrate(pool, &config.mq.outbox.table, &config.mq.inbox.table).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_hash_is_stable_and_non_negative() {
        assert_eq!(super::key_hash(b""), (0x811c_9dc5_u32 & 0x7fff_ffff) as i32);
        assert_eq!(super::key_hash(b"ord-1"), super::key_hash(b"ord-1"));
        assert_ne!(super::key_hash(b"ord-1"), super::key_hash(b"ord-2"));
        assert!((0..1000).all(|i| super::key_hash(format!("k{i}").as_bytes()) >= 0));
    }
}
