//! How a handler fails: [`HandlerError`] with its [`ErrorKind`], and the return types a
//! listener may have ([`IntoHandlerResult`]).

use std::any::Any;
use std::fmt;

use serde::Serialize;

use crate::envelope::Event;
use crate::publisher::IntoEvent;

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
/// [`HandlerError`], or `Result<Reply<T>, E>` for a listener that answers requests.
///
/// ```
/// use mq_core::handler::IntoHandlerResult;
/// let r: Result<(), std::io::Error> = Ok(());
/// assert!(r.into_handler_result().is_ok());
/// ```
#[diagnostic::on_unimplemented(
    message = "a #[listener] must return `Result<(), E>` or `Result<Reply<T>, E>` where `E: std::error::Error` or `E = HandlerError`",
    label = "found `{Self}`"
)]
pub trait IntoHandlerResult {
    /// Converts into the framework's result (a reply is dropped).
    fn into_handler_result(self) -> Result<(), HandlerError>;

    /// The framework's result and the reply to send, if any.
    #[doc(hidden)]
    fn into_reply(self) -> Result<Option<Event<serde_json::Value>>, HandlerError>
    where
        Self: Sized,
    {
        self.into_handler_result().map(|()| None)
    }
}

impl<E: Into<HandlerError>> IntoHandlerResult for Result<(), E> {
    fn into_handler_result(self) -> Result<(), HandlerError> {
        self.map_err(Into::into)
    }
}

impl<T: Serialize, E: Into<HandlerError>> IntoHandlerResult for Result<Reply<T>, E> {
    fn into_handler_result(self) -> Result<(), HandlerError> {
        self.map(drop).map_err(Into::into)
    }

    fn into_reply(self) -> Result<Option<Event<serde_json::Value>>, HandlerError> {
        let Reply(event) = self.map_err(Into::into)?;
        let data = serde_json::to_value(&event.data).map_err(HandlerError::permanent)?;
        Ok(Some(event.map(|_| data)))
    }
}

/// The answer of a listener to a request (Spring's `@SendTo`): a handler returning
/// `Result<Reply<T>, E>` sends `T` as an event to the request's reply address, with its
/// correlation id, through the listener's publisher (so with the request's id as its
/// `causationid`). A record that asked for no reply gets none (a WARN says so).
///
/// ```
/// use mq_core::handler::Reply;
/// #[derive(serde::Serialize)]
/// struct PriceQuote { cents: u64 }
/// let reply = Reply::new(PriceQuote { cents: 250 });
/// assert_eq!(reply.event().ty, "PriceQuote");
/// ```
#[derive(Debug, Clone)]
pub struct Reply<T>(Event<T>);

impl<T: Serialize> Reply<T> {
    /// A reply carrying `data` as a new event whose `type` is its Rust type name.
    pub fn new(data: T) -> Self {
        Reply(data.into_event())
    }
}

impl<T> Reply<T> {
    /// The event that will be sent.
    pub fn event(&self) -> &Event<T> {
        &self.0
    }
}

impl<T> From<Event<T>> for Reply<T> {
    fn from(event: Event<T>) -> Self {
        Reply(event)
    }
}
