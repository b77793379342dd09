//! Structured mode in: the whole event is one JSON object. Its data is either `data` (JSON)
//! or, as the CloudEvents JSON format allows, `data_base64` (the data's bytes in base64;
//! the receiver decodes them and reads them per `datacontenttype`).

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{attributes as attr, parse_data, DecodeError, Event};

/// A structured event whose data came as `data_base64`.
#[derive(Deserialize)]
struct Base64Event {
    id: String,
    source: String,
    specversion: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default, deserialize_with = "super::time::deserialize")]
    time: Option<DateTime<Utc>>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    datacontenttype: Option<String>,
    #[serde(default)]
    dataschema: Option<String>,
    #[serde(default)]
    correlationid: Option<String>,
    #[serde(default)]
    causationid: Option<String>,
    #[serde(default)]
    traceparent: Option<String>,
    data_base64: String,
}

/// True when a value that failed to decode as `Event<T>` may carry `data_base64` (only
/// then is the slower path tried).
pub(super) fn mentions_base64(value: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"\"data_base64\"";
    value.windows(NEEDLE.len()).any(|w| w == NEEDLE)
}

/// Decodes an event carrying `data_base64`. `None` when the value is not such an event
/// (the caller then reports its first error).
pub(super) fn decode_base64<T: DeserializeOwned>(
    value: &[u8],
) -> Option<Result<Event<T>, DecodeError>> {
    let e: Base64Event = serde_json::from_slice(value).ok()?;
    if e.specversion != attr::SPEC_VERSION {
        return Some(Err(DecodeError::UnsupportedSpecVersion(e.specversion)));
    }
    let bytes = match base64::engine::general_purpose::STANDARD.decode(e.data_base64.trim()) {
        Ok(b) => b,
        Err(err) => {
            return Some(Err(DecodeError::InvalidAttribute {
                name: "data_base64",
                reason: err.to_string(),
            }))
        }
    };
    let data = match parse_data::<T>(&bytes) {
        Ok(d) => d,
        Err(err) => return Some(Err(err)),
    };
    Some(Ok(Event {
        id: e.id,
        source: e.source,
        specversion: e.specversion,
        ty: e.ty,
        time: e.time,
        subject: e.subject,
        datacontenttype: e.datacontenttype,
        dataschema: e.dataschema,
        correlationid: e.correlationid,
        causationid: e.causationid,
        traceparent: e.traceparent,
        data,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::{decode, DecodeLimits};
    use crate::record::Record;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Order {
        order_id: u64,
        product_id: u64,
        quantity: u32,
    }

    #[test]
    fn data_base64_is_decoded() {
        // The issue's event: base64 of {"order_id":1,"product_id":2,"quantity":3}.
        let value = br#"{"specversion":"1.0","id":"e-1","source":"/shop","type":"OrderCreated",
            "datacontenttype":"application/json",
            "data_base64":"eyJvcmRlcl9pZCI6MSwicHJvZHVjdF9pZCI6MiwicXVhbnRpdHkiOjN9"}"#;
        let mut r = Record::new("orders", 0, 0, None, Some(value.to_vec()));
        r.headers.insert(
            "content-type",
            "application/cloudevents+json; charset=UTF-8",
        );
        let e = decode::<Order>(&r, &DecodeLimits::default()).unwrap();
        assert_eq!(
            e.data,
            Order {
                order_id: 1,
                product_id: 2,
                quantity: 3
            }
        );
        assert_eq!((e.id.as_str(), e.source.as_str()), ("e-1", "/shop"));
    }

    #[test]
    fn bad_base64_is_poison_with_a_reason() {
        let value =
            br#"{"specversion":"1.0","id":"e","source":"/s","type":"T","data_base64":"%%%"}"#;
        let r = Record::new("t", 0, 0, None, Some(value.to_vec()));
        let err = decode::<Order>(&r, &DecodeLimits::default()).unwrap_err();
        assert_eq!(err.kind(), "DecodeError::InvalidAttribute", "{err}");
    }
}
