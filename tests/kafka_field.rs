//! Kafka in the field (issue 23): static membership and fatal consumer errors, replaying
//! Spring's dead letters, the idempotent listener under a small pool. Against the real broker
//! (and librdkafka's MockCluster where a fault must be injected) and PostgreSQL.

use mq_tests as support;

#[path = "kafka/static_membership.rs"]
mod static_membership;

#[path = "kafka/dlt_replay_spring.rs"]
mod dlt_replay_spring;

#[path = "kafka/inbox_pool.rs"]
mod inbox_pool;
