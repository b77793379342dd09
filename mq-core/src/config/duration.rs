//! Durations as Spring writes them: `500ms`, `1s`, `2m`, or a bare number of milliseconds.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Raw {
    Millis(u64),
    Text(String),
}

pub(super) fn parse(raw: Raw) -> Result<Duration, String> {
    match raw {
        Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
        Raw::Text(s) => humantime::parse_duration(s.trim())
            .map_err(|e| format!("{s:?} is not a duration like 500ms, 1s or 2m ({e})")),
    }
}

pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse(Raw::deserialize(d)?).map_err(serde::de::Error::custom)
}

pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// The same for `Option<Duration>` fields.
pub(super) mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<super::Raw>::deserialize(d)? {
            None => Ok(None),
            Some(raw) => super::parse(raw)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }

    pub(in crate::config) fn serialize<S: Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}
