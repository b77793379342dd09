//! One call of a listener, as `#[listener]`'s expansion drives it (through
//! `mq_core::__private`), and the hooks an idempotent listener's inbox plugs into it
//! without this layer naming the inbox.

use std::any::Any;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;

use super::{Context, HandlerError, ListenerEnv};
use crate::envelope::{self, DecodeError, Event};
use crate::publisher::Cause;
use crate::record::Record;

/// Something a handler call runs inside, carried by its [`Context`] and settled when the
/// handler returns: an idempotent listener's transaction.
pub(crate) trait Settle: Any + Send + Sync {
    /// Commits (`ok`) or rolls back; a failed commit is a transient failure.
    fn settle(&self, ok: bool) -> BoxFuture<'_, Result<(), HandlerError>>;
    /// For the extractor that hands the concrete value to the handler.
    fn as_any(&self) -> &dyn Any;
}

/// What a [`Context`] carries for its call besides the record.
pub(crate) type Extension = Arc<dyn Settle>;

/// Claims an event before its handler runs (an idempotent listener's inbox).
pub(crate) trait Claims: Send + Sync {
    /// Claims `(source, id)` (`None`: the record has no event identity): `Ok(None)` when
    /// it was handled before, else what the handler runs inside.
    fn claim<'a>(
        &'a self,
        event: Option<(&'a str, &'a str)>,
    ) -> BoxFuture<'a, Result<Option<Extension>, HandlerError>>;
}

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
    /// The transaction of an idempotent listener, once claimed.
    pub(crate) extension: Option<Extension>,
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
                Context::new(self.env, self.record, self.attempt, cause, self.extension)
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
        Context::new(
            self.env,
            self.record,
            self.attempt,
            Cause::of(event),
            self.extension,
        )
    }

    /// An idempotent listener records the event's identity in a new transaction; `None`
    /// when it was recorded before (acknowledge without calling the handler). Other
    /// listeners go on at once.
    pub async fn claim<T>(mut self, event: &Event<T>) -> Result<Option<Invocation>, Failure> {
        let Some(inbox) = self.env.inbox.clone() else {
            return Ok(Some(self));
        };
        match inbox.claim(Some((&event.source, &event.id))).await {
            Ok(Some(tx)) => {
                self.extension = Some(tx);
                Ok(Some(self))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(Failure::Handler(e)),
        }
    }

    /// [`Invocation::claim`] for an optional payload: a tombstone has no identity, so its
    /// handler always runs (still in a transaction).
    pub async fn claim_optional<T>(
        mut self,
        event: &Option<Event<T>>,
    ) -> Result<Option<Invocation>, Failure> {
        match event {
            Some(e) => self.claim(e).await,
            None => {
                let Some(inbox) = self.env.inbox.clone() else {
                    return Ok(Some(self));
                };
                self.extension = inbox.claim(None).await.map_err(Failure::Handler)?;
                Ok(Some(self))
            }
        }
    }
}
