//! AMQP messages ⇄ transport-neutral records.
//!
//! In: the body is the value, the routing key the key, the delivery tag the offset; the
//! message's headers become record headers (CloudEvents' AMQP binding spells binary-mode
//! attributes `cloudEvents:<attr>`, or `cloudEvents_<attr>`: both read as `ce_<attr>`,
//! what the envelope decodes), `content_type` the `content-type` header, and the
//! delivery's exchange, routing key, redelivered flag and tag come as `amqp_*` headers.
//! Out: the reverse, persistent (`delivery_mode` 2), `timestamp` the time of publishing.

use std::sync::Arc;

use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;

use super::headers as amqp;
use crate::envelope::attributes::{CONTENT_TYPE_HEADER, HEADER_PREFIX};
use crate::record::{Headers, OutgoingRecord, Record};

/// CloudEvents' AMQP binding prefix, and its JMS-safe spelling.
const CE_PREFIXES: [&str; 2] = ["cloudEvents:", "cloudEvents_"];

/// The record of delivery `d` from `queue`, in the lane of consumer `index`.
pub(crate) fn record_of(queue: &Arc<str>, index: i32, d: &Delivery) -> Record {
    let mut record = Record::new(
        "",
        index,
        d.delivery_tag as i64,
        Some(d.routing_key.as_str().as_bytes().to_vec()),
        Some(d.data.clone()),
    );
    record.topic = queue.clone();
    record.timestamp = d.properties.timestamp().map(|s| s as i64 * 1000);
    let mut headers = Headers::default();
    if let Some(table) = d.properties.headers() {
        for (name, value) in table.inner() {
            let name = name.as_str();
            let name = CE_PREFIXES
                .iter()
                .find_map(|p| name.strip_prefix(p))
                .map_or_else(|| name.to_owned(), |attr| format!("{HEADER_PREFIX}{attr}"));
            headers.append(name, value_bytes(value));
        }
    }
    if let Some(ct) = d.properties.content_type() {
        headers.insert(CONTENT_TYPE_HEADER, ct.as_str());
    }
    headers.insert(amqp::RECEIVED_EXCHANGE, d.exchange.as_str());
    headers.insert(amqp::RECEIVED_ROUTING_KEY, d.routing_key.as_str());
    headers.insert(amqp::REDELIVERED, d.redelivered.to_string());
    headers.insert(amqp::DELIVERY_TAG, d.delivery_tag.to_string());
    record.headers = headers;
    record
}

/// A header value as bytes: strings as they are, numbers and booleans as text, anything
/// else (tables, arrays) in a readable form.
fn value_bytes(v: &AMQPValue) -> Vec<u8> {
    match v {
        AMQPValue::LongString(s) => s.as_bytes().to_vec(),
        AMQPValue::ShortString(s) => s.as_str().as_bytes().to_vec(),
        AMQPValue::ByteArray(b) => b.as_slice().to_vec(),
        AMQPValue::Boolean(b) => b.to_string().into_bytes(),
        AMQPValue::ShortShortInt(i) => i.to_string().into_bytes(),
        AMQPValue::ShortShortUInt(i) => i.to_string().into_bytes(),
        AMQPValue::ShortInt(i) => i.to_string().into_bytes(),
        AMQPValue::ShortUInt(i) => i.to_string().into_bytes(),
        AMQPValue::LongInt(i) => i.to_string().into_bytes(),
        AMQPValue::LongUInt(i) => i.to_string().into_bytes(),
        AMQPValue::LongLongInt(i) => i.to_string().into_bytes(),
        AMQPValue::Timestamp(t) => t.to_string().into_bytes(),
        // RabbitMQ's `x-death` and other tables and arrays: readable JSON.
        other => json_of(other).to_string().into_bytes(),
    }
}

/// A header value as JSON (strings as text, not as the bytes lapin keeps them in).
fn json_of(v: &AMQPValue) -> serde_json::Value {
    use serde_json::Value;
    match v {
        AMQPValue::LongString(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into()),
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_owned()),
        AMQPValue::ByteArray(b) => Value::String(String::from_utf8_lossy(b.as_slice()).into()),
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(i) => (*i).into(),
        AMQPValue::ShortShortUInt(i) => (*i).into(),
        AMQPValue::ShortInt(i) => (*i).into(),
        AMQPValue::ShortUInt(i) => (*i).into(),
        AMQPValue::LongInt(i) => (*i).into(),
        AMQPValue::LongUInt(i) => (*i).into(),
        AMQPValue::LongLongInt(i) => (*i).into(),
        AMQPValue::Timestamp(t) => (*t).into(),
        AMQPValue::Float(f) => serde_json::json!(f),
        AMQPValue::Double(d) => serde_json::json!(d),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(json_of).collect()),
        AMQPValue::FieldTable(t) => Value::Object(
            t.inner()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), json_of(v)))
                .collect(),
        ),
        AMQPValue::Void => Value::Null,
        other => Value::String(format!("{other:?}")),
    }
}

/// The properties of `record` published: persistent, stamped with the time of publishing
/// (seconds; what `mq dlt-replay --since/--until` reads on a dead letter), its
/// `content-type` header as the content type, `ce_<attr>` headers as `cloudEvents:<attr>`,
/// the others as strings.
pub(crate) fn outgoing(record: &OutgoingRecord) -> BasicProperties {
    let mut table = FieldTable::default();
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_timestamp(now);
    for h in record.headers.iter() {
        let Some(value) = &h.value else { continue };
        if h.key == CONTENT_TYPE_HEADER {
            let ct = String::from_utf8_lossy(value).into_owned();
            props = props.with_content_type(ShortString::from(ct));
            continue;
        }
        let name = match h.key.strip_prefix(HEADER_PREFIX) {
            Some(attr) => format!("{}{attr}", CE_PREFIXES[0]),
            None => h.key.clone(),
        };
        table.insert(
            ShortString::from(name),
            AMQPValue::LongString(LongString::from(value.clone())),
        );
    }
    props.with_headers(table)
}

#[cfg(test)]
mod tests {
    use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};

    #[test]
    fn x_death_reads_as_json() {
        let mut death = FieldTable::default();
        death.insert(
            "queue".into(),
            AMQPValue::LongString(LongString::from("q.retry.1")),
        );
        death.insert("count".into(), AMQPValue::LongLongInt(1));
        let v = AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)]));
        assert_eq!(
            String::from_utf8(super::value_bytes(&v)).unwrap(),
            r#"[{"count":1,"queue":"q.retry.1"}]"#
        );
    }
}
