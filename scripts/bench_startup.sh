#!/usr/bin/env bash
# Start-up time and peak memory of the seer binary on a model folder:
#   scripts/bench_startup.sh MODEL_DIR [IMAGES_DIR] [RUNS]
# - start-up: process start to exit of `seer embed --text` (load + tokenize +
#   one text embedding), median and best of RUNS, f32 and bf16;
# - peak RSS of that command, and of `seer index` over IMAGES_DIR.
set -euo pipefail
model=${1:?usage: $0 MODEL_DIR [IMAGES_DIR] [RUNS]}
images=${2:-../shared/data/imagenet-samples/images}
runs=${3:-9}
seer=${SEER_BIN:-target/release/seer}
export SEER_TOKENIZER=${SEER_TOKENIZER:-../shared/data/clip-tokenizer/bpe_simple_vocab_16e6.txt.gz}
for precision in f32 bf16; do
  times=()
  rss=0
  for _ in $(seq "$runs"); do
    line=$( { /usr/bin/time -f "%e %M" "$seer" embed --model "$model" --precision "$precision" \
      --text "a photo of a dog" --json >/dev/null; } 2>&1 | tail -1)
    times+=("${line% *}")
    rss=$(( ${line#* } > rss ? ${line#* } : rss ))
  done
  sorted=$(printf '%s\n' "${times[@]}" | sort -n)
  echo "start-up ($precision): median $(echo "$sorted" | sed -n "$(( (runs + 1) / 2 ))p") s, best $(echo "$sorted" | head -1) s, peak RSS $((rss / 1024)) MiB"
done
index=$(mktemp -d)
line=$( { /usr/bin/time -f "%e %M" "$seer" index "$images" --model "$model" --index "$index" --json >/dev/null; } 2>&1 | tail -1)
echo "index $(ls "$images" | wc -l) files (f32): ${line% *} s, peak RSS $(( ${line#* } / 1024 )) MiB"
rm -rf "$index"
