#!/usr/bin/env python3
"""PyTorch reference for `seer bench`: the same measurements with transformers'
CLIPModel (ViT-B/32 architecture, random weights) and a PIL + DataLoader pipeline,
on the CPU or a CUDA GPU (eager mode, f32, the framework's defaults).

With `--model DIR` (what `seer bench --model DIR` passes for a DINOv2 or SigLIP
folder) it loads that folder with transformers' AutoModel and times what seer
times for the family: the image embedding (DINOv2: `pooler_output`; SigLIP:
`get_image_features`) on random pixels, SigLIP's text embedding of the prompts
(tokenised and padded to 64 inside the timed loop, as seer does), and end to end
from files through the checkpoint's own image processor.

Prints progress to stderr and one JSON object as the last line of stdout. Run by
`seer bench --reference /path/to/python`, which passes the token ids it embeds
(`--tokens`), or by hand with that venv (then open_clip tokenizes the prompts).
"""
import argparse
import json
import sys
import time
from pathlib import Path

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


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, items, iterations):
    fn()  # warm-up
    synchronize()
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    synchronize()  # GPU work is asynchronous
    return items * iterations / (time.perf_counter() - start)


def token_tensor(args):
    """(N, 77) ids, zero padded, like open_clip.tokenize."""
    if args.tokens is None:
        import open_clip

        return open_clip.tokenize(PROMPTS)
    ids = json.loads(args.tokens)
    out = torch.zeros(len(ids), 77, dtype=torch.long)
    for row, seq in enumerate(ids):
        out[row, : len(seq)] = torch.tensor(seq[:77])
    return out


def image_transform():
    """open_clip's eval transform (resize shortest side bicubic, centre crop, normalise)."""
    try:
        import open_clip

        return open_clip.image_transform(224, is_train=False)
    except ImportError:  # the same steps through torchvision
        from torchvision import transforms as T

        return T.Compose([
            T.Resize(224, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
        ])


def family_bench(args, device):
    """A DINOv2 or SigLIP folder: the family's embedding, as seer's ImageEncoder and
    TextEncoder define it."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    config = AutoConfig.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model).eval().to(device)
    processor = AutoImageProcessor.from_pretrained(args.model)
    if config.model_type.startswith("dinov2"):
        embed_image = lambda px: model(pixel_values=px).pooler_output
        size = processor.crop_size["height"]
    else:
        embed_image = lambda px: model.get_image_features(pixel_values=px)
        size = processor.size["height"]
    out = {"torch": torch.__version__, "threads": args.threads, "device": args.device,
           "model": args.model, "family": config.model_type, "image_model": {}}
    with torch.inference_mode():
        for b in [int(x) for x in args.batch_sizes.split(",")]:
            pixels = torch.randn(b, 3, size, size, device=device)
            ips = timed(lambda: embed_image(pixels), b, args.iterations)
            out["image_model"][str(b)] = ips
            print(f"torch image model-only   batch {b:>3}: {ips:8.2f} images/s", file=sys.stderr)
        if hasattr(model, "get_text_features"):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(args.model)

            def embed_texts():
                ids = tokenizer(PROMPTS, padding="max_length", max_length=64, truncation=True,
                                return_tensors="pt")["input_ids"].to(device)
                return model.get_text_features(input_ids=ids)

            tps = timed(embed_texts, len(PROMPTS), args.iterations)
            out["text"] = tps
            print(f"torch text (padded to 64) batch {len(PROMPTS):>3}: {tps:8.2f} texts/s", file=sys.stderr)
        files = image_files(args)
        if files:
            def transform(image):
                return processor(images=image, return_tensors="pt")["pixel_values"][0]

            out.update(end_to_end(args, device, files, transform, embed_image))
    print(json.dumps(out))


def image_files(args):
    root = Path(args.images)
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS) if root.is_dir() else []
    return [found[i % len(found)] for i in range(args.files)] if found else []


def end_to_end(args, device, files, transform, embed_image):
    b = int(args.batch_sizes.split(",")[-1])
    cuda = device.type == "cuda"
    loader = DataLoader(Files(files, transform), batch_size=b, num_workers=args.threads, pin_memory=cuda)
    start = time.perf_counter()
    n = 0
    with torch.inference_mode():
        for batch in loader:
            embed_image(batch.to(device, non_blocking=True))
            n += batch.shape[0]
    synchronize()
    ips = n / (time.perf_counter() - start)
    print(f"torch end-to-end ({n} files)    : {ips:8.2f} images/s", file=sys.stderr)
    return {"e2e": ips, "e2e_files": n}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-sizes", default="8,32")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--images", default="../shared/data/imagenet-samples/images")
    ap.add_argument("--files", type=int, default=256, help="files end to end; the list repeats when shorter")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tokens", help="JSON list of token id lists (default: open_clip.tokenize)")
    ap.add_argument("--model", help="a DINOv2 or SigLIP folder (default: random CLIP ViT-B/32)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    if args.model:
        return family_bench(args, device)
    model = CLIPModel(CLIPConfig()).eval().to(device)  # the defaults are ViT-B/32
    out = {"torch": torch.__version__, "threads": args.threads, "device": args.device, "image_model": {}}

    with torch.inference_mode():
        for b in [int(x) for x in args.batch_sizes.split(",")]:
            pixels = torch.randn(b, 3, 224, 224, device=device)
            ips = timed(lambda: model.get_image_features(pixel_values=pixels), b, args.iterations)
            out["image_model"][str(b)] = ips
            print(f"torch image model-only   batch {b:>3}: {ips:8.2f} images/s", file=sys.stderr)

        tokens = token_tensor(args).to(device)
        longest = int((tokens != 0).sum(1).max())
        for key, ids in [("text_context", tokens), ("text_longest", tokens[:, :longest])]:
            tps = timed(lambda: model.get_text_features(input_ids=ids), len(tokens), args.iterations)
            out[key] = tps
            print(f"torch text {key:<13} batch {len(tokens):>3}: {tps:8.2f} texts/s", file=sys.stderr)

    files = image_files(args)
    if files:
        out.update(end_to_end(args, device, files, image_transform(),
                              lambda px: model.get_image_features(pixel_values=px)))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
