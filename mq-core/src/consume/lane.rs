//! One lane: an ordered stream of records (a Kafka partition; a RabbitMQ consumer; a
//! partition of the in-memory broker) and the task that runs them through the listener.
//!
//! The transport [`push`](Lane::push)es records in the order it received them. The lane
//! task takes them one at a time (partition order) or, in key order, runs records of
//! different keys concurrently while records of one key wait for each other. It tells the
//! transport, through [`LaneSource::commit_through`], how far everything it received is
//! done, and never a lower offset than before.
//!
//! A lane that is [closed](Lane::close) takes no new record; once it is *fenced* it can no
//! longer commit anything, so a lane left behind by a drain that timed out cannot move a
//! partition's offset under its next owner.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::buffer::{Batch, Buffer, Recycle};
use super::flow::{Flow, Valve};
use super::offset_tracker::OffsetTracker;
use super::{LaneKey, LaneSettings, Ordering as RecordOrdering};
use crate::control::Passed;
use crate::pipeline::{Disposition, ListenerRuntime, WorkerLocal};
use crate::record::Record;

/// What a lane needs from the transport that feeds it.
pub(crate) trait LaneSource: Valve {
    /// Every record of the lane through `offset` is done: the transport may commit past it
    /// (Kafka: store `offset`, committed as `offset + 1`).
    fn commit_through(&self, offset: i64);

    /// A record of the lane came out of the listener's pipeline as `disposition` (the
    /// in-memory broker reports these; transports have nothing to do).
    fn finished(&self, disposition: Disposition) {
        let _ = disposition;
    }
}

/// Commits a lane does before it stores them, while it keeps receiving records.
const COMMIT_EVERY: u32 = 64;

/// How many times a record whose processing panicked outside the handler is tried again
/// before the lane stops and reports itself failed.
const PANIC_RETRIES: u32 = 3;

/// The live facts of a lane that health checks and the hung-handler watchdog read.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// When the oldest record now in the handler entered it, on the lanes' clock
    /// ([`now_ms`]; 0: idle).
    pub(crate) since_ms: AtomicI64,
    /// That record's offset.
    pub(crate) offset: AtomicI64,
    /// The lane stopped for good: processing panicked over and over.
    pub(crate) failed: AtomicBool,
}

/// The part of a lane shared by its task and the transport.
pub(crate) struct LaneShared {
    pub(crate) key: LaneKey,
    pub(crate) epoch: u64,
    pub(crate) stop: CancellationToken,
    /// Set with `stop`: read for every record, where the token would take its lock.
    closed: AtomicBool,
    pub(crate) ended: CancellationToken,
    pub(crate) activity: Activity,
    pub(crate) flow: Flow,
    fenced: Mutex<bool>,
    source: Arc<dyn LaneSource>,
}

impl LaneShared {
    /// Commits through `offset` unless the lane is fenced.
    fn commit(&self, offset: i64) {
        let fenced = self.fenced.lock().unwrap_or_else(|p| p.into_inner());
        if !*fenced {
            self.source.commit_through(offset);
        }
    }

    /// From now on the lane commits nothing.
    pub(crate) fn fence(&self) {
        *self.fenced.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }
}

/// What a new lane is opened with.
pub(crate) struct Opening {
    pub(crate) key: LaneKey,
    pub(crate) epoch: u64,
    pub(crate) source: Arc<dyn LaneSource>,
    /// Bytes it may buffer before its source is paused.
    pub(crate) share: usize,
    /// The `ended` token of the partition's previous lane.
    pub(crate) predecessor: Option<CancellationToken>,
    /// Where spent records go back for reuse (the Kafka transport refills them).
    pub(crate) recycle: Option<Recycle>,
}

/// The transport's handle on one lane.
#[derive(Clone)]
pub(crate) struct Lane {
    pub(crate) shared: Arc<LaneShared>,
    tx: mpsc::UnboundedSender<Batch>,
    abort: tokio::task::AbortHandle,
}

impl Lane {
    /// Starts a lane. Its task waits for `predecessor` (the previous lane of the same
    /// partition) to end before it runs a record, so two lanes of one partition never run
    /// handlers at the same time.
    pub(crate) fn start(
        opening: Opening,
        runtime: Arc<ListenerRuntime>,
        settings: LaneSettings,
        rt: &tokio::runtime::Handle,
    ) -> Lane {
        let Opening {
            key,
            epoch,
            source,
            share,
            predecessor,
            recycle,
        } = opening;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(LaneShared {
            key,
            epoch,
            stop: CancellationToken::new(),
            closed: AtomicBool::new(false),
            ended: CancellationToken::new(),
            activity: Activity::default(),
            flow: Flow::new(share),
            fenced: Mutex::new(false),
            source,
        });
        let task_shared = shared.clone();
        let join = rt.spawn(async move {
            // Whatever way the task ends (done, aborted, panicked), the next lane of the
            // partition may start.
            let _ended = task_shared.ended.clone().drop_guard();
            if let Some(previous) = predecessor {
                tokio::select! {
                    _ = previous.cancelled() => {}
                    _ = task_shared.stop.cancelled() => return,
                }
            }
            let local = runtime.worker_local();
            let mut buffer = Buffer::new(rx, recycle);
            let mut offsets = Offsets {
                shared: &task_shared,
                tracker: OffsetTracker::default(),
                uncommitted: 0,
            };
            match settings.ordering {
                RecordOrdering::Partition => {
                    ordered(&runtime, &local, &mut offsets, &mut buffer).await
                }
                RecordOrdering::Key => {
                    let max = settings.max_in_flight.max(1) as usize;
                    keyed(&runtime, &local, &mut offsets, &mut buffer, max).await
                }
            }
            offsets.commit();
        });
        Lane {
            shared,
            tx,
            abort: join.abort_handle(),
        }
    }

    /// Hands the lane its next record; false when the lane is closed (the record is then
    /// dropped unacknowledged: its partition's next owner reads it again).
    pub(crate) fn push(&self, record: Arc<Record>) -> bool {
        self.push_batch(Batch::of(record))
    }

    /// Hands the lane its next records, in order; false when the lane is closed (they are
    /// then dropped unacknowledged, as by [`push`](Lane::push)).
    pub(crate) fn push_batch(&self, batch: Batch) -> bool {
        if self.is_closed() {
            return false;
        }
        if batch.is_empty() {
            return true;
        }
        let bytes = batch.bytes;
        self.shared.flow.added(bytes, &*self.shared.source);
        if self.tx.send(batch).is_err() {
            self.shared.flow.taken(bytes, &*self.shared.source);
            return false;
        }
        true
    }

    /// Whether a batch of `bytes` fits in the lane's share of the read-ahead budget now
    /// (see [`Flow::has_room`](super::flow::Flow::has_room)); a closed lane takes nothing,
    /// so it has room.
    pub(crate) fn has_room(&self, bytes: usize) -> bool {
        self.is_closed() || self.shared.flow.has_room(bytes)
    }

    /// Whether the lane has more buffered than it needs to keep busy (see
    /// [`Flow::is_deep`](super::flow::Flow::is_deep)); a closed lane takes nothing, so it
    /// is not.
    pub(crate) fn is_deep(&self) -> bool {
        !self.is_closed() && self.shared.flow.is_deep()
    }

    /// The lane did not work its buffer down while the transport waited: see
    /// [`Flow::set_slow`](super::flow::Flow::set_slow).
    pub(crate) fn set_slow(&self) {
        self.shared.flow.set_slow();
    }

    /// Takes no new record; the one in the handler finishes.
    pub(crate) fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.stop.cancel();
    }

    /// Fences the lane and cancels its task at its next await (a handler still running
    /// after the drain timeout): its record is delivered again to the partition's next
    /// lane, which starts only once this task has ended.
    pub(crate) fn kill(&self) {
        self.shared.fence();
        self.abort.abort();
    }

    /// Whether the lane takes no new records.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Whether the task has ended.
    pub(crate) fn has_ended(&self) -> bool {
        self.shared.ended.is_cancelled()
    }
}

/// What the lane task commits: its offset tracker and how many done records it has not
/// committed yet.
struct Offsets<'a> {
    shared: &'a LaneShared,
    tracker: OffsetTracker,
    uncommitted: u32,
}

impl Offsets<'_> {
    /// Commits what is done, if anything new is.
    fn commit(&mut self) {
        self.uncommitted = 0;
        if let Some(offset) = self.tracker.take_committable() {
            self.shared.commit(offset);
        }
    }

    fn done(&mut self, offset: i64) {
        self.tracker.done(offset);
        self.uncommitted += 1;
        if self.uncommitted >= COMMIT_EVERY {
            self.commit();
        }
    }

    /// The next record from the buffer, committing what is done before waiting for one;
    /// `None` once the lane is stopped.
    async fn next(&mut self, buffer: &mut Buffer) -> Option<Arc<Record>> {
        let record = loop {
            if let Some(r) = buffer.pop() {
                break r;
            }
            buffer.give_back();
            let batch = match buffer.channel().try_recv() {
                Ok(b) => b,
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    self.commit();
                    match spin_recv(buffer.channel()).await {
                        Some(b) => b,
                        None => tokio::select! {
                            biased;
                            _ = self.shared.stop.cancelled() => return None,
                            b = buffer.channel().recv() => b?,
                        },
                    }
                }
            };
            self.shared.flow.taken(batch.bytes, &*self.shared.source);
            if let Some(r) = buffer.load(batch) {
                break r;
            }
        };
        if self.shared.closed.load(Ordering::Acquire) {
            return None;
        }
        self.tracker.received(record.offset);
        Some(record)
    }
}

/// Yields a few times before the lane parks: while the transport is routing a burst, the
/// next batch is usually a moment away, and parking then means a thread wake-up (a futex
/// round trip) for every batch.
async fn spin_recv(rx: &mut mpsc::UnboundedReceiver<Batch>) -> Option<Batch> {
    for _ in 0..SPINS {
        tokio::task::yield_now().await;
        if let Ok(b) = rx.try_recv() {
            return Some(b);
        }
    }
    None
}

/// Yields of [`spin_recv`] (64 measured better than 8: 0.71 against 0.67 of the tuned loop
/// on 6 partitions, BENCHMARKS.md round 3).
const SPINS: u32 = 64;

/// Partition order: one record at a time.
async fn ordered(
    runtime: &ListenerRuntime,
    local: &WorkerLocal,
    offsets: &mut Offsets<'_>,
    buffer: &mut Buffer,
) {
    let shared = offsets.shared;
    while let Some(record) = offsets.next(buffer).await {
        tokio::task::consume_budget().await;
        let offset = record.offset;
        let started = Instant::now();
        shared.activity.offset.store(offset, Ordering::Relaxed);
        shared
            .activity
            .since_ms
            .store(ms_of(started), Ordering::Relaxed);
        let disposition = process_supervised(runtime, local, shared, &record, started).await;
        shared.activity.since_ms.store(0, Ordering::Relaxed);
        // Keep the spent record for reuse by the transport, unless a handler kept it.
        buffer.spend(record);
        let Some(disposition) = disposition else {
            return;
        };
        shared.source.finished(disposition);
        if !disposition.is_done() {
            return;
        }
        offsets.done(offset);
    }
}

/// Key order: records of one key one after the other, different keys concurrently, at
/// most `max_in_flight` records taken from the buffer and not done.
async fn keyed(
    runtime: &ListenerRuntime,
    local: &WorkerLocal,
    offsets: &mut Offsets<'_>,
    buffer: &mut Buffer,
    max_in_flight: usize,
) {
    let shared = offsets.shared;
    let start = |record: Arc<Record>, started: Instant| async move {
        let (key, offset) = (record.key.clone(), record.offset);
        let d = process_supervised(runtime, local, shared, &record, started).await;
        (key, offset, d)
    };
    let mut running = FuturesUnordered::new();
    // Keys with a record running, and the records of that key waiting behind it.
    let mut busy: HashMap<Option<Vec<u8>>, VecDeque<Arc<Record>>> = HashMap::new();
    // When each running record started, by offset (the oldest is the lane's activity).
    let mut started: BTreeMap<i64, i64> = BTreeMap::new();
    let mut stopping = false;
    loop {
        let can_take = !stopping && offsets.tracker.pending() < max_in_flight;
        if running.is_empty() && !can_take {
            return;
        }
        tokio::select! {
            biased;
            Some((key, offset, d)) = running.next(), if !running.is_empty() => {
                started.remove(&offset);
                let oldest = started.iter().min_by_key(|(_, since)| **since);
                if let Some((o, since)) = oldest {
                    shared.activity.offset.store(*o, Ordering::Relaxed);
                    shared.activity.since_ms.store(*since, Ordering::Relaxed);
                } else {
                    shared.activity.since_ms.store(0, Ordering::Relaxed);
                }
                if let Some(d) = d {
                    shared.source.finished(d);
                }
                if !Option::is_some_and(d, Disposition::is_done) {
                    // Interrupted or failed for good: let the others finish, take no more.
                    stopping = true;
                    busy.clear();
                    continue;
                }
                offsets.done(offset);
                if stopping {
                    continue;
                }
                match busy.get_mut(&key).and_then(VecDeque::pop_front) {
                    Some(next) => {
                        let now = Instant::now();
                        started.insert(next.offset, ms_of(now));
                        running.push(start(next, now));
                    }
                    None => {
                        busy.remove(&key);
                    }
                }
            }
            record = offsets.next(buffer), if can_take => {
                let Some(record) = record else {
                    stopping = true;
                    continue;
                };
                match busy.get_mut(&record.key) {
                    Some(queue) => queue.push_back(record),
                    None => {
                        busy.insert(record.key.clone(), VecDeque::new());
                        let now = Instant::now();
                        if started.is_empty() {
                            shared.activity.offset.store(record.offset, Ordering::Relaxed);
                            shared.activity.since_ms.store(ms_of(now), Ordering::Relaxed);
                        }
                        started.insert(record.offset, ms_of(now));
                        running.push(start(record, now));
                    }
                }
            }
        }
    }
}

/// Runs one record; a panic outside the handler (which `process` already catches) is
/// retried a few times, then the lane reports itself failed and stops (`None`), holding
/// its partition's offset: nothing behind the record is committed.
async fn process_supervised(
    runtime: &ListenerRuntime,
    local: &WorkerLocal,
    shared: &LaneShared,
    record: &Arc<Record>,
    started: Instant,
) -> Option<Disposition> {
    let mut tries = 0;
    let mut started = started;
    // A paused listener holds the record here, before its handler (its offset or ack is
    // not given while it waits).
    match runtime.gate().pass(&shared.stop).await {
        Passed::At => {}
        Passed::AfterWait => {
            started = Instant::now();
            let since = ms_of(started);
            shared.activity.since_ms.store(since, Ordering::Relaxed);
        }
        Passed::Stopped => return None,
    }
    loop {
        let run = runtime.process(local, record.clone(), &shared.stop, started);
        match AssertUnwindSafe(run).catch_unwind().await {
            Ok(d) => return Some(d),
            Err(_) if tries < PANIC_RETRIES => {
                tries += 1;
                tracing::error!(
                    listener = runtime.spec.name,
                    topic = %shared.key.topic,
                    partition = shared.key.partition,
                    offset = record.offset,
                    tries,
                    "processing the record panicked outside the handler; trying again"
                );
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shared.stop.cancelled() => return None,
                }
                started = Instant::now();
            }
            Err(_) => {
                tracing::error!(
                    listener = runtime.spec.name,
                    topic = %shared.key.topic,
                    partition = shared.key.partition,
                    offset = record.offset,
                    "processing the record keeps panicking: the lane stops and holds its offset"
                );
                shared.activity.failed.store(true, Ordering::Relaxed);
                return None;
            }
        }
    }
}

/// Milliseconds on the lanes' clock: monotonic, since the first lane of the process
/// looked, and never 0 (0 in [`Activity::since_ms`] means idle).
pub(crate) fn now_ms() -> i64 {
    ms_of(Instant::now())
}

/// `at` on the lanes' clock (see [`now_ms`]). The lane reads the clock once per record,
/// for this stamp and the handler's timer.
fn ms_of(at: Instant) -> i64 {
    static ANCHOR: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let anchor = *ANCHOR.get_or_init(Instant::now);
    at.saturating_duration_since(anchor).as_millis() as i64 + 1
}
