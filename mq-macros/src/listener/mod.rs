//! `#[listener]`: parse and validate the attribute and the function, then emit a
//! registration into `mq_core::__private`. No behaviour lives here.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ItemFn, LitStr, PathArguments, ReturnType, Type};

mod args;

use args::{option, Args};

/// Expands `#[listener(attr)] item`. On error, returns the item unchanged plus the errors,
/// so the rest of the crate still type-checks (and IDEs keep working).
pub fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let err = syn::Error::new(Span::call_site(), "#[listener] goes on an `async fn`");
            return with_error(item, err);
        }
    };
    let mut args = Args::default();
    let parser = syn::meta::parser(|meta| args.parse_meta(meta));
    if let Err(e) = syn::parse::Parser::parse2(parser, attr) {
        return with_error(item, e);
    }
    match generate(&args, &func) {
        Ok(registration) => quote!(#func #registration),
        Err(e) => with_error(item, e),
    }
}

fn with_error(item: TokenStream, err: syn::Error) -> TokenStream {
    let err = err.to_compile_error();
    quote!(#item #err)
}

fn generate(args: &Args, func: &ItemFn) -> syn::Result<TokenStream> {
    let sig = &func.sig;
    let mut errors: Vec<syn::Error> = Vec::new();
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            sig.fn_token,
            "#[listener] functions must be `async fn`",
        ));
    }
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "#[listener] functions cannot be generic",
        ));
    }
    let ret_ty = match &sig.output {
        ReturnType::Default => {
            errors.push(syn::Error::new_spanned(
                sig,
                "#[listener] functions must return `Result<(), E>`",
            ));
            None
        }
        ReturnType::Type(_, ty) => Some(ty.clone()),
    };
    if args.topics.is_empty() && args.queues.is_empty() {
        errors.push(syn::Error::new(
            Span::call_site(),
            "#[listener] needs a topic: #[listener(topic = \"orders\")] (Kafka) or a queue: #[listener(queue = \"task_queue\")] (RabbitMQ)",
        ));
    }
    if let (Some(_), Some(q)) = (args.topics.first(), args.queues.first()) {
        errors.push(syn::Error::new_spanned(
            q,
            "a #[listener] reads Kafka topics or a RabbitMQ queue, not both: remove `topic` or `queue`",
        ));
    }
    if let Some(extra) = args.queues.get(1) {
        errors.push(syn::Error::new_spanned(
            extra,
            "a #[listener] reads one queue; write one listener per queue",
        ));
    }
    let binding_parts = [&args.exchange, &args.exchange_type, &args.routing_key];
    if args.queues.is_empty() {
        if let Some(part) = binding_parts.iter().find_map(|p| p.as_ref()) {
            errors.push(syn::Error::new_spanned(
                part,
                "exchange, exchange_type and routing_key bind a RabbitMQ queue: add `queue = \"..\"`",
            ));
        }
    } else if args.exchange.is_none() {
        if let Some(part) = args.exchange_type.as_ref().or(args.routing_key.as_ref()) {
            errors.push(syn::Error::new_spanned(
                part,
                "exchange_type and routing_key need the exchange to bind to: add `exchange = \"..\"`",
            ));
        }
    }
    for t in args.topics.iter().chain(&args.queues) {
        if t.value().trim().is_empty() {
            errors.push(syn::Error::new_spanned(
                t,
                "topic or queue must not be empty",
            ));
        }
    }
    let mut types = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => errors.push(syn::Error::new_spanned(
                r,
                "#[listener] functions cannot take `self`; use a free function and `State<T>` for shared state",
            )),
            FnArg::Typed(pt) => types.push((*pt.ty).clone()),
        }
    }
    if types.is_empty() && sig.receiver().is_none() {
        errors.push(syn::Error::new_spanned(
            &sig.ident,
            "a #[listener] takes the payload as its first argument: `Event<T>` or `T`",
        ));
    }
    let mut errors = errors.into_iter();
    if let Some(mut first) = errors.next() {
        for e in errors {
            first.combine(e);
        }
        return Err(first);
    }
    let ret_ty = ret_ty.expect("checked above");

    let krate = args
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::mq_core));
    let private = quote!(#krate::__private);
    let fn_name = &sig.ident;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| LitStr::new(&fn_name.to_string(), fn_name.span()));

    let payload_ty = &types[0];
    // `Option<Event<T>>` / `Option<T>`: tombstones (null values) arrive as `None`.
    let (decode, claim, context, payload_expr) = match option_type(payload_ty) {
        Some(inner) => {
            let (data_ty, payload) = match event_data_type(&inner) {
                Some(data) => (data, quote!(__event)),
                None => (
                    syn::parse_quote!(::core::option::Option<#inner>),
                    quote!(__event.and_then(|__e| __e.data)),
                ),
            };
            (
                quote_spanned!(payload_ty.span()=> __inv.decode_optional::<#data_ty>()?),
                quote!(__inv.claim_optional(&__event)),
                quote!(__inv.context_of(&__event)),
                payload,
            )
        }
        None => {
            let (data_ty, payload) = match event_data_type(payload_ty) {
                Some(inner) => (inner, quote!(__event)),
                None => (payload_ty.clone(), quote!(__event.data)),
            };
            (
                quote_spanned!(payload_ty.span()=> __inv.decode::<#data_ty>()?),
                quote!(__inv.claim(&__event)),
                quote!(__inv.context(&__event)),
                payload,
            )
        }
    };
    let extra: Vec<_> = types[1..]
        .iter()
        .enumerate()
        .map(|(i, ty)| {
            let ident = syn::Ident::new(&format!("__arg{}", i + 1), Span::call_site());
            let stmt = quote_spanned!(ty.span()=> let #ident = #private::extract::<#ty>(&__ctx););
            (ident, stmt)
        })
        .collect();
    // One fn per extra argument: the state type it needs (startup check of with_state).
    let state_fns: Vec<_> = (1..types.len())
        .map(|i| syn::Ident::new(&format!("__mq_state{i}"), Span::call_site()))
        .collect();
    let state_defs = types[1..].iter().zip(&state_fns).map(|(ty, f)| {
        quote! {
            fn #f() -> ::core::option::Option<(::core::any::TypeId, &'static str)> {
                use #private::{NeedsState as _, NoState as _};
                (&#private::Probe::<#ty>::NEW).required_state()
            }
        }
    });
    let extra_idents = extra.iter().map(|(i, _)| i);
    let extra_stmts = extra.iter().map(|(_, s)| s);
    let call = quote!(#fn_name(#payload_expr #(, #extra_idents)*).await);
    let convert = quote_spanned!(ret_ty.span()=> #private::into_result(#call));
    let send_check = quote_spanned!(sig.fn_token.span()=> #private::assert_send);

    let topics = &args.topics;
    let queues = &args.queues;
    let binding = match &args.exchange {
        Some(exchange) => {
            let kind = args
                .exchange_type
                .clone()
                .unwrap_or_else(|| LitStr::new("direct", exchange.span()));
            let routing_key = args
                .routing_key
                .clone()
                .unwrap_or_else(|| LitStr::new("", exchange.span()));
            quote!(::core::option::Option::Some(#private::MacroBinding {
                exchange: #exchange,
                exchange_type: #kind,
                routing_key: #routing_key,
            }))
        }
        None => quote!(::core::option::Option::None),
    };
    let group = option(&args.group);
    let concurrency = option(&args.concurrency);
    let ordering = match &args.ordering {
        Some(v) => quote!(::core::option::Option::Some(#private::Ordering::#v)),
        None => quote!(::core::option::Option::None),
    };
    let max_in_flight = option(&args.max_in_flight);
    let idempotent = args
        .idempotent
        .clone()
        .unwrap_or_else(|| syn::LitBool::new(false, Span::call_site()));
    let r = &args.retry;
    let (max_attempts, initial_interval, multiplier, max_interval, jitter, mode) = (
        option(&r.max_attempts),
        option(&r.initial_interval),
        option(&r.multiplier),
        option(&r.max_interval),
        option(&r.jitter),
        option(&r.mode),
    );

    Ok(quote! {
        const _: () = {
            #[allow(non_snake_case)]
            fn __mq_handler(
                __inv: #private::Invocation,
            ) -> #private::BoxFuture<'static, ::core::result::Result<(), #private::Failure>> {
                ::std::boxed::Box::pin(#send_check(async move {
                    let __event = #decode;
                    // Idempotent listeners: `None` when the event was handled before.
                    let ::core::option::Option::Some(__inv) = #claim.await? else {
                        return ::core::result::Result::Ok(());
                    };
                    let __ctx = #context;
                    #(#extra_stmts)*
                    let __result = #convert;
                    let __result = #private::respond(&__ctx, __result).await;
                    #private::finish(&__ctx, __result).await
                }))
            }
            #private::inventory::submit! {
                #private::ListenerDef {
                    name: #name,
                    topics: &[#(#topics),*],
                    queues: &[#(#queues),*],
                    binding: #binding,
                    group: #group,
                    concurrency: #concurrency,
                    ordering: #ordering,
                    max_in_flight: #max_in_flight,
                    idempotent: #idempotent,
                    retry: #private::MacroRetry {
                        max_attempts: #max_attempts,
                        initial_interval: #initial_interval,
                        multiplier: #multiplier,
                        max_interval: #max_interval,
                        jitter: #jitter,
                        mode: #mode,
                    },
                    module_path: ::core::module_path!(),
                    handler: __mq_handler,
                }
            }
            #(#state_defs)*
            #private::inventory::submit! {
                #private::ListenerStates {
                    listener: #name,
                    states: &[#(#state_fns),*],
                }
            }
        };
    })
}

/// `Event<T>` (any path ending in `Event` with one type argument) → `Some(T)`.
fn event_data_type(ty: &Type) -> Option<Type> {
    single_argument(ty, "Event")
}

/// `Option<T>` (any path ending in `Option` with one type argument) → `Some(T)`.
fn option_type(ty: &Type) -> Option<Type> {
    single_argument(ty, "Option")
}

/// The type argument of `ty` when its last path segment is `name<T>`.
fn single_argument(ty: &Type, name: &str) -> Option<Type> {
    let Type::Path(tp) = ty else { return None };
    let last = tp.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(ab) = &last.arguments else {
        return None;
    };
    match ab.args.first()? {
        GenericArgument::Type(t) if ab.args.len() == 1 => Some(t.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(attr: &str, item: &str) -> String {
        expand(attr.parse().unwrap(), item.parse().unwrap()).to_string()
    }

    #[test]
    fn registers_with_topics_and_name() {
        let out = expand_str(
            r#"topics = ["a", "b"], group = "g""#,
            "async fn on_x(e: Event<X>) -> Result<(), E> { Ok(()) }",
        );
        assert!(out.contains("ListenerDef"), "{out}");
        assert!(out.contains(r#"topics : & ["a" , "b"]"#), "{out}");
        assert!(out.contains(r#"name : "on_x""#), "{out}");
        assert!(out.contains("decode :: < X >"), "{out}");
    }

    #[test]
    fn records_the_state_of_each_extra_argument() {
        let out = expand_str(
            r#"topic = "a""#,
            "async fn f(x: X, s: State<Db>, c: Context) -> Result<(), E> { Ok(()) }",
        );
        assert!(
            out.contains("Probe :: < State < Db > > :: NEW")
                && out.contains("Probe :: < Context > :: NEW"),
            "{out}"
        );
        assert!(
            out.contains(
                r#"ListenerStates { listener : "f" , states : & [__mq_state1 , __mq_state2] , }"#
            ),
            "{out}"
        );
    }

    #[test]
    fn plain_payload_passes_data() {
        let out = expand_str(
            r#"topic = "a""#,
            "async fn f(x: X) -> Result<(), E> { Ok(()) }",
        );
        assert!(out.contains("__event . data"), "{out}");
    }

    #[test]
    fn optional_payloads_take_tombstones() {
        let out = expand_str(
            r#"topic = "a""#,
            "async fn f(e: Option<Event<X>>) -> Result<(), E> { Ok(()) }",
        );
        assert!(out.contains("decode_optional :: < X >"), "{out}");
        assert!(out.contains("context_of"), "{out}");
        let out = expand_str(
            r#"topic = "a""#,
            "async fn f(x: Option<X>) -> Result<(), E> { Ok(()) }",
        );
        assert!(
            out.contains("decode_optional :: < :: core :: option :: Option < X > >"),
            "{out}"
        );
        assert!(out.contains("and_then"), "{out}");
    }

    #[test]
    fn idempotent_is_a_flag() {
        let out = expand_str(
            r#"topic = "a", idempotent"#,
            "async fn f(x: X) -> Result<(), E> { Ok(()) }",
        );
        assert!(out.contains("idempotent : true"), "{out}");
        assert!(out.contains("claim (& __event)"), "{out}");
        let out = expand_str(
            r#"topic = "a", idempotent = false"#,
            "async fn f(x: X) -> Result<(), E> { Ok(()) }",
        );
        assert!(out.contains("idempotent : false"), "{out}");
        let out = expand_str(
            r#"topic = "a", idempotent = "yes""#,
            "async fn f(x: X) -> Result<(), E> { Ok(()) }",
        );
        assert!(out.contains("is a flag"), "{out}");
    }

    #[test]
    fn crate_path_is_honoured() {
        let out = expand_str(
            r#"topic = "a", crate = "::renamed""#,
            "async fn f(x: X) -> Result<(), E> { Ok(()) }",
        );
        assert!(out.contains(":: renamed :: __private"), "{out}");
    }

    #[test]
    fn errors_keep_the_item() {
        let out = expand_str(r#"topic = "a""#, "fn f(x: X) -> Result<(), E> { Ok(()) }");
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains("fn f"), "{out}");
    }
}
