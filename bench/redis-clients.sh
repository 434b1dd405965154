#!/usr/bin/env bash
# redis-rs (tollgate's Redis client) beside fred on the commands tollgate sends, against one
# redis-server started here on a free port; see bench/redis-clients/src/main.rs for the shapes.
# "eval" counts keys, not scripts (100 keys a script).
#
#   bench/redis-clients.sh              # 5000 operations per round, 5 rounds
#   OPS=20000 ROUNDS=7 bench/redis-clients.sh
#
# The output goes to stdout and to bench/results/<date>-<commit>-redis-clients.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || scripts/ensure-tools.sh redis-server
# shellcheck source=bench/results.sh
. bench/results.sh
RESULT=$(result_file redis-clients)
cargo build --release -q --manifest-path bench/redis-clients/Cargo.toml
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --bind 127.0.0.1 --port "$PORT" --save "" --appendonly no >/dev/null 2>&1 &
REDIS=$!
trap 'kill $REDIS 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done
{
  echo "redis-clients  $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) cores, $(redis-server --version | cut -d' ' -f1-3)"
  bench/redis-clients/target/release/redis-clients "redis://127.0.0.1:$PORT/" "${OPS:-5000}" "${ROUNDS:-5}"
} | tee "$RESULT"
echo "redis-clients.sh: report in ${RESULT#"$PWD"/}" >&2
