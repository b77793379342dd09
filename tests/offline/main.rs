//! Tests that need nothing outside the process: the in-memory broker of `TestApp` (the one
//! users test their handlers with) and configuration (files, profiles, environment, errors).

use mq_tests as support;

mod config_errors;
mod in_memory;
mod otlp;
mod request_reply;
