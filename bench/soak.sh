#!/usr/bin/env bash
# Soak: a few hundred concurrent keep-alive clients fetch tokens and call a protected route for
# a minute while the config is rewritten (and reloaded) every second. Reports wrk's error
# counts (must be 0: no socket errors, no non-2xx), the reloads applied and tollgate's RSS.
# Usage: bench/soak.sh [SECONDS] [CONNECTIONS]   (defaults: 60 s, 300 connections)
# Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-60}
CONNS=${2:-300}
scripts/ensure-tools.sh wrk curl
cargo build --release --bin tollgate --example echo_upstream >/dev/null
ulimit -n 65536 2>/dev/null || true

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }
UP_PORT=$(free_port)
target/release/examples/echo_upstream "127.0.0.1:$UP_PORT" & pids+=($!)

cp certs/demo-rs256.pem certs/demo-es256.pem "$work/"
config() {
  cat <<TOML
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
default_realm = "demo"
auth_failures_per_minute = 100000

[realms.demo]
access_token_lifespan = "$1"
roles = ["reader"]
signing_keys = [ { kid = "demo-rs256", alg = "RS256", private_key = "demo-rs256.pem" },
                 { kid = "demo-es256", alg = "ES256", private_key = "demo-es256.pem" } ]

[realms.demo.clients.product-sa-client]
secret = "password"
service_account_roles = ["reader"]

[[routes]]
prefix = "/api"
roles = ["reader"]
upstream = "127.0.0.1:$UP_PORT"
TOML
}
config 5m > "$work/proxy.toml"
RUST_LOG=warn target/release/tollgate --config "$work/proxy.toml" > "$work/out" 2> "$work/err" & TG=$!
pids+=($TG)
for _ in $(seq 1 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.05; done
HTTP=$(sed -E 's/.*http=([^ ]+).*/\1/' "$work/out")
ADMIN=$(sed -E 's/.*admin=([^ ]+).*/\1/' "$work/out")
for _ in $(seq 1 100); do curl -fs "http://$ADMIN/readyz" >/dev/null && break; sleep 0.05; done
export TOKEN
TOKEN=$(curl -fsS -X POST "http://$HTTP/token" -u product-sa-client:password -d grant_type=client_credentials | sed -E 's/.*"access_token":"([^"]+)".*/\1/')


rss() { awk '/VmRSS/ {print $2}' "/proc/$TG/status"; }
echo "soak: ${DURATION}s, $CONNS connections, config rewritten every second; RSS at start $(rss) KiB"
(
  i=0
  while [ $i -lt "$DURATION" ]; do
    sleep 1; i=$((i + 1))
    if [ $((i % 2)) -eq 0 ]; then config 5m; else config 6m; fi > "$work/proxy.toml.new"
    mv "$work/proxy.toml.new" "$work/proxy.toml"
    [ $((i % 10)) -eq 0 ] && echo "  t=${i}s RSS $(rss) KiB"
  done
) &
pids+=($!)
wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 5s -s bench/mix.lua "http://$HTTP" | tee "$work/wrk"
sleep 1
kill -0 "$TG" 2>/dev/null || { echo "tollgate exited during the soak:"; tail -20 "$work/err"; exit 1; }
metrics=$(curl -sS "http://$ADMIN/metrics" || true)
reloads=$(echo "$metrics" | awk '/^tollgate_config_reloads_total/ {print $2}')
failures=$(echo "$metrics" | awk '/^tollgate_config_reload_failures_total/ {print $2}')
count() { { grep -E "$1" "$work/wrk" || true; } | { grep -oE "[0-9]+" || true; } | awk '{s+=$1} END {print s+0}'; }
socket_errors=$(count "Socket errors")
non2xx=$(count "Non-2xx")
echo
echo "reloads applied: $reloads, reload failures: $failures"
echo "socket errors: ${socket_errors:-0}, non-2xx responses: ${non2xx:-0}"
echo "RSS at end: $(rss) KiB"
if [ "${socket_errors:-0}" = "0" ] && [ "${non2xx:-0}" = "0" ]; then echo "RESULT: PASS (0 errors)"; else echo "RESULT: FAIL"; exit 1; fi
