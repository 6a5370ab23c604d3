#!/usr/bin/env bash
# GPU check and benchmark for a `--features cuda` build of seer, on a machine
# with an NVIDIA GPU and a Python that has PyTorch + transformers (the reference).
#
#   scripts/bench_gpu.sh SEER_BIN [PARITY_TEST_BIN]
#
# Environment:
#   SEER_SHARED_DATA  shared data folder (default ../shared/data); needs
#                     clip-tokenizer/, imagenet-samples/images and, for the
#                     parity run, the smoke/ images the fixtures name
#   PYTHON            reference Python (default python3)
#   FILES             files for the end-to-end run (default 4096; the list repeats)
#   BATCHES           model-only batch sizes (default 32,256; the last is also
#                     the end-to-end batch)
#   THREADS           decode threads and DataLoader workers (default: all cores)
#   STEP_SPEED        a `--features cuda` build of seer-train's step_speed example:
#                     then also training steps against PyTorch on the GPU (two
#                     pairs each at batch 256, 1024 and 4096, the CIFAR-10 demo
#                     model; the reference needs open_clip)
#   UNIT_TESTS        `--features cuda` unit-test binaries of seer-models and
#                     seer-train (cargo test --release --features cuda -p
#                     seer-models -p seer-train --lib --no-run prints them): their
#                     GPU-aware tests (the fused training ops, row gathers, the
#                     loss) run with SEER_TEST_DEVICE=cuda
#
# Arguments after the second go to `seer bench` (`--precision bf16` adds
# PyTorch bf16 and seer's own f32 in the same run).
#
# 1. Parity: the model fixtures' reference numbers on the GPU (1e-4), when a
#    parity test binary is given (cargo test --release --features cuda -p
#    seer-engine --test parity --no-run prints its path).
# 2. `seer bench --device cuda` against PyTorch eager on the same GPU.
#
# cuBLAS, cuRAND and NVRTC are taken from the loader path, else from the
# nvidia-* wheels PyTorch brings.
set -euo pipefail
seer=$(realpath "$1")
parity=${2:+$(realpath "$2")}
data=$(realpath "${SEER_SHARED_DATA:-../shared/data}")
python=${PYTHON:-python3}
threads=${THREADS:-$(nproc)}

if ! ldconfig -p | grep -q libcublas.so.13; then
    libs=$("$python" - <<'EOF'
import glob, os, nvidia
roots = [os.path.dirname(p) for p in getattr(nvidia, "__path__", [])]
found = {os.path.dirname(f) for r in roots for f in glob.glob(f"{r}/**/lib*.so*", recursive=True)}
print(":".join(sorted(found)))
EOF
)
    export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

if [[ -n "${UNIT_TESTS:-}" ]]; then
    echo "== unit tests on the GPU (SEER_TEST_DEVICE=cuda)"
    for t in $UNIT_TESTS; do
        SEER_TEST_DEVICE=cuda "$t" train_ops gather_rows loss::
    done
fi

if [[ -n "$parity" ]]; then
    echo "== parity on the GPU (SEER_TEST_DEVICE=cuda)"
    (cd "$(dirname "$0")/../crates/seer-engine" &&
        SEER_TEST_DEVICE=cuda SEER_SHARED_DATA="$data" "$parity" --test-threads 1)
fi

echo "== seer bench --device cuda (f32), then PyTorch eager on the same GPU"
"$seer" bench --device cuda --threads "$threads" \
    --batch-sizes "${BATCHES:-32,256}" --iterations 20 \
    --tokenizer "$data/clip-tokenizer/bpe_simple_vocab_16e6.txt.gz" \
    --images "$data/imagenet-samples/images" --files "${FILES:-4096}" \
    --reference "$python" "${@:3}"

if [[ -n "${STEP_SPEED:-}" ]]; then
    echo "== training steps on the GPU: seer step_speed, then PyTorch (samples/s)"
    root=$(dirname "$0")/..
    for b in 256 1024 4096; do
        for pair in 1 2; do
            echo "batch $b pair $pair: seer $("$STEP_SPEED" "$root/demos/cifar10/config.json" "$b" "$b" cuda | tail -1)," \
                "PyTorch $("$python" "$root/scripts/bench_train_reference.py" "$root/demos/cifar10/config.json" "$b" --device cuda --steps 8 | tail -1)"
        done
    done
fi
