#!/usr/bin/env bash
# The one test command: sets up what the tests need on a fresh machine, then runs every
# check and test. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

scripts/kafka.sh install
# promtool (Debian's prometheus package) checks real scrapes in tests/kafka/actuator.rs.
command -v promtool >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
}
# FastStream (PyPI) is the Python subscriber of tests/kafka/interop_faststream.rs; the aiokafka
# it brings is the requester and responder of tests/kafka/request_reply.rs.
python3 -c 'import faststream' 2>/dev/null || {
  command -v pip >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip
  }
  # A Debian system Python refuses plain `pip install` (PEP 668).
  pip install -q 'faststream[kafka]' || pip install -q --break-system-packages 'faststream[kafka]'
}
# pika (PyPI) is the RabbitMQ requester and responder of tests/rabbitmq/request_reply.rs.
python3 -c 'import pika' 2>/dev/null || {
  pip install -q pika || pip install -q --break-system-packages pika
}
started_here=0
if ! scripts/kafka.sh status; then
  scripts/kafka.sh start
  started_here=1
fi
cluster_started_here=0
cleanup() {
  if [[ $started_here == 1 ]]; then scripts/kafka.sh stop; fi
  if [[ $cluster_started_here == 1 ]]; then scripts/rabbit-cluster.sh stop; fi
}
trap cleanup EXIT
# RabbitMQ for tests/rabbitmq/ (127.0.0.1:5672, guest/guest; rabbitmqctl for its connection-loss test).
rabbit_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if ! rabbit_up; then
  command -v rabbitmq-server >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server
  }
  rabbitmq-server -detached
  for _ in $(seq 1 60); do rabbit_up && break; sleep 1; done
  rabbit_up || { echo "RabbitMQ did not start on 127.0.0.1:5672" >&2; exit 1; }
fi
# A three-node RabbitMQ cluster for tests/rabbitmq/cluster.rs (127.0.0.1:5681-5683, beside
# the broker above; its tests start it too when it is down).
if ! scripts/rabbit-cluster.sh status; then
  scripts/rabbit-cluster.sh start
  cluster_started_here=1
fi
# PostgreSQL 15 for tests/outbox and the benchmark's outbox section (127.0.0.1:5432, trust
# auth as this machine kind has it, user postgres, database `test`; tests make their own schemas).
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if ! pg_up; then
  command -v pg_ctlcluster >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql
  }
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  for _ in $(seq 1 60); do pg_up && break; sleep 1; done
  pg_up || { echo "PostgreSQL did not start on 127.0.0.1:5432" >&2; exit 1; }
fi
pg() { runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 "$@"; }
pg -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 || pg -c "CREATE DATABASE test"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test (unit, integration against the real broker, UI, doc)"
cargo test --workspace
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps -q
echo "== benchmark smoke run (debug build, small; checks it works, does not judge figures)"
cargo run -q -p mq-bench -- --quick --messages 20000 --runs 1 >/dev/null
