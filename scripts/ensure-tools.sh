#!/usr/bin/env bash
# Install the system tools tollgate's build and tests need where they are missing: cmake
# (pingora's zlib-ng), redis-server (the tests of the shared store start their own), and what
# the caller names (the demo asks for curl). Debian/Ubuntu (apt-get) only.
# `scripts/ensure-tools.sh cargo-machete` also installs cargo-machete for CI, at a version known
# to build with the rust-version in Cargo.toml, so a new release cannot break a fresh machine.
set -euo pipefail
MACHETE_VERSION=0.9.2
export PATH="$HOME/.cargo/bin:$PATH"
need=()
cargo_tools=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
for tool in "$@"; do
  case "$tool" in
    cargo-machete) command -v cargo-machete >/dev/null 2>&1 || cargo_tools+=("$tool") ;;
    *) command -v "$tool" >/dev/null 2>&1 || need+=("$tool") ;;
  esac
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
for tool in "${cargo_tools[@]}"; do
  echo "installing: $tool $MACHETE_VERSION (cargo install --locked)" >&2
  cargo install "$tool" --version "$MACHETE_VERSION" --locked --quiet
done
