#!/usr/bin/env bash
# Compare-and-set at SERIAL against a plain SET at QUORUM, and the latency
# commit wait adds to SET at QUORUM (docs/BENCHMARKS.md, "SERIAL" and
# "Commit wait"). Each run starts a fresh `enigma dev` (three nodes,
# replication factor 3, sync always) and drives n1 with `enigma bench server`
# (50 clients, no pipelining: every request waits for its answer).
#
# usage: scripts/bench-serial.sh serial ROUNDS [REQUESTS]
#          uncontended `AT SERIAL SET key v IFEQ v`, each client on its own
#          key, which holds v (so every compare-and-set applies), next to
#          `AT QUORUM SET key v` on the same keys of the same cluster in the
#          same run, rounds interleaved; then the contended case: 50 clients,
#          one key (throughput, share of errors, each a TIMEOUT: lost Paxos
#          rounds or an unknown outcome; REQUESTS / 10 commands).
#        scripts/bench-serial.sh commit-wait ROUNDS [REQUESTS [CLIENTS]]
#          `AT QUORUM SET` with commit wait off, and on with uncertainty
#          bounds of 1 ms and 10 ms, rounds interleaved.
# Prints one line per measurement (`enigma bench server`'s): requests per
# second, latency p50 and p99 in milliseconds, and error replies by kind.
# Needs redis-cli (redis-tools) and a release build.
set -euo pipefail
mode=${1:?usage: bench-serial.sh serial|commit-wait ROUNDS [REQUESTS [CLIENTS]]}
rounds=${2:-3}
requests=${3:-50000}
bin=${ENIGMA_BIN:-target/release/enigma}
port=${BASE_PORT:-7900}
client_port=$((port + 1))
work=$(mktemp -d)
trap 'kill "${dev:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

start() { # extra flags for enigma dev
  rm -rf "$work/data"
  "$bin" dev --data-dir "$work/data" --base-port "$port" "$@" >"$work/dev.log" 2>&1 &
  dev=$!
  for _ in $(seq 200); do
    redis-cli -p "$client_port" AT QUORUM SET warm up 2>/dev/null | grep -q OK && return
    sleep 0.1
  done
  echo "enigma dev did not start:" >&2
  cat "$work/dev.log" >&2
  exit 1
}

stop() {
  kill -INT "$dev"
  wait "$dev" || true
  dev=
}

# One `enigma bench server` run (closed-loop clients against n1; error
# replies are counted, not fatal): prints its summary line.
bench() { # clients requests keys command...
  local clients=$1 n=$2 keys=$3
  shift 3
  "$bin" bench server --addr "127.0.0.1:$client_port" --clients "$clients" \
    --requests "$n" $keys -- "$@"
}

report() { # label summary
  echo "$1 $2 load=$(cut -d' ' -f1 /proc/loadavg)"
}

case "$mode" in
serial)
  start
  # Every client's own key holds v, so each compare-and-set applies.
  bench 50 1000 "--keys per-client" AT QUORUM SET '{key}' v >/dev/null
  redis-cli -p "$client_port" AT QUORUM SET hot v >/dev/null
  for r in $(seq "$rounds"); do
    echo "# round $r"
    report "quorum-set-distinct-keys" \
      "$(bench 50 "$requests" "--keys per-client" AT QUORUM SET '{key}' v)"
    report "serial-ifeq-distinct-keys" \
      "$(bench 50 "$requests" "--keys per-client" AT SERIAL SET '{key}' v IFEQ v)"
  done
  for r in $(seq "$rounds"); do
    report "serial-ifeq-one-key" \
      "$(bench 50 "$((requests / 10))" "" AT SERIAL SET hot v IFEQ v)"
  done
  stop
  ;;
commit-wait)
  clients=${4:-50}
  for r in $(seq "$rounds"); do
    echo "# round $r"
    for setting in off 1 10; do
      if [ "$setting" = off ]; then
        start
      else
        start --commit-wait --clock-uncertainty-ms "$setting"
      fi
      report "commit-wait=$setting" \
        "$(bench "$clients" "$requests" "--keyspace 100000" AT QUORUM SET '{key}' v)"
      stop
    done
  done
  ;;
*)
  echo "unknown mode $mode: serial or commit-wait" >&2
  exit 2
  ;;
esac
