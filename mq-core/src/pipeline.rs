//! The pipeline: the path of one record through a listener, the same on every transport:
//! tracing span → decode + handler (panics caught) → what the failure
//! [policy](crate::failure::policy) decides (retry with backoff, a retry route, the
//! dead letter) → the [recoverer](crate::failure::recoverer) publishes what the
//! transport's [routes](crate::failure::routes) build. No broker is named here: what
//! differs per broker is asked of the routes.
//!
//! The caller (a partition worker) acknowledges the record, i.e. lets its offset be
//! committed, only for [`Disposition::Handled`], [`Disposition::DeadLettered`] and
//! [`Disposition::Skipped`]; [`Disposition::Interrupted`] means shutdown came first and the
//! record must be delivered again.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::control::Gate;
use crate::envelope::{short_type_name_of, DecodeLimits};
use crate::failure::info::FailureInfo;
use crate::failure::policy::{self, Action, Failed, FailureKind, Source};
use crate::failure::recoverer::{self, Outcome};
use crate::failure::routes::{FailureRoutes, Redelivery};
use crate::handler::invocation::{Claims, Failure, Invocation};
use crate::handler::{HandlerError, ListenerEnv, ReplyReader, StateMap};
use crate::metrics::{ListenerMetrics, Metrics, WorkerMetrics};
use crate::publisher::Publisher;
use crate::record::Record;
use crate::registry::ListenerSpec;

/// The `exception` label of a handler call that succeeded after its record's channel
/// closed (the acknowledgement was lost: the broker delivers the record again).
const ACK_LOST: &str = "AckLost";

/// The exception type of a dead letter whose earlier deliveries used up every attempt.
const DELIVERIES_EXHAUSTED: &str = "mq_core::DeliveryAttemptsExhausted";

/// What became of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The handler succeeded.
    Handled,
    /// It went to the dead-letter topic (poison, permanent error, retries exhausted).
    DeadLettered,
    /// It failed for good and the DLT is disabled: logged and skipped.
    Skipped,
    /// Retry-topics mode: republished to its next retry topic.
    Rescheduled,
    /// Shutdown interrupted retrying or dead-lettering: do not commit it.
    Interrupted,
}

impl Disposition {
    /// True when the record's offset may be committed.
    pub fn is_done(self) -> bool {
        self != Disposition::Interrupted
    }
}

/// What follows a failed attempt.
enum Next {
    /// Call the handler again (the backoff was waited).
    Retry,
    /// The record is done with (or interrupted).
    Done(Disposition),
}

/// What one worker keeps to itself, so that records handled on different cores do not
/// write the same cache lines: its own copy of the listener's environment (the reference
/// counts cloned for every record) and its own metric shards.
pub(crate) struct WorkerLocal {
    env: Arc<ListenerEnv>,
    metrics: WorkerMetrics,
}

/// Everything the workers of one listener share.
pub(crate) struct ListenerRuntime {
    pub(crate) spec: ListenerSpec,
    env: Arc<ListenerEnv>,
    metrics: ListenerMetrics,
    /// The failure conventions of the transport the listener runs on.
    routes: Arc<dyn FailureRoutes>,
    /// Passed before every handler call (pause and resume).
    gate: Gate,
}

impl ListenerRuntime {
    pub(crate) fn new(
        spec: ListenerSpec,
        publisher: Publisher,
        state: StateMap,
        limits: DecodeLimits,
        metrics: &Arc<Metrics>,
        routes: Arc<dyn FailureRoutes>,
    ) -> Self {
        let listener_metrics = metrics.listener_on(spec.name, routes.timer());
        let inbox = spec
            .idempotent
            .then(|| crate::inbox::ListenerInbox::for_listener(&state, &spec) as Arc<dyn Claims>);
        let replies = routes.clone();
        let reply_to: ReplyReader = Arc::new(move |record: &Record| replies.reply_address(record));
        ListenerRuntime {
            env: Arc::new(ListenerEnv {
                listener: spec.name,
                publisher,
                state,
                limits,
                inbox,
                reply_to: Some(reply_to),
            }),
            spec,
            metrics: listener_metrics,
            routes,
            gate: Gate::default(),
        }
    }

    /// This runtime passing `gate` before every handler call.
    pub(crate) fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = gate;
        self
    }

    /// The gate records pass before their handler call (pause and resume).
    pub(crate) fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The state of a new worker of this listener.
    pub(crate) fn worker_local(&self) -> WorkerLocal {
        WorkerLocal {
            env: Arc::new(ListenerEnv::clone(&self.env)),
            metrics: self.metrics.worker(),
        }
    }

    /// Runs `record` to completion; `cancel` interrupts retry and dead-letter backoffs
    /// (shutdown, or the partition was revoked). `started` is when the caller handed it
    /// over (the handler's timer starts there: one clock read per record less).
    pub(crate) async fn process(
        &self,
        local: &WorkerLocal,
        record: Arc<Record>,
        cancel: &CancellationToken,
        started: Instant,
    ) -> Disposition {
        // The per-record span is DEBUG: at INFO, creating and formatting a span for every
        // record cost ~1.5 µs, as much as decoding it. Failure logs carry the same fields
        // through `failure_span` at any level.
        let span = tracing::debug_span!(
            "message",
            listener = self.spec.name,
            topic = %record.topic,
            partition = record.partition,
            offset = record.offset,
            event_id = tracing::field::Empty,
            correlation_id = tracing::field::Empty,
        );
        // The `process` span of trace export: disabled (a level check) unless an export
        // layer is installed.
        let traced = crate::telemetry::spans::process(
            self.routes.messaging(),
            self.spec.name,
            &self.spec.group,
            &record,
        );
        // Below DEBUG the span is disabled: entering it on every poll of the future is
        // then work for nothing.
        if span.is_disabled() && traced.is_disabled() {
            return self.process_in_span(local, record, cancel, started).await;
        }
        let disposition = self
            .process_in_span(local, record, cancel, started)
            // The exported span innermost: it is the current span of the handler, so
            // what the handler publishes is its child (also when the log span is on).
            .instrument(traced.clone())
            .instrument(span)
            .await;
        match disposition {
            Disposition::DeadLettered => crate::telemetry::spans::failed(&traced, "dead_lettered"),
            Disposition::Skipped => crate::telemetry::spans::failed(&traced, "skipped"),
            _ => {}
        }
        disposition
    }

    async fn process_in_span(
        &self,
        local: &WorkerLocal,
        record: Arc<Record>,
        cancel: &CancellationToken,
        started: Instant,
    ) -> Disposition {
        let mut handed_over = Some(started);
        let arrival = self.routes.arrival(&self.spec, &record);
        let source = arrival.source;
        let mut attempt = policy::attempt_of(source, arrival.attempt);
        // Earlier deliveries the broker made count as attempts (a handler that outlives
        // RabbitMQ's `consumer_timeout` must not loop as attempt 1 for ever); only those the
        // transport saw end under a running handler may use up the last one.
        let redelivery = self.routes.deliveries_before(&self.spec, &record);
        if redelivery.before > 0 {
            let max = self.spec.retry.max_attempts;
            if redelivery.in_handler >= max {
                return self.exhausted(&record, source, redelivery, cancel).await;
            }
            attempt = attempt
                .saturating_add(redelivery.before)
                .min(max.max(attempt));
        }
        if arrival.due_ms.is_some() {
            // Only a retry route's own records are held back, and never for longer than
            // the listener's longest backoff, whatever their headers say.
            let now = chrono::Utc::now().timestamp_millis();
            let wait = policy::due_wait(source, arrival.due_ms, now, self.spec.retry.max_interval);
            if !wait.is_zero() {
                handed_over = None;
                if !pause(wait, cancel).await {
                    return Disposition::Interrupted;
                }
            }
        }
        let mut failure_span = None;
        loop {
            let invocation = Invocation {
                env: local.env.clone(),
                record: record.clone(),
                attempt,
                extension: None,
            };
            local.metrics.in_flight.inc();
            let started = handed_over.take().unwrap_or_else(Instant::now);
            let call = AssertUnwindSafe((self.spec.handler)(invocation)).catch_unwind();
            // `handler-timeout`: a call running longer is dropped (cancelled) and counts
            // as a transient failure.
            let caught = match self.spec.handler_timeout {
                None => Ok(call.await),
                Some(limit) => tokio::time::timeout(limit, call).await.map_err(|_| limit),
            };
            let result = match caught {
                Ok(Ok(result)) => result,
                Ok(Err(panic)) => Err(Failure::Handler(HandlerError::from_panic(&*panic))),
                Err(limit) => Err(Failure::Handler(HandlerError::timed_out(limit))),
            };
            let elapsed = started.elapsed();
            local.metrics.in_flight.dec();
            let failure = match result {
                Ok(()) if self.routes.ack_lost(&record) => {
                    // Its channel closed while the handler ran: the broker delivers it
                    // again, so this was no success.
                    self.metrics.failure(elapsed, ACK_LOST);
                    tracing::warn!(attempt, elapsed = ?elapsed,
                        "handler finished after the message's channel closed: not acknowledged, the broker delivers it again");
                    return Disposition::Handled;
                }
                Ok(()) => {
                    local.metrics.success(elapsed);
                    tracing::debug!(attempt, "handled");
                    return Disposition::Handled;
                }
                Err(failure) => failure,
            };
            // Failure paths are rare: they log inside an INFO span with the record's ids.
            let span = failure_span
                .get_or_insert_with(|| self.failure_span(&record))
                .clone();
            let next = self
                .after_failure(&record, source, failure, elapsed, attempt, cancel)
                .instrument(span)
                .await;
            match next {
                Next::Retry => attempt += 1,
                Next::Done(disposition) => return disposition,
            }
        }
    }

    /// Carries out what the [policy](crate::failure::policy) decides for a failed attempt.
    async fn after_failure(
        &self,
        record: &Record,
        source: Source,
        failure: Failure,
        elapsed: Duration,
        attempt: u32,
        cancel: &CancellationToken,
    ) -> Next {
        let (kind, info) = match failure {
            Failure::Decode(e) => {
                self.metrics.decode_errors.inc();
                self.metrics.failure(elapsed, e.kind());
                tracing::warn!(error = %e, "poison record: cannot decode; dead-lettering without retry");
                (FailureKind::Poison, FailureInfo::of_decode(&e))
            }
            Failure::Handler(e) => {
                self.metrics
                    .failure(elapsed, short_type_name_of(e.type_name()));
                let kind = if e.is_transient() {
                    FailureKind::Transient
                } else {
                    FailureKind::Permanent
                };
                (kind, FailureInfo::of_handler(&e))
            }
        };
        let retry = &self.spec.retry;
        let failed = Failed {
            kind,
            attempt,
            now_ms: chrono::Utc::now().timestamp_millis(),
            jitter_sample: if retry.jitter {
                policy::jitter_sample()
            } else {
                0.0
            },
        };
        let action = policy::decide(&failed, retry, self.spec.dlt.enabled);
        match action {
            Action::RetryAfter(delay) => {
                self.metrics.retries.inc();
                tracing::warn!(attempt, error = %info.message, retry_in = ?delay, "handler failed; will retry");
                if !pause(delay, cancel).await {
                    return Next::Done(Disposition::Interrupted);
                }
                Next::Retry
            }
            Action::Reschedule {
                index,
                attempt: next,
                due_ms,
            } => {
                self.metrics.retries.inc();
                tracing::warn!(attempt, error = %info.message, retry_in_ms = due_ms - failed.now_ms, "handler failed; rescheduling");
                Next::Done(
                    self.reschedule(record, source, index, next, due_ms, &info, cancel)
                        .await,
                )
            }
            Action::DeadLetter | Action::Skip => {
                // A record on its way to the dead letter is kept, so WARN (as Spring's
                // dead-letter recoverer: no ERROR when the recovery succeeds); a skipped one
                // is lost, so ERROR.
                if kind != FailureKind::Poison && action == Action::DeadLetter {
                    tracing::warn!(attempt, error = %info.message, error_type = %info.exception_type,
                        permanent = kind == FailureKind::Permanent, "handler failed for good; dead-lettering");
                } else if kind != FailureKind::Poison {
                    tracing::error!(attempt, error = %info.message, error_type = %info.exception_type,
                        permanent = kind == FailureKind::Permanent, "handler failed for good");
                }
                if action == Action::Skip {
                    tracing::error!("dead-letter topic disabled: record skipped");
                    return Next::Done(Disposition::Skipped);
                }
                Next::Done(self.dead_letter(record, source, kind, &info, cancel).await)
            }
        }
    }

    /// Dead-letters a record the broker delivered again after every attempt ended with
    /// its channel closed under the handler: no further attempt.
    async fn exhausted(
        &self,
        record: &Record,
        source: Source,
        redelivery: Redelivery,
        cancel: &CancellationToken,
    ) -> Disposition {
        let message = format!(
            "delivered {} times before without being acknowledged, {} of them closed under a \
             running handler (a broker's consumer timeout, a lost connection); \
             max-attempts is {}: dead-lettered without another attempt",
            redelivery.before, redelivery.in_handler, self.spec.retry.max_attempts
        );
        let info = FailureInfo {
            exception_type: DELIVERIES_EXHAUSTED.to_owned(),
            cause_type: None,
            trace: format!("{DELIVERIES_EXHAUSTED}: {message}"),
            message,
        };
        let span = self.failure_span(record);
        tracing::error!(parent: &span, error = %info.message, "redelivered too often");
        self.dead_letter(record, source, FailureKind::Permanent, &info, cancel)
            .instrument(span)
            .await
    }

    /// An INFO span with the record's coordinates and ids, for the log lines of failures.
    fn failure_span(&self, record: &Record) -> tracing::Span {
        let (event_id, correlation_id) = crate::envelope::peek_ids(record);
        tracing::info_span!(
            "message",
            listener = self.spec.name,
            topic = %record.topic,
            partition = record.partition,
            offset = record.offset,
            event_id = event_id.as_deref(),
            correlation_id = correlation_id.as_deref(),
        )
    }

    /// Dead-letters the record where its transport's conventions send it (see
    /// [`FailureRoutes::dead_letter`]); `Interrupted` when shutdown came first (then the
    /// record is not acknowledged, so it is read again).
    async fn dead_letter(
        &self,
        record: &Record,
        source: Source,
        kind: FailureKind,
        info: &FailureInfo,
        cancel: &CancellationToken,
    ) -> Disposition {
        let out = self
            .routes
            .dead_letter(&self.spec, record, source, kind, info);
        let destination = out.topic.clone();
        match recoverer::publish(&self.env.publisher, out, Some(&*self.routes), cancel).await {
            Outcome::Delivered(delivery, shrink) => {
                self.metrics.dead_lettered.inc();
                tracing::info!(dead_letter = %destination, partition = delivery.partition, offset = delivery.offset, shrink = ?shrink, "dead-lettered");
                Disposition::DeadLettered
            }
            Outcome::Rejected(_) | Outcome::Interrupted => Disposition::Interrupted,
        }
    }

    /// Retry-topics mode: republishes the record to retry topic `index` (a queue
    /// listener's: retry queue `index`), where it will be delivery `attempt`, due at
    /// `due_ms`. A record the broker refuses is dead-lettered.
    #[allow(clippy::too_many_arguments)]
    async fn reschedule(
        &self,
        record: &Record,
        source: Source,
        index: u32,
        attempt: u32,
        due_ms: i64,
        info: &FailureInfo,
        cancel: &CancellationToken,
    ) -> Disposition {
        let out = self
            .routes
            .reschedule(&self.spec, record, source, index, attempt, due_ms, info);
        let target = out.topic.clone();
        match recoverer::publish(&self.env.publisher, out, None, cancel).await {
            Outcome::Delivered(..) => {
                tracing::info!(retry = %target, "rescheduled on a retry route");
                Disposition::Rescheduled
            }
            Outcome::Rejected(e) => {
                tracing::error!(retry = %target, error = %e, "retry route refused the record; dead-lettering it");
                self.dead_letter(record, source, FailureKind::Transient, info, cancel)
                    .await
            }
            Outcome::Interrupted => Disposition::Interrupted,
        }
    }
}

/// Sleeps unless `cancel` fires first; false when interrupted.
async fn pause(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = cancel.cancelled() => false,
    }
}
