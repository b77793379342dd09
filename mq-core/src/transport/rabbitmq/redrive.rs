//! What `mq dlt-replay amqp:///<queue>.dlq` does with each dead letter of a queue
//! listener, decided without a broker (the RabbitMQ side of
//! [`failure::redrive`](crate::failure::redrive)).
//!
//! A dead letter goes back to the queue it came from, `<queue>` (through the default
//! exchange: only that listener's queue gets it again, not every queue bound to the
//! exchange it was first published to), without the why-headers (`x-exception-*`,
//! `x-original-*`), RabbitMQ's `x-death`, `x-retry-attempts` and `mq_dlt-*`, counting its
//! replays in `mq_replay-count`. The filters are those of the Kafka replay: `--exception`
//! matches the error type at the head of `x-exception-stacktrace` (or the message), `--key`
//! the routing key it was first published with, `--since`/`--until` the time it was
//! dead-lettered (`mq_dlt-timestamp`, seconds; the `timestamp` property of a dead letter
//! written before mq kept the message's own). The message keeps its basic properties. A
//! dead letter replayed
//! `max_replays` times goes to `<queue>.dlq.parking` instead.

use super::dead_letter::headers as why;
use super::dead_letter::headers::VALUE_DROPPED;
use super::destination::Exchange;
use crate::failure::redrive::{ReplayOptions, Step, REPLAY_COUNT};
use crate::record::{OutgoingRecord, Record};

/// The queue whose dead-letter queue `dlq` is: `task_queue.dlq` → `task_queue`.
pub fn source_queue(dlq: &str) -> Option<&str> {
    dlq.strip_suffix(".dlq").filter(|q| !q.is_empty())
}

/// The parking queue of `dlq`: `<dlq>.parking`.
pub fn parking_queue(dlq: &str) -> String {
    format!("{dlq}.parking")
}

/// Decides what to do with `record`, taken from `dlq` (a `<queue>.dlq`).
pub fn plan(dlq: &str, record: &Record, opts: &ReplayOptions) -> Step {
    let h = &record.headers;
    if let Some(wanted) = &opts.exception {
        let matches = [why::EXCEPTION_STACKTRACE, why::EXCEPTION_MESSAGE]
            .iter()
            .any(|name| h.get_str(name).is_some_and(|v| v.contains(wanted.as_str())));
        if !matches {
            return Step::Skip("exception type filtered out");
        }
    }
    if let Some(key) = &opts.key {
        if h.get(why::ORIGINAL_ROUTING_KEY) != Some(key.as_slice()) {
            return Step::Skip("key filtered out");
        }
    }
    // When it was dead-lettered; a dead letter older than that header, its timestamp.
    let at = h
        .get_as::<u64>(why::DEAD_LETTERED_AT)
        .and_then(|s| i64::try_from(s).ok())
        .map(|s| s.saturating_mul(1000))
        .or(record.timestamp)
        .unwrap_or(i64::MIN);
    if opts.since_ms.is_some_and(|s| at < s) || opts.until_ms.is_some_and(|u| at >= u) {
        return Step::Skip("time filtered out");
    }
    if h.get(VALUE_DROPPED).is_some() {
        return Step::Skip("stored without its value");
    }
    let count = h
        .get_str(REPLAY_COUNT)
        .and_then(|c| c.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let mut headers = h.clone();
    headers.retain(|name| !super::headers::is_delivery(name));
    let value = record.value.clone().unwrap_or_default();
    if opts.max_replays > 0 && count >= opts.max_replays {
        let to = Exchange::destination("", &parking_queue(dlq));
        let mut parked = OutgoingRecord::new(to, record.key.clone(), value);
        parked.headers = headers;
        return Step::Park(parked);
    }
    headers.retain(|name| {
        !(name.starts_with("x-exception-")
            || name.starts_with("x-original-")
            || name == "x-death"
            || name == super::retry_queue::ATTEMPTS
            || name.starts_with("mq_dlt-"))
    });
    headers.insert(REPLAY_COUNT, count.saturating_add(1).to_string());
    let queue = source_queue(dlq).unwrap_or(dlq);
    let mut out = OutgoingRecord::new(Exchange::destination("", queue), record.key.clone(), value);
    out.headers = headers;
    Step::Replay(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead(stack: &str, rk: &str, at_ms: i64, replays: Option<&str>) -> Record {
        let mut r = Record::new("q.dlq", 0, 1, Some(b"q".to_vec()), Some(b"{}".to_vec()));
        r.timestamp = Some(at_ms);
        r.headers.insert("app", "kept");
        r.headers.insert(why::EXCEPTION_STACKTRACE, stack);
        r.headers.insert(why::EXCEPTION_MESSAGE, "m");
        r.headers.insert(why::ORIGINAL_ROUTING_KEY, rk);
        r.headers.insert("x-death", "[..]");
        r.headers
            .insert(crate::transport::rabbitmq::retry_queue::ATTEMPTS, "3");
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
        let json = "mq_core::envelope::DecodeError::Json: expected value";
        let by_type = ReplayOptions {
            exception: Some("DecodeError".into()),
            ..Default::default()
        };
        let by_key = ReplayOptions {
            key: Some(b"a".to_vec()),
            ..Default::default()
        };
        let by_time = ReplayOptions {
            since_ms: Some(100_000),
            until_ms: Some(200_000),
            ..Default::default()
        };
        let none = ReplayOptions::default();
        #[rustfmt::skip]
        let table: &[(Record, &ReplayOptions, &str)] = &[
            (dead(json, "a", 150_000, None), &none, "replay"),
            (dead(json, "a", 150_000, None), &by_type, "replay"),
            (dead("app::Error: x", "a", 150_000, None), &by_type, "exception type filtered out"),
            (dead(json, "b", 150_000, None), &by_key, "key filtered out"),
            (dead(json, "a", 150_000, None), &by_time, "replay"),
            (dead(json, "a", 200_000, None), &by_time, "time filtered out"),
            (dead(json, "a", 99_000, None), &by_time, "time filtered out"),
            (dead(json, "a", 1, Some("2")), &none, "replay"),
            (dead(json, "a", 1, Some("3")), &none, "park"),
            (dead(json, "a", 1, Some("x")), &none, "replay"),
        ];
        for (record, opts, want) in table {
            assert_eq!(
                kind(&plan("q.dlq", record, opts)),
                *want,
                "{record:?} {opts:?}"
            );
        }
        let Step::Replay(out) = plan("q.dlq", &dead(json, "a", 1, Some("2")), &none) else {
            panic!()
        };
        assert_eq!(out.topic, "amqp:///q");
        assert_eq!(out.headers.get_str("app"), Some("kept"));
        assert_eq!(out.headers.get_str(REPLAY_COUNT), Some("3"));
        for gone in [
            why::EXCEPTION_STACKTRACE,
            why::ORIGINAL_ROUTING_KEY,
            "x-death",
            "x-retry-attempts",
        ] {
            assert!(out.headers.get(gone).is_none(), "{gone}");
        }
        let Step::Park(parked) = plan("q.dlq", &dead(json, "a", 1, Some("3")), &none) else {
            panic!()
        };
        assert_eq!(parked.topic, "amqp:///q.dlq.parking");
        assert_eq!(
            parked.headers.get_str(why::EXCEPTION_STACKTRACE),
            Some(json)
        );
        let mut dropped = dead(json, "a", 1, None);
        dropped.headers.insert(VALUE_DROPPED, "5 bytes");
        assert_eq!(
            plan("q.dlq", &dropped, &none),
            Step::Skip("stored without its value")
        );
    }
}

/// The examples of this module's items, run as unit tests (the items are not public).
#[cfg(test)]
mod examples {
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn source_queue() {
        use crate::transport::rabbitmq::redrive::source_queue;
        assert_eq!(source_queue("task_queue.dlq"), Some("task_queue"));
        assert_eq!(source_queue("task_queue"), None);
        assert_eq!(source_queue(".dlq"), None);
    }

    #[test]
    fn parking_queue() {
        assert_eq!(
            crate::transport::rabbitmq::redrive::parking_queue("q.dlq"),
            "q.dlq.parking"
        );
    }

    #[test]
    fn plan() {
        use crate::failure::redrive::{ReplayOptions, Step};
        use crate::record::Record;
        use crate::transport::rabbitmq::redrive::plan;
        let mut r = Record::new("q.dlq", 0, 1, Some(b"q".to_vec()), Some(b"{}".to_vec()));
        r.headers
            .insert("x-exception-stacktrace", "app::Timeout: slow");
        r.headers.insert("x-original-routingKey", "job.new");
        r.headers.insert("amqp_deliveryTag", "1");
        let Step::Replay(out) = plan("q.dlq", &r, &ReplayOptions::default()) else {
            panic!()
        };
        assert_eq!(out.topic, "amqp:///q");
        assert!(out.headers.get("x-exception-stacktrace").is_none());
        assert!(out.headers.get("amqp_deliveryTag").is_none());
        assert_eq!(out.headers.get_str("mq_replay-count"), Some("1"));
        let other = ReplayOptions {
            exception: Some("Decode".into()),
            ..Default::default()
        };
        assert_eq!(
            plan("q.dlq", &r, &other),
            Step::Skip("exception type filtered out")
        );
    }
}
