#!/usr/bin/env bash
# What the export step adds to a default run (issue #23: <= 3 min): the export step, then evaluate
# without and with the three exports, each with an empty evaluation cache (as a cold make run has), on
# the student bench/frontier.py trained (run bench/frontier.py first). Prints "TIMING <what> <seconds>".
# Run from the project root: bash bench/export_cost.sh
set -e
O=bench/out/frontier/default
T=bench/out/timing
common="--set paths.prepared=bench/out/frontier/data/prepared --set paths.mined=bench/out/frontier/data/mined --set paths.student=$O/student"
mkdir -p $T
s=$(date +%s.%N); python -m distill export $common --set paths.exports=$T/exports; e=$(date +%s.%N)
echo "TIMING export $(echo "$e - $s" | bc)"
for variant in none all; do
  fmt=$([ $variant = none ] && echo "[]" || echo "[onnx, onnx_int8, openvino_int8]")
  s=$(date +%s.%N)
  python -m distill evaluate $common --set paths.exports=$T/exports --set "export.formats=$fmt" \
    --set paths.eval_cache=$T/$variant/eval_cache --set paths.metrics=$T/$variant/metrics \
    --set paths.reports=$T/$variant/reports --set paths.plots=$T/$variant/plots
  e=$(date +%s.%N)
  echo "TIMING evaluate-$variant $(echo "$e - $s" | bc)"
done
