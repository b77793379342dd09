//! Durations as Spring Boot reads them (`DurationStyle`): `500ms`, `10s`, `1m`, `2h`, `1d`,
//! `PT5S` (ISO-8601), or a plain number of milliseconds.
//!
//! Units are case-insensitive as in Spring (`10S`, `2H`, `500MS`), with one exception: `M`
//! alone is refused. Spring reads `1M` as a minute while other Rust parsers (humantime) read it
//! as a month, so a value that means one thing to half the readers is an error asking for
//! `1m`. ISO-8601 durations take days, hours, minutes and (fractional) seconds, as Java's
//! `Duration.parse`; years, months and weeks are refused.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// The forms the error messages list.
pub(super) const ACCEPTED: &str =
    "a number of milliseconds, or a number with a unit ns, us, ms, s, m, h, d (500ms, 10s, 1m), or ISO-8601 (PT5S)";

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Raw {
    Millis(u64),
    Text(String),
}

/// Parses a duration as Spring Boot does: a number of milliseconds, a number with a unit
/// (`ns`, `us`, `ms`, `s`, `m`, `h`, `d`; case-insensitive, but `M` alone is refused as
/// ambiguous), or ISO-8601 (`PT5S`, `P1DT2H`). Use it for durations of your own settings.
///
/// ```
/// use std::time::Duration;
/// use mq_core::config::parse_duration;
/// assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
/// assert_eq!(parse_duration("PT0.5S"), Ok(Duration::from_millis(500)));
/// assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
/// assert!(parse_duration("1M").is_err()); // a month to some, a minute to Spring
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let invalid = |why: &str| format!("{text:?} is not a duration{why}: use {ACCEPTED}");
    if s.is_empty() {
        return Err(invalid(""));
    }
    if s.starts_with(['P', 'p']) {
        return iso8601(s).ok_or_else(|| {
            invalid(" (ISO-8601 takes days, hours, minutes and seconds: P1DT2H3M4.5S)")
        });
    }
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return Err(invalid(""));
    }
    let amount: u64 = s[..digits].parse().map_err(|_| invalid(" (too large)"))?;
    let unit = &s[digits..];
    if unit == "M" {
        return Err(invalid(
            " (\"M\" is ambiguous: minutes in Spring, months elsewhere; write m for minutes)",
        ));
    }
    let per_unit = match unit.to_ascii_lowercase().as_str() {
        "" | "ms" => Duration::from_millis(1),
        "ns" => Duration::from_nanos(1),
        "us" => Duration::from_micros(1),
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "d" => Duration::from_secs(86_400),
        _ => return Err(invalid(&format!(" (unknown unit {unit:?})"))),
    };
    u32::try_from(amount)
        .ok()
        .and_then(|n| per_unit.checked_mul(n))
        .ok_or_else(|| invalid(" (too large)"))
}

/// `PnDTnHnMn.nS`, case-insensitive, no sign (a negative timeout means nothing here).
fn iso8601(s: &str) -> Option<Duration> {
    let upper = s.to_ascii_uppercase();
    let rest = upper.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total = Duration::ZERO;
    let mut any = false;
    if !date.is_empty() {
        let days: u64 = date.strip_suffix('D')?.parse().ok()?;
        total = total.checked_add(Duration::from_secs(days.checked_mul(86_400)?))?;
        any = true;
    }
    if let Some(mut time) = time {
        if time.is_empty() {
            return None;
        }
        for (unit, secs) in [('H', 3600.0), ('M', 60.0), ('S', 1.0)] {
            let Some(end) = time.find(unit) else { continue };
            let number = &time[..end];
            let fractional = unit == 'S';
            let value: f64 = if fractional {
                if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
                    return None;
                }
                number.parse().ok()?
            } else {
                if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                number.parse::<u64>().ok()? as f64
            };
            total = total.checked_add(Duration::try_from_secs_f64(value * secs).ok()?)?;
            time = &time[end + 1..];
            any = true;
        }
        if !time.is_empty() {
            return None;
        }
    }
    any.then_some(total)
}

pub(super) fn parse(raw: Raw) -> Result<Duration, String> {
    match raw {
        Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
        Raw::Text(s) => parse_duration(&s),
    }
}

pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse(Raw::deserialize(d)?).map_err(serde::de::Error::custom)
}

pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// The shortest Spring spelling of `d` that reads back as `d` (`1m`, `250ms`, `1500us`).
pub(crate) fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    for (unit, per) in [
        ("d", 86_400_000_000_000u128),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if nanos > 0 && nanos % per == 0 {
            return format!("{}{unit}", nanos / per);
        }
    }
    format!("{nanos}ns")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spring_spellings_with_spring_meaning() {
        let ok = |s: &str| parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("1m"), Duration::from_secs(60));
        assert_eq!(ok("2h"), Duration::from_secs(7200));
        assert_eq!(ok("1d"), Duration::from_secs(86_400));
        assert_eq!(ok("250"), Duration::from_millis(250));
        assert_eq!(ok("15us"), Duration::from_micros(15));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        // Units are case-insensitive, as Spring's DurationStyle.
        assert_eq!(ok("10S"), Duration::from_secs(10));
        assert_eq!(ok("500MS"), Duration::from_millis(500));
        assert_eq!(ok("2H"), Duration::from_secs(7200));
        // ISO-8601, as java.time.Duration.parse.
        assert_eq!(ok("PT5S"), Duration::from_secs(5));
        assert_eq!(ok("pt0.5s"), Duration::from_millis(500));
        assert_eq!(ok("PT1M"), Duration::from_secs(60));
        assert_eq!(ok("PT1H30M"), Duration::from_secs(5400));
        assert_eq!(ok("P1DT2S"), Duration::from_secs(86_402));
    }

    #[test]
    fn months_and_ambiguous_forms_are_refused() {
        for bad in [
            "1M", "M", "P1M", "P1Y", "P1W", "PT", "P", "1.5s", "-1s", "1 month", "10x", "s",
            "1m30s", "",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains(ACCEPTED), "{bad}: {err}");
        }
        assert!(parse_duration("1M")
            .unwrap_err()
            .contains("write m for minutes"));
    }

    #[test]
    fn formatting_reads_back() {
        for d in [
            Duration::from_secs(60),
            Duration::from_millis(1500),
            Duration::from_secs(86_400 * 2),
            Duration::from_nanos(3),
            Duration::ZERO,
        ] {
            assert_eq!(parse_duration(&format(d)), Ok(d), "{}", format(d));
        }
        assert_eq!(format(Duration::from_secs(90)), "90s");
    }
}
