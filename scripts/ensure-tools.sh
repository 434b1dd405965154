#!/usr/bin/env bash
# Install the build-time system tools tollgate needs where they are missing:
# cmake (pingora's zlib-ng) and, for the demo, curl. Debian/Ubuntu (apt-get) only.
set -euo pipefail
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
for tool in "$@"; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing: ${need[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${need[@]}" >/dev/null
