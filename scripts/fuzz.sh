#!/usr/bin/env bash
# Builds the libFuzzer targets with clang + ASan/UBSan and runs each for N seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
cmake -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DMOERUN_FUZZ=ON -DMOERUN_SANITIZE=ON -DMOERUN_CUDA=OFF >/dev/null
ninja -C build-fuzz $(cd tests/fuzz && ls fuzz_*.c 2>/dev/null | sed 's/\.c$//')
for src in tests/fuzz/fuzz_*.c; do
  [ -e "$src" ] || continue
  name=$(basename "$src" .c)
  corpus=tests/fuzz/corpus_${name#fuzz_}
  work=$(mktemp -d)
  [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/
  echo "-- $name for ${secs}s"
  status=0
  MOERUN_SHARED=${MOERUN_SHARED:-../shared} ./build-fuzz/$name -max_total_time="$secs" -rss_limit_mb=2048 \
      -print_final_stats=1 "$work" >"$work.log" 2>&1 || status=$?
  grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$work.log" || true
  [ "$status" -eq 0 ] || tail -n 60 "$work.log"
  rm -f "$work.log"
  rm -rf "$work"
  if [ "$status" -ne 0 ]; then echo "$name failed (exit $status)"; exit 1; fi
done
