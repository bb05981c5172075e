#!/usr/bin/env bash
# Anti-entropy's cost on write throughput (docs/BENCHMARKS.md, "Anti-entropy's
# cost"): `redis-benchmark -t set -n 200000 -c 50 -P 16` against n1 of
# `enigma dev` (three nodes, replication factor 3, sync always, QUORUM) with
# anti-entropy on and off, rounds interleaved, fresh data for every run.
# Prints per run the requests per second and the CPU seconds the cluster
# process spent per 100,000 SETs (less sensitive than throughput to what
# else the machine runs).
#
# usage: scripts/bench-anti-entropy.sh ROUNDS INTERVAL_MS [KEYSPACE [REQUESTS]]
#   INTERVAL_MS: pause between anti-entropy sessions (10000 is the default;
#   100 runs sessions back to back). KEYSPACE: redis-benchmark -r (0: the
#   one key key:__rand_int__). REQUESTS: redis-benchmark -n (200000; the
#   first session starts INTERVAL_MS after boot, so at the default interval
#   a run needs more than 200000 SETs to include sessions). Needs redis-benchmark (redis-tools) and a
#   release build (cargo build --release).
set -euo pipefail
rounds=${1:-3}
interval=${2:-10000}
keyspace=${3:-0}
requests=${4:-200000}
bin=${ENIGMA_BIN:-target/release/enigma}
port=${BASE_PORT:-7800}
work=$(mktemp -d)
trap 'kill "${dev:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

ticks() { # utime + stime of process $1, in clock ticks
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

run() { # $1: true|false
  rm -rf "$work/data"
  "$bin" dev --data-dir "$work/data" --base-port "$port" \
    --anti-entropy "$1" --anti-entropy-interval-ms "$interval" \
    >"$work/dev.log" 2>&1 &
  dev=$!
  for _ in $(seq 100); do
    redis-cli -p $((port + 1)) SET warm up >/dev/null 2>&1 && break
    sleep 0.1
  done
  local range=()
  [ "$keyspace" -gt 0 ] && range=(-r "$keyspace")
  local before after rps
  before=$(ticks "$dev")
  rps=$(redis-benchmark -p $((port + 1)) -t set -n "$requests" -c 50 -P 16 "${range[@]}" -q \
    | tr '\r' '\n' | awk '/^SET:/ { print $2 }' | tail -1)
  after=$(ticks "$dev")
  local scanned
  scanned=$(redis-cli -p $((port + 1)) INFO healing | tr -d '\r' \
    | awk -F: '/^repair_bytes_scanned:/ { print $2 }')
  kill -INT "$dev"
  wait "$dev" || true
  dev=
  local hz cpu
  hz=$(getconf CLK_TCK)
  cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" \
    'BEGIN { printf "%.2f", t / hz * 100000 / n }')
  echo "anti_entropy=$1 interval_ms=$interval keyspace=$keyspace requests=$requests set_per_sec=$rps cpu_s_per_100k_sets=$cpu n1_bytes_scanned=$scanned load=$(cut -d' ' -f1 /proc/loadavg)"
}

for r in $(seq "$rounds"); do
  echo "# round $r"
  run true
  run false
done
