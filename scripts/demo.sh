#!/usr/bin/env bash
# The demo: build, start a tiny echo upstream on 127.0.0.1:9000 and tollgate with the bundled
# proxy.toml, fetch a token as product-sa-client, call a protected route with it, then keep
# serving until Ctrl-C. DEMO_EXIT=1 stops after the walk-through.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-tools.sh curl
cargo build --release --bin tollgate --example echo_upstream
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
target/release/examples/echo_upstream 127.0.0.1:9000 & pids+=($!)
target/release/tollgate --config proxy.toml & pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null http://127.0.0.1:9901/readyz 2>/dev/null && curl -s -o /dev/null http://127.0.0.1:8080/public && break
  sleep 0.1
done
echo
echo "== 1. fetch a token (client_credentials, client_secret_basic)"
echo '$ curl -s -X POST http://127.0.0.1:8080/realms/demo/protocol/openid-connect/token -u product-sa-client:password -d grant_type=client_credentials'
resp=$(curl -fsS -X POST http://127.0.0.1:8080/realms/demo/protocol/openid-connect/token \
  -u product-sa-client:password -d grant_type=client_credentials)
echo "$resp"
token=$(printf '%s' "$resp" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
echo
echo "== 2. its claims"
payload=$(printf '%s' "$token" | cut -d. -f2 | tr '_-' '/+')
while [ $(( ${#payload} % 4 )) -ne 0 ]; do payload="$payload="; done
printf '%s' "$payload" | base64 -d; echo
echo
echo "== 3. a protected call (route /api/orders needs realm role 'reader')"
echo '$ curl -s http://127.0.0.1:8080/api/orders/42 -H "Authorization: Bearer $TOKEN"'
curl -fsS http://127.0.0.1:8080/api/orders/42 -H "Authorization: Bearer $token"; echo
echo
echo "== 4. the same call without a token"
curl -s -i http://127.0.0.1:8080/api/orders/42 | sed -n '1p;/^www-authenticate/Ip'
echo
echo "tollgate serves on http://127.0.0.1:8080 (admin: http://127.0.0.1:9901/metrics). Ctrl-C stops it."
[ "${DEMO_EXIT:-0}" = "1" ] && exit 0
wait
