//! Handler tests without a broker, with `mq_core::testing::TestApp`: the same pipeline
//! (decode, handler, retries, dead letters) over an in-memory broker. Also pins how
//! correlation and trace context flow into events published from a handler.

use mq_core::prelude::*;
use mq_core::testing::TestApp;
use mq_core::{App, Config, Disposition};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderCreated {
    order_id: u64,
    quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StockReserved {
    order_id: u64,
}

#[listener(topic = "mem-orders")]
async fn reserve(event: Event<OrderCreated>, ctx: Context) -> Result<(), HandlerError> {
    if event.data.quantity == 0 {
        return Err(HandlerError::permanent_msg("quantity must be positive"));
    }
    let order_id = event.data.order_id;
    ctx.publisher()
        .send(
            "mem-reserved",
            order_id.to_string(),
            StockReserved { order_id },
        )
        .await?;
    Ok(())
}

fn app() -> TestApp {
    let config = Config::from_yaml_str(
        "mq:\n  application:\n    name: mem\n  listener:\n    retry:\n      initial-interval: 1ms\n",
    )
    .unwrap();
    TestApp::new(App::new(config).only_listeners(["reserve"])).unwrap()
}

#[tokio::test]
async fn correlation_and_trace_context_flow_into_published_events() {
    let app = app();
    let incoming = Event::new(
        "OrderCreated",
        OrderCreated {
            order_id: 7,
            quantity: 1,
        },
    )
    .with_correlation_id("flow-42");
    let mut incoming = incoming;
    incoming.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    app.publisher()
        .send_event("mem-orders", "7", incoming.clone())
        .await
        .unwrap();
    assert_eq!(app.drain().await, vec![Disposition::Handled]);

    let out = app.events::<StockReserved>("mem-reserved");
    assert_eq!(out.len(), 1);
    let e = &out[0];
    assert_eq!(e.data, StockReserved { order_id: 7 });
    assert_eq!(
        e.correlationid.as_deref(),
        Some("flow-42"),
        "correlation id carried over"
    );
    assert_eq!(
        e.causationid.as_deref(),
        Some(incoming.id.as_str()),
        "caused by the handled event"
    );
    assert_eq!(
        e.traceparent, incoming.traceparent,
        "trace context carried over"
    );
    assert_eq!(e.source, "/mem");
    assert_eq!(e.ty, "StockReserved");
}

#[tokio::test]
async fn permanent_errors_and_poison_go_to_the_in_memory_dlt() {
    let app = app();
    let p = app.publisher();
    p.send(
        "mem-orders",
        "1",
        OrderCreated {
            order_id: 1,
            quantity: 0,
        },
    )
    .await
    .unwrap();
    p.send_record(mq_core::record::OutgoingRecord::new(
        "mem-orders",
        None,
        b"{oops".to_vec(),
    ))
    .await
    .unwrap();
    p.send(
        "mem-orders",
        "3",
        OrderCreated {
            order_id: 3,
            quantity: 2,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        app.drain().await,
        vec![
            Disposition::DeadLettered,
            Disposition::DeadLettered,
            Disposition::Handled
        ]
    );
    let dlt = app.broker().records("mem-orders-dlt");
    assert_eq!(dlt.len(), 2);
    assert_eq!(
        dlt[0].headers.get_str("kafka_dlt-exception-message"),
        Some("quantity must be positive")
    );
    assert_eq!(
        dlt[0].headers.get_str("kafka_dlt-exception-fqcn"),
        Some("mq_core::HandlerError")
    );
    assert_eq!(
        dlt[1].value.as_deref(),
        Some(&b"{oops"[..]),
        "original bytes kept"
    );
    assert_eq!(app.events::<StockReserved>("mem-reserved").len(), 1);
}
