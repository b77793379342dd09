//! A lane's buffer: the transport hands a lane its records in batches, the lane's task
//! takes them one at a time, and gives the spent ones back in batches for reuse.
//!
//! Batches make the handoff between the transport's poll loop and a lane cost one channel
//! send, one wake-up and two atomic additions (the read-ahead budget) per batch instead of
//! per record. The records of a batch the lane has taken out of the channel no longer
//! count in its budget: they are at most one batch ([`MAX_BATCH`] records).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::flow::Flow;
use crate::record::Record;

/// Records a transport puts in one batch at most.
pub(crate) const MAX_BATCH: usize = 128;

/// Records for one lane, in order, and the bytes they count for in its read-ahead budget.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) records: Vec<Arc<Record>>,
    pub(crate) bytes: usize,
}

impl Batch {
    /// A batch of one record.
    pub(crate) fn of(record: Arc<Record>) -> Batch {
        let mut batch = Batch::default();
        batch.push(record);
        batch
    }

    /// An empty batch that fills `records` (an empty vector whose capacity is reused).
    pub(crate) fn reusing(records: Vec<Arc<Record>>) -> Batch {
        debug_assert!(records.is_empty());
        Batch { records, bytes: 0 }
    }

    /// Adds the next record.
    pub(crate) fn push(&mut self, record: Arc<Record>) {
        self.bytes += weight(&record);
        self.records.push(record);
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// The bytes `record` counts for in its lane's read-ahead budget.
pub(crate) fn weight(record: &Record) -> usize {
    Flow::weight(
        record.value.as_ref().map_or(0, Vec::len) + record.key.as_ref().map_or(0, Vec::len),
    )
}

/// Where spent records go back to the transport, a batch at a time.
pub(crate) type Recycle = mpsc::UnboundedSender<Vec<Arc<Record>>>;

/// The receiving end of a lane's buffer, owned by the lane's task.
pub(crate) struct Buffer {
    rx: mpsc::UnboundedReceiver<Batch>,
    /// The batch being taken, reversed: its next record is the last one.
    current: Vec<Arc<Record>>,
    /// Spent records not given back yet.
    spent: Vec<Arc<Record>>,
    recycle: Option<Recycle>,
}

impl Buffer {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<Batch>, recycle: Option<Recycle>) -> Buffer {
        Buffer {
            rx,
            current: Vec::new(),
            spent: Vec::new(),
            recycle,
        }
    }

    /// The next record of the batch being taken.
    pub(crate) fn pop(&mut self) -> Option<Arc<Record>> {
        self.current.pop()
    }

    /// Starts taking `batch`; returns its first record (`None` for an empty batch).
    pub(crate) fn load(&mut self, batch: Batch) -> Option<Arc<Record>> {
        debug_assert!(self.current.is_empty());
        self.current = batch.records;
        self.current.reverse();
        self.current.pop()
    }

    /// The channel the batches come through.
    pub(crate) fn channel(&mut self) -> &mut mpsc::UnboundedReceiver<Batch> {
        &mut self.rx
    }

    /// Keeps `record` for reuse when nothing else holds it (a handler that kept its
    /// `Context` holds it).
    pub(crate) fn spend(&mut self, record: Arc<Record>) {
        if self.recycle.is_some() && Arc::strong_count(&record) == 1 {
            self.spent.push(record);
        }
    }

    /// Gives the spent records back to the transport, in the vector of the batch just
    /// taken, so that a steady stream allocates neither records nor vectors.
    pub(crate) fn give_back(&mut self) {
        if self.spent.is_empty() {
            return;
        }
        let Some(recycle) = &self.recycle else {
            return;
        };
        let spent = std::mem::replace(&mut self.spent, std::mem::take(&mut self.current));
        let _ = recycle.send(spent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64) -> Arc<Record> {
        Arc::new(Record {
            topic: Arc::from("t"),
            partition: 0,
            offset,
            key: None,
            value: Some(vec![0; 100]),
            headers: Default::default(),
            timestamp: None,
            timestamp_type: crate::record::TimestampType::NoTimestampType,
        })
    }

    #[test]
    fn records_come_out_in_order_and_spent_ones_go_back_in_one_send() {
        let (tx, rx) = mpsc::unbounded_channel();
        let (recycle, mut returned) = mpsc::unbounded_channel();
        let mut buffer = Buffer::new(rx, Some(recycle));
        let mut batch = Batch::default();
        for o in 0..5 {
            batch.push(record(o));
        }
        assert_eq!(batch.bytes, 500);
        tx.send(batch).unwrap();
        let batch = buffer.channel().try_recv().unwrap();
        let mut taken = vec![buffer.load(batch).unwrap()];
        while let Some(r) = buffer.pop() {
            taken.push(r);
        }
        assert_eq!(
            taken.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        let kept = taken[4].clone();
        for r in taken {
            buffer.spend(r);
        }
        buffer.give_back();
        let back = returned.try_recv().unwrap();
        assert_eq!(
            back.len(),
            4,
            "the record a handler still holds is not reused"
        );
        assert!(returned.try_recv().is_err(), "one send per batch");
        drop(kept);
    }
}
