#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this machine, beside the system broker:
# nodes ozg-rmq1..3@localhost on AMQP ports 5681..5683 (distribution ports
# 25681..25683), data under ${OZG_RMQ_DIR:-/tmp/ozg-rmq-cluster}. Used by the
# three-node test (tests/tests/cluster.rs, run outside CI; see BENCHMARKS.md).
#
#   bench/rabbitmq-cluster.sh start     # start the three, join them, wait
#   bench/rabbitmq-cluster.sh kill N    # SIGKILL node N (1..3): no goodbye
#   bench/rabbitmq-cluster.sh restart N # start node N again (rejoins)
#   bench/rabbitmq-cluster.sh status
#   bench/rabbitmq-cluster.sh stop      # stop all three, remove their data
set -euo pipefail
base=${OZG_RMQ_DIR:-/tmp/ozg-rmq-cluster}
bin=/usr/lib/rabbitmq/bin
export HOME=$base/home   # the nodes' and rabbitmqctl's shared Erlang cookie

node() { echo "ozg-rmq$1@localhost"; }
ctl() { local n=$1; shift; "$bin/rabbitmqctl" -n "$(node "$n")" "$@"; }

start_node() {
  local n=$1 port=$((5680 + $1))
  mkdir -p "$base/$n"
  cat >"$base/$n/rabbitmq.conf" <<EOF
listeners.tcp.local = 127.0.0.1:$port
loopback_users = none
EOF
  : >"$base/$n/enabled_plugins"
  RABBITMQ_NODENAME=$(node "$n") RABBITMQ_NODE_PORT=$port RABBITMQ_DIST_PORT=$((20000 + port)) \
  RABBITMQ_MNESIA_BASE=$base/$n/mnesia RABBITMQ_LOG_BASE=$base/$n/log \
  RABBITMQ_PID_FILE=$base/$n/pid RABBITMQ_CONFIG_FILE=$base/$n/rabbitmq.conf \
  RABBITMQ_ENABLED_PLUGINS_FILE=$base/$n/enabled_plugins RABBITMQ_CONF_ENV_FILE=/dev/null \
    "$bin/rabbitmq-server" -detached
  for _ in $(seq 1 60); do
    if ctl "$n" -q await_startup --timeout 5 >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "node $n did not start (log: $base/$n/log)" >&2
  return 1
}

case "${1:-}" in
  start)
    mkdir -p "$HOME"
    if [ ! -f "$HOME/.erlang.cookie" ]; then
      head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$HOME/.erlang.cookie"
      chmod 400 "$HOME/.erlang.cookie"
    fi
    for n in 1 2 3; do start_node "$n"; done
    for n in 2 3; do
      ctl "$n" -q stop_app
      ctl "$n" -q join_cluster "$(node 1)"
      ctl "$n" -q start_app
    done
    ctl 1 -q await_startup
    ctl 1 cluster_status | sed -n '/Running Nodes/,/Versions/p'
    ;;
  kill)
    pid=$(cat "$base/$2/pid")
    kill -9 "$pid"
    echo "node $2 (pid $pid) killed"
    ;;
  restart)
    start_node "$2"
    ;;
  status)
    ctl 1 cluster_status
    ;;
  stop)
    for n in 1 2 3; do
      if [ -f "$base/$n/pid" ]; then
        ctl "$n" -q stop >/dev/null 2>&1 || kill -9 "$(cat "$base/$n/pid")" 2>/dev/null || true
      fi
    done
    rm -rf "$base"
    ;;
  *)
    echo "usage: $0 start|kill N|restart N|status|stop" >&2
    exit 2
    ;;
esac
