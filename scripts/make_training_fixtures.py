#!/usr/bin/env python3
"""Reference numbers for seer's trainer (crates/seer-train/tests/parity.rs).

Mode 1 (default) writes fixtures/training/:
  model/                  a tiny random transformers CLIPModel (ViT 32px/patch 8, 2+2 layers)
  batch.safetensors       6 pairs: pixel_values (already normalised) and input_ids
  expected_clip.safetensors    open_clip ClipLoss: loss, embeddings, grad.<param>,
                               after1.<param>/after2.<param> after two torch AdamW steps,
                               loss2 and grad2.<param> (the second step's gradients)
  expected_siglip.safetensors  open_clip SigLipLoss (logit_scale ln 10, logit_bias -10 as
                               SigLIP initialises them): loss, grad.<param>, after1.<param>
  meta.json               hyper-parameters and versions
Token-embedding tensors keep only the rows of used token ids (`token_rows`).

AdamW groups: no weight decay for parameters with fewer than 2 dims (gains, biases,
class embedding, logit scale/bias) or whose name ends with token_embedding.weight or
position_embedding.weight; weight decay 0.2 for the rest. lr 1e-3, betas (0.9, 0.98),
eps 1e-6. After each step logit_scale is clamped to [0, ln 100] as open_clip's loop does.

Mode 2: check-export DIR --images IMG... --texts TEXT... [--tokenizer DIR] [--compare FILE]
loads DIR with transformers.CLIPModel.from_pretrained (missing keys are an error),
prints normalised embeddings as JSON, and with --compare exits 1 when any differs from
FILE's by more than 1e-4.

Run with the reference venv:  ../refvenv/bin/python scripts/make_training_fixtures.py
"""
import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "training"
LR, BETAS, EPS, WD = 1e-3, (0.9, 0.98), 1e-6, 0.2
B, SEQ = 6, 16


def no_decay(name, p):
    return (p.ndim < 2 or name.endswith("token_embedding.weight")
            or name.endswith("position_embedding.weight") or name in ("logit_scale", "logit_bias"))


def optimizer(named):
    decay = [p for n, p in named if not no_decay(n, p)]
    plain = [p for n, p in named if no_decay(n, p)]
    return torch.optim.AdamW([{"params": plain, "weight_decay": 0.0},
                              {"params": decay, "weight_decay": WD}], lr=LR, betas=BETAS, eps=EPS)


def embed(model, pixels, ids):
    img = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
    txt = model.text_projection(model.text_model(input_ids=ids).pooler_output)
    return F.normalize(img, dim=-1), F.normalize(txt, dim=-1)


def restrict(name, t, rows):
    return t[rows] if name.endswith("token_embedding.weight") else t


def build_model():
    from transformers import CLIPConfig, CLIPModel
    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=SEQ, hidden_act="quick_gelu",
                         eos_token_id=49407, bos_token_id=49406, pad_token_id=0),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4, hidden_act="quick_gelu"),
        projection_dim=16, logit_scale_init_value=2.6592)
    return CLIPModel(cfg).float().eval()


def make_batch(gen):
    pixels = torch.randn(B, 3, 32, 32, generator=gen)
    ids = torch.zeros(B, SEQ, dtype=torch.long)
    for i in range(B):
        n = 3 + 2 * i  # 3..13 content tokens
        content = torch.randint(300, 5000, (n,), generator=gen)
        ids[i, 0] = 49406
        ids[i, 1:1 + n] = content
        ids[i, 1 + n] = 49407
    return pixels, ids


def fixtures():
    import open_clip
    import transformers
    from safetensors.torch import save_file
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = build_model()
    pixels, ids = make_batch(gen)
    rows = torch.unique(ids)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name or "layrnorm" in name or "layer_norm" in name or name.endswith(".bias"):
                p.add_(0.02 * torch.randn(p.shape, generator=gen))
        table = model.text_model.embeddings.token_embedding.weight
        keep = torch.zeros(table.shape[0], dtype=torch.bool)
        keep[rows] = True
        table[~keep] = 0.0
    OUT.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(OUT / "model", safe_serialization=True)
    (OUT / "model" / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": {"height": 32, "width": 32}, "do_center_crop": True, "do_convert_rgb": True,
        "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_processor_type": "CLIPImageProcessor",
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3,
        "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 32}}, indent=2))
    save_file({"pixel_values": pixels.contiguous(), "input_ids": ids.contiguous()}, OUT / "batch.safetensors")
    initial = {k: v.clone() for k, v in model.state_dict().items()}

    # CLIP loss, two AdamW steps.
    model.train()
    named = list(model.named_parameters())
    opt = optimizer(named)
    loss_fn = open_clip.loss.ClipLoss()
    out = {"token_rows": rows.clone()}
    for step in (1, 2):
        opt.zero_grad()
        img, txt = embed(model, pixels, ids)
        loss = loss_fn(img, txt, model.logit_scale.exp())
        loss.backward()
        if step == 1:
            out["loss"] = loss.detach().reshape(1)
            out["image_embeds"] = img.detach()
            out["text_embeds"] = txt.detach()
            for n, p in named:
                out[f"grad.{n}"] = restrict(n, p.grad.detach().clone(), rows)
        else:
            out["loss2"] = loss.detach().reshape(1)
            for n, p in named:
                out[f"grad2.{n}"] = restrict(n, p.grad.detach().clone(), rows)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        for n, p in named:
            out[f"after{step}.{n}"] = restrict(n, p.detach().clone(), rows)
    save_file({k: v.contiguous() for k, v in out.items()}, OUT / "expected_clip.safetensors")
    clip_losses = (out["loss"].item(), out["loss2"].item())

    # SigLIP loss, one step, from the same initial weights.
    model.load_state_dict(initial)
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(10))
    logit_bias = torch.nn.Parameter(torch.tensor(-10.0))
    named = list(model.named_parameters()) + [("logit_bias", logit_bias)]
    opt = optimizer(named)
    siglip = open_clip.loss.SigLipLoss()
    img, txt = embed(model, pixels, ids)
    loss = siglip(img, txt, model.logit_scale.exp(), logit_bias)
    loss.backward()
    out = {"token_rows": rows.clone(), "loss": loss.detach().reshape(1)}
    for n, p in named:
        out[f"grad.{n}"] = restrict(n, p.grad.detach().clone(), rows)
    opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))
    for n, p in named:
        out[f"after1.{n}"] = restrict(n, p.detach().clone(), rows)
    save_file({k: v.contiguous().reshape(v.shape) for k, v in out.items()}, OUT / "expected_siglip.safetensors")

    (OUT / "meta.json").write_text(json.dumps({
        "lr": LR, "betas": BETAS, "eps": EPS, "weight_decay": WD,
        "no_decay": "ndim < 2, *token_embedding.weight, *position_embedding.weight, logit_scale, logit_bias",
        "batch": B, "seq_len": SEQ, "clip_steps": 2, "siglip_steps": 1,
        "losses": {"clip": clip_losses, "siglip": out["loss"].item()},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "open_clip": open_clip.__version__}}, indent=2))
    for f in sorted(OUT.rglob("*")):
        if f.is_file():
            print(f"{f.relative_to(ROOT)}: {f.stat().st_size} bytes")
    print("losses:", clip_losses, out["loss"].item())


def check_export(args):
    from PIL import Image
    from transformers import CLIPModel, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    model, info = CLIPModel.from_pretrained(args.dir, output_loading_info=True)
    if info.get("missing_keys"):
        print("missing keys:", info["missing_keys"], file=sys.stderr)
        sys.exit(1)
    if info.get("unexpected_keys"):
        print("unexpected keys (ignored):", info["unexpected_keys"], file=sys.stderr)
    model.eval()
    processor = CLIPImageProcessorPil.from_pretrained(args.dir)
    tokenizer = CLIPTokenizer.from_pretrained(args.tokenizer)
    ctx = model.config.text_config.max_position_embeddings
    with torch.no_grad():
        images = [Image.open(p).convert("RGB") for p in args.images]
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        ids = tokenizer(args.texts, padding="max_length", truncation=True, max_length=ctx,
                        return_tensors="pt")["input_ids"]
        img, txt = embed(model, pixels, ids)
    result = {"images": args.images, "image_embeds": img.tolist(), "texts": args.texts, "text_embeds": txt.tolist()}
    print(json.dumps(result))
    if args.compare:
        other = json.loads(Path(args.compare).read_text())
        worst = 0.0
        for key in ("image_embeds", "text_embeds"):
            d = float(np.abs(np.array(other[key]) - np.array(result[key])).max())
            print(f"{key}: max abs difference {d:.3e}", file=sys.stderr)
            worst = max(worst, d)
        sys.exit(1 if worst > 1e-4 else 0)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode")
    chk = sub.add_parser("check-export")
    chk.add_argument("dir")
    chk.add_argument("--images", nargs="+", required=True)
    chk.add_argument("--texts", nargs="+", required=True)
    chk.add_argument("--tokenizer", default=str(ROOT.parent / "shared/data/clip-tokenizer/hf-clip-vit-base-patch32"))
    chk.add_argument("--compare")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.mode == "check-export":
        check_export(args)
    else:
        fixtures()


if __name__ == "__main__":
    main()
