//! The publisher's unit tests.

use super::*;
use crate::record::OutgoingRecord;

fn content_type(r: &OutgoingRecord) -> Option<String> {
    r.headers.get_str("content-type").map(str::to_owned)
}

#[tokio::test]
async fn each_destination_is_encoded_in_its_own_mode_and_raw_records_stay_as_they_are() {
    let broker = CapturingSink::default();
    let publisher = broker
        .publisher("/svc")
        .with_topic_modes([("orders.v1".to_owned(), ContentMode::Binary)]);
    let data = serde_json::json!({"order_id": 1});
    publisher
        .send("orders.v1", "k", data.clone())
        .await
        .unwrap();
    publisher.send("orders", "k", data.clone()).await.unwrap();
    let raw = b"{\"specversion\":\"1.0\"}".to_vec();
    let mut copy = OutgoingRecord::new("orders.v1", None, raw.clone());
    copy.headers
        .insert("content-type", b"application/cloudevents+json".to_vec());
    publisher.send_record(copy).await.unwrap();

    let binary = broker.records("orders.v1");
    assert_eq!(binary.len(), 2);
    assert_eq!(
        content_type(&binary[0]).as_deref(),
        Some("application/json")
    );
    let value: serde_json::Value =
        serde_json::from_slice(binary[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(value, data);
    // The raw record (a dead letter, a retry copy) keeps its bytes and headers.
    assert_eq!(binary[1].value.as_deref(), Some(&raw[..]));
    assert_eq!(
        content_type(&binary[1]).as_deref(),
        Some("application/cloudevents+json")
    );

    let structured = broker.records("orders");
    assert_eq!(
        content_type(&structured[0]).as_deref(),
        Some("application/cloudevents+json; charset=UTF-8")
    );
    let envelope: serde_json::Value =
        serde_json::from_slice(structured[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(envelope["data"], data);
}

mod default_modes {
    use super::*;
    use ContentMode::{Binary, Structured};

    #[test]
    fn the_brokers_default_applies_unless_the_destination_has_its_own() {
        let by_broker: DefaultModes = Arc::new(|d: &str| {
            if d.starts_with("amqp://") {
                Structured
            } else {
                Binary
            }
        });
        let p = CapturingSink::default()
            .publisher("/svc")
            .with_default_modes(Some(by_broker))
            .with_topic_modes([("audit".to_owned(), Structured)]);
        let modes = ["orders", "amqp:///task_queue", "audit"].map(|d| p.content_mode(d));
        assert_eq!(modes, [Binary, Structured, Structured]);
        let configured = p.with_default_modes(None);
        assert_eq!(configured.content_mode("orders"), Structured);
    }
}
