//! What a listener function sees and returns: [`Context`], [`HandlerError`] and the
//! extractor trait [`FromContext`].

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::{Arc, OnceLock};

pub(crate) mod invocation;

use invocation::{Claims, Extension};

use crate::envelope::DecodeLimits;
use crate::publisher::{Cause, Publisher};
use crate::record::{Headers, Record};

/// Whether a failed message is worth retrying.
///
/// ```
/// use mq_core::handler::{ErrorKind, HandlerError};
/// let e = HandlerError::permanent(std::io::Error::other("unknown product"));
/// assert_eq!(e.kind(), ErrorKind::Permanent);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Retried as `mq.listener.retry` says, then dead-lettered.
    Transient,
    /// Dead-lettered at once, never retried (bad input, business rule violated).
    Permanent,
}

/// The error a listener returns.
///
/// Any `std::error::Error + Send + Sync + 'static` converts into it with `?` and counts as
/// [`ErrorKind::Transient`] (retried, like Spring's `DefaultErrorHandler`). Wrap an error
/// with [`HandlerError::permanent`] to send the message straight to the dead-letter topic,
/// the way Spring's `addNotRetryableExceptions` does. A panic in a handler becomes a
/// transient `HandlerError` whose type is `panic`.
///
/// ```
/// use mq_core::handler::HandlerError;
///
/// fn parse(s: &str) -> Result<u32, HandlerError> {
///     let n: u32 = s.parse()?; // ParseIntError -> transient
///     if n == 0 {
///         return Err(HandlerError::permanent_msg("quantity must be positive"));
///     }
///     Ok(n)
/// }
/// assert!(parse("x").unwrap_err().is_transient());
/// assert!(!parse("0").unwrap_err().is_transient());
/// ```
pub struct HandlerError {
    kind: ErrorKind,
    type_name: &'static str,
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

/// The type name reported for errors made from a message alone.
const MESSAGE_TYPE: &str = "mq_core::HandlerError";

#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

impl HandlerError {
    fn with_kind<E: std::error::Error + Send + Sync + 'static>(kind: ErrorKind, error: E) -> Self {
        HandlerError {
            kind,
            type_name: std::any::type_name::<E>(),
            source: Box::new(error),
        }
    }

    /// A transient (retryable) error.
    ///
    /// ```
    /// let e = mq_core::handler::HandlerError::transient(std::io::Error::other("db down"));
    /// assert!(e.is_transient());
    /// ```
    pub fn transient<E: std::error::Error + Send + Sync + 'static>(error: E) -> Self {
        Self::with_kind(ErrorKind::Transient, error)
    }

    /// A permanent error: no retry, straight to the dead-letter topic.
    ///
    /// ```
    /// let e = mq_core::handler::HandlerError::permanent(std::fmt::Error);
    /// assert!(!e.is_transient());
    /// ```
    pub fn permanent<E: std::error::Error + Send + Sync + 'static>(error: E) -> Self {
        Self::with_kind(ErrorKind::Permanent, error)
    }

    /// A transient error from a message.
    ///
    /// ```
    /// let e = mq_core::handler::HandlerError::msg("try later");
    /// assert_eq!(e.to_string(), "try later");
    /// ```
    pub fn msg(message: impl Into<String>) -> Self {
        Self::transient(Message(message.into())).named(MESSAGE_TYPE)
    }

    /// A permanent error from a message.
    ///
    /// ```
    /// let e = mq_core::handler::HandlerError::permanent_msg("unknown product 9");
    /// assert!(!e.is_transient());
    /// ```
    pub fn permanent_msg(message: impl Into<String>) -> Self {
        Self::permanent(Message(message.into())).named(MESSAGE_TYPE)
    }

    fn named(mut self, type_name: &'static str) -> Self {
        self.type_name = type_name;
        self
    }

    /// Turns any error into a permanent one, keeping its type name.
    ///
    /// ```
    /// let e = mq_core::handler::HandlerError::msg("x").into_permanent();
    /// assert!(!e.is_transient());
    /// ```
    pub fn into_permanent(mut self) -> Self {
        self.kind = ErrorKind::Permanent;
        self
    }

    /// A handler call cancelled by `handler-timeout`: transient, type `timeout`.
    pub(crate) fn timed_out(limit: std::time::Duration) -> Self {
        HandlerError {
            kind: ErrorKind::Transient,
            type_name: "timeout",
            source: Box::new(Message(format!(
                "handler timed out after {}",
                humantime::format_duration(limit)
            ))),
        }
    }

    /// A caught panic of a handler: transient, type `panic`, the panic's message.
    pub(crate) fn from_panic(panic: &(dyn Any + Send)) -> Self {
        let message = if let Some(s) = panic.downcast_ref::<&str>() {
            format!("handler panicked: {s}")
        } else if let Some(s) = panic.downcast_ref::<String>() {
            format!("handler panicked: {s}")
        } else {
            "handler panicked".to_owned()
        };
        HandlerError {
            kind: ErrorKind::Transient,
            type_name: "panic",
            source: Box::new(Message(message)),
        }
    }

    /// Transient or permanent.
    ///
    /// ```
    /// use mq_core::handler::{ErrorKind, HandlerError};
    /// assert_eq!(HandlerError::msg("x").kind(), ErrorKind::Transient);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// True when the message may be retried.
    ///
    /// ```
    /// assert!(mq_core::handler::HandlerError::msg("x").is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    /// The Rust type name of the underlying error (the dead-letter `exception-fqcn`).
    ///
    /// ```
    /// let e = mq_core::handler::HandlerError::transient(std::fmt::Error);
    /// assert_eq!(e.type_name(), "core::fmt::Error");
    /// ```
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The underlying error.
    ///
    /// ```
    /// let e = mq_core::handler::HandlerError::msg("boom");
    /// assert_eq!(e.source().to_string(), "boom");
    /// ```
    pub fn source(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }

    /// The chain of causes below the error, outermost first.
    ///
    /// ```
    /// let e = mq_core::handler::HandlerError::msg("boom");
    /// assert!(e.causes().is_empty());
    /// ```
    pub fn causes(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut next = self.source.source();
        while let Some(cause) = next {
            out.push(cause.to_string());
            next = cause.source();
        }
        out
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(error: E) -> Self {
        Self::transient(error)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("kind", &self.kind)
            .field("type", &self.type_name)
            .field("source", &self.source)
            .finish()
    }
}

/// What a listener function may return: `Result<(), E>` where `E` converts into
/// [`HandlerError`].
///
/// ```
/// use mq_core::handler::IntoHandlerResult;
/// let r: Result<(), std::io::Error> = Ok(());
/// assert!(r.into_handler_result().is_ok());
/// ```
#[diagnostic::on_unimplemented(
    message = "a #[listener] must return `Result<(), E>` where `E: std::error::Error` or `E = HandlerError`",
    label = "found `{Self}`"
)]
pub trait IntoHandlerResult {
    /// Converts into the framework's result.
    fn into_handler_result(self) -> Result<(), HandlerError>;
}

impl<E: Into<HandlerError>> IntoHandlerResult for Result<(), E> {
    fn into_handler_result(self) -> Result<(), HandlerError> {
        self.map_err(Into::into)
    }
}

/// Shared application state registered with `App::with_state`.
///
/// A list, not a map: an app registers a handful of states, and comparing a few `TypeId`s
/// costs less than hashing one (it is looked up for every `State<T>` argument of every
/// record).
#[derive(Default, Clone)]
pub(crate) struct StateMap(Arc<Vec<(TypeId, Arc<dyn Any + Send + Sync>)>>);

impl StateMap {
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        let states = Arc::make_mut(&mut self.0);
        let id = TypeId::of::<T>();
        states.retain(|(t, _)| *t != id);
        states.push((id, Arc::new(value)));
    }

    pub(crate) fn contains(&self, id: TypeId) -> bool {
        self.0.iter().any(|(t, _)| *t == id)
    }

    pub(crate) fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let id = TypeId::of::<T>();
        self.0
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| v.clone().downcast::<T>().ok())
    }
}

/// Everything about the message being handled, and the way to publish follow-up events.
///
/// Take it as an extra argument of a listener:
///
/// ```standalone_crate
/// use mq_core::prelude::*;
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Ping { n: u32 }
///
/// #[listener(topic = "pings")]
/// async fn on_ping(event: Event<Ping>, ctx: Context) -> Result<(), HandlerError> {
///     tracing::info!(topic = ctx.topic(), offset = ctx.offset(), n = event.data.n, "ping");
///     ctx.publisher().send("pongs", ctx.key_str().unwrap_or(""), Ping { n: event.data.n }).await?;
///     Ok(())
/// }
/// # fn main() {}
/// ```
#[derive(Clone)]
pub struct Context {
    inner: Arc<ContextInner>,
}

/// What every call of one listener shares; each worker has its own copy.
#[derive(Clone)]
pub(crate) struct ListenerEnv {
    pub(crate) listener: &'static str,
    pub(crate) publisher: Publisher,
    pub(crate) state: StateMap,
    pub(crate) limits: DecodeLimits,
    /// The listener's inbox when it is idempotent.
    pub(crate) inbox: Option<Arc<dyn Claims>>,
}

struct ContextInner {
    env: Arc<ListenerEnv>,
    record: Arc<Record>,
    attempt: u32,
    cause: Cause,
    /// What the call runs inside (an idempotent listener's transaction).
    extension: Option<Extension>,
    /// The publisher caused by this event, made on the first [`Context::publisher`] call:
    /// most records are handled without publishing anything.
    caused: OnceLock<Publisher>,
}

impl Context {
    pub(crate) fn new(
        env: Arc<ListenerEnv>,
        record: Arc<Record>,
        attempt: u32,
        cause: Cause,
        extension: Option<Extension>,
    ) -> Self {
        Context {
            inner: Arc::new(ContextInner {
                env,
                record,
                attempt,
                cause,
                extension,
                caused: OnceLock::new(),
            }),
        }
    }

    /// What the call runs inside (an idempotent listener's transaction).
    pub(crate) fn extension(&self) -> Option<&Extension> {
        self.inner.extension.as_ref()
    }

    /// Name of the listener handling the message.
    ///
    /// ```
    /// # async fn f(ctx: mq_core::Context) {
    /// let name: &str = ctx.listener();
    /// # }
    /// ```
    pub fn listener(&self) -> &'static str {
        self.inner.env.listener
    }

    /// Topic of the message.
    ///
    /// ```
    /// # async fn f(ctx: mq_core::Context) {
    /// let topic: &str = ctx.topic();
    /// # }
    /// ```
    pub fn topic(&self) -> &str {
        &self.inner.record.topic
    }

    /// Partition of the message.
    ///
    /// ```
    /// # async fn f(ctx: mq_core::Context) {
    /// let partition: i32 = ctx.partition();
    /// # }
    /// ```
    pub fn partition(&self) -> i32 {
        self.inner.record.partition
    }

    /// Offset of the message.
    ///
    /// ```
    /// # async fn f(ctx: mq_core::Context) {
    /// let offset: i64 = ctx.offset();
    /// # }
    /// ```
    pub fn offset(&self) -> i64 {
        self.inner.record.offset
    }

    /// Record key, raw.
    ///
    /// ```
    /// # async fn f(ctx: mq_core::Context) {
    /// let key: Option<&[u8]> = ctx.key();
    /// # }
    /// ```
    pub fn key(&self) -> Option<&[u8]> {
        self.inner.record.key.as_deref()
    }

    /// Record key as UTF-8, if it is.
    ///
    /// ```
    /// # async fn f(ctx: mq_core::Context) {
    /// let order_id = ctx.key_str().unwrap_or("no key");
    /// # }
    /// ```
    pub fn key_str(&self) -> Option<&str> {
        self.key().and_then(|k| std::str::from_utf8(k).ok())
    }

    /// Record headers.
    ///
    /// ```
    /// # async fn f(ctx: mq_core::Context) {
    /// let tenant = ctx.headers().get_str("tenant");
    /// # }
    /// ```
    pub fn headers(&self) -> &Headers {
        &self.inner.record.headers
    }

    /// The header `name` read as `T`: from the type its broker gave it (an AMQP
    /// `long`, a timestamp, ...), else parsed from its bytes (a Kafka header's text);
    /// `None` when absent or not a `T`. See [`FromHeader`](crate::record::FromHeader).
    ///
    /// ```
    /// # async fn f(ctx: mq_core::Context) {
    /// let retries: Option<i64> = ctx.header("retries");
    /// let tenant: Option<String> = ctx.header("tenant");
    /// # }
    /// ```
    pub fn header<T: crate::record::FromHeader>(&self, name: &str) -> Option<T> {
        self.inner.record.headers.get_as(name)
    }

    /// Record timestamp in milliseconds since the epoch.
    ///
    /// ```
    /// # async fn f(ctx: mq_core::Context) {
    /// let millis: Option<i64> = ctx.timestamp();
    /// # }
    /// ```
    pub fn timestamp(&self) -> Option<i64> {
        self.inner.record.timestamp
    }

    /// Delivery attempt, starting at 1.
    ///
    /// ```
    /// # async fn f(ctx: mq_core::Context) {
    /// if ctx.attempt() > 1 { tracing::warn!("redelivered"); }
    /// # }
    /// ```
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// The publisher; events sent through it carry this event's correlation id, its id as
    /// causation id, and its trace context.
    ///
    /// ```
    /// # async fn f(ctx: mq_core::Context) {
    /// ctx.publisher().send("audit", "k", 1u32).await.unwrap();
    /// # }
    /// ```
    pub fn publisher(&self) -> &Publisher {
        let inner = &*self.inner;
        inner
            .caused
            .get_or_init(|| inner.env.publisher.caused_by(Arc::new(inner.cause.clone())))
    }

    /// Shared state registered with `App::with_state`.
    ///
    /// # Panics
    /// When no state of type `T` was registered: that is a wiring mistake, and the panic is
    /// caught and handled like any failure of the handler.
    ///
    /// ```
    /// # async fn f(ctx: mq_core::Context) {
    /// struct Catalogue; let catalogue: std::sync::Arc<Catalogue> = ctx.state::<Catalogue>();
    /// # }
    /// ```
    pub fn state<T: Send + Sync + 'static>(&self) -> Arc<T> {
        self.inner.env.state.get::<T>().unwrap_or_else(|| {
            panic!(
                "no state of type {} registered: call App::with_state",
                std::any::type_name::<T>()
            )
        })
    }

    /// Like [`Context::state`], without the panic.
    ///
    /// ```
    /// # async fn f(ctx: mq_core::Context) {
    /// struct Catalogue; let maybe = ctx.try_state::<Catalogue>();
    /// # }
    /// ```
    pub fn try_state<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.inner.env.state.get::<T>()
    }
}

/// Arguments after the payload are extracted from the [`Context`] through this trait.
///
/// ```
/// use mq_core::handler::{Context, FromContext, State};
/// fn takes<T: FromContext>() {}
/// takes::<Context>();
/// takes::<State<String>>();
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a #[listener] argument",
    label = "after the payload, a listener takes `Context`, `State<T>`, `Headers` or (idempotent listeners) `Tx`",
    note = "the first argument is the payload: `Event<T>` or `T`"
)]
pub trait FromContext: Sized {
    /// Extracts the value.
    fn from_context(ctx: &Context) -> Self;
}

impl FromContext for Context {
    fn from_context(ctx: &Context) -> Self {
        ctx.clone()
    }
}

impl FromContext for Headers {
    fn from_context(ctx: &Context) -> Self {
        ctx.headers().clone()
    }
}

/// Shared state as a listener argument: `State(inventory): State<Inventory>`.
///
/// Panics (caught, handled as a failure) when the state was not registered.
///
/// ```
/// use mq_core::handler::State;
/// let State(n) = State(std::sync::Arc::new(5));
/// assert_eq!(*n, 5);
/// ```
pub struct State<T>(pub Arc<T>);

impl<T: Send + Sync + 'static> FromContext for State<T> {
    fn from_context(ctx: &Context) -> Self {
        State(ctx.state::<T>())
    }
}

impl<T> std::ops::Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
