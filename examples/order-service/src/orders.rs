//! Orders and where they stand, kept in memory ([`OrderBook`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Accepted, waiting for stock and payment.
    Pending,
    /// Stock reserved and paid.
    Confirmed,
    /// Out of stock or unknown product.
    Rejected,
}

/// One order, as `GET /orders/{id}` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Order {
    /// Id (`ord-…`).
    pub order_id: String,
    /// Where it stands.
    pub status: OrderStatus,
    /// Why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What was ordered.
    pub product_id: u64,
    /// How many.
    pub quantity: u32,
    /// Who ordered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// The payment, once taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    /// The steps seen so far: `CREATED`, `STOCK_RESERVED`, `PAID`, `CONFIRMED`, `REJECTED`.
    pub history: Vec<String>,
}

impl Order {
    pub(crate) fn step(&mut self, step: &'static str) {
        if !self.history.iter().any(|s| s == step) {
            self.history.push(step.to_owned());
        }
    }

    /// Moves a pending order to a final status; false when it already had one.
    pub(crate) fn finish(&mut self, status: OrderStatus, reason: Option<String>) -> bool {
        if self.status != OrderStatus::Pending {
            return false;
        }
        self.status = status;
        self.reason = reason;
        self.step(match status {
            OrderStatus::Confirmed => "CONFIRMED",
            _ => "REJECTED",
        });
        true
    }
}

/// The orders, in memory; cheap to clone (shared). Registered with
/// [`App::with_state`](mq_core::App::with_state) for the listeners and handed to the HTTP
/// routes.
#[derive(Debug, Clone, Default)]
pub struct OrderBook {
    orders: Arc<Mutex<HashMap<String, Order>>>,
}

impl OrderBook {
    /// The order with this id.
    pub fn get(&self, order_id: &str) -> Option<Order> {
        self.lock().get(order_id).cloned()
    }

    /// Every order.
    pub fn all(&self) -> Vec<Order> {
        self.lock().values().cloned().collect()
    }

    pub(crate) fn insert(&self, order: Order) {
        self.lock().insert(order.order_id.clone(), order);
    }

    pub(crate) fn remove(&self, order_id: &str) {
        self.lock().remove(order_id);
    }

    /// Runs `f` on the order; `None` when there is no such order.
    pub(crate) fn update<R>(&self, order_id: &str, f: impl FnOnce(&mut Order) -> R) -> Option<R> {
        self.lock().get_mut(order_id).map(f)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Order>> {
        self.orders.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}
