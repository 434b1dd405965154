#!/usr/bin/env bash
# Soak of two replicas sharing one redis-server: keep-alive clients fetch tokens and call a
# protected route at both replicas while tokens are revoked at one and checked at the other,
# both configs are rewritten (and reloaded) every second, and Redis is killed and restarted
# once mid-run. Passes with 0 failed requests that should have passed (wrk: no socket errors,
# no non-2xx) and 0 revoked tokens accepted more than 1 s after their revocation was answered.
# Usage: bench/soak-store.sh [SECONDS] [CONNECTIONS per replica]   (defaults: 60 s, 100)
# The report goes to stdout and to bench/results/<date>-<commit>-soak-store.txt. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-60}
CONNS=${2:-100}
scripts/ensure-tools.sh wrk curl
cargo build --release --bin tollgate --example echo_upstream >/dev/null 2>&1
ulimit -n 65536 2>/dev/null || true

mkdir -p bench/results
OUT="bench/results/$(date -u +%Y-%m-%d)-$(git rev-parse --short HEAD)-soak-store.txt"
exec > >(tee "$OUT")
echo "# bench/soak-store.sh at $(git rev-parse --short HEAD), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/redis.pid" ] && kill "$(cat "$work/redis.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

BENCH_NAME=soak-store
# shellcheck source=bench/common.sh
. bench/common.sh
UP_PORT=$(free_port)
REDIS_PORT=$(free_port)
target/release/examples/echo_upstream "127.0.0.1:$UP_PORT" & pids+=($!)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >>"$work/redis.log" 2>&1 &
echo $! >"$work/redis.pid"
for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

config() {
  cat <<TOML
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
default_realm = "demo"
auth_failures_per_minute = 100000

[store]
url = "redis://127.0.0.1:$REDIS_PORT/0"

[realms.demo]
issuer = "http://tollgate.soak/realms/demo"
access_token_lifespan = "$1"
roles = ["reader"]
signing_keys = [ { kid = "demo-rs256", alg = "RS256", private_key = "demo-rs256.pem" } ]

[realms.demo.clients.product-sa-client]
secret = "password"
service_account_roles = ["reader"]

[realms.demo.clients.revoker]
secret = "revoker-secret"
service_account_roles = ["reader"]

[[routes]]
prefix = "/api"
roles = ["reader"]
upstream = "127.0.0.1:$UP_PORT"
TOML
}
declare -A HTTP ADMIN TG
for r in a b; do
  mkdir -p "$work/$r"
  cp certs/demo-rs256.pem "$work/$r/"
  config 5m >"$work/$r/proxy.toml"
  RUST_LOG=warn target/release/tollgate --config "$work/$r/proxy.toml" >"$work/$r/out" 2>"$work/$r/err" &
  TG[$r]=$!
  pids+=(${TG[$r]})
  for _ in $(seq 1 100); do grep -q listening "$work/$r/out" 2>/dev/null && break; sleep 0.05; done
  HTTP[$r]=$(sed -E 's/.*http=([^ ]+).*/\1/' "$work/$r/out")
  ADMIN[$r]=$(sed -E 's/.*admin=([^ ]+).*/\1/' "$work/$r/out")
  for _ in $(seq 1 100); do curl -fs "http://${ADMIN[$r]}/readyz" >/dev/null && break; sleep 0.05; done
done
store_up() { curl -fsS "http://${ADMIN[$1]}/metrics" | awk '/^tollgate_store_up/ {print $2}'; }
for _ in $(seq 1 100); do [ "$(store_up a)$(store_up b)" = 11 ] && break; sleep 0.05; done
export TOKEN
TOKEN=$(curl -fsS -X POST "http://${HTTP[a]}/token" -u product-sa-client:password -d grant_type=client_credentials | sed -E 's/.*"access_token":"([^"]+)".*/\1/')


echo "soak-store: ${DURATION}s, $CONNS connections per replica, 2 replicas, configs rewritten every second, Redis restarted at t=$((DURATION / 2))s"
# Config reloads, and the Redis restart half way.
(
  i=0
  while [ $i -lt "$DURATION" ]; do
    sleep 1; i=$((i + 1))
    for r in a b; do
      if [ $((i % 2)) -eq 0 ]; then config 5m; else config 6m; fi >"$work/$r/proxy.toml.new"
      mv "$work/$r/proxy.toml.new" "$work/$r/proxy.toml"
    done
    if [ $i -eq $((DURATION / 2)) ]; then
      kill -9 "$(cat "$work/redis.pid")" 2>/dev/null || true
      wait "$(cat "$work/redis.pid")" 2>/dev/null || true
      echo "  t=${i}s Redis killed; store_up a=$(sleep 0.5; store_up a) b=$(store_up b)"
      sleep 2
      redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >>"$work/redis.log" 2>&1 &
      echo $! >"$work/redis.pid"
      echo "  t=$((i + 2))s Redis restarted"
    fi
  done
) &
pids+=($!)

# Revocations: a token from one replica, revoked there, must be refused at the other within 1 s
# of the answer. A revocation answered 503 (Redis down) was not acknowledged: nothing to check.
(
  i=0; acked=0; unacked=0; late=0; refused_valid=0; worst=0
  end=$((SECONDS + DURATION))
  while [ $SECONDS -lt $end ]; do
    i=$((i + 1))
    if [ $((i % 2)) -eq 0 ]; then from=a; to=b; else from=b; to=a; fi
    tok=$(curl -fsS -X POST "http://${HTTP[$from]}/token" -u revoker:revoker-secret -d grant_type=client_credentials | sed -E 's/.*"access_token":"([^"]+)".*/\1/') || continue
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" "http://${HTTP[$to]}/api/x")
    [ "$code" = 200 ] || refused_valid=$((refused_valid + 1))
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://${HTTP[$from]}/realms/demo/protocol/openid-connect/revoke" -u revoker:revoker-secret -d "token=$tok")
    if [ "$code" != 200 ]; then unacked=$((unacked + 1)); sleep 0.2; continue; fi
    acked=$((acked + 1))
    # Timed at the send of the request that was refused: its answer can lag under load.
    t0=$(date +%s%N); seen=0
    while :; do
      ms=$(( ($(date +%s%N) - t0) / 1000000 ))
      [ $ms -lt 1000 ] || break
      code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" "http://${HTTP[$to]}/api/x")
      if [ "$code" = 401 ]; then seen=1; break; fi
      sleep 0.02
    done
    [ $seen = 1 ] && [ $ms -gt $worst ] && worst=$ms
    if [ $seen = 0 ]; then late=$((late + 1)); fi
    sleep 0.2
  done
  echo "revocations acknowledged: $acked (answered 503 while Redis was down: $unacked); refused at the other replica by a request sent at most $worst ms after the answer; accepted past 1 s: $late; fresh tokens refused: $refused_valid" >"$work/revocations"
) &
rev=$!

rss() { awk '/VmRSS/ {print $2}' "/proc/${TG[$1]}/status"; }
echo "RSS at start: a $(rss a) KiB, b $(rss b) KiB"
wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s -s bench/mix.lua "http://${HTTP[a]}" >"$work/wrk.a" &
wa=$!
wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s -s bench/mix.lua "http://${HTTP[b]}" >"$work/wrk.b" &
wb=$!
wait $wa $wb
wait $rev || true
sleep 1
for r in a b; do
  kill -0 "${TG[$r]}" 2>/dev/null || { echo "replica $r exited during the soak:"; tail -20 "$work/$r/err"; exit 1; }
done
count() { { grep -hE "$1" "$work"/wrk.* || true; } | { grep -oE "[0-9]+" || true; } | awk '{s+=$1} END {print s+0}'; }
socket_errors=$(count "Socket errors")
non2xx=$(count "Non-2xx")
requests=$(awk '/ requests in / {s+=$1} END {print s}' "$work"/wrk.*)
late=$(sed -E 's/.*accepted past 1 s: ([0-9]+).*/\1/' "$work/revocations")
refused_valid=$(sed -E 's/.*fresh tokens refused: ([0-9]+).*/\1/' "$work/revocations")
echo
for r in a b; do
  m=$(curl -sS "http://${ADMIN[$r]}/metrics")
  echo "replica $r: reloads $(awk '/^tollgate_config_reloads_total/ {print $2}' <<<"$m"), reload failures $(awk '/^tollgate_config_reload_failures_total/ {print $2}' <<<"$m"), store_up $(awk '/^tollgate_store_up/ {print $2}' <<<"$m"), store errors $(awk '/^tollgate_store_errors_total/ {s+=$2} END {print s+0}' <<<"$m"), RSS $(rss $r) KiB"
done
echo "requests: $requests; socket errors: $socket_errors, non-2xx responses: $non2xx"
cat "$work/revocations"
if [ "$socket_errors" = 0 ] && [ "$non2xx" = 0 ] && [ "$late" = 0 ] && [ "$refused_valid" = 0 ]; then
  echo "RESULT: PASS"
else
  echo "RESULT: FAIL"; exit 1
fi
