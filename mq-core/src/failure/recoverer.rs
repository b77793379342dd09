//! The recoverer: publishes dead letters and retry records, and decides what a failed
//! publish means (Spring's `DeadLetterPublishingRecoverer`, with its failure modes made
//! explicit).
//!
//! A publish error is classified by the transport ([`PublishErrorKind`]):
//!
//! - **transient** (timeouts, brokers away, a producer being rebuilt after a fatal error):
//!   hold the record (its offset is not committed) and try again with backoff, 100 ms
//!   doubling to 30 s, until it goes through or shutdown starts;
//! - **record rejected** (too large, invalid): a dead letter is published again, smaller,
//!   at once: first without its value (`mq_dlt-value-dropped` says how large it was and
//!   why it went, and `kafka_dlt-exception-message` says so too), then also without the
//!   original headers, then also without the key. A retry record cannot go without its
//!   value: the caller dead-letters instead. Never a loop on the same bytes;
//! - **destination rejected** (not authorized, unknown topic): no smaller record helps;
//!   an operator must act. Held and retried with backoff like a transient error, and
//!   logged at ERROR, so nothing is lost and the partition resumes once it is fixed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::dead_letter::{headers, truncate};
use crate::publisher::{Delivery, PublishError, PublishErrorKind, Publisher};
use crate::record::OutgoingRecord;

/// Longest wait between two tries of a held publish.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The stack trace kept in the smallest dead letter.
const SMALL_STACKTRACE: usize = 1024;

/// How far a dead letter was cut down to be accepted.
///
/// ```
/// use mq_core::failure::recoverer::Shrink;
/// assert!(Shrink::WithoutValue < Shrink::WithoutKey);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shrink {
    /// As built: everything kept.
    Full,
    /// The value left out.
    WithoutValue,
    /// The value and the original headers left out.
    WithoutHeaders,
    /// The value, the original headers and the key left out.
    WithoutKey,
}

impl Shrink {
    fn next(self) -> Option<Shrink> {
        match self {
            Shrink::Full => Some(Shrink::WithoutValue),
            Shrink::WithoutValue => Some(Shrink::WithoutHeaders),
            Shrink::WithoutHeaders => Some(Shrink::WithoutKey),
            Shrink::WithoutKey => None,
        }
    }
}

/// `full` (a dead letter as built) cut down to `level`, with headers saying what went
/// and why (`reason`: the broker's refusal). The value becomes empty, not null: a null
/// would read as a tombstone and delete the key on a compacted topic.
///
/// ```
/// use mq_core::failure::recoverer::{shrink, Shrink};
/// use mq_core::record::OutgoingRecord;
/// let mut full = OutgoingRecord::new("t-dlt", Some(b"k".to_vec()), vec![b'x'; 2_000_000]);
/// full.headers.insert("kafka_dlt-exception-message", "bad JSON");
/// let small = shrink(&full, Shrink::WithoutValue, "message too large");
/// assert_eq!(small.value.as_deref(), Some(&b""[..]));
/// assert_eq!(small.headers.get_str("mq_dlt-value-dropped"), Some("2000000 bytes: message too large"));
/// assert_eq!(
///     small.headers.get_str("kafka_dlt-exception-message"),
///     Some("bad JSON [dead letter without its value of 2000000 bytes: message too large]")
/// );
/// ```
pub fn shrink(full: &OutgoingRecord, level: Shrink, reason: &str) -> OutgoingRecord {
    let mut out = full.clone();
    if level == Shrink::Full {
        return out;
    }
    let reason = truncate(reason, 512);
    if let Some(value) = out.value.take() {
        let dropped = format!("{} bytes: {reason}", value.len());
        let message = out
            .headers
            .get_str(headers::EXCEPTION_MESSAGE)
            .map(|m| truncate(m, 4096).to_owned())
            .unwrap_or_default();
        out.headers.insert(
            headers::EXCEPTION_MESSAGE,
            format!("{message} [dead letter without its value of {dropped}]").trim_start(),
        );
        out.headers.insert(headers::VALUE_DROPPED, dropped);
        out.value = Some(Vec::new());
    }
    if level >= Shrink::WithoutHeaders {
        let before = out.headers.len();
        out.headers.retain(|name| {
            name.starts_with(headers::PREFIX)
                || name.starts_with(crate::retry_topic::PREFIX)
                || name.starts_with("mq_")
        });
        let dropped = before - out.headers.len();
        out.headers
            .insert(headers::HEADERS_DROPPED, dropped.to_string());
        if let Some(trace) = out.headers.get_str(headers::EXCEPTION_STACKTRACE) {
            let short = truncate(trace, SMALL_STACKTRACE).to_owned();
            out.headers.insert(headers::EXCEPTION_STACKTRACE, short);
        }
    }
    if level >= Shrink::WithoutKey {
        if let Some(key) = out.key.take() {
            out.headers
                .insert(headers::KEY_DROPPED, key.len().to_string());
        }
    }
    out
}

/// What came of a publish.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The broker acknowledged it (perhaps cut down, for a dead letter).
    Delivered(Delivery, Shrink),
    /// The record itself was refused and may not be cut down (a retry record).
    Rejected(PublishError),
    /// Shutdown came first: the source record is not acknowledged, nothing is lost.
    Interrupted,
}

/// Publishes `out` until the broker acknowledges it, as the module explains. `shrinkable`:
/// a dead letter (it may go without its value); else a rejected record is returned.
pub(crate) async fn publish(
    publisher: &Publisher,
    out: OutgoingRecord,
    shrinkable: bool,
    cancel: &CancellationToken,
) -> Outcome {
    let mut level = Shrink::Full;
    let mut current = out.clone();
    let mut backoff = Duration::from_millis(100);
    let mut failures = 0u32;
    loop {
        let error = match publisher.send_record(current.clone()).await {
            Ok(delivery) => return Outcome::Delivered(delivery, level),
            Err(e) => e,
        };
        let kind = error.kind();
        if kind == PublishErrorKind::RecordRejected {
            if !shrinkable {
                return Outcome::Rejected(error);
            }
            if let Some(next) = level.next() {
                tracing::warn!(topic = %current.topic, error = %error, shrink = ?next,
                    "dead letter refused as it is; publishing it smaller");
                level = next;
                current = shrink(&out, level, &error.to_string());
                continue;
            }
        }
        failures += 1;
        if failures == 1 {
            tracing::error!(topic = %current.topic, error = %error, kind = ?kind, retry_in = ?backoff,
                "publish failed; offset held until it goes through");
        } else {
            tracing::warn!(topic = %current.topic, error = %error, kind = ?kind, failures, retry_in = ?backoff,
                "publish still failing; offset held");
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = cancel.cancelled() => return Outcome::Interrupted,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures::future::BoxFuture;

    use super::*;
    use crate::publisher::RecordSink;

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
        // The issue's record: 1,040,000 bytes of `x`, not JSON; the broker takes 1,000,000.
        let (s, p) = sink(1_000_000);
        let mut out = OutgoingRecord::new("orders-dlt", Some(b"k".to_vec()), vec![b'x'; 1_040_000]);
        out.headers.insert("app", "1");
        out.headers
            .insert(headers::EXCEPTION_MESSAGE, "record value does not decode");
        let outcome = publish(&p, out, true, &CancellationToken::new()).await;
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
        let outcome = publish(&p, out, true, &CancellationToken::new()).await;
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
        let outcome = publish(&p, out, false, &CancellationToken::new()).await;
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
        let outcome = publish(&p, out, true, &cancel).await;
        assert!(matches!(outcome, Outcome::Interrupted), "{outcome:?}");
        // Three cut-downs, then backoff 0.1 + 0.2 + ... capped at 30 s: a bounded number of tries.
        let refused = *s.refused.lock().unwrap();
        assert!((12..=16).contains(&refused), "{refused}");
    }
}
