//! The notification leg of the demo: notification-service, whose queue listener reads the
//! durable queue `task_queue` bound to the topic exchange `orders`, tells customers of
//! confirmed orders.
//!
//! On the local RabbitMQ (127.0.0.1:5672, guest/guest) when one answers: order-service
//! publishes `OrderConfirmed` to `amqp://orders/order.confirmed` itself, and RabbitMQ routes
//! it to `task_queue`. Else on the in-memory transport (`mq_core::testing::TestApp`): the
//! demo hands the listener each confirmed order as order-service would have published it.

// The listener registers through `inventory`: keep the crate linked.
use notification_service as _;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mq_core::prelude::*;
use mq_core::testing::TestApp;
use mq_core::{Config, RunningApp};
use notification_service::Notifications;
use order_service::{OrderBook, OrderStatus};
use serde_json::json;

use super::{now_ms, BoxError, Flow};

/// Where the local RabbitMQ is expected; `DEMO_RABBITMQ_ADDRESS` points elsewhere (an
/// address where nothing listens shows the in-memory leg).
fn rabbit_address() -> String {
    std::env::var("DEMO_RABBITMQ_ADDRESS").unwrap_or_else(|_| "127.0.0.1:5672".to_owned())
}

/// The layer of order-service's configuration that makes it publish `OrderConfirmed` to
/// the RabbitMQ the demo found.
pub fn order_service_layer() -> String {
    format!(
        "mq:\n  rabbitmq:\n    addresses: [\"{}\"]\norder-service:\n  topics:\n    order-confirmed: amqp://orders/order.confirmed\n",
        rabbit_address()
    )
}

/// Whether a RabbitMQ answers at [`rabbit_address`] (a TCP connect within half a second).
pub async fn rabbit_answers() -> bool {
    let connect = tokio::net::TcpStream::connect(rabbit_address());
    matches!(
        tokio::time::timeout(Duration::from_millis(500), connect).await,
        Ok(Ok(_))
    )
}

enum Transport {
    Rabbit(Box<RunningApp>),
    InMemory(tokio::task::JoinHandle<()>),
}

/// The running leg.
pub struct Leg {
    transport: Transport,
    notifications: Notifications,
    printer: tokio::task::JoinHandle<()>,
}

impl Leg {
    /// Starts notification-service on RabbitMQ (`on_rabbit`) or in memory, and a task that
    /// prints each notification into the flow.
    pub async fn start(on_rabbit: bool, orders: OrderBook, flow: Flow) -> Result<Leg, BoxError> {
        let config = Config::load_from(notification_service::CONFIG_DIR)?.with_yaml_layer(
            &format!(
                "mq:\n  rabbitmq:\n    addresses: [\"{}\"]\nmanagement:\n  server:\n    enabled: false\n",
                rabbit_address()
            ),
        )?;
        let notifications = Notifications::default();
        let app = notification_service::app(config, notifications.clone())?;
        let (transport, column) = if on_rabbit {
            let running = app.start().await?;
            if !running.wait_assigned(Duration::from_secs(20)).await {
                return Err("notification-service did not start consuming task_queue".into());
            }
            (
                Transport::Rabbit(Box::new(running)),
                "task_queue (RabbitMQ)",
            )
        } else {
            let test_app = Arc::new(TestApp::new(app)?);
            let bridge = tokio::spawn(forward_confirmed(orders, test_app));
            (Transport::InMemory(bridge), "task_queue (in memory)")
        };
        let printer = tokio::spawn(print_notifications(notifications.clone(), flow, column));
        Ok(Leg {
            transport,
            notifications,
            printer,
        })
    }

    /// What the leg runs on, for people.
    pub fn describe(&self) -> String {
        match self.transport {
            Transport::Rabbit(_) => format!(
                "notification-service on RabbitMQ at {} (exchange orders -> task_queue, dead letters in task_queue.dlq)",
                rabbit_address()
            ),
            Transport::InMemory(_) => format!(
                "notification-service on the in-memory transport (no RabbitMQ answers at {})",
                rabbit_address()
            ),
        }
    }

    /// Waits until each of `order_ids` was notified; the ids still missing after `timeout`.
    pub async fn wait_notified(&self, order_ids: &[String], timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified: HashSet<String> = self
                .notifications
                .all()
                .into_iter()
                .map(|n| n.order_id)
                .collect();
            let missing: Vec<String> = order_ids
                .iter()
                .filter(|id| !notified.contains(*id))
                .cloned()
                .collect();
            if missing.is_empty() || Instant::now() > deadline {
                return missing;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the leg.
    pub async fn shutdown(self) {
        match self.transport {
            Transport::Rabbit(app) => {
                if let Err(e) = (*app).shutdown().await {
                    eprintln!("shutdown: {e}");
                }
            }
            Transport::InMemory(bridge) => bridge.abort(),
        }
        self.printer.abort();
    }
}

/// In memory: publishes each order that became CONFIRMED to `task_queue` of the in-memory
/// broker, as order-service publishes it to RabbitMQ, and lets the listener handle it.
async fn forward_confirmed(orders: OrderBook, app: Arc<TestApp>) {
    let mut forwarded: HashSet<String> = HashSet::new();
    loop {
        for order in orders.all() {
            if order.status != OrderStatus::Confirmed || !forwarded.insert(order.order_id.clone()) {
                continue;
            }
            let confirmed = json!({"order_id": order.order_id, "customer": order.customer});
            let event = Event::new("OrderConfirmed", confirmed);
            let key = order.order_id.as_bytes();
            if let Err(e) = app.publisher().send("amqp:///task_queue", key, event).await {
                eprintln!("in-memory notification not published: {e}");
            }
        }
        app.drain().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Prints each new notification into the flow.
async fn print_notifications(notifications: Notifications, flow: Flow, column: &'static str) {
    let mut printed = 0;
    loop {
        let all = notifications.all();
        for n in &all[printed.min(all.len())..] {
            flow.emit(now_ms(), &n.order_id, column, &n.text);
        }
        printed = all.len();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
