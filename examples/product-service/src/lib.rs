//! # product-service: stock reservations for the `mq` example
//!
//! Two listeners (see [Listeners](#listeners)). `quote_price` answers price requests
//! (request–reply, see [`prices`]). `reserve_stock` reads `order-create-event` and answers
//! each order with an event:
//!
//! - enough stock: the units are set aside and `stock-reserved` is published;
//! - not enough stock: `stock-rejected` (a business outcome, not an error: the handler
//!   succeeds);
//! - unknown product: the handler fails with a *permanent* error
//!   (`HandlerError::permanent_msg`), so the framework does not retry and dead-letters the
//!   record to `order-create-event-dlt`, with Spring Kafka's `kafka_dlt-*` headers.
//!
//! The listener is `idempotent`: Kafka delivers at least once, so an event may come again
//! (after a crash or a rebalance), and mq acknowledges an event it has handled before
//! without running the handler. With `mq.datasource.url` set the stock is in PostgreSQL
//! ([`store::Stockroom`]): the reservation, the stock it takes and the outcome event (through
//! the outbox) commit together with the event's dedup record. Without one (the embedded
//! demo) the stock is in memory ([`Inventory`], which also remembers the outcome of every
//! event id and publishes the same outcome again for a redelivery).
//!
//! # Listeners
//!
//! `reserve_stock` lives in this library, next to the [`Inventory`] it updates; the binary
//! (`src/main.rs`) only calls [`run`]. A binary that links the library without naming any
//! of its items would lose the listener (it registers through `inventory`, and an unused
//! library is not linked): reference it with `use product_service as _;`, as the demo does.
#![warn(missing_docs)]

pub mod prices;
pub mod store;

use mq_core::inbox::Tx;
pub use store::{PgStock, Stockroom};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use mq_core::actuator::Health;
use mq_core::config::ConfigError;
use mq_core::prelude::*;
use mq_core::Config;

use events::{OrderCreated, StockRejected, StockReserved};

/// Errors of starting or running the service.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// This crate's directory, where its `application.yaml` lives (the fallback of
/// [`load_config`]).
pub const CONFIG_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// How many event ids the idempotency memory keeps (the oldest are forgotten first).
pub const REMEMBERED_EVENTS: usize = 100_000;

/// The events this service reads and publishes: its side of the JSON contract with
/// order-service (each service owns its copy; only the JSON shape is shared).
pub mod events {
    use serde::{Deserialize, Serialize};

    /// Read from `order-create-event`.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct OrderCreated {
        /// The order.
        pub order_id: String,
        /// What is ordered.
        pub product_id: u64,
        /// How many.
        pub quantity: u32,
    }

    /// Published on `stock-reserved` (key: the order id).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct StockReserved {
        /// The order.
        pub order_id: String,
        /// The product.
        pub product_id: u64,
        /// Units set aside.
        pub quantity: u32,
        /// Price of one unit, in cents.
        pub unit_price_cents: u64,
        /// Units left after this reservation.
        pub remaining: u32,
    }

    /// Published on `stock-rejected` (key: the order id).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct StockRejected {
        /// The order.
        pub order_id: String,
        /// The product.
        pub product_id: u64,
        /// Why, for people.
        pub reason: String,
    }
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// Loads the configuration (`application.yaml`, profiles, `MQ_*` variables).
///
/// The directory is `MQ_CONFIG_DIR` when set, else this crate's own directory
/// ([`CONFIG_DIR`], fixed at compile time): so `cargo run -p product-service` from the workspace root finds
/// `examples/product-service/application.yaml`.
pub fn load_config() -> Result<Config, ConfigError> {
    Config::load_or(CONFIG_DIR)
}

/// Topics this service publishes to (`product-service.topics.*`). The topic it reads is in
/// its `#[listener]`, and can be changed with `mq.listeners.reserve_stock.topics`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Topics {
    /// Default `stock-reserved`.
    #[serde(default = "default_reserved")]
    pub stock_reserved: String,
    /// Default `stock-rejected`.
    #[serde(default = "default_rejected")]
    pub stock_rejected: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            stock_reserved: default_reserved(),
            stock_rejected: default_rejected(),
        }
    }
}

fn default_reserved() -> String {
    "stock-reserved".to_owned()
}
fn default_rejected() -> String {
    "stock-rejected".to_owned()
}

/// A product of the catalogue and its stock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Product {
    /// Product id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// Units available.
    pub stock: u32,
    /// Price of one unit, in cents.
    #[serde(default)]
    pub price_cents: u64,
}

/// `product-service.*`
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    /// `product-service.topics.*`
    #[serde(default)]
    pub topics: Topics,
    /// `product-service.catalogue`: the stock at startup.
    #[serde(default)]
    pub catalogue: Vec<Product>,
}

impl Settings {
    /// Extracts `product-service.*` from the merged configuration.
    pub fn from_config(config: &Config) -> Result<Settings, BoxError> {
        Ok(config.section::<Settings>("product-service")?)
    }
}

// ---------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------

/// What an order event came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Reservation {
    /// Stock set aside.
    Reserved(StockReserved),
    /// Not enough stock.
    Rejected(StockRejected),
}

/// The catalogue with its stock, and the memory of handled events; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    inner: Arc<Mutex<Stock>>,
}

#[derive(Debug, Default)]
struct Stock {
    products: BTreeMap<u64, Product>,
    /// Outcome per handled event id, for redeliveries.
    handled: HashMap<String, Reservation>,
    /// Handled event ids, oldest first (to bound the memory).
    handled_order: VecDeque<String>,
}

impl Inventory {
    /// An inventory holding `catalogue`.
    pub fn new(catalogue: impl IntoIterator<Item = Product>) -> Inventory {
        let products = catalogue.into_iter().map(|p| (p.id, p)).collect();
        Inventory {
            inner: Arc::new(Mutex::new(Stock {
                products,
                ..Stock::default()
            })),
        }
    }

    /// The products and their stock now.
    pub fn products(&self) -> Vec<Product> {
        self.lock().products.values().cloned().collect()
    }

    /// Reserves stock for the order carried by event `event_id`. Returns the outcome and
    /// whether it is a replay (the event was handled before: nothing reserved this time).
    /// `Err` names an unknown product.
    pub fn reserve(
        &self,
        event_id: &str,
        order: &OrderCreated,
    ) -> Result<(Reservation, bool), String> {
        let mut stock = self.lock();
        if let Some(done) = stock.handled.get(event_id) {
            return Ok((done.clone(), true));
        }
        let product = stock
            .products
            .get_mut(&order.product_id)
            .ok_or_else(|| format!("unknown product {}", order.product_id))?;
        let outcome = if product.stock >= order.quantity {
            product.stock -= order.quantity;
            Reservation::Reserved(StockReserved {
                order_id: order.order_id.clone(),
                product_id: product.id,
                quantity: order.quantity,
                unit_price_cents: product.price_cents,
                remaining: product.stock,
            })
        } else {
            Reservation::Rejected(StockRejected {
                order_id: order.order_id.clone(),
                product_id: product.id,
                reason: format!(
                    "insufficient stock for {}: requested {}, available {}",
                    product.name, order.quantity, product.stock
                ),
            })
        };
        stock.handled.insert(event_id.to_owned(), outcome.clone());
        stock.handled_order.push_back(event_id.to_owned());
        while stock.handled_order.len() > REMEMBERED_EVENTS {
            if let Some(old) = stock.handled_order.pop_front() {
                stock.handled.remove(&old);
            }
        }
        Ok((outcome, false))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stock> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

// ---------------------------------------------------------------------------------------
// Listener
// ---------------------------------------------------------------------------------------

/// Logs what an order event came to.
fn log_outcome(outcome: &Reservation, replay: bool) {
    match outcome {
        Reservation::Reserved(r) => tracing::info!(
            order_id = %r.order_id,
            product_id = r.product_id,
            quantity = r.quantity,
            remaining = r.remaining,
            replay,
            "stock reserved"
        ),
        Reservation::Rejected(r) => {
            tracing::info!(order_id = %r.order_id, reason = %r.reason, replay, "stock rejected")
        }
    }
}

/// Reserves stock for a new order and publishes the outcome. Unknown product: permanent
/// error, so the record goes to `order-create-event-dlt` without retries.
#[listener(topic = "order-create-event", idempotent)]
async fn reserve_stock(
    event: Event<OrderCreated>,
    ctx: Context,
    tx: Tx,
) -> Result<(), HandlerError> {
    let stockroom = ctx.state::<Stockroom>();
    let topics = ctx.state::<Topics>();
    let order = &event.data;
    // PostgreSQL: the outcome went into the outbox with the reservation; nothing to send.
    let Some((outcome, replay)) = stockroom.reserve(&tx, &event.id, order, &topics).await? else {
        return Ok(());
    };
    log_outcome(&outcome, replay);
    let key = order.order_id.as_bytes();
    match outcome {
        Reservation::Reserved(reserved) => {
            let event = Event::new("StockReserved", reserved).with_subject(order.order_id.clone());
            ctx.publisher()
                .send(&topics.stock_reserved, key, event)
                .await?;
        }
        Reservation::Rejected(rejected) => {
            let event = Event::new("StockRejected", rejected).with_subject(order.order_id.clone());
            ctx.publisher()
                .send(&topics.stock_rejected, key, event)
                .await?;
        }
    }
    Ok(())
}

/// The names of this crate's listeners that are registered in the running binary.
pub fn listener_names() -> Vec<&'static str> {
    mq_core::registry::registered_in(module_path!())
}

/// The service in memory: its listener, the inventory (from `product-service.catalogue`)
/// and topic settings as state, and an `inventory` health component with the stock
/// levels. Fails when the listener is not linked in (see the crate docs).
pub fn app(config: Config) -> Result<App, BoxError> {
    let settings = Settings::from_config(&config)?;
    let names = listener_names();
    if names.is_empty() {
        return Err("no product-service listener is registered in this binary: \
                    reference the crate (`use product_service as _;`) so that it is linked"
            .into());
    }
    let prices = prices::PriceList::new(&settings.catalogue);
    let inventory = Inventory::new(settings.catalogue);
    let probe = inventory.clone();
    Ok(App::new(config)
        .with_state(Stockroom::Memory(inventory))
        .with_state(prices)
        .with_state(settings.topics)
        .with_health_indicator("inventory", move || {
            let products = probe.products();
            let out_of_stock = products.iter().filter(|p| p.stock == 0).count();
            Health::up()
                .with_detail("products", products)
                .with_detail("outOfStock", out_of_stock)
        })
        .only_listeners(names))
}

/// The service on PostgreSQL (`mq.datasource.url`): the stock in `products`, reservations
/// in `reservations`, outcomes through the outbox; mq's tables are migrated first.
pub async fn app_on_database(config: Config, pool: mq_core::sqlx::PgPool) -> Result<App, BoxError> {
    let settings = Settings::from_config(&config)?;
    if listener_names().is_empty() {
        return Err("no product-service listener is registered in this binary".into());
    }
    mq_core::outbox::migrate(&pool, &config.mq.outbox.table, &config.mq.inbox.table).await?;
    let outbox = mq_core::outbox::Outbox::new(&config);
    let stock = PgStock::open(pool.clone(), outbox, &settings.catalogue).await?;
    Ok(App::new(config)
        .with_datasource(pool)
        .with_state(Stockroom::Postgres(stock))
        .with_state(prices::PriceList::new(&settings.catalogue))
        .with_state(settings.topics)
        .only_listeners(listener_names()))
}

/// Runs the service until ctrl-c or SIGTERM, then shuts down gracefully: on PostgreSQL
/// when `mq.datasource.url` is set, else in memory.
pub async fn run(config: Config) -> Result<(), BoxError> {
    match mq_core::datasource::pool(&config)? {
        Some(pool) => app_on_database(config, pool).await?.run().await?,
        None => {
            tracing::info!("no mq.datasource.url: the stock is kept in memory");
            app(config)?.run().await?
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: &str, product_id: u64, quantity: u32) -> OrderCreated {
        OrderCreated {
            order_id: id.into(),
            product_id,
            quantity,
        }
    }

    fn inventory() -> Inventory {
        Inventory::new([Product {
            id: 2,
            name: "monitor".into(),
            stock: 3,
            price_cents: 100,
        }])
    }

    #[test]
    fn reserves_until_the_stock_runs_out() {
        let inv = inventory();
        let (r, replay) = inv.reserve("e1", &order("o1", 2, 2)).unwrap();
        assert!(matches!(
            r,
            Reservation::Reserved(StockReserved { remaining: 1, .. })
        ));
        assert!(!replay);
        let (r, _) = inv.reserve("e2", &order("o2", 2, 2)).unwrap();
        match r {
            Reservation::Rejected(r) => assert_eq!(
                r.reason,
                "insufficient stock for monitor: requested 2, available 1"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(inv.products()[0].stock, 1);
    }

    #[test]
    fn a_redelivered_event_does_not_reserve_twice() {
        let inv = inventory();
        let first = inv.reserve("e1", &order("o1", 2, 2)).unwrap();
        let again = inv.reserve("e1", &order("o1", 2, 2)).unwrap();
        assert_eq!(again, (first.0, true));
        assert_eq!(inv.products()[0].stock, 1);
    }

    #[test]
    fn an_unknown_product_is_an_error() {
        assert_eq!(
            inventory().reserve("e", &order("o", 9, 1)).unwrap_err(),
            "unknown product 9"
        );
    }

    #[test]
    fn the_listener_is_registered_and_the_catalogue_loads() {
        assert_eq!(listener_names(), ["quote_price", "reserve_stock"]);
        let config = Config::load_from(CONFIG_DIR).unwrap();
        let settings = Settings::from_config(&config).unwrap();
        assert_eq!(settings.catalogue.len(), 3);
        assert_eq!(settings.topics.stock_rejected, "stock-rejected");
    }
}
