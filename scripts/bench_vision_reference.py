#!/usr/bin/env python3
"""PyTorch side of `seer bench --model` for SAM and OWL-ViT/OWLv2 folders (run by seer
with --reference; prints one JSON line last, times in seconds).

--task sam: `SamModel.get_image_embeddings` on the processor's pixel values (the image
encoder, seconds per image); then per click, from the cached embedding: one foreground
point with three masks, and one box with one mask, `SamModel(image_embeddings=...)`
alone (`decoder_*_s`) and with `SamProcessor.post_process_masks` to the original size
(`click_*_s`).

--task owl: the text queries embedded once (transformers' forward would run the text
tower on every call); per image the public pieces of `forward` without it:
`image_embedder`, `class_predictor`, `box_predictor` (and OWLv2's
`objectness_predictor`) on the processor's pixel values (`detect_model_s`), and end to
end from the PIL image: processor, those, and `post_process_object_detection` at
threshold 0.1 (`detect_e2e_s`).
"""
import argparse
import json
import time

import torch
from PIL import Image, ImageOps


def timed(fn, n):
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def bench_sam(args, image):
    from transformers import SamModel, SamProcessor
    model = SamModel.from_pretrained(args.model).eval()
    processor = SamProcessor.from_pretrained(args.model)
    w, h = image.size
    inputs = processor(images=image, return_tensors="pt")
    pixels = inputs["pixel_values"]
    out = {}
    with torch.inference_mode():
        out["encoder_s"] = timed(lambda: model.get_image_embeddings(pixels), args.iterations)
        emb = model.get_image_embeddings(pixels)
        prompts = {
            "point": (dict(input_points=[[[[w * 0.5, h * 0.45]]]], input_labels=[[[1]]]), True),
            "box": (dict(input_boxes=[[[w * 0.1, h * 0.2, w * 0.7, h * 0.9]]]), False),
        }
        for key, (kwargs, multimask) in prompts.items():
            p = processor(images=image, return_tensors="pt", **kwargs)
            feed = {k: p[k] for k in ("input_points", "input_labels", "input_boxes") if k in p}
            for k in ("input_points", "input_boxes"):
                if k in feed:
                    feed[k] = feed[k].float()

            def decode():
                return model(image_embeddings=emb, multimask_output=multimask, **feed)

            def click():
                o = decode()
                return processor.post_process_masks(o.pred_masks, p["original_sizes"],
                                                    p["reshaped_input_sizes"])

            out[f"decoder_{key}_s"] = timed(decode, args.clicks)
            out[f"click_{key}_s"] = timed(click, args.clicks)
    return out


def bench_owl(args, image):
    from transformers import AutoProcessor, AutoConfig
    config = AutoConfig.from_pretrained(args.model)
    if config.model_type == "owlv2":
        from transformers import Owlv2ForObjectDetection as Cls
    else:
        from transformers import OwlViTForObjectDetection as Cls
    model = Cls.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    queries = json.loads(args.queries)
    inputs = processor(text=[queries], images=image, return_tensors="pt")
    v2 = config.model_type == "owlv2"
    out = {"text_embeds_cached": True}
    with torch.inference_mode():
        full = model(**inputs)
        query_embeds = full.text_embeds  # (1, queries, dim)
        query_mask = inputs["input_ids"].reshape(1, len(queries), -1)[..., 0] > 0

        def heads(pixel_values):
            feature_map = model.image_embedder(pixel_values=pixel_values)[0]
            b, hh, ww, d = feature_map.shape
            feats = feature_map.reshape(b, hh * ww, d)
            logits, _ = model.class_predictor(feats, query_embeds, query_mask)
            boxes = model.box_predictor(feats, feature_map)
            objectness = model.objectness_predictor(feats) if v2 else None
            return logits, boxes, objectness

        # The cached-query path gives forward's logits.
        logits, boxes, _ = heads(inputs["pixel_values"])
        out["max_abs_logit_diff_vs_forward"] = float((logits - full.logits).abs().max())
        pixel_values = inputs["pixel_values"]
        out["detect_model_s"] = timed(lambda: heads(pixel_values), args.iterations)
        target = torch.tensor([image.size[::-1]])

        def e2e():
            pv = processor(images=image, return_tensors="pt")["pixel_values"]
            logits, boxes, _ = heads(pv)
            o = type(full)(logits=logits, pred_boxes=boxes)
            return processor.image_processor.post_process_object_detection(
                o, threshold=0.1, target_sizes=target)

        out["detect_e2e_s"] = timed(e2e, args.iterations)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=["sam", "owl"], required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--queries", default='["a photo of a cat"]')
    args = ap.parse_args()
    if args.device != "cpu":
        raise SystemExit("bench_vision_reference.py measures the CPU only")
    torch.set_num_threads(args.threads)
    image = ImageOps.exif_transpose(Image.open(args.image)).convert("RGB")
    import transformers
    result = bench_sam(args, image) if args.task == "sam" else bench_owl(args, image)
    result.update({"threads": torch.get_num_threads(), "torch": torch.__version__,
                   "transformers": transformers.__version__, "clicks": args.clicks})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
