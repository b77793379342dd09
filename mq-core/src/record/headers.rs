//! Record headers: [`Header`] (a key, bytes and, when the broker typed it, a
//! [`HeaderValue`]) and the ordered list [`Headers`].

use super::{FromHeader, HeaderValue};

/// One record header. Kafka allows repeated keys and null values; both are kept as they
/// came. A header whose broker typed it (an AMQP field-table value) keeps its
/// [`HeaderValue`] beside its bytes, and leaves mq with that type.
///
/// ```
/// use mq_core::record::Header;
/// let h = Header::new("ce_id", "42");
/// assert_eq!(h.value.as_deref(), Some(&b"42"[..]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub key: String,
    /// Raw header value; `None` for a Kafka null header. For a typed header, its bytes
    /// view (see [`HeaderValue::to_bytes`]).
    pub value: Option<Vec<u8>>,
    /// The type its broker gave it, when not plain bytes or a long string.
    typed: Option<Box<HeaderValue>>,
}

impl Header {
    /// A header with a value.
    ///
    /// ```
    /// let h = mq_core::record::Header::new("x", b"y".to_vec());
    /// assert_eq!(h.key, "x");
    /// ```
    pub fn new(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Header {
            key: key.into(),
            value: Some(value.into()),
            typed: None,
        }
    }

    /// A header as Kafka has it: bytes, or `None` for a null header.
    ///
    /// ```
    /// let h = mq_core::record::Header::raw("tombstone-marker", None);
    /// assert_eq!(h.value, None);
    /// ```
    pub fn raw(key: impl Into<String>, value: Option<Vec<u8>>) -> Self {
        Header {
            key: key.into(),
            value,
            typed: None,
        }
    }

    /// A header with a typed value; its bytes are the value's bytes view.
    ///
    /// ```
    /// use mq_core::record::{Header, HeaderValue};
    /// let h = Header::typed("x-retry-attempts", HeaderValue::I64(3));
    /// assert_eq!(h.value.as_deref(), Some(&b"3"[..]));
    /// assert_eq!(h.typed_value(), Some(&HeaderValue::I64(3)));
    /// ```
    pub fn typed(key: impl Into<String>, value: HeaderValue) -> Self {
        Header {
            key: key.into(),
            value: Some(value.to_bytes()),
            typed: Some(Box::new(value)),
        }
    }

    /// The type its broker gave it (`None`: bytes, as every Kafka header).
    pub fn typed_value(&self) -> Option<&HeaderValue> {
        self.typed.as_deref()
    }
}

/// The ordered headers of a record.
///
/// ```
/// use mq_core::record::Headers;
/// let mut h = Headers::default();
/// h.insert("a", "1");
/// h.insert("a", "2");
/// assert_eq!(h.get_str("a"), Some("2"));
/// assert_eq!(h.len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl Headers {
    /// Headers from a list, kept in order (repeated keys included).
    ///
    /// ```
    /// use mq_core::record::{Header, Headers};
    /// let h = Headers::from_vec(vec![Header::new("k", "v")]);
    /// assert_eq!(h.get("k"), Some(&b"v"[..]));
    /// ```
    pub fn from_vec(headers: Vec<Header>) -> Self {
        Headers(headers)
    }

    /// The value of the last header named `key` (Kafka's "last wins" reading).
    ///
    /// ```
    /// # use mq_core::record::Headers;
    /// let mut h = Headers::default();
    /// h.append("k", "v");
    /// assert_eq!(h.get("k"), Some(&b"v"[..]));
    /// assert_eq!(h.get("missing"), None);
    /// ```
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .rev()
            .find(|h| h.key == key)
            .and_then(|h| h.value.as_deref())
    }

    /// [`Headers::get`] as UTF-8; `None` when absent or not UTF-8.
    ///
    /// ```
    /// # use mq_core::record::Headers;
    /// let mut h = Headers::default();
    /// h.append("k", "v");
    /// assert_eq!(h.get_str("k"), Some("v"));
    /// ```
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The last header named `key`, with its type if its broker gave it one.
    ///
    /// ```
    /// # use mq_core::record::{Headers, HeaderValue};
    /// let mut h = Headers::default();
    /// h.insert_typed("n", HeaderValue::I16(7));
    /// assert_eq!(h.get_header("n").unwrap().typed_value(), Some(&HeaderValue::I16(7)));
    /// ```
    pub fn get_header(&self, key: &str) -> Option<&Header> {
        self.0.iter().rev().find(|h| h.key == key)
    }

    /// The last header named `key` read as `T`: from its type when it has one, else parsed
    /// from its bytes (see [`FromHeader`]); `None` when absent or not a `T`.
    ///
    /// ```
    /// # use mq_core::record::{Headers, HeaderValue};
    /// let mut h = Headers::default();
    /// h.insert_typed("retries", HeaderValue::I64(3));
    /// h.insert("kafka-count", "4");
    /// assert_eq!(h.get_as::<i64>("retries"), Some(3));
    /// assert_eq!(h.get_as::<i64>("kafka-count"), Some(4));
    /// assert_eq!(h.get_as::<bool>("retries"), None);
    /// ```
    pub fn get_as<T: FromHeader>(&self, key: &str) -> Option<T> {
        let h = self.get_header(key)?;
        T::from_header(h.typed_value(), h.value.as_deref()?)
    }

    /// Sets a typed header: removes every header of that name, then appends it.
    pub fn insert_typed(&mut self, key: impl Into<String>, value: HeaderValue) {
        let key = key.into();
        self.remove(&key);
        self.0.push(Header::typed(key, value));
    }

    /// Adds a header (typed or not) at the end, keeping earlier ones of the same name.
    pub fn push(&mut self, header: Header) {
        self.0.push(header);
    }

    /// Adds a header at the end, keeping any earlier header of the same name.
    ///
    /// ```
    /// # use mq_core::record::Headers;
    /// let mut h = Headers::default();
    /// h.append("k", "1");
    /// h.append("k", "2");
    /// assert_eq!(h.len(), 2);
    /// ```
    pub fn append(&mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.0.push(Header::new(key, value));
    }

    /// Sets a header: removes every header of that name, then appends the new one.
    ///
    /// ```
    /// # use mq_core::record::Headers;
    /// let mut h = Headers::default();
    /// h.append("k", "1");
    /// h.insert("k", "2");
    /// assert_eq!(h.len(), 1);
    /// ```
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) {
        let key = key.into();
        self.remove(&key);
        self.0.push(Header::new(key, value));
    }

    /// Removes every header named `key`.
    ///
    /// ```
    /// # use mq_core::record::Headers;
    /// let mut h = Headers::default();
    /// h.append("k", "1");
    /// h.remove("k");
    /// assert!(h.is_empty());
    /// ```
    pub fn remove(&mut self, key: &str) {
        self.0.retain(|h| h.key != key);
    }

    /// Keeps only the headers for which `keep` returns true.
    ///
    /// ```
    /// # use mq_core::record::Headers;
    /// let mut h = Headers::default();
    /// h.append("kafka_dlt-x", "1");
    /// h.append("app", "2");
    /// h.retain(|name| !name.starts_with("kafka_dlt-"));
    /// assert_eq!(h.len(), 1);
    /// ```
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|h| keep(&h.key));
    }

    /// Iterates over the headers in order.
    ///
    /// ```
    /// # use mq_core::record::Headers;
    /// let mut h = Headers::default();
    /// h.append("k", "v");
    /// assert_eq!(h.iter().count(), 1);
    /// ```
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Header> + ExactSizeIterator {
        self.0.iter()
    }

    /// Number of headers.
    ///
    /// ```
    /// assert_eq!(mq_core::record::Headers::default().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no headers.
    ///
    /// ```
    /// assert!(mq_core::record::Headers::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Headers {
    /// Replaces the headers with `headers`, reusing this list's buffers (a partition worker
    /// refills one record per message instead of allocating a new one).
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn refill<'a>(
        &mut self,
        headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) {
        let mut len = 0;
        for (key, value) in headers {
            match self.0.get_mut(len) {
                // Headers mostly repeat from record to record (a content type, a type
                // name): writing only what changed leaves their cache lines shared with
                // the thread that reads the record, instead of moving them back and forth.
                Some(h) => {
                    if h.key != key {
                        h.key.clear();
                        h.key.push_str(key);
                    }
                    if h.value.as_deref() != value {
                        copy_into(&mut h.value, value);
                    }
                    if h.typed.is_some() {
                        h.typed = None;
                    }
                }
                None => self.0.push(Header {
                    key: key.to_owned(),
                    value: value.map(<[u8]>::to_vec),
                    typed: None,
                }),
            }
            len += 1;
        }
        self.0.truncate(len);
    }
}

/// Sets `slot` to a copy of `bytes`, reusing the buffer it has.
#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
pub(crate) fn copy_into(slot: &mut Option<Vec<u8>>, bytes: Option<&[u8]>) {
    match (slot.as_mut(), bytes) {
        (Some(buf), Some(b)) => {
            buf.clear();
            buf.extend_from_slice(b);
        }
        (_, b) => *slot = b.map(<[u8]>::to_vec),
    }
}

impl IntoIterator for Headers {
    type Item = Header;
    type IntoIter = std::vec::IntoIter<Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}
