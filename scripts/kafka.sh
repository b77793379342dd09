#!/usr/bin/env bash
# Installs (if missing) and runs the Kafka-compatible test broker `nisshi` on 127.0.0.1.
#
#   scripts/kafka.sh install          install nisshi 0.8.1 with cargo (about 11 min, once)
#   scripts/kafka.sh start            start it in memory on $MQ_KAFKA_PORT (default 9092)
#   scripts/kafka.sh start-sqlite DIR start it with sqlite storage in DIR (survives restarts)
#   scripts/kafka.sh stop             stop the broker started by this script
#   scripts/kafka.sh status           exit 0 when the broker accepts connections
set -euo pipefail

PORT="${MQ_KAFKA_PORT:-9092}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="$ROOT/.nisshi"
PIDFILE="$STATE/broker-$PORT.pid"
LOG="$STATE/broker-$PORT.log"
NISSHI_VERSION=0.8.1
export PATH="$HOME/.cargo/bin:$PATH"

install() {
  if command -v nisshi >/dev/null 2>&1; then
    return 0
  fi
  echo "installing nisshi $NISSHI_VERSION (about 11 minutes on 2 cores, once per machine)" >&2
  cargo install nisshi --version "$NISSHI_VERSION" --locked --ignore-rust-version \
    --no-default-features --features dynostore,libsql
}

listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

start_with() {
  local storage="$1"
  mkdir -p "$STATE"
  if listening; then
    echo "a broker already listens on 127.0.0.1:$PORT" >&2
    return 0
  fi
  install
  nohup nisshi broker \
    --listener-url "tcp://127.0.0.1:$PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$PORT" \
    --storage-engine "$storage" \
    --group-initial-rebalance-delay 0s >>"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 200); do
    if listening; then
      echo "nisshi listening on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"), log $LOG)" >&2
      return 0
    fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      echo "nisshi exited; its log:" >&2
      cat "$LOG" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "nisshi did not listen on $PORT within 20 s; its log:" >&2
  cat "$LOG" >&2
  return 1
}

stop() {
  if [[ -f "$PIDFILE" ]]; then
    local pid
    pid="$(cat "$PIDFILE")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start_with "memory://nisshi/" ;;
  start-sqlite)
    dir="${2:?usage: kafka.sh start-sqlite DIR}"
    mkdir -p "$dir"
    start_with "sqlite:///$(cd "$dir" && pwd)/nisshi.db"
    ;;
  stop) stop ;;
  status) listening ;;
  *)
    sed -n '2,9p' "$0" >&2
    exit 2
    ;;
esac
