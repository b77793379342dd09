//! The Kafka transport (librdkafka through `rdkafka`): client settings, the producer behind
//! [`Publisher`](crate::publisher::Publisher), topic administration and the listener consumers.
//!
//! This is the only module that names rdkafka types; the rest of the framework sees
//! [`Record`](crate::record::Record)s in and acknowledgements out. Its conventions (the
//! names and headers of retry topics and dead letters, Spring Kafka's) are plain data and
//! always compiled; the client is behind the `kafka` feature.

// Without the client, the conventions serve the in-memory broker and replay only.
#![cfg_attr(not(feature = "kafka"), allow(dead_code))]

// Conventions: plain data, always compiled.
pub(crate) mod dead_letter;
pub(crate) mod dlt_dialect;
#[cfg(test)]
mod header_fuzz;
pub(crate) mod redrive;
pub(crate) mod reply;
pub(crate) mod retry_topic;
pub(crate) mod routes;
pub(crate) mod spring_headers;

// The client.
#[cfg(feature = "kafka")]
pub(crate) mod admin;
#[cfg(feature = "kafka")]
mod client;
#[cfg(feature = "kafka")]
pub(crate) mod consumer;
#[cfg(feature = "kafka")]
pub(crate) mod embedded;
#[cfg(feature = "kafka")]
mod fatal_error;
#[cfg(feature = "kafka")]
pub(crate) mod health;
#[cfg(feature = "kafka")]
pub(crate) mod instance_id;
#[cfg(feature = "kafka")]
pub(crate) mod lazy_sink;
#[cfg(feature = "kafka")]
pub(crate) mod producer;
#[cfg(feature = "kafka")]
pub(crate) mod rebalance;
#[cfg(feature = "kafka")]
mod record_copy;
#[cfg(feature = "kafka")]
pub(crate) mod replay;
#[cfg(feature = "kafka")]
mod reply_consumer;
#[cfg(feature = "kafka")]
pub(crate) mod security;
#[cfg(feature = "kafka")]
mod tls_check;
#[cfg(feature = "kafka")]
pub(crate) mod transport;

#[cfg(feature = "kafka")]
pub(crate) use client::*;
