//! AMQP messages ⇄ transport-neutral records.
//!
//! In: the body is the value, the routing key the key, the delivery tag the offset; the
//! message's headers become record headers (CloudEvents' AMQP binding spells binary-mode
//! attributes `cloudEvents:<attr>`, or `cloudEvents_<attr>`: both read as `ce_<attr>`,
//! what the envelope decodes), `content_type` and `content_encoding` the `content-type`
//! and `content-encoding` headers, the other basic properties and the delivery's
//! exchange, routing key, redelivered flag and tag `amqp_*` headers.
//! Header values keep their AMQP type (see [`HeaderValue`]): a message leaves mq (retry,
//! dead letter, replay) with every header it came with, same type, same bytes, and with
//! its basic properties. Out: the reverse, persistent (`delivery_mode` 2).

use std::sync::Arc;

use lapin::message::Delivery;
use lapin::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString,
};
use lapin::BasicProperties;

use super::headers as amqp;
use crate::envelope::attributes::{CONTENT_ENCODING_HEADER, CONTENT_TYPE_HEADER, HEADER_PREFIX};
use crate::envelope::EVENT_ID_HEADER;
use crate::record::{Header, HeaderValue, Headers, OutgoingRecord, Record};

/// The binary-mode `id` attribute's header.
const CE_ID_HEADER: &str = "ce_id";

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
            match CE_PREFIXES.iter().find_map(|p| name.strip_prefix(p)) {
                // A CloudEvents attribute keeps its AMQP type, a long string included: the
                // AMQP binding types them (the envelope holds them to the spec's types).
                Some(attr) => {
                    let name = format!("{HEADER_PREFIX}{attr}");
                    headers.push(match (typed_of(value), value) {
                        (Some(typed), _) => Header::typed(name, typed),
                        (None, AMQPValue::LongString(s)) => {
                            Header::typed(name, HeaderValue::LongString(s.as_bytes().to_vec()))
                        }
                        (None, _) => header_of(name, value),
                    });
                }
                None => headers.push(header_of(name.to_owned(), value)),
            }
        }
    }
    if let Some(ct) = d.properties.content_type() {
        headers.insert(CONTENT_TYPE_HEADER, ct.as_str());
    }
    properties_into(&d.properties, &mut headers);
    // The message's identity, for an idempotent listener of plain JSON: the one an earlier
    // hop carried, else its `message_id`, else a digest of what it is. Never the delivery
    // tag, which starts again at 1 on every channel.
    if headers.get(EVENT_ID_HEADER).is_none() {
        let id = match d.properties.message_id() {
            Some(id) if !id.as_str().is_empty() => id.as_str().to_owned(),
            _ => digest(d),
        };
        headers.insert(EVENT_ID_HEADER, id);
    }
    headers.insert(amqp::RECEIVED_EXCHANGE, d.exchange.as_str());
    headers.insert(amqp::RECEIVED_ROUTING_KEY, d.routing_key.as_str());
    headers.insert(amqp::REDELIVERED, d.redelivered.to_string());
    headers.insert(amqp::DELIVERY_TAG, d.delivery_tag.to_string());
    record.headers = headers;
    record
}

/// The basic properties of a message besides its headers and content type, as the
/// `amqp_*` headers Spring AMQP's `AmqpHeaders` names (see [`amqp`]), and its
/// `content_encoding` as the envelope's `content-encoding` header.
fn properties_into(p: &BasicProperties, headers: &mut Headers) {
    if let Some(v) = p.content_encoding() {
        headers.push(Header::new(CONTENT_ENCODING_HEADER, v.as_str()));
    }
    for (name, value) in [
        (amqp::MESSAGE_ID, p.message_id()),
        (amqp::CORRELATION_ID, p.correlation_id()),
        (amqp::REPLY_TO, p.reply_to()),
        (amqp::TYPE, p.kind()),
        (amqp::APP_ID, p.app_id()),
        (amqp::EXPIRATION, p.expiration()),
        (amqp::USER_ID, p.user_id()),
    ] {
        if let Some(v) = value {
            headers.push(Header::new(name, v.as_str()));
        }
    }
    if let Some(t) = p.timestamp() {
        headers.push(Header::typed(amqp::TIMESTAMP, HeaderValue::Timestamp(*t)));
    }
    if let Some(priority) = p.priority() {
        headers.push(Header::typed(amqp::PRIORITY, HeaderValue::U8(*priority)));
    }
}

/// A stable id of a message that has none: a 128-bit XXH3 digest of its body, its
/// properties and its headers (but those RabbitMQ adds on its way: `x-death`,
/// `x-delivery-count`, RabbitMQ 4.3's `x-acquired-count`, `x-first-death-*`,
/// `x-last-death-*`). The same message delivered
/// again, on any channel, gets the same id; two messages that differ in anything get two.
fn digest(d: &Delivery) -> String {
    let p = &d.properties;
    let mut h = Digest::default();
    h.field(&d.data);
    for text in [
        p.content_type().as_ref().map(|s| s.as_str()),
        p.content_encoding().as_ref().map(|s| s.as_str()),
        p.correlation_id().as_ref().map(|s| s.as_str()),
        p.reply_to().as_ref().map(|s| s.as_str()),
        p.kind().as_ref().map(|s| s.as_str()),
        p.user_id().as_ref().map(|s| s.as_str()),
        p.app_id().as_ref().map(|s| s.as_str()),
    ] {
        h.field(text.unwrap_or("\u{0}").as_bytes());
    }
    h.field(&p.timestamp().unwrap_or(0).to_be_bytes());
    if let Some(table) = p.headers() {
        for (name, value) in table.inner() {
            let name = name.as_str();
            if name == "x-death"
                || name == super::routes::DELIVERY_COUNT
                || name == super::routes::ACQUIRED_COUNT
                || name.starts_with("x-first-death")
                || name.starts_with("x-last-death")
            {
                continue;
            }
            h.field(name.as_bytes());
            h.field(
                typed_of(value)
                    .map_or_else(
                        || string_bytes(value),
                        |v| v.to_json().to_string().into_bytes(),
                    )
                    .as_slice(),
            );
        }
    }
    format!("amqp-digest-{:032x}", h.finish())
}

/// XXH3 over 128 bits, each field length-prefixed (so `ab`+`c` differs from `a`+`bc`).
#[derive(Default)]
struct Digest(xxhash_rust::xxh3::Xxh3Default);

impl Digest {
    fn field(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    fn finish(&self) -> u128 {
        self.0.digest128()
    }
}

/// A header of a delivery: a long string stays bytes (what an untyped header goes out as);
/// every other type is kept.
fn header_of(name: String, value: &AMQPValue) -> Header {
    match typed_of(value) {
        Some(typed) => Header::typed(name, typed),
        None => Header::new(name, string_bytes(value)),
    }
}

fn string_bytes(value: &AMQPValue) -> Vec<u8> {
    match value {
        AMQPValue::LongString(s) => s.as_bytes().to_vec(),
        _ => Vec::new(),
    }
}

/// The typed value of an AMQP field, `None` for a long string (plain bytes).
pub(crate) fn typed_of(v: &AMQPValue) -> Option<HeaderValue> {
    Some(match v {
        AMQPValue::LongString(_) => return None,
        AMQPValue::ShortString(s) => HeaderValue::ShortString(s.as_str().to_owned()),
        AMQPValue::ByteArray(b) => HeaderValue::Bytes(b.as_slice().to_vec()),
        AMQPValue::Boolean(b) => HeaderValue::Bool(*b),
        AMQPValue::ShortShortInt(i) => HeaderValue::I8(*i),
        AMQPValue::ShortShortUInt(i) => HeaderValue::U8(*i),
        AMQPValue::ShortInt(i) => HeaderValue::I16(*i),
        AMQPValue::ShortUInt(i) => HeaderValue::U16(*i),
        AMQPValue::LongInt(i) => HeaderValue::I32(*i),
        AMQPValue::LongUInt(i) => HeaderValue::U32(*i),
        AMQPValue::LongLongInt(i) => HeaderValue::I64(*i),
        AMQPValue::Float(f) => HeaderValue::F32(*f),
        AMQPValue::Double(f) => HeaderValue::F64(*f),
        AMQPValue::DecimalValue(d) => HeaderValue::Decimal {
            scale: d.scale,
            value: d.value,
        },
        AMQPValue::Timestamp(t) => HeaderValue::Timestamp(*t),
        AMQPValue::Void => HeaderValue::Void,
        AMQPValue::FieldArray(a) => HeaderValue::Array(
            a.as_slice()
                .iter()
                .map(|v| typed_of(v).unwrap_or_else(|| HeaderValue::LongString(string_bytes(v))))
                .collect(),
        ),
        AMQPValue::FieldTable(t) => HeaderValue::Table(
            t.inner()
                .iter()
                .map(|(k, v)| {
                    let v = typed_of(v).unwrap_or_else(|| HeaderValue::LongString(string_bytes(v)));
                    (k.as_str().to_owned(), v)
                })
                .collect(),
        ),
    })
}

/// `s` as an AMQP short string (a queue or exchange name, a routing key, a basic property,
/// a header name): at most 255 bytes. lapin 4 panics on a longer one; here it is an error
/// naming `what`.
pub(crate) fn short(what: &str, s: &str) -> Result<ShortString, String> {
    ShortString::try_new(s).map_err(|_| {
        format!(
            "{what} takes {} bytes, over the 255 an AMQP short string holds",
            s.len()
        )
    })
}

/// The AMQP field of a typed value; the error names a short string over 255 bytes.
pub(crate) fn amqp_of(v: &HeaderValue) -> Result<AMQPValue, String> {
    Ok(match v {
        HeaderValue::Bool(b) => AMQPValue::Boolean(*b),
        HeaderValue::I8(i) => AMQPValue::ShortShortInt(*i),
        HeaderValue::U8(i) => AMQPValue::ShortShortUInt(*i),
        HeaderValue::I16(i) => AMQPValue::ShortInt(*i),
        HeaderValue::U16(i) => AMQPValue::ShortUInt(*i),
        HeaderValue::I32(i) => AMQPValue::LongInt(*i),
        HeaderValue::U32(i) => AMQPValue::LongUInt(*i),
        HeaderValue::I64(i) => AMQPValue::LongLongInt(*i),
        HeaderValue::F32(f) => AMQPValue::Float(*f),
        HeaderValue::F64(f) => AMQPValue::Double(*f),
        HeaderValue::Decimal { scale, value } => AMQPValue::DecimalValue(DecimalValue {
            scale: *scale,
            value: *value,
        }),
        HeaderValue::ShortString(s) => AMQPValue::ShortString(short("a short-string header", s)?),
        HeaderValue::LongString(b) => AMQPValue::LongString(LongString::from(b.clone())),
        HeaderValue::Bytes(b) => AMQPValue::ByteArray(ByteArray::from(b.clone())),
        HeaderValue::Timestamp(t) => AMQPValue::Timestamp(*t),
        HeaderValue::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items.iter().map(amqp_of).collect::<Result<Vec<_>, _>>()?,
        )),
        HeaderValue::Table(entries) => {
            let mut table = FieldTable::default();
            for (k, v) in entries {
                table.insert(short("a header table's key", k)?, amqp_of(v)?);
            }
            AMQPValue::FieldTable(table)
        }
        // `HeaderValue` is non-exhaustive for users; mq knows every kind it has.
        #[allow(unreachable_patterns)]
        _ => AMQPValue::Void,
    })
}

/// The properties of `record` published: persistent; the basic properties its `amqp_*`
/// headers carry (a dead letter, retry or replay of a received message keeps them; see
/// [`amqp`]); its `content-type` and `content-encoding` headers as those properties; its
/// `timestamp` the one it carries, else the time of publishing (seconds); its identity as
/// `message_id` (the one it carries in `amqp_messageId`, `mq_event-id` or `ce_id`, else a
/// new one, so the message is one message from here on, through retries and dead
/// letters); `ce_<attr>` headers as `cloudEvents:<attr>`, typed headers with their type
/// and the others as long strings. The error names a value or header name over the 255
/// bytes of an AMQP short string (nothing can be sent then).
pub(crate) fn outgoing(record: &OutgoingRecord) -> Result<BasicProperties, String> {
    let mut table = FieldTable::default();
    let h = &record.headers;
    let prop = |what: &str, v: &[u8]| short(what, &String::from_utf8_lossy(v));
    let id = h
        .get_str(amqp::MESSAGE_ID)
        .or_else(|| h.get_str(EVENT_ID_HEADER))
        .or_else(|| h.get_str(CE_ID_HEADER))
        .filter(|id| !id.is_empty() && id.len() <= 255)
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let timestamp = h
        .get_as::<u64>(amqp::TIMESTAMP)
        .unwrap_or_else(|| chrono::Utc::now().timestamp().max(0) as u64);
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_timestamp(timestamp)
        .with_message_id(id.into());
    for h in record.headers.iter() {
        let Some(value) = &h.value else { continue };
        match h.key.as_str() {
            CONTENT_TYPE_HEADER => {
                props = props.with_content_type(prop("the content_type property", value)?)
            }
            CONTENT_ENCODING_HEADER => {
                props = props.with_content_encoding(prop("the content_encoding property", value)?)
            }
            amqp::CORRELATION_ID => {
                props = props.with_correlation_id(prop("the correlation_id property", value)?)
            }
            amqp::REPLY_TO => props = props.with_reply_to(prop("the reply_to property", value)?),
            amqp::TYPE => props = props.with_type(prop("the type property", value)?),
            amqp::APP_ID => props = props.with_app_id(prop("the app_id property", value)?),
            amqp::PRIORITY => {
                let priority = match h.typed_value() {
                    Some(HeaderValue::U8(p)) => Some(*p),
                    _ => std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()),
                };
                if let Some(p) = priority {
                    props = props.with_priority(p);
                }
            }
            // Properties already set, or never republished (see `amqp`).
            amqp::MESSAGE_ID | amqp::TIMESTAMP | amqp::EXPIRATION | amqp::USER_ID => {}
            _ => {
                let name = match h.key.strip_prefix(HEADER_PREFIX) {
                    Some(attr) => format!("{}{attr}", CE_PREFIXES[0]),
                    None => h.key.clone(),
                };
                let value = match h.typed_value() {
                    Some(typed) => amqp_of(typed).map_err(|e| format!("header {name}: {e}"))?,
                    None => AMQPValue::LongString(LongString::from(value.clone())),
                };
                table.insert(short("a header name", &name)?, value);
            }
        }
    }
    Ok(props.with_headers(table))
}

#[cfg(test)]
mod tests;
