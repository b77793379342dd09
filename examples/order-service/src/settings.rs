//! The service's own settings: `server.*` and `order-service.*` beside `mq.*`.

use mq_core::config::ConfigError;
use mq_core::Config;

use crate::{BoxError, CONFIG_DIR};

/// Loads the configuration (`application.yaml`, profiles, `MQ_*` variables).
///
/// The directory is `MQ_CONFIG_DIR` when set, else this crate's own directory
/// ([`CONFIG_DIR`], fixed at compile time): so `cargo run -p order-service` from the workspace root finds
/// `examples/order-service/application.yaml`.
pub fn load_config() -> Result<Config, ConfigError> {
    Config::load_or(CONFIG_DIR)
}

/// Where the HTTP API listens: Spring Boot's `server.address` / `server.port`, overridden
/// by the `SERVER_ADDRESS` / `SERVER_PORT` environment variables (port 0 picks a free one).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServerSettings {
    /// Bind address. Default `0.0.0.0`.
    #[serde(default = "default_address")]
    pub address: String,
    /// Port. Default 8080.
    #[serde(default = "default_port")]
    pub port: u16,
}

fn default_address() -> String {
    "0.0.0.0".to_owned()
}
fn default_port() -> u16 {
    8080
}

/// Topics this service publishes to (`order-service.topics.*`). The topics it reads are in
/// its `#[listener]`s, and can be changed with `mq.listeners.<name>.topics`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Topics {
    /// Default `order-create-event`.
    #[serde(default = "default_order_created")]
    pub order_created: String,
    /// Default `payment-completed`.
    #[serde(default = "default_payment_completed")]
    pub payment_completed: String,
    /// Where `OrderConfirmed` goes once an order is confirmed, e.g.
    /// `amqp://orders/order.confirmed` (RabbitMQ, read by notification-service). Default
    /// none: not published.
    #[serde(default)]
    pub order_confirmed: Option<String>,
    /// Where price requests go (product-service answers). Default `price-requests`.
    #[serde(default = "default_price_requests")]
    pub price_requests: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            order_created: default_order_created(),
            payment_completed: default_payment_completed(),
            order_confirmed: None,
            price_requests: default_price_requests(),
        }
    }
}

fn default_price_requests() -> String {
    "price-requests".to_owned()
}

fn default_order_created() -> String {
    "order-create-event".to_owned()
}
fn default_payment_completed() -> String {
    "payment-completed".to_owned()
}

/// The service's own settings, read from the same files as the framework's.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `server.*`
    pub server: ServerSettings,
    /// `order-service.topics.*`
    pub topics: Topics,
}

impl Settings {
    /// Extracts `server.*` (plus `SERVER_*` variables) and `order-service.*` from the
    /// merged configuration.
    pub fn from_config(config: &Config) -> Result<Settings, BoxError> {
        let mut server: ServerSettings = config.section("server")?;
        if let Ok(address) = std::env::var("SERVER_ADDRESS") {
            server.address = address;
        }
        if let Ok(port) = std::env::var("SERVER_PORT") {
            server.port = port
                .trim()
                .parse()
                .map_err(|e| format!("invalid SERVER_PORT {port:?}: {e}"))?;
        }
        let topics: Topics = config.section("order-service.topics")?;
        Ok(Settings { server, topics })
    }
}
