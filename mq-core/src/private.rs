//! What `#[listener]` expands to. Not a public API: names here change without notice.

use std::sync::Arc;

use serde::de::DeserializeOwned;

pub use futures::future::BoxFuture;
pub use inventory;

pub use crate::consume::Ordering;
pub use crate::registry::{HandlerFn, ListenerDef, MacroBinding, MacroRetry};

use crate::envelope::{self, DecodeError, Event};
use crate::handler::{Context, FromContext, HandlerError, IntoHandlerResult, ListenerEnv};
use crate::publisher::Cause;
use crate::record::Record;

/// A state type a listener needs: its id and its name (for the startup report).
pub type RequiredState = (std::any::TypeId, &'static str);

/// The state types a listener's arguments need (one function per argument after the
/// payload, `None` for extractors other than `State<T>`), checked at startup against
/// [`App::with_state`](crate::App::with_state).
pub struct ListenerStates {
    /// The listener's name.
    pub listener: &'static str,
    /// One per argument after the payload.
    pub states: &'static [fn() -> Option<RequiredState>],
}

inventory::collect!(ListenerStates);

/// Autoref specialization (the macro sees tokens, not types, so it cannot tell a
/// `State<T>` behind an alias): `(&Probe::<A>::NEW).required_state()` is `Some` for
/// `A = State<T>` (the by-value match of [`NeedsState`]) and `None` for any other argument
/// type (the autoref match of [`NoState`]), without a trait bound that would report a bad
/// extractor a second time.
pub struct Probe<A>(std::marker::PhantomData<A>);

impl<A> Probe<A> {
    /// The probe of `A`.
    pub const NEW: Self = Probe(std::marker::PhantomData);
}

/// See [`Probe`]: the `State<T>` case.
pub trait NeedsState {
    /// The state type.
    fn required_state(&self) -> Option<RequiredState>;
}

impl<T: Send + Sync + 'static> NeedsState for Probe<crate::handler::State<T>> {
    fn required_state(&self) -> Option<RequiredState> {
        Some((std::any::TypeId::of::<T>(), std::any::type_name::<T>()))
    }
}

/// A `Tx` argument: not a state, but the app checks that its listener is idempotent (see
/// [`crate::startup`]), under the id of `Tx`.
impl NeedsState for Probe<crate::inbox::Tx> {
    fn required_state(&self) -> Option<RequiredState> {
        Some((
            std::any::TypeId::of::<crate::inbox::Tx>(),
            "mq_core::inbox::Tx",
        ))
    }
}

/// See [`Probe`]: every other argument.
pub trait NoState {
    /// No state.
    fn required_state(&self) -> Option<RequiredState> {
        None
    }
}

impl<A> NoState for &Probe<A> {}

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
    pub(crate) tx: Option<crate::inbox::Tx>,
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
                Context::new(self.env, self.record, self.attempt, cause, self.tx)
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
            self.tx,
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
                self.tx = Some(tx);
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
                self.tx = inbox.claim(None).await.map_err(Failure::Handler)?;
                Ok(Some(self))
            }
        }
    }
}

/// Ends an idempotent listener's transaction: commits when the handler succeeded (a failed
/// commit fails the attempt), rolls back otherwise.
pub async fn finish(ctx: &Context, result: Result<(), Failure>) -> Result<(), Failure> {
    let Some(tx) = ctx.tx() else {
        return result;
    };
    let committed = tx.finish(result.is_ok()).await;
    result?;
    committed.map_err(Failure::Handler)
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
