//! [`Message`]: what [`Publisher::send`](super::Publisher::send) and the outbox take; and
//! [`Raw`], bytes with headers sent with no envelope.

use serde::Serialize;

use crate::envelope::{short_type_name, Event};
use crate::record::{Header, HeaderValue, Headers, OutgoingRecord};

/// Anything that becomes a message: data of any `Serialize` type (sent as a new [`Event`]
/// whose CloudEvents `type` is the data's type name), an [`Event`] built by hand, or
/// [`Raw`] bytes with headers. Implemented by mq only.
///
/// `Event` is not `Serialize` (its JSON is [`Event::to_json`]), so an event is never
/// mistaken for data and wrapped in a second envelope.
///
/// ```
/// use mq_core::publisher::Message;
/// fn takes<M: Message>(_: M) {}
/// takes(serde_json::json!({"qty": 2}));
/// takes(mq_core::Event::new("Ping", 1));
/// takes(mq_core::publisher::Raw::new(b"bytes".to_vec()));
/// ```
pub trait Message: sealed::Sealed {
    /// The data an event carries (`()` for [`Raw`]).
    #[doc(hidden)]
    type Data: Serialize;
    /// The event to encode, or the bytes to send as they are.
    #[doc(hidden)]
    fn into_outgoing(self) -> Outgoing<Self::Data>;
}

/// A message ready for a destination: an event to encode, or bytes sent as they are.
#[doc(hidden)]
#[derive(Debug)]
pub enum Outgoing<T> {
    /// Encoded in the destination's content mode.
    Event(Event<T>),
    /// Sent with no envelope.
    Raw(Raw),
}

/// Data of any `Serialize` type, or an [`Event`] built by hand: what becomes an event
/// (`Outbox::send` takes these; the outbox stores
/// envelopes). Implemented by mq only.
///
/// ```
/// use mq_core::publisher::IntoEvent;
/// let e = serde_json::json!({"qty": 2}).into_event();
/// assert_eq!(e.ty, "Value");
/// assert_eq!(mq_core::Event::new("Ping", 1).into_event().ty, "Ping");
/// ```
pub trait IntoEvent: sealed::Sealed {
    /// The data the event carries.
    type Data: Serialize;
    /// The event: data becomes a new event whose `type` is its Rust type name.
    fn into_event(self) -> Event<Self::Data>;
}

impl<T: Serialize> IntoEvent for T {
    type Data = T;
    fn into_event(self) -> Event<T> {
        Event::new(short_type_name::<T>(), self)
    }
}

impl<T: Serialize> IntoEvent for Event<T> {
    type Data = T;
    fn into_event(self) -> Event<T> {
        self
    }
}

impl<E: IntoEvent> Message for E {
    type Data = E::Data;
    fn into_outgoing(self) -> Outgoing<E::Data> {
        Outgoing::Event(self.into_event())
    }
}

impl Message for Raw {
    type Data = ();
    fn into_outgoing(self) -> Outgoing<()> {
        Outgoing::Raw(self)
    }
}

mod sealed {
    pub trait Sealed {}
    impl<T: serde::Serialize> Sealed for T {}
    impl<T: serde::Serialize> Sealed for crate::envelope::Event<T> {}
    impl Sealed for super::Raw {}
}

/// Bytes with headers, sent as they are: no envelope, no CloudEvents attributes added (a
/// payload another framework wrote, a pre-encoded event, a tombstone).
///
/// ```
/// use mq_core::publisher::Raw;
/// let raw = Raw::new(b"{}".to_vec()).with_header("content-type", "application/json");
/// assert_eq!(raw.headers().get_str("content-type"), Some("application/json"));
/// assert!(Raw::tombstone().value().is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Raw {
    value: Option<Vec<u8>>,
    headers: Headers,
    partition: Option<i32>,
}

impl Raw {
    /// `value` with no headers, partitioned by the key.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Raw {
            value: Some(value.into()),
            ..Raw::default()
        }
    }

    /// A null value: on Kafka, a tombstone that deletes the key on a compacted topic.
    pub fn tombstone() -> Self {
        Raw::default()
    }

    /// Adds a header with a bytes (or string) value; an existing one of that name stays.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.append(key, value);
        self
    }

    /// Adds a header with a typed value (AMQP's field-table types; bytes on Kafka).
    ///
    /// ```
    /// use mq_core::record::HeaderValue;
    /// let raw = mq_core::publisher::Raw::new(vec![]).with_typed_header("retries", HeaderValue::I64(3));
    /// assert_eq!(raw.headers().get_as::<i64>("retries"), Some(3));
    /// ```
    pub fn with_typed_header(mut self, key: impl Into<String>, value: HeaderValue) -> Self {
        self.headers.push(Header::typed(key, value));
        self
    }

    /// Replaces every header.
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// Sends to this partition (Kafka) instead of the key's.
    pub fn to_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// The value; `None` for a tombstone.
    pub fn value(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    pub(crate) fn into_record(self, topic: &str, key: Option<Vec<u8>>) -> OutgoingRecord {
        OutgoingRecord {
            topic: topic.to_owned(),
            partition: self.partition,
            key,
            value: self.value,
            headers: self.headers,
        }
    }
}
