//! The one-command demo: `cargo run -p demo`.
//!
//! Runs order-service and product-service in this one process, against an embedded Kafka
//! (`mq.kafka.bootstrap-servers: embedded`, librdkafka's in-process mock cluster: no broker
//! to install), sends a few sample orders through the orders HTTP API and prints the flow
//! as it happens: order → stock → payment → CONFIRMED, or REJECTED (out of stock, or an
//! unknown product that product-service dead-letters). Then it keeps serving the HTTP API
//! and both actuators until ctrl-c; with `--exit-after-flow` (or `MQ_DEMO_EXIT_AFTER_FLOW=1`)
//! it stops right after the sample flow.
//!
//! Each service runs as its own [`mq_core::App`] (own name, producer, actuator, state), built
//! from its own `application.yaml` with two changes: the embedded cluster, and one consumer
//! group per listener (the mock cluster rebalances a group for ~35 s when a second member
//! joins it). `MQ_*` variables apply to both services (`MQ_MANAGEMENT__SERVER__PORT=0` gives
//! both actuators free ports), `SERVER_PORT` to the orders API.

// Both services' listeners register through `inventory`: a library crate is only linked
// (and its listeners only registered) when the binary uses it. This binary calls into both,
// and these lines keep them linked even if it did not. `check_listeners` verifies it.
use order_service as _;
use product_service as _;

mod notifications;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use mq_core::prelude::*;
use mq_core::{Config, RunningApp};
use order_service::{OrderBook, OrderStatus};
use serde_json::{json, Value};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The sample orders: (product, quantity, customer, what should happen).
const SAMPLE: &[(u64, i64, &str, &str)] = &[
    (1, 2, "ada", "keyboards in stock"),
    (2, 1, "grace", "a monitor"),
    (3, 1, "alan", "the only limited-edition mouse"),
    (3, 1, "barbara", "the mouse again: out of stock"),
    (42, 1, "edsger", "unknown product: dead-lettered"),
    (2, 5, "linus", "5 monitors, 2 left: out of stock"),
    (2, 2, "margaret", "the last 2 monitors"),
];

/// How long one sample order may take to reach its final state.
const ORDER_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// The flow printer: a listener of its own, in its own app and group, that sees every
// event of the flow on the wire.
// ---------------------------------------------------------------------------------------

/// Prints the flow: one line per event or status change, labelled by order (#1, #2, …),
/// in the order things happened. Events of different topics are handled by different
/// partition workers, so they may reach the printer a few milliseconds out of order: lines
/// are held for [`Flow::HOLD_MS`] and printed sorted by when they happened (the record's
/// timestamp for events). Cheap to clone.
#[derive(Clone)]
struct Flow {
    started_ms: i64,
    ids: Arc<Mutex<HashMap<String, usize>>>,
    lines: tokio::sync::mpsc::UnboundedSender<(i64, u8, String)>,
}

impl Flow {
    const HOLD_MS: i64 = 80;

    /// A printer, and the task that prints (ends when every `Flow` is dropped).
    fn start() -> (Flow, tokio::task::JoinHandle<()>) {
        let (lines, mut rx) = tokio::sync::mpsc::unbounded_channel::<(i64, u8, String)>();
        let printer = tokio::spawn(async move {
            let mut pending: BTreeMap<(i64, u8, u64), (i64, String)> = BTreeMap::new();
            let mut seq = 0u64;
            let mut open = true;
            while open || !pending.is_empty() {
                if open {
                    tokio::select! {
                        line = rx.recv() => match line {
                            Some((at, stage, line)) => {
                                pending.insert((at, stage, seq), (now_ms(), line));
                                seq += 1;
                            }
                            None => open = false,
                        },
                        _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                    }
                }
                while let Some(first) = pending.first_entry() {
                    if open && now_ms() - first.get().0 < Flow::HOLD_MS {
                        break;
                    }
                    println!("{}", first.remove().1);
                }
            }
        });
        let flow = Flow {
            started_ms: now_ms(),
            ids: Arc::default(),
            lines,
        };
        (flow, printer)
    }

    /// The order's label number.
    fn label(&self, order_id: &str) -> usize {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let next = ids.len() + 1;
        *ids.entry(order_id.to_owned()).or_insert(next)
    }

    /// Queues a line about `order_id` that happened at `at_ms` (Unix ms). Lines of the
    /// same millisecond are printed in the order of the flow's stages.
    fn emit(&self, at_ms: i64, order_id: &str, column: &str, text: impl std::fmt::Display) {
        let n = self.label(order_id);
        let t = (at_ms - self.started_ms) as f64 / 1000.0;
        let stage = match column {
            "POST /orders" => 0,
            "order-create-event" => 1,
            "payment-completed" => 3,
            "=> order-service" => 4,
            _ => 2,
        };
        let _ = self.lines.send((
            at_ms,
            stage,
            format!("{t:>6.2}s  #{n:<2} {column:<24} {text}"),
        ));
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Prints each event of the flow. Reads every topic of the flow, including the dead-letter
/// topic; any JSON payload decodes as `Event<Value>`.
#[listener(topics = [
    "order-create-event",
    "stock-reserved",
    "stock-rejected",
    "payment-completed",
    "order-create-event-dlt"
])]
async fn trace_flow(event: Event<Value>, ctx: Context) -> Result<(), HandlerError> {
    let flow = ctx.state::<Flow>();
    let order_id = ctx
        .key_str()
        .map(str::to_owned)
        .or_else(|| event.data["order_id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let d = &event.data;
    let what = match ctx.topic() {
        "order-create-event" => format!(
            "{}: product {} x {}{}",
            event.ty,
            d["product_id"],
            d["quantity"],
            d["customer"]
                .as_str()
                .map(|c| format!(" for {c}"))
                .unwrap_or_default()
        ),
        "stock-reserved" => format!(
            "{}: {} reserved, {} left",
            event.ty, d["quantity"], d["remaining"]
        ),
        "stock-rejected" => format!("{}: {}", event.ty, d["reason"].as_str().unwrap_or("?")),
        "payment-completed" => format!(
            "{}: {} paid ({})",
            event.ty,
            money(d["amount_cents"].as_u64().unwrap_or(0)),
            d["payment_id"].as_str().unwrap_or("?")
        ),
        _ => format!(
            "dead letter from {}: {}",
            ctx.headers()
                .get_str(mq_core::dead_letter::headers::ORIGINAL_CONSUMER_GROUP)
                .unwrap_or("?"),
            ctx.headers()
                .get_str(mq_core::dead_letter::headers::EXCEPTION_MESSAGE)
                .unwrap_or("?")
        ),
    };
    let at = ctx.timestamp().unwrap_or_else(now_ms);
    flow.emit(at, &order_id, ctx.topic(), what);
    Ok(())
}

fn money(cents: u64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

/// Prints each order's move to a final status, as order-service records it.
async fn watch_statuses(orders: OrderBook, flow: Flow) {
    let mut seen: HashMap<String, OrderStatus> = HashMap::new();
    loop {
        for order in orders.all() {
            if order.status == OrderStatus::Pending {
                continue;
            }
            if seen.insert(order.order_id.clone(), order.status) != Some(order.status) {
                let reason = order
                    .reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                flow.emit(
                    now_ms(),
                    &order.order_id,
                    "=> order-service",
                    format!("order {}{reason}", status_name(order.status)),
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn status_name(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Pending => "PENDING",
        OrderStatus::Confirmed => "CONFIRMED",
        OrderStatus::Rejected => "REJECTED",
    }
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// A service's configuration for the demo: its files and `MQ_*` variables, then the
/// embedded cluster and one group per listener on top.
fn demo_config(base: Config, app_name: &str, listeners: &[&str]) -> Result<Config, BoxError> {
    let mut layer = String::from("mq:\n  kafka:\n    bootstrap-servers: embedded\n");
    if !listeners.is_empty() {
        layer.push_str("  listeners:\n");
        for name in listeners {
            layer.push_str(&format!(
                "    {name}:\n      group: \"{app_name}-{name}\"\n"
            ));
        }
    }
    Ok(base.with_yaml_layer(&layer)?)
}

fn tracer_config() -> Result<Config, BoxError> {
    Ok(Config::from_yaml_str(
        r#"
mq:
  application:
    name: demo-flow-tracer
  kafka:
    bootstrap-servers: embedded
  listeners:
    trace_flow:
      dlt:
        enabled: false
management:
  server:
    enabled: false
"#,
    )?)
}

/// Fails unless both services' listeners (and the tracer) are linked into this binary.
fn check_listeners() -> Result<(Vec<&'static str>, Vec<&'static str>), BoxError> {
    let orders = order_service::listener_names();
    let products = product_service::listener_names();
    let all: Vec<&str> = mq_core::registry::registered()
        .iter()
        .map(|l| l.name)
        .collect();
    for (service, names) in [("order-service", &orders), ("product-service", &products)] {
        if names.is_empty() {
            return Err(format!(
                "no {service} listener is registered in this binary (registered: {all:?}); \
                 reference the crate with `use {} as _;`",
                service.replace('-', "_")
            )
            .into());
        }
    }
    if !all.contains(&"trace_flow") {
        return Err("the demo's own trace_flow listener is not registered".into());
    }
    Ok((orders, products))
}

// ---------------------------------------------------------------------------------------
// A minimal HTTP client (the demo talks to the orders API over the network, like curl)
// ---------------------------------------------------------------------------------------

async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), BoxError> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(payload)))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, value))
}

/// A connectable address for a listening one (0.0.0.0 → 127.0.0.1).
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

// ---------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------

struct Running {
    leg: notifications::Leg,
    product: RunningApp,
    order: RunningApp,
    tracer: RunningApp,
    http_stop: tokio::sync::oneshot::Sender<()>,
    http: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn shutdown(self) {
        let _ = self.http_stop.send(());
        let _ = self.http.await;
        self.leg.shutdown().await;
        for app in [self.tracer, self.order, self.product] {
            if let Err(e) = app.shutdown().await {
                eprintln!("shutdown: {e}");
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let exit_after_flow = std::env::args().any(|a| a == "--exit-after-flow")
        || std::env::var("MQ_DEMO_EXIT_AFTER_FLOW").is_ok_and(|v| !v.is_empty() && v != "0");
    // Logs go to stderr, quiet by default so the flow stays readable (RUST_LOG=info for all).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colour codes only on a terminal and without NO_COLOR (https://no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .try_init();
    match demo(exit_after_flow).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the demo; `Ok(false)` when a sample order did not reach a final state.
async fn demo(exit_after_flow: bool) -> Result<bool, BoxError> {
    let started = Instant::now();
    println!(
        "mq demo: order-service + product-service in one process, on an embedded Kafka; notification-service on RabbitMQ (or in memory)"
    );
    println!(
        "no database: orders, stock and the idempotent listeners' records of handled events \
         are in memory (the services use PostgreSQL and the outbox when mq.datasource.url is set)\n"
    );

    let (order_listeners, product_listeners) = check_listeners()?;
    println!("listeners linked into this binary:");
    println!("  order-service   {}", order_listeners.join(", "));
    println!("  product-service {}", product_listeners.join(", "));
    println!(
        "  notification    {}",
        notification_service::listener_names().join(", ")
    );
    println!("  demo            trace_flow (prints the events below)\n");
    let on_rabbit = notifications::rabbit_answers().await;

    let product_cfg = demo_config(
        Config::load_from(product_service::CONFIG_DIR)?,
        "product-service",
        &product_listeners,
    )?;
    let mut order_cfg = demo_config(
        Config::load_from(order_service::CONFIG_DIR)?,
        "order-service",
        &order_listeners,
    )?;
    if on_rabbit {
        // order-service publishes OrderConfirmed to RabbitMQ's `orders` exchange itself.
        order_cfg = order_cfg.with_yaml_layer(&notifications::order_service_layer())?;
    }
    let order_settings = order_service::Settings::from_config(&order_cfg)?;

    let (flow, _printer) = Flow::start();
    let product = product_service::app(product_cfg)?.start().await?;
    let orders = OrderBook::default();
    let order = order_service::app(order_cfg, orders.clone())?
        .start()
        .await?;
    let tracer = App::new(tracer_config()?)
        .with_state(flow.clone())
        .only_listeners(["trace_flow"])
        .start()
        .await?;
    let leg = notifications::Leg::start(on_rabbit, orders.clone(), flow.clone()).await?;
    println!("notifications: {}\n", leg.describe());

    print!("waiting for the consumer groups to form (about 3 s on the embedded cluster) ... ");
    let joined = Instant::now();
    let deadline = Duration::from_secs(60);
    for app in [&product, &order, &tracer] {
        if !app.wait_assigned(deadline).await {
            return Err("the listeners got no partitions within 60 s".into());
        }
    }
    println!("joined in {:.1}s", joined.elapsed().as_secs_f64());

    // The orders HTTP API, as order-service serves it.
    let http_listener = tokio::net::TcpListener::bind((
        order_settings.server.address.as_str(),
        order_settings.server.port,
    ))
    .await
    .map_err(|e| {
        format!(
            "cannot bind the orders API on {}:{} ({e}); set SERVER_PORT",
            order_settings.server.address, order_settings.server.port
        )
    })?;
    let api = reachable(http_listener.local_addr()?);
    let (http_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = order_service::router(orders.clone(), order.publisher(), order_settings.topics);
    let http_task = tokio::spawn(async move {
        let _ = axum::serve(http_listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    let running = Running {
        leg,
        product,
        order,
        tracer,
        http_stop,
        http: http_task,
    };
    let order_actuator = running.order.actuator_addr().map(reachable);
    let product_actuator = running.product.actuator_addr().map(reachable);
    if let Some(a) = order_actuator {
        let (status, health) = http(a, "GET", "/actuator/health", None).await?;
        println!(
            "embedded Kafka at {} (order-service health: {} {})",
            health["components"]["kafka"]["details"]["bootstrapServers"]
                .as_str()
                .unwrap_or("?"),
            status,
            health["status"].as_str().unwrap_or("?")
        );
    }
    println!("order-service    API      http://{api}/orders");
    if let Some(a) = order_actuator {
        println!("order-service    actuator http://{a}/actuator");
    }
    if let Some(a) = product_actuator {
        println!("product-service  actuator http://{a}/actuator");
    }

    // A request the API refuses.
    let bad = json!({"product_id": 1, "quantity": 0});
    let (status, body) = http(api, "POST", "/orders", Some(&bad)).await?;
    println!(
        "\nPOST /orders {bad} -> {status} {}",
        body["message"].as_str().unwrap_or("")
    );

    println!(
        "\nsample orders (catalogue: 1 keyboard x100, 2 monitor x3, 3 limited-edition mouse x1):\n"
    );
    let watcher = tokio::spawn(watch_statuses(orders.clone(), flow.clone()));
    let flow_started = Instant::now();
    let mut placed = Vec::new();
    let mut all_final = true;
    for (product_id, quantity, customer, note) in SAMPLE {
        let body = json!({"product_id": product_id, "quantity": quantity, "customer": customer});
        let posted = now_ms();
        let (status, answer) = http(api, "POST", "/orders", Some(&body)).await?;
        let Some(order_id) = answer["order_id"].as_str().map(str::to_owned) else {
            return Err(format!("POST /orders answered {status} {answer}").into());
        };
        let n = flow.label(&order_id);
        flow.emit(
            posted,
            &order_id,
            "POST /orders",
            format!("{status} {order_id}: {note}"),
        );
        // One order at a time, so that each flow reads top to bottom.
        let deadline = Instant::now() + ORDER_TIMEOUT;
        loop {
            let (_, current) = http(api, "GET", &format!("/orders/{order_id}"), None).await?;
            if current["status"] != "PENDING" {
                break;
            }
            if Instant::now() > deadline {
                println!("#{n} did not reach a final state within {ORDER_TIMEOUT:?}");
                all_final = false;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let the printer catch up before the next order.
        tokio::time::sleep(Duration::from_millis(150)).await;
        placed.push((n, order_id));
    }
    let flow_time = flow_started.elapsed();
    let mut confirmed_ids = Vec::new();
    for (_, order_id) in &placed {
        if orders
            .get(order_id)
            .is_some_and(|o| o.status == OrderStatus::Confirmed)
        {
            confirmed_ids.push(order_id.clone());
        }
    }
    let missing = running
        .leg
        .wait_notified(&confirmed_ids, Duration::from_secs(10))
        .await;
    if !missing.is_empty() {
        println!("no notification for the confirmed order(s) {missing:?}");
        all_final = false;
    }
    // Let the printer show the last notifications.
    tokio::time::sleep(Duration::from_millis(150)).await;

    println!("\nsummary (GET /orders/{{id}}):");
    let mut confirmed = 0;
    for (n, order_id) in &placed {
        let (_, o) = http(api, "GET", &format!("/orders/{order_id}"), None).await?;
        let status = o["status"].as_str().unwrap_or("?");
        confirmed += usize::from(status == "CONFIRMED");
        println!(
            "  #{n:<2} {order_id}  {status:<9}  {}{}",
            o["history"]
                .as_array()
                .map(|h| h
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" > "))
                .unwrap_or_default(),
            o["reason"]
                .as_str()
                .map(|r| format!("  ({r})"))
                .unwrap_or_default()
        );
    }
    println!(
        "\n{} orders, {confirmed} confirmed ({} notified), {} rejected; sample flow took {:.1}s ({:.1}s since start)",
        placed.len(),
        confirmed_ids.len() - missing.len(),
        placed.len() - confirmed,
        flow_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    if !exit_after_flow {
        println!("\nthe services keep running; try:");
        println!(
            "  curl -s -X POST http://{api}/orders -H 'content-type: application/json' -d '{{\"product_id\":1,\"quantity\":3}}'"
        );
        println!("  curl -s http://{api}/orders");
        if let Some(a) = order_actuator {
            println!("  curl -s http://{a}/actuator/health");
            println!("  curl -s http://{a}/actuator/prometheus");
        }
        if let Some(a) = product_actuator {
            println!("  curl -s http://{a}/actuator/health     # with the stock levels");
        }
        println!("ctrl-c to stop");
        order_service::shutdown_signal().await;
        println!("\nstopping");
    }
    watcher.abort();
    running.shutdown().await;
    println!("stopped");
    Ok(all_final)
}
