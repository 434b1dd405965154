#!/usr/bin/env bash
# Instructions per request of tollgate's proxy routes, counted by callgrind: unlike CPU time they
# do not move with the load of this shared machine, so two builds can be compared to the
# instruction. Starts the bench's nginx upstream and tollgate (bench/tollgate.toml) under
# valgrind on 127.0.0.1, sends N kept-alive requests per route over 4 connections (one request
# in flight at a time, after 300 not counted), and prints the instructions per request.
# Then, as floors, the same count for a bare pingora proxy (examples/passthrough, default
# settings) and for the bench's nginx proxy_pass baseline (one process, master_process off),
# each in front of the same upstream with the same bearer header. Only user-space instructions
# of the process are counted: the kernel's share of a request is not in these figures.
#
#   bench/callgrind.sh                        # target/release/tollgate, N=2000, RUST_LOG=warn
#   BIN=/tmp/old-tollgate N=4000 LOG=info bench/callgrind.sh
#   FLOORS=0 bench/callgrind.sh               # tollgate's routes only
#   CONFIG=bench/compare.toml ROUTES="roles:/roles/x:bearer policy:/policy/x:bearer" \
#     FLOORS=0 bench/callgrind.sh               # other routes: NAME:PATH:bearer-or-empty ...
#
# The report is printed and written to bench/results/<date>-<commit>-callgrind.txt.
# KEEP=1 keeps the temp dir with the callgrind files (callgrind_annotate --inclusive=yes FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/tollgate}
N=${N:-2000}
LOG=${LOG:-warn}
FLOORS=${FLOORS:-1}
CONFIG=${CONFIG:-bench/tollgate.toml}
ROUTES=${ROUTES:-authorised:/api/orders/1:bearer public_same_hdr:/public/x:bearer public:/public/x:}
BARE_BIN=target/release/examples/passthrough
BENCH_NAME=callgrind.sh
# shellcheck source=bench/common.sh
. bench/common.sh

missing=()
for tool in valgrind nginx curl python3; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$BIN" ] || { scripts/ensure-tools.sh; cargo build --release; }
if [ "$FLOORS" = 1 ] && [ ! -x "$BARE_BIN" ]; then
  scripts/ensure-tools.sh
  cargo build --release --example passthrough
fi

WORK=$(mktemp -d /tmp/tollgate-callgrind.XXXXXX)
PIDS=()
# What this prints is also this run's record in bench/results/.
# shellcheck source=bench/results.sh
. bench/results.sh
RESULT=$(result_file callgrind)
exec 3>&1 > >(tee "$RESULT")
TEE=$!
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait "${PIDS[@]}" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
  exec 1>&3 3>&-
  wait "$TEE" 2>/dev/null || true
  if [ "$rc" -eq 0 ]; then
    echo "callgrind.sh: report in ${RESULT#"$PWD"/}" >&2
  else
    rm -f "$RESULT" # a run that did not finish is no result
  fi
}
trap cleanup EXIT

UP=$(free_port)
USER_LINE=""; [ "$(id -u)" -eq 0 ] && USER_LINE="user root;"
cp certs/demo-rs256.pem certs/demo-es256.pem certs/demo-eddsa.pem "$WORK/"
HASHED=$(printf '%s' secret | "$BIN" hash-secret)
sed -e "s|@LISTEN_PORT@|0|" -e "s|@UPSTREAM_PORT@|$UP|" -e "s|@HASHED_SECRET@|$HASHED|" \
  -e "s|@EGRESS_PORT@|$(free_port)|" "$CONFIG" >"$WORK/tollgate.toml"

start_upstream "$WORK" "$UP" >/dev/null 2>&1
RUST_LOG=$LOG valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" \
  "$BIN" --config "$WORK/tollgate.toml" >"$WORK/tollgate.out" 2>"$WORK/tollgate.err" &
VG=$!
PIDS+=("$VG")
line=""
for _ in $(seq 1 600); do
  line=$(grep -m1 '^tollgate listening' "$WORK/tollgate.out" || true)
  [ -n "$line" ] && break
  kill -0 "$VG" 2>/dev/null || { cat "$WORK/tollgate.err" >&2; die "tollgate exited at start"; }
  sleep 0.1
done
[ -n "$line" ] || die "tollgate printed no listening line"
HTTP=$(sed -E 's/.* http=([^ ]+).*/\1/' <<<"$line")
TOKEN=$(curl -fsS -u product-sa-client:password -d grant_type=client_credentials \
  "http://$HTTP/realms/demo/protocol/openid-connect/token" | sed -nE 's/.*"access_token":"([^"]+)".*/\1/p')
[ -n "$TOKEN" ] || die "no token"

# N kept-alive GETs of PATH to ADDR over 4 connections in turn; exits non-zero unless every
# answer is 200.
send_to() { # addr path count [header]
  python3 - "$1" "$2" "$3" "${4:-}" <<'EOF'
import socket, sys
addr, path, n, hdr = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
host, port = addr.rsplit(":", 1)
req = f"GET {path} HTTP/1.1\r\nHost: {addr}\r\n{hdr + chr(13) + chr(10) if hdr else ''}\r\n".encode()
conns = [socket.create_connection((host, int(port))) for _ in range(4)]
for i in range(n):
    s = conns[i % 4]
    s.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += s.recv(65536)
    if not head.startswith(b"HTTP/1.1 200"):
        sys.exit(f"{path}: {head.split(chr(13).encode())[0]!r}")
EOF
}
send() { send_to "$HTTP" "$@"; }

# Zeroes PID's counters, sends COUNT requests of PATH to ADDR, dumps the counters as NAME and
# prints the instructions per request.
count() { # pid name addr path count [header]
  local pid=$1 name=$2 n=$5 file total
  callgrind_control -z "$pid" >/dev/null 2>&1
  send_to "$3" "$4" "$n" "${6:-}"
  callgrind_control -d "$name" "$pid" >/dev/null 2>&1
  file=$(grep -l "^desc: Trigger: dump $name\$" "$WORK"/cg.*.* | head -1)
  total=$(awk '/^summary:/ {print $2}' "$file")
  printf '  %-18s %9.0f instructions per request\n' "$name" "$(awk -v t="$total" -v n="$n" 'BEGIN { print t / n }')"
}

wait_listening() { # addr pid what
  local host=${1%:*} port=${1##*:}
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || die "$3 exited at start"
    sleep 0.1
  done
  die "$3 is not listening on $1"
}

BEARER="Authorization: Bearer $TOKEN"
for route in $ROUTES; do
  IFS=: read -r _ path hdr <<<"$route"
  send "$path" 300 "$([ "$hdr" = bearer ] && echo "$BEARER")"
done
built="$BIN"
if [ "$BIN" = target/release/tollgate ]; then
  built="$BIN at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src 2>/dev/null || echo ', src/ modified')"
fi
echo "tollgate callgrind  $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) cores, $(uname -sr), $(valgrind --version)"
echo "$built, RUST_LOG=$LOG, $N requests per route$([ "$CONFIG" = bench/tollgate.toml ] || echo ", $CONFIG")"
for route in $ROUTES; do
  IFS=: read -r name path hdr <<<"$route"
  count "$VG" "$name" "$HTTP" "$path" "$N" "$([ "$hdr" = bearer ] && echo "$BEARER")"
done

[ "$FLOORS" = 1 ] || exit 0
echo "floors, in front of the same upstream, with the same bearer header:"

# Runs CMD... under callgrind, waits for it to listen on ADDR, and counts NAME: N requests to
# the authorised route's path with the bearer header, after 300 not counted. Leaves FLOOR_VG set.
floor() { # name addr cmd...
  local name=$1 addr=$2
  shift 2
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  FLOOR_VG=$!
  PIDS+=("$FLOOR_VG")
  wait_listening "$addr" "$FLOOR_VG" "$name"
  send_to "$addr" /api/orders/1 300 "$BEARER"
  count "$FLOOR_VG" "$name" "$addr" /api/orders/1 "$N" "$BEARER"
}

BARE="127.0.0.1:$(free_port)"
floor bare_pingora "$BARE" "$BARE_BIN" "$BARE" "127.0.0.1:$UP" 2
kill -INT "$FLOOR_VG" 2>/dev/null || true # pingora's fast shutdown; on TERM it waits out a grace period

NG="127.0.0.1:$(free_port)"
mkdir -p "$WORK/nginx-proxy-tmp"
sed -e "s|@WORK@|$WORK|g" -e "s|@UPSTREAM_PORT@|$UP|g" -e "s|@PROXY_PORT@|${NG##*:}|g" \
  -e "s|@WORKERS@|1|g" -e "s|@USER@|$USER_LINE|g" -e 's|^master_process on;|master_process off;|' \
  bench/nginx-proxy.conf >"$WORK/proxy.conf"
floor nginx_proxy_pass "$NG" "$NGINX" -p "$WORK" -c "$WORK/proxy.conf" -e "$WORK/proxy.error.log"
