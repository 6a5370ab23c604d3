#!/usr/bin/env python3
"""Writes a randomly initialised model of a real architecture in the transformers
layout, for benchmarks that need a model folder (`seer bench --model`, `seer index`,
`seer serve`) where no pretrained weights can be downloaded.

    python scripts/make_random_model.py --out /tmp/vit-b-32-random                 # CLIP ViT-B/32
    python scripts/make_random_model.py --arch dinov2-small --out /tmp/dinov2-small
    python scripts/make_random_model.py --arch siglip-base-patch16-224 --out /tmp/siglip-b16
    python scripts/make_random_model.py --arch owlvit-base-patch32 --out /tmp/owlvit-b32

The configs are those of the published checkpoints (facebook/dinov2-small and -base,
google/siglip-base-patch16-224, google/owlvit-base-patch32); only the weights are random.
OWL-ViT's folder gets the shared CLIP tokenizer (../shared/data/clip-tokenizer). SigLIP needs a
SentencePiece tokenizer, which cannot be downloaded here: the folder gets the tiny
one of `fixtures/families/siglip-tiny`. Its ids stay below the real vocabulary size
and SigLIP pads every text to 64 tokens, so the text tower does the same work.
"""
import argparse
import shutil
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"


def clip(out):
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    # transformers' defaults are the ViT-B/32 architecture.
    CLIPModel(CLIPConfig()).save_pretrained(out)
    CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}, resample=3).save_pretrained(out)


def dinov2(out, hidden, heads):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    config = Dinov2Config(hidden_size=hidden, num_hidden_layers=12, num_attention_heads=heads,
                          image_size=518, patch_size=14, layerscale_value=1.0)
    Dinov2Model(config).save_pretrained(out)
    BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}, resample=3,
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(out)


def siglip_b16(out):
    from transformers import SiglipConfig, SiglipModel
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    SiglipModel(SiglipConfig()).save_pretrained(out)  # the defaults are base-patch16-224
    SiglipImageProcessorPil(size={"height": 224, "width": 224}, resample=3).save_pretrained(out)
    tiny = REPO / "fixtures/families/siglip-tiny"
    for name in ["spiece.model", "tokenizer_config.json"]:
        shutil.copy(tiny / name, Path(out) / name)


def owlvit_b32(out):
    from transformers import CLIPTokenizer, OwlViTConfig, OwlViTForObjectDetection, OwlViTProcessor
    from transformers.models.owlvit.image_processing_pil_owlvit import OwlViTImageProcessorPil

    # transformers' defaults are google/owlvit-base-patch32 (768 px, 577 tokens an image).
    OwlViTForObjectDetection(OwlViTConfig()).save_pretrained(out)
    tokenizer = CLIPTokenizer.from_pretrained(SHARED / "clip-tokenizer/hf-clip-vit-base-patch32",
                                              model_max_length=16)
    ip = OwlViTImageProcessorPil(size={"height": 768, "width": 768}, crop_size={"height": 768, "width": 768})
    OwlViTProcessor(image_processor=ip, tokenizer=tokenizer).save_pretrained(out)


ARCHS = {
    "clip-vit-b-32": clip,
    "dinov2-small": lambda out: dinov2(out, 384, 6),
    "dinov2-base": lambda out: dinov2(out, 768, 12),
    "siglip-base-patch16-224": siglip_b16,
    "owlvit-base-patch32": owlvit_b32,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=sorted(ARCHS), default="clip-vit-b-32")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ARCHS[args.arch](out)
    print(f"wrote {args.arch} with random weights to {out}")


if __name__ == "__main__":
    main()
