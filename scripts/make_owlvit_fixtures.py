#!/usr/bin/env python3
"""Tiny random OWL-ViT and OWLv2 detectors and their reference outputs.

Each model is built from a config with random weights (no hub downloads) by
transformers itself (`OwlViTForObjectDetection`, `Owlv2ForObjectDetection`) and
written with `save_pretrained`; the processor (the PIL image processor class and
the CLIP tokenizer from the shared data) with its own `save_pretrained`, so each
folder has the layout of a real hub checkpoint. `reference.json` beside it holds
the inputs and what seer must reproduce: pixel values, text query embeddings,
logits, boxes, objectness, and the processor's post-processing (text queries and
image-guided queries). See fixtures/owlvit/README.md.

Run with the reference venv (torch, transformers 5, scipy, Pillow, numpy):
    ../refvenv/bin/python scripts/make_owlvit_fixtures.py [--shared ../shared/data]

Size: the CLIP vocabulary has 49408 tokens, so the text tower is 8 wide and its
token table is stored as float16 (the model computes with the same values, rounded
to float16 before the reference runs); everything else is float32.
"""
import argparse
import glob
import json
import os
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import scipy
import torch
import transformers
import PIL
from PIL import Image, ImageOps
from safetensors.torch import load_file, save_file
from transformers import (CLIPTokenizer, OwlViTConfig, OwlViTForObjectDetection, OwlViTProcessor,
                          Owlv2Config, Owlv2ForObjectDetection, Owlv2Processor)
from transformers.models.owlvit.image_processing_pil_owlvit import OwlViTImageProcessorPil
from transformers.models.owlv2.image_processing_pil_owlv2 import Owlv2ImageProcessorPil
from transformers.image_transforms import center_to_corners_format

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "owlvit"

# Images of different aspect ratios and modes (relative to the shared data root):
# the first 4 COCO-mini val2017 files (landscape, portrait, portrait, landscape),
# a grayscale square and an RGBA square.
SMOKE = ["smoke/skimage/camera.png", "smoke/misc/CLIP.png"]
# The image query ("find more of this").
QUERY = "coco-mini/images/val2017/000000022192.jpg"
LABELS = [
    "a photo of a cat",
    "a dog",
    "a person riding a horse",
    # 20+ tokens: the processor truncates to 16 (max_position_embeddings).
    "a very long description of a red double decker bus driving down a busy city street at night in the rain",
]
THRESHOLDS = [0.1, 0.3]
NMS = [0.3, 0.5]


def r8(x):
    return [round(float(v), 8) for v in np.asarray(x, dtype=np.float64).reshape(-1)]


def rows(x):
    x = np.asarray(x)
    return [r8(r) for r in x]


def reinit_(model, seed):
    g = torch.Generator().manual_seed(seed)

    def n(shape, std):
        return torch.randn(shape, generator=g) * std

    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("token_embedding.weight"):
                p.copy_(n(p.shape, 0.6).half().float())
            elif name.endswith("text_model.embeddings.position_embedding.weight"):
                p.copy_(n(p.shape, 0.6))
            elif name.endswith("class_embedding"):
                p.copy_(n(p.shape, 1.0))
            elif name.endswith("vision_model.embeddings.position_embedding.weight"):
                p.copy_(n(p.shape, 0.5))
            elif "layer_norm" in name or "layernorm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + n(p.shape, 0.1))
            elif name.endswith("logit_scale") and p.ndim == 0:
                p.fill_(2.6592)
            elif p.ndim >= 2:
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(n(p.shape, 1.0 / np.sqrt(fan_in)))
            else:
                p.copy_(n(p.shape, 0.1))
        # Spread the scores around the default threshold (0.1) rather than far above
        # it, and make boxes large enough to overlap, so that thresholds and NMS
        # both decide something.
        model.class_head.logit_shift.bias.fill_(-2.3)
        model.class_head.logit_scale.bias.fill_(0.5)
        model.box_head.dense2.bias[2:] += 1.2


def config_dicts(image_size, patch):
    text = dict(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=16, vocab_size=49408)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  image_size=image_size, patch_size=patch)
    return dict(text_config=text, vision_config=vision, projection_dim=8)


def open_image(shared, rel):
    img = Image.open(shared / rel)
    return ImageOps.exif_transpose(img)


def text_nms(result, iou):
    """Per-class greedy NMS over the processor's result (boxes in pixels)."""
    scores, labels, boxes = result["scores"], result["labels"], result["boxes"]
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep = []
    for i in order:
        ok = True
        for j in keep:
            if int(labels[j]) != int(labels[i]):
                continue
            if box_iou(boxes[i], boxes[j]) > iou:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def box_iou(a, b):
    a = [float(v) for v in a]
    b = [float(v) for v in b]
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def dump_result(result, labels=None, keep=None):
    idx = range(len(result["scores"])) if keep is None else keep
    out = []
    for i in idx:
        d = {"score": round(float(result["scores"][i]), 8), "box": r8(result["boxes"][i])}
        if labels is not None:
            d["label_index"] = int(result["labels"][i])
            d["label"] = labels[int(result["labels"][i])]
        out.append(d)
    return out


def build(kind, shared, images, seed):
    tok_dir = shared / "clip-tokenizer" / "hf-clip-vit-base-patch32"
    # OWL-ViT's hub tokenizers are CLIP's with model_max_length 16 (the text
    # tower's max_position_embeddings); the processor pads to it.
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir, model_max_length=16)
    if kind == "owlvit":
        cfg = OwlViTConfig(**config_dicts(96, 16))
        model = OwlViTForObjectDetection(cfg)
        ip = OwlViTImageProcessorPil(size={"height": 96, "width": 96}, crop_size={"height": 96, "width": 96})
        processor = OwlViTProcessor(image_processor=ip, tokenizer=tokenizer)
        name, cls = "owlvit-tiny", "OwlViTForObjectDetection"
    else:
        cfg = Owlv2Config(**config_dicts(96, 16))
        model = Owlv2ForObjectDetection(cfg)
        ip = Owlv2ImageProcessorPil(size={"height": 96, "width": 96})
        processor = Owlv2Processor(image_processor=ip, tokenizer=tokenizer)
        name, cls = "owlv2-tiny", "Owlv2ForObjectDetection"
    reinit_(model, seed)
    model.eval()
    out = OUT / name
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    # tokenizer.json is the shared CLIP tokenizer (3.6 MB): left out, as in the CLIP
    # fixtures; the tests pass the shared file (clip-tokenizer/hf-clip-vit-base-patch32).
    (out / "tokenizer.json").unlink()
    # The token table as float16 (its values already are float16 numbers).
    st = out / "model.safetensors"
    tensors = load_file(st)
    for k in tensors:
        if k.endswith("token_embedding.weight"):
            tensors[k] = tensors[k].half()
    save_file(tensors, st, metadata={"format": "pt"})
    reloaded = type(model).from_pretrained(out, dtype=torch.float32)
    for (k, a), (_, b) in zip(sorted(model.state_dict().items()), sorted(reloaded.state_dict().items())):
        assert torch.equal(a, b), k

    ref = {
        "library": "transformers",
        "class": cls,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "numpy": np.__version__, "scipy": scipy.__version__, "pillow": PIL.__version__},
        "images": images,
        "labels": LABELS,
        "image_processor": ip.to_dict(),
        "tensors": {k: [str(v.dtype).replace("torch.", ""), list(v.shape)] for k, v in sorted(tensors.items())},
    }
    pil = [open_image(shared, p) for p in images]
    sizes = [(im.height, im.width) for im in pil]
    stride = 6 if kind == "owlvit" else 4
    with torch.no_grad():
        enc = processor(text=[LABELS], images=pil[:1], return_tensors="pt", padding="max_length", truncation=True)
        ref["text"] = {
            "input_ids": enc["input_ids"].tolist(),
            "attention_mask": enc["attention_mask"].tolist(),
        }
        px = torch.cat([processor(images=[im], return_tensors="pt")["pixel_values"] for im in pil])
        ref["pixel_values"] = {
            "shape": list(px.shape),
            "channel_mean": [r8(px[i].mean((1, 2))) for i in range(len(pil))],
            "channel_std": [r8(px[i].std((1, 2))) for i in range(len(pil))],
            "sample_stride": stride,
            "sample": [r8(px[i, :, ::stride, ::stride]) for i in range(len(pil))],
        }
        ids = enc["input_ids"]
        mask = enc["attention_mask"]
        per_image = []
        target_sizes = []
        for i, im in enumerate(pil):
            o = model(input_ids=ids, attention_mask=mask, pixel_values=px[i:i + 1])
            entry = {"size_hw": list(sizes[i]), "logits": rows(o.logits[0]), "pred_boxes": rows(o.pred_boxes[0])}
            if kind == "owlv2":
                entry["objectness_logits"] = r8(o.objectness_logits[0])
            if i == 0:
                ref["text"]["text_embeds"] = rows(o.text_embeds[0])
                entry["image_embeds_first_row"] = r8(o.image_embeds[0, 0, 0])
            # OWL-ViT boxes are relative to the squashed image: scale by (h, w). OWLv2's
            # are relative to the padded square: scale by (S, S), S = max(h, w).
            h, w = sizes[i]
            ts = (h, w) if kind == "owlvit" else (max(h, w), max(h, w))
            target_sizes.append(ts)
            entry["target_size"] = list(ts)
            entry["post_process"] = {}
            for t in THRESHOLDS:
                res = processor.post_process_grounded_object_detection(
                    outputs=o, threshold=t, target_sizes=[ts], text_labels=[LABELS])[0]
                d = {"nms_1": dump_result(res, LABELS)}
                for iou in NMS:
                    d[f"nms_{iou}"] = dump_result(res, LABELS, text_nms(res, iou))
                entry["post_process"][f"threshold_{t}"] = d
            per_image.append(entry)
        ref["text_queries"] = per_image

        # Image-guided detection: one query image against every image.
        qim = open_image(shared, QUERY)
        qpx = processor(images=[qim], return_tensors="pt")["pixel_values"]
        guided = []
        for i, im in enumerate(pil):
            o = model.image_guided_detection(pixel_values=px[i:i + 1], query_pixel_values=qpx)
            entry = {"logits": r8(o.logits[0, :, 0]), "target_pred_boxes": rows(o.target_pred_boxes[0])}
            if i == 0:
                qfm = o.query_image_embeds
                qfeats = qfm.reshape(1, -1, qfm.shape[-1])
                q_embeds, box_idx, _ = model.embed_image_query(qfeats, qfm)
                ref["image_query"] = {"path": QUERY, "query_embed": r8(q_embeds.reshape(-1)),
                                      "best_box_index": int(box_idx.reshape(-1)[0]),
                                      "query_pred_boxes": rows(o.query_pred_boxes[0])}
            ts = torch.tensor([target_sizes[i]], dtype=torch.float32)
            entry["post_process"] = {}
            for t, iou in [(0.0, 0.3), (0.0, 1.0), (0.5, 0.3), (0.5, 1.0), (0.2, 0.5)]:
                # The method modifies nothing of `o` we reuse (logits are re-read each call).
                res = processor.post_process_image_guided_detection(
                    outputs=o, threshold=t, nms_threshold=iou, target_sizes=ts)
                entry["post_process"][f"threshold_{t}_nms_{iou}"] = dump_result(res[0]) if res else []
            guided.append(entry)
        ref["image_guided"] = guided
    (out / "reference.json").write_text(json.dumps(ref, separators=(",", ":")) + "\n")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    shared = Path(args.shared).resolve()
    torch.manual_seed(0)
    coco = sorted(glob.glob(str(shared / "coco-mini/images/val2017/*.jpg")))[:4]
    images = [str(Path(p).relative_to(shared)) for p in coco] + SMOKE
    for kind, seed in [("owlvit", 31), ("owlv2", 32)]:
        out = build(kind, shared, images, seed)
        total = sum(f.stat().st_size for f in out.iterdir())
        print(f"{out.name}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
