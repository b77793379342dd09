//! The idempotent consumer (inbox): a listener marked `idempotent` runs each event at most
//! once to a commit, however often the broker delivers it.
//!
//! Delivery stays at-least-once (a record is acknowledged only after its handler
//! succeeded); what changes is what a redelivery does. Before the handler runs, the event's
//! identity, its CloudEvents `source` and `id` within the listener's consumer group, is
//! recorded in a transaction; the handler takes that transaction as its [`Tx`] argument and
//! writes its own rows into it; when the handler returns `Ok`, the transaction commits the
//! rows and the identity together. A redelivered event whose identity is recorded is
//! acknowledged without running the handler. A handler that fails (or panics, or times
//! out) rolls back both, so the retry starts clean.
//!
//! ```no_run,standalone_crate
//! use mq_core::prelude::*;
//! use mq_core::inbox::Tx;
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct PaymentCompleted { order_id: String }
//!
//! #[listener(topic = "payment-completed", idempotent)]
//! async fn confirm(event: Event<PaymentCompleted>, tx: Tx) -> Result<(), HandlerError> {
//!     mq_core::sqlx::query("UPDATE orders SET status = 'CONFIRMED' WHERE id = $1")
//!         .bind(&event.data.order_id)
//!         .execute(&mut *tx.conn().await?)
//!         .await?;
//!     Ok(()) // the update and the event's identity commit together
//! }
//! # fn main() {}
//! ```
//!
//! Stores: PostgreSQL (`mq.inbox.table` in `mq.datasource`, the default when a datasource is
//! configured) and memory (tests, `TestApp`, the demo: deduplicates within one process and
//! cannot make the handler's own writes atomic with the record). Identities are forgotten
//! after `mq.inbox.window` (7 days). Not covered: side effects outside the transaction
//! (an HTTP call, a publish) can still happen twice, once per attempt that failed after them.

#[cfg(feature = "postgres")]
mod capacity;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;

use std::sync::Arc;
use std::time::Duration;

pub use memory::MemoryStore;

use futures::future::BoxFuture;

use crate::handler::invocation::{Claims, Extension, Settle};
use crate::handler::{Context, FromContext, HandlerError, StateMap};
use crate::registry::ListenerSpec;

/// Who an event is, for deduplication: the listener's consumer group and the event's
/// CloudEvents `source` and `id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    pub(crate) group: String,
    pub(crate) source: String,
    pub(crate) id: String,
}

/// An inbox store failed (the database is unreachable, a statement failed).
///
/// ```
/// let e = mq_core::inbox::StoreError::from_message("connection refused");
/// assert_eq!(e.to_string(), "inbox store: connection refused");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("inbox store: {0}")]
pub struct StoreError(String);

impl StoreError {
    /// An error with this message.
    pub fn from_message(message: impl Into<String>) -> StoreError {
        StoreError(message.into())
    }
}

#[cfg(feature = "postgres")]
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// What a claim found.
pub(crate) enum Claim {
    /// Recorded before: acknowledge without running the handler.
    Duplicate,
    /// Recorded now, in this pending transaction.
    New(Pending),
}

/// A claimed identity, not committed yet. Dropping it rolls back.
pub(crate) enum Pending {
    Memory(memory::MemoryClaim),
    /// A tombstone in a memory store: nothing recorded.
    Unrecorded,
    #[cfg(feature = "postgres")]
    Postgres(postgres::OpenClaim),
}

impl Pending {
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        match self {
            Pending::Memory(claim) => claim.commit(),
            Pending::Unrecorded => Ok(()),
            #[cfg(feature = "postgres")]
            Pending::Postgres(claim) => claim.tx.commit().await.map_err(StoreError::from),
        }
    }
}

/// Where identities are recorded.
#[derive(Clone, Debug)]
pub(crate) enum Store {
    Memory(MemoryStore),
    #[cfg(feature = "postgres")]
    Postgres(postgres::PostgresStore),
}

impl Store {
    #[cfg(feature = "postgres")]
    pub(crate) fn postgres(pool: sqlx::PgPool, table: &str) -> Store {
        Store::Postgres(postgres::PostgresStore::new(pool, table))
    }

    async fn claim(
        &self,
        identity: Option<Identity>,
        window: Duration,
    ) -> Result<Claim, StoreError> {
        match self {
            Store::Memory(m) => Ok(match identity {
                Some(identity) => m.claim(identity, window).await,
                None => Claim::New(Pending::Unrecorded),
            }),
            #[cfg(feature = "postgres")]
            Store::Postgres(p) => p.claim(identity, window).await,
        }
    }

    /// Deletes identities older than `window`.
    pub(crate) async fn purge(&self, window: Duration) -> Result<u64, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.purge(window)),
            #[cfg(feature = "postgres")]
            Store::Postgres(p) => p.purge(window).await,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            #[cfg(feature = "postgres")]
            Store::Postgres(_) => "postgres",
        }
    }
}

/// The app's inbox store, kept in the app's state so that every listener runtime finds it.
#[derive(Clone, Debug)]
pub(crate) struct Installed {
    pub(crate) store: Store,
    pub(crate) window: Duration,
    /// `mq_inbox_duplicates_total{name}`: redeliveries acknowledged without the handler.
    pub(crate) duplicates: Duplicates,
}

/// Counters of skipped redeliveries, per listener.
pub(crate) type Duplicates =
    prometheus_client::metrics::family::Family<Vec<(String, String)>, Counter>;
use prometheus_client::metrics::counter::Counter;

/// What one idempotent listener claims with.
pub(crate) struct ListenerInbox {
    store: Store,
    group: String,
    window: Duration,
    duplicates: Counter,
}

impl ListenerInbox {
    /// The inbox of `spec`: the app's store, or (a `TestApp`, which installs none) memory.
    pub(crate) fn for_listener(state: &StateMap, spec: &ListenerSpec) -> Arc<ListenerInbox> {
        let installed = state.get::<Installed>();
        let (store, window, duplicates) = match installed.as_deref() {
            Some(i) => (
                i.store.clone(),
                i.window,
                i.duplicates
                    .get_or_create(&vec![("name".to_owned(), spec.name.to_owned())])
                    .clone(),
            ),
            None => (
                Store::Memory(MemoryStore::default()),
                crate::config::InboxConfig::default().window,
                Counter::default(),
            ),
        };
        tracing::debug!(
            listener = spec.name,
            store = store.kind(),
            "idempotent listener"
        );
        Arc::new(ListenerInbox {
            store,
            group: spec.group.clone(),
            window,
            duplicates,
        })
    }

    /// Claims the event `(source, id)`: `None` when it was handled before.
    pub(crate) async fn claim(
        &self,
        event: Option<(&str, &str)>,
    ) -> Result<Option<Tx>, HandlerError> {
        let identity = event.map(|(source, id)| Identity {
            group: self.group.clone(),
            source: source.to_owned(),
            id: id.to_owned(),
        });
        match self.store.claim(identity, self.window).await {
            Ok(Claim::New(pending)) => Ok(Some(Tx::new(pending))),
            Ok(Claim::Duplicate) => {
                self.duplicates.inc();
                tracing::debug!("event handled before: acknowledged without running the handler");
                Ok(None)
            }
            Err(e) => Err(HandlerError::transient(e)),
        }
    }
}

/// The transaction of an idempotent listener's handler: the event's identity is recorded
/// in it, and the handler's own writes go into it, so both commit (when the handler returns
/// `Ok`) or neither does.
///
/// Take it as an argument after the payload of a `#[listener(.., idempotent)]`; a listener
/// that is not idempotent cannot take it (the app refuses to start). With the memory store
/// there is no database: `Tx::conn` fails, and [`Tx::is_database`] says so.
///
/// ```no_run,standalone_crate
/// # use mq_core::prelude::*;
/// # use mq_core::inbox::Tx;
/// #[listener(topic = "stock-reserved", idempotent)]
/// async fn on_reserved(order_id: String, tx: Tx) -> Result<(), HandlerError> {
///     if tx.is_database() {
///         mq_core::sqlx::query("UPDATE orders SET reserved = true WHERE id = $1")
///             .bind(&order_id)
///             .execute(&mut *tx.conn().await?)
///             .await?;
///     }
///     Ok(())
/// }
/// # fn main() {}
/// ```
#[derive(Clone)]
pub struct Tx {
    slot: Arc<tokio::sync::Mutex<Option<Pending>>>,
    database: bool,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("database", &self.database)
            .finish()
    }
}

/// Why `Tx::conn` has no connection to give.
///
/// ```
/// let e = mq_core::inbox::TxError::NoDatabase;
/// assert!(e.to_string().contains("memory"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// The inbox store is memory: there is no database transaction.
    #[error("the inbox store is memory (no mq.datasource.url): there is no database transaction")]
    NoDatabase,
    /// The transaction has already been committed or rolled back (the `Tx` was kept after
    /// its handler returned).
    #[error("the handler's transaction has already ended")]
    Ended,
}

impl Tx {
    fn new(pending: Pending) -> Tx {
        #[cfg(feature = "postgres")]
        let database = matches!(pending, Pending::Postgres(_));
        #[cfg(not(feature = "postgres"))]
        let database = false;
        Tx {
            slot: Arc::new(tokio::sync::Mutex::new(Some(pending))),
            database,
        }
    }

    /// True when the transaction is a PostgreSQL one (the inbox store is `postgres`).
    ///
    /// ```no_run
    /// # fn f(tx: mq_core::inbox::Tx) {
    /// if !tx.is_database() { /* in-memory demo: keep the effect in memory */ }
    /// # }
    /// ```
    pub fn is_database(&self) -> bool {
        self.database
    }

    /// The transaction's connection, for `sqlx` queries: `.execute(&mut *tx.conn().await?)`.
    /// Holds the transaction until the guard is dropped.
    ///
    /// ```no_run
    /// # async fn f(tx: mq_core::inbox::Tx) -> Result<(), mq_core::HandlerError> {
    /// mq_core::sqlx::query("INSERT INTO audit (what) VALUES ('x')")
    ///     .execute(&mut *tx.conn().await?)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "postgres")]
    pub async fn conn(
        &self,
    ) -> Result<tokio::sync::MappedMutexGuard<'_, sqlx::PgConnection>, TxError> {
        let guard = self.slot.lock().await;
        let database = self.database;
        tokio::sync::MutexGuard::try_map(guard, |slot| match slot {
            Some(Pending::Postgres(claim)) => Some(&mut *claim.tx),
            _ => None,
        })
        .map_err(|_| {
            if database {
                TxError::Ended
            } else {
                TxError::NoDatabase
            }
        })
    }

    /// Commits when the handler succeeded, rolls back otherwise; a failed commit is a
    /// transient failure (the event is delivered again, and its identity is not recorded).
    pub(crate) async fn finish(&self, ok: bool) -> Result<(), HandlerError> {
        let pending = self.slot.lock().await.take();
        match pending {
            Some(pending) if ok => pending.commit().await.map_err(HandlerError::transient),
            _ => Ok(()), // dropped: rolled back
        }
    }
}

impl Settle for Tx {
    fn settle(&self, ok: bool) -> BoxFuture<'_, Result<(), HandlerError>> {
        Box::pin(self.finish(ok))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Claims for ListenerInbox {
    fn claim<'a>(
        &'a self,
        event: Option<(&'a str, &'a str)>,
    ) -> BoxFuture<'a, Result<Option<Extension>, HandlerError>> {
        Box::pin(async move {
            let tx = ListenerInbox::claim(self, event).await?;
            Ok(tx.map(|tx| Arc::new(tx) as Extension))
        })
    }
}

impl FromContext for Tx {
    fn from_context(ctx: &Context) -> Self {
        match ctx
            .extension()
            .and_then(|e| e.as_any().downcast_ref::<Tx>())
        {
            Some(tx) => tx.clone(),
            // The app checks at startup that only idempotent listeners take a `Tx`; a
            // listener run outside an app gets one that has no transaction.
            None => Tx {
                slot: Arc::new(tokio::sync::Mutex::new(None)),
                database: false,
            },
        }
    }
}

/// Installs the store `config` asks for into `state` (PostgreSQL on `pool` when there is
/// one, else memory) and starts the task that forgets expired identities.
pub(crate) fn install(
    config: &crate::config::Config,
    #[cfg(feature = "postgres")] pool: Option<&sqlx::PgPool>,
    state: &mut StateMap,
    metrics: &crate::metrics::Metrics,
    shutdown: tokio_util::sync::CancellationToken,
) -> Store {
    let inbox = &config.mq.inbox;
    #[cfg(feature = "postgres")]
    let store = match (inbox.store, pool) {
        (crate::config::InboxStoreKind::Memory, _) | (_, None) => {
            Store::Memory(MemoryStore::default())
        }
        (_, Some(pool)) => Store::postgres(pool.clone(), &inbox.table),
    };
    #[cfg(not(feature = "postgres"))]
    let store = Store::Memory(MemoryStore::default());
    let duplicates = Duplicates::default();
    metrics.register(|r| {
        r.register(
            "mq_inbox_duplicates",
            "Redelivered events an idempotent listener acknowledged without running its handler",
            duplicates.clone(),
        )
    });
    state.insert(Installed {
        store: store.clone(),
        window: inbox.window,
        duplicates,
    });
    let (purging, window, every) = (store.clone(), inbox.window, inbox.cleanup_interval);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            match purging.purge(window).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(expired = n, "inbox: forgot expired event identities"),
                Err(e) => tracing::warn!(error = %e, "inbox: cannot delete expired identities"),
            }
        }
    });
    store
}

/// The kind of store, for log lines.
#[cfg(feature = "postgres")]
pub(crate) fn describe(store: &Store) -> &'static str {
    store.kind()
}

/// The startup warnings about the pool of `store` for `specs` (none for the memory store):
/// idempotent listeners that take more records at once than the pool serves.
#[cfg(feature = "postgres")]
pub(crate) fn capacity_warnings(store: &Store, specs: &[ListenerSpec]) -> Vec<String> {
    match store {
        Store::Postgres(p) => {
            let size = p.pool_size();
            capacity::warnings(specs, size, postgres::claim_limit(size))
        }
        Store::Memory(_) => Vec::new(),
    }
}
