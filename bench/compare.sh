#!/usr/bin/env bash
# Side-by-side CPU per request of tollgate routes that differ in one feature, in one process and
# one run: interleaved wrk rounds, tollgate's CPU (user + system, all threads, /proc/PID/stat)
# divided by the requests each round made, medians per route and the ratio of each pair.
#
#   bench/compare.sh                  # every pair, ~2 minutes once tollgate is built
#   PAIRS=remote_vs_local bench/compare.sh
#   DURATION=5 REPEAT=3 bench/compare.sh
#
# A pair is "name:candidate:baseline:limit"; a path written "egress/PATH" is called through the
# egress listener (the app's side), any other on the proxy listener. The output goes to stdout
# and to bench/results/<date>-<commit>-compare.txt.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-8}
REPEAT=${REPEAT:-5}
CONNS=${CONNS:-16}
ALL_PAIRS="remote_vs_local:/remote/x:/local/x:1.05 policy_vs_roles:/policy/x:/roles/x:1.05 egress_vs_public:egress/public/x:/public/x:1.10"
PAIRS=${PAIRS:-}
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/tollgate"

BENCH_NAME=compare
# shellcheck source=bench/common.sh
. bench/common.sh

for tool in nginx wrk curl; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || need+=("$tool")
done
if [ -n "${need[*]:-}" ]; then
  log "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
scripts/ensure-tools.sh
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
log "building tollgate (cargo build --release)"
cargo build --release --quiet --bin tollgate

WORK=$(mktemp -d /tmp/tollgate-compare.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

UPSTREAM_PORT=$(free_port)
LISTEN_PORT=$(free_port)
EGRESS_PORT=$(free_port)
start_upstream "$WORK" "$UPSTREAM_PORT"
cp certs/demo-rs256.pem "$WORK/"
sed -e "s|@LISTEN_PORT@|$LISTEN_PORT|g" -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" -e "s|@EGRESS_PORT@|$EGRESS_PORT|g" bench/compare.toml >"$WORK/tollgate.toml"
RUST_LOG=warn "$BIN" --config "$WORK/tollgate.toml" >"$WORK/tollgate.out" 2>"$WORK/tollgate.err" &
TG=$!
PIDS+=("$TG")
wait_http "http://127.0.0.1:$LISTEN_PORT/realms/demo/.well-known/openid-configuration"
wait_http "http://127.0.0.1:$UPSTREAM_PORT/"

TOKEN=$(curl -fsS -u product-sa-client:password -d grant_type=client_credentials \
  "http://127.0.0.1:$LISTEN_PORT/token" | sed -nE 's/.*"access_token":"([^"]+)".*/\1/p')
[ -n "$TOKEN" ] || die "no token"
AUTH="Authorization: Bearer $TOKEN"

url_of() { # path -> the URL it is called at
  case $1 in
    egress/*) echo "http://127.0.0.1:$EGRESS_PORT/${1#egress/}" ;;
    *) echo "http://127.0.0.1:$LISTEN_PORT$1" ;;
  esac
}
CLK_TCK=$(getconf CLK_TCK)
declare -A SAMPLES
round() { # path -> appends one CPU-per-request sample (us) for it
  local path=$1 t0 t1 out reqs
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "$AUTH" "$(url_of "$path")")
  [ "$code" = 200 ] || die "$path answered $code: $(tail -3 "$WORK/tollgate.err")"
  t0=$(cpu_ticks "$TG")
  out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "$AUTH" "$(url_of "$path")")
  t1=$(cpu_ticks "$TG")
  reqs=$(awk '/ requests in / { print $1 }' <<<"$out")
  grep -q "Non-2xx" <<<"$out" && die "$path: non-2xx answers under load"
  SAMPLES[$path]+="$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }') "
}

RESULTS="$ROOT/bench/results"
mkdir -p "$RESULTS"
OUT="$RESULTS/$(date -u +%Y-%m-%d)-$(git rev-parse --short HEAD)-compare.txt"
{
  echo "# bench/compare.sh at $(git rev-parse --short HEAD), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# DURATION=$DURATION REPEAT=$REPEAT CONNS=$CONNS; CPU us per request of the tollgate process, medians of $REPEAT interleaved rounds"
  for pair in ${PAIRS:-$ALL_PAIRS}; do
    case $pair in *:*) ;; *) pair=$(tr ' ' '\n' <<<"$ALL_PAIRS" | grep "^$pair:") ;; esac
    IFS=: read -r name cand base limit <<<"$pair"
    for _ in $(seq 1 "$REPEAT"); do round "$base"; round "$cand"; done
    # shellcheck disable=SC2086
    b=$(median ${SAMPLES[$base]}); c=$(median ${SAMPLES[$cand]})
    r=$(awk -v c="$c" -v b="$b" 'BEGIN { printf "%.3f", c / b }')
    v=$(awk -v r="$r" -v l="$limit" 'BEGIN { print (r <= l) ? "PASS" : "FAIL" }')
    printf '%-20s %-12s %7s us  %-12s %7s us  ratio %s (target <= %s) %s\n' "$name" "$cand" "$c" "$base" "$b" "$r" "$limit" "$v"
    printf '  samples %s: %s\n  samples %s: %s\n' "$cand" "${SAMPLES[$cand]}" "$base" "${SAMPLES[$base]}"
  done
} | tee "$OUT"
log "written: $OUT"
