//! Interop with a real FastStream (Python) subscriber on the real broker: what a Python
//! service decodes from mq's events in each CloudEvents content mode.
//!
//! FastStream decodes a record's value as JSON only when its `content-type` header is
//! `application/json` (or starts with it). Binary mode sets exactly that and puts the bare
//! data in the value, so a typed FastStream handler gets the order. Structured mode's
//! `application/cloudevents+json` is not JSON to FastStream: the handler's model gets the raw
//! bytes and fails validation. These tests pin both, through one publisher whose destinations
//! are configured differently (`mq.kafka.producer.destinations.<topic>.content-mode`).
//!
//! Needs `python3` with `faststream[kafka]` (scripts/test.sh installs it).

use crate::support;

use std::process::Command;

use mq_core::App;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use support::{bootstrap, config, create_topic, unique};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/interop/faststream_subscriber.py"
);
const ORDERS: u64 = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    order_id: u64,
    product_id: u64,
    quantity: u32,
}

fn order(n: u64) -> Order {
    Order {
        order_id: n,
        product_id: 100 + n,
        quantity: n as u32 + 1,
    }
}

/// What the FastStream subscriber script printed for one topic: its JSON lines by
/// subscriber (`typed`, `raw`).
struct FastStreamRun {
    typed: Vec<Value>,
    raw: Vec<Value>,
}

/// Runs tests/interop/faststream_subscriber.py on `topic` until it reported `ORDERS`
/// outcomes per subscriber; panics with its output when it did not.
fn faststream_reads(topic: &str) -> FastStreamRun {
    let (status, stdout, stderr) = support::process::run(
        Command::new("python3")
            .arg(SCRIPT)
            .args(["--bootstrap", &bootstrap(), "--topic", topic])
            .args(["--expect", &ORDERS.to_string(), "--timeout", "90"]),
        support::PYTHON_WAIT,
        "the FastStream subscriber (scripts/test.sh installs faststream[kafka])",
    );
    assert!(
        status.success(),
        "FastStream subscriber on {topic} failed ({status}):\n{stdout}\n{stderr}"
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let of = |who: &str| -> Vec<Value> {
        lines
            .iter()
            .filter(|l| l["subscriber"] == who)
            .cloned()
            .collect()
    };
    FastStreamRun {
        typed: of("typed"),
        raw: of("raw"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faststream_reads_binary_mode_as_typed_data_and_structured_mode_as_raw_bytes() {
    // Binary is Kafka's default; the structured topic is configured per destination, under
    // a name with dots (the per-destination key is taken as it is).
    let binary_topic = unique("interop-fs-orders");
    let structured_topic = unique("interop.fs.orders");
    create_topic(&binary_topic, 1).await;
    create_topic(&structured_topic, 1).await;
    let app = App::new(config(&format!(
        "mq:\n  kafka:\n    producer:\n      destinations:\n        \"{structured_topic}\":\n          content-mode: structured\n"
    )))
    .only_listeners(Vec::<String>::new())
    .start()
    .await
    .expect("publisher app starts");
    let sent: Vec<Order> = (1..=ORDERS).map(order).collect();
    for o in &sent {
        for topic in [&binary_topic, &structured_topic] {
            app.publisher()
                .send(topic, o.order_id.to_string(), o.clone())
                .await
                .unwrap();
        }
    }
    app.shutdown().await.unwrap();

    let (binary, structured) = tokio::join!(
        tokio::task::spawn_blocking({
            let t = binary_topic.clone();
            move || faststream_reads(&t)
        }),
        tokio::task::spawn_blocking({
            let t = structured_topic.clone();
            move || faststream_reads(&t)
        }),
    );
    let (binary, structured) = (binary.unwrap(), structured.unwrap());

    // Binary mode: FastStream's typed handler gets every order, field for field.
    let mut typed: Vec<Order> = binary
        .typed
        .iter()
        .map(|l| {
            serde_json::from_value(l["order"].clone())
                .unwrap_or_else(|e| panic!("FastStream did not decode an Order ({e}): {l}"))
        })
        .collect();
    typed.sort_by_key(|o| o.order_id);
    assert_eq!(typed, sent);
    for l in &binary.raw {
        assert_eq!(l["python_type"], "dict", "{l}");
    }

    // Structured mode: the content type is not JSON to FastStream, so its decoder hands over
    // the raw bytes and the typed handler fails validation on every record.
    assert_eq!(structured.typed.len() as u64, ORDERS);
    for l in &structured.typed {
        assert_eq!(l["error"], "ValidationError", "{l}");
        assert!(l.get("order").is_none(), "{l}");
    }
    let mut envelopes: Vec<Order> = structured
        .raw
        .iter()
        .map(|l| {
            assert_eq!(l["python_type"], "bytes", "{l}");
            let event: Value = serde_json::from_str(l["body"].as_str().unwrap()).unwrap();
            assert_eq!(event["specversion"], "1.0", "{l}");
            assert_eq!(event["type"], "Order", "{l}");
            serde_json::from_value(event["data"].clone()).unwrap()
        })
        .collect();
    envelopes.sort_by_key(|o| o.order_id);
    assert_eq!(envelopes, sent);
}
