#!/usr/bin/env bash
# The authorised route's CPU per request with the shared store (Redis) beside the in-memory
# store, side by side in one run: two tollgate processes with the same config but `[store]`,
# interleaved wrk rounds against each, each process's CPU (user + system, /proc/PID/stat)
# divided by the requests of its round; medians and their ratio (target <= 1.05).
#
#   bench/compare-store.sh                 # ~2 minutes once tollgate is built
#   DURATION=5 REPEAT=3 bench/compare-store.sh
#
# The output goes to stdout and to bench/results/<date>-<commit>-compare-store.txt.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-8}
REPEAT=${REPEAT:-5}
CONNS=${CONNS:-16}
LIMIT=1.05
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/tollgate"

BENCH_NAME=compare-store
# shellcheck source=bench/common.sh
. bench/common.sh

scripts/ensure-tools.sh wrk curl
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || scripts/ensure-tools.sh nginx
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
log "building tollgate (cargo build --release)"
cargo build --release --quiet --bin tollgate

WORK=$(mktemp -d /tmp/tollgate-compare-store.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

UPSTREAM_PORT=$(free_port)
REDIS_PORT=$(free_port)
start_upstream "$WORK" "$UPSTREAM_PORT"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
cp certs/demo-rs256.pem "$WORK/"

# Starts one tollgate with bench/compare.toml on a free port; extra TOML (the store) appended.
# Sets PORT_<name> and PID_<name>.
start() {
  local name=$1 extra=$2 port
  port=$(free_port)
  sed -e "s|@LISTEN_PORT@|$port|g" -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" -e "s|@EGRESS_PORT@|$(free_port)|g" \
    bench/compare.toml >"$WORK/$name.toml"
  printf '%s\n' "$extra" >>"$WORK/$name.toml"
  RUST_LOG=warn "$BIN" --config "$WORK/$name.toml" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  printf -v "PID_$name" %s "$!"
  printf -v "PORT_$name" %s "$port"
  wait_http "http://127.0.0.1:$port/realms/demo/.well-known/openid-configuration"
}
start memory ""
start redis "$(printf '[store]\nurl = "redis://127.0.0.1:%s/0"\n' "$REDIS_PORT")"
wait_http "http://127.0.0.1:$UPSTREAM_PORT/"

CLK_TCK=$(getconf CLK_TCK)
declare -A SAMPLES
round() { # name -> appends one CPU-per-request sample (us) of that process
  local name=$1 port pid token t0 t1 out reqs code
  port="PORT_$name"; port=${!port}; pid="PID_$name"; pid=${!pid}
  token=$(curl -fsS -u product-sa-client:password -d grant_type=client_credentials \
    "http://127.0.0.1:$port/token" | sed -nE 's/.*"access_token":"([^"]+)".*/\1/p')
  [ -n "$token" ] || die "$name: no token"
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$port/local/x")
  [ "$code" = 200 ] || die "$name answered $code: $(tail -3 "$WORK/$name.err")"
  t0=$(cpu_ticks "$pid")
  out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "Authorization: Bearer $token" "http://127.0.0.1:$port/local/x")
  t1=$(cpu_ticks "$pid")
  reqs=$(awk '/ requests in / { print $1 }' <<<"$out")
  grep -q "Non-2xx" <<<"$out" && die "$name: non-2xx answers under load"
  SAMPLES[$name]+="$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }') "
}

up=$(curl -fsS "http://$(sed -E 's/.*admin=([^ ]+).*/\1/' "$WORK/redis.out")/metrics" | awk '/^tollgate_store_up/ { print $2 }')
[ "$up" = 1 ] || die "the Redis-backed tollgate is not connected (tollgate_store_up=$up)"

RESULTS="$ROOT/bench/results"
mkdir -p "$RESULTS"
OUT="$RESULTS/$(date -u +%Y-%m-%d)-$(git rev-parse --short HEAD)-compare-store.txt"
{
  echo "# bench/compare-store.sh at $(git rev-parse --short HEAD), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# DURATION=$DURATION REPEAT=$REPEAT CONNS=$CONNS; CPU us per request of each tollgate process on /local/x (roles), medians of $REPEAT interleaved rounds"
  for _ in $(seq 1 "$REPEAT"); do round memory; round redis; done
  # shellcheck disable=SC2086
  b=$(median ${SAMPLES[memory]}); c=$(median ${SAMPLES[redis]})
  r=$(awk -v c="$c" -v b="$b" 'BEGIN { printf "%.3f", c / b }')
  v=$(awk -v r="$r" -v l="$LIMIT" 'BEGIN { print (r <= l) ? "PASS" : "FAIL" }')
  printf '%-20s %-8s %7s us  %-8s %7s us  ratio %s (target <= %s) %s\n' redis_vs_memory redis "$c" memory "$b" "$r" "$LIMIT" "$v"
  printf '  samples redis: %s\n  samples memory: %s\n' "${SAMPLES[redis]}" "${SAMPLES[memory]}"
} | tee "$OUT"
log "written: $OUT"
