#!/usr/bin/env bash
# Benchmarks mq against the hand-written rdkafka loop it replaces (see BENCHMARKS.md).
#
#   scripts/bench.sh                 full run: 1,000,000 messages, 5 runs each (a few minutes)
#   scripts/bench.sh --quick         smoke run: 100,000 messages (under a minute)
#   scripts/bench.sh --only throughput --runs 7    any mq-bench option (--help lists them)
#   scripts/bench.sh --only rabbit   RabbitMQ (127.0.0.1:5672 or MQ_BENCH_AMQP): mq vs lapin loops
#   scripts/bench.sh --glibc ...     the same with glibc's malloc instead of jemalloc
#                                    (mq-bench built with --no-default-features)
#
# Starts the broker (scripts/kafka.sh) when none listens on 127.0.0.1:9092 and stops it
# again afterwards, builds mq-bench in release mode, runs it, and keeps the output in
# $CARGO_TARGET_DIR/bench/ (default target/bench/): results-<time>.txt and .json.
# Exits non-zero when the benchmark fails (no broker, a lost message, a failed scrape),
# never because a figure missed its target.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

started_here=0
if [[ -z "${MQ_BENCH_BOOTSTRAP:-}" ]] && ! scripts/kafka.sh status; then
  scripts/kafka.sh start
  started_here=1
fi
cleanup() { if [[ $started_here == 1 ]]; then scripts/kafka.sh stop; fi; }
trap cleanup EXIT

features=()
if [[ "${1:-}" == "--glibc" ]]; then
  features=(--no-default-features)
  shift
fi

cargo build -q -p mq-bench --release "${features[@]}"
out="${CARGO_TARGET_DIR:-target}/bench"
mkdir -p "$out"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
echo "load before: $(cat /proc/loadavg)"
cargo run -q -p mq-bench --release "${features[@]}" -- --json "$out/results-$stamp.json" "$@" \
  | tee "$out/results-$stamp.txt"
echo "load after: $(cat /proc/loadavg)"
echo "results: $out/results-$stamp.txt, $out/results-$stamp.json"
