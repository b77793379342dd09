//! `properties` maps (librdkafka property name → value) and other string maps read from
//! YAML or the environment.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// librdkafka properties, property name → value as text, ordered by name.
///
/// Read from what users write under a `properties` key: dotted keys
/// (`fetch.min.bytes: 1`) and nested maps (`fetch: {min: {bytes: 1}}`) both give
/// `fetch.min.bytes`; numbers and booleans become their text, lists join with `,`, an
/// empty value is the empty string. Environment values are taken as they are
/// (`MQ_KAFKA__PROPERTIES__SASL_PASSWORD=00123` stays `00123`). File values follow YAML
/// typing first: `1.10` is the float `1.1` and `007` may be read as `7`; quote them
/// (`"1.10"`) to keep them exact. Serialized as a flat map of strings.
///
/// ```
/// let c = mq_core::Config::from_yaml_str(
///     "mq:\n  kafka:\n    consumer:\n      properties:\n        fetch:\n          min.bytes: 1\n        linger.ms: \"05\"\n",
/// ).unwrap();
/// let props = &c.mq.kafka.consumer.properties;
/// assert_eq!(props.get("fetch.min.bytes"), Some("1"));
/// assert_eq!(props.get("linger.ms"), Some("05"));
///
/// let mut p = mq_core::config::Properties::new();
/// p.insert("acks", "all");
/// assert_eq!(p.iter().collect::<Vec<_>>(), [("acks", "all")]);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Properties(BTreeMap<String, String>);

impl Properties {
    /// An empty map.
    pub fn new() -> Self {
        Properties::default()
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Whether `name` is set.
    pub fn contains_key(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Sets `name` to `value`, returning the previous value.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) -> Option<String> {
        self.0.insert(name.into(), value.into())
    }

    /// Unsets `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    /// The properties, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many properties are set.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Properties {
    /// Secret values (`sasl.password`, `ssl.key.pem`, ...) masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&super::security::DebugProperties(&self.0), f)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Properties {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Properties(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl<K: Into<String>, V: Into<String>> Extend<(K, V)> for Properties {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        self.0
            .extend(iter.into_iter().map(|(k, v)| (k.into(), v.into())));
    }
}

impl IntoIterator for Properties {
    type Item = (String, String);
    type IntoIter = std::collections::btree_map::IntoIter<String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl Serialize for Properties {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut out = Properties::new();
        for (key, value) in d.deserialize_map(RawVisitor)?.into_map()? {
            value.flatten(key, &mut out.0);
        }
        Ok(out)
    }
}

/// A string map whose values may be written as any scalar (`management.metrics.tags`):
/// numbers and booleans become their text, as [`Properties`] values do.
pub(in crate::config) fn string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(d.deserialize_map(RawVisitor)?
        .into_map()?
        .into_iter()
        .map(|(k, v)| (k, v.into_text()))
        .collect())
}

/// Any value as written, keeping the order of map entries.
enum Raw {
    Text(String),
    Empty,
    List(Vec<Raw>),
    Map(Vec<(String, Raw)>),
}

impl Raw {
    fn into_map<E: de::Error>(self) -> Result<Vec<(String, Raw)>, E> {
        match self {
            Raw::Map(entries) => Ok(entries),
            Raw::Empty => Ok(Vec::new()),
            _ => Err(E::invalid_type(
                de::Unexpected::Other("a scalar or a list"),
                &"a map",
            )),
        }
    }

    /// Nested maps join their keys with `.`; later entries win.
    fn flatten(self, prefix: String, out: &mut BTreeMap<String, String>) {
        match self {
            Raw::Map(entries) => {
                for (k, v) in entries {
                    v.flatten(format!("{prefix}.{k}"), out);
                }
            }
            other => {
                out.insert(prefix, other.into_text());
            }
        }
    }

    fn into_text(self) -> String {
        match self {
            Raw::Text(s) => s,
            Raw::Empty | Raw::Map(_) => String::new(),
            Raw::List(items) => items
                .into_iter()
                .map(Raw::into_text)
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number, boolean, list or map")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Text(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Text(v))
    }
    fn visit_char<E: de::Error>(self, v: char) -> Result<Raw, E> {
        Ok(Raw::Text(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Text(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Text(v.to_string()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw::Text(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Text(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
        Ok(Raw::Text(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Text(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Empty)
    }
    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Empty)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(RawVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Raw>()? {
            items.push(item);
        }
        Ok(Raw::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Raw>()? {
            entries.push((k, v));
        }
        Ok(Raw::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_dotted_and_typed_values_flatten_to_strings() {
        let p: Properties = serde_json::from_str(
            r#"{"fetch": {"min": {"bytes": 1}}, "enable.idempotence": true, "ratio": 1.5,
                "hosts": ["a", "b"], "empty": null, "linger.ms": "05"}"#,
        )
        .unwrap();
        assert_eq!(
            p.iter().collect::<Vec<_>>(),
            [
                ("empty", ""),
                ("enable.idempotence", "true"),
                ("fetch.min.bytes", "1"),
                ("hosts", "a,b"),
                ("linger.ms", "05"),
                ("ratio", "1.5"),
            ]
        );
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"empty":"","enable.idempotence":"true","fetch.min.bytes":"1","hosts":"a,b","linger.ms":"05","ratio":"1.5"}"#
        );
        let back: Properties = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn debug_masks_secrets() {
        let p: Properties = [("sasl.password", "hunter2"), ("acks", "all")]
            .into_iter()
            .collect();
        let shown = format!("{p:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("all"), "{shown}");
    }
}
