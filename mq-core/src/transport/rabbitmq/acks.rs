//! A queue consumer's acknowledgements: one `basic.ack(tag, multiple = true)` per half
//! prefetch of settled deliveries, or 2 ms after the first one settled since the last ack,
//! in tag order, from one task per channel (see [`Acks`]).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::BasicAckOptions;
use lapin::Acker;
use tokio::sync::{oneshot, Notify};

use crate::consume::{LaneSource, Valve};

/// A consumer's channel as its lane's source: acks go out in the order the lane commits
/// them (a `multiple` ack behind a higher one would be an unknown tag, which closes the
/// channel), from one task, each through the `Acker` of the highest delivery it settles
/// (lapin's per-delivery handle: once the channel closed it refuses, so an ack never
/// reaches a channel the delivery did not come on).
///
/// The consumer task and the lane only write into a shared [`AckBook`]; the ack task is
/// woken when there is an ack to send (half the prefetch settled, the linger started, a
/// flush, the end), not once per delivery: on two cores shared with the broker, every
/// task wake-up per message is CPU the broker does not get.
pub(super) struct Acks {
    shared: Arc<Shared>,
    manual: bool,
    batch: u64,
}

struct Shared {
    book: Mutex<AckBook>,
    wake: Notify,
}

/// What the consumer task and the lane tell the ack task.
#[derive(Default)]
struct AckBook {
    /// The ackers of the deliveries not acked yet (at most `prefetch`), in tag order.
    unacked: VecDeque<(u64, Acker)>,
    /// The highest tag settled by the lane (everything through it is done).
    settled: u64,
    /// The highest tag the ack task took to acknowledge.
    acked: u64,
    /// The ack task was told that a batch is full (and has not acked since).
    urged: bool,
    /// Answered once every ack asked for before them was sent.
    flushes: Vec<oneshot::Sender<()>>,
    /// The consumer's life ended: ack what is settled, then stop.
    closed: bool,
}

impl Shared {
    fn book(&self) -> std::sync::MutexGuard<'_, AckBook> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Acks {
    /// The ack task of a channel: one `multiple` ack once `batch` deliveries (half the
    /// prefetch) are settled past the last ack, or [`ACK_LINGER`] after the first settled
    /// one, or on a flush; never for a delivery not settled yet.
    pub(super) fn start(manual: bool, batch: u64) -> Acks {
        Acks::start_with(manual, batch, ack)
    }

    /// [`Acks::start`] with `send` in place of sending each ack to the broker.
    fn start_with<F, Fut>(manual: bool, batch: u64, send: F) -> Acks
    where
        F: FnMut(Option<(u64, Acker)>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            book: Mutex::new(AckBook::default()),
            wake: Notify::new(),
        });
        tokio::spawn(run_acks(shared.clone(), batch, send));
        Acks {
            shared,
            manual,
            batch,
        }
    }

    /// Hands the ack task the acker of delivery `tag` (in manual mode; none is needed
    /// otherwise). Before the delivery's record reaches the lane, so it is there when
    /// the lane settles it.
    pub(super) fn delivered(&self, tag: u64, acker: Acker) {
        if self.manual {
            self.shared.book().unacked.push_back((tag, acker));
        }
    }

    /// Waits until every ack asked for so far was sent.
    pub(super) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.shared.book().flushes.push(tx);
        self.shared.wake.notify_one();
        let _ = rx.await;
    }
}

impl Drop for Acks {
    fn drop(&mut self) {
        self.shared.book().closed = true;
        self.shared.wake.notify_one();
    }
}

/// The ack task: sends the acks [`AckBook`] asks for, until the consumer's life ended.
async fn run_acks<F, Fut>(shared: Arc<Shared>, batch: u64, mut send: F)
where
    F: FnMut(Option<(u64, Acker)>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut acked = 0u64;
    loop {
        // The flushes taken here were asked for before `settled` was read: acking through
        // it answers them.
        let (settled, flushes, closed) = {
            let mut book = shared.book();
            (book.settled, std::mem::take(&mut book.flushes), book.closed)
        };
        if settled > acked {
            let urgent = !flushes.is_empty() || closed || settled - acked >= batch;
            // Not urgent: wait for more settled deliveries, at most ACK_LINGER (a batch
            // filling up, a flush or the end wake the task earlier).
            if urgent
                || tokio::time::timeout(ACK_LINGER, shared.wake.notified())
                    .await
                    .is_err()
            {
                // Through the freshest settled tag (acking more at once is only better).
                let delivery = {
                    let mut book = shared.book();
                    acked = book.settled;
                    book.acked = acked;
                    book.urged = false;
                    let mut last = None;
                    while book.unacked.front().is_some_and(|(t, _)| *t <= acked) {
                        last = book.unacked.pop_front();
                    }
                    last.filter(|(t, _)| *t == acked)
                };
                send(delivery).await;
            } else {
                // Woken during the linger: look again (the flushes taken go back first).
                shared.book().flushes.extend(flushes);
                continue;
            }
        }
        for f in flushes {
            let _ = f.send(());
        }
        if closed {
            return;
        }
        shared.wake.notified().await;
    }
}

impl Valve for Acks {
    // `basic.qos(prefetch)` bounds what RabbitMQ sends a consumer ahead of its acks, so a
    // lane's buffer never grows past `prefetch` messages: there is nothing to pause.
    fn pause(&self) {}
    fn resume(&self) {}
}

impl LaneSource for Acks {
    fn commit_through(&self, offset: i64) {
        if !self.manual {
            return;
        }
        let tag = offset as u64;
        let wake = {
            let mut book = self.shared.book();
            if tag <= book.settled {
                return;
            }
            // The first settled delivery after an ack starts the linger; a full batch
            // has it acked at once (told once per ack, not per commit).
            let first = book.settled <= book.acked;
            book.settled = tag;
            let full = !book.urged && tag - book.acked >= self.batch;
            book.urged |= full;
            first || full
        };
        if wake {
            self.shared.wake.notify_one();
        }
    }
}

/// How long settled deliveries wait for more before they are acked (fewer ack frames for
/// the broker to process, at most this much later).
const ACK_LINGER: Duration = Duration::from_millis(2);

/// Sends the `multiple` ack of `delivery` (the highest settled one), if it is one of this
/// channel's.
async fn ack(delivery: Option<(u64, Acker)>) {
    let Some((tag, acker)) = delivery else {
        // Never a delivery of this channel: nothing to ack (the broker would close it).
        tracing::debug!("ack not sent: no such delivery");
        return;
    };
    let multiple = BasicAckOptions { multiple: true };
    match acker.ack(multiple).await {
        Ok(true) => {}
        // The channel is gone: RabbitMQ delivers the messages again.
        Ok(false) => tracing::debug!(tag, "ack not sent: channel closed"),
        Err(e) => tracing::debug!(tag, error = %e, "ack not sent: channel closed"),
    }
}

#[cfg(test)]
mod tests;
