//! What a queue listener's consumers saw of their own deliveries: the messages whose
//! channel closed while a handler was running on them (RabbitMQ's `consumer_timeout`
//! closes the channel of a consumer that holds a delivery unacknowledged for longer; a
//! lost connection does the same). RabbitMQ delivers such a message again, to this or
//! another consumer, as `redelivered` but with no count on a classic queue: without this,
//! a handler slower than the timeout would see it as attempt 1 for ever.
//!
//! [`ConsumerRoutes`] are [`RabbitRoutes`] plus this memory: a redelivered message counts
//! the times its channel closed under a handler here ([`Redelivery::in_handler`]), and a
//! handler that finishes after its channel closed is no success (its ack was lost).
//!
//! The memory is per process: across instances, each counts its own, so a message that
//! hangs every handler goes to the dead-letter queue after at most `max-attempts` handler
//! runs per instance (quorum queues count across instances: `x-delivery-count`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::dead_letter::headers::EXCEPTION_STACKTRACE;
use super::routes::RabbitRoutes;
use crate::envelope::EVENT_ID_HEADER;
use crate::failure::info::FailureInfo;
use crate::failure::policy::{FailureKind, Source};
use crate::failure::recoverer::Shrink;
use crate::failure::routes::{Arrival, FailureRoutes, Redelivery};
use crate::record::{OutgoingRecord, Record};
use crate::registry::ListenerSpec;

/// Message identities whose count is kept (the oldest is forgotten first).
const IDENTITIES: usize = 4096;

/// The messages of one queue listener whose channel closed under a running handler.
#[derive(Default)]
pub(crate) struct Lost {
    /// How many such records may still be in a handler (0: nothing to look up).
    pending: AtomicUsize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Times each message identity lost its channel under a handler.
    counts: HashMap<String, u32>,
    order: VecDeque<String>,
    /// The records themselves, while their handler holds them.
    records: Vec<Weak<Record>>,
}

impl Lost {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `record`'s channel closed while a handler was running on it.
    pub(crate) fn under_handler(&self, record: &Arc<Record>) {
        let mut inner = self.lock();
        if let Some(id) = identity(record) {
            if let Some(n) = inner.counts.get_mut(id) {
                *n += 1;
            } else {
                inner.counts.insert(id.to_owned(), 1);
                inner.order.push_back(id.to_owned());
                if inner.order.len() > IDENTITIES {
                    if let Some(old) = inner.order.pop_front() {
                        inner.counts.remove(&old);
                    }
                }
            }
        }
        inner.records.retain(|w| w.strong_count() > 0);
        inner.records.push(Arc::downgrade(record));
        self.pending.store(inner.records.len(), Ordering::Relaxed);
    }

    /// Times `record`'s message lost its channel under a handler here.
    fn count(&self, record: &Record) -> u32 {
        let Some(id) = identity(record) else { return 0 };
        self.lock().counts.get(id).copied().unwrap_or(0)
    }

    /// Whether `record` (this delivery, not another one of the same message) lost its
    /// channel under its handler; it is forgotten once asked.
    fn take(&self, record: &Record) -> bool {
        if self.pending.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let mut inner = self.lock();
        inner.records.retain(|w| w.strong_count() > 0);
        let found = inner
            .records
            .iter()
            .position(|w| std::ptr::eq(w.as_ptr(), record));
        if let Some(i) = found {
            inner.records.swap_remove(i);
        }
        self.pending.store(inner.records.len(), Ordering::Relaxed);
        found.is_some()
    }
}

/// A message's identity: its `message_id`, else the digest mq gave it (see
/// [`properties`](super::properties)).
fn identity(record: &Record) -> Option<&str> {
    record
        .headers
        .get_str(EVENT_ID_HEADER)
        .filter(|id| !id.is_empty())
}

/// [`RabbitRoutes`] with what the listener's consumers saw (see the module docs) and the
/// listener's dead-letter settings.
pub(crate) struct ConsumerRoutes {
    pub(crate) lost: Arc<Lost>,
    /// `mq.rabbitmq.listener.dead-letter.stack-trace`
    pub(crate) stack_trace: bool,
    /// The connection's negotiated `frame_max`.
    pub(crate) frame_max: Arc<AtomicU32>,
    /// `mq.rabbitmq.listener.dead-letter.frame-max-headroom`
    pub(crate) headroom: u32,
}

impl ConsumerRoutes {
    /// `out` as the listener's settings have it, cut to fit a header frame.
    fn configured(&self, mut out: OutgoingRecord, what: &str) -> OutgoingRecord {
        if !self.stack_trace {
            out.headers.remove(EXCEPTION_STACKTRACE);
        }
        let budget = super::frame::budget(self.frame_max.load(Ordering::Relaxed), self.headroom);
        super::frame::fit_to(&mut out, budget, what);
        out
    }
}

impl FailureRoutes for ConsumerRoutes {
    fn timer(&self) -> &'static str {
        RabbitRoutes.timer()
    }

    fn messaging(&self) -> crate::telemetry::spans::Messaging {
        RabbitRoutes.messaging()
    }

    fn arrival(&self, spec: &ListenerSpec, record: &Record) -> Arrival {
        RabbitRoutes.arrival(spec, record)
    }

    fn reply_address(&self, record: &Record) -> Option<crate::publisher::ReplyAddress> {
        RabbitRoutes.reply_address(record)
    }

    fn deliveries_before(&self, spec: &ListenerSpec, record: &Record) -> Redelivery {
        let mut r = RabbitRoutes.deliveries_before(spec, record);
        if r.before > 0 {
            r.in_handler = self.lost.count(record);
            r.before = r.before.max(r.in_handler);
        }
        r
    }

    fn ack_lost(&self, record: &Record) -> bool {
        self.lost.take(record)
    }

    fn dead_letter(
        &self,
        spec: &ListenerSpec,
        record: &Record,
        source: Source,
        kind: FailureKind,
        info: &FailureInfo,
    ) -> OutgoingRecord {
        self.configured(
            RabbitRoutes.dead_letter(spec, record, source, kind, info),
            "dead letter",
        )
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
        let out = RabbitRoutes.reschedule(spec, record, source, index, attempt, due_ms, info);
        self.configured(out, "retry copy")
    }

    fn shrink(&self, full: &OutgoingRecord, level: Shrink, reason: &str) -> OutgoingRecord {
        RabbitRoutes.shrink(full, level, reason)
    }

    fn dead_letter_destinations(&self, spec: &ListenerSpec) -> Vec<String> {
        RabbitRoutes.dead_letter_destinations(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::rabbitmq::headers as amqp;

    fn delivery(id: &str, redelivered: bool) -> Arc<Record> {
        let mut r = Record::new("q", 0, 1, None, Some(b"{}".to_vec()));
        r.headers.insert(EVENT_ID_HEADER, id);
        r.headers.insert(amqp::REDELIVERED, redelivered.to_string());
        Arc::new(r)
    }

    #[test]
    fn a_channel_lost_under_a_handler_counts_and_its_success_is_no_success() {
        let routes = ConsumerRoutes {
            lost: Arc::new(Lost::default()),
            stack_trace: true,
            frame_max: Arc::new(AtomicU32::new(131_072)),
            headroom: 20_000,
        };
        let spec = crate::registry::tests::spec_for_queue("q");
        let first = delivery("m-1", false);
        assert_eq!(
            routes.deliveries_before(&spec, &first),
            Redelivery::default()
        );
        routes.lost.under_handler(&first);
        routes.lost.under_handler(&delivery("other", false));
        let again = delivery("m-1", true);
        assert_eq!(
            routes.deliveries_before(&spec, &again),
            Redelivery {
                before: 1,
                in_handler: 1
            }
        );
        assert!(!routes.ack_lost(&again), "another delivery of the message");
        assert!(routes.ack_lost(&first));
        assert!(!routes.ack_lost(&first), "asked once");
        // A redelivery it never saw under a handler: the broker's flag alone.
        let prefetched = delivery("m-2", true);
        assert_eq!(
            routes.deliveries_before(&spec, &prefetched),
            Redelivery {
                before: 1,
                in_handler: 0
            }
        );
    }

    #[test]
    fn records_no_handler_holds_are_forgotten() {
        let lost = Lost::default();
        lost.under_handler(&delivery("m", false));
        // Dropped at once: nothing to look up any more.
        assert!(!lost.take(&delivery("m", false)));
        assert_eq!(lost.pending.load(Ordering::Relaxed), 0);
    }
}
