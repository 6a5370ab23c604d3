#!/usr/bin/env bash
# Every CPU figure issue 14 asks for, on whatever CPU this is, in one run, so a
# session that lands on a CPU kind not yet measured (the README has a table per
# kind) fills its table from one command:
#
#   scripts/bench_cpu.sh PYTHON [ROUNDS] [TRAIN_PAIRS]
#
# PYTHON has torch, transformers and open_clip, and for the other engines
# onnxruntime and openvino (the reference venv, see Performance in the README).
# ROUNDS (default 2) go to each `seer bench --rounds`; TRAIN_PAIRS (default 4)
# to scripts/bench_train.sh. Run from the repository root with ../shared/data
# beside it. Takes about 15 minutes a round plus a minute a training pair on 2
# cores.
#
# 1. The bare matrix multiplies on ViT-B/32's shapes (`gemm_speed`, best of 10),
#    each precision, against the measured f32 FMA peak.
# 2. `seer bench --reference PYTHON` in f32, bf16 and int8: PyTorch, ONNX
#    Runtime and OpenVINO in the same runs, model only and end to end.
# 3. Where the CPU has AVX-512: the same binary capped at AVX2 (`SEER_ISA=avx2`,
#    a stand-in for AVX2-only CPUs, not a measurement of one): f32 against
#    PyTorch and OpenVINO capped at AVX2 too (`seer bench` caps them; ONNX
#    Runtime cannot be capped and is skipped), bf16 and int8 against seer's
#    own f32 in the same run.
# 4. Training steps against PyTorch on the CIFAR-10 demo config.
#
# Everything printed also lands in target/bench-cpu/<UTC time>/.
set -euo pipefail
py=${1:?usage: $0 PYTHON [ROUNDS] [TRAIN_PAIRS]}
rounds=${2:-2}
pairs=${3:-4}
"$py" -c 'import torch, transformers, open_clip' 2>/dev/null ||
    { echo "$0: $py cannot import torch, transformers and open_clip (the reference venv, see the README)" >&2; exit 2; }
out=target/bench-cpu/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
cargo build --release -q -p seer-cli -p seer-kernels --bin seer --example gemm_speed
seer=target/release/seer

run() { # NAME COMMAND...: print and keep its output
    echo "== $1"
    "${@:2}" 2>&1 | tee "$out/$1.txt"
}

cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
echo "cpu: $cpu (family $(grep -m1 'cpu family' /proc/cpuinfo | sed 's/.*: //'), model $(grep -m1 '^model[[:space:]]' /proc/cpuinfo | sed 's/.*: //')), $(nproc) threads" | tee "$out/cpu.txt"
for precision in f32 bf16 int8; do
    run "gemm-$precision" target/release/examples/gemm_speed 400 - "$precision" 10
done
for precision in f32 bf16 int8; do
    # The seer lines before the tables go to stderr with the reference's; the
    # tables (stdout) are what the README quotes.
    run "bench-$precision" "$seer" bench --precision "$precision" --iterations 10 \
        --rounds "$rounds" --reference "$py"
done
if grep -qw avx512f /proc/cpuinfo; then
    run bench-avx2-f32 env SEER_ISA=avx2 "$seer" bench --precision f32 --iterations 10 \
        --rounds "$rounds" --reference "$py"
    for precision in bf16 int8; do
        run "bench-avx2-$precision" env SEER_ISA=avx2 "$seer" bench --precision "$precision" \
            --iterations 10 --rounds "$rounds"
    done
fi
run train bash scripts/bench_train.sh "$py" demos/cifar10/config.json 256 "$pairs"
echo "kept in $out"
