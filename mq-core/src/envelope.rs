//! The shared event envelope: CloudEvents 1.0 attributes around JSON data.
//!
//! Every service built on `mq` sends and receives [`Event<T>`]. On the wire an event is either
//! *structured* (the whole event is one JSON object, header
//! `content-type: application/cloudevents+json; charset=UTF-8`, the default) or *binary*
//! (attributes in `ce_<name>` headers, the value is the JSON data alone). Receivers detect both,
//! and also accept a plain JSON value with no envelope at all (what Spring's `JsonSerializer`
//! sends): then the value is the data and the attributes are derived from the record.
//!
//! Attribute names are the CloudEvents 1.0 spec's own (`id`, `source`, `specversion`, `type`,
//! `time`, `subject`, `datacontenttype`, `dataschema`) plus the extensions `correlationid`,
//! `causationid` and `traceparent`. They are spelled out in [`attributes`] rather than taken
//! from `cloudevents-sdk`, whose Kafka binding pins an older rdkafka.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::record::{Headers, Record};

mod binary;
mod encoding;
mod error;
mod structured;
mod write;

pub use error::{DecodeError, DecodeLimits};
pub use write::encode;
mod time;

use binary::ce_header;

/// Header that carries the id of a plain-JSON event across retry-topic hops, dead letters
/// and replay, so the event keeps the id it got where it was first read.
pub const EVENT_ID_HEADER: &str = "mq_event-id";

/// CloudEvents attribute names and the headers that carry them in binary mode.
pub mod attributes {
    /// Event identifier, unique per source.
    pub const ID: &str = "id";
    /// Context in which the event happened, e.g. `/order-service`.
    pub const SOURCE: &str = "source";
    /// CloudEvents version; always [`SPEC_VERSION`].
    pub const SPECVERSION: &str = "specversion";
    /// Event type, e.g. `OrderCreated`.
    pub const TYPE: &str = "type";
    /// When the event happened (RFC 3339).
    pub const TIME: &str = "time";
    /// Subject of the event within the source.
    pub const SUBJECT: &str = "subject";
    /// Media type of the data.
    pub const DATACONTENTTYPE: &str = "datacontenttype";
    /// Schema the data adheres to.
    pub const DATASCHEMA: &str = "dataschema";
    /// Extension: the id shared by every event of one business flow.
    pub const CORRELATIONID: &str = "correlationid";
    /// Extension: the id of the event that caused this one.
    pub const CAUSATIONID: &str = "causationid";
    /// Extension: W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// The only CloudEvents version `mq` speaks.
    pub const SPEC_VERSION: &str = "1.0";
    /// Prefix of binary-mode attribute headers (CloudEvents Kafka protocol binding).
    pub const HEADER_PREFIX: &str = "ce_";
    /// Record header holding the content type.
    pub const CONTENT_TYPE_HEADER: &str = "content-type";
    /// Record header holding the content encoding (AMQP's `content_encoding`): a charset,
    /// a compression, or both (`gzip:UTF-8`, `gzip, UTF-8`), undone before decoding.
    pub const CONTENT_ENCODING_HEADER: &str = "content-encoding";
    /// Content type of a structured-mode event.
    pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json; charset=UTF-8";
    /// Content type of JSON data.
    pub const JSON_CONTENT_TYPE: &str = "application/json";
}

use attributes as attr;

/// A CloudEvents 1.0 event whose data is `T`.
///
/// Handlers receive it; `Publisher` sends it. Build one with
/// [`Event::new`] and the `with_*` methods; the publisher fills `source`, `correlationid`,
/// `causationid` and `traceparent` when they are left empty.
///
/// ```
/// use mq_core::Event;
/// let e = Event::new("OrderCreated", 42u64).with_subject("order-42");
/// assert_eq!(e.specversion, "1.0");
/// assert_eq!(e.subject.as_deref(), Some("order-42"));
/// assert!(!e.id.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event<T> {
    /// Unique id of this event (a UUID v4 by default).
    pub id: String,
    /// Where the event comes from, e.g. `/order-service`.
    pub source: String,
    /// Always `"1.0"`.
    pub specversion: String,
    /// The event type (`type` on the wire).
    #[serde(rename = "type")]
    pub ty: String,
    /// When the event happened.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "time::deserialize"
    )]
    pub time: Option<DateTime<Utc>>,
    /// Subject within the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Media type of `data` (`application/json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// Schema of `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataschema: Option<String>,
    /// Id shared by every event of one business flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlationid: Option<String>,
    /// Id of the event that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causationid: Option<String>,
    /// W3C trace context of the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The payload.
    pub data: T,
}

impl<T> Event<T> {
    /// A new event of type `ty`: fresh UUID, the current time, `application/json` data.
    ///
    /// ```
    /// let e = mq_core::Event::new("Ping", ());
    /// assert_eq!(e.ty, "Ping");
    /// assert!(e.time.is_some());
    /// ```
    pub fn new(ty: impl Into<String>, data: T) -> Self {
        Event {
            id: uuid::Uuid::new_v4().to_string(),
            source: String::new(),
            specversion: attr::SPEC_VERSION.to_owned(),
            ty: ty.into(),
            time: Some(Utc::now()),
            subject: None,
            datacontenttype: Some(attr::JSON_CONTENT_TYPE.to_owned()),
            dataschema: None,
            correlationid: None,
            causationid: None,
            traceparent: None,
            data,
        }
    }

    /// Sets the id.
    ///
    /// ```
    /// assert_eq!(mq_core::Event::new("T", ()).with_id("1").id, "1");
    /// ```
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the source.
    ///
    /// ```
    /// assert_eq!(mq_core::Event::new("T", ()).with_source("/a").source, "/a");
    /// ```
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Sets the subject.
    ///
    /// ```
    /// let e = mq_core::Event::new("T", ()).with_subject("s");
    /// assert_eq!(e.subject.as_deref(), Some("s"));
    /// ```
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the correlation id.
    ///
    /// ```
    /// let e = mq_core::Event::new("T", ()).with_correlation_id("c");
    /// assert_eq!(e.correlationid.as_deref(), Some("c"));
    /// ```
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlationid = Some(id.into());
        self
    }

    /// Replaces the data, keeping every attribute.
    ///
    /// ```
    /// let e = mq_core::Event::new("T", 1).map(|n| n + 1);
    /// assert_eq!(e.data, 2);
    /// ```
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Event<U> {
        Event {
            id: self.id,
            source: self.source,
            specversion: self.specversion,
            ty: self.ty,
            time: self.time,
            subject: self.subject,
            datacontenttype: self.datacontenttype,
            dataschema: self.dataschema,
            correlationid: self.correlationid,
            causationid: self.causationid,
            traceparent: self.traceparent,
            data: f(self.data),
        }
    }
}

/// How an event is laid out on the wire (`mq.kafka.producer.content-mode`, per topic
/// `mq.kafka.producer.destinations.<topic>.content-mode`).
///
/// ```
/// assert_eq!(mq_core::envelope::ContentMode::default(), mq_core::envelope::ContentMode::Structured);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContentMode {
    /// The whole event is one JSON object (CloudEvents structured mode).
    #[default]
    Structured,
    /// Attributes in `ce_*` headers, the value is the data (CloudEvents binary mode).
    Binary,
}

/// The wire layout a record was found in.
///
/// ```
/// use mq_core::envelope::{detect, WireFormat};
/// use mq_core::record::Record;
/// let r = Record::new("t", 0, 0, None, Some(b"{\"a\":1}".to_vec()));
/// assert_eq!(detect(&r), WireFormat::Plain);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// CloudEvents structured mode.
    Structured,
    /// CloudEvents binary mode.
    Binary,
    /// A JSON value with no envelope.
    Plain,
}

/// Detects the layout of a record from its headers (and, failing that, a cheap look at the
/// value: a JSON object mentioning `"specversion"` is tried as structured).
///
/// ```
/// use mq_core::envelope::{detect, WireFormat};
/// use mq_core::record::Record;
/// let mut r = Record::new("t", 0, 0, None, Some(b"{}".to_vec()));
/// r.headers.insert("ce_specversion", "1.0");
/// assert_eq!(detect(&r), WireFormat::Binary);
/// ```
pub fn detect(record: &Record) -> WireFormat {
    detect_in(record, record.value.as_deref().unwrap_or_default())
}

/// [`detect`] with `value` (the record's, its content encoding undone) for the look.
fn detect_in(record: &Record, value: &[u8]) -> WireFormat {
    if ce_header(&record.headers, attr::SPECVERSION).is_some() {
        return WireFormat::Binary;
    }
    if let Some(ct) = record.headers.get(attr::CONTENT_TYPE_HEADER) {
        if ct.starts_with(b"application/cloudevents") {
            return WireFormat::Structured;
        }
    }
    if looks_structured(value) {
        WireFormat::Structured
    } else {
        WireFormat::Plain
    }
}

fn looks_structured(value: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"\"specversion\"";
    value.first() == Some(&b'{') && value.windows(NEEDLE.len()).any(|w| w == NEEDLE)
}

/// Decodes a record into an event, whatever its layout.
///
/// ```
/// use mq_core::envelope::{decode, DecodeLimits};
/// use mq_core::record::Record;
/// let value = br#"{"specversion":"1.0","id":"1","source":"/s","type":"T","data":5}"#;
/// let r = Record::new("t", 0, 0, None, Some(value.to_vec()));
/// let e = decode::<u32>(&r, &DecodeLimits::default()).unwrap();
/// assert_eq!((e.id.as_str(), e.data), ("1", 5));
/// ```
pub fn decode<T: DeserializeOwned>(
    record: &Record,
    limits: &DecodeLimits,
) -> Result<Event<T>, DecodeError> {
    let value = match record.value.as_deref() {
        None | Some([]) => return Err(DecodeError::Empty),
        Some(v) => v,
    };
    if value.len() > limits.max_payload_bytes {
        return Err(DecodeError::Oversized {
            size: value.len(),
            limit: limits.max_payload_bytes,
        });
    }
    let decoded;
    let value = match record.headers.get_str(attr::CONTENT_ENCODING_HEADER) {
        Some(encoding) if !encoding.trim().is_empty() => {
            decoded = encoding::decode(value, encoding, limits.max_payload_bytes)?;
            &decoded[..]
        }
        _ => value,
    };
    match detect_in(record, value) {
        WireFormat::Binary => binary::decode(record, value),
        WireFormat::Structured => match serde_json::from_slice::<Event<T>>(value) {
            Ok(event) if event.specversion == attr::SPEC_VERSION => Ok(event),
            Ok(event) => Err(DecodeError::UnsupportedSpecVersion(event.specversion)),
            Err(structured) => {
                if structured::mentions_base64(value) {
                    if let Some(result) = structured::decode_base64(value) {
                        return result;
                    }
                }
                // A plain JSON value that merely mentions "specversion" is still plain data,
                // unless the producer said it was an envelope.
                let declared = record
                    .headers
                    .get(attr::CONTENT_TYPE_HEADER)
                    .is_some_and(|ct| ct.starts_with(b"application/cloudevents"));
                if declared {
                    return Err(json_error::<Event<T>>(value, structured));
                }
                decode_plain(record, value).map_err(|_| json_error::<Event<T>>(value, structured))
            }
        },
        WireFormat::Plain => decode_plain(record, value),
    }
}

fn json_error<T>(value: &[u8], source: serde_json::Error) -> DecodeError {
    match std::str::from_utf8(value) {
        Err(e) => DecodeError::NotUtf8(e),
        Ok(_) => DecodeError::Json {
            target: std::any::type_name::<T>(),
            source,
        },
    }
}

fn parse_data<T: DeserializeOwned>(value: &[u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(value).map_err(|e| json_error::<T>(value, e))
}

/// Plain JSON: the value is the data; attributes come from the record. The id is derived
/// from topic/partition/offset so that a redelivery carries the same id (idempotency keys
/// keep working), or taken from [`EVENT_ID_HEADER`] when an earlier hop (retry topic, dead
/// letter, replay) carried it along. Spring's `__TypeId__` header, when present, gives the
/// type.
fn decode_plain<T: DeserializeOwned>(
    record: &Record,
    value: &[u8],
) -> Result<Event<T>, DecodeError> {
    let data = parse_data(value)?;
    let h = &record.headers;
    Ok(Event {
        id: plain_id(record),
        source: format!("/topics/{}", record.topic),
        specversion: attr::SPEC_VERSION.to_owned(),
        ty: h
            .get_str("__TypeId__")
            .map(str::to_owned)
            .unwrap_or_else(|| short_type_name::<T>().to_owned()),
        time: record
            .timestamp
            .and_then(DateTime::<Utc>::from_timestamp_millis),
        subject: None,
        datacontenttype: Some(attr::JSON_CONTENT_TYPE.to_owned()),
        dataschema: None,
        correlationid: h
            .get_str(attr::CORRELATIONID)
            .or_else(|| h.get_str("kafka_correlationId"))
            .map(str::to_owned),
        causationid: None,
        traceparent: h.get_str(attr::TRACEPARENT).map(str::to_owned),
        data,
    })
}

/// The id of an event read from plain JSON, which has none of its own: the one carried in
/// [`EVENT_ID_HEADER`], else where the record is.
fn plain_id(record: &Record) -> String {
    match record.headers.get_str(EVENT_ID_HEADER) {
        Some(id) if !id.is_empty() && id.len() <= 1024 => id.to_owned(),
        _ => format!("{}-{}-{}", record.topic, record.partition, record.offset),
    }
}

/// When `record` is plain JSON, puts its event id in [`EVENT_ID_HEADER`] of a record
/// forwarded from it (retry topic, dead letter), so the id survives the hop.
pub(crate) fn carry_event_id(record: &Record, headers: &mut Headers) {
    if detect(record) == WireFormat::Plain {
        headers.insert(EVENT_ID_HEADER, plain_id(record));
    }
}

/// The `id` and `correlationid` of a record without decoding its data (for log lines on
/// failure paths); `None` where they cannot be read.
pub(crate) fn peek_ids(record: &Record) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct Ids {
        id: Option<String>,
        correlationid: Option<String>,
    }
    let h = &record.headers;
    match detect(record) {
        WireFormat::Binary => {
            let text = |name| binary::text(h, name).ok().flatten();
            (text(attr::ID), text(attr::CORRELATIONID))
        }
        WireFormat::Structured => record
            .value
            .as_deref()
            .and_then(|v| serde_json::from_slice::<Ids>(v).ok())
            .map_or((None, None), |ids| (ids.id, ids.correlationid)),
        WireFormat::Plain => (
            Some(plain_id(record)),
            h.get_str(attr::CORRELATIONID).map(str::to_owned),
        ),
    }
}

/// Whether `record` may carry a trace context ([`peek_trace`] would find one): a cheap
/// look at the headers and the bytes, before any parse.
pub(crate) fn mentions_traceparent(record: &Record) -> bool {
    record
        .headers
        .iter()
        .any(|h| h.key.ends_with(attr::TRACEPARENT))
        || record
            .value
            .as_deref()
            .is_some_and(|v| memchr::memmem::find(v, attr::TRACEPARENT.as_bytes()).is_some())
}

/// The event id and the W3C trace context `record` carries, read with one parse: the
/// trace context is a `traceparent` header (what OpenTelemetry's messaging
/// instrumentations inject), else the CloudEvents `traceparent` extension of the event.
/// Asked only when tracing export is on.
pub(crate) fn peek_trace(record: &Record) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct Trace {
        id: Option<String>,
        traceparent: Option<String>,
    }
    let h = &record.headers;
    let header = h.get_str(attr::TRACEPARENT).map(str::to_owned);
    match detect(record) {
        WireFormat::Binary => {
            let text = |name| binary::text(h, name).ok().flatten();
            (text(attr::ID), header.or_else(|| text(attr::TRACEPARENT)))
        }
        WireFormat::Structured => {
            let trace = record
                .value
                .as_deref()
                .and_then(|v| serde_json::from_slice::<Trace>(v).ok());
            match trace {
                Some(t) => (t.id, header.or(t.traceparent)),
                None => (None, header),
            }
        }
        WireFormat::Plain => (Some(plain_id(record)), header),
    }
}

/// The last path segment of a type's name, without generics: `OrderCreated` for
/// `my_crate::events::OrderCreated`. Used as the default CloudEvents `type`.
///
/// ```
/// struct OrderCreated;
/// assert_eq!(mq_core::envelope::short_type_name::<OrderCreated>(), "OrderCreated");
/// assert_eq!(mq_core::envelope::short_type_name::<Vec<u8>>(), "Vec");
/// ```
pub fn short_type_name<T: ?Sized>() -> &'static str {
    short_type_name_of(std::any::type_name::<T>())
}

/// [`short_type_name`] of a type name given as text.
///
/// ```
/// assert_eq!(mq_core::envelope::short_type_name_of("std::io::error::Error"), "Error");
/// ```
pub fn short_type_name_of(full: &str) -> &str {
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

#[cfg(test)]
mod tests;
