//! [`HeaderValue`]: a header value with the type its broker gave it. Kafka headers are
//! bytes and need none; AMQP headers are field-table values (integers of each width,
//! decimals, timestamps, arrays, tables, void), and a message that passes through mq
//! (handler, retry, dead letter, replay) leaves with each of them as it came.

use chrono::{DateTime, Utc};

/// A typed header value, as AMQP 0-9-1's field tables (RabbitMQ's dialect) type them.
///
/// ```
/// use mq_core::record::HeaderValue;
/// let v = HeaderValue::I64(42);
/// assert_eq!(v.as_i64(), Some(42));
/// assert_eq!(v.to_bytes(), b"42");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum HeaderValue {
    /// `t`
    Bool(bool),
    /// `b`
    I8(i8),
    /// `B`
    U8(u8),
    /// `s` (RabbitMQ's short int)
    I16(i16),
    /// `u`
    U16(u16),
    /// `I`
    I32(i32),
    /// `i`
    U32(u32),
    /// `l`: Java's `long`
    I64(i64),
    /// `f`
    F32(f32),
    /// `d`
    F64(f64),
    /// `D`: `value` × 10^−`scale`.
    Decimal {
        /// Decimal places.
        scale: u8,
        /// The unscaled value.
        value: u32,
    },
    /// `s` in AMQP's own dialect: a short string.
    ShortString(String),
    /// `S`: a long string, bytes as sent (usually UTF-8).
    LongString(Vec<u8>),
    /// `x`: a byte array.
    Bytes(Vec<u8>),
    /// `T`: seconds since the Unix epoch.
    Timestamp(u64),
    /// `A`
    Array(Vec<HeaderValue>),
    /// `F`: a nested table, its entries in order.
    Table(Vec<(String, HeaderValue)>),
    /// `V`
    Void,
}

impl PartialEq for HeaderValue {
    /// Floats compare by their bits: a value equals its own copy, NaN included.
    fn eq(&self, other: &Self) -> bool {
        use HeaderValue::*;
        match (self, other) {
            (F32(a), F32(b)) => a.to_bits() == b.to_bits(),
            (F64(a), F64(b)) => a.to_bits() == b.to_bits(),
            (Bool(a), Bool(b)) => a == b,
            (I8(a), I8(b)) => a == b,
            (U8(a), U8(b)) => a == b,
            (I16(a), I16(b)) => a == b,
            (U16(a), U16(b)) => a == b,
            (I32(a), I32(b)) => a == b,
            (U32(a), U32(b)) => a == b,
            (I64(a), I64(b)) => a == b,
            (Decimal { scale: s, value: v }, Decimal { scale: t, value: w }) => s == t && v == w,
            (ShortString(a), ShortString(b)) => a == b,
            (LongString(a), LongString(b)) | (Bytes(a), Bytes(b)) => a == b,
            (Timestamp(a), Timestamp(b)) => a == b,
            (Array(a), Array(b)) => a == b,
            (Table(a), Table(b)) => a == b,
            (Void, Void) => true,
            _ => false,
        }
    }
}

impl Eq for HeaderValue {}

impl HeaderValue {
    /// The value as bytes, what [`Headers::get`](super::Headers::get) returns for it:
    /// strings and byte arrays as they are, numbers and booleans as text, a timestamp as
    /// RFC 3339 (`2024-11-28T09:15:30Z`), tables and arrays as JSON, void as nothing.
    ///
    /// ```
    /// use mq_core::record::HeaderValue;
    /// assert_eq!(HeaderValue::Timestamp(1_700_000_000).to_bytes(), b"2023-11-14T22:13:20Z");
    /// assert_eq!(HeaderValue::Decimal { scale: 2, value: 1234 }.to_bytes(), b"12.34");
    /// ```
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            HeaderValue::LongString(b) | HeaderValue::Bytes(b) => b.clone(),
            HeaderValue::ShortString(s) => s.clone().into_bytes(),
            HeaderValue::Void => Vec::new(),
            HeaderValue::Array(_) | HeaderValue::Table(_) => {
                self.to_json().to_string().into_bytes()
            }
            other => other.text().into_bytes(),
        }
    }

    /// Scalars as text (see [`HeaderValue::to_bytes`]).
    fn text(&self) -> String {
        match self {
            HeaderValue::Bool(b) => b.to_string(),
            HeaderValue::I8(i) => i.to_string(),
            HeaderValue::U8(i) => i.to_string(),
            HeaderValue::I16(i) => i.to_string(),
            HeaderValue::U16(i) => i.to_string(),
            HeaderValue::I32(i) => i.to_string(),
            HeaderValue::U32(i) => i.to_string(),
            HeaderValue::I64(i) => i.to_string(),
            HeaderValue::F32(f) => f.to_string(),
            HeaderValue::F64(f) => f.to_string(),
            HeaderValue::Decimal { scale, value } => decimal_text(*scale, *value),
            HeaderValue::Timestamp(t) => i64::try_from(*t)
                .ok()
                .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                .unwrap_or_else(|| t.to_string()),
            other => String::from_utf8_lossy(&other.to_bytes()).into_owned(),
        }
    }

    /// The value as JSON (strings as text, timestamps as RFC 3339, decimals as numbers).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            HeaderValue::LongString(b) | HeaderValue::Bytes(b) => {
                Value::String(String::from_utf8_lossy(b).into_owned())
            }
            HeaderValue::ShortString(s) => Value::String(s.clone()),
            HeaderValue::Bool(b) => Value::Bool(*b),
            HeaderValue::I8(i) => (*i).into(),
            HeaderValue::U8(i) => (*i).into(),
            HeaderValue::I16(i) => (*i).into(),
            HeaderValue::U16(i) => (*i).into(),
            HeaderValue::I32(i) => (*i).into(),
            HeaderValue::U32(i) => (*i).into(),
            HeaderValue::I64(i) => (*i).into(),
            HeaderValue::F32(f) => serde_json::json!(f),
            HeaderValue::F64(f) => serde_json::json!(f),
            HeaderValue::Decimal { .. } => {
                serde_json::from_str(&self.text()).unwrap_or(Value::Null)
            }
            HeaderValue::Timestamp(_) => Value::String(self.text()),
            HeaderValue::Array(items) => Value::Array(items.iter().map(Self::to_json).collect()),
            HeaderValue::Table(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
            HeaderValue::Void => Value::Null,
        }
    }

    /// Any integer as `i64` (`None` for a `u64`-sized timestamp, text or other kinds).
    ///
    /// ```
    /// use mq_core::record::HeaderValue;
    /// assert_eq!(HeaderValue::U16(7).as_i64(), Some(7));
    /// assert_eq!(HeaderValue::LongString(b"7".to_vec()).as_i64(), None);
    /// ```
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            HeaderValue::I8(i) => Some(i.into()),
            HeaderValue::U8(i) => Some(i.into()),
            HeaderValue::I16(i) => Some(i.into()),
            HeaderValue::U16(i) => Some(i.into()),
            HeaderValue::I32(i) => Some(i.into()),
            HeaderValue::U32(i) => Some(i.into()),
            HeaderValue::I64(i) => Some(i),
            _ => None,
        }
    }

    /// Any number as `f64` (integers, floats, decimals).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            HeaderValue::F32(f) => Some(f.into()),
            HeaderValue::F64(f) => Some(f),
            HeaderValue::Decimal { scale, value } => {
                Some(f64::from(value) / 10f64.powi(i32::from(scale)))
            }
            _ => self.as_i64().map(|i| i as f64),
        }
    }
}

/// `value` × 10^−`scale` in decimal notation, exactly.
fn decimal_text(scale: u8, value: u32) -> String {
    let digits = value.to_string();
    let scale = usize::from(scale);
    if scale == 0 {
        return digits;
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{int}.{frac}")
}

/// A type a header can be read as, with [`Headers::get_as`](super::Headers::get_as) or
/// `Context::header`: from its typed value when its broker typed it, else from its bytes
/// (numbers and booleans parsed from text).
pub trait FromHeader: Sized {
    /// Reads `value` (the typed value, if any) or `bytes` (the bytes view).
    fn from_header(value: Option<&HeaderValue>, bytes: &[u8]) -> Option<Self>;
}

fn text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok().map(str::trim)
}

impl FromHeader for i64 {
    fn from_header(value: Option<&HeaderValue>, bytes: &[u8]) -> Option<Self> {
        match value {
            Some(v) if v.as_i64().is_some() => v.as_i64(),
            Some(HeaderValue::Timestamp(t)) => i64::try_from(*t).ok(),
            _ => text(bytes)?.parse().ok(),
        }
    }
}

impl FromHeader for i32 {
    fn from_header(value: Option<&HeaderValue>, bytes: &[u8]) -> Option<Self> {
        i64::from_header(value, bytes).and_then(|i| i32::try_from(i).ok())
    }
}

impl FromHeader for u64 {
    fn from_header(value: Option<&HeaderValue>, bytes: &[u8]) -> Option<Self> {
        match value {
            Some(HeaderValue::Timestamp(t)) => Some(*t),
            _ => i64::from_header(value, bytes).and_then(|i| u64::try_from(i).ok()),
        }
    }
}

impl FromHeader for f64 {
    fn from_header(value: Option<&HeaderValue>, bytes: &[u8]) -> Option<Self> {
        match value.and_then(HeaderValue::as_f64) {
            Some(f) => Some(f),
            None => text(bytes)?.parse().ok(),
        }
    }
}

impl FromHeader for bool {
    fn from_header(value: Option<&HeaderValue>, bytes: &[u8]) -> Option<Self> {
        match value {
            Some(HeaderValue::Bool(b)) => Some(*b),
            _ => text(bytes)?.parse().ok(),
        }
    }
}

impl FromHeader for String {
    fn from_header(_value: Option<&HeaderValue>, bytes: &[u8]) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

impl FromHeader for Vec<u8> {
    fn from_header(_value: Option<&HeaderValue>, bytes: &[u8]) -> Option<Self> {
        Some(bytes.to_vec())
    }
}

impl FromHeader for HeaderValue {
    /// The typed value, or the bytes as [`HeaderValue::Bytes`] (a Kafka header).
    fn from_header(value: Option<&HeaderValue>, bytes: &[u8]) -> Option<Self> {
        Some(
            value
                .cloned()
                .unwrap_or_else(|| HeaderValue::Bytes(bytes.to_vec())),
        )
    }
}

impl FromHeader for DateTime<Utc> {
    /// A timestamp, or RFC 3339 text.
    fn from_header(value: Option<&HeaderValue>, bytes: &[u8]) -> Option<Self> {
        match value {
            Some(HeaderValue::Timestamp(t)) => DateTime::from_timestamp(i64::try_from(*t).ok()?, 0),
            _ => DateTime::parse_from_rfc3339(text(bytes)?)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_read_exactly() {
        assert_eq!(decimal_text(0, 7), "7");
        assert_eq!(decimal_text(3, 7), "0.007");
        assert_eq!(decimal_text(2, 12_345), "123.45");
        assert_eq!(
            HeaderValue::Decimal { scale: 2, value: 5 }.as_f64(),
            Some(0.05)
        );
    }

    #[test]
    fn tables_and_arrays_read_as_json_and_void_as_nothing() {
        let death = HeaderValue::Array(vec![HeaderValue::Table(vec![
            ("count".into(), HeaderValue::I64(1)),
            ("queue".into(), HeaderValue::LongString(b"q".to_vec())),
        ])]);
        assert_eq!(death.to_bytes(), br#"[{"count":1,"queue":"q"}]"#);
        assert!(HeaderValue::Void.to_bytes().is_empty());
    }

    #[test]
    fn typed_reads_take_the_type_first_and_text_second() {
        assert_eq!(i64::from_header(Some(&HeaderValue::I8(-3)), b""), Some(-3));
        assert_eq!(i64::from_header(None, b" 12 "), Some(12));
        assert_eq!(bool::from_header(None, b"true"), Some(true));
        assert_eq!(
            i32::from_header(Some(&HeaderValue::I64(1 << 40)), b""),
            None
        );
        let t = DateTime::<Utc>::from_header(Some(&HeaderValue::Timestamp(1_700_000_000)), b"");
        assert_eq!(t.unwrap().timestamp(), 1_700_000_000);
        assert_eq!(
            HeaderValue::from_header(None, b"raw"),
            Some(HeaderValue::Bytes(b"raw".to_vec()))
        );
        assert_ne!(HeaderValue::I32(1), HeaderValue::I64(1), "types differ");
        assert_eq!(HeaderValue::F64(f64::NAN), HeaderValue::F64(f64::NAN));
    }
}
