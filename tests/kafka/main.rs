//! End-to-end tests against the real Kafka-protocol broker on 127.0.0.1:9092
//! (`scripts/kafka.sh start`; `scripts/test.sh` starts it): the listener runtime, failure
//! handling and dead letters, lanes and read-ahead, a broker restart, crash safety with
//! SIGKILL, the actuator (checked with promtool), FastStream reading mq's events, and the
//! example services as separate processes. Each test owns its topics and groups (unique
//! names), so the tests of this binary run side by side.

use mq_tests as support;

mod actuator;
mod broker_restart;
mod crash_safety;
mod dlt_publish_failure;
mod e2e;
mod examples_flow;
mod failure_handling;
mod group_protocol;
mod interop_faststream;
mod lanes;
mod listener_control;
mod poll_thread;
mod read_ahead;
mod request_reply;
