//! # mq: Spring-style messaging for Rust services
//!
//! Write typed handlers, let the framework do the rest: consumers, offsets, retries,
//! dead-letter topics, configuration, metrics.
//!
//! ```no_run
//! use mq_core::prelude::*;
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct OrderCreated { order_id: u64, product_id: u64, quantity: u32 }
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct StockReserved { order_id: u64 }
//!
//! #[listener(topic = "order-create-event", group = "product-service")]
//! async fn reserve_stock(event: Event<OrderCreated>, ctx: Context) -> Result<(), HandlerError> {
//!     let order_id = event.data.order_id;
//!     ctx.publisher().send("stock-reserved", order_id.to_string(), StockReserved { order_id }).await?;
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), mq_core::Error> {
//!     mq_core::App::from_config()?.run().await
//! }
//! ```
//!
//! Every message is a CloudEvents 1.0 [`Event`]; see [`envelope`]. Configuration comes from
//! `application.yaml`, profiles and `MQ_*` variables; see [`config`]. Delivery is
//! at-least-once: an offset is committed only after its handler succeeded or the record
//! reached the dead-letter topic.
#![deny(missing_docs)]

pub mod actuator;
pub mod config;
pub mod consume;
#[cfg(feature = "postgres")]
pub mod datasource;
pub mod dead_letter;
mod dispatch;
pub mod envelope;
pub mod failure;
pub mod handler;
pub mod inbox;
#[cfg(feature = "kafka")]
mod kafka;
pub mod metrics;
#[cfg(feature = "postgres")]
pub mod outbox;
pub mod publisher;
pub mod rabbitmq;
pub mod record;
pub mod registry;
pub mod retry;
pub mod retry_topic;
pub mod telemetry;
pub mod testing;

mod app;
mod startup;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub(crate) use __private as private;

pub use app::{App, RunningApp};
pub use config::Config;
pub use dispatch::Disposition;
pub use envelope::Event;
pub use handler::{Context, HandlerError, State};
pub use publisher::{Delivery, PublishError, PublishErrorKind, Publisher};
pub use startup::StartupError;

/// The `sqlx` mq is built with (feature `postgres`): use it for the queries that share a
/// transaction with [`outbox::Outbox::send`] or an idempotent listener's [`inbox::Tx`].
#[cfg(feature = "postgres")]
pub use sqlx;

/// Marks an `async fn` as a message listener. See the crate docs and `mq_macros`.
///
/// ```no_run
/// use mq_core::prelude::*;
///
/// #[listener(topic = "pings", retry(max_attempts = 5, initial_interval = "200ms"))]
/// async fn on_ping(n: u32) -> Result<(), HandlerError> {
///     tracing::info!(n, "ping");
///     Ok(())
/// }
/// # fn main() {}
/// ```
pub use mq_macros::listener;

/// What a service needs in scope.
///
/// ```
/// use mq_core::prelude::*;
/// let _ = Event::new("T", ());
/// ```
pub mod prelude {
    pub use crate::handler::{Context, HandlerError, State};
    pub use crate::listener;
    pub use crate::{App, Event, Publisher};
    pub use serde::{Deserialize, Serialize};
}

/// Errors that stop an app from starting or running.
///
/// ```
/// let e: mq_core::Error = mq_core::Config::from_yaml_str("mq: [").unwrap_err().into();
/// assert!(e.to_string().starts_with("invalid configuration"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The listeners do not resolve (duplicate names, no topic, bad settings).
    #[error(transparent)]
    Listeners(#[from] registry::RegistryError),
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The RabbitMQ client failed (TLS settings, a refused certificate).
    #[error("rabbitmq: {0}")]
    Rabbit(String),
    /// The actuator could not start.
    #[error("actuator: {0}")]
    Actuator(#[from] std::io::Error),
    /// A publish failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// Wiring problems found before any connection (listeners, missing state), all at once.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The database (`mq.datasource`) failed: a bad URL, migrations that cannot be applied.
    #[error("database: {0}")]
    Database(String),
    /// `mq-core` was built without a transport.
    #[error("mq-core was built without the `kafka` feature: no transport to run listeners on")]
    NoTransport,
}
