#!/usr/bin/env python3
"""Creates tiny randomly initialised CLIP models and their reference outputs.

The models are built and run by the reference implementations (transformers'
CLIPModel, open_clip's CLIP with a ViT or a ModifiedResNet image tower), and saved
in each library's own layout. seer's parity tests (crates/seer-engine/tests/) load
the same folders and compare against `reference.json`.

Run with the reference venv (torch, transformers, open_clip_torch):
    /path/to/venv/bin/python scripts/make_model_fixtures.py [--shared ../shared/data]

Size: the token embedding table is the bulk of a tiny model; rows of tokens that no
fixture text uses are zeroed (git stores them as almost nothing) and the table is
stored in float16 (which also exercises dtype conversion on load).
"""
import argparse
import json
import os
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel
# transformers 5's default CLIPImageProcessor resizes with torch; the PIL backend is
# the processor of transformers 4 and what seer reproduces bit for bit (the torch
# backend differs by one level on ~0.2% of values: see seer-image's tests).
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "models"

# Real images in many formats, relative to the shared data root.
IMAGES = [
    "smoke/skimage/chelsea.png",
    "smoke/skimage/camera.png",
    "smoke/skimage/astronaut.png",
    "smoke/misc/CLIP.png",
    "smoke/misc/red_apple.jpg",
    "smoke/rclip-formats/bee_animated.gif",
    "smoke/rclip-formats/tree.webp",
    "smoke/rclip-formats/chess-pawns.bmp",
    "smoke/rclip-formats/chess-knight.tiff",
    "smoke/rclip-formats/black cat sleeping on a chair.JPG",
    "smoke/rclip-formats/parrot-and-flowers.pgm",
]

# Different lengths in one batch (padding), unicode, an empty string and one far
# beyond the context length (truncation keeps the end token).
TEXTS = [
    "a diagram",
    "a dog",
    "a cat",
    "",
    "a photo of a black cat sleeping on a chair in the afternoon sun",
    "Ein Hund läuft über die Wiese 🐕",
    "rocket launch at night!!!",
    "日本の寺",
    " ".join(["a very long caption that keeps going"] * 30),
    "the quick brown fox jumps over the lazy dog, twice.",
]

LABELS = ["cat", "dog", "rocket", "apple", "diagram"]
TEMPLATES = ["a photo of a {}.", "a blurry photo of a {}.", "a drawing of the {}."]


def perturb_(model, seed):
    """Random values everywhere, including LayerNorm gains, biases and BatchNorm
    statistics, which default initialisation leaves constant (and would hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) * 0.5 + 0.75)


def used_tokens(token_lists):
    ids = set()
    for t in token_lists:
        ids.update(int(x) for x in t)
    return sorted(ids)


def shrink_token_embedding_(weight, keep):
    """Zero unused rows and round to float16, in place, so the saved f16 table and
    the model that produced the reference outputs hold identical values."""
    with torch.no_grad():
        mask = torch.zeros(weight.shape[0], dtype=torch.bool)
        mask[keep] = True
        weight[~mask] = 0
        weight.copy_(weight.half().float())


def state_dict_for_saving(model, token_key):
    sd = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    sd[token_key] = sd[token_key].half()
    # transformers keeps a position_ids buffer; it is derived, not a weight.
    return {k: v for k, v in sd.items() if not k.endswith("position_ids") and k != "attn_mask"}


def open_images(shared):
    # The reference processors ignore EXIF orientation; seer applies it, so the
    # reference is fed what a photo viewer shows.
    return [ImageOps.exif_transpose(Image.open(shared / p)) for p in IMAGES]


def tokenize(texts):
    """open_clip's tokenizer (OpenAI SimpleTokenizer), zero padded to 77."""
    return open_clip.tokenize(texts)


def to_list(t):
    return [[round(float(x), 8) for x in row] for row in t]


def features(out):
    """transformers 5 returns an output object whose pooler_output is projected."""
    return out if torch.is_tensor(out) else out.pooler_output


def zeroshot_probs(encode_text, img_norm, scale):
    weights = []
    for label in LABELS:
        prompts = [t.format(label) for t in TEMPLATES]
        e = F.normalize(encode_text(tokenize(prompts)), dim=-1).mean(0)
        weights.append(F.normalize(e, dim=-1))
    w = torch.stack(weights)
    return (scale * img_norm @ w.T).softmax(-1)


def all_texts():
    return TEXTS + [t.format(l) for l in LABELS for t in TEMPLATES]


def reference_outputs(encode_image, encode_text, pixels, scale, extra):
    tokens = tokenize(TEXTS)
    img = encode_image(pixels)
    txt = encode_text(tokens)
    img_n, txt_n = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    out = {
        "images": IMAGES,
        "texts": TEXTS,
        "tokens": [[int(x) for x in row if x != 0] for row in tokens],
        "image_features": to_list(img),
        "text_features": to_list(txt),
        "image_embeddings": to_list(img_n),
        "text_embeddings": to_list(txt_n),
        "logit_scale": float(scale),
        "image_text_probs": to_list((scale * img_n @ txt_n.T).softmax(-1)),
        "zeroshot": {
            "labels": LABELS,
            "templates": TEMPLATES,
            "probs": to_list(zeroshot_probs(encode_text, img_n, scale)),
        },
    }
    out.update(extra)
    return out


def make_transformers(shared, name, act, bin_format, seed):
    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                         num_hidden_layers=2, max_position_embeddings=77, hidden_act=act,
                         eos_token_id=49407, pad_token_id=0, bos_token_id=49406),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                           num_hidden_layers=2, image_size=224, patch_size=32, hidden_act=act),
        projection_dim=16,
    )
    model = CLIPModel(cfg).eval()
    perturb_(model, seed)
    emb = model.text_model.embeddings.token_embedding.weight
    shrink_token_embedding_(emb, used_tokens(tokenize(all_texts())))

    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    for f in d.iterdir():
        f.unlink()
    model.config.save_pretrained(d)
    proc = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
                              resample=3, do_center_crop=True)
    proc.save_pretrained(d)
    sd = state_dict_for_saving(model, "text_model.embeddings.token_embedding.weight")
    if bin_format:
        torch.save(sd, d / "pytorch_model.bin")
    else:
        save_file(sd, d / "model.safetensors")

    pixels = proc(images=open_images(shared), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        ref = reference_outputs(
            lambda px: features(model.get_image_features(pixel_values=px)),
            lambda ids: features(model.get_text_features(input_ids=ids)),
            pixels, model.logit_scale.exp().item(),
            {"library": "transformers", "activation": act},
        )
    (d / "reference.json").write_text(json.dumps(ref))


def make_open_clip(shared, name, model_cfg, bin_format, seed):
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**model_cfg).eval()
    perturb_(model, seed)
    shrink_token_embedding_(model.token_embedding.weight, used_tokens(tokenize(all_texts())))

    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    for f in d.iterdir():
        f.unlink()
    preprocess_cfg = {
        "mean": list(open_clip.OPENAI_DATASET_MEAN),
        "std": list(open_clip.OPENAI_DATASET_STD),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }
    (d / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}, indent=2))
    sd = state_dict_for_saving(model, "token_embedding.weight")
    if bin_format:
        torch.save(sd, d / "open_clip_pytorch_model.bin")
    else:
        save_file(sd, d / "open_clip_model.safetensors")

    size = model_cfg["vision_cfg"]["image_size"]
    transform = open_clip.image_transform(size, is_train=False, mean=preprocess_cfg["mean"],
                                          std=preprocess_cfg["std"], interpolation="bicubic",
                                          resize_mode="shortest")
    pixels = torch.stack([transform(im) for im in open_images(shared)])
    with torch.no_grad():
        ref = reference_outputs(model.encode_image, model.encode_text, pixels,
                                model.logit_scale.exp().item(),
                                {"library": "open_clip", "model_cfg": model_cfg})
    (d / "reference.json").write_text(json.dumps(ref))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    shared = Path(os.environ.get("SEER_SHARED_DATA", args.shared))
    torch.set_num_threads(2)

    make_transformers(shared, "hf-vit-quickgelu", "quick_gelu", bin_format=False, seed=1)
    make_transformers(shared, "hf-vit-gelu-bin", "gelu", bin_format=True, seed=2)
    text = dict(context_length=77, vocab_size=49408, width=32, heads=4, layers=2)
    make_open_clip(shared, "openclip-vit", dict(
        embed_dim=16, quick_gelu=False,
        vision_cfg=dict(image_size=64, layers=2, width=32, head_width=8, patch_size=16),
        text_cfg=text), bin_format=False, seed=3)
    # open_clip options seer implements: LayerScale, no ln_pre, mean pooling with the
    # final LayerNorm after pooling, quick_gelu; stored as a PyTorch zip.
    make_open_clip(shared, "openclip-vit-options-bin", dict(
        embed_dim=16, quick_gelu=True,
        vision_cfg=dict(image_size=64, layers=2, width=32, head_width=8, patch_size=16,
                        ls_init_value=0.5, no_ln_pre=True, pool_type="avg",
                        final_ln_after_pool=True),
        text_cfg=dict(text, ls_init_value=0.5)), bin_format=True, seed=4)
    make_open_clip(shared, "openclip-rn", dict(
        embed_dim=16, quick_gelu=True,
        vision_cfg=dict(image_size=64, layers=[1, 2, 1, 1], width=8, head_width=32),
        text_cfg=text), bin_format=False, seed=5)
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total / 1e6:.1f} MB on disk)")


if __name__ == "__main__":
    main()
