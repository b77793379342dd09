//! Procedural macros of `mq`. Depend on `mq-core`, which re-exports them; the expansion
//! calls into `mq_core::__private` and holds no behaviour of its own.

mod listener;

/// Registers an `async fn` as a message listener.
///
/// ```ignore
/// #[listener(topic = "order-create-event", group = "product-service")]
/// async fn reserve_stock(event: Event<OrderCreated>, ctx: Context) -> Result<(), HandlerError> {
///     Ok(())
/// }
/// ```
///
/// Attributes:
/// - `topic = "a"` (repeatable) or `topics = ["a", "b"]`: what to read (required);
/// - `group = "g"`: consumer group (default `mq.kafka.consumer.group-id`, else the
///   application name);
/// - `name = "n"`: listener name, the key under `mq.listeners` (default: the fn name);
/// - `concurrency = 2`: consumers of this listener in the process;
/// - `retry(max_attempts = 5, initial_interval = "1s", multiplier = 2.0,
///   max_interval = "10s", jitter = true, mode = "blocking")`;
/// - `crate = "::path::to::mq_core"` when the dependency is renamed.
///
/// The first argument is the payload: `Event<T>` for the whole CloudEvent or `T` for its
/// data. Further arguments are extractors (`Context`, `State<T>`, `Headers`). The function
/// returns `Result<(), E>` with `E: std::error::Error + Send + Sync` or `HandlerError`, or
/// `Result<Reply<T>, E>` to answer a request (the reply goes to the request's reply address).
/// It stays an ordinary function that tests can call directly.
#[proc_macro_attribute]
pub fn listener(
    attr: proc_macro::TokenStream,
    item: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    listener::expand(attr.into(), item.into()).into()
}
