//! Kafka's failure conventions behind [`FailureRoutes`], as Spring Kafka writes them:
//! retry topics `<topic>-retry-<n>` with `retry_topic-*` headers (a record there is held
//! until its due time), dead-letter topics `<topic><suffix>` (or a route of
//! `mq.listener.dlt.routes`) with `kafka_dlt-*` headers naming the record on the source
//! topic, and a dead letter cut down with `mq_dlt-*` headers saying what went.

use super::dead_letter::{self, headers};
use super::retry_topic;
use super::spring_headers::{Original, RetryHeaders};
use crate::config::RetryMode;
use crate::failure::info::FailureInfo;
use crate::failure::policy::{self, FailureKind, Source};
use crate::failure::recoverer::Shrink;
use crate::failure::routes::{Arrival, FailureRoutes};
use crate::failure::shrink::{self, ShrinkNames};
use crate::metrics::LISTENER_SECONDS;
use crate::publisher::ReplyAddress;
use crate::record::{OutgoingRecord, Record};
use crate::registry::ListenerSpec;
use crate::telemetry::spans::Messaging;

/// Spring Kafka's conventions (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KafkaRoutes;

impl KafkaRoutes {
    /// The record on the source topic: `record` itself, or, for a record read from a retry
    /// topic, the one its `kafka_dlt-original-*` headers name (Spring keeps them across hops).
    fn original(record: &Record, source: Source) -> Original {
        match source {
            Source::RetryTopic { .. } => {
                Original::read(&record.headers).unwrap_or_else(|| Original::of(record))
            }
            Source::Main => Original::of(record),
        }
    }
}

impl FailureRoutes for KafkaRoutes {
    fn timer(&self) -> &'static str {
        LISTENER_SECONDS
    }

    fn reply_address(&self, record: &Record) -> Option<ReplyAddress> {
        super::reply::reply_address(record)
    }

    fn messaging(&self) -> Messaging {
        Messaging {
            system: "kafka",
            offset: "messaging.kafka.offset",
        }
    }

    /// The listener's own topic, or (only in retry-topics mode: elsewhere a `-retry-N`
    /// name is just a name) one of its retry topics, whose `retry_topic-*` headers say the
    /// attempt and the due time.
    fn arrival(&self, spec: &ListenerSpec, record: &Record) -> Arrival {
        if spec.retry.mode != RetryMode::Topics {
            return Arrival::MAIN;
        }
        let base = retry_topic::source_of(&record.topic, &spec.topics);
        match retry_topic::index_of(&record.topic) {
            Some(index) if base.len() < record.topic.len() => {
                let headers = RetryHeaders::read(&record.headers);
                Arrival {
                    source: Source::RetryTopic { index },
                    attempt: headers.attempt,
                    due_ms: headers.due_ms,
                }
            }
            _ => Arrival::MAIN,
        }
    }

    fn dead_letter(
        &self,
        spec: &ListenerSpec,
        record: &Record,
        source: Source,
        kind: FailureKind,
        info: &FailureInfo,
    ) -> OutgoingRecord {
        let base = retry_topic::source_of(&record.topic, &spec.topics);
        let dlt = match policy::dlt_route(&spec.dlt.routes, kind, &info.exception_type) {
            Some(suffix) => format!("{base}{suffix}"),
            None => spec.dlt_topic(base),
        };
        let original = Self::original(record, source);
        dead_letter::build_from(record, &dlt, &spec.group, info, &original)
    }

    fn reschedule(
        &self,
        spec: &ListenerSpec,
        record: &Record,
        source: Source,
        index: u32,
        attempt: u32,
        due_ms: i64,
        info: &FailureInfo,
    ) -> OutgoingRecord {
        let base = retry_topic::source_of(&record.topic, &spec.topics);
        let target = retry_topic::name(base, index);
        let original = Self::original(record, source);
        retry_topic::reschedule(
            record,
            &target,
            attempt,
            due_ms,
            &spec.group,
            info,
            &original,
        )
    }

    fn shrink(&self, full: &OutgoingRecord, level: Shrink, reason: &str) -> OutgoingRecord {
        shrink(full, level, reason)
    }

    fn dead_letter_destinations(&self, spec: &ListenerSpec) -> Vec<String> {
        if !spec.dlt.enabled {
            return Vec::new();
        }
        spec.topics.iter().map(|t| spec.dlt_topic(t)).collect()
    }
}

/// Kafka's names for a shrunk dead letter: it keeps the `kafka_dlt-*`, `retry_topic-*` and
/// `mq_*` headers.
const SHRINK_NAMES: ShrinkNames = ShrinkNames {
    exception_message: headers::EXCEPTION_MESSAGE,
    exception_stacktrace: headers::EXCEPTION_STACKTRACE,
    value_dropped: headers::VALUE_DROPPED,
    headers_dropped: headers::HEADERS_DROPPED,
    key_dropped: headers::KEY_DROPPED,
    value_noun: "value",
    keep: |name| {
        name.starts_with(headers::PREFIX)
            || name.starts_with(retry_topic::PREFIX)
            || name.starts_with("mq_")
    },
};

/// `full` cut down to `level` by Kafka's rules (see [`shrink::shrink`]).
pub(crate) fn shrink(full: &OutgoingRecord, level: Shrink, reason: &str) -> OutgoingRecord {
    shrink::shrink(full, level, reason, &SHRINK_NAMES)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use futures::future::BoxFuture;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::failure::recoverer::{publish, Outcome};
    use crate::publisher::{Delivery, PublishError, PublishErrorKind, Publisher, RecordSink};

    /// Refuses records larger than `limit` bytes, like a broker's `max.message.bytes`.
    struct SizeLimited {
        limit: usize,
        kept: Mutex<Vec<OutgoingRecord>>,
        refused: Mutex<u32>,
    }

    impl RecordSink for Arc<SizeLimited> {
        fn send(&self, r: OutgoingRecord) -> BoxFuture<'static, Result<Delivery, PublishError>> {
            let result = if r.size() > self.limit {
                *self.refused.lock().unwrap() += 1;
                Err(PublishError::Broker {
                    topic: r.topic.clone(),
                    reason: "Broker: Message size too large".into(),
                    kind: PublishErrorKind::RecordRejected,
                })
            } else {
                let topic = r.topic.clone();
                self.kept.lock().unwrap().push(r);
                Ok(Delivery {
                    topic,
                    partition: 0,
                    offset: 0,
                })
            };
            Box::pin(async move { result })
        }
    }

    fn sink(limit: usize) -> (Arc<SizeLimited>, Publisher) {
        let s = Arc::new(SizeLimited {
            limit,
            kept: Mutex::default(),
            refused: Mutex::default(),
        });
        let p = Publisher::new(Arc::new(s.clone()), "/t", Default::default());
        (s, p)
    }

    #[tokio::test]
    async fn an_oversized_dead_letter_goes_without_its_value_at_once() {
        // The record: 1,040,000 bytes of `x`, not JSON; the broker takes 1,000,000.
        let (s, p) = sink(1_000_000);
        let mut out = OutgoingRecord::new("orders-dlt", Some(b"k".to_vec()), vec![b'x'; 1_040_000]);
        out.headers.insert("app", "1");
        out.headers
            .insert(headers::EXCEPTION_MESSAGE, "record value does not decode");
        let outcome = publish(&p, out, Some(&KafkaRoutes), &CancellationToken::new()).await;
        assert!(
            matches!(outcome, Outcome::Delivered(_, Shrink::WithoutValue)),
            "{outcome:?}"
        );
        assert_eq!(*s.refused.lock().unwrap(), 1);
        let kept = s.kept.lock().unwrap();
        let dl = &kept[0];
        assert_eq!(dl.value.as_deref(), Some(&b""[..]));
        assert_eq!(dl.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(dl.headers.get_str("app"), Some("1"));
        assert_eq!(
            dl.headers.get_str(headers::VALUE_DROPPED),
            Some("1040000 bytes: publishing to orders-dlt failed: Broker: Message size too large")
        );
        assert!(dl
            .headers
            .get_str(headers::EXCEPTION_MESSAGE)
            .unwrap()
            .starts_with(
                "record value does not decode [dead letter without its value of 1040000 bytes"
            ));
    }

    #[tokio::test]
    async fn huge_headers_and_key_are_dropped_in_turn() {
        let (s, p) = sink(1_000);
        let mut out = OutgoingRecord::new("t-dlt", Some(vec![b'k'; 2_000]), b"v".to_vec());
        out.headers.insert("big", vec![0u8; 5_000]);
        out.headers.insert(headers::EXCEPTION_FQCN, "E");
        let outcome = publish(&p, out, Some(&KafkaRoutes), &CancellationToken::new()).await;
        assert!(
            matches!(outcome, Outcome::Delivered(_, Shrink::WithoutKey)),
            "{outcome:?}"
        );
        let kept = s.kept.lock().unwrap();
        assert_eq!(kept[0].key, None);
        assert_eq!(kept[0].headers.get("big"), None);
        assert_eq!(kept[0].headers.get_str(headers::HEADERS_DROPPED), Some("1"));
        assert_eq!(kept[0].headers.get_str(headers::KEY_DROPPED), Some("2000"));
        assert_eq!(kept[0].headers.get_str(headers::EXCEPTION_FQCN), Some("E"));
    }

    #[tokio::test]
    async fn a_retry_record_is_not_cut_down() {
        let (_, p) = sink(10);
        let out = OutgoingRecord::new("t-retry-0", None, vec![b'x'; 100]);
        let outcome = publish(&p, out, None, &CancellationToken::new()).await;
        assert!(matches!(outcome, Outcome::Rejected(_)), "{outcome:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_refused_even_when_cut_down_is_held_until_shutdown() {
        let (s, p) = sink(0);
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(120)).await;
            stop.cancel();
        });
        let out = OutgoingRecord::new("t-dlt", None, b"v".to_vec());
        let outcome = publish(&p, out, Some(&KafkaRoutes), &cancel).await;
        assert!(matches!(outcome, Outcome::Interrupted), "{outcome:?}");
        // Three cut-downs, then backoff 0.1 + 0.2 + ... capped at 30 s: a bounded number of tries.
        let refused = *s.refused.lock().unwrap();
        assert!((12..=16).contains(&refused), "{refused}");
    }

    #[test]
    fn a_shrunk_dead_letter_says_what_went() {
        let mut full = OutgoingRecord::new("t-dlt", Some(b"k".to_vec()), vec![b'x'; 2_000_000]);
        full.headers.insert(headers::EXCEPTION_MESSAGE, "bad JSON");
        let small = shrink(&full, Shrink::WithoutValue, "message too large");
        assert_eq!(small.value.as_deref(), Some(&b""[..]));
        assert_eq!(
            small.headers.get_str(headers::VALUE_DROPPED),
            Some("2000000 bytes: message too large")
        );
        assert_eq!(
            small.headers.get_str(headers::EXCEPTION_MESSAGE),
            Some("bad JSON [dead letter without its value of 2000000 bytes: message too large]")
        );
    }
}
