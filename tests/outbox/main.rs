//! Effectively-once effects against real PostgreSQL 15 on 127.0.0.1:5432 (database `test`;
//! `scripts/test.sh` starts the server and creates it): the outbox relay (two relays, broker
//! outage, rollback, lag and cleanup), the idempotent consumer (the same bytes twice, a
//! crash between handler and commit), and the example services killed with SIGKILL while
//! orders come in. Each test works in a schema or tables of its own.

use mq_tests as support;

mod app;
mod cleanup;
mod crash;
mod db;
mod inbox;
mod outage;
mod refused;
mod relay;
mod serializable;
mod services;
