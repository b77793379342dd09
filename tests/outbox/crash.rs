//! The example services on PostgreSQL and the real broker, killed with SIGKILL while
//! orders come in over HTTP: order-service 5 times, product-service 2 times, at random
//! points. Afterwards every order acknowledged with 202 is committed and has exactly one
//! downstream effect (one stock reservation in product-service's database, one payment),
//! no reservation and no `order-create-event` exists for an order that was not committed,
//! and every order ends CONFIRMED.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mq_core::sqlx::{self, PgPool};
use rdkafka::message::Headers as _;
use rdkafka::Message;
use tokio::sync::Mutex;

use super::db;
use super::services::{config_dir, free_port, post, Service};
use super::support::{create_topic, random_between, read_until_idle, unique};

const ORDERS: usize = 2_000;
const ORDER_KILLS: usize = 5;
const PRODUCT_KILLS: usize = 2;
const STOCK: i64 = 1_000_000;
const WORKERS: usize = 8;
/// At most this for one `POST /orders`: a request the service never answers counts as
/// failed (not acknowledged) rather than holding its worker.
const REQUEST: Duration = Duration::from_secs(30);
/// At most this for a killed order-service to take connections again.
const COMING_BACK: Duration = Duration::from_secs(90);

/// What both services' profiles start with: their group, broker timings, database and
/// outbox polling.
fn service_base(group: &str, url: &str) -> String {
    format!(
        r#"mq:
  kafka:
    consumer:
      group-id: {group}
      properties:
        session.timeout.ms: 6000
        heartbeat.interval.ms: 500
  datasource:
    url: "{url}"
    pool-size: 12
  outbox:
    poll-interval: 20ms"#
    )
}

fn order_profile(s: &str, url: &str, http: u16, mgmt: u16) -> String {
    let base = service_base(&format!("os-{s}"), url);
    format!(
        r#"{base}
  listeners:
    take_payment:
      topics: [stock-reserved-{s}]
    on_payment_completed:
      topics: [payment-completed-{s}]
    on_stock_rejected:
      topics: [stock-rejected-{s}]
    on_order_dead_lettered:
      topics: [order-create-event-{s}-dlt]
management:
  server:
    port: {mgmt}
server:
  address: 127.0.0.1
  port: {http}
order-service:
  topics:
    order-created: order-create-event-{s}
    payment-completed: payment-completed-{s}
"#
    )
}

fn product_profile(s: &str, url: &str, mgmt: u16) -> String {
    let base = service_base(&format!("ps-{s}"), url);
    format!(
        r#"{base}
  listeners:
    reserve_stock:
      topics: [order-create-event-{s}]
management:
  server:
    port: {mgmt}
product-service:
  topics:
    stock-reserved: stock-reserved-{s}
    stock-rejected: stock-rejected-{s}
  catalogue:
    - {{ id: 9, name: crash-test-widget, stock: {STOCK}, price-cents: 100 }}
"#
    )
}

/// Waits until something accepts connections on `addr`.
async fn reachable(addr: SocketAddr, service: &mut Service) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        service.check_alive();
        assert!(Instant::now() < deadline, "{addr} never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every record of `topic` (read until nothing new came for 3 s): the event ids and the
/// order ids they carry.
async fn read_events(topic: &str) -> Vec<(String, String)> {
    read_until_idle(topic, Duration::from_secs(3))
        .await
        .iter()
        .map(|m| {
            // Binary mode, Kafka's default: the id in `ce_id`, the data as the value.
            let data: serde_json::Value =
                serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON data");
            let id = m
                .headers()
                .and_then(|hs| hs.iter().find(|h| h.key == "ce_id"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            (id, data["order_id"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

async fn ids(pool: &PgPool, sql: &str) -> Vec<String> {
    sqlx::query_as::<_, (String,)>(sql)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .map(|r| r.0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_survive_sigkills_with_exactly_one_effect_each() {
    let s = unique("x");
    for t in [
        "order-create-event",
        "stock-reserved",
        "stock-rejected",
        "payment-completed",
    ] {
        create_topic(&format!("{t}-{s}"), 3).await;
    }
    let (_os, os_url) = db::fresh_schema("crash_orders").await;
    let (_ps, ps_url) = db::fresh_schema("crash_stock").await;
    let root = tempfile::tempdir().unwrap();
    let http_port = free_port();
    let api = SocketAddr::from(([127, 0, 0, 1], http_port));
    let order_dir = config_dir(
        root.path(),
        "order-service",
        &order_profile(&s, &os_url, http_port, free_port()),
    );
    let product_dir = config_dir(
        root.path(),
        "product-service",
        &product_profile(&s, &ps_url, free_port()),
    );

    let mut product = Service::start("product-service", &product_dir);
    let order = Arc::new(Mutex::new(Service::start("order-service", &order_dir)));
    reachable(api, &mut *order.lock().await).await;

    // Kill points: attempt numbers at which a service is killed (and started again).
    let mut kills: Vec<(usize, bool)> = (0..ORDER_KILLS)
        .map(|_| (random_between(100, ORDERS - 100), true))
        .chain((0..PRODUCT_KILLS).map(|_| (random_between(100, ORDERS - 100), false)))
        .collect();
    kills.sort();
    println!("kill points (attempt, order-service?): {kills:?}");

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let failed = Arc::new(AtomicUsize::new(0));
    // Every wait below is bounded and a worker that gives up ends the test with its reason
    // (a worker's panic must not leave the kill loop waiting for attempts that never come).
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (next, acked, failed) = (next.clone(), acked.clone(), failed.clone());
            tokio::spawn(async move {
                loop {
                    if next.fetch_add(1, Ordering::SeqCst) >= ORDERS {
                        return Ok(());
                    }
                    let body = r#"{"product_id": 9, "quantity": 1}"#;
                    match tokio::time::timeout(REQUEST, post(api, "/orders", body)).await {
                        Ok(Ok((202, body))) => {
                            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                            acked
                                .lock()
                                .await
                                .push(v["order_id"].as_str().unwrap().to_owned());
                        }
                        Ok(_) | Err(_) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            // The service is down: wait for it instead of burning attempts.
                            let deadline = Instant::now() + COMING_BACK;
                            while tokio::net::TcpStream::connect(api).await.is_err() {
                                if Instant::now() >= deadline {
                                    return Err(format!(
                                        "order-service did not take connections again within \
                                         {COMING_BACK:?}"
                                    ));
                                }
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for (at, is_order) in kills {
        // Bounded by progress, not by a total: a slow machine only takes longer.
        let (mut seen, mut since) = (next.load(Ordering::SeqCst), Instant::now());
        while seen < at && !workers.iter().all(|w| w.is_finished()) {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let now = next.load(Ordering::SeqCst);
            if now != seen {
                (seen, since) = (now, Instant::now());
            }
            assert!(
                since.elapsed() < COMING_BACK,
                "no new order attempted for {COMING_BACK:?} before kill point {at}"
            );
        }
        if is_order {
            order.lock().await.kill_and_restart();
        } else {
            product.kill_and_restart();
        }
    }
    for w in futures::future::join_all(workers).await {
        if let Err(why) = w.expect("worker") {
            order.lock().await.check_alive();
            panic!("{why}");
        }
    }
    let acked: Vec<String> = acked.lock().await.clone();
    let posting = started.elapsed();

    // Everything committed flows through: reservations for every order, every order final.
    let orders_db = db::pool(&os_url, 2).await;
    let stock_db = db::pool(&ps_url, 2).await;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let committed = db::count(&orders_db, "SELECT count(*) FROM orders").await;
        let final_ = db::count(
            &orders_db,
            "SELECT count(*) FROM orders WHERE status <> 'PENDING'",
        )
        .await;
        let reserved = db::count(
            &stock_db,
            "SELECT count(DISTINCT order_id) FROM reservations",
        )
        .await;
        if committed == final_ && reserved >= committed {
            break;
        }
        product.check_alive();
        order.lock().await.check_alive();
        assert!(
            Instant::now() < deadline,
            "not settled: {committed} committed, {final_} final, {reserved} reserved"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settling = started.elapsed() - posting;

    let committed: HashSet<String> = ids(&orders_db, "SELECT order_id FROM orders")
        .await
        .into_iter()
        .collect();
    let reservations = ids(&stock_db, "SELECT order_id FROM reservations").await;
    let mut per_order: HashMap<&str, usize> = HashMap::new();
    for r in &reservations {
        *per_order.entry(r).or_default() += 1;
    }
    let lost: Vec<&String> = acked.iter().filter(|id| !committed.contains(*id)).collect();
    let twice: Vec<(&&str, &usize)> = per_order.iter().filter(|(_, n)| **n > 1).collect();
    let phantom: Vec<&&str> = per_order
        .keys()
        .filter(|id| !committed.contains(**id))
        .collect();
    let missing: Vec<&String> = committed
        .iter()
        .filter(|id| !per_order.contains_key(id.as_str()))
        .collect();
    let events = read_events(&format!("order-create-event-{s}")).await;
    let event_ids: HashSet<&String> = events.iter().map(|e| &e.0).collect();
    let uncommitted_events: Vec<&(String, String)> = events
        .iter()
        .filter(|e| !committed.contains(&e.1))
        .collect();
    let histories: Vec<(String, Vec<String>, String)> =
        sqlx::query_as("SELECT order_id, history, status FROM orders")
            .fetch_all(&orders_db)
            .await
            .unwrap();
    let odd: Vec<&(String, Vec<String>, String)> = histories
        .iter()
        .filter(|(_, h, status)| {
            h != &["CREATED", "STOCK_RESERVED", "PAID", "CONFIRMED"] || status != "CONFIRMED"
        })
        .collect();
    let (stock,): (i64,) = sqlx::query_as("SELECT stock FROM products WHERE id = 9")
        .fetch_one(&stock_db)
        .await
        .unwrap();

    println!(
        "crash test: {ORDERS} attempts in {:.1}s ({} failed while a service was down), \
         {} acknowledged with 202, {} committed ({} committed but not acknowledged), \
         {ORDER_KILLS} SIGKILLs of order-service and {PRODUCT_KILLS} of product-service; \
         settled in {:.1}s",
        posting.as_secs_f64(),
        failed.load(Ordering::SeqCst),
        acked.len(),
        committed.len(),
        committed.len() - acked.len().min(committed.len()),
        settling.as_secs_f64(),
    );
    println!(
        "crash test: reservations {} for {} orders: lost acknowledged orders {}, \
         reserved twice {}, reservations of uncommitted orders {}, committed without \
         reservation {}; order-create-event records {} ({} distinct events, {} republished \
         by a relay after a kill), events of uncommitted orders {}",
        reservations.len(),
        committed.len(),
        lost.len(),
        twice.len(),
        phantom.len(),
        missing.len(),
        events.len(),
        event_ids.len(),
        events.len() - event_ids.len(),
        uncommitted_events.len(),
    );
    assert!(acked.len() >= ORDERS / 2, "most orders were acknowledged");
    assert!(
        lost.is_empty(),
        "acknowledged orders not committed: {lost:?}"
    );
    assert!(twice.is_empty(), "stock reserved twice: {twice:?}");
    assert!(
        phantom.is_empty(),
        "reservations of uncommitted orders: {phantom:?}"
    );
    assert!(
        missing.is_empty(),
        "committed orders without a reservation: {missing:?}"
    );
    assert!(
        uncommitted_events.is_empty(),
        "events of uncommitted orders: {uncommitted_events:?}"
    );
    assert_eq!(
        event_ids.len(),
        committed.len(),
        "one order-create-event per committed order"
    );
    assert!(
        odd.is_empty(),
        "orders whose flow ran twice or not to the end: {:?}",
        &odd[..odd.len().min(5)]
    );
    assert_eq!(
        stock,
        STOCK - committed.len() as i64,
        "the stock went down once per order"
    );
    assert!(
        order.lock().await.terminate(),
        "order-service exits 0 on SIGTERM"
    );
    assert!(product.terminate(), "product-service exits 0 on SIGTERM");
}
