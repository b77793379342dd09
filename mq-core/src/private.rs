//! What `#[listener]` expands to. Not a public API: names here change without notice.

pub use futures::future::BoxFuture;
pub use inventory;

pub use crate::config::Ordering;
pub use crate::handler::invocation::{Failure, Invocation};
pub use crate::registry::{HandlerFn, ListenerDef, MacroBinding, MacroRetry};

use crate::envelope::Event;
use crate::handler::{Context, FromContext, IntoHandlerResult};

/// A state type a listener needs: its id and its name (for the startup report).
pub type RequiredState = (std::any::TypeId, &'static str);

/// The state types a listener's arguments need (one function per argument after the
/// payload, `None` for extractors other than `State<T>`), checked at startup against
/// `App::with_state`.
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
/// the startup checks), under the id of `Tx`.
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

/// Ends an idempotent listener's transaction: commits when the handler succeeded (a failed
/// commit fails the attempt), rolls back otherwise.
pub async fn finish(ctx: &Context, result: Result<(), Failure>) -> Result<(), Failure> {
    let Some(extension) = ctx.extension() else {
        return result;
    };
    let committed = extension.settle(result.is_ok()).await;
    result?;
    committed.map_err(Failure::Handler)
}

/// Extracts an argument after the payload.
pub fn extract<T: FromContext>(ctx: &Context) -> T {
    T::from_context(ctx)
}

/// Converts what the handler returned: the outcome, and the reply to send.
pub fn into_result<R: IntoHandlerResult>(
    result: R,
) -> Result<Option<Event<serde_json::Value>>, Failure> {
    result.into_reply().map_err(Failure::Handler)
}

/// Sends a handler's reply to the request's reply address (a failed send fails the
/// attempt, as a failed publish inside the handler would); a record that asked for no
/// reply gets none.
pub async fn respond(
    ctx: &Context,
    result: Result<Option<Event<serde_json::Value>>, Failure>,
) -> Result<(), Failure> {
    let Some(reply) = result? else {
        return Ok(());
    };
    let Some(to) = ctx.reply_address() else {
        tracing::warn!(
            listener = ctx.listener(),
            "the handler returned a reply, but the message asked for none (no reply address): not sent"
        );
        return Ok(());
    };
    ctx.publisher()
        .reply(&to, reply)
        .await
        .map_err(|e| Failure::Handler(e.into()))
}

/// Compile-time check that the handler's future can move between threads.
pub fn assert_send<F: std::future::Future + Send>(f: F) -> F {
    f
}
