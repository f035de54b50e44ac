#!/bin/bash
# Time and peak RSS of the streamed path on a (synthetic) model, against the I/O floor, each command its own process.
#   tools/synthetic-model/scale-bench.sh MODEL_DIR WORK_DIR [whole]
# Runs `analyze --streamed`, `prune --streamed --fraction 0.1` (and the whole-model `prune` with "whole"), then reads
# the model's weight file once and writes as many bytes as the pruned weights once (the floor). One line per step on
# stdout; every command's output stays in WORK_DIR; the pruned folders are deleted at the end.
# Before each step it prints how much of the weights sits in the page cache (fincore): the floor and the runs read
# whatever is cached at that moment, and nothing is dropped (that would take the cache from everyone on the machine).
# The floor's write is fsynced, as prune's files are. Needs the built CLI (npx tsc -b packages/cli/tsconfig.lib.json),
# GNU time and fincore (util-linux).
set -u
model=$1 work=$2 mode=${3:-}
cli="node $(dirname "$0")/../../packages/cli/bin/fairprune.js"
mkdir -p "$work"
cached() {
  fincore -b -n -o RES,SIZE "$model"/onnx/*.onnx_data | awk '{r+=$1; s+=$2} END {printf "page cache: %.1f of %.1f GB of weights\n", r/1e9, s/1e9}'
}
step() {
  local name=$1; shift
  echo "$name: $(cached)"
  /usr/bin/time -v "$@" > "$work/$name.out" 2> "$work/$name.err"
  echo "$name rc=$? $(grep -E 'Elapsed|Maximum resident' "$work/$name.err" | tr -s ' \t' ' ' | tr '\n' ' ')"
}
step analyze-streamed $cli analyze "$model" --streamed --out "$work/analysis"
step prune-streamed $cli prune "$model" --streamed --fraction 0.1 --json --out "$work/pruned-streamed"
node -e 'const t = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).timings; console.log("prune stages (s): " + Object.entries(t).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)}`).join(", "))' "$work/prune-streamed.out"
[ "$mode" = whole ] && step prune-whole $cli prune "$model" --fraction 0.1 --out "$work/pruned-whole"
written=$(du -sb "$work/pruned-streamed/onnx" | cut -f1)
echo "floor: $(cached)"
start=$(date +%s.%N); cat "$model"/onnx/*.onnx_data > /dev/null; read_done=$(date +%s.%N)
head -c "$written" /dev/zero > "$work/floor.bin"; sync "$work/floor.bin"; write_done=$(date +%s.%N)
echo "floor read $(echo "$read_done - $start" | bc) s, write ${written} bytes $(echo "$write_done - $read_done" | bc) s"
rm -rf "$work/floor.bin" "$work/pruned-streamed" "$work/pruned-whole"
