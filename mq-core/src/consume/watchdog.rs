//! Makes a hung handler visible: a record in the handler for longer than
//! `mq.listener.handler-warn-after` is logged at WARN, once, with its listener, topic,
//! partition, offset and the time so far. Nothing is cancelled (a handler timeout, when
//! configured, does that inside the retry loop).

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::LaneSet;
use crate::control::ListenerState;

/// How often the watchdog looks.
const TICK: Duration = Duration::from_secs(1);

/// Watches `lanes` until `stop` fires or the set is dropped.
pub(crate) fn spawn(lanes: &Arc<LaneSet>, stop: CancellationToken, rt: &tokio::runtime::Handle) {
    let weak: Weak<LaneSet> = Arc::downgrade(lanes);
    rt.spawn(async move {
        // (epoch, offset) already warned about.
        let mut warned: HashSet<(u64, i64)> = HashSet::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            let Some(lanes) = weak.upgrade() else { return };
            let warn_after = lanes.settings().warn_after.as_millis() as i64;
            let listener = lanes.runtime().spec.name;
            if lanes.runtime().gate().state() == ListenerState::Paused {
                // Its records wait at the gate, not in a handler.
                warned.clear();
                continue;
            }
            let mut stuck = HashSet::new();
            for v in lanes.views() {
                if v.in_handler_ms < warn_after || v.in_handler_ms == 0 {
                    continue;
                }
                stuck.insert((v.epoch, v.offset));
                if warned.insert((v.epoch, v.offset)) {
                    tracing::warn!(
                        listener,
                        topic = %v.topic,
                        partition = v.partition,
                        offset = v.offset,
                        in_handler = ?Duration::from_millis(v.in_handler_ms as u64),
                        "handler has been running for a long time on this record (the partition waits for it)"
                    );
                }
            }
            warned.retain(|k| stuck.contains(k));
        }
    });
}
