//! AMQP messages ⇄ records: every type, the properties, the digest.
use lapin::types::{AMQPValue, DecimalValue, FieldArray, FieldTable, LongString, ShortString};

use super::*;

/// A field of every type RabbitMQ's tables have.
fn every_type() -> Vec<(&'static str, AMQPValue)> {
    let mut death = FieldTable::default();
    death.insert(
        "queue".into(),
        AMQPValue::LongString(LongString::from("q.retry.1")),
    );
    death.insert("count".into(), AMQPValue::LongLongInt(1));
    vec![
        ("s", AMQPValue::LongString(LongString::from("text"))),
        ("bytes", AMQPValue::ByteArray(vec![0u8, 255, 1].into())),
        ("i8", AMQPValue::ShortShortInt(-8)),
        ("u8", AMQPValue::ShortShortUInt(8)),
        ("i16", AMQPValue::ShortInt(-16)),
        ("u16", AMQPValue::ShortUInt(16)),
        ("i32", AMQPValue::LongInt(-32)),
        ("u32", AMQPValue::LongUInt(32)),
        ("i64", AMQPValue::LongLongInt(-(1 << 40))),
        ("f32", AMQPValue::Float(1.5)),
        ("f64", AMQPValue::Double(-2.25)),
        (
            "dec",
            AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 1234,
            }),
        ),
        ("ts", AMQPValue::Timestamp(1_700_000_000)),
        ("yes", AMQPValue::Boolean(true)),
        ("void", AMQPValue::Void),
        (
            "x-death",
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
        ),
        ("short", AMQPValue::ShortString(ShortString::from("s"))),
    ]
}

#[test]
fn every_amqp_type_survives_the_record_and_goes_out_as_it_came() {
    for (name, value) in every_type() {
        let header = header_of(name.to_owned(), &value);
        let out = match header.typed_value() {
            Some(typed) => amqp_of(typed).unwrap(),
            None => AMQPValue::LongString(LongString::from(header.value.clone().unwrap())),
        };
        assert_eq!(out, value, "{name}");
    }
}

#[test]
fn typed_values_read_as_text_and_as_their_type() {
    let x_death = every_type()
        .into_iter()
        .find(|(n, _)| *n == "x-death")
        .unwrap()
        .1;
    assert_eq!(
        header_of("x-death".into(), &x_death).value.as_deref(),
        Some(&br#"[{"count":1,"queue":"q.retry.1"}]"#[..])
    );
    let ts = header_of("ce_time".into(), &AMQPValue::Timestamp(1_700_000_000));
    assert_eq!(ts.value.as_deref(), Some(&b"2023-11-14T22:13:20Z"[..]));
    let mut headers = Headers::default();
    headers.push(header_of("n".into(), &AMQPValue::LongLongInt(7)));
    assert_eq!(headers.get_as::<i64>("n"), Some(7));
}

#[test]
fn dead_letter_retry_and_replay_copies_keep_the_basic_properties() {
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("gzip, UTF-8".into())
        .with_message_id("m-1".into())
        .with_correlation_id("c-1".into())
        .with_reply_to("replies".into())
        .with_timestamp(1_700_000_000)
        .with_type("OrderCreated".into())
        .with_app_id("shop".into())
        .with_priority(9)
        .with_expiration("5000".into())
        .with_user_id("guest".into());
    let mut d = Delivery::mock(3, "orders".into(), "o.new".into(), false, b"{}".to_vec());
    d.properties = props;
    let record = record_of(&Arc::from("q"), 0, &d);
    let info = crate::failure::FailureInfo {
        exception_type: "E".into(),
        cause_type: None,
        message: "m".into(),
        trace: "E: m".into(),
    };
    let dead = crate::transport::rabbitmq::dead_letter::build(&record, &info);
    let retry = crate::transport::rabbitmq::retry_queue::reschedule(&record, 0, 2, &info);
    let dlq = Arc::from("q.dlq");
    let mut stored = Delivery::mock(1, "mq.dlx".into(), "q".into(), false, b"{}".to_vec());
    stored.properties = outgoing(&dead).unwrap();
    let crate::failure::redrive::Step::Replay(replayed) = crate::transport::rabbitmq::redrive::plan(
        "q.dlq",
        &record_of(&dlq, 0, &stored),
        &Default::default(),
    ) else {
        panic!("not replayed")
    };
    for (what, out) in [
        ("dead letter", &dead),
        ("retry", &retry),
        ("replay", &replayed),
    ] {
        let p = outgoing(out).unwrap();
        let text = |v: &Option<ShortString>| v.as_ref().map(|s| s.as_str().to_owned());
        assert_eq!(text(p.message_id()).as_deref(), Some("m-1"), "{what}");
        assert_eq!(text(p.correlation_id()).as_deref(), Some("c-1"), "{what}");
        assert_eq!(text(p.reply_to()).as_deref(), Some("replies"), "{what}");
        assert_eq!(text(p.kind()).as_deref(), Some("OrderCreated"), "{what}");
        assert_eq!(text(p.app_id()).as_deref(), Some("shop"), "{what}");
        assert_eq!(text(p.content_type()).as_deref(), Some("application/json"));
        assert_eq!(text(p.content_encoding()).as_deref(), Some("gzip, UTF-8"));
        assert_eq!(*p.timestamp(), Some(1_700_000_000), "{what}");
        assert_eq!(*p.priority(), Some(9), "{what}");
        assert_eq!(*p.expiration(), None, "{what}: would expire where it waits");
        assert_eq!(*p.user_id(), None, "{what}: the broker checks it");
        let table = p.headers().clone().unwrap_or_default();
        assert!(
            table
                .inner()
                .keys()
                .all(|k| !k.as_str().starts_with("amqp_")),
            "{what}: {table:?}"
        );
    }
    assert_eq!(dead.headers.get_str("x-original-expiration"), Some("5000"));
}

#[test]
fn a_digest_is_stable_and_tells_messages_apart() {
    let delivery = |body: &[u8], headers: FieldTable| {
        let mut d = Delivery::mock(1, "".into(), "q".into(), false, body.to_vec());
        d.properties = BasicProperties::default().with_headers(headers);
        d
    };
    let mut h = FieldTable::default();
    h.insert(
        "tenant".into(),
        AMQPValue::LongString(LongString::from("a")),
    );
    let first = digest(&delivery(b"{}", h.clone()));
    let mut redelivered = h.clone();
    redelivered.insert("x-delivery-count".into(), AMQPValue::LongLongInt(3));
    assert_eq!(
        digest(&delivery(b"{}", redelivered.clone())),
        first,
        "broker-added headers ignored"
    );
    // RabbitMQ 4.3 counts returns it does not count as deliveries in x-acquired-count.
    redelivered.insert("x-acquired-count".into(), AMQPValue::LongLongInt(2));
    assert_eq!(
        digest(&delivery(b"{}", redelivered)),
        first,
        "RabbitMQ 4.3's x-acquired-count ignored"
    );
    assert!(first.starts_with("amqp-digest-") && first.len() == "amqp-digest-".len() + 32);
    assert_ne!(digest(&delivery(b"{ }", h.clone())), first);
    let mut other = FieldTable::default();
    other.insert(
        "tenant".into(),
        AMQPValue::LongString(LongString::from("b")),
    );
    assert_ne!(digest(&delivery(b"{}", other)), first);
}

#[test]
fn a_short_string_over_255_bytes_is_an_error_naming_it_not_a_panic() {
    // lapin 4 panics on a `ShortString` over 255 bytes; mq refuses the record instead.
    let record = |name: &str, value: &str| {
        let mut headers = Headers::default();
        headers.insert(name, value);
        OutgoingRecord {
            topic: "amqp:///q".into(),
            partition: None,
            key: None,
            value: Some(b"{}".to_vec()),
            headers,
        }
    };
    let long = "x".repeat(256);
    let e = outgoing(&record(amqp::CORRELATION_ID, &long)).unwrap_err();
    assert!(
        e.contains("correlation_id") && e.contains("256 bytes"),
        "{e}"
    );
    let e = outgoing(&record(&long, "v")).unwrap_err();
    assert!(e.contains("header name"), "{e}");
    let mut typed = record("ok", "v");
    typed
        .headers
        .insert_typed("t", HeaderValue::ShortString(long.clone()));
    assert!(outgoing(&typed).unwrap_err().contains("header t"));
    // 255 bytes is still a short string; a long value of an untyped header is a long string.
    assert!(outgoing(&record(amqp::CORRELATION_ID, &"x".repeat(255))).is_ok());
    assert!(outgoing(&record("plain", &long)).is_ok());
    assert_eq!(
        crate::transport::rabbitmq::frame::record_frame_size(&record(&long, "v")),
        0
    );
}
