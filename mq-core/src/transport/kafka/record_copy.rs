//! Copies a librdkafka message into a [`Record`], the only form in which records leave the
//! Kafka transport.

use std::sync::Arc;

use rdkafka::message::{BorrowedMessage, Headers as _, Message};

use crate::record::{copy_into, Headers, Record, TimestampType};

/// A new record holding a copy of `m`; `topic` is `m`'s topic, shared by the records of a
/// lane.
pub(crate) fn to_record(m: &BorrowedMessage<'_>, topic: Arc<str>) -> Record {
    let mut record = Record {
        topic,
        partition: 0,
        offset: 0,
        key: None,
        value: None,
        headers: Headers::default(),
        timestamp: None,
        timestamp_type: TimestampType::NoTimestampType,
    };
    refill(&mut record, m);
    record
}

/// The record for `m`: a spent one refilled in place when nothing holds it any more (the
/// handler kept no `Context`), which saves its six allocations and their frees on
/// another thread; a new one otherwise.
pub(crate) fn next_record(
    spare: Option<Arc<Record>>,
    m: &BorrowedMessage<'_>,
    topic: &Arc<str>,
) -> Arc<Record> {
    if let Some(mut record) = spare {
        if let Some(r) = Arc::get_mut(&mut record) {
            if !Arc::ptr_eq(&r.topic, topic) {
                r.topic = topic.clone();
            }
            refill(r, m);
            return record;
        }
    }
    Arc::new(to_record(m, topic.clone()))
}

/// Copies `m` (all but its topic) into `record`, reusing its buffers.
pub(crate) fn refill(record: &mut Record, m: &BorrowedMessage<'_>) {
    record.partition = m.partition();
    record.offset = m.offset();
    let ts = m.timestamp();
    record.timestamp = ts.to_millis();
    record.timestamp_type = match ts {
        rdkafka::Timestamp::CreateTime(_) => TimestampType::CreateTime,
        rdkafka::Timestamp::LogAppendTime(_) => TimestampType::LogAppendTime,
        rdkafka::Timestamp::NotAvailable => TimestampType::NoTimestampType,
    };
    copy_into(&mut record.key, m.key());
    copy_into(&mut record.value, m.payload());
    match m.headers() {
        Some(hs) => record.headers.refill(hs.iter().map(|h| (h.key, h.value))),
        None => record.headers.refill(std::iter::empty()),
    }
}
