#!/usr/bin/env python3
"""Reference numbers for `seer eval segment` (fixtures/segment_eval, see its README).

1. `coco_masks.json`: every annotation of coco-mini (both splits, crowd ones included)
   decoded by pycocotools' `COCO.annToMask` and re-encoded with `maskUtils.encode`
   (canonical runs, compressed string), with its area: seer's COCO mask decoding must
   give the same masks bit for bit.
2. `instances_val2017.json`: a small subset of coco-mini's val instances (a few images
   with few objects, one of them with a crowd region), and `reference.json`: the
   box-prompt evaluation of the tiny SAM fixture (fixtures/sam/sam-tiny) on it, done by
   transformers (`SamModel`, `SamProcessor`, `post_process_masks`, multimask_output=False)
   and pycocotools (`annToMask`): per object the box prompt, intersection, union, IoU
   and predicted IoU; mIoU overall and per category.

Run with the reference venv (torch, transformers 5, pycocotools, Pillow, numpy):
    ../refvenv/bin/python scripts/make_segment_eval_fixtures.py [--shared ../shared/data]
"""
import argparse
import json
from pathlib import Path

import numpy as np
import PIL
import pycocotools
import torch
import transformers
from PIL import Image, ImageOps
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from transformers import SamModel, SamProcessor
from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "segment_eval"
SAM = ROOT / "fixtures" / "sam" / "sam-tiny"
IMAGES_WANTED = 3
MAX_OBJECTS = 4  # objects per chosen image: keeps the debug-build tests short


def box_prompt(bbox, w, h):
    """COCO [x, y, w, h] as [x0, y0, x1, y1] clamped to the image (seer's box_prompt),
    rounded to f32 as seer's prompt holds it."""
    x0 = min(max(bbox[0], 0.0), w)
    y0 = min(max(bbox[1], 0.0), h)
    x1 = max(min(max(bbox[0] + bbox[2], 0.0), w), x0)
    y1 = max(min(max(bbox[1] + bbox[3], 0.0), h), y0)
    return [float(np.float32(v)) for v in (x0, y0, x1, y1)]


def coco_masks(shared):
    out = {}
    for split in ("train2017", "val2017"):
        coco = COCO(str(shared / f"coco-mini/annotations/instances_{split}.json"))
        for ann in coco.dataset["annotations"]:
            img = coco.imgs[ann["image_id"]]
            m = coco.annToMask(ann)
            enc = mask_utils.encode(np.asfortranarray(m))
            out[str(ann["id"])] = {
                "split": split,
                "height": img["height"],
                "width": img["width"],
                "area": int(m.sum()),
                "counts": enc["counts"].decode("ascii"),
            }
    return out


def subset(shared):
    path = shared / "coco-mini/annotations/instances_val2017.json"
    data = json.loads(path.read_text())
    by_image = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    images = sorted(data["images"], key=lambda i: i["file_name"])
    # The first images with few objects, then the first image with a crowd region
    # (an RLE) cut down to that region and two other objects.
    chosen = [i for i in images
              if 0 < len(by_image.get(i["id"], [])) <= MAX_OBJECTS
              and not any(a["iscrowd"] for a in by_image[i["id"]])][:IMAGES_WANTED - 1]
    crowd_image = next(i for i in images if any(a["iscrowd"] for a in by_image.get(i["id"], [])))
    chosen.append(crowd_image)
    anns = by_image[crowd_image["id"]]
    by_image[crowd_image["id"]] = [a for a in anns if a["iscrowd"]] + \
        [a for a in anns if not a["iscrowd"]][:2]
    ids = {i["id"] for i in chosen}
    return {
        "images": sorted(chosen, key=lambda i: i["file_name"]),
        "annotations": [a for i in sorted(ids) for a in by_image[i]],
        "categories": data["categories"],
    }


def evaluate(shared, instances_path, include_crowd=False):
    coco = COCO(str(instances_path))
    model = SamModel.from_pretrained(SAM, attn_implementation="eager").eval()
    processor = SamProcessor(image_processor=SamImageProcessorPil.from_pretrained(SAM))
    per_instance = []
    skipped_crowd = 0
    for img in sorted(coco.dataset["images"], key=lambda i: i["file_name"]):
        anns = [a for a in coco.dataset["annotations"] if a["image_id"] == img["id"]]
        targets = []
        for a in anns:
            if a["iscrowd"] and not include_crowd:
                skipped_crowd += 1
                continue
            m = coco.annToMask(a).astype(bool)
            if m.sum() == 0:
                continue
            targets.append((a, m))
        if not targets:
            continue
        image = ImageOps.exif_transpose(
            Image.open(shared / "coco-mini/images/val2017" / img["file_name"]))
        w, h = image.size
        boxes = [box_prompt(a["bbox"], w, h) for a, _ in targets]
        inputs = processor(images=image, input_boxes=[boxes], return_tensors="pt")
        with torch.no_grad():
            emb = model.get_image_embeddings(inputs["pixel_values"])
            out = model(image_embeddings=emb, input_boxes=inputs["input_boxes"].float(),
                        multimask_output=False)
        masks = processor.post_process_masks(out.pred_masks, inputs["original_sizes"],
                                             inputs["reshaped_input_sizes"])[0]
        for k, ((a, truth), b) in enumerate(zip(targets, boxes)):
            pred = masks[k, 0].numpy().astype(bool)
            inter = int((pred & truth).sum())
            union = int((pred | truth).sum())
            per_instance.append({
                "image_id": img["id"],
                "annotation_id": a["id"],
                "category_id": a["category_id"],
                "box": b,
                "intersection": inter,
                "union": union,
                "iou": inter / union,
                "predicted_iou": float(out.iou_scores[0, k, 0]),
            })
    cats = {}
    for s in per_instance:
        cats.setdefault(s["category_id"], []).append(s["iou"])
    names = {c["id"]: c["name"] for c in coco.dataset["categories"]}
    per_category = [{"id": c, "name": names[c], "instances": len(v), "miou": float(np.mean(v))}
                    for c, v in sorted(cats.items())]
    return {
        "images": len({s["image_id"] for s in per_instance}),
        "instances": len(per_instance),
        "miou": float(np.mean([s["iou"] for s in per_instance])),
        "category_miou": float(np.mean([c["miou"] for c in per_category])),
        "per_category": per_category,
        "skipped_crowd": skipped_crowd,
        "per_instance": per_instance,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    shared = Path(args.shared)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                "pycocotools": pycocotools.__version__ if hasattr(pycocotools, "__version__")
                else "2.0.x", "Pillow": PIL.__version__, "numpy": np.__version__}

    masks = coco_masks(shared)
    (OUT / "coco_masks.json").write_text(json.dumps(
        {"versions": versions, "annotations": masks}, separators=(",", ":")) + "\n")

    instances = OUT / "instances_val2017.json"
    instances.write_text(json.dumps(subset(shared), indent=1) + "\n")
    reference = evaluate(shared, instances)
    reference["with_crowd"] = evaluate(shared, instances, include_crowd=True)
    reference["versions"] = versions
    reference["model"] = "fixtures/sam/sam-tiny"
    reference["images_folder"] = "coco-mini/images/val2017"
    (OUT / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
    print(f"{len(masks)} annotation masks; {reference['instances']} objects on "
          f"{reference['images']} images, mIoU {reference['miou']:.4f}")


if __name__ == "__main__":
    main()
