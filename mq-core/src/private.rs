//! What `#[listener]` expands to. Not a public API: names here change without notice.

use std::sync::Arc;

use serde::de::DeserializeOwned;

pub use futures::future::BoxFuture;
pub use inventory;

pub use crate::consume::Ordering;
pub use crate::registry::{HandlerFn, ListenerDef, MacroRetry};

use crate::envelope::{self, DecodeError, Event};
use crate::handler::{Context, FromContext, HandlerError, IntoHandlerResult, ListenerEnv};
use crate::publisher::Cause;
use crate::record::Record;

/// How one handler call ended badly.
#[derive(Debug)]
pub enum Failure {
    /// The record is poison: never retried.
    Decode(DecodeError),
    /// The handler failed (or panicked).
    Handler(HandlerError),
}

/// One call of a listener: the record and what the handler may reach.
pub struct Invocation {
    pub(crate) env: Arc<ListenerEnv>,
    pub(crate) record: Arc<Record>,
    pub(crate) attempt: u32,
}

impl Invocation {
    /// Decodes the record as `Event<T>`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<Event<T>, Failure> {
        envelope::decode(&self.record, &self.env.limits).map_err(Failure::Decode)
    }

    /// Decodes the record as `Option<Event<T>>`: `None` for a tombstone (null value), as
    /// Spring hands a listener a null payload.
    pub fn decode_optional<T: DeserializeOwned>(&self) -> Result<Option<Event<T>>, Failure> {
        if self.record.value.is_none() {
            return Ok(None);
        }
        self.decode().map(Some)
    }

    /// [`Invocation::context`] for an optional payload; a tombstone's context is caused by
    /// the id the record would have as plain JSON.
    pub fn context_of<T>(self, event: &Option<Event<T>>) -> Context {
        match event {
            Some(e) => self.context(e),
            None => {
                let (id, correlation) = envelope::peek_ids(&self.record);
                let cause = Cause {
                    event_id: id.unwrap_or_default(),
                    correlationid: correlation,
                    traceparent: None,
                };
                Context::new(self.env, self.record, self.attempt, cause)
            }
        }
    }

    /// The handler's context for `event`: its publisher is caused by the event.
    pub fn context<T>(self, event: &Event<T>) -> Context {
        // The per-record span is DEBUG: below that level there is none to fill in, and
        // looking up the current span costs more than the check.
        if self.attempt == 1 && tracing::level_enabled!(tracing::Level::DEBUG) {
            let span = tracing::Span::current();
            span.record("event_id", event.id.as_str());
            if let Some(c) = &event.correlationid {
                span.record("correlation_id", c.as_str());
            }
        }
        Context::new(self.env, self.record, self.attempt, Cause::of(event))
    }
}

/// Extracts an argument after the payload.
pub fn extract<T: FromContext>(ctx: &Context) -> T {
    T::from_context(ctx)
}

/// Converts what the handler returned.
pub fn into_result<R: IntoHandlerResult>(result: R) -> Result<(), Failure> {
    result.into_handler_result().map_err(Failure::Handler)
}

/// Compile-time check that the handler's future can move between threads.
pub fn assert_send<F: std::future::Future + Send>(f: F) -> F {
    f
}
