//! What a listener function sees and returns: [`Context`], [`HandlerError`] and the
//! extractor trait [`FromContext`].

use std::any::{Any, TypeId};
use std::sync::{Arc, OnceLock};

mod error;
pub(crate) mod invocation;

pub use error::{ErrorKind, HandlerError, IntoHandlerResult, Reply};

use invocation::{Claims, Extension};

use crate::envelope::DecodeLimits;
use crate::publisher::{Cause, Publisher, ReplyAddress};
use crate::record::{Headers, Record};

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
    /// Where a record asks its reply to go, as its transport reads it.
    pub(crate) reply_to: Option<ReplyReader>,
}

/// Reads a request's reply address (its transport's conventions).
pub(crate) type ReplyReader = Arc<dyn Fn(&Record) -> Option<ReplyAddress> + Send + Sync>;

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

    /// Where the message asks its reply to go (a request: Spring's `kafka_replyTopic` and
    /// `kafka_correlationId` headers, AMQP's `reply_to` and `correlation_id`); `None` for
    /// a message that is no request. A listener returning [`Reply`] answers there.
    ///
    /// ```
    /// # async fn f(ctx: mq_core::Context) {
    /// if let Some(to) = ctx.reply_address() {
    ///     println!("reply to {}", to.destination);
    /// }
    /// # }
    /// ```
    pub fn reply_address(&self) -> Option<ReplyAddress> {
        self.inner.env.reply_to.as_ref()?(&self.inner.record)
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
