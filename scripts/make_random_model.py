#!/usr/bin/env python3
"""Writes a randomly initialised CLIP model of a real architecture (default
ViT-B/32) in the transformers layout, for benchmarks that need a model folder
(`seer index`, `seer serve`) where no pretrained weights can be downloaded.

    python scripts/make_random_model.py --out /tmp/vit-b-32-random
"""
import argparse
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # transformers' defaults are the ViT-B/32 architecture.
    CLIPModel(CLIPConfig()).save_pretrained(out)
    CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}, resample=3).save_pretrained(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
