//! The PostgreSQL database of the outbox and the inbox: `mq.datasource.*`, as Spring Boot's
//! `spring.datasource.*`.
//!
//! One pool serves the outbox relay, the inbox and the application's own queries: take it
//! with [`pool`] and hand the same one to `App::with_datasource`,
//! so an order and its outbox row share a transaction.
//!
//! ```no_run
//! # async fn f() -> Result<(), mq_core::Error> {
//! let config = mq_core::Config::load()?;
//! let pool = mq_core::datasource::pool(&config)?.expect("mq.datasource.url is set");
//! let app = mq_core::App::new(config).with_datasource(pool.clone());
//! # let _ = app; Ok(()) }
//! ```

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::error::Error;

/// A pool on `mq.datasource.url` (none when it is not set). The pool connects lazily: a
/// database that is down does not fail this call, only the queries made while it is down.
///
/// ```
/// let config = mq_core::Config::default();
/// assert!(mq_core::datasource::pool(&config).unwrap().is_none());
/// ```
pub fn pool(config: &crate::config::Config) -> Result<Option<PgPool>, Error> {
    let ds = &config.mq.datasource;
    let Some(url) = &ds.url else {
        return Ok(None);
    };
    PgPoolOptions::new()
        .max_connections(ds.pool_size)
        .acquire_timeout(ds.connect_timeout)
        .connect_lazy(url)
        .map(Some)
        .map_err(|e| Error::Database(format!("mq.datasource.url: {e}")))
}
