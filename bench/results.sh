# shellcheck shell=bash
# Sourced by bench/run.sh and bench/callgrind.sh: where a run's report is kept.
#
# result_file SCRIPT prints bench/results/<date>-<commit>-<SCRIPT>.txt (UTC date; the commit
# with -dirty when src/ differs from it; -2, -3... when that name is taken) and makes the folder.
result_file() {
  local dir date commit base path n=2
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/results"
  mkdir -p "$dir"
  date=$(date -u +%Y-%m-%d)
  if commit=$(git -C "$dir" rev-parse --short HEAD 2>/dev/null); then
    git -C "$dir" diff --quiet HEAD -- ../../src || commit="$commit-dirty"
  else
    commit=nogit
  fi
  base="$dir/$date-$commit-$1"
  path="$base.txt"
  while [ -e "$path" ]; do
    path="$base-$n.txt"
    n=$((n + 1))
  done
  echo "$path"
}
