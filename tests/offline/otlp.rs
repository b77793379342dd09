//! Trace export over OTLP/HTTP, received by a collector stand-in built on the protocol's own
//! protobuf definitions (`opentelemetry-proto`): one order flowing through two listeners
//! gives one trace whose spans follow OpenTelemetry's messaging conventions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mq_core::prelude::*;
use mq_core::testing::TestApp;
use mq_core::{App, Config, Disposition};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer as _;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PriceChecked {
    sku: String,
}

#[listener(topic = "otel-orders")]
async fn otel_check(event: Event<PriceChecked>, ctx: Context) -> Result<(), HandlerError> {
    ctx.publisher()
        .send("otel-stock", event.data.sku.clone(), event.data)
        .await?;
    Ok(())
}

#[listener(topic = "otel-stock")]
async fn otel_reserve(_event: Event<PriceChecked>) -> Result<(), HandlerError> {
    Ok(())
}

#[listener(topic = "otel-poison")]
async fn otel_poison(_event: Event<PriceChecked>) -> Result<(), HandlerError> {
    Err(HandlerError::permanent_msg("price list is gone"))
}

/// What the receiver got: each span with its resource's `service.name`.
type Received = Arc<Mutex<Vec<(String, Span)>>>;

async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut store = store.lock().unwrap();
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .and_then(|a| a.value.as_ref()?.value.as_ref())
                        .map(|v| match v {
                            Value::StringValue(s) => s.clone(),
                            other => format!("{other:?}"),
                        })
                        .unwrap_or_default();
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            store.push((service.clone(), span));
                        }
                    }
                }
                // An empty ExportTraceServiceResponse.
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1/traces"), received)
}

fn attr(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?;
    Some(match value.value.as_ref()? {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        other => format!("{other:?}"),
    })
}

/// The spans `received` holds once there are `n` (or after 10 s).
async fn spans(received: &Received, n: usize) -> Vec<(String, Span)> {
    for _ in 0..200 {
        let spans = received.lock().unwrap().clone();
        if spans.len() >= n {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    received.lock().unwrap().clone()
}

#[tokio::test(flavor = "current_thread")]
async fn a_dead_lettered_record_is_an_error_span_with_its_log_lines_as_events() {
    let (endpoint, received) = receiver().await;
    let config = Config::from_yaml_str(&format!(
        "management:\n  otlp:\n    tracing:\n      endpoint: {endpoint}\n  tracing:\n    \
         sampling:\n      probability: 1.0\n"
    ))
    .unwrap();
    let (layer, exporter) =
        mq_core::telemetry::layer(&config.trace_export().unwrap().unwrap()).unwrap();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let app = TestApp::new(App::new(config).only_listeners(["otel_poison"])).unwrap();
    let sku = PriceChecked {
        sku: "sku-9".into(),
    };
    app.publisher()
        .send("otel-poison", "sku-9", sku)
        .await
        .unwrap();
    assert_eq!(app.drain().await, vec![Disposition::DeadLettered]);
    exporter.shutdown().await;
    let spans = spans(&received, 2).await;
    let process = &spans
        .iter()
        .find(|(_, s)| s.name == "process otel-poison")
        .expect("a process span")
        .1;
    assert_eq!(
        attr(process, "error.type").as_deref(),
        Some("dead_lettered")
    );
    let status = process.status.as_ref().expect("a status");
    assert_eq!(status.code, 2, "STATUS_CODE_ERROR");
    assert!(
        !process.events.is_empty(),
        "the failure's log lines are span events: {:?}",
        process.events
    );
}

#[tokio::test(flavor = "current_thread")]
async fn one_flow_is_one_trace_with_send_and_process_spans() {
    let (endpoint, received) = receiver().await;
    let config = Config::from_yaml_str(&format!(
        "mq:\n  application:\n    name: otel-shop\nmanagement:\n  otlp:\n    tracing:\n      \
         endpoint: {endpoint}\n  tracing:\n    sampling:\n      probability: 1.0\n"
    ))
    .unwrap();
    let export = config.trace_export().unwrap().expect("export configured");
    let (layer, exporter) = mq_core::telemetry::layer(&export).unwrap();
    // This thread's subscriber only: the runtime is current-thread, so every task of the
    // test app runs here. Logs at DEBUG too: mq's own per-record log span is then open
    // around the handler, and must not hide the exported span from what it publishes.
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::sink)
        .with_filter(tracing_subscriber::filter::LevelFilter::DEBUG);
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(layer).with(logs));

    let app =
        TestApp::new(App::new(config).only_listeners(["otel_check", "otel_reserve"])).unwrap();
    let sku = PriceChecked {
        sku: "sku-1".into(),
    };
    app.publisher()
        .send("otel-orders", "sku-1", sku)
        .await
        .unwrap();
    assert_eq!(
        app.drain().await,
        vec![Disposition::Handled, Disposition::Handled]
    );
    // The export thread sends what is queued.
    exporter.shutdown().await;

    let spans = spans(&received, 4).await;
    let by_name = |name: &str| -> &Span {
        &spans
            .iter()
            .find(|(_, s)| s.name == name)
            .unwrap_or_else(|| {
                panic!(
                    "no span {name:?} in {:?}",
                    spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
                )
            })
            .1
    };
    assert!(
        spans.iter().all(|(service, _)| service == "otel-shop"),
        "service.name"
    );
    let send_orders = by_name("send otel-orders");
    let process_orders = by_name("process otel-orders");
    let send_stock = by_name("send otel-stock");
    let process_stock = by_name("process otel-stock");

    // One trace: send → process → send → process, each the parent of the next.
    let trace = &send_orders.trace_id;
    for s in [process_orders, send_stock, process_stock] {
        assert_eq!(&s.trace_id, trace, "{} is in the flow's trace", s.name);
    }
    assert_eq!(process_orders.parent_span_id, send_orders.span_id);
    assert_eq!(send_stock.parent_span_id, process_orders.span_id);
    assert_eq!(process_stock.parent_span_id, send_stock.span_id);

    // The messaging conventions.
    assert_eq!(send_orders.kind, SpanKind::Producer as i32);
    assert_eq!(process_orders.kind, SpanKind::Consumer as i32);
    assert_eq!(
        attr(process_orders, "messaging.operation.type").as_deref(),
        Some("process")
    );
    assert_eq!(
        attr(send_stock, "messaging.operation.type").as_deref(),
        Some("send")
    );
    assert_eq!(
        attr(process_orders, "messaging.destination.name").as_deref(),
        Some("otel-orders")
    );
    assert_eq!(
        attr(process_orders, "messaging.consumer.group.name").as_deref(),
        Some("otel-shop")
    );
    assert!(attr(process_orders, "messaging.system").is_some());
    assert!(attr(process_orders, "messaging.message.id").is_some());
    assert_eq!(
        attr(send_stock, "messaging.message.id"),
        app.events::<PriceChecked>("otel-stock")
            .first()
            .map(|e| e.id.clone()),
        "the send span names the event it sent"
    );
}
