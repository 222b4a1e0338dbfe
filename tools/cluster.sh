#!/usr/bin/env bash
# Starts, stops and shows a local N-node ticketd cluster on loopback, for people and tests.
# Node i listens on 127.0.0.1:(11000+i) for clients and 127.0.0.1:(12000+i) for raft;
# node 1 founds the cluster, the others --join it. PIDs are kept in the data directory,
# and `stop` ends only those processes.
set -euo pipefail

usage() {
  cat <<USAGE
usage: tools/cluster.sh start [N] | stop | status
  start N   start an N-node cluster (default 3; 1..9) and wait until all N vote
  stop      stop the nodes this script started (SIGTERM, then SIGKILL after 10 s)
  status    show each node's pid, role and the leader
environment:
  TICKETD_BIN          ticketd binary (default: build/ticketd next to this script's repo)
  TICKETD_CLUSTER_DIR  data + pid + log directory (default: ./cluster-data)
  TICKETD_DURABILITY   high|medium|low (default: high)
  TICKETD_NODE_ARGS    extra ticketd flags for every node, split on spaces
                       (e.g. "--default-mode window --lease"; default: none)
USAGE
}

here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${TICKETD_BIN:-$here/build/ticketd}"
dir="${TICKETD_CLUSTER_DIR:-$PWD/cluster-data}"
durability="${TICKETD_DURABILITY:-high}"
read -r -a node_args <<<"${TICKETD_NODE_ARGS:-}"

cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}" 2>/dev/null; }

alive() { [[ -f "$dir/node$1.pid" ]] && kill -0 "$(cat "$dir/node$1.pid")" 2>/dev/null; }

start() {
  local n="${1:-3}"
  if ! [[ "$n" =~ ^[1-9]$ ]]; then echo "cluster.sh: N must be 1..9, got '$n'" >&2; exit 2; fi
  if [[ ! -x "$bin" ]]; then echo "cluster.sh: no ticketd binary at $bin (run make)" >&2; exit 1; fi
  command -v redis-cli >/dev/null || { echo "cluster.sh: redis-cli not found (tools/install-deps.sh)" >&2; exit 1; }
  mkdir -p "$dir"
  for i in $(seq 1 "$n"); do
    if alive "$i"; then echo "node $i already running (pid $(cat "$dir/node$i.pid"))"; continue; fi
    local args=(--id "$i" --saddr "127.0.0.1:$((11000 + i))" --raddr "127.0.0.1:$((12000 + i))"
                --dir "$dir" --durability "$durability")
    [[ "$i" -gt 1 ]] && args+=(--join "127.0.0.1:11001")
    args+=("${node_args[@]}")
    "$bin" "${args[@]}" >>"$dir/node$i.log" 2>&1 &
    echo $! >"$dir/node$i.pid"
    echo "node $i started (pid $!, client 127.0.0.1:$((11000 + i)), log $dir/node$i.log)"
    if [[ "$i" -eq 1 ]]; then
      for _ in $(seq 1 100); do [[ "$(cli 11001 PING)" == "PONG" ]] && break; sleep 0.05; done
    fi
  done
  for _ in $(seq 1 200); do
    local voters
    voters=$(cli 11001 RAFT.CONFIGURATION | grep -cx Voter || true)
    if [[ "$voters" -ge "$n" ]]; then echo "cluster up: $voters voters, leader $(cli 11001 RAFT.LEADER)"; return 0; fi
    sleep 0.1
  done
  echo "cluster.sh: the cluster did not reach $n voters in 20 s; see $dir/node*.log" >&2
  exit 1
}

stop() {
  shopt -s nullglob
  local pids=()
  for f in "$dir"/node*.pid; do
    local pid; pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; pids+=("$pid"); fi
    rm -f "$f"
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  done
  echo "stopped ${#pids[@]} node(s)"
}

status() {
  shopt -s nullglob
  local any=0
  for f in "$dir"/node*.pid; do
    any=1
    local i; i=$(basename "$f" .pid); i=${i#node}
    if alive "$i"; then
      local state; state=$(cli $((11000 + i)) RAFT.STATS | awk 'p{print;exit} /^state$/{p=1}')
      echo "node $i: pid $(cat "$f"), $state, client 127.0.0.1:$((11000 + i))"
    else
      echo "node $i: not running"
    fi
  done
  [[ $any -eq 1 ]] || echo "no nodes started from $dir"
}

case "${1:-}" in
  start) start "${2:-3}" ;;
  stop) stop ;;
  status) status ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
