#!/usr/bin/env python3
"""PyTorch reference for `seer bench`: the same measurements with transformers'
CLIPModel (ViT-B/32 architecture, random weights) and a PIL + DataLoader pipeline.

Prints progress to stderr and one JSON object as the last line of stdout. Run by
`seer bench --reference /path/to/python`, or by hand with that venv.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import open_clip
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from transformers import CLIPConfig, CLIPModel

# The same prompts seer bench uses (crates/seer-cli/src/commands/bench.rs).
PROMPTS = [
    "a photo of a dog.", "a photo of a cat.", "a blurry photo of a truck.", "a drawing of an airplane.",
    "a photo of the small bird.", "a close-up photo of a frog.", "a photo of a horse in a field.",
    "a photo of a ship at sea.", "itap of a deer.", "a bright photo of a red car.",
    "a black and white photo of the automobile.", "art of the tench.", "a photo of a goldfish.",
    "a photo of the large great white shark.", "a origami hammerhead shark.", "a photo of a beach at sunset",
    "two people riding bicycles down a city street", "a bowl of fruit on a wooden table",
    "a snowy mountain under a blue sky", "a child playing with a ball in the park",
    "a plate of spaghetti with tomato sauce", "an old castle on a hill", "a cup of coffee and a laptop",
    "a group of friends at a party", "a dog catching a frisbee", "a cat sleeping on a sofa",
    "a red double-decker bus", "a lighthouse by the ocean", "fireworks over a river at night",
    "a bookshelf full of books", "a vintage typewriter", "a field of sunflowers",
]
EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


class Files(Dataset):
    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(Image.open(self.paths[i]).convert("RGB"))


def timed(fn, items, iterations):
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    return items * iterations / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-sizes", default="8,32")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--images", default="../shared/data/imagenet-samples/images")
    ap.add_argument("--files", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig()).eval()  # the defaults are ViT-B/32
    out = {"torch": torch.__version__, "threads": args.threads, "image_model": {}}

    with torch.inference_mode():
        for b in [int(x) for x in args.batch_sizes.split(",")]:
            pixels = torch.randn(b, 3, 224, 224)
            ips = timed(lambda: model.get_image_features(pixel_values=pixels), b, args.iterations)
            out["image_model"][str(b)] = ips
            print(f"torch image model-only   batch {b:>3}: {ips:8.2f} images/s", file=sys.stderr)

        tokens = open_clip.tokenize(PROMPTS)  # (N, 77), zero padded
        longest = int((tokens != 0).sum(1).max())
        for key, ids in [("text_context", tokens), ("text_longest", tokens[:, :longest])]:
            tps = timed(lambda: model.get_text_features(input_ids=ids), len(PROMPTS), args.iterations)
            out[key] = tps
            print(f"torch text {key:<13} batch {len(PROMPTS):>3}: {tps:8.2f} texts/s", file=sys.stderr)

        root = Path(args.images)
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS)[: args.files] if root.is_dir() else []
        if files:
            transform = open_clip.image_transform(224, is_train=False)
            b = int(args.batch_sizes.split(",")[-1])
            loader = DataLoader(Files(files, transform), batch_size=b, num_workers=2)
            start = time.perf_counter()
            n = 0
            for batch in loader:
                model.get_image_features(pixel_values=batch)
                n += batch.shape[0]
            out["e2e"] = n / (time.perf_counter() - start)
            out["e2e_files"] = n
            print(f"torch end-to-end ({n} files)    : {out['e2e']:8.2f} images/s", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
