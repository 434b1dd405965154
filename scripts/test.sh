#!/usr/bin/env bash
# Every test: unit tests, the integration tests that start the real binary, property tests.
# Ends with one summary line over all test binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-tools.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --tests "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit $status
