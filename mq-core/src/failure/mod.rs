//! Failure handling, split the way Spring Kafka splits it: a pure `policy` (what a
//! failure leads to), a `recoverer` that does the I/O (publishing dead letters and
//! retry records, classifying publish errors), the `routes` each transport supplies
//! (its dead-letter and retry conventions), `info` (why a record failed: [`FailureInfo`])
//! and [`redrive`] (replaying dead letters).

pub(crate) mod info;
pub(crate) mod policy;
pub(crate) mod recoverer;
pub mod redrive;
pub(crate) mod routes;
pub(crate) mod shrink;

pub use info::FailureInfo;
