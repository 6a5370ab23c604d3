#!/usr/bin/env bash
# Trains a small CLIP from scratch on the CIFAR-10 train shards (captions from the
# class names and CLIP's 18 CIFAR10 templates) and evaluates zero-shot top-1 on the
# 10,000-image test shard after every epoch. Usage: demos/cifar10/run.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
D=${SEER_SHARED:-../shared}/data
OUT=${1:-target/cifar10-demo}
cargo build --release -p seer-cli
./target/release/seer train \
  --config demos/cifar10/config.json \
  --tokenizer "$D/clip-tokenizer/bpe_simple_vocab_16e6.txt.gz" \
  --data "$D/cifar10-wds/train-{0000..0004}.tar.gz" \
  --classes "$D/clip-prompts/prompts.json#CIFAR10" \
  --templates "$D/clip-prompts/prompts.json#CIFAR10" \
  --positives same-class --augment \
  --batch-size 256 --epochs 12 --lr 1e-3 --wd 0.1 --warmup 200 \
  --eval-zeroshot "$D/cifar10-wds/test-0000.tar.gz" --eval-every 196 \
  --checkpoint-every 196 --out "$OUT" ${RESUME:+--resume}
./target/release/seer plot "$OUT"
