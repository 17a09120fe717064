#!/usr/bin/env bash
# Installs the Debian packages moerun needs to build and test (idempotent).
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config git libpcre2-dev libjansson-dev libmicrohttpd-dev
      clang python3 python3-pip curl)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
