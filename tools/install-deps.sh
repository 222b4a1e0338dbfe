#!/usr/bin/env bash
# Installs the Debian packages ticketd needs to build, test and benchmark.
# Idempotent: does nothing when every package is already installed.
set -euo pipefail

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
  echo "usage: tools/install-deps.sh [--check]"
  echo "  installs the Debian packages ticketd needs (needs root); --check only reports what is missing"
  exit 0
fi

PKGS=(
  build-essential cmake pkg-config
  liburing-dev libxxhash-dev libmimalloc-dev libcli11-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  redis-server redis-tools
  netcat-openbsd iproute2 procps python3 python3-redis nftables e2fsprogs
  clang libclang-rt-14-dev
  python3-redis
  # test_systemd_unit: systemd-analyze verifies deploy/ticketd.service; strace lists the
  # system calls a node makes, checked against the unit's SystemCallFilter.
  systemd strace
  # tools/make-certs.sh (the TLS tests' CA and certificates) runs the openssl command line.
  openssl
  # test_redis_exporter: the exporter monitoring stacks run against Redis, unmodified;
  # test_prometheus_scrape: a real Prometheus server scraping --metrics-addr.
  prometheus-redis-exporter prometheus
  # test_rolling_upgrade: git exports the previous release, which cmake builds.
  git
  # tools/compare --etcd and test_compare_etcd: a 3-node etcd, the peer people would pick
  # instead, benchmarked next to ticketd (a test/benchmark peer only; ticketd never needs it).
  etcd-server etcd-client
)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NODE_CLIENTS="$ROOT/tests/integration/node"

# The Node.js clients the integration tests use (ioredis; node-redis for its createCluster),
# pinned by the lock file.
node_clients() {
  [[ -d "$NODE_CLIENTS/node_modules/ioredis" && -d "$NODE_CLIENTS/node_modules/redis" ]] && return 0
  if [[ "${1:-}" == "--check" ]]; then
    echo "missing: node clients (npm ci in tests/integration/node)"
    return 1
  fi
  echo "install-deps: npm ci in tests/integration/node"
  (cd "$NODE_CLIENTS" && npm ci --no-audit --no-fund --loglevel=error)
}
# Node.js and npm: any nodejs that brings npm will do (Debian's needs its npm package).
command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  node_clients "${1:-}"
  exit $?
fi
if [[ "${1:-}" == "--check" ]]; then
  echo "missing packages: ${missing[*]}"
  exit 1
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages (${missing[*]}) and not root; run: sudo $0" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
node_clients
# redis-server's package starts a system instance on :6379, etcd-server's one on :2379 (where
# systemd runs); we never rely on them.
