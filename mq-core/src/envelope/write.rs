//! [`encode`]: an event into a record, structured or binary.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{attributes as attr, ContentMode, Event};
use crate::record::{Headers, OutgoingRecord};

/// Encodes an event into a record for `topic` in the given mode.
///
/// ```
/// use mq_core::envelope::{encode, ContentMode};
/// use mq_core::Event;
/// let e = Event::new("T", 1).with_source("/s");
/// let r = encode("t", Some(b"k".to_vec()), &e, ContentMode::Binary).unwrap();
/// assert_eq!(r.value.as_deref(), Some(&b"1"[..]));
/// assert_eq!(r.headers.get_str("ce_type"), Some("T"));
/// ```
pub fn encode<T: Serialize>(
    topic: &str,
    key: Option<Vec<u8>>,
    event: &Event<T>,
    mode: ContentMode,
) -> Result<OutgoingRecord, serde_json::Error> {
    let mut headers = Headers::default();
    let value = match mode {
        ContentMode::Structured => {
            headers.append(attr::CONTENT_TYPE_HEADER, attr::STRUCTURED_CONTENT_TYPE);
            event.to_json()?
        }
        ContentMode::Binary => {
            let mut put = |name: &str, v: &str| {
                headers.append(format!("{}{name}", attr::HEADER_PREFIX), v.as_bytes());
            };
            put(attr::SPECVERSION, &event.specversion);
            put(attr::ID, &event.id);
            put(attr::SOURCE, &event.source);
            put(attr::TYPE, &event.ty);
            if let Some(t) = &event.time {
                put(attr::TIME, &t.to_rfc3339());
            }
            let optional = [
                (attr::SUBJECT, &event.subject),
                (attr::DATASCHEMA, &event.dataschema),
                (attr::CORRELATIONID, &event.correlationid),
                (attr::CAUSATIONID, &event.causationid),
                (attr::TRACEPARENT, &event.traceparent),
            ];
            for (name, value) in optional {
                if let Some(v) = value {
                    put(name, v);
                }
            }
            let ct = event
                .datacontenttype
                .as_deref()
                .unwrap_or(attr::JSON_CONTENT_TYPE);
            headers.append(attr::CONTENT_TYPE_HEADER, ct);
            serde_json::to_vec(&event.data)?
        }
    };
    Ok(OutgoingRecord {
        topic: topic.to_owned(),
        partition: None,
        key,
        value: Some(value),
        headers,
    })
}

impl<T: Serialize> Event<T> {
    /// The event as one JSON object, as structured mode writes it (and the outbox stores it).
    ///
    /// `Event` itself is not `Serialize`, so that `Publisher::send`
    /// can take an event or plain data without the two meanings colliding.
    ///
    /// ```
    /// let e = mq_core::Event::new("Ping", 7).with_id("1").with_source("/s");
    /// let json: serde_json::Value = serde_json::from_slice(&e.to_json().unwrap()).unwrap();
    /// assert_eq!((json["type"].as_str(), json["data"].as_i64()), (Some("Ping"), Some(7)));
    /// ```
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Wire {
            id: &self.id,
            source: &self.source,
            specversion: &self.specversion,
            ty: &self.ty,
            time: self.time.as_ref(),
            subject: self.subject.as_deref(),
            datacontenttype: self.datacontenttype.as_deref(),
            dataschema: self.dataschema.as_deref(),
            correlationid: self.correlationid.as_deref(),
            causationid: self.causationid.as_deref(),
            traceparent: self.traceparent.as_deref(),
            data: &self.data,
        })
    }
}

/// An event's structured-mode JSON object, borrowed (attribute order as CloudEvents lists it).
#[derive(Serialize)]
struct Wire<'a, T> {
    id: &'a str,
    source: &'a str,
    specversion: &'a str,
    #[serde(rename = "type")]
    ty: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<&'a DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    datacontenttype: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dataschema: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlationid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    causationid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
    data: &'a T,
}
