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

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::{attributes as attr, parse_data, DecodeError, Event};
use crate::record::{Headers, Record};

/// The value of the binary-mode header of attribute `name` (`ce_<name>`, else `ce-<name>`;
/// the last wins), found without building the header name.
pub(super) fn ce_header<'a>(headers: &'a Headers, name: &str) -> Option<&'a [u8]> {
    let find = |prefix: &str| {
        headers
            .iter()
            .rev()
            .find(|h| h.key.strip_prefix(prefix) == Some(name))
    };
    find(attr::HEADER_PREFIX)
        .or_else(|| find("ce-"))
        .and_then(|h| h.value.as_deref())
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
    let Some(raw) = ce_header(headers, name) else {
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

/// An optional attribute: unreadable means absent, with a WARN.
fn optional(headers: &Headers, name: &'static str) -> Option<String> {
    match text(headers, name) {
        Ok(v) => v,
        Err(reason) => {
            tracing::warn!(attribute = name, reason = %reason, "optional attribute unreadable; dropped");
            None
        }
    }
}

/// `ce_time`: RFC 3339; epoch milliseconds are accepted too. Anything else is dropped.
fn time(headers: &Headers) -> Option<DateTime<Utc>> {
    let t = optional(headers, attr::TIME)?;
    if let Ok(parsed) = DateTime::parse_from_rfc3339(t.trim()) {
        return Some(parsed.with_timezone(&Utc));
    }
    if let Ok(ms) = t.trim().parse::<i64>() {
        if let Some(parsed) = DateTime::<Utc>::from_timestamp_millis(ms) {
            return Some(parsed);
        }
    }
    tracing::warn!(attribute = attr::TIME, value = %t, "ce_time is not RFC 3339; dropped");
    None
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
        time: time(h),
        subject: optional(h, attr::SUBJECT),
        datacontenttype: h.get_str(attr::CONTENT_TYPE_HEADER).map(str::to_owned),
        dataschema: optional(h, attr::DATASCHEMA),
        correlationid: optional(h, attr::CORRELATIONID),
        causationid: optional(h, attr::CAUSATIONID),
        traceparent: optional(h, attr::TRACEPARENT),
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
