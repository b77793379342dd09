//! RabbitMQ's failure conventions behind [`FailureRoutes`], as Spring AMQP writes them:
//! dead letters to `<queue>.dlq` through the dead-letter exchange with
//! `RepublishMessageRecoverer`'s `x-exception-*` and `x-original-*` headers, retries through
//! TTL'd retry queues (`x-retry-attempts`; the broker waits, so nothing is held in the
//! consumer), and a dead letter cut down with `mq_dlt-*` headers saying what went.

use super::dead_letter::{self, headers};
use super::{dlq, headers as amqp, retry_queue};
use crate::config::RetryMode;
use crate::failure::info::{truncate, FailureInfo};
use crate::failure::policy::{FailureKind, Source};
use crate::failure::recoverer::Shrink;
use crate::failure::routes::{Arrival, FailureRoutes, Redelivery};
use crate::failure::shrink::{self, ShrinkNames};
use crate::metrics::RABBIT_LISTENER_SECONDS;
use crate::publisher::ReplyAddress;
use crate::record::Headers;
use crate::record::{OutgoingRecord, Record};
use crate::registry::ListenerSpec;
use crate::telemetry::spans::Messaging;

/// Spring AMQP's conventions (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RabbitRoutes;

impl FailureRoutes for RabbitRoutes {
    fn timer(&self) -> &'static str {
        RABBIT_LISTENER_SECONDS
    }

    fn reply_address(&self, record: &Record) -> Option<ReplyAddress> {
        super::reply::reply_address(record)
    }

    fn messaging(&self) -> Messaging {
        Messaging {
            system: "rabbitmq",
            offset: "messaging.rabbitmq.message.delivery_tag",
        }
    }

    /// A message back from a retry queue (retry-topics mode only) came through the default
    /// exchange with `x-retry-attempts`; its queue's TTL was the wait.
    fn arrival(&self, spec: &ListenerSpec, record: &Record) -> Arrival {
        if spec.retry.mode != RetryMode::Topics {
            return Arrival::MAIN;
        }
        let via_default = record.headers.get_str(amqp::RECEIVED_EXCHANGE) == Some("");
        match retry_queue::attempt(&record.headers) {
            Some(attempt) if via_default => Arrival {
                source: Source::RetryTopic { index: attempt - 2 },
                attempt: Some(attempt),
                due_ms: None,
            },
            _ => Arrival::MAIN,
        }
    }

    /// RabbitMQ's own count: a quorum queue's `x-delivery-count`, else 1 for a message
    /// with the `redelivered` flag (a classic queue says no more).
    fn deliveries_before(&self, _spec: &ListenerSpec, record: &Record) -> Redelivery {
        redelivery_of(&record.headers)
    }

    fn dead_letter(
        &self,
        _spec: &ListenerSpec,
        record: &Record,
        _source: Source,
        _kind: FailureKind,
        info: &FailureInfo,
    ) -> OutgoingRecord {
        dead_letter::build(record, info)
    }

    fn reschedule(
        &self,
        _spec: &ListenerSpec,
        record: &Record,
        _source: Source,
        index: u32,
        attempt: u32,
        _due_ms: i64,
        info: &FailureInfo,
    ) -> OutgoingRecord {
        retry_queue::reschedule(record, index, attempt, info)
    }

    fn shrink(&self, full: &OutgoingRecord, level: Shrink, reason: &str) -> OutgoingRecord {
        shrink(full, level, reason)
    }

    fn dead_letter_destinations(&self, spec: &ListenerSpec) -> Vec<String> {
        spec.queues.iter().map(|q| dlq(q)).collect()
    }
}

/// The header a quorum queue counts a message's earlier deliveries in (returned unacked:
/// a closed channel, a `nack`/`reject` with requeue). From RabbitMQ 4.3 it counts only the
/// returns it takes for failures (`basic.reject`, a closed channel), not a
/// `consumer_timeout`.
pub(crate) const DELIVERY_COUNT: &str = "x-delivery-count";

/// RabbitMQ 4.3's count of every return of a message to a quorum queue (what
/// `x-delivery-count` counted before 4.3).
pub(crate) const ACQUIRED_COUNT: &str = "x-acquired-count";

/// What a delivery's headers say of the earlier ones: none without the `redelivered` flag
/// (a count a publisher copied along is not the queue's); with it, the larger of
/// `x-delivery-count` and `x-acquired-count` when the queue counts them, else 1. mq returns
/// a message only by losing its channel (a crash, `consumer_timeout`, a lost connection),
/// so every return is an attempt: on 4.3 `x-acquired-count` keeps counting those that
/// `x-delivery-count` no longer does, and the attempts stay bounded across instances as on
/// earlier versions.
pub(crate) fn redelivery_of(headers: &Headers) -> Redelivery {
    if headers.get_str(amqp::REDELIVERED) != Some("true") {
        return Redelivery::default();
    }
    let count = |name| {
        headers
            .get_as::<i64>(name)
            .map_or(0, |n| n.clamp(0, i64::from(u32::MAX)) as u32)
    };
    let counted = count(DELIVERY_COUNT).max(count(ACQUIRED_COUNT));
    Redelivery {
        before: counted.max(1),
        in_handler: 0,
    }
}

/// Cuts what mq writes (a dead letter, a retry copy, a replay) until `size` says its
/// properties fit `budget` bytes: first mq's own why-headers (`x-exception-stacktrace`,
/// then `x-exception-message`, down to 256 bytes), then the message's own headers, the
/// largest first, never the `x-exception-*`, `x-original-*`, `x-retry-attempts` and `mq_*`
/// ones; what went is named in `mq_dlt-headers-dropped` (how many) and
/// `mq_dlt-headers-dropped-names`. Returns what was cut, for the WARN.
pub(crate) fn fit(
    out: &mut OutgoingRecord,
    budget: usize,
    size: &dyn Fn(&OutgoingRecord) -> usize,
) -> Vec<String> {
    let mut cut = Vec::new();
    let mut now = size(out);
    for (name, floor) in [
        (headers::EXCEPTION_STACKTRACE, 0),
        (headers::EXCEPTION_MESSAGE, 256),
    ] {
        if now <= budget {
            return cut;
        }
        let Some(text) = out.headers.get_str(name).map(str::to_owned) else {
            continue;
        };
        let keep = text.len().saturating_sub(now - budget).max(floor);
        if keep >= text.len() {
            continue;
        }
        if keep == 0 {
            out.headers.remove(name);
        } else {
            out.headers.insert(name, truncate(&text, keep));
        }
        cut.push(format!("{name} cut from {} to {keep} bytes", text.len()));
        now = size(out);
    }
    let kept = |name: &str| {
        name.starts_with("x-exception-")
            || name.starts_with("x-original-")
            || name == retry_queue::ATTEMPTS
            || name.starts_with("mq_")
            || name.starts_with(crate::envelope::attributes::HEADER_PREFIX)
            || name == crate::envelope::attributes::CONTENT_TYPE_HEADER
            || name == crate::envelope::attributes::CONTENT_ENCODING_HEADER
            || name.starts_with("amqp_")
    };
    let mut candidates: Vec<(String, usize)> = out
        .headers
        .iter()
        .filter(|h| !kept(&h.key))
        .map(|h| {
            (
                h.key.clone(),
                h.key.len() + h.value.as_ref().map_or(0, Vec::len),
            )
        })
        .collect();
    candidates.sort_by_key(|c| std::cmp::Reverse(c.1));
    let mut dropped: Vec<String> = Vec::new();
    let mut candidates = candidates.into_iter();
    while now > budget {
        let Some((name, bytes)) = candidates.next() else {
            break;
        };
        out.headers.remove(&name);
        dropped.push(name);
        // An estimate (the encoding adds a few bytes a header); measured again below.
        now = now.saturating_sub(bytes);
        if now <= budget {
            now = size(out);
        }
    }
    if !dropped.is_empty() {
        let names = dropped.join(", ");
        out.headers
            .insert(headers::HEADERS_DROPPED, dropped.len().to_string());
        out.headers
            .insert(headers::HEADERS_DROPPED_NAMES, truncate(&names, 1024));
        cut.push(format!(
            "{} original headers dropped: {}",
            dropped.len(),
            truncate(&names, 256)
        ));
    }
    cut
}

/// RabbitMQ's names for a shrunk dead letter: the body emptied (and `x-exception-message`
/// saying so), then the original headers dropped but the `x-exception-*`, `x-original-*`,
/// `x-retry-attempts` and `mq_*` ones, then the key.
const SHRINK_NAMES: ShrinkNames = ShrinkNames {
    exception_message: headers::EXCEPTION_MESSAGE,
    exception_stacktrace: headers::EXCEPTION_STACKTRACE,
    value_dropped: headers::VALUE_DROPPED,
    headers_dropped: headers::HEADERS_DROPPED,
    key_dropped: headers::KEY_DROPPED,
    value_noun: "body",
    keep: |name| {
        name.starts_with("x-exception-")
            || name.starts_with("x-original-")
            || name == retry_queue::ATTEMPTS
            || name.starts_with("mq_")
    },
};

/// `full` cut down to `level` by RabbitMQ's rules (see [`shrink::shrink`]).
pub(crate) fn shrink(full: &OutgoingRecord, level: Shrink, reason: &str) -> OutgoingRecord {
    shrink::shrink(full, level, reason, &SHRINK_NAMES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_letter() -> OutgoingRecord {
        let mut r = Record::new(
            "task_queue",
            0,
            1,
            Some(b"k".to_vec()),
            Some(vec![b'x'; 500]),
        );
        r.headers.insert("app-header", vec![0u8; 300]);
        r.headers.insert(amqp::RECEIVED_EXCHANGE, "orders");
        let info = FailureInfo {
            exception_type: "E".into(),
            cause_type: None,
            message: "boom".into(),
            trace: "E: boom\n".repeat(400),
        };
        RabbitRoutes.dead_letter(&spec(), &r, Source::Main, FailureKind::Permanent, &info)
    }

    fn spec() -> ListenerSpec {
        crate::registry::tests::spec_for_queue("task_queue")
    }

    #[test]
    fn a_shrunk_amqp_dead_letter_keeps_the_spring_amqp_headers_and_says_what_went() {
        let full = dead_letter();
        let small = RabbitRoutes.shrink(&full, Shrink::WithoutValue, "frame too large");
        assert_eq!(small.value.as_deref(), Some(&b""[..]));
        assert_eq!(
            small.headers.get_str(headers::VALUE_DROPPED),
            Some("500 bytes: frame too large")
        );
        assert!(small
            .headers
            .get_str(headers::EXCEPTION_MESSAGE)
            .unwrap()
            .starts_with("boom [dead letter without its body of 500 bytes"));
        assert!(
            small.headers.get("app-header").is_some(),
            "headers kept at this level"
        );

        let smaller = RabbitRoutes.shrink(&full, Shrink::WithoutHeaders, "frame too large");
        assert_eq!(smaller.headers.get("app-header"), None);
        assert_eq!(smaller.headers.get_str(headers::HEADERS_DROPPED), Some("1"));
        assert_eq!(
            smaller.headers.get_str(headers::ORIGINAL_EXCHANGE),
            Some("orders")
        );
        assert!(
            smaller
                .headers
                .get_str(headers::EXCEPTION_STACKTRACE)
                .unwrap()
                .len()
                <= crate::failure::shrink::SMALL_STACKTRACE
        );
        // Never a Kafka header on an AMQP dead letter.
        assert!(smaller.headers.iter().all(|h| !h.key.starts_with("kafka_")));

        let smallest = RabbitRoutes.shrink(&full, Shrink::WithoutKey, "frame too large");
        assert_eq!(smallest.key, None);
        assert_eq!(smallest.headers.get_str(headers::KEY_DROPPED), Some("1"));
    }

    #[test]
    fn earlier_deliveries_are_read_from_the_flag_and_a_quorum_queues_count() {
        use crate::record::HeaderValue;
        let mut h = Headers::default();
        h.insert_typed(DELIVERY_COUNT, HeaderValue::I64(2));
        h.insert(amqp::REDELIVERED, "false");
        assert_eq!(
            redelivery_of(&h).before,
            0,
            "a copied count is not the queue's"
        );
        h.remove(DELIVERY_COUNT);
        h.insert(amqp::REDELIVERED, "true");
        assert_eq!(redelivery_of(&h).before, 1, "a classic queue: the flag");
        h.insert_typed(DELIVERY_COUNT, HeaderValue::I64(4));
        assert_eq!(redelivery_of(&h).before, 4, "a quorum queue: its count");
        h.insert_typed(DELIVERY_COUNT, HeaderValue::I32(-3));
        assert_eq!(redelivery_of(&h).before, 1);
        // RabbitMQ 4.3: a consumer_timeout return counted in x-acquired-count only.
        h.insert_typed(DELIVERY_COUNT, HeaderValue::I64(1));
        h.insert_typed(ACQUIRED_COUNT, HeaderValue::I64(3));
        assert_eq!(redelivery_of(&h).before, 3, "4.3: every return counts");
        h.insert(amqp::REDELIVERED, "false");
        assert_eq!(
            redelivery_of(&h).before,
            0,
            "a copied count is not the queue's"
        );
        let r = RabbitRoutes.deliveries_before(&spec(), &Record::new("q", 0, 1, None, None));
        assert_eq!(r, Redelivery::default());
    }

    #[test]
    fn fitting_cuts_the_stack_trace_first_then_the_largest_original_headers() {
        let size = |o: &OutgoingRecord| {
            o.headers
                .iter()
                .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
                .sum::<usize>()
        };
        let mut small = dead_letter();
        let full = size(&small);
        assert!(fit(&mut small, full, &size).is_empty(), "fits: untouched");
        let trace = small
            .headers
            .get_str(headers::EXCEPTION_STACKTRACE)
            .unwrap()
            .len();
        let mut cut = dead_letter();
        let what = fit(&mut cut, full - 1000, &size);
        assert_eq!(what.len(), 1, "{what:?}");
        assert!(
            what[0].starts_with("x-exception-stacktrace cut"),
            "{what:?}"
        );
        assert_eq!(
            cut.headers
                .get_str(headers::EXCEPTION_STACKTRACE)
                .unwrap()
                .len(),
            trace - 1000
        );
        assert!(cut.headers.get("app-header").is_some(), "originals kept");
        // Originals alone over the budget: the largest goes, and is named.
        let mut r = Record::new("task_queue", 0, 1, None, Some(b"{}".to_vec()));
        r.headers.insert("big", vec![b'b'; 5000]);
        r.headers.insert("small", "s");
        r.headers.insert("ce_id", "1");
        let info = FailureInfo {
            exception_type: "E".into(),
            cause_type: None,
            message: "boom".into(),
            trace: "E: boom".into(),
        };
        let mut out =
            RabbitRoutes.dead_letter(&spec(), &r, Source::Main, FailureKind::Permanent, &info);
        let what = fit(&mut out, 1000, &size);
        assert!(size(&out) <= 1000, "{what:?}");
        assert_eq!(out.headers.get("big"), None);
        assert_eq!(out.headers.get_str("small"), Some("s"));
        assert_eq!(out.headers.get_str("ce_id"), Some("1"));
        assert_eq!(out.headers.get_str(headers::HEADERS_DROPPED), Some("1"));
        assert_eq!(
            out.headers.get_str(headers::HEADERS_DROPPED_NAMES),
            Some("big")
        );
        assert_eq!(
            out.headers.get_str(headers::EXCEPTION_MESSAGE),
            Some("boom")
        );
    }

    #[test]
    fn the_dead_letter_queue_is_the_queues_own() {
        assert_eq!(
            RabbitRoutes.dead_letter_destinations(&spec()),
            vec!["task_queue.dlq".to_owned()]
        );
        assert_eq!(RabbitRoutes.timer(), RABBIT_LISTENER_SECONDS);
    }
}
