#!/usr/bin/env bash
# Fresh machine -> dependencies, release build, a synthetic model, and the main job on it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build
model=build/tiny-qwen3moe.gguf
[ -f "$model" ] || ./build/moerun synth --preset tiny-qwen3moe --out "$model"
./build/moerun info "$model"
if ./build/moerun run --help >/dev/null 2>&1; then
  ./build/moerun run -m "$model" -p "Hello, world" -n 32
fi
