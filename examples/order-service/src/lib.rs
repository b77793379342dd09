//! # order-service: the front door of the `mq` example
//!
//! An HTTP API takes orders and follows each one through the event flow:
//!
//! ```text
//! POST /orders ──► order-create-event ──► product-service reserves stock
//!                                            ├─► stock-reserved ──► take_payment ──► payment-completed ──► on_payment_completed: CONFIRMED
//!                                            ├─► stock-rejected ──► on_stock_rejected: REJECTED (out of stock)
//!                                            └─► order-create-event-dlt (unknown product) ──► on_order_dead_lettered: REJECTED
//! ```
//!
//! - `POST /orders` with `{"product_id": 1, "quantity": 2, "customer": "ada"}` answers
//!   `202 Accepted` with `{"order_id": "ord-…", "status": "PENDING"}` once the
//!   `order-create-event` is on the broker; a bad body answers `400` with a JSON error.
//! - `GET /orders/{id}` answers `{"order_id", "status": PENDING|CONFIRMED|REJECTED, "reason"?, …}`;
//!   `GET /orders` lists every order.
//!
//! The listeners live in this library, next to the state they update; the binary
//! (`src/main.rs`) only calls [`run`]. A binary that links the library without naming any of
//! its items would lose the listeners (they register through `inventory`, and an unused
//! library is not linked): reference it with `use order_service as _;`, as the demo does.
//! [`app`] refuses to start when none of this crate's listeners are registered.
//!
//! Orders live in PostgreSQL when `mq.datasource.url` is set ([`store::OrderStore`]): an
//! order and its `order-create-event` commit in one transaction (the outbox), and the
//! listeners that change an order's status are `idempotent`, so a redelivered event changes
//! nothing twice. Without a datasource (the embedded demo) they are in memory
//! ([`OrderBook`]): a restart forgets them.
#![warn(missing_docs)]

mod api;
mod orders;
pub mod prices;
mod settings;
pub mod store;

pub use api::{router, CreateOrder};
pub use orders::{Order, OrderBook, OrderStatus};
pub use settings::{load_config, ServerSettings, Settings, Topics};
pub use store::{OrderStore, PgOrders};

use mq_core::inbox::Tx;
use mq_core::prelude::*;
use mq_core::Config;
use serde_json::json;

use api::error;
use orders::new_id;

use events::{OrderCreated, PaymentCompleted, StockRejected, StockReserved};

/// Errors of starting or running the service.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// This crate's directory, where its `application.yaml` lives (the fallback of
/// [`load_config`]).
pub const CONFIG_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// The events this service publishes and reads: its side of the JSON contract with
/// product-service (each service owns its copy; only the JSON shape is shared).
pub mod events {
    use serde::{Deserialize, Serialize};

    /// Published on `order-create-event` when an order was accepted (key: the order id).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct OrderCreated {
        /// The new order.
        pub order_id: String,
        /// What is ordered.
        pub product_id: u64,
        /// How many.
        pub quantity: u32,
        /// Who ordered, if given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub customer: Option<String>,
    }

    /// Read from `stock-reserved` (product-service): the stock is set aside.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct StockReserved {
        /// The order.
        pub order_id: String,
        /// The product.
        pub product_id: u64,
        /// Units reserved.
        pub quantity: u32,
        /// Price of one unit, in cents.
        #[serde(default)]
        pub unit_price_cents: u64,
    }

    /// Read from `stock-rejected` (product-service): not enough stock.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct StockRejected {
        /// The order.
        pub order_id: String,
        /// The product.
        pub product_id: u64,
        /// Why, for people.
        pub reason: String,
    }

    /// Published on `payment-completed` once the customer was charged (key: the order id).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct PaymentCompleted {
        /// The order.
        pub order_id: String,
        /// The payment (stable across redeliveries).
        pub payment_id: String,
        /// Amount charged, in cents.
        pub amount_cents: u64,
    }
}

// ---------------------------------------------------------------------------------------
// Listeners
// ---------------------------------------------------------------------------------------

/// The payment step: stock is reserved, so charge the customer (simulated) and publish
/// `payment-completed` (through the outbox, in the same transaction, with a database).
/// Idempotent: a redelivered event does not charge twice.
#[listener(topic = "stock-reserved", idempotent)]
async fn take_payment(
    event: Event<StockReserved>,
    ctx: Context,
    tx: Tx,
) -> Result<(), HandlerError> {
    let orders = ctx.state::<OrderStore>();
    let topics = ctx.state::<Topics>();
    let reserved = event.data;
    match orders.pay(&tx, &reserved, ctx.publisher(), &topics).await? {
        None => {
            tracing::warn!(order_id = %reserved.order_id, "stock reserved for an order this service does not know; ignored");
        }
        Some(None) => {
            tracing::debug!(order_id = %reserved.order_id, "order already final; payment skipped");
        }
        Some(Some(payment)) => tracing::info!(
            order_id = %payment.order_id,
            payment_id = %payment.payment_id,
            amount_cents = payment.amount_cents,
            "stock reserved: payment taken"
        ),
    }
    Ok(())
}

/// Payment done: the order is confirmed (and, when `order-service.topics.order-confirmed`
/// is set, `OrderConfirmed` published there, e.g. to RabbitMQ for notification-service).
/// Idempotent: a redelivered payment event is skipped; a retried one (the publish failed)
/// publishes again: at least once.
#[listener(topic = "payment-completed", idempotent)]
async fn on_payment_completed(
    event: Event<PaymentCompleted>,
    ctx: Context,
    orders: State<OrderStore>,
    tx: Tx,
) -> Result<(), HandlerError> {
    let paid = event.data;
    let moved = orders
        .finish(&tx, &paid.order_id, OrderStatus::Confirmed, None)
        .await?;
    match moved {
        Some(true) => {
            tracing::info!(order_id = %paid.order_id, payment_id = %paid.payment_id, "order CONFIRMED")
        }
        Some(false) => tracing::debug!(order_id = %paid.order_id, "order already final"),
        None => tracing::warn!(order_id = %paid.order_id, "payment for an unknown order; ignored"),
    }
    let Some(to) = &ctx.state::<Topics>().order_confirmed else {
        return Ok(());
    };
    // The order as committed so far (with a database the status change above is still in
    // this handler's transaction): confirmed now, or already confirmed by an attempt whose
    // publish failed (in memory the status change is not rolled back).
    let order = orders
        .get(&paid.order_id)
        .await
        .map_err(|e| HandlerError::transient(std::io::Error::other(e)))?;
    let Some(order) = order else {
        return Ok(());
    };
    let confirmed = moved == Some(true) || order.status == OrderStatus::Confirmed;
    if confirmed {
        let body = json!({
            "order_id": paid.order_id,
            "customer": order.customer,
            "amount_cents": paid.amount_cents,
        });
        let event = Event::new("OrderConfirmed", body).with_subject(paid.order_id.clone());
        ctx.publisher()
            .send(to, paid.order_id.as_bytes(), event)
            .await?;
    }
    Ok(())
}

/// Not enough stock: the order is rejected (a business outcome, not an error).
#[listener(topic = "stock-rejected", idempotent)]
async fn on_stock_rejected(
    event: Event<StockRejected>,
    orders: State<OrderStore>,
    tx: Tx,
) -> Result<(), HandlerError> {
    let rejected = event.data;
    let reason = rejected.reason.clone();
    match orders
        .finish(&tx, &rejected.order_id, OrderStatus::Rejected, Some(reason))
        .await?
    {
        Some(true) => {
            tracing::info!(order_id = %rejected.order_id, reason = %rejected.reason, "order REJECTED")
        }
        Some(false) => tracing::debug!(order_id = %rejected.order_id, "order already final"),
        None => {
            tracing::warn!(order_id = %rejected.order_id, "rejection of an unknown order; ignored")
        }
    }
    Ok(())
}

/// product-service gave up on an order event (e.g. unknown product) and the framework
/// dead-lettered it: read the dead-letter topic and reject the order with the error from
/// the `kafka_dlt-exception-message` header.
#[listener(topic = "order-create-event-dlt", idempotent)]
async fn on_order_dead_lettered(
    event: Event<OrderCreated>,
    ctx: Context,
    tx: Tx,
) -> Result<(), HandlerError> {
    let order_id = event.data.order_id;
    let error = ctx
        .headers()
        .get_str(mq_core::dead_letter::headers::EXCEPTION_MESSAGE)
        .unwrap_or("the order could not be processed")
        .to_owned();
    let orders = ctx.state::<OrderStore>();
    match orders
        .finish(&tx, &order_id, OrderStatus::Rejected, Some(error.clone()))
        .await?
    {
        Some(true) => {
            tracing::info!(%order_id, reason = %error, "order REJECTED (dead-lettered by product-service)")
        }
        Some(false) => tracing::debug!(%order_id, "order already final"),
        None => tracing::warn!(%order_id, "dead letter of an unknown order; ignored"),
    }
    Ok(())
}

/// The names of this crate's listeners that are registered in the running binary (all four
/// when the crate is linked). The demo uses it to start only this service's listeners in
/// an app.
pub fn listener_names() -> Vec<&'static str> {
    mq_core::registry::registered_in(module_path!())
}

/// The messaging side of the service: this crate's listeners, the orders (an [`OrderBook`]
/// in memory, or an [`OrderStore`]) and the topic settings as state. Fails when the
/// listeners are not linked in (see the crate docs).
pub fn app(config: Config, orders: impl Into<OrderStore>) -> Result<App, BoxError> {
    let orders: OrderStore = orders.into();
    let settings = Settings::from_config(&config)?;
    let names = listener_names();
    if names.is_empty() {
        return Err("no order-service listener is registered in this binary: \
                    reference the crate (`use order_service as _;`) so that it is linked"
            .into());
    }
    Ok(App::new(config)
        .with_state(orders)
        .with_state(settings.topics)
        .only_listeners(names))
}

// ---------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the service until ctrl-c or SIGTERM: listeners, publisher and actuator (through
/// [`mq_core::App`]), and the HTTP API. On a signal, the HTTP server stops taking requests,
/// then the app shuts down gracefully.
pub async fn run(config: Config) -> Result<(), BoxError> {
    let settings = Settings::from_config(&config)?;
    let (orders, pool) = match mq_core::datasource::pool(&config)? {
        Some(pool) => {
            // mq's tables first: the orders and their outbox rows share transactions.
            mq_core::outbox::migrate(&pool, &config.mq.outbox.table, &config.mq.inbox.table)
                .await?;
            let outbox = mq_core::outbox::Outbox::new(&config);
            let orders = OrderStore::Postgres(PgOrders::open(pool.clone(), outbox).await?);
            (orders, Some(pool))
        }
        None => {
            tracing::info!("no mq.datasource.url: orders are kept in memory");
            (OrderStore::Memory(OrderBook::default()), None)
        }
    };
    let mut service = app(config, orders.clone())?;
    if let Some(pool) = pool {
        service = service.with_datasource(pool);
    }
    let running = service.start().await?;
    let listener = match tokio::net::TcpListener::bind((
        settings.server.address.as_str(),
        settings.server.port,
    ))
    .await
    {
        Ok(l) => l,
        Err(e) => {
            running.shutdown().await?;
            return Err(format!(
                "cannot bind the HTTP port {}:{}: {e}",
                settings.server.address, settings.server.port
            )
            .into());
        }
    };
    let addr = listener.local_addr()?;
    tracing::info!(%addr, actuator = ?running.actuator_addr(), "order-service HTTP API listening");
    let api = router(orders, running.publisher(), settings.topics);
    let served = axum::serve(listener, api)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    tracing::info!("shutdown requested");
    running.shutdown().await?;
    served?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let ok = CreateOrder {
            product_id: 1,
            quantity: 2,
            customer: Some("ada".into()),
        };
        assert!(ok.validate().is_ok());
        let zero = CreateOrder {
            quantity: 0,
            ..ok.clone()
        };
        assert_eq!(
            zero.validate().unwrap_err(),
            "quantity must be greater than 0"
        );
        let blank = CreateOrder {
            customer: Some("  ".into()),
            ..ok
        };
        assert!(blank.validate().unwrap_err().starts_with("customer"));
    }

    #[test]
    fn every_listener_of_this_crate_is_registered() {
        let mut names = listener_names();
        names.sort();
        assert_eq!(
            names,
            [
                "on_order_dead_lettered",
                "on_payment_completed",
                "on_stock_rejected",
                "take_payment"
            ]
        );
    }

    #[test]
    fn a_final_order_stays_final() {
        let book = OrderBook::default();
        book.insert(Order {
            order_id: "o".into(),
            status: OrderStatus::Pending,
            reason: None,
            product_id: 1,
            quantity: 1,
            customer: None,
            payment_id: None,
            history: vec!["CREATED".to_owned()],
        });
        assert_eq!(
            book.update("o", |o| o.finish(OrderStatus::Confirmed, None)),
            Some(true)
        );
        assert_eq!(
            book.update("o", |o| o
                .finish(OrderStatus::Rejected, Some("late".into()))),
            Some(false)
        );
        assert_eq!(book.get("o").unwrap().status, OrderStatus::Confirmed);
        assert_eq!(book.get("o").unwrap().history, ["CREATED", "CONFIRMED"]);
    }

    #[test]
    fn settings_come_from_the_files_with_defaults() {
        let config = Config::load_from(CONFIG_DIR).unwrap();
        let s = Settings::from_config(&config).unwrap();
        assert_eq!(s.topics.order_created, "order-create-event");
        assert_eq!(config.mq.application.name, "order-service");
        let bare = Settings::from_config(&Config::default()).unwrap();
        assert_eq!(bare.topics.payment_completed, "payment-completed");
    }
}
