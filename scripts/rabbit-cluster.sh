#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this machine, for tests/rabbitmq/cluster.rs: nodes
# mqc1@localhost, mqc2@localhost and mqc3@localhost listening for AMQP on 127.0.0.1:5681,
# 5682 and 5683 (guest/guest), beside the machine's own broker on 5672, which they do not
# touch: their own data, logs and Erlang cookie under $MQ_RABBIT_CLUSTER_DIR
# (default /tmp/mq-rabbit-cluster), Debian's rabbitmq-server run as this user.
#
#   scripts/rabbit-cluster.sh start          start the nodes that are down, join a new cluster
#   scripts/rabbit-cluster.sh status         exit 0 when all three answer on AMQP
#   scripts/rabbit-cluster.sh stop           stop the three nodes
#   scripts/rabbit-cluster.sh ctl N ARGS..   rabbitmqctl ARGS on node N (1-3), e.g. stop_app
set -euo pipefail

dir="${MQ_RABBIT_CLUSTER_DIR:-/tmp/mq-rabbit-cluster}"
bin=/usr/lib/rabbitmq/bin
export HOME="$dir/home"

node_env() {
  local n=$1 base="$dir/n$1"
  export RABBITMQ_NODENAME="mqc$n@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT=$((5680 + n)) RABBITMQ_DIST_PORT=$((25680 + n))
  export RABBITMQ_MNESIA_BASE="$base/mnesia" RABBITMQ_LOG_BASE="$base/log"
  export RABBITMQ_PID_FILE="$base/pid" RABBITMQ_ENABLED_PLUGINS_FILE="$base/plugins"
  export RABBITMQ_CONFIG_FILE="$base/rabbitmq" RABBITMQ_ADVANCED_CONFIG_FILE="$base/advanced.config"
}

ctl() { local n=$1; shift; "$bin/rabbitmqctl" -n "mqc$n@localhost" "$@"; }
amqp_up() { (exec 3<>"/dev/tcp/127.0.0.1/$((5680 + $1))") 2>/dev/null; }
all_up() { amqp_up 1 && amqp_up 2 && amqp_up 3; }

# Waits until node N runs (a node just started with -detached is not reachable for a
# while: await_startup fails at once on a node it cannot reach), then until its app started.
# At most 180 s in all (a node that is reachable but slow uses up the rest in one try).
await_node() {
  local n=$1 deadline=$((SECONDS + 180))
  while ((SECONDS < deadline)); do
    ctl "$n" await_startup -t $((deadline - SECONDS)) >/dev/null 2>&1 && return 0
    sleep 1
  done
  ctl "$n" await_startup -t 10 # the last try says why
}

# Nodes 2 and 3 join node 1's cluster unless they are in it already: a start that was cut
# short (or found the nodes up but never joined) is completed, not taken for done.
join_all() {
  local members
  members="$(ctl 1 cluster_status 2>/dev/null)"
  for n in 2 3; do
    grep -q "mqc$n@localhost" <<<"$members" && continue
    ctl "$n" stop_app >/dev/null
    ctl "$n" join_cluster mqc1@localhost >/dev/null
    ctl "$n" start_app >/dev/null
  done
}

start_node() {
  local n=$1 base="$dir/n$1"
  mkdir -p "$base"
  echo "[]." >"$base/plugins"
  # guest may connect from 127.0.0.1 only, as on the machine's broker.
  printf 'loopback_users.guest = true\n' >"$base/rabbitmq.conf"
  (node_env "$n" && "$bin/rabbitmq-server" -detached)
}

case "${1:-}" in
  start)
    command -v rabbitmq-server >/dev/null || {
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server
    }
    if [[ ! -d "$dir/n1/mnesia" ]]; then
      rm -rf "$dir"
      mkdir -p "$HOME"
      # A cookie of its own: rabbitmqctl here never reaches the machine's broker.
      head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$HOME/.erlang.cookie"
      chmod 400 "$HOME/.erlang.cookie"
    fi
    # A node whose app a test stopped (ctl N stop_app) is started again; one that is not
    # running at all is started.
    for n in 1 2 3; do
      amqp_up "$n" || ctl "$n" start_app >/dev/null 2>&1 || start_node "$n"
    done
    for n in 1 2 3; do await_node "$n"; done
    join_all
    for _ in $(seq 1 60); do all_up && break; sleep 1; done
    all_up || { echo "the RabbitMQ cluster did not start (logs: $dir/n*/log)" >&2; exit 1; }
    ;;
  status)
    all_up
    ;;
  stop)
    for n in 1 2 3; do ctl "$n" stop >/dev/null 2>&1 || true; done
    ;;
  ctl)
    shift
    ctl "$@"
    ;;
  *)
    echo "usage: $0 start|status|stop|ctl N ARGS.." >&2
    exit 2
    ;;
esac
