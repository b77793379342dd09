//! Failure handling, split the way Spring Kafka splits it: a pure [`policy`] (what a
//! failure leads to), a [`recoverer`] that does the I/O (publishing dead letters and
//! retry records, classifying publish errors), and [`spring_headers`], the one place that
//! reads and writes Spring's `kafka_dlt-*` and `retry_topic-*` headers.

pub mod policy;
pub mod recoverer;
pub mod redrive;
pub mod spring_headers;

#[cfg(test)]
mod header_fuzz;
