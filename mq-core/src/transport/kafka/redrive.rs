//! Redrive on Kafka: what `mq dlt-replay` does with each dead letter, decided without a
//! broker.
//!
//! A dead letter is replayed to the topic it came from (its `kafka_dlt-original-topic`, or
//! `kafka_original-topic` as Spring's non-blocking retries write it; without a `-retry-N`
//! suffix), without the dead-letter headers of either dialect, `mq_dlt-*` and
//! `retry_topic-*`, counting its replays in `mq_replay-count`. Filters (exception type, key,
//! time range) pick the records; one that was already replayed `max_replays` times goes to
//! the parking topic `<dlt-topic>-parking` instead of looping through replay once more.
//! One that cannot be replayed (no original topic, stored without its value, or naming the
//! dead-letter topic itself) is unreplayable, with the reason.

use super::dead_letter::headers as dlt;
use super::{dlt_dialect, retry_topic};
use crate::failure::redrive::{ReplayOptions, Step, REPLAY_COUNT};
use crate::record::{Headers, OutgoingRecord, Record};

/// The name of the parking topic of `dlt_topic`.
pub fn parking_topic(dlt_topic: &str) -> String {
    format!("{dlt_topic}-parking")
}

/// Decides what to do with `record`, read from `dlt_topic`. `Err` says why it cannot be
/// replayed: it is not a dead letter (no readable original topic in either dialect), it was
/// stored without its value, or it names `dlt_topic` itself as its origin.
pub fn plan(dlt_topic: &str, record: &Record, opts: &ReplayOptions) -> Result<Step, String> {
    let h = &record.headers;
    let original = dlt_dialect::original_topic(h)?;
    if let Some(wanted) = &opts.exception {
        let fqcn = dlt_dialect::exception_fqcn(h).unwrap_or_default();
        if !fqcn.contains(wanted.as_str()) {
            return Ok(Step::Skip("exception type filtered out"));
        }
    }
    if opts.key.is_some() && record.key != opts.key {
        return Ok(Step::Skip("key filtered out"));
    }
    let at = record.timestamp.unwrap_or(i64::MIN);
    if opts.since_ms.is_some_and(|s| at < s) || opts.until_ms.is_some_and(|u| at >= u) {
        return Ok(Step::Skip("time filtered out"));
    }
    if let Some(why) = h.get(dlt::VALUE_DROPPED) {
        let why = String::from_utf8_lossy(why);
        return Err(format!("stored without its value ({why})"));
    }
    let target = retry_topic::base_name(original);
    if target == dlt_topic {
        return Err(format!("its original topic is {dlt_topic} itself"));
    }
    let count = h
        .get_str(REPLAY_COUNT)
        .and_then(|c| c.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if opts.max_replays > 0 && count >= opts.max_replays {
        let mut parked = OutgoingRecord::new(parking_topic(dlt_topic), record.key.clone(), vec![]);
        parked.value = record.value.clone();
        parked.headers = h.clone();
        return Ok(Step::Park(parked));
    }
    let mut headers: Headers = h.clone();
    headers.retain(|name| {
        !(dlt_dialect::is_dead_letter_header(name)
            || name.starts_with("mq_dlt-")
            || name.starts_with(retry_topic::PREFIX))
    });
    headers.insert(REPLAY_COUNT, (count.saturating_add(1)).to_string());
    Ok(Step::Replay(OutgoingRecord {
        topic: target.to_owned(),
        partition: None,
        key: record.key.clone(),
        value: record.value.clone(),
        headers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead(fqcn: &str, key: &[u8], at: i64, replays: Option<&str>) -> Record {
        let mut r = Record::new("o-dlt", 0, 9, Some(key.to_vec()), Some(b"{}".to_vec()));
        r.timestamp = Some(at);
        r.headers.insert("app", "kept");
        r.headers.insert(dlt::ORIGINAL_TOPIC, "o");
        r.headers.insert(dlt::EXCEPTION_FQCN, fqcn);
        r.headers.insert("retry_topic-attempts", [0u8, 0, 0, 3]);
        if let Some(n) = replays {
            r.headers.insert(REPLAY_COUNT, n);
        }
        r
    }

    fn kind(step: &Step) -> &'static str {
        match step {
            Step::Replay(_) => "replay",
            Step::Park(_) => "park",
            Step::Skip(why) => why,
        }
    }

    #[test]
    fn filters_guard_and_stripping() {
        let json = "mq_core::envelope::DecodeError::Json";
        let by_type = ReplayOptions {
            exception: Some("DecodeError".into()),
            ..Default::default()
        };
        let by_key = ReplayOptions {
            key: Some(b"a".to_vec()),
            ..Default::default()
        };
        let by_time = ReplayOptions {
            since_ms: Some(100),
            until_ms: Some(200),
            ..Default::default()
        };
        let none = ReplayOptions::default();
        #[rustfmt::skip]
        let table: &[(Record, &ReplayOptions, &str)] = &[
            (dead(json, b"a", 150, None), &none, "replay"),
            (dead(json, b"a", 150, None), &by_type, "replay"),
            (dead("app::Error", b"a", 150, None), &by_type, "exception type filtered out"),
            (dead(json, b"b", 150, None), &by_key, "key filtered out"),
            (dead(json, b"a", 150, None), &by_time, "replay"),
            (dead(json, b"a", 200, None), &by_time, "time filtered out"),
            (dead(json, b"a", 99, None), &by_time, "time filtered out"),
            (dead(json, b"a", 150, Some("2")), &none, "replay"),
            (dead(json, b"a", 150, Some("3")), &none, "park"),
            (dead(json, b"a", 150, Some("not a number")), &none, "replay"),
        ];
        for (record, opts, want) in table {
            let step = plan("o-dlt", record, opts).unwrap();
            assert_eq!(kind(&step), *want, "{record:?} {opts:?}");
        }
        let Step::Replay(out) = plan("o-dlt", &dead(json, b"a", 1, Some("2")), &none).unwrap()
        else {
            panic!()
        };
        assert_eq!(out.topic, "o");
        assert_eq!(out.headers.get_str("app"), Some("kept"));
        assert_eq!(out.headers.get_str(REPLAY_COUNT), Some("3"));
        assert!(out.headers.get(dlt::EXCEPTION_FQCN).is_none());
        assert!(out.headers.get("retry_topic-attempts").is_none());
        let Step::Park(parked) = plan("o-dlt", &dead(json, b"a", 1, Some("3")), &none).unwrap()
        else {
            panic!()
        };
        assert_eq!(parked.topic, "o-dlt-parking");
        assert_eq!(parked.headers.get_str(dlt::EXCEPTION_FQCN), Some(json));
    }

    #[test]
    fn unreplayable_records_say_why() {
        let none = ReplayOptions::default();
        let r = Record::new("o-dlt", 0, 0, None, Some(b"x".to_vec()));
        assert!(plan("o-dlt", &r, &none)
            .unwrap_err()
            .contains("not a dead letter"));
        let mut d = dead("E", b"k", 0, None);
        d.headers.insert(dlt::VALUE_DROPPED, "5 bytes: too large");
        assert_eq!(
            plan("o-dlt", &d, &none).unwrap_err(),
            "stored without its value (5 bytes: too large)"
        );
        let mut looping = dead("E", b"k", 0, None);
        looping.headers.insert(dlt::ORIGINAL_TOPIC, "o-dlt");
        assert!(plan("o-dlt", &looping, &none)
            .unwrap_err()
            .contains("itself"));
    }

    #[test]
    fn spring_non_blocking_dead_letters_are_replayed_without_their_headers() {
        let mut r = Record::new(
            "orders.DLT",
            0,
            3,
            Some(b"k".to_vec()),
            Some(b"{}".to_vec()),
        );
        r.headers.insert("kafka_original-topic", "orders-retry-1");
        r.headers
            .insert("kafka_original-partition", 0u32.to_be_bytes());
        r.headers
            .insert("kafka_exception-fqcn", "java.lang.IllegalStateException");
        r.headers.insert("kafka_exception-stacktrace", "at x.y");
        r.headers.insert("app", "kept");
        let by_type = ReplayOptions {
            exception: Some("IllegalState".into()),
            ..Default::default()
        };
        let Step::Replay(out) = plan("orders.DLT", &r, &by_type).unwrap() else {
            panic!()
        };
        assert_eq!(out.topic, "orders");
        let names: Vec<&str> = out.headers.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(names, ["app", REPLAY_COUNT]);
    }
}

/// The examples of this module's items, run as unit tests (the items are not public).
#[cfg(test)]
mod examples {
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn parking_topic() {
        assert_eq!(
            crate::transport::kafka::redrive::parking_topic("orders-dlt"),
            "orders-dlt-parking"
        );
    }

    #[test]
    fn plan() {
        use crate::failure::redrive::{ReplayOptions, Step};
        use crate::record::Record;
        use crate::transport::kafka::redrive::plan;
        let mut r = Record::new("orders-dlt", 0, 0, Some(b"k".to_vec()), None);
        r.headers
            .insert("kafka_dlt-original-topic", "orders-retry-1");
        let Ok(Step::Replay(out)) = plan("orders-dlt", &r, &ReplayOptions::default()) else {
            panic!()
        };
        assert_eq!((out.topic.as_str(), out.value.as_deref()), ("orders", None));
        assert_eq!(out.headers.get_str("mq_replay-count"), Some("1"));
    }
}
