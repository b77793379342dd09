//! Round trips and the wire layouts the envelope reads.

use super::*;
use crate::record::OutgoingRecord;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
}

fn received(out: OutgoingRecord) -> Record {
    Record {
        topic: "orders".into(),
        partition: 2,
        offset: 9,
        key: out.key,
        value: out.value,
        headers: out.headers,
        timestamp: Some(1_700_000_000_000),
        timestamp_type: crate::record::TimestampType::CreateTime,
    }
}

fn sample() -> Event<Order> {
    Event::new("OrderCreated", Order { id: 7 })
        .with_source("/order-service")
        .with_subject("order-7")
        .with_correlation_id("corr-1")
}

#[test]
fn structured_round_trip_keeps_every_attribute() {
    let e = sample();
    let out = encode("orders", None, &e, ContentMode::Structured).unwrap();
    assert_eq!(
        out.headers.get_str("content-type"),
        Some(attr::STRUCTURED_CONTENT_TYPE)
    );
    let back: Event<Order> = decode(&received(out), &DecodeLimits::default()).unwrap();
    assert_eq!(back, e);
}

#[test]
fn binary_round_trip_keeps_every_attribute() {
    let e = sample();
    let out = encode("orders", None, &e, ContentMode::Binary).unwrap();
    assert_eq!(out.value.as_deref(), Some(&br#"{"id":7}"#[..]));
    let back: Event<Order> = decode(&received(out), &DecodeLimits::default()).unwrap();
    assert_eq!(back, e);
}

#[test]
fn plain_json_gets_attributes_from_the_record() {
    let mut r = Record::new("orders", 1, 5, None, Some(br#"{"id":3}"#.to_vec()));
    r.headers.insert("__TypeId__", "com.example.Order");
    r.timestamp = Some(0);
    let e: Event<Order> = decode(&r, &DecodeLimits::default()).unwrap();
    assert_eq!(e.data, Order { id: 3 });
    assert_eq!(e.id, "orders-1-5");
    assert_eq!(e.ty, "com.example.Order");
    assert_eq!(e.time.unwrap().timestamp(), 0);
}

#[test]
fn plain_json_mentioning_specversion_is_still_data() {
    #[derive(Deserialize)]
    struct Doc {
        specversion: u32,
    }
    let r = Record::new("t", 0, 0, None, Some(br#"{"specversion":2}"#.to_vec()));
    let e: Event<Doc> = decode(&r, &DecodeLimits::default()).unwrap();
    assert_eq!(e.data.specversion, 2);
}

#[test]
fn poison_values_are_classified() {
    let limits = DecodeLimits {
        max_payload_bytes: 16,
    };
    let cases: [(Option<&[u8]>, &str); 5] = [
        (None, "DecodeError::Empty"),
        (Some(b""), "DecodeError::Empty"),
        (Some(b"\xff\xfe{"), "DecodeError::NotUtf8"),
        (Some(b"{not json"), "DecodeError::Json"),
        (Some(&[b' '; 17]), "DecodeError::Oversized"),
    ];
    for (value, kind) in cases {
        let r = Record::new("t", 0, 0, None, value.map(<[u8]>::to_vec));
        let err = decode::<Order>(&r, &limits).unwrap_err();
        assert_eq!(err.kind(), kind, "{value:?}: {err}");
    }
    let wrong_schema = Record::new("t", 0, 0, None, Some(br#"{"id":"x"}"#.to_vec()));
    let err = decode::<Order>(&wrong_schema, &limits).unwrap_err();
    assert!(err.to_string().contains("Order"), "{err}");
}

#[test]
fn binary_without_required_attribute_is_rejected() {
    let mut r = Record::new("t", 0, 0, None, Some(b"1".to_vec()));
    r.headers.insert("ce_specversion", "1.0");
    r.headers.insert("ce_id", "1");
    let err = decode::<u32>(&r, &DecodeLimits::default()).unwrap_err();
    assert!(
        matches!(err, DecodeError::MissingAttribute("source")),
        "{err}"
    );
}

#[test]
fn plain_json_ids_survive_hops_and_replay() {
    let mut first = Record::new("orders", 1, 5, None, Some(br#"{"id":3}"#.to_vec()));
    first.timestamp = Some(0);
    let mut forwarded = Headers::default();
    carry_event_id(&first, &mut forwarded);
    // The same data read again elsewhere (a retry topic, or replayed to the source).
    let mut later = Record::new("orders-retry-0", 0, 77, None, first.value.clone());
    later.headers = forwarded;
    let e: Event<Order> = decode(&later, &DecodeLimits::default()).unwrap();
    assert_eq!(e.id, "orders-1-5");
    assert_eq!(peek_ids(&later).0.as_deref(), Some("orders-1-5"));
    // A hop from there keeps the first id.
    let mut again = Headers::default();
    carry_event_id(&later, &mut again);
    assert_eq!(again.get_str(EVENT_ID_HEADER), Some("orders-1-5"));
    // Envelopes have ids of their own: nothing to carry.
    let structured = received(encode("orders", None, &sample(), ContentMode::Structured).unwrap());
    let mut none = Headers::default();
    carry_event_id(&structured, &mut none);
    assert!(none.is_empty());
}

#[test]
fn declared_structured_with_bad_envelope_is_poison() {
    let mut r = Record::new("t", 0, 0, None, Some(br#"{"id":1}"#.to_vec()));
    r.headers
        .insert("content-type", attr::STRUCTURED_CONTENT_TYPE.as_bytes());
    assert!(decode::<serde_json::Value>(&r, &DecodeLimits::default()).is_err());
}
