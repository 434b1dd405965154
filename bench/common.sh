# shellcheck shell=bash
# Sourced by the bench scripts (run.sh keeps its own port bookkeeping): messages, ports,
# readiness, CPU ticks and medians. Set BENCH_NAME before sourcing to prefix die's message.

log() { printf '%s\n' "$*" >&2; }
die() { log "${BENCH_NAME:-bench}: $*"; exit 1; }

# A TCP port on 127.0.0.1 that nothing listens on now.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Waits until URL answers 2xx (10 s at most).
wait_http() {
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  die "$1 never answered"
}

# User + system CPU of PID (all its threads), in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# The median of the numbers given.
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# Starts the bench's nginx upstream (bench/nginx-upstream.conf) on PORT with its files under
# WORK, and adds its PID to PIDS. NGINX names the binary (default: nginx on the PATH).
start_upstream() { # work port
  local work=$1 port=$2 user=""
  [ "$(id -u)" -eq 0 ] && user="user root;"
  mkdir -p "$work/nginx-upstream-tmp"
  sed -e "s|@WORK@|$work|g" -e "s|@UPSTREAM_PORT@|$port|g" -e "s|@USER@|$user|g" \
    bench/nginx-upstream.conf >"$work/nginx-upstream.conf"
  "${NGINX:-nginx}" -p "$work" -c "$work/nginx-upstream.conf" -e "$work/nginx.error.log" &
  PIDS+=($!)
}
