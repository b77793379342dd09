//! The example services end to end, as users run them.
//!
//! - `services_run_as_separate_processes_on_the_real_broker`: builds the `order-service`
//!   and `product-service` binaries, starts them as child processes against the real
//!   broker (`scripts/kafka.sh start`), with topics, groups and ports of their own for this
//!   run (a test profile in a temporary `MQ_CONFIG_DIR`), posts 50 orders over HTTP and
//!   follows every one to its final state; checks the dead-letter topic, idempotency on a
//!   redelivered event, both actuators, and a graceful stop on SIGTERM.
//! - `the_demo_runs_the_flow_on_the_embedded_cluster`: runs `demo --exit-after-flow` (the
//!   embedded cluster; the notification leg on the local RabbitMQ when one answers, else in
//!   memory) and checks its output.
//! - `the_demo_runs_the_notification_leg_in_memory_when_no_rabbitmq_answers`: the same with
//!   `DEMO_RABBITMQ_ADDRESS` pointing where nothing listens.
//!
//! The binaries are built with `cargo build` into the target directory this test runs
//! from (derived from the test's own path), once per test binary.

use crate::support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use rdkafka::message::{Headers as _, Message};
use rdkafka::producer::FutureRecord;
use serde_json::{json, Value};
use support::examples::{config_dir, example_bins, free_port};
use support::{bootstrap, header, read_topic, unique};

const WAIT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------
// Building and running the example binaries
// ---------------------------------------------------------------------------------------

/// A running example binary; killed when dropped (also when the test fails), and its log
/// printed when the test is failing.
struct Service {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Service {
    /// Starts `bin` with its configuration directory `config_dir` and profile `test`.
    fn start(name: &'static str, config_dir: &Path, env: &[(&str, String)]) -> Service {
        let log = config_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(example_bins().join(name));
        // Nothing of the caller's MQ_* environment leaks into the service.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("MQ_") {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(config_dir)
            .env("MQ_CONFIG_DIR", config_dir)
            .env("MQ_PROFILES_ACTIVE", "test")
            .env("MQ_KAFKA__BOOTSTRAP_SERVERS", bootstrap())
            // The log is a file: no colour codes, without NO_COLOR's help.
            .env_remove("NO_COLOR")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({:?}): {e}", example_bins()));
        Service { name, child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for the exit; true when it exited successfully in time.
    fn terminate(&mut self, timeout: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => return false,
            }
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!(
                "---- last lines of {} ----\n{}",
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP, over `support::http`
// ---------------------------------------------------------------------------------------

/// `support::http`, its body as JSON (or as a JSON string when it is not JSON).
async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let resp = support::http(addr, method, path, body, None).await;
    let value = serde_json::from_str(&resp.body).unwrap_or(Value::String(resp.body));
    (resp.status, value)
}

/// Waits until `addr` answers `GET path` with 200 (the service is up and ready).
async fn wait_http_ok(addr: SocketAddr, path: &str, service: &mut Service) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(Some(status)) = service.child.try_wait() {
            panic!("{} exited early ({status}); its log follows", service.name);
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            let (status, body) = http(addr, "GET", path, None).await;
            if status == 200 {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} did not answer 200 on {path} within {WAIT:?}; its log follows",
            service.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The stock of `product` as product-service's `inventory` health component shows it.
fn stock_of(health: &Value, product: u64) -> u64 {
    health["components"]["inventory"]["details"]["products"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["id"] == product))
        .and_then(|p| p["stock"].as_u64())
        .unwrap_or_else(|| panic!("no stock of {product} in {health}"))
}

// ---------------------------------------------------------------------------------------
// (a) separate processes, real broker
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_run_as_separate_processes_on_the_real_broker() {
    let bins = example_bins();
    let run = unique("flow");
    let orders_topic = format!("order-create-event-{run}");
    let dlt_topic = format!("{orders_topic}-dlt");
    let (product_group, order_group) = (
        format!("product-service-{run}"),
        format!("order-service-{run}"),
    );
    let (http_port, order_mgmt, product_mgmt) = (free_port(), free_port(), free_port());
    let tmp = tempfile::tempdir().expect("tempdir");

    let product_dir = config_dir(
        tmp.path(),
        "product-service",
        &format!(
            r#"
mq:
  kafka:
    consumer:
      group-id: {product_group}
      properties:
        session.timeout.ms: 6000
  listeners:
    reserve_stock:
      topics: [{orders_topic}]
    quote_price:
      topics: [price-requests-{run}]
management:
  server:
    address: 127.0.0.1
    port: {product_mgmt}
product-service:
  topics:
    stock-reserved: stock-reserved-{run}
    stock-rejected: stock-rejected-{run}
  catalogue:
    - {{ id: 1, name: keyboard, stock: 1000, price-cents: 4999 }}
    - {{ id: 2, name: monitor, stock: 5, price-cents: 18900 }}
"#
        ),
    );
    let order_dir = config_dir(
        tmp.path(),
        "order-service",
        &format!(
            r#"
mq:
  kafka:
    reply-topic: order-replies-{run}
    consumer:
      group-id: {order_group}
      properties:
        session.timeout.ms: 6000
  listeners:
    take_payment:
      topics: [stock-reserved-{run}]
    on_payment_completed:
      topics: [payment-completed-{run}]
    on_stock_rejected:
      topics: [stock-rejected-{run}]
    on_order_dead_lettered:
      topics: [{dlt_topic}]
management:
  server:
    address: 127.0.0.1
    port: {order_mgmt}
order-service:
  topics:
    order-created: {orders_topic}
    payment-completed: payment-completed-{run}
    price-requests: price-requests-{run}
"#
        ),
    );
    let mut product = Service::start("product-service", &product_dir, &[]);
    let mut order = Service::start(
        "order-service",
        &order_dir,
        &[
            ("SERVER_ADDRESS", "127.0.0.1".to_owned()),
            ("SERVER_PORT", http_port.to_string()),
        ],
    );
    eprintln!("binaries from {}, run {run}", bins.display());

    // Readiness: the broker answers and every listener's consumer joined its group.
    let (api, order_actuator, product_actuator) = (
        loopback(http_port),
        loopback(order_mgmt),
        loopback(product_mgmt),
    );
    wait_http_ok(product_actuator, "/actuator/health/readiness", &mut product).await;
    wait_http_ok(order_actuator, "/actuator/health/readiness", &mut order).await;
    let before = wait_http_ok(product_actuator, "/actuator/health", &mut product).await;
    assert_eq!(stock_of(&before, 2), 5);

    // Request–reply: order-service asks product-service for a price over Kafka.
    let (status, quote) = http(api, "GET", "/prices/2", None).await;
    assert_eq!(status, 200, "{quote}");
    assert_eq!(quote["unit_price_cents"], 18900, "{quote}");
    assert_eq!(quote["name"], "monitor", "{quote}");
    let (status, body) = http(api, "GET", "/prices/99", None).await;
    assert_eq!(status, 404, "{body}");

    // Requests the API refuses, with a JSON error.
    let (status, body) = http(
        api,
        "POST",
        "/orders",
        Some(r#"{"product_id":1,"quantity":0}"#),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["message"], "quantity must be greater than 0", "{body}");
    let (status, body) = http(api, "POST", "/orders", Some("{not json")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["status"], 400, "{body}");
    let (status, _) = http(api, "GET", "/orders/ord-nope", None).await;
    assert_eq!(status, 404);

    // 50 orders: every 5th for an unknown product, every 5th (+1) for the scarce monitor
    // (5 in stock, 10 ordered), the rest for keyboards.
    let requests: Vec<(u64, u64)> = (0..50u64)
        .map(|i| match i % 5 {
            0 => (999, 1),
            1 => (2, 1),
            _ => (1, 1 + i % 3),
        })
        .collect();
    let placed: Vec<(String, u64, u64)> = stream::iter(requests)
        .map(|(product_id, quantity)| async move {
            let body = json!({"product_id": product_id, "quantity": quantity, "customer": "test"});
            let (status, answer) = http(api, "POST", "/orders", Some(&body.to_string())).await;
            assert_eq!(status, 202, "{answer}");
            assert_eq!(answer["status"], "PENDING");
            let id = answer["order_id"].as_str().expect("order_id").to_owned();
            (id, product_id, quantity)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(placed.len(), 50);

    // Every order reaches a final state.
    let mut finals: HashMap<String, Value> = HashMap::new();
    let deadline = Instant::now() + WAIT;
    while finals.len() < placed.len() {
        for (id, _, _) in &placed {
            if finals.contains_key(id) {
                continue;
            }
            let (status, o) = http(api, "GET", &format!("/orders/{id}"), None).await;
            assert_eq!(status, 200, "{o}");
            if o["status"] != "PENDING" {
                finals.insert(id.clone(), o);
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} of 50 orders still PENDING after {WAIT:?}",
            placed.len() - finals.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status_of = |id: &str| finals[id]["status"].as_str().unwrap().to_owned();
    let mut unknown_ids = Vec::new();
    let mut monitor_confirmed = 0;
    let mut keyboards = 0;
    for (id, product_id, quantity) in &placed {
        let o = &finals[id];
        match product_id {
            999 => {
                assert_eq!(status_of(id), "REJECTED", "{o}");
                assert_eq!(o["reason"], "unknown product 999", "{o}");
                unknown_ids.push(id.clone());
            }
            2 if status_of(id) == "CONFIRMED" => monitor_confirmed += 1,
            2 => {
                assert_eq!(status_of(id), "REJECTED", "{o}");
                assert!(
                    o["reason"]
                        .as_str()
                        .unwrap()
                        .starts_with("insufficient stock for monitor"),
                    "{o}"
                );
            }
            _ => {
                assert_eq!(status_of(id), "CONFIRMED", "{o}");
                keyboards += quantity;
            }
        }
        if status_of(id) == "CONFIRMED" {
            assert_eq!(
                o["history"],
                json!(["CREATED", "STOCK_RESERVED", "PAID", "CONFIRMED"]),
                "{o}"
            );
            assert!(o["payment_id"].as_str().unwrap().starts_with("pay-"), "{o}");
        }
    }
    assert_eq!(
        monitor_confirmed, 5,
        "exactly the 5 monitors in stock were sold"
    );
    assert_eq!(unknown_ids.len(), 10);

    // The unknown-product orders were dead-lettered by product-service, with Spring's headers.
    let dlt = read_topic(&dlt_topic, 10, WAIT).await;
    assert_eq!(dlt.len(), 10, "one dead letter per unknown-product order");
    let mut dlt_keys: Vec<String> = dlt
        .iter()
        .map(|m| String::from_utf8(m.key().unwrap().to_vec()).unwrap())
        .collect();
    dlt_keys.sort();
    unknown_ids.sort();
    assert_eq!(dlt_keys, unknown_ids);
    for m in &dlt {
        let h = |k: &str| {
            header(m, k)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_else(|| panic!("dead letter without {k}"))
        };
        assert_eq!(h("kafka_dlt-original-topic"), orders_topic);
        assert_eq!(h("kafka_dlt-exception-message"), "unknown product 999");
        assert_eq!(h("kafka_dlt-original-consumer-group"), product_group);
        assert!(!h("kafka_dlt-exception-fqcn").is_empty());
        assert!(h("kafka_dlt-exception-stacktrace").contains("unknown product 999"));
        assert_eq!(
            header(m, "kafka_dlt-original-offset").map(<[u8]>::len),
            Some(8)
        );
        assert_eq!(
            header(m, "kafka_dlt-original-partition").map(<[u8]>::len),
            Some(4)
        );
        // The original record, byte for byte: the CloudEvent order-service published, in
        // binary mode (Kafka's default): attributes in `ce_*` headers, the data as the value.
        assert_eq!(header(m, "ce_specversion"), Some(&b"1.0"[..]));
        assert_eq!(header(m, "ce_source"), Some(&b"/order-service"[..]));
        let data: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        assert_eq!(data["order_id"].as_str(), m.key_view::<str>().unwrap().ok());
    }

    // Idempotency: the same event delivered again (same id) does not reserve twice.
    let after = wait_http_ok(product_actuator, "/actuator/health", &mut product).await;
    assert_eq!(stock_of(&after, 2), 0);
    assert_eq!(stock_of(&after, 1), 1000 - keyboards);
    let originals = read_topic(&orders_topic, 50, WAIT).await;
    let keyboard_order = originals
        .iter()
        .find(|m| {
            let data: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            data["product_id"] == 1
        })
        .expect("a keyboard order event");
    let mut again = rdkafka::message::OwnedHeaders::new();
    if let Some(hs) = keyboard_order.headers() {
        for h in hs.iter() {
            again = again.insert(rdkafka::message::Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let reserved_before = read_topic(&format!("stock-reserved-{run}"), 35, WAIT)
        .await
        .len();
    assert_eq!(
        reserved_before, 35,
        "30 keyboard and 5 monitor reservations"
    );
    support::raw_producer()
        .send(
            FutureRecord::to(&orders_topic)
                .key(keyboard_order.key().unwrap())
                .payload(keyboard_order.payload().unwrap())
                .headers(again),
            Duration::from_secs(10),
        )
        .await
        .expect("redeliver");
    // reserve_stock is idempotent: the redelivery is acknowledged without running the
    // handler (counted in mq_inbox_duplicates_total), so nothing is answered again...
    let deadline = Instant::now() + WAIT;
    loop {
        let scrape = support::http(product_actuator, "GET", "/actuator/prometheus", None, None)
            .await
            .body;
        let skipped = scrape
            .lines()
            .find(|l| l.starts_with("mq_inbox_duplicates_total{") && l.contains("reserve_stock"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if skipped >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the redelivery was not acknowledged: {scrape}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reserved = read_topic(
        &format!("stock-reserved-{run}"),
        reserved_before + 1,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        reserved.len(),
        reserved_before,
        "the redelivered event was not handled again"
    );
    // ...and the stock is untouched.
    let replayed = wait_http_ok(product_actuator, "/actuator/health", &mut product).await;
    assert_eq!(
        stock_of(&replayed, 1),
        1000 - keyboards,
        "a redelivered event reserved again"
    );

    // Both services are healthy, with their listeners in their groups.
    for (actuator, service, group) in [
        (order_actuator, &mut order, &order_group),
        (product_actuator, &mut product, &product_group),
    ] {
        let health = wait_http_ok(actuator, "/actuator/health", service).await;
        assert_eq!(health["status"], "UP", "{health}");
        assert_eq!(health["components"]["kafka"]["status"], "UP", "{health}");
        let listeners = health["components"]["listeners"]["components"]
            .as_object()
            .expect("listener components");
        assert!(!listeners.is_empty());
        for (name, l) in listeners {
            assert_eq!(l["status"], "UP", "{name}: {l}");
            assert_eq!(&l["details"]["group"], group.as_str(), "{name}: {l}");
        }
    }
    let (status, prometheus) = http(product_actuator, "GET", "/actuator/prometheus", None).await;
    assert_eq!(status, 200);
    let text = prometheus.as_str().unwrap_or_default();
    assert!(
        text.lines()
            .any(|l| l.starts_with("mq_listener_dead_lettered_total{")
                && l.contains("name=\"reserve_stock\"")
                && l.contains("application=\"product-service\"")
                && l.ends_with(" 10")),
        "{text}"
    );

    // A graceful stop on SIGTERM.
    assert!(
        order.terminate(Duration::from_secs(30)),
        "order-service did not stop cleanly"
    );
    assert!(
        product.terminate(Duration::from_secs(30)),
        "product-service did not stop cleanly"
    );
    assert!(
        order.log().contains("order CONFIRMED"),
        "the flow shows in the logs"
    );
    assert!(product.log().contains("dead-lettered"));
}

// ---------------------------------------------------------------------------------------
// (b) the one-command demo
// ---------------------------------------------------------------------------------------

/// Runs `demo --exit-after-flow` with `env` on free ports; its stdout, once it succeeded.
fn run_demo(env: &[(&str, &str)]) -> String {
    let bin = example_bins().join("demo");
    let mut cmd = Command::new(&bin);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MQ_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let out_file = tempfile::NamedTempFile::new().expect("output file");
    let err_file = tempfile::NamedTempFile::new().expect("output file");
    let started = Instant::now();
    let mut child = cmd
        .arg("--exit-after-flow")
        // Free ports: the demo must not collide with anything else running here.
        .env("MQ_MANAGEMENT__SERVER__PORT", "0")
        .env("SERVER_PORT", "0")
        .env("SERVER_ADDRESS", "127.0.0.1")
        // Colour codes must stay off because stderr is a file, not because of NO_COLOR.
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(out_file.reopen().unwrap())
        .stderr(err_file.reopen().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    let limit = Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(out_file.path()).unwrap_or_default();
    let stderr = std::fs::read_to_string(err_file.path()).unwrap_or_default();
    println!("{stdout}");
    let Some(status) = status else {
        panic!("the demo did not finish within {limit:?}:\n{stdout}\n{stderr}");
    };
    assert!(
        status.success(),
        "demo failed ({status}):\n{stdout}\n{stderr}"
    );
    println!("demo took {:.1}s", started.elapsed().as_secs_f64());
    reads_clean(&stderr);
    stdout
}

/// A normal run and stop logs (to a file) no colour code, no ERROR line and each WARN once:
/// not lapin's NOT_FOUND of a queue polled before it was declared, not librdkafka's
/// AllBrokersDown of clients outliving the embedded cluster.
fn reads_clean(stderr: &str) {
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a file:\n{stderr}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "ERROR lines:\n{}", errors.join("\n"));
    let mut warns: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" WARN "))
        // Without the timestamp: the same warning twice is the same text after it.
        .map(|l| l.split_once(" WARN ").map_or(l, |(_, rest)| rest))
        .collect();
    let all = warns.len();
    warns.sort_unstable();
    warns.dedup();
    assert_eq!(warns.len(), all, "a WARN more than once:\n{stderr}");
}

#[test]
fn the_demo_runs_the_notification_leg_in_memory_when_no_rabbitmq_answers() {
    // Nothing listens on port 1: the leg runs on the in-memory transport and says so.
    let stdout = run_demo(&[("DEMO_RABBITMQ_ADDRESS", "127.0.0.1:1")]);
    assert!(
        stdout.contains("notifications: notification-service on the in-memory transport (no RabbitMQ answers at 127.0.0.1:1)"),
        "{stdout}"
    );
    let count = |s: &str| stdout.lines().filter(|l| l.contains(s)).count();
    assert_eq!(count("task_queue (in memory)"), 4, "{stdout}");
    assert!(
        stdout.contains("7 orders, 4 confirmed (4 notified), 3 rejected"),
        "{stdout}"
    );
}

#[test]
fn the_demo_runs_the_flow_on_the_embedded_cluster() {
    let stdout = run_demo(&[]);
    // Both services' listeners (and the demo's own) are registered in the one binary.
    assert!(
        stdout.contains("order-service   on_order_dead_lettered, on_payment_completed, on_stock_rejected, take_payment"),
        "{stdout}"
    );
    assert!(
        stdout.contains("product-service quote_price, reserve_stock"),
        "{stdout}"
    );
    // The flow: order -> stock -> payment -> CONFIRMED, and both kinds of rejection.
    let count = |s: &str| stdout.lines().filter(|l| l.contains(s)).count();
    assert_eq!(
        count("=> order-service         order CONFIRMED"),
        4,
        "{stdout}"
    );
    assert_eq!(
        count("payment-completed        PaymentCompleted"),
        4,
        "{stdout}"
    );
    assert_eq!(
        count("order-create-event       OrderCreated"),
        7,
        "{stdout}"
    );
    assert_eq!(
        count("stock-rejected           StockRejected"),
        2,
        "{stdout}"
    );
    assert!(stdout.contains("order-create-event-dlt   dead letter from product-service-reserve_stock: unknown product 42"), "{stdout}");
    assert!(
        stdout.contains("order REJECTED (unknown product 42)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "POST /orders {\"product_id\":1,\"quantity\":0} -> 400 quantity must be greater than 0"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("7 orders, 4 confirmed (4 notified), 3 rejected"),
        "{stdout}"
    );
    // The notification leg: on the local RabbitMQ when one answers, else in memory, and
    // the demo says which; one notification per confirmed order.
    let on_rabbit = std::net::TcpStream::connect("127.0.0.1:5672").is_ok();
    let (leg, column) = if on_rabbit {
        (
            "notifications: notification-service on RabbitMQ at 127.0.0.1:5672",
            "task_queue (RabbitMQ)",
        )
    } else {
        (
            "notifications: notification-service on the in-memory transport",
            "task_queue (in memory)",
        )
    };
    assert!(stdout.contains(leg), "{stdout}");
    assert_eq!(count(column), 4, "{stdout}");
    assert!(
        stdout.contains("(order-service health: 200 UP)"),
        "{stdout}"
    );
    // For one order, the steps come in causal order.
    let first: Vec<&str> = stdout.lines().filter(|l| l.contains("  #1 ")).collect();
    let pos = |s: &str| {
        first
            .iter()
            .position(|l| l.contains(s))
            .unwrap_or_else(|| panic!("no {s} for #1: {first:?}"))
    };
    assert!(pos("POST /orders") < pos("order-create-event"));
    assert!(pos("order-create-event") < pos("stock-reserved"));
    assert!(pos("stock-reserved") < pos("payment-completed"));
    assert!(pos("payment-completed") < pos("order CONFIRMED"));
}
