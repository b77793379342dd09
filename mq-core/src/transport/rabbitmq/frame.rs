//! The negotiated `frame_max` and what a message's properties take of it.
//!
//! A message's properties (its headers table included) travel in one content-header
//! frame, which the broker refuses above `frame_max` by closing the whole *connection*
//! (`FRAME_ERROR`, "frame_too_large"): every consumer and publisher on it goes down. So
//! what mq writes (dead letters, retry copies, replays) is cut to `frame_max` minus a
//! headroom first (Spring AMQP's `RepublishMessageRecoverer.frameMaxHeadroom`), by
//! [`fit`](super::routes::fit)'s rules, with one WARN saying what was cut; and the
//! publisher never sends a header frame over `frame_max` (such a publish fails as a
//! refused record, nothing is sent).

use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;

use super::properties;
use crate::record::OutgoingRecord;

/// RabbitMQ's default `frame_max`, assumed until a connection negotiated one.
pub(crate) const DEFAULT_FRAME_MAX: u32 = 131_072;

/// The size of the content-header frame carrying `props`: frame header (7) and end (1),
/// class, weight, body size and property flags (14), the properties.
pub(crate) fn header_frame_size(props: &BasicProperties) -> usize {
    let short =
        |s: &Option<lapin::types::ShortString>| s.as_ref().map_or(0, |s| 1 + s.as_str().len());
    let mut size = 7 + 1 + 14;
    size += short(props.content_type())
        + short(props.content_encoding())
        + short(props.correlation_id())
        + short(props.reply_to())
        + short(props.expiration())
        + short(props.message_id())
        + short(props.kind())
        + short(props.user_id())
        + short(props.app_id())
        + short(props.cluster_id());
    size += props.delivery_mode().map_or(0, |_| 1) + props.priority().map_or(0, |_| 1);
    size += props.timestamp().map_or(0, |_| 8);
    size += props.headers().as_ref().map_or(0, table_size);
    size
}

/// The header frame `record` would be published with; 0 when it cannot be published as
/// it is (a short string over 255 bytes: the publish fails naming it, nothing to cut).
pub(crate) fn record_frame_size(record: &OutgoingRecord) -> usize {
    properties::outgoing(record).map_or(0, |p| header_frame_size(&p))
}

fn table_size(t: &FieldTable) -> usize {
    4 + t
        .inner()
        .iter()
        .map(|(k, v)| 1 + k.as_str().len() + 1 + value_size(v))
        .sum::<usize>()
}

/// The encoded size of a field value, without its type tag.
fn value_size(v: &AMQPValue) -> usize {
    match v {
        AMQPValue::Boolean(_) | AMQPValue::ShortShortInt(_) | AMQPValue::ShortShortUInt(_) => 1,
        AMQPValue::ShortInt(_) | AMQPValue::ShortUInt(_) => 2,
        AMQPValue::LongInt(_) | AMQPValue::LongUInt(_) | AMQPValue::Float(_) => 4,
        AMQPValue::LongLongInt(_) | AMQPValue::Double(_) | AMQPValue::Timestamp(_) => 8,
        AMQPValue::DecimalValue(_) => 5,
        AMQPValue::ShortString(s) => 1 + s.as_str().len(),
        AMQPValue::LongString(s) => 4 + s.as_bytes().len(),
        AMQPValue::ByteArray(b) => 4 + b.as_slice().len(),
        AMQPValue::FieldArray(a) => {
            4 + a
                .as_slice()
                .iter()
                .map(|v| 1 + value_size(v))
                .sum::<usize>()
        }
        AMQPValue::FieldTable(t) => table_size(t),
        AMQPValue::Void => 0,
    }
}

/// What `out` (a dead letter, retry copy or replay of `what`) may take: `frame_max` less
/// `headroom`, never below a quarter of `frame_max`.
pub(crate) fn budget(frame_max: u32, headroom: u32) -> usize {
    let frame_max = if frame_max == 0 { u32::MAX } else { frame_max };
    frame_max.saturating_sub(headroom).max(frame_max / 4) as usize
}

/// Cuts `out` to `budget` by [`fit`](super::routes::fit)'s rules, with one WARN saying
/// what was cut (`what`: a dead letter, a retry copy, a replay).
pub(crate) fn fit_to(out: &mut OutgoingRecord, budget: usize, what: &str) {
    let before = record_frame_size(out);
    if before <= budget {
        return;
    }
    let cut = super::routes::fit(out, budget, &record_frame_size);
    tracing::warn!(destination = %out.topic, header_frame_bytes = before, budget,
        cut = %cut.join("; "),
        "{what} would not fit the connection's frame_max (with headroom): headers cut");
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{LongString, ShortString};

    #[test]
    fn the_size_is_what_lapin_encodes() {
        let mut t = FieldTable::default();
        t.insert("a".into(), AMQPValue::LongString(LongString::from("xyz")));
        t.insert("n".into(), AMQPValue::LongLongInt(1));
        let props = BasicProperties::default()
            .with_message_id(ShortString::from("m"))
            .with_delivery_mode(2)
            .with_timestamp(1)
            .with_headers(t);
        // 22 fixed + message_id 2 + mode 1 + timestamp 8 + table 4 + (1+1+1+4+3) + (1+1+1+8)
        assert_eq!(header_frame_size(&props), 22 + 2 + 1 + 8 + 4 + 10 + 11);
        assert_eq!(budget(131_072, 20_000), 111_072);
        assert_eq!(budget(4096, 20_000), 1024);
    }
}
