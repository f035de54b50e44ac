#!/bin/bash
# Time and peak RSS of the streamed path on a (synthetic) model, against the I/O floor, each command its own process.
#   tools/synthetic-model/scale-bench.sh MODEL_DIR WORK_DIR [whole]
# Runs `analyze --streamed`, `prune --streamed --fraction 0.1` (and the whole-model `prune` with "whole"), then reads
# the model's weight file once and writes as many bytes as the pruned weights once (the floor). One line per step on
# stdout; every command's output stays in WORK_DIR; the pruned folders are deleted at the end.
# Needs the built CLI (npx tsc -b packages/cli/tsconfig.lib.json) and GNU time.
set -u
model=$1 work=$2 mode=${3:-}
cli="node $(dirname "$0")/../../packages/cli/bin/fairprune.js"
mkdir -p "$work"
step() {
  local name=$1; shift
  /usr/bin/time -v "$@" > "$work/$name.out" 2> "$work/$name.err"
  echo "$name rc=$? $(grep -E 'Elapsed|Maximum resident' "$work/$name.err" | tr -s ' \t' ' ' | tr '\n' ' ')"
}
step analyze-streamed $cli analyze "$model" --streamed --out "$work/analysis"
step prune-streamed $cli prune "$model" --streamed --fraction 0.1 --out "$work/pruned-streamed"
[ "$mode" = whole ] && step prune-whole $cli prune "$model" --fraction 0.1 --out "$work/pruned-whole"
written=$(du -sb "$work/pruned-streamed/onnx" | cut -f1)
start=$(date +%s.%N); cat "$model"/onnx/*.onnx_data > /dev/null; read_done=$(date +%s.%N)
head -c "$written" /dev/zero > "$work/floor.bin"; sync "$work/floor.bin"; write_done=$(date +%s.%N)
echo "floor read $(echo "$read_done - $start" | bc) s, write ${written} bytes $(echo "$write_done - $read_done" | bc) s"
rm -rf "$work/floor.bin" "$work/pruned-streamed" "$work/pruned-whole"
