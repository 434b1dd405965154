#!/usr/bin/env bash
# Install the system tools tollgate's build and tests need where they are missing: cmake
# (pingora's zlib-ng), redis-server (the tests of the shared store start their own), and what
# the caller names (the demo asks for curl). Debian/Ubuntu (apt-get) only.
set -euo pipefail
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
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
