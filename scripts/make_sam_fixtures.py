#!/usr/bin/env python3
"""Tiny random SAM checkpoints (transformers `SamModel`) and their reference outputs:
`sam-tiny`, and `slimsam-tiny` with SlimSAM's odd pruned encoder widths.

The model is built from a config with random weights (no hub downloads) by transformers
itself and written with `save_pretrained`; the image processor (the PIL class
`SamImageProcessorPil`, saved as `SamImageProcessor` like the hub's) with its own
`save_pretrained`, so the folder has the layout of `facebook/sam-vit-base`.
`reference.json` holds the inputs (image paths relative to the shared data root,
prompts in original-image pixels) and what seer must reproduce: preprocessing
samples, image-embedding samples, IoU predictions, low-resolution mask logits
(`pred_masks`, sampled) and the masks of `SamProcessor.post_process_masks` as COCO
RLE (uncompressed counts, column-major). See fixtures/sam/README.md.

Run with the reference venv (torch, transformers 5, Pillow, numpy):
    ../refvenv/bin/python scripts/make_sam_fixtures.py [--shared ../shared/data]
"""
import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import PIL
import torch
import transformers
from PIL import Image, ImageOps
from transformers import SamConfig, SamModel, SamProcessor, pipeline
from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "sam"

# Several aspect ratios and modes: landscape and portrait JPEGs, a wide RGBA PNG and a
# square grayscale PNG.
IMAGES = [
    "coco-mini/images/val2017/000000000139.jpg",
    "coco-mini/images/val2017/000000000802.jpg",
    "smoke/misc/CLIP.png",
    "smoke/skimage/camera.png",
]
SAMPLES = 2048  # sampled positions per compared tensor (1024 for mask logits)


def tiny_config():
    # image_size stays 1024 (the processor's fixed input) so the embedding is 64×64
    # and the mask logits 256×256 as in every real checkpoint; everything else shrinks.
    # window_size 6 does not divide 64: the windowed layers pad (as SAM's 14 does).
    return SamConfig(
        vision_config=dict(
            hidden_size=32, output_channels=32, num_hidden_layers=2, num_attention_heads=2,
            image_size=1024, patch_size=16, mlp_dim=48, window_size=6,
            global_attn_indexes=[1], num_pos_feats=16,
        ),
        prompt_encoder_config=dict(hidden_size=32, image_size=1024, patch_size=16,
                                   mask_input_channels=8),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_hidden_layers=2,
                                 num_attention_heads=2, iou_head_hidden_dim=32),
    )


def slim_config():
    # SlimSAM's shape: the image encoder pruned to widths that are no power of two
    # (head width 14 here; the real SlimSAM-uniform checkpoints spell their pruned
    # widths in the same config fields), the prompt encoder and decoder as in SAM.
    config = tiny_config()
    config.vision_config.hidden_size = 28
    config.vision_config.mlp_dim = 44
    return config


def reinit_(model, gen):
    """Every tensor random (transformers zeroes rel-pos and pos_embed, and sets LayerNorms
    to 1/0): N(0, 1/sqrt(fan_in)) for matrices and convolutions, N(0, 0.5) for
    embeddings and biases, 1 + N(0, 0.2) for norm weights."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name or "layernorm" in name:
                if name.endswith("weight"):
                    p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("positional_embedding"):
                p.copy_(torch.randn(p.shape, generator=gen))
            elif p.dim() >= 2 and not name.endswith(("rel_pos_h", "rel_pos_w", "pos_embed")) \
                    and "embed" not in name.split(".")[-2] and "token" not in name:
                fan_in = p[0].numel()
                if "upscale_conv" in name:  # ConvTranspose2d: (in, out, k, k)
                    fan_in = p.shape[0]
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5)
            else:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
        # Smooth masks, as a trained model's (and compact RLE): the patch embedding
        # mostly reads each patch's mean colour, the absolute position embedding is
        # small, and the transposed convolutions mostly repeat a value over their 2×2
        # outputs, so the masks follow the image's colour regions instead of noise.
        pe = model.vision_encoder.patch_embed.projection.weight
        mean = torch.randn(pe.shape[0], pe.shape[1], 1, 1, generator=gen) / 3 ** 0.5 / 16
        pe.copy_(mean.expand_as(pe) + 0.15 * pe)
        model.vision_encoder.pos_embed.mul_(0.1)
        for conv in (model.mask_decoder.upscale_conv1, model.mask_decoder.upscale_conv2):
            w = conv.weight
            w.copy_(w[:, :, :1, :1].expand_as(w) + 0.3 * w)


def samples(t, rng, n=SAMPLES):
    flat = t.detach().reshape(-1).double().numpy()
    idx = np.sort(rng.choice(flat.size, size=min(n, flat.size), replace=False))
    return {
        "shape": list(t.shape),
        "sum": float(flat.sum()),
        "abs_sum": float(np.abs(flat).sum()),
        "indices": idx.tolist(),
        "values": [round(float(v), 8) for v in flat[idx]],
    }


def rle(mask):
    """COCO uncompressed RLE: column-major runs, starting with a (possibly empty) run of 0s."""
    flat = np.asarray(mask, dtype=np.uint8).reshape(-1, order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def prompts_for(w, h):
    """Prompts in original pixels, relative to the image size."""
    p = lambda fx, fy: [round(fx * w, 1), round(fy * h, 1)]
    b = lambda x0, y0, x1, y1: [round(x0 * w, 1), round(y0 * h, 1), round(x1 * w, 1), round(y1 * h, 1)]
    return [
        dict(name="point", points=[p(0.5, 0.45)], labels=[1], boxes=[], multimask=True),
        dict(name="points_fg_bg", points=[p(0.3, 0.6), p(0.8, 0.2)], labels=[1, 0], boxes=[],
             multimask=True),
        dict(name="box", points=[], labels=[], boxes=[b(0.1, 0.2, 0.7, 0.9)], multimask=True),
        dict(name="box_and_point", points=[p(0.4, 0.5)], labels=[1],
             boxes=[b(0.2, 0.1, 0.8, 0.85)], multimask=True),
        dict(name="two_boxes", points=[], labels=[], boxes=[b(0.05, 0.05, 0.5, 0.5),
                                                          b(0.4, 0.3, 0.95, 0.99)],
             multimask=True),
        dict(name="points_single", points=[p(0.25, 0.25), p(0.7, 0.75)], labels=[1, 1], boxes=[],
             multimask=False),
        # The best mask of "point" fed back with a second click (SAM's refinement loop).
        dict(name="mask_and_point", points=[p(0.5, 0.45), p(0.6, 0.3)], labels=[1, 1], boxes=[],
             multimask=False, mask_from="point"),
    ]


def run_prompt(model, processor, image, emb, prompt, previous):
    kwargs = {}
    nboxes = len(prompt["boxes"])
    if prompt["points"]:
        # With boxes every box gets the same points (the point batch is the box count).
        reps = max(nboxes, 1)
        kwargs["input_points"] = [[prompt["points"]] * reps]
        kwargs["input_labels"] = [[prompt["labels"]] * reps]
    if nboxes:
        kwargs["input_boxes"] = [prompt["boxes"]]
    inputs = processor(images=image, return_tensors="pt", **kwargs)
    feed = {k: inputs[k] for k in ("input_points", "input_labels", "input_boxes") if k in inputs}
    if "input_points" in feed:
        feed["input_points"] = feed["input_points"].float()
    if "input_boxes" in feed:
        feed["input_boxes"] = feed["input_boxes"].float()
    if prompt.get("mask_from"):
        feed["input_masks"] = previous[prompt["mask_from"]]
    with torch.no_grad():
        out = model(image_embeddings=emb, multimask_output=prompt["multimask"], **feed)
    masks = processor.post_process_masks(out.pred_masks, inputs["original_sizes"],
                                         inputs["reshaped_input_sizes"])[0]
    return inputs, out, masks


# Automatic mask generation (transformers' mask-generation pipeline) on small grids.
# The tiny model's logits are small, so the stability offset is lowered for the filters
# to keep anything; the second case turns the filters off and runs a crop layer.
AUTOMASK = [
    dict(image="coco-mini/images/val2017/000000000802.jpg",
         options=dict(points_per_crop=8, pred_iou_thresh=0.5, stability_score_thresh=0.2,
                      stability_score_offset=0.1)),
    dict(image="smoke/skimage/camera.png",
         options=dict(points_per_crop=4, crops_n_layers=1, pred_iou_thresh=0.0,
                      stability_score_thresh=0.0)),
]


def rle_string(counts):
    """COCO compressed RLE (`rleToString` of pycocotools' maskApi.c)."""
    out = []
    for i, x in enumerate(counts):
        x = int(x)
        if i > 2:
            x -= int(counts[i - 2])
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def automask_reference(model, image_processor, shared):
    generator = pipeline("mask-generation", model=model, image_processor=image_processor,
                         device="cpu")
    cases = []
    for case in AUTOMASK:
        image = ImageOps.exif_transpose(Image.open(shared / case["image"]))
        out = generator(image, points_per_batch=64, output_rle_mask=True,
                        output_bboxes_mask=True, **case["options"])
        masks = []
        for rle_mask, score, box in zip(out["rle_mask"], out["scores"], out["bounding_boxes"]):
            masks.append({
                "score": round(float(score), 8),
                "box": [int(v) for v in box],
                "area": int(sum(rle_mask["counts"][1::2])),
                "size": [int(v) for v in rle_mask["size"]],
                "counts": rle_string(rle_mask["counts"]),
            })
        cases.append({"image": case["image"], "options": case["options"], "masks": masks})
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    shared = Path(args.shared)
    write_fixture("sam-tiny", tiny_config(), IMAGES, shared, automask=True)
    # One image is enough to show the odd widths run as transformers runs them.
    write_fixture("slimsam-tiny", slim_config(), IMAGES[:1], shared, automask=False)


def write_fixture(name, config, images, shared, automask):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(1234)
    rng = np.random.default_rng(7)

    config._attn_implementation = "eager"
    model = SamModel(config).eval()
    reinit_(model, gen)
    # The tied copy must match (save_pretrained keeps one of them).
    model.prompt_encoder.shared_embedding.positional_embedding = \
        model.shared_image_embedding.positional_embedding

    dest = OUT / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    model.save_pretrained(dest)
    image_processor = SamImageProcessorPil()
    image_processor.save_pretrained(dest)
    # Reload, so the reference runs what was written.
    model = SamModel.from_pretrained(dest, attn_implementation="eager").eval()
    processor = SamProcessor(image_processor=SamImageProcessorPil.from_pretrained(dest))

    cases = []
    for rel in images:
        image = ImageOps.exif_transpose(Image.open(shared / rel))
        w, h = image.size
        inputs = processor(images=image, return_tensors="pt")
        pixels = inputs["pixel_values"]
        with torch.no_grad():
            emb = model.get_image_embeddings(pixels)
        entry = {
            "image": rel,
            "original_size": [h, w],
            "reshaped_input_size": [int(x) for x in inputs["reshaped_input_sizes"][0]],
            "pixel_values": samples(pixels, rng),
            "image_embeddings": samples(emb, rng),
            "prompts": [],
        }
        previous = {}
        for prompt in prompts_for(w, h):
            _, out, masks = run_prompt(model, processor, image, emb, prompt, previous)
            iou = out.iou_scores[0]  # (point_batch, k)
            best = int(iou[0].argmax())
            previous[prompt["name"]] = out.pred_masks[0, 0, best][None, None].clone()
            record = dict(prompt)
            record["iou_scores"] = [[round(float(v), 8) for v in row] for row in iou]
            record["pred_masks"] = samples(out.pred_masks[0], rng, 1024)
            record["masks"] = [[rle(m.numpy()) for m in per_box] for per_box in masks]
            record["mask_areas"] = [[int(m.sum()) for m in per_box] for per_box in masks]
            if prompt.get("mask_from"):
                record["mask_from_best"] = int(
                    next(p for p in entry["prompts"] if p["name"] == prompt["mask_from"])
                    ["best"])
            record["best"] = best
            entry["prompts"].append(record)
        cases.append(entry)

    reference = {
        "versions": {
            "torch": torch.__version__.split("+")[0],
            "transformers": transformers.__version__,
            "Pillow": PIL.__version__,
            "numpy": np.__version__,
        },
        "mask_threshold": 0.0,
        "cases": cases,
    }
    with open(dest / "reference.json", "w") as f:
        json.dump(reference, f, separators=(",", ":"))
        f.write("\n")
    if automask:
        masks = automask_reference(model, processor.image_processor, shared)
        with open(dest / "automask.json", "w") as f:
            json.dump({"versions": reference["versions"], "cases": masks}, f,
                      separators=(",", ":"))
            f.write("\n")
    total = sum(p.stat().st_size for p in dest.iterdir())
    print(f"wrote {dest} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
