//! The `time` attribute on the wire: an RFC 3339 timestamp, read with chrono's strict RFC
//! 3339 parser, the layout every CloudEvents SDK writes (`2026-11-30T14:12:00.123456Z`),
//! and only when that fails with the relaxed parser chrono's own `Deserialize` uses (so
//! what was accepted before still is, with the same errors).
//!
//! The relaxed parser is a general format interpreter: it took about 6% of the CPU a
//! consumer spends per record (BENCHMARKS.md round 6); the strict one reads the same
//! text in a fraction of that.

use std::fmt;

use chrono::{DateTime, FixedOffset, Utc};
use serde::de::{self, Deserializer, Visitor};

/// `#[serde(deserialize_with)]` of [`Event::time`](super::Event::time): `null` or absent is
/// `None`.
pub(super) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    deserializer.deserialize_option(TimeVisitor)
}

/// Parses `text` as RFC 3339, strictly first.
pub(super) fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    let time = match DateTime::parse_from_rfc3339(text) {
        Ok(time) => time,
        Err(_) => text.parse::<DateTime<FixedOffset>>()?,
    };
    Ok(time.with_timezone(&Utc))
}

struct TimeVisitor;

impl<'de> Visitor<'de> for TimeVisitor {
    type Value = Option<DateTime<Utc>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 timestamp")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        parse(text).map(Some).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What chrono's own `Deserialize` makes of `text`.
    fn chrono_reads(text: &str) -> Result<DateTime<Utc>, String> {
        serde_json::from_value::<DateTime<Utc>>(serde_json::Value::String(text.into()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn reads_what_chrono_reads_and_refuses_what_it_refuses() {
        for text in [
            "2026-11-30T14:12:00Z",
            "2026-11-30T14:12:00.123456789Z",
            "2026-11-30T14:12:00.1+02:00",
            "2026-11-30t14:12:00z",
            "2026-11-30 14:12:00-05:30",
            "2026-11-30T14:12:00+0200",
            "2026-11-30T14:12:60Z",
            "1969-12-31T23:59:59.999Z",
            "2026-11-30T14:12:00",
            "2026-13-30T14:12:00Z",
            "2026-11-30",
            "",
            "not a time",
        ] {
            let ours = parse(text).map_err(|e| e.to_string());
            let theirs = chrono_reads(text).map_err(|e| e.split(" at ").next().unwrap().to_owned());
            assert_eq!(ours, theirs, "{text:?}");
        }
    }

    #[test]
    fn null_and_absent_are_none() {
        #[derive(serde::Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "deserialize")]
            time: Option<DateTime<Utc>>,
        }
        let t: T = serde_json::from_str(r#"{"time":null}"#).unwrap();
        assert_eq!(t.time, None);
        let t: T = serde_json::from_str("{}").unwrap();
        assert_eq!(t.time, None);
        let t: T = serde_json::from_str(r#"{"time":"2026-11-30T14:12:00\u005a"}"#).unwrap();
        assert_eq!(t.time, Some(parse("2026-11-30T14:12:00Z").unwrap()));
        let e = serde_json::from_str::<T>(r#"{"time":5}"#).err().unwrap();
        assert!(e.to_string().contains("RFC 3339"), "{e}");
    }
}
