//! The attribute's arguments (`topic = ..`, `retry(..)`, ...), parsed with spans so every
//! mistake points at its own token.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Expr, ExprArray, ExprLit, Ident, Lit, LitStr, Path};

#[derive(Default)]
pub(super) struct Retry {
    pub(super) max_attempts: Option<syn::LitInt>,
    pub(super) initial_interval: Option<LitStr>,
    pub(super) multiplier: Option<syn::LitFloat>,
    pub(super) max_interval: Option<LitStr>,
    pub(super) jitter: Option<syn::LitBool>,
    pub(super) mode: Option<LitStr>,
}

#[derive(Default)]
pub(super) struct Args {
    pub(super) topics: Vec<LitStr>,
    /// RabbitMQ queues (`queue = ".."`): a queue listener.
    pub(super) queues: Vec<LitStr>,
    /// The queue's binding: exchange, its kind, routing key.
    pub(super) exchange: Option<LitStr>,
    pub(super) exchange_type: Option<LitStr>,
    pub(super) routing_key: Option<LitStr>,
    pub(super) group: Option<LitStr>,
    pub(super) name: Option<LitStr>,
    pub(super) concurrency: Option<syn::LitInt>,
    pub(super) ordering: Option<Ident>,
    pub(super) max_in_flight: Option<syn::LitInt>,
    pub(super) retry: Retry,
    /// `idempotent` (or `idempotent = true`): run as an idempotent consumer.
    pub(super) idempotent: Option<syn::LitBool>,
    pub(super) krate: Option<Path>,
}

const KNOWN: &str =
    "topic, topics, queue, exchange, exchange_type, routing_key, group, name, concurrency, ordering, max_in_flight, retry, idempotent, crate";

impl Args {
    pub(super) fn parse_meta(&mut self, meta: ParseNestedMeta<'_>) -> syn::Result<()> {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        match key.as_str() {
            "topic" => self.topics.push(meta.value()?.parse()?),
            "queue" => self.queues.push(meta.value()?.parse()?),
            "exchange" => self.exchange = Some(non_empty(meta.value()?.parse()?, "exchange")?),
            "exchange_type" => {
                let s: LitStr = meta.value()?.parse()?;
                if !matches!(
                    s.value().as_str(),
                    "direct" | "fanout" | "topic" | "headers"
                ) {
                    return Err(syn::Error::new_spanned(
                        s,
                        "exchange_type must be \"direct\", \"fanout\", \"topic\" or \"headers\"",
                    ));
                }
                self.exchange_type = Some(s);
            }
            "routing_key" => self.routing_key = Some(meta.value()?.parse()?),
            "topics" => {
                let array: ExprArray = meta.value()?.parse()?;
                for elem in array.elems {
                    match elem {
                        Expr::Lit(ExprLit {
                            lit: Lit::Str(s), ..
                        }) => self.topics.push(s),
                        other => {
                            return Err(syn::Error::new_spanned(
                                other,
                                "topics must be string literals",
                            ))
                        }
                    }
                }
            }
            "group" => self.group = Some(non_empty(meta.value()?.parse()?, "group")?),
            "name" => self.name = Some(non_empty(meta.value()?.parse()?, "name")?),
            "concurrency" => self.concurrency = Some(at_least_one(&meta, "concurrency")?),
            "ordering" => {
                let s: LitStr = meta.value()?.parse()?;
                let variant = match s.value().as_str() {
                    "partition" => "Partition",
                    "key" => "Key",
                    _ => {
                        return Err(syn::Error::new_spanned(
                            &s,
                            "ordering must be \"partition\" (one record of a partition at a time) or \"key\" (records of one key in order, different keys concurrently)",
                        ))
                    }
                };
                self.ordering = Some(Ident::new(variant, s.span()));
            }
            "max_in_flight" => self.max_in_flight = Some(at_least_one(&meta, "max_in_flight")?),
            "retry" => meta.parse_nested_meta(|m| self.retry.parse_meta(m))?,
            "idempotent" => {
                if self.idempotent.is_some() {
                    return Err(meta.error("`idempotent` is given twice"));
                }
                self.idempotent = Some(if meta.input.peek(syn::Token![=]) {
                    let value: Expr = meta.value()?.parse()?;
                    match value {
                        Expr::Lit(ExprLit {
                            lit: Lit::Bool(b), ..
                        }) => b,
                        other => return Err(syn::Error::new_spanned(
                            other,
                            "`idempotent` is a flag: write `idempotent` (or `idempotent = true`)",
                        )),
                    }
                } else {
                    syn::LitBool::new(true, meta.path.span())
                });
            }
            "crate" => {
                let s: LitStr = meta.value()?.parse()?;
                self.krate = Some(s.parse()?);
            }
            _ => {
                return Err(meta.error(format!(
                    "unknown #[listener] attribute `{}`; expected one of: {KNOWN}",
                    meta.path.to_token_stream()
                )))
            }
        }
        Ok(())
    }
}

/// The attribute's value: an integer literal of at least 1.
fn at_least_one(meta: &ParseNestedMeta<'_>, what: &str) -> syn::Result<syn::LitInt> {
    let n: syn::LitInt = meta.value()?.parse()?;
    if n.base10_parse::<u32>()? == 0 {
        return Err(syn::Error::new_spanned(
            n,
            format!("{what} must be at least 1"),
        ));
    }
    Ok(n)
}

fn non_empty(s: LitStr, what: &str) -> syn::Result<LitStr> {
    if s.value().trim().is_empty() {
        Err(syn::Error::new_spanned(
            s,
            format!("{what} must not be empty"),
        ))
    } else {
        Ok(s)
    }
}

impl Retry {
    fn parse_meta(&mut self, meta: ParseNestedMeta<'_>) -> syn::Result<()> {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        match key.as_str() {
            "max_attempts" => self.max_attempts = Some(at_least_one(&meta, "max_attempts")?),
            "initial_interval" => self.initial_interval = Some(meta.value()?.parse()?),
            "max_interval" => self.max_interval = Some(meta.value()?.parse()?),
            "multiplier" => self.multiplier = Some(meta.value()?.parse()?),
            "jitter" => self.jitter = Some(meta.value()?.parse()?),
            "mode" => {
                let s: LitStr = meta.value()?.parse()?;
                if !matches!(s.value().as_str(), "blocking" | "topics") {
                    return Err(syn::Error::new_spanned(
                        s,
                        "retry mode must be \"blocking\" or \"topics\"",
                    ));
                }
                self.mode = Some(s);
            }
            _ => {
                return Err(meta.error(format!(
                    "unknown retry setting `{}`; expected one of: max_attempts, initial_interval, multiplier, max_interval, jitter, mode",
                    meta.path.to_token_stream()
                )))
            }
        }
        Ok(())
    }
}

pub(super) fn option<T: ToTokens>(v: &Option<T>) -> TokenStream {
    match v {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    }
}
