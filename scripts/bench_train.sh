#!/usr/bin/env bash
# Training speed against PyTorch in one run: alternating pairs of
# `seer-train`'s step_speed example and scripts/bench_train_reference.py on the
# same config and batch, each pair's ratio and the median ratio.
#   scripts/bench_train.sh PYTHON [CONFIG] [BATCH] [PAIRS]
# PYTHON has torch, transformers and open_clip (the reference venv).
set -euo pipefail
py=${1:?usage: $0 PYTHON [CONFIG] [BATCH] [PAIRS]}
config=${2:-demos/cifar10/config.json}
batch=${3:-256}
pairs=${4:-4}
cargo build --release -q -p seer-train --example step_speed
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //') (family $(grep -m1 'cpu family' /proc/cpuinfo | sed 's/.*: //'), model $(grep -m1 '^model[[:space:]]' /proc/cpuinfo | sed 's/.*: //'))"
echo "load average (1 min) before: $(cut -d' ' -f1 /proc/loadavg)"
rate() { tail -1 | sed 's/.*"samples_per_sec": \([0-9.]*\).*/\1/' | awk '{ printf "%.1f", $1 }'; }
ratios=()
for i in $(seq "$pairs"); do
  seer=$(target/release/examples/step_speed "$config" "$batch" | rate)
  torch=$("$py" scripts/bench_train_reference.py "$config" "$batch" | rate)
  ratio=$(awk -v a="$seer" -v b="$torch" 'BEGIN { printf "%.2f", a / b }')
  ratios+=("$ratio")
  echo "pair $i: seer $seer samples/s, PyTorch $torch samples/s, ratio ${ratio}x"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
echo "median ratio: ${median}x over $pairs pairs; load average after: $(cut -d' ' -f1 /proc/loadavg)"
