//! The spans mq makes for tracing export, named by OpenTelemetry's messaging semantic
//! conventions: a `process` span per handler invocation (consumer kind, parented by the
//! producer's `traceparent`), a `send` span per publish (producer kind, its context written
//! into the event's `traceparent`).
//!
//! They are DEBUG spans of the target `mq_core::otel`: with no export layer installed
//! (and logs at INFO) they are disabled at their call site and cost a level check.

use tracing::field::Empty;
use tracing::Span;

use super::export;
use crate::record::Record;

/// A messaging system's names in the conventions: `messaging.system` and the attribute
/// that holds a record's position. Each transport's routes give theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Messaging {
    /// `messaging.system` (`kafka`, `rabbitmq`).
    pub(crate) system: &'static str,
    /// The attribute of the record's position (`messaging.kafka.offset`, ...).
    pub(crate) offset: &'static str,
}

impl Messaging {
    /// A system the conventions have no name for.
    pub(crate) const OTHER: Messaging = Messaging {
        system: "_OTHER",
        offset: "messaging.message.offset",
    };
}

/// The `process` span of one handler invocation of `record`.
pub(crate) fn process(messaging: Messaging, listener: &str, group: &str, record: &Record) -> Span {
    if !tracing::enabled!(target: "mq_core::otel", tracing::Level::DEBUG) {
        return Span::none();
    }
    // Head sampling before any span exists: an unsampled record costs a look at its
    // bytes, not a span (the producer's decision wins when it sent a trace context).
    let (id, parent) = if crate::envelope::mentions_traceparent(record) {
        let (id, parent) = crate::envelope::peek_trace(record);
        if !sampled(parent.as_deref()) {
            return Span::none();
        }
        (id, parent)
    } else {
        if !export::sample_root() {
            return Span::none();
        }
        (crate::envelope::peek_trace(record).0, None)
    };
    let span = tracing::debug_span!(
        target: "mq_core::otel",
        "process",
        otel.name = %format_args!("process {}", record.topic),
        otel.kind = "consumer",
        otel.status_code = Empty,
        messaging.system = messaging.system,
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = %record.topic,
        messaging.destination.partition.id = record.partition,
        messaging.consumer.group.name = group,
        messaging.message.id = Empty,
        mq.listener = listener,
        error.type = Empty,
    );
    if !span.is_disabled() {
        export::annotate(&span, messaging.offset, record.offset);
        if let Some(parent) = parent {
            export::set_remote_parent(&span, &parent);
        }
        if let Some(id) = id {
            span.record("messaging.message.id", id.as_str());
        }
    }
    span
}

/// Marks a `process` span failed with `error_type` (the handler's error, or why the
/// record was set aside).
pub(crate) fn failed(span: &Span, error_type: &str) {
    span.record("error.type", error_type);
    span.record("otel.status_code", "ERROR");
}

/// The `send` span of one publish to `destination`. Its parent is the current span (the
/// handler's `process` span), else `traceparent` (the event's own, or its cause's).
pub(crate) fn send(destination: &str, message_id: Option<&str>, traceparent: Option<&str>) -> Span {
    if !tracing::enabled!(target: "mq_core::otel", tracing::Level::DEBUG) {
        return Span::none();
    }
    let in_trace = export::in_trace();
    if !in_trace && !sampled(traceparent) {
        return Span::none();
    }
    let span = tracing::debug_span!(
        target: "mq_core::otel",
        "send",
        otel.name = %format_args!("send {destination}"),
        otel.kind = "producer",
        messaging.operation.type = "send",
        messaging.operation.name = "send",
        messaging.destination.name = destination,
        messaging.message.id = message_id,
    );
    if !span.is_disabled() && !in_trace {
        if let Some(parent) = traceparent {
            export::set_remote_parent(&span, parent);
        }
    }
    span
}

/// Whether a message with this trace context (or none) is traced: the producer's sampled
/// flag, else a new trace by `management.tracing.sampling.probability`.
fn sampled(traceparent: Option<&str>) -> bool {
    match traceparent.and_then(parse_traceparent) {
        Some((_, _, flags)) => flags & 1 == 1,
        None => export::sample_root(),
    }
}

/// The W3C `traceparent` of `span` when it is exported (its trace, its own span id).
pub(crate) fn traceparent(span: &Span) -> Option<String> {
    if span.is_disabled() {
        None
    } else {
        export::traceparent(span)
    }
}

/// A W3C `traceparent` (`00-<trace id>-<span id>-<flags>`) as its parts, or `None` when it
/// is malformed or all zeros (then a new trace starts).
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) fn parse_traceparent(value: &str) -> Option<(u128, u64, u8)> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(())
    };
    hex(version, 2)?;
    hex(trace, 32)?;
    hex(span, 16)?;
    hex(flags, 2)?;
    if version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let trace = u128::from_str_radix(trace, 16).ok()?;
    let span = u64::from_str_radix(span, 16).ok()?;
    (trace != 0 && span != 0).then_some((trace, span, u8::from_str_radix(flags, 16).ok()?))
}

#[cfg(test)]
mod tests {
    use super::parse_traceparent;

    #[test]
    fn traceparent_as_w3c_writes_it_and_nothing_else() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(tp),
            Some((0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7, 1))
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        }
    }
}
