//! # mq: Spring-style messaging for Rust services
//!
//! Write typed handlers, let the framework do the rest: consumers, offsets, retries,
//! dead-letter topics, configuration, metrics.
//!
//! ```no_run,standalone_crate
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

// The layers, from the top down (see DESIGN.md): the transports, the app, the actuator,
// the pipeline, lanes, failure handling, handlers, the publisher, then the leaves
// (`record`, `envelope`, `config`, `metrics`). `layering` (a test) holds them to it.
pub mod actuator;
mod app;
pub mod config;
pub mod consume;
pub mod control;
#[cfg(feature = "postgres")]
pub mod datasource;
pub mod envelope;
mod error;
pub mod failure;
pub mod handler;
pub mod inbox;
pub mod metrics;
#[cfg(feature = "postgres")]
pub mod outbox;
mod pipeline;
pub mod publisher;
pub mod record;
pub mod registry;
pub mod retry;
mod startup;
pub mod telemetry;
pub mod testing;
mod transport;

#[cfg(test)]
mod doc_examples;
#[cfg(test)]
mod layering;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use app::{App, RunningApp};
pub use config::Config;
pub use envelope::Event;
pub use error::Error;
pub use handler::{Context, HandlerError, State};
pub use pipeline::Disposition;
pub use publisher::{Delivery, PublishError, PublishErrorKind, Publisher};
pub use startup::StartupError;
pub use transport::dead_letter;

/// The `sqlx` mq is built with (feature `postgres`): use it for the queries that share a
/// transaction with [`outbox::Outbox::send`] or an idempotent listener's [`inbox::Tx`].
#[cfg(feature = "postgres")]
pub use sqlx;

/// Marks an `async fn` as a message listener. See the crate docs and `mq_macros`.
///
/// ```no_run,standalone_crate
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
