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
# On a VM, time the hypervisor gave to others ("steal", /proc/stat's 8th
# value, in ticks of all CPUs) slows whichever run it lands on: each run's
# share is printed so a pair it hit can be told apart.
steal() { awk '/^cpu / { print $9 }' /proc/stat; }
stolen() { # STEAL_BEFORE START_NS: percent of the run's CPU time stolen
  awk -v s0="$1" -v s1="$(steal)" -v t="$(( $(date +%s%N) - $2 ))" -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" \
    'BEGIN { printf "%.0f", 100 * (s1 - s0) / hz / (t / 1e9 * n) }'
}
ratios=()
for i in $(seq "$pairs"); do
  s0=$(steal) t0=$(date +%s%N)
  seer=$(target/release/examples/step_speed "$config" "$batch" | rate)
  seer_stolen=$(stolen "$s0" "$t0")
  s0=$(steal) t0=$(date +%s%N)
  torch=$("$py" scripts/bench_train_reference.py "$config" "$batch" | rate)
  torch_stolen=$(stolen "$s0" "$t0")
  ratio=$(awk -v a="$seer" -v b="$torch" 'BEGIN { printf "%.2f", a / b }')
  ratios+=("$ratio")
  echo "pair $i: seer $seer samples/s (steal ${seer_stolen}%), PyTorch $torch samples/s (steal ${torch_stolen}%), ratio ${ratio}x"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
echo "median ratio: ${median}x over $pairs pairs; load average after: $(cut -d' ' -f1 /proc/loadavg)"
