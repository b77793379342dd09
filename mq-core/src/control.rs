//! Pausing and resuming listeners while the app runs (`POST /actuator/listeners/{name}`,
//! Spring's `KafkaListenerEndpointRegistry.pause/resume`): each listener has a gate
//! that its lanes pass before every handler call.
//!
//! A paused listener keeps its consumers, their group membership and their assignment: the
//! handler that runs finishes, the next records wait at the gate (their offsets or acks
//! are not given), the lanes' read-ahead fills and fetching stops as it does under any slow
//! handler (Kafka pauses the partitions, RabbitMQ stops at the prefetch). Resuming opens
//! the gate and the waiting records go on in order. Nothing is skipped or lost: a record
//! waiting at a closed gate at shutdown is not acknowledged, so it is read again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What a listener does with the records it receives.
///
/// ```
/// use mq_core::control::ListenerState;
/// let s: ListenerState = serde_json::from_str("\"paused\"").unwrap();
/// assert_eq!(s, ListenerState::Paused);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerState {
    /// Handling records.
    Running,
    /// Holding them: consumers, membership and assignment kept; no handler call starts.
    Paused,
}

/// One listener's gate.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gate {
    inner: Arc<GateInner>,
}

#[derive(Debug, Default)]
struct GateInner {
    paused: AtomicBool,
    resumed: Notify,
    /// Records waiting at the closed gate right now.
    waiting: AtomicUsize,
}

/// How a record passed the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Passed {
    /// The gate was open.
    At,
    /// It waited for a resume.
    AfterWait,
    /// `stop` came first (shutdown, or its partition was revoked).
    Stopped,
}

impl Gate {
    pub(crate) fn state(&self) -> ListenerState {
        if self.inner.paused.load(Ordering::Acquire) {
            ListenerState::Paused
        } else {
            ListenerState::Running
        }
    }

    /// Sets the state; `true` when it changed.
    pub(crate) fn set(&self, state: ListenerState) -> bool {
        let paused = state == ListenerState::Paused;
        let was = self.inner.paused.swap(paused, Ordering::AcqRel);
        if !paused {
            self.inner.resumed.notify_waiters();
        }
        was != paused
    }

    /// Records waiting at the gate right now.
    pub(crate) fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Acquire)
    }

    /// Waits until the gate is open (one atomic load when it is), or `stop` is cancelled.
    pub(crate) async fn pass(&self, stop: &CancellationToken) -> Passed {
        if !self.inner.paused.load(Ordering::Acquire) {
            return Passed::At;
        }
        self.inner.waiting.fetch_add(1, Ordering::AcqRel);
        let passed = loop {
            let resumed = self.inner.resumed.notified();
            tokio::pin!(resumed);
            resumed.as_mut().enable();
            if !self.inner.paused.load(Ordering::Acquire) {
                break Passed::AfterWait;
            }
            tokio::select! {
                _ = resumed => {}
                _ = stop.cancelled() => break Passed::Stopped,
            }
        };
        self.inner.waiting.fetch_sub(1, Ordering::AcqRel);
        passed
    }
}

/// The gates of an app's listeners, by listener name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Controls {
    gates: Arc<Mutex<BTreeMap<&'static str, Gate>>>,
}

impl Controls {
    /// The gate of `listener`, made open on first use.
    pub(crate) fn gate(&self, listener: &'static str) -> Gate {
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        gates.entry(listener).or_default().clone()
    }

    /// The gate of `listener`, if it runs in this app.
    pub(crate) fn get(&self, listener: &str) -> Option<Gate> {
        let gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        gates.get(listener).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_closed_gate_holds_records_until_resumed_or_stopped() {
        let gate = Gate::default();
        let stop = CancellationToken::new();
        assert_eq!(gate.pass(&stop).await, Passed::At);
        assert!(gate.set(ListenerState::Paused));
        assert!(!gate.set(ListenerState::Paused), "no change");
        let waiting = tokio::spawn({
            let (gate, stop) = (gate.clone(), stop.clone());
            async move { gate.pass(&stop).await }
        });
        while gate.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished(), "held while paused");
        gate.set(ListenerState::Running);
        assert_eq!(waiting.await.unwrap(), Passed::AfterWait);
        assert_eq!(gate.waiting(), 0);

        gate.set(ListenerState::Paused);
        let held = tokio::spawn({
            let (gate, stop) = (gate.clone(), stop.clone());
            async move { gate.pass(&stop).await }
        });
        while gate.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        stop.cancel();
        assert_eq!(
            held.await.unwrap(),
            Passed::Stopped,
            "shutdown does not wait for a resume"
        );
    }
}
