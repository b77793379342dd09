//! Binary mode in: CloudEvents attributes from `ce_*` headers, read leniently.
//!
//! What other producers really send, and what `mq` makes of it:
//! - Spring's `DefaultKafkaHeaderMapper` JSON-encodes header values that were not byte
//!   arrays or strings, so `ce_source` may arrive as `"/order-service"` *with* the quotes
//!   (and Spring lists it in `spring_json_header_types`). A value that is a JSON string is
//!   unquoted; the first time per attribute a WARN says so.
//! - Some producers use the HTTP binding's `ce-` prefix on Kafka; it is read too.
//! - A required attribute (`id`, `source`, `type`, `specversion`) that is missing or not
//!   text makes the record poison. An optional one that cannot be read (a `ce_time` that is
//!   not RFC 3339, a `ce_subject` that is not UTF-8) is dropped with a WARN and the record
//!   is handled: the data is fine, only a description of it is not.
//! - A native (broker-typed) value, as CloudEvents' AMQP binding allows them, is held to the
//!   spec's type system: a timestamp-typed `time` is that time and a string `time` must be
//!   RFC 3339; `id`, `source`, `specversion`, `type`, `subject` and `dataschema` must be
//!   strings (a 32-bit integer `id` is refused, naming its type); the extensions
//!   (`correlationid`, `causationid`, `traceparent`) may be of any CloudEvents type, integers
//!   and booleans read as their text. A refusal makes the record poison, the reason in the
//!   dead letter. Kafka headers are bytes, never native: the leniency above is theirs.

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::{attributes as attr, parse_data, DecodeError, Event};
use crate::record::{Header, HeaderValue, Headers, Record};

/// The value of the binary-mode header of attribute `name` (`ce_<name>`, else `ce-<name>`;
/// the last wins), found without building the header name.
pub(super) fn ce_header<'a>(headers: &'a Headers, name: &str) -> Option<&'a [u8]> {
    ce_entry(headers, name).and_then(|h| h.value.as_deref())
}

/// The header of attribute `name` (see [`ce_header`]).
fn ce_entry<'a>(headers: &'a Headers, name: &str) -> Option<&'a Header> {
    let find = |prefix: &str| {
        headers
            .iter()
            .rev()
            .find(|h| h.key.strip_prefix(prefix) == Some(name))
    };
    find(attr::HEADER_PREFIX).or_else(|| find("ce-"))
}

/// A native (broker-typed) value that is not a string, for an attribute the spec types as
/// String, URI or URI-reference (all strings on the wire): the reason it is refused.
/// Extensions may be of any CloudEvents type (Integer, Boolean, ...): read as text.
fn wrong_type(h: &Header, name: &'static str) -> Option<String> {
    let v = h.typed_value()?;
    if is_text(v) || EXTENSIONS.contains(&name) {
        return None;
    }
    Some(format!(
        "a native {} value, but CloudEvents' {name} is a String",
        type_name(v)
    ))
}

/// mq's extension attributes.
const EXTENSIONS: [&str; 3] = [attr::CORRELATIONID, attr::CAUSATIONID, attr::TRACEPARENT];

fn is_text(v: &HeaderValue) -> bool {
    matches!(v, HeaderValue::LongString(_) | HeaderValue::ShortString(_))
}

/// How a native value's type reads in a reason.
fn type_name(v: &HeaderValue) -> &'static str {
    match v {
        HeaderValue::Bool(_) => "boolean",
        HeaderValue::I8(_) | HeaderValue::U8(_) => "8-bit integer",
        HeaderValue::I16(_) | HeaderValue::U16(_) => "16-bit integer",
        HeaderValue::I32(_) | HeaderValue::U32(_) => "32-bit integer",
        HeaderValue::I64(_) => "64-bit integer",
        HeaderValue::F32(_) | HeaderValue::F64(_) => "floating-point",
        HeaderValue::Decimal { .. } => "decimal",
        HeaderValue::ShortString(_) | HeaderValue::LongString(_) => "string",
        HeaderValue::Bytes(_) => "byte array",
        HeaderValue::Timestamp(_) => "timestamp",
        HeaderValue::Array(_) => "array",
        HeaderValue::Table(_) => "table",
        HeaderValue::Void => "void",
        #[allow(unreachable_patterns)]
        _ => "non-string",
    }
}

/// Attributes whose quoted spelling was already reported (one WARN each per process).
static QUOTED_WARNED: [AtomicBool; 11] = [const { AtomicBool::new(false) }; 11];
const NAMES: [&str; 11] = [
    attr::ID,
    attr::SOURCE,
    attr::SPECVERSION,
    attr::TYPE,
    attr::TIME,
    attr::SUBJECT,
    attr::DATACONTENTTYPE,
    attr::DATASCHEMA,
    attr::CORRELATIONID,
    attr::CAUSATIONID,
    attr::TRACEPARENT,
];

/// The text of attribute `name`: `Ok(None)` when absent, `Err(reason)` when present but
/// not text. A JSON string (`"…"` with escapes) is unquoted.
pub(super) fn text(headers: &Headers, name: &'static str) -> Result<Option<String>, String> {
    let Some(h) = ce_entry(headers, name) else {
        return Ok(None);
    };
    if let Some(reason) = wrong_type(h, name) {
        return Err(reason);
    }
    let Some(raw) = h.value.as_deref() else {
        return Ok(None);
    };
    let s = std::str::from_utf8(raw).map_err(|e| e.to_string())?;
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        if let Ok(unquoted) = serde_json::from_str::<String>(s) {
            let i = NAMES.iter().position(|n| *n == name).unwrap_or(0);
            if !QUOTED_WARNED[i].swap(true, Ordering::Relaxed) {
                tracing::warn!(attribute = name, value = s,
                    "binary-mode attribute is JSON-quoted (Spring's header mapper does that); read without the quotes");
            }
            return Ok(Some(unquoted));
        }
    }
    Ok(Some(s.to_owned()))
}

fn required(headers: &Headers, name: &'static str) -> Result<String, DecodeError> {
    match text(headers, name) {
        Ok(Some(v)) if !v.is_empty() => Ok(v),
        Ok(_) => Err(DecodeError::MissingAttribute(name)),
        Err(reason) => Err(DecodeError::InvalidAttribute { name, reason }),
    }
}

/// An optional attribute: a native value of a type the spec forbids is refused; bytes that
/// cannot be read mean absent, with a WARN.
fn optional(headers: &Headers, name: &'static str) -> Result<Option<String>, DecodeError> {
    if let Some(reason) = ce_entry(headers, name).and_then(|h| wrong_type(h, name)) {
        return Err(DecodeError::InvalidAttribute { name, reason });
    }
    Ok(match text(headers, name) {
        Ok(v) => v,
        Err(reason) => {
            tracing::warn!(attribute = name, reason = %reason, "optional attribute unreadable; dropped");
            None
        }
    })
}

/// `ce_time`. Native (a broker-typed header, as the AMQP binding has them): a timestamp is
/// that time, a string must be RFC 3339, anything else is refused. Bytes (a Kafka header,
/// which Spring's header mapper may have quoted): RFC 3339, or epoch milliseconds;
/// anything else is dropped with a WARN.
fn time(headers: &Headers) -> Result<Option<DateTime<Utc>>, DecodeError> {
    let Some(h) = ce_entry(headers, attr::TIME) else {
        return Ok(None);
    };
    let refuse = |reason: String| DecodeError::InvalidAttribute {
        name: attr::TIME,
        reason,
    };
    match h.typed_value() {
        Some(HeaderValue::Timestamp(t)) => {
            return i64::try_from(*t)
                .ok()
                .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
                .map(Some)
                .ok_or_else(|| refuse(format!("timestamp {t} is out of range")));
        }
        Some(v) if is_text(v) => {
            let t = text(headers, attr::TIME)
                .map_err(refuse)?
                .unwrap_or_default();
            return DateTime::parse_from_rfc3339(t.trim())
                .map(|parsed| Some(parsed.with_timezone(&Utc)))
                .map_err(|e| refuse(format!("{t:?} is not an RFC 3339 timestamp: {e}")));
        }
        Some(v) => {
            return Err(refuse(format!(
                "a native {} value, but CloudEvents' time is a Timestamp",
                type_name(v)
            )));
        }
        None => {}
    }
    let Some(t) = optional(headers, attr::TIME)? else {
        return Ok(None);
    };
    if let Ok(parsed) = DateTime::parse_from_rfc3339(t.trim()) {
        return Ok(Some(parsed.with_timezone(&Utc)));
    }
    if let Ok(ms) = t.trim().parse::<i64>() {
        if let Some(parsed) = DateTime::<Utc>::from_timestamp_millis(ms) {
            return Ok(Some(parsed));
        }
    }
    tracing::warn!(attribute = attr::TIME, value = %t, "ce_time is not RFC 3339; dropped");
    Ok(None)
}

pub(super) fn decode<T: DeserializeOwned>(
    record: &Record,
    value: &[u8],
) -> Result<Event<T>, DecodeError> {
    let h = &record.headers;
    let specversion = required(h, attr::SPECVERSION)?;
    if specversion != attr::SPEC_VERSION {
        return Err(DecodeError::UnsupportedSpecVersion(specversion));
    }
    Ok(Event {
        id: required(h, attr::ID)?,
        source: required(h, attr::SOURCE)?,
        specversion,
        ty: required(h, attr::TYPE)?,
        time: time(h)?,
        subject: optional(h, attr::SUBJECT)?,
        datacontenttype: h.get_str(attr::CONTENT_TYPE_HEADER).map(str::to_owned),
        dataschema: optional(h, attr::DATASCHEMA)?,
        correlationid: optional(h, attr::CORRELATIONID)?,
        causationid: optional(h, attr::CAUSATIONID)?,
        traceparent: optional(h, attr::TRACEPARENT)?,
        data: parse_data(value)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{decode as decode_any, DecodeLimits};
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Order {
        order_id: u64,
        product_id: u64,
        quantity: u32,
    }

    fn spring_record(time: &str) -> Record {
        let value = br#"{"order_id":1,"product_id":2,"quantity":3}"#;
        let mut r = Record::new("orders", 0, 0, None, Some(value.to_vec()));
        for (k, v) in [
            ("ce_specversion", "\"1.0\""),
            ("ce_id", "\"a-1\""),
            ("ce_source", "\"/order-service\""),
            ("ce_type", "\"OrderCreated\""),
            ("ce_time", time),
            (
                "spring_json_header_types",
                r#"{"ce_source":"java.lang.String"}"#,
            ),
        ] {
            r.headers.insert(k, v);
        }
        r
    }

    #[test]
    fn spring_quoted_attributes_are_read_without_quotes() {
        let r = spring_record("\"2024-11-28T10:15:30.123+01:00\"");
        let e: Event<Order> = decode_any(&r, &DecodeLimits::default()).unwrap();
        assert_eq!(e.source, "/order-service");
        assert_eq!((e.id.as_str(), e.ty.as_str()), ("a-1", "OrderCreated"));
        assert_eq!(e.time.unwrap().timestamp_millis(), 1_732_785_330_123);
        assert_eq!(e.data.quantity, 3);
    }

    #[test]
    fn an_unreadable_optional_attribute_is_dropped_not_fatal() {
        for bad in ["yesterday", "\"not a time\"", "\u{1F600}", ""] {
            let mut r = spring_record(bad);
            r.headers.insert("ce_subject", b"\xff\xfe".to_vec());
            let e: Event<Order> = decode_any(&r, &DecodeLimits::default()).unwrap();
            assert_eq!((e.time, e.subject), (None, None), "{bad}");
            assert_eq!(e.data.order_id, 1);
        }
    }

    fn native(attrs: Vec<(&str, HeaderValue)>) -> Record {
        let mut r = Record::new("q", 0, 0, None, Some(b"5".to_vec()));
        for (k, v) in [
            ("ce_specversion", "1.0"),
            ("ce_id", "1"),
            ("ce_source", "/s"),
            ("ce_type", "T"),
        ] {
            r.headers.push(Header::typed(
                k,
                HeaderValue::LongString(v.as_bytes().to_vec()),
            ));
        }
        for (k, v) in attrs {
            r.headers.insert_typed(k, v);
        }
        r
    }

    #[test]
    fn native_values_are_held_to_the_spec_types() {
        let ok = |attrs| decode_any::<u32>(&native(attrs), &DecodeLimits::default());
        let e = ok(vec![("ce_time", HeaderValue::Timestamp(1_700_000_000))]).unwrap();
        assert_eq!(e.time.unwrap().timestamp(), 1_700_000_000);
        let text = |s: &str| HeaderValue::LongString(s.as_bytes().to_vec());
        let e = ok(vec![
            ("ce_time", text("2024-11-28T10:15:30Z")),
            ("ce_correlationid", HeaderValue::I64(42)),
            ("ce_subject", HeaderValue::ShortString("s".into())),
        ])
        .unwrap();
        assert_eq!(e.time.unwrap().timestamp(), 1_732_788_930);
        assert_eq!(
            e.correlationid.as_deref(),
            Some("42"),
            "an Integer extension"
        );
        assert_eq!(e.subject.as_deref(), Some("s"));
        for (attrs, reason) in [
            (vec![("ce_id", HeaderValue::I32(7))], "ce_id is not valid: a native 32-bit integer value, but CloudEvents' id is a String"),
            (vec![("ce_specversion", HeaderValue::F64(1.0))], "ce_specversion is not valid: a native floating-point"),
            (vec![("ce_specversion", text("0.3"))], "unsupported CloudEvents specversion \"0.3\""),
            (vec![("ce_time", text("yesterday"))], "ce_time is not valid: \"yesterday\" is not an RFC 3339 timestamp"),
            (vec![("ce_time", HeaderValue::I64(1_700_000_000))], "ce_time is not valid: a native 64-bit integer value, but CloudEvents' time is a Timestamp"),
            (vec![("ce_subject", HeaderValue::Bool(true))], "ce_subject is not valid: a native boolean"),
        ] {
            let e = ok(attrs).unwrap_err().to_string();
            assert!(e.contains(reason), "{e}");
        }
    }

    #[test]
    fn http_binding_prefix_and_a_bad_required_attribute() {
        let mut r = Record::new("t", 0, 0, None, Some(b"5".to_vec()));
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "T"),
        ] {
            r.headers.insert(k, v);
        }
        let e: Event<u32> = decode_any(&r, &DecodeLimits::default()).unwrap();
        assert_eq!((e.id.as_str(), e.data), ("1", 5));
        r.headers.insert("ce-id", b"\xff".to_vec());
        let err = decode_any::<u32>(&r, &DecodeLimits::default()).unwrap_err();
        assert_eq!(err.kind(), "DecodeError::InvalidAttribute");
    }
}
