//! # notification-service: the RabbitMQ leg of the `mq` example
//!
//! order-service publishes `OrderConfirmed` to the topic exchange `orders` with routing key
//! `order.confirmed` once an order is paid; this service's listener consumes the durable
//! queue `task_queue`, bound to that exchange with `order.*`, and notifies the customer:
//!
//! ```text
//! order-service ── amqp://orders/order.confirmed ──► exchange `orders` (topic)
//!                                                      └─ order.* ─► task_queue ──► notify_customer
//!                                                                        └─ failed for good ─► mq.dlx ─► task_queue.dlq
//! ```
//!
//! The queue, the binding, the exchange and `task_queue.dlq` are declared by the listener
//! at startup (Spring AMQP's `@RabbitListener(bindings = @QueueBinding(..))`). A message is
//! acknowledged only after the notification was sent, or after it reached `task_queue.dlq`
//! (an event without a customer, a body that is not JSON). Sending is simulated: the
//! notifications are kept in memory ([`Notifications`]).
//!
//! As with any library holding `#[listener]`s, a binary must reference this crate (`use
//! notification_service as _;`) for its listener to be linked in; [`app`] refuses to start
//! otherwise.
#![warn(missing_docs)]

use std::sync::{Arc, Mutex};

use mq_core::config::ConfigError;
use mq_core::prelude::*;
use mq_core::Config;

/// Errors of starting or running the service.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// This crate's directory, where its `application.yaml` lives.
pub const CONFIG_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// The queue this service reads.
pub const QUEUE: &str = "task_queue";

/// The events this service reads (its copy of the JSON contract with order-service).
pub mod events {
    use serde::{Deserialize, Serialize};

    /// An order was paid and confirmed (exchange `orders`, routing key `order.confirmed`).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct OrderConfirmed {
        /// The order.
        pub order_id: String,
        /// Who to tell; an order without one cannot be notified (dead-lettered).
        #[serde(default)]
        pub customer: Option<String>,
        /// What was charged, in cents.
        #[serde(default)]
        pub amount_cents: u64,
    }
}

/// A notification sent to a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Who.
    pub customer: String,
    /// About which order.
    pub order_id: String,
    /// What they were told.
    pub text: String,
}

/// The notifications sent so far (in memory); cheap to clone (shared).
///
/// ```
/// let sent = notification_service::Notifications::default();
/// assert!(sent.all().is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Notifications {
    sent: Arc<Mutex<Vec<Notification>>>,
}

impl Notifications {
    /// Every notification sent, in order.
    pub fn all(&self) -> Vec<Notification> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn push(&self, n: Notification) {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).push(n);
    }
}

/// Tells the customer their order is confirmed. An event without a customer is a
/// permanent failure: straight to `task_queue.dlq`, with Spring AMQP's why-headers.
#[listener(
    queue = "task_queue",
    exchange = "orders",
    exchange_type = "topic",
    routing_key = "order.*"
)]
async fn notify_customer(
    event: Event<events::OrderConfirmed>,
    sent: State<Notifications>,
) -> Result<(), HandlerError> {
    let order = event.data;
    let Some(customer) = order.customer.filter(|c| !c.trim().is_empty()) else {
        return Err(HandlerError::permanent_msg(format!(
            "order {} has no customer to notify",
            order.order_id
        )));
    };
    let amount = match order.amount_cents {
        0 => String::new(),
        c => format!(" (${}.{:02})", c / 100, c % 100),
    };
    let text = format!(
        "Hello {customer}, your order {} is confirmed{amount}.",
        order.order_id
    );
    tracing::info!(%customer, order_id = %order.order_id, "customer notified");
    sent.push(Notification {
        customer,
        order_id: order.order_id,
        text,
    });
    Ok(())
}

/// The names of this crate's listeners registered in the running binary.
pub fn listener_names() -> Vec<&'static str> {
    mq_core::registry::registered_in(module_path!())
}

/// Loads the configuration from `MQ_CONFIG_DIR` when it is set, else from [`CONFIG_DIR`].
pub fn load_config() -> Result<Config, ConfigError> {
    Config::load_or(CONFIG_DIR)
}

/// The service: this crate's listener with `notifications` as state. Fails when the
/// listener is not linked in (see the crate docs).
pub fn app(config: Config, notifications: Notifications) -> Result<App, BoxError> {
    let names = listener_names();
    if names.is_empty() {
        return Err(
            "no notification-service listener is registered in this binary: \
                    reference the crate (`use notification_service as _;`)"
                .into(),
        );
    }
    Ok(App::new(config)
        .with_state(notifications)
        .only_listeners(names))
}

/// Runs the service until ctrl-c or SIGTERM.
pub async fn run(config: Config) -> Result<(), BoxError> {
    app(config, Notifications::default())?.run().await?;
    Ok(())
}
