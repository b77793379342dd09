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
//!   at once, cut by its transport's rules ([`FailureRoutes::shrink`]): first without its
//!   value (a header says how large it was and why it went), then also without the
//!   original headers, then also without the key. A retry record cannot go without its
//!   value: the caller dead-letters instead. Never a loop on the same bytes;
//! - **destination rejected** (not authorized, unknown topic): no smaller record helps;
//!   an operator must act. Held and retried with backoff like a transient error, and
//!   logged at ERROR, so nothing is lost and the partition resumes once it is fixed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::routes::FailureRoutes;
use crate::publisher::{Delivery, PublishError, PublishErrorKind, Publisher};
use crate::record::OutgoingRecord;

/// Longest wait between two tries of a held publish.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How far a dead letter was cut down to be accepted (each level leaves out what the one
/// before it did, and more). Its transport's [`FailureRoutes::shrink`] cuts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Shrink {
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
    pub(crate) fn next(self) -> Option<Shrink> {
        match self {
            Shrink::Full => Some(Shrink::WithoutValue),
            Shrink::WithoutValue => Some(Shrink::WithoutHeaders),
            Shrink::WithoutHeaders => Some(Shrink::WithoutKey),
            Shrink::WithoutKey => None,
        }
    }
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

/// Publishes `out` until the broker acknowledges it, as the module explains. `shrink`: a
/// dead letter, cut down by its transport's rules when the broker refuses it as it is;
/// `None`: a retry record, which is returned when refused.
pub(crate) async fn publish(
    publisher: &Publisher,
    out: OutgoingRecord,
    shrink: Option<&dyn FailureRoutes>,
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
            let Some(routes) = shrink else {
                return Outcome::Rejected(error);
            };
            if let Some(next) = level.next() {
                tracing::warn!(topic = %current.topic, error = %error, shrink = ?next,
                    "dead letter refused as it is; publishing it smaller");
                level = next;
                current = routes.shrink(&out, level, &error.to_string());
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
