//! The lanes of one consumer: opened on assignment, closed on revocation and shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::buffer::Recycle;
use super::lane::{Lane, LaneSource, Opening};
use super::{LaneKey, LaneSettings};
use crate::pipeline::ListenerRuntime;
use crate::record::Record;

/// What the actuator and tests see of one lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LaneView {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) epoch: u64,
    /// Milliseconds the oldest record now in the handler has been there (0: idle).
    pub(crate) in_handler_ms: i64,
    /// That record's offset.
    pub(crate) offset: i64,
    pub(crate) buffered_bytes: usize,
    pub(crate) paced_high_bytes: usize,
    pub(crate) paused: bool,
    pub(crate) failed: bool,
    /// Closed (revoked or shutting down) but still running.
    pub(crate) closing: bool,
}

#[derive(Default)]
struct Lanes {
    open: HashMap<LaneKey, Lane>,
    /// For each partition ever opened, the `ended` token of its latest lane.
    latest: HashMap<LaneKey, CancellationToken>,
    /// Lanes closed but still running (drain timed out and killed, or draining).
    closing: Vec<Lane>,
}

impl std::fmt::Debug for LaneSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneSet")
            .field("listener", &self.runtime.spec.name)
            .field("lanes", &self.views())
            .finish()
    }
}

/// The lanes of one consumer.
pub(crate) struct LaneSet {
    runtime: Arc<ListenerRuntime>,
    settings: LaneSettings,
    lanes: Mutex<Lanes>,
    epochs: AtomicU64,
    rt: tokio::runtime::Handle,
    recycle: Mutex<Option<Recycle>>,
}

impl LaneSet {
    /// No lanes yet; lanes' tasks will run on `rt`.
    pub(crate) fn new(
        runtime: Arc<ListenerRuntime>,
        settings: LaneSettings,
        rt: tokio::runtime::Handle,
    ) -> LaneSet {
        LaneSet {
            runtime,
            settings,
            lanes: Mutex::new(Lanes::default()),
            epochs: AtomicU64::new(0),
            rt,
            recycle: Mutex::new(None),
        }
    }

    /// From now on, lanes opened send their spent records (those no handler kept) to
    /// `tx`, for the transport to refill instead of allocating new ones.
    pub(crate) fn recycle_into(&self, tx: Recycle) {
        *self.recycle.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    /// The listener the lanes run.
    pub(crate) fn runtime(&self) -> &Arc<ListenerRuntime> {
        &self.runtime
    }

    /// The settings the lanes run with.
    pub(crate) fn settings(&self) -> &LaneSettings {
        &self.settings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a lane for `key` fed by `source`. A lane already open for `key` is closed
    /// first (its records are delivered again). Returns the new lane's epoch.
    pub(crate) fn open(&self, key: LaneKey, source: Arc<dyn LaneSource>) -> u64 {
        let mut lanes = self.lock();
        if let Some(old) = lanes.open.remove(&key) {
            old.close();
            lanes.closing.push(old);
        }
        let epoch = self.epochs.fetch_add(1, Ordering::Relaxed) + 1;
        let predecessor = lanes.latest.get(&key).cloned();
        let share = self.share(lanes.open.len() + 1);
        let opening = Opening {
            key: key.clone(),
            epoch,
            source,
            share,
            predecessor,
            recycle: self
                .recycle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        };
        let lane = Lane::start(opening, self.runtime.clone(), self.settings, &self.rt);
        lanes.latest.insert(key.clone(), lane.shared.ended.clone());
        lanes.open.insert(key, lane);
        for l in lanes.open.values() {
            l.shared.flow.set_high(share);
        }
        lanes.closing.retain(|l| !l.has_ended());
        epoch
    }

    /// Each lane's share of the consumer's read-ahead budget when `n` lanes are open.
    fn share(&self, n: usize) -> usize {
        self.settings.buffer_bytes / n.max(1)
    }

    /// The open lane of `key`.
    pub(crate) fn get(&self, key: &LaneKey) -> Option<Lane> {
        self.lock().open.get(key).cloned()
    }

    /// Routes `record` into its lane; false when no lane is open for it (then it is not
    /// acknowledged: the partition's owner reads it again).
    pub(crate) fn push(&self, key: &LaneKey, record: Arc<Record>) -> bool {
        match self.get(key) {
            Some(lane) => lane.push(record),
            None => false,
        }
    }

    /// Closes the lanes of `keys` (all when `None`): they take no new record, and the
    /// returned future waits up to the drain timeout for their in-flight records, then
    /// fences and kills the ones still running. Once it returns, no closed lane commits
    /// anything any more.
    pub(crate) fn close(
        &self,
        keys: Option<&[LaneKey]>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let closed: Vec<Lane> = {
            let mut lanes = self.lock();
            let keys: Vec<LaneKey> = match keys {
                Some(k) => k.to_vec(),
                None => lanes.open.keys().cloned().collect(),
            };
            let closed: Vec<Lane> = keys.iter().filter_map(|k| lanes.open.remove(k)).collect();
            let share = self.share(lanes.open.len());
            for l in lanes.open.values() {
                l.shared.flow.set_high(share);
            }
            lanes.closing.extend(closed.iter().cloned());
            closed
        };
        for lane in &closed {
            lane.close();
        }
        let timeout = self.settings.drain_timeout;
        let listener = self.runtime.spec.name;
        async move { drain(closed, timeout, listener).await }
    }

    /// Every lane, open or still closing.
    pub(crate) fn views(&self) -> Vec<LaneView> {
        let now = super::lane::now_ms();
        let lanes = self.lock();
        lanes
            .open
            .values()
            .chain(lanes.closing.iter().filter(|l| !l.has_ended()))
            .map(|l| {
                let a = &l.shared.activity;
                let since = a.since_ms.load(Ordering::Relaxed);
                LaneView {
                    topic: l.shared.key.topic.to_string(),
                    partition: l.shared.key.partition,
                    epoch: l.shared.epoch,
                    in_handler_ms: if since > 0 { (now - since).max(0) } else { 0 },
                    offset: a.offset.load(Ordering::Relaxed),
                    buffered_bytes: l.shared.flow.buffered(),
                    paced_high_bytes: l.shared.flow.paced_high(),
                    paused: l.shared.flow.is_paused(),
                    failed: a.failed.load(Ordering::Relaxed),
                    closing: l.is_closed(),
                }
            })
            .collect()
    }

    /// Whether an open lane other than `key`'s runs low (see
    /// [`Flow::is_low`](super::flow::Flow::is_low)): one the transport may have records
    /// for, so it should not wait for another lane that is merely deep.
    pub(crate) fn any_low(&self, key: &LaneKey) -> bool {
        self.lock()
            .open
            .iter()
            .any(|(k, l)| k != key && !l.is_closed() && l.shared.flow.is_low())
    }

    /// Open lanes.
    pub(crate) fn len(&self) -> usize {
        self.lock().open.len()
    }
}

/// Waits up to `timeout` for `lanes` to end, then fences and kills those still running.
async fn drain(lanes: Vec<Lane>, timeout: Duration, listener: &'static str) {
    if lanes.is_empty() {
        return;
    }
    let all_ended = futures::future::join_all(
        lanes
            .iter()
            .map(|l| l.shared.ended.clone())
            .map(|t| async move { t.cancelled().await }),
    );
    if tokio::time::timeout(timeout, all_ended).await.is_ok() {
        return;
    }
    for lane in lanes.iter().filter(|l| !l.has_ended()) {
        tracing::warn!(
            listener,
            topic = %lane.shared.key.topic,
            partition = lane.shared.key.partition,
            offset = lane.shared.activity.offset.load(Ordering::Relaxed),
            ?timeout,
            "handler still running after the drain timeout: cancelled; the record will be delivered again"
        );
        lane.kill();
    }
}
