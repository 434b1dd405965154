#!/usr/bin/env bash
# The public route's median latency while another connection sends wrong secrets to a client
# whose secret is an argon2id hash, against the same route idle. argon2 runs on tollgate's
# blocking pool, not on the proxy workers, so the ratio should stay within 1.5x.
#
#   bench/argon2_latency.sh               # ~2 minutes once tollgate is built (release, fat LTO)
#   ROUNDS=5 DURATION=10 bench/argon2_latency.sh
#
# Knobs (environment): ROUNDS interleaved idle/attacked pairs (3), DURATION seconds per
# measurement (8), RATE requests/s on the public route (200), CONNS its connections (2),
# ATTACKERS connections sending wrong secrets, one request at a time each (1).
# Writes its figures to bench/results/argon2_latency.txt.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
RATE=${RATE:-200}
CONNS=${CONNS:-2}
ATTACKERS=${ATTACKERS:-1}
TARGET=1.5
RESULTS="$ROOT/bench/results/argon2_latency.txt"

log() { printf '%s\n' "$*" >&2; }
die() { log "argon2_latency: $*"; exit 1; }

command -v curl >/dev/null || die "needs curl"
scripts/ensure-tools.sh
log "building tollgate, examples/echo_upstream and examples/openloop (cargo build --release)"
cargo build --release --quiet --bin tollgate --example echo_upstream --example openloop
BIN="$ROOT/target/release/tollgate"
ECHO_BIN="$ROOT/target/release/examples/echo_upstream"
OPENLOOP_BIN="$ROOT/target/release/examples/openloop"

WORK=$(mktemp -d /tmp/tollgate-argon2.XXXXXX)
STARTED=()
cleanup() {
  set +e
  local pid
  for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${STARTED[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# A free loopback port for the echo upstream (it takes an address, not port 0).
free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port"
}

UP_PORT=$(free_port)
"$ECHO_BIN" "127.0.0.1:$UP_PORT" &
STARTED+=($!)
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$UP_PORT") 2>/dev/null && break; sleep 0.05; done

HASHED=$(printf 'the-right-secret' | "$BIN" hash-secret)
case "$HASHED" in '$argon2id$'*) ;; *) die "hash-secret printed no argon2id PHC string" ;; esac
cp certs/demo-rs256.pem "$WORK/"
cat >"$WORK/proxy.toml" <<EOF
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
default_realm = "demo"
# Every wrong secret reaches argon2: the throttle would otherwise answer most of them 429.
auth_failures_per_minute = 100000000

[realms.demo]
roles = ["reader"]
signing_keys = [ { kid = "demo-rs256", alg = "RS256", private_key = "demo-rs256.pem" } ]

[realms.demo.clients.hashed-client]
secret = "$HASHED"
service_account_roles = ["reader"]

[[routes]]
prefix = "/public"
public = true
upstream = "127.0.0.1:$UP_PORT"
EOF

RUST_LOG=warn "$BIN" --config "$WORK/proxy.toml" >"$WORK/tollgate.out" 2>"$WORK/tollgate.err" &
STARTED+=($!)
for _ in $(seq 1 200); do grep -q '^tollgate listening' "$WORK/tollgate.out" 2>/dev/null && break; sleep 0.05; done
TG=$(sed -n 's/.* http=\([^ ]*\).*/\1/p' "$WORK/tollgate.out")
ADMIN=$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' "$WORK/tollgate.out")
[ -n "$TG" ] && [ -n "$ADMIN" ] || die "tollgate did not start: $(cat "$WORK/tollgate.err")"
curl -sf "http://$TG/public/x" >/dev/null || die "the public route does not answer"
status=$(curl -s -o /dev/null -w '%{http_code}' -u hashed-client:wrong -d grant_type=client_credentials "http://$TG/token")
[ "$status" = 401 ] || die "a wrong secret was answered $status, not 401"

# The p50 (us) of the public route over DURATION seconds at RATE req/s.
p50() {
  "$OPENLOOP_BIN" --rate "$RATE" --duration "$DURATION" --warmup 1 --conns "$CONNS" "http://$TG/public/x" \
    | awk '$1 == "50%" { sub("us", "", $2); print $2 }'
}

# Token endpoint answers so far, by error code, from /metrics: "invalid_client=N ...".
token_errors() {
  curl -s "http://$ADMIN/metrics" | awk -F'[{}]' '/^tollgate_token_errors_total\{/ {
      split($2, labels, ","); code = ""
      for (i in labels) if (labels[i] ~ /^error=/) { code = labels[i]; gsub(/error=|"/, "", code) }
      split($3, v, " "); n[code] += v[1] }
    END { for (c in n) printf "%s=%d ", c, n[c] }'
}

# The number of token answers from a token_errors line.
answers() { awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); s += kv[2] } } END { print s + 0 }' <<<"$1"; }

# Attackers: each one keep-alive connection sending wrong secrets back to back (curl's URL
# range reuses its connection).
attack_start() {
  ATTACK_PIDS=()
  local i
  for i in $(seq 1 "$ATTACKERS"); do
    curl -s -o /dev/null -u hashed-client:not-the-secret \
      -d grant_type=client_credentials "http://$TG/token?n=[1-100000000]" &
    ATTACK_PIDS+=($!)
    STARTED+=($!)
  done
  sleep 1
}
attack_stop() {
  local pid
  for pid in "${ATTACK_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

IDLE=()
BUSY=()
ATTACK_RPS=()
for r in $(seq 1 "$ROUNDS"); do
  idle=$(p50)
  before=$(token_errors)
  t0=$(date +%s.%N)
  attack_start
  busy=$(p50)
  attack_stop
  t1=$(date +%s.%N)
  after=$(token_errors)
  sent=$(($(answers "$after") - $(answers "$before")))
  rps=$(awk -v n="$sent" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
  log "round $r: idle p50 ${idle}us, attacked p50 ${busy}us; wrong secrets answered ${rps}/s (totals so far: ${after})"
  IDLE+=("$idle")
  BUSY+=("$busy")
  ATTACK_RPS+=("$rps")
done

IDLE_P50=$(printf '%s\n' "${IDLE[@]}" | median)
BUSY_P50=$(printf '%s\n' "${BUSY[@]}" | median)
RPS=$(printf '%s\n' "${ATTACK_RPS[@]}" | median)
RATIO=$(awk -v a="$BUSY_P50" -v b="$IDLE_P50" 'BEGIN { printf "%.2f", a / b }')
VERDICT=$(awk -v r="$RATIO" -v t="$TARGET" 'BEGIN { print (r <= t) ? "PASS" : "FAIL" }')

mkdir -p "$(dirname "$RESULTS")"
{
  echo "# bench/argon2_latency.sh: public route p50 idle vs while wrong secrets go to an argon2 client"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
  echo "host: $(nproc) cores, $(uname -sr)"
  echo "load: ${RATE} req/s over ${CONNS} connections for ${DURATION}s per measurement, ${ROUNDS} rounds; ${ATTACKERS} attacking connection(s)"
  echo "idle p50 per round (us): ${IDLE[*]}"
  echo "attacked p50 per round (us): ${BUSY[*]}"
  echo "wrong secrets answered per second, per round: ${ATTACK_RPS[*]}"
  echo "token endpoint errors over the run: $(token_errors)"
  echo "idle p50 (median of rounds): ${IDLE_P50}us"
  echo "attacked p50 (median of rounds): ${BUSY_P50}us"
  echo "wrong secrets answered per second (median): ${RPS}"
  echo "ratio attacked / idle: ${RATIO}x (target <= ${TARGET}x) ${VERDICT}"
} | tee "$RESULTS"
[ "$RPS" -gt 0 ] || die "the attacker's wrong secrets were never answered"
[ "$VERDICT" = PASS ]
