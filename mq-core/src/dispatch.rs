//! The path of one record through a listener, independent of the transport:
//! tracing span → decode + handler (panics caught) → what the failure
//! [policy](crate::failure::policy) decides (retry with backoff, a retry topic, the
//! dead-letter topic) → the [recoverer](crate::failure::recoverer) publishes.
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

use crate::config::RetryMode;
use crate::dead_letter::{self, FailureInfo};
use crate::envelope::{short_type_name_of, DecodeLimits};
use crate::failure::policy::{self, Action, Failed, FailureKind, Source};
use crate::failure::recoverer::{self, Outcome};
use crate::failure::spring_headers::{Original, RetryHeaders};
use crate::handler::{HandlerError, ListenerEnv, StateMap};
use crate::metrics::{ListenerMetrics, Metrics, WorkerMetrics};
use crate::private::{Failure, Invocation};
use crate::publisher::Publisher;
use crate::rabbitmq::retry_queue;
use crate::record::Record;
use crate::registry::ListenerSpec;
use crate::retry_topic;

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
}

impl ListenerRuntime {
    pub(crate) fn new(
        spec: ListenerSpec,
        publisher: Publisher,
        state: StateMap,
        limits: DecodeLimits,
        metrics: &Arc<Metrics>,
    ) -> Self {
        let listener_metrics = metrics.listener_on(spec.name, spec.is_queue_listener());
        let inbox = spec
            .idempotent
            .then(|| crate::inbox::ListenerInbox::for_listener(&state, &spec));
        ListenerRuntime {
            env: Arc::new(ListenerEnv {
                listener: spec.name,
                publisher,
                state,
                limits,
                inbox,
            }),
            spec,
            metrics: listener_metrics,
        }
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
        // Below DEBUG the span is disabled: entering it on every poll of the future is
        // then work for nothing.
        if span.is_disabled() {
            return self.process_in_span(local, record, cancel, started).await;
        }
        self.process_in_span(local, record, cancel, started)
            .instrument(span)
            .await
    }

    async fn process_in_span(
        &self,
        local: &WorkerLocal,
        record: Arc<Record>,
        cancel: &CancellationToken,
        started: Instant,
    ) -> Disposition {
        let mut handed_over = Some(started);
        let source = self.source_of(&record);
        let mut attempt = 1;
        if let (Source::RetryTopic { .. }, true) = (source, self.spec.is_queue_listener()) {
            // Back from a retry queue: its TTL was the wait.
            attempt = policy::attempt_of(source, retry_queue::attempt(&record.headers));
        } else if let Source::RetryTopic { .. } = source {
            // Only a retry topic's own records are held back, and never for longer than
            // the listener's longest backoff, whatever their headers say.
            let headers = RetryHeaders::read(&record.headers);
            attempt = policy::attempt_of(source, headers.attempt);
            let now = chrono::Utc::now().timestamp_millis();
            let wait = policy::due_wait(source, headers.due_ms, now, self.spec.retry.max_interval);
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
                tx: None,
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

    /// Where `record` was read: the listener's own topic, or one of its retry topics (only
    /// in retry-topics mode; elsewhere a `-retry-N` name is just a name).
    fn source_of(&self, record: &Record) -> Source {
        if self.spec.retry.mode != RetryMode::Topics {
            return Source::Main;
        }
        if self.spec.is_queue_listener() {
            // A retry queue dead-letters back through the default exchange.
            let via_default = record
                .headers
                .get_str(crate::rabbitmq::headers::RECEIVED_EXCHANGE)
                == Some("");
            return match retry_queue::attempt(&record.headers) {
                Some(attempt) if via_default => Source::RetryTopic { index: attempt - 2 },
                _ => Source::Main,
            };
        }
        let base = retry_topic::source_of(&record.topic, &self.spec.topics);
        match retry_topic::index_of(&record.topic) {
            Some(index) if base.len() < record.topic.len() => Source::RetryTopic { index },
            _ => Source::Main,
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
                if kind != FailureKind::Poison {
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

    /// The record on the source topic: `record` itself, or, for a record read from a retry
    /// topic, the one its `kafka_dlt-original-*` headers name (Spring keeps them across hops).
    fn original(&self, record: &Record, source: Source) -> Original {
        match source {
            Source::RetryTopic { .. } => {
                Original::read(&record.headers).unwrap_or_else(|| Original::of(record))
            }
            Source::Main => Original::of(record),
        }
    }

    /// Dead-letters the record to its topic (the default one, or the route of
    /// `mq.listener.dlt.routes` for its failure; see [`recoverer::publish`]); `Interrupted` when shutdown
    /// came first (then the record is not acknowledged, so it is read again).
    async fn dead_letter(
        &self,
        record: &Record,
        source: Source,
        kind: FailureKind,
        info: &FailureInfo,
        cancel: &CancellationToken,
    ) -> Disposition {
        if self.spec.is_queue_listener() {
            // RabbitMQ: `<queue>.dlq` through the dead-letter exchange, Spring AMQP's headers.
            let out = crate::rabbitmq::dead_letter::build(record, info);
            let dlq = crate::rabbitmq::dlq(&record.topic);
            return match recoverer::publish(&self.env.publisher, out, true, cancel).await {
                Outcome::Delivered(_, shrink) => {
                    self.metrics.dead_lettered.inc();
                    tracing::info!(dlq = %dlq, shrink = ?shrink, "dead-lettered");
                    Disposition::DeadLettered
                }
                Outcome::Rejected(_) | Outcome::Interrupted => Disposition::Interrupted,
            };
        }
        let base = retry_topic::source_of(&record.topic, &self.spec.topics);
        let dlt = match policy::dlt_route(&self.spec.dlt.routes, kind, &info.exception_type) {
            Some(suffix) => format!("{base}{suffix}"),
            None => self.spec.dlt_topic(base),
        };
        let original = self.original(record, source);
        let out = dead_letter::build_from(record, &dlt, &self.spec.group, info, &original);
        match recoverer::publish(&self.env.publisher, out, true, cancel).await {
            Outcome::Delivered(delivery, shrink) => {
                self.metrics.dead_lettered.inc();
                tracing::info!(dlt = %dlt, dlt_partition = delivery.partition, dlt_offset = delivery.offset, shrink = ?shrink, "dead-lettered");
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
        let (target, out) = if self.spec.is_queue_listener() {
            // RabbitMQ: the retry queue's TTL is the wait (see `retry_queue`).
            let out = retry_queue::reschedule(record, index, attempt, info);
            (retry_queue::name(&record.topic, index), out)
        } else {
            let base = retry_topic::source_of(&record.topic, &self.spec.topics);
            let target = retry_topic::name(base, index);
            let original = self.original(record, source);
            let out = retry_topic::reschedule(
                record,
                &target,
                attempt,
                due_ms,
                &self.spec.group,
                info,
                &original,
            );
            (target, out)
        };
        match recoverer::publish(&self.env.publisher, out, false, cancel).await {
            Outcome::Delivered(..) => {
                tracing::info!(retry_topic = %target, "rescheduled on a retry topic");
                Disposition::Rescheduled
            }
            Outcome::Rejected(e) => {
                tracing::error!(retry_topic = %target, error = %e, "retry topic refused the record; dead-lettering it");
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
