//! [`FailureRoutes`]: what differs per broker when a record fails, behind one trait the
//! pipeline asks (the way Spring injects a `DeadLetterPublishingRecoverer` or a
//! `RepublishMessageRecoverer`): which delivery a record is, where its dead letter and its
//! retry copies go and what they carry, how an oversized dead letter is cut down, and the
//! listener timer's name. Each transport supplies its own; nothing here names a broker.

use super::info::FailureInfo;
use super::policy::{FailureKind, Source};
use super::recoverer::Shrink;
use crate::publisher::ReplyAddress;
use crate::record::{OutgoingRecord, Record};
use crate::registry::ListenerSpec;
use crate::telemetry::spans::Messaging;

/// Where one delivery of a record stands, as its transport's conventions read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arrival {
    /// Read from the listener's own topic or queue, or from one of its retry routes.
    pub(crate) source: Source,
    /// The attempt the record's retry headers say it is (`None`: they say nothing).
    pub(crate) attempt: Option<u32>,
    /// When a retry record is due (ms since the epoch), for a transport whose retry route
    /// delivers early and leaves the wait to the consumer (Kafka's retry topics); `None`
    /// when the broker waited already (a RabbitMQ retry queue's TTL).
    pub(crate) due_ms: Option<i64>,
}

impl Arrival {
    /// A first delivery from the listener's own topic or queue.
    pub(crate) const MAIN: Arrival = Arrival {
        source: Source::Main,
        attempt: None,
        due_ms: None,
    };
}

/// What a transport can tell of a record's earlier deliveries (a broker that redelivers an
/// unacknowledged message: RabbitMQ's `redelivered` flag, a quorum queue's
/// `x-delivery-count`, what the transport saw itself).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Redelivery {
    /// Deliveries of the record before this one, as far as the transport can tell (0: a
    /// first delivery, or a broker that never redelivers). Each counts as an attempt.
    pub(crate) before: u32,
    /// How many of those the transport saw end with a handler still running on the record
    /// (its channel closed under it: the broker's consumer timeout, a lost connection).
    /// Only these may use up the last attempt before a handler ran: a message the broker
    /// merely sent again (prefetched, never handled) is still handled once.
    pub(crate) in_handler: u32,
}

/// One broker's failure conventions (see the module docs).
pub(crate) trait FailureRoutes: Send + Sync + 'static {
    /// The metric family of the listener timer (`spring_kafka_listener_seconds`, ...).
    fn timer(&self) -> &'static str;

    /// The broker's names in OpenTelemetry's messaging conventions (trace export).
    fn messaging(&self) -> Messaging {
        Messaging::OTHER
    }

    /// Which delivery `record` is for `spec`: its source, and what its retry headers say.
    fn arrival(&self, spec: &ListenerSpec, record: &Record) -> Arrival;

    /// What `record`'s transport can tell of its earlier deliveries (see [`Redelivery`]);
    /// asked once per record before its handler runs. Default: none (a Kafka record is read
    /// again only from an uncommitted offset, which its attempts never counted).
    fn deliveries_before(&self, spec: &ListenerSpec, record: &Record) -> Redelivery {
        let _ = (spec, record);
        Redelivery::default()
    }

    /// True when the handler finished with `record` after the transport lost the means to
    /// acknowledge it (its channel closed): the broker delivers it again, so its success
    /// is not counted as one. Asked after each successful handler call. Default: false.
    fn ack_lost(&self, record: &Record) -> bool {
        let _ = record;
        false
    }

    /// Where `record` asks its reply to go (a request), in the broker's conventions;
    /// `None` when it asks for none. No default: a wrapper that forgot it would drop every
    /// reply.
    fn reply_address(&self, record: &Record) -> Option<ReplyAddress>;

    /// The dead letter of `record` (read from `source`, failed as `kind` because of
    /// `info`), its destination included.
    fn dead_letter(
        &self,
        spec: &ListenerSpec,
        record: &Record,
        source: Source,
        kind: FailureKind,
        info: &FailureInfo,
    ) -> OutgoingRecord;

    /// The copy of `record` for retry route `index`, where it is delivery `attempt`, due
    /// at `due_ms` (ms since the epoch).
    #[allow(clippy::too_many_arguments)]
    fn reschedule(
        &self,
        spec: &ListenerSpec,
        record: &Record,
        source: Source,
        index: u32,
        attempt: u32,
        due_ms: i64,
        info: &FailureInfo,
    ) -> OutgoingRecord;

    /// `full`, a dead letter the broker refused as too large (`reason`), cut down to
    /// `level`: which headers it keeps and how it says what went are the transport's.
    fn shrink(&self, full: &OutgoingRecord, level: Shrink, reason: &str) -> OutgoingRecord;

    /// Where `spec`'s dead letters go (for `/actuator/info`); empty when they go nowhere.
    #[cfg_attr(not(any(feature = "kafka", feature = "rabbitmq")), allow(dead_code))]
    fn dead_letter_destinations(&self, spec: &ListenerSpec) -> Vec<String>;
}

/// Routes for the unit tests of the layers below the transports: dead letters to
/// `<topic>-dlt`, retries to `<topic>-retry-<index>`, carrying the record as it is.
#[cfg(test)]
pub(crate) struct TestRoutes;

#[cfg(test)]
impl FailureRoutes for TestRoutes {
    fn timer(&self) -> &'static str {
        crate::metrics::LISTENER_SECONDS
    }

    fn arrival(&self, _spec: &ListenerSpec, _record: &Record) -> Arrival {
        Arrival::MAIN
    }

    fn reply_address(&self, _record: &Record) -> Option<ReplyAddress> {
        None
    }

    fn dead_letter(
        &self,
        _spec: &ListenerSpec,
        record: &Record,
        _source: Source,
        _kind: FailureKind,
        _info: &FailureInfo,
    ) -> OutgoingRecord {
        OutgoingRecord::forward(record, &format!("{}-dlt", record.topic), "test-")
    }

    fn reschedule(
        &self,
        _spec: &ListenerSpec,
        record: &Record,
        _source: Source,
        index: u32,
        _attempt: u32,
        _due_ms: i64,
        _info: &FailureInfo,
    ) -> OutgoingRecord {
        OutgoingRecord::forward(record, &format!("{}-retry-{index}", record.topic), "test-")
    }

    fn shrink(&self, full: &OutgoingRecord, _level: Shrink, _reason: &str) -> OutgoingRecord {
        full.clone()
    }

    fn dead_letter_destinations(&self, spec: &ListenerSpec) -> Vec<String> {
        spec.topics.iter().map(|t| format!("{t}-dlt")).collect()
    }
}
