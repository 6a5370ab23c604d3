#!/usr/bin/env python3
"""Tiny random DINOv2 / DINOv2-with-registers / SigLIP / SigLIP 2 (NaFlex) models and
their reference outputs, for the model families of issue 13.

Every model is built from a config with random weights (no hub downloads) by
transformers itself and written with `save_pretrained` (weights, config) and the
processors' / tokenizers' own `save_pretrained`, so each folder has the layout of a
real hub checkpoint. `reference.json` beside it holds the inputs and the outputs
seer must reproduce. See fixtures/families/README.md for what each folder tests and
for the reference semantics (position-embedding interpolation, pooling, padding).

Run with the reference venv (torch, transformers 5, sentencepiece, protobuf):
    ../refvenv/bin/python scripts/make_family_fixtures.py [--shared ../shared/data]

Tokenizers: real SigLIP / Gemma vocabularies can't be downloaded here, so tiny
SentencePiece models are trained on the shared captions and prompts (deterministic:
one thread, fixed input order).
"""
import argparse
import io
import json
import os
import re
import shutil
import string
import tempfile
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F
import transformers
from PIL import Image, ImageOps
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram
from transformers import (AutoTokenizer, Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig,
                          Dinov2WithRegistersModel, GemmaTokenizer, SiglipConfig, SiglipModel,
                          SiglipTokenizer, Siglip2Config, Siglip2Model)
# transformers 5's default image processors resize with torch; the PIL backends are
# the processors of transformers 4 and what seer's image pipeline reproduces (see
# make_model_fixtures.py). save_pretrained writes the plain class name
# (e.g. "BitImageProcessor") as image_processor_type, as on the hub.
from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil
from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "families"

# Real images in several formats (RGBA png, grayscale png, jpeg with EXIF, animated
# gif, webp, bmp, pgm), relative to the shared data root.
IMAGES = [
    "smoke/skimage/chelsea.png",
    "smoke/skimage/camera.png",
    "smoke/misc/CLIP.png",
    "smoke/misc/red_apple.jpg",
    "smoke/rclip-formats/bee_animated.gif",
    "smoke/rclip-formats/tree.webp",
    "smoke/rclip-formats/chess-pawns.bmp",
    "smoke/rclip-formats/black cat sleeping on a chair.JPG",
    "smoke/rclip-formats/parrot-and-flowers.pgm",
]
IMAGES_SMALL = IMAGES[:3]  # for the larger / slower inputs

# Multilingual, empty, odd whitespace and case, punctuation, an emoji that no tiny
# vocabulary has, and one text far beyond 64 tokens.
TEXTS = [
    "a photo of a cat",
    "A photo of a dog.",
    "chien sur la plage",
    "Ein Hund läuft über die Wiese",
    "海滩上的狗",
    "",
    "  ODD   Spacing\tand\nCASE!!  ",
    "rocket launch at night 🚀",
    " ".join(["a very long caption that keeps going and going"] * 12),
    "it's a man's hat, (really) - 100% #1",
]
MAX_LENGTH = 64  # SigLIP and SigLIP 2 were trained with 64 text tokens

# Extra lines for the tokenizer training text so the multilingual strings are not
# all unknown characters.
EXTRA_TRAINING_TEXT = [
    "chien sur la plage", "un chat noir dort sur une chaise", "une photo d'un chien",
    "Ein Hund läuft über die Wiese", "eine Katze schläft auf dem Stuhl", "ein Foto von einem Hund",
    "海滩上的狗", "一只猫在椅子上睡觉", "一张狗的照片",
]


# ----------------------------------------------------------------------------- helpers

def perturb_(model, seed, scale=0.05):
    """Random values everywhere, including LayerNorm gains and biases, LayerScale and
    the attention-pooling probe, which default initialisation leaves constant."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def r8(x):
    return round(float(x), 8)


def to_list(t):
    t = t.detach().float()
    if t.dim() == 0:
        return r8(t)
    if t.dim() == 1:
        return [r8(x) for x in t]
    return [to_list(row) for row in t]


def open_images(shared, paths):
    # The reference processors ignore EXIF orientation; seer applies it, so the
    # reference is fed what a photo viewer shows (as in make_model_fixtures.py).
    return [ImageOps.exif_transpose(Image.open(shared / p)) for p in paths]


def pixel_summary(px, stride):
    """Shape, per-channel mean and std, and a strided sample px[..., ::stride, ::stride]
    of a (N, C, H, W) tensor (the full tensors are too big for JSON)."""
    return {
        "shape": list(px.shape),
        "channel_mean": to_list(px.mean(dim=(0, 2, 3))),
        "channel_std": to_list(px.std(dim=(0, 2, 3))),
        "per_image_mean": to_list(px.mean(dim=(1, 2, 3))),
        "sample_stride": stride,
        "sample": to_list(px[:, :, ::stride, ::stride].reshape(px.shape[0], -1)),
    }


def fresh_dir(name):
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def write_json(path, obj):
    path.write_text(json.dumps(obj, ensure_ascii=False))


def versions():
    import sentencepiece
    import tokenizers
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "sentencepiece": sentencepiece.__version__,
            "pillow": Image.__version__, "numpy": np.__version__}


def training_text(shared):
    lines = []
    for line in open(shared / "coco-mini" / "captions.jsonl", encoding="utf-8"):
        lines += json.loads(line)["captions"]
    lines += [l.strip() for l in open(shared / "clip-prompts" / "imagenet_classnames.txt", encoding="utf-8")]
    lines += [l.strip() for l in open(shared / "clip-prompts" / "imagenet_templates.txt", encoding="utf-8")]
    return lines + EXTRA_TRAINING_TEXT * 3


def train_spm(lines, **kw):
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf,
                                   character_coverage=1.0, num_threads=1, minloglevel=2,
                                   **kw)
    return buf.getvalue()


# ----------------------------------------------------------------------------- DINOv2

# The processor settings of the facebook/dinov2-* and facebook/dinov2-with-registers-*
# checkpoints: resize the shortest edge to 256 (bicubic), center crop 224, ImageNet
# mean/std.
DINO_PROC = dict(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                 resample=3, do_center_crop=True, do_resize=True, do_rescale=True,
                 rescale_factor=1 / 255, do_normalize=True, do_convert_rgb=True,
                 image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])

# Inputs fed to every DINOv2 fixture, each through a BitImageProcessorPil with the
# settings shown (recorded in reference.json).
DINO_INPUTS = [
    # name, images, processor overrides, what it exercises
    ("crop224", IMAGES, {}, "checkpoint preprocessing; 16x16 grid, position embeddings interpolated 37x37 -> 16x16"),
    ("native518", IMAGES[:1], dict(size={"shortest_edge": 518}, crop_size={"height": 518, "width": 518}),
     "37x37 grid = config.image_size/patch_size: no interpolation"),
    ("nonsquare224x308", IMAGES_SMALL, dict(size={"height": 224, "width": 308}, do_center_crop=False),
     "plain resize to 224x308 (aspect not kept, no crop); 16x22 grid, interpolated 37x37 -> 16x22"),
]


def dino_interp_probe(model, height, width):
    """The position embeddings (CLS row first) the model adds for an input of
    height x width pixels, from the model's own interpolate_pos_encoding."""
    emb = model.embeddings
    n = (height // 14) * (width // 14)
    dummy = torch.zeros(1, n + 1, model.config.hidden_size)
    with torch.no_grad():
        return emb.interpolate_pos_encoding(dummy, height, width)[0]


def make_dino(shared, name, cls, cfg_cls, cfg_kwargs, seed, note):
    torch.manual_seed(seed)
    cfg = cfg_cls(hidden_size=40, num_hidden_layers=3, num_attention_heads=4, mlp_ratio=4,
                  image_size=518, patch_size=14, layerscale_value=0.5, layer_norm_eps=1e-6,
                  hidden_act="gelu", qkv_bias=True, **cfg_kwargs)
    model = cls(cfg).eval()
    perturb_(model, seed)
    with torch.no_grad():  # the default init leaves the register tokens at zero
        if hasattr(model.embeddings, "register_tokens"):
            model.embeddings.register_tokens.normal_(0, 0.5, generator=torch.Generator().manual_seed(seed))
        # position embeddings with a smooth component, so interpolation errors show
        pe = model.embeddings.position_embeddings
        g = torch.Generator().manual_seed(seed + 100)
        grid = torch.randn(1, cfg.hidden_size, 5, 5, generator=g)
        smooth = F.interpolate(grid, size=(37, 37), mode="bilinear", align_corners=True)
        pe[:, 1:] += smooth.flatten(2).transpose(1, 2) * 0.5

    d = fresh_dir(name)
    model.save_pretrained(d)
    BitImageProcessorPil(**DINO_PROC).save_pretrained(d)
    num_reg = getattr(cfg, "num_register_tokens", 0)
    first_patch = 1 + num_reg

    cases = []
    for case, paths, overrides, what in DINO_INPUTS:
        proc = BitImageProcessorPil(**{**DINO_PROC, **overrides})
        px = proc(images=open_images(shared, paths), return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            out = model(pixel_values=px)
        h, w = px.shape[-2:]
        lhs = out.last_hidden_state
        entry = {
            "name": case, "what": what, "images": paths,
            "processor": {k: v for k, v in {**DINO_PROC, **overrides}.items()},
            "pixel_values": pixel_summary(px, 28),
            "grid": [h // 14, w // 14],
            "sequence_length": lhs.shape[1],
            "pooler_output": to_list(out.pooler_output),
            "patch_mean": to_list(lhs[:, first_patch:].mean(1)),
            "last_hidden_state_mean_all_tokens": to_list(lhs.mean(1)),
        }
        if num_reg:
            entry["register_tokens_out"] = to_list(lhs[0, 1:first_patch])
        if case == "crop224":
            entry["last_hidden_state_image0"] = to_list(lhs[0])
        cases.append(entry)

    # The interpolation alone, for both classes' rules on this model's table.
    interp = {}
    for hh, ww in [(112, 154)]:
        interp[f"{hh}x{ww}"] = to_list(dino_interp_probe(model, hh, ww))
    grid = model.embeddings.position_embeddings[:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
    with torch.no_grad():
        a = F.interpolate(grid, size=(8, 11), mode="bicubic", align_corners=False)
        b = F.interpolate(grid, size=(8, 11), mode="bicubic", align_corners=False, antialias=True)
    ref = {
        "library": "transformers", "versions": versions(), "class": cls.__name__,
        "note": note,
        "antialias_vs_plain_bicubic_max_abs_diff_112x154": r8((a - b).abs().max()),
        "num_register_tokens": num_reg,
        "token_layout": "[CLS, registers (num_register_tokens), patches row-major]",
        "pooler_output_rule": "last_hidden_state[:, 0] (CLS after the final layernorm)",
        "patch_mean_rule": f"last_hidden_state[:, {first_patch}:].mean(1)",
        "cases": cases,
        "interpolated_position_embeddings": {
            "what": "embeddings.interpolate_pos_encoding(..., height, width)[0]: CLS row then the grid row-major",
            "sizes": interp,
        },
    }
    write_json(d / "reference.json", ref)


# ----------------------------------------------------------------------------- SigLIP

PUNCT = re.escape(string.punctuation)


def siglip_fast_equivalent(spm_bytes, eos_id):
    """A `tokenizers` pipeline equivalent to the slow SiglipTokenizer (transformers has
    no SigLIP slow->fast converter and the hub checkpoints ship only spiece.model).
    SiglipTokenizer.canonicalize_text: lowercase, delete ASCII punctuation
    (string.punctuation), collapse \\s+ to one space, strip; then SentencePiece
    (its own normaliser, dummy prefix) and append </s>."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    proto = pb.ModelProto()
    proto.ParseFromString(spm_bytes)
    vocab = [(p.piece, p.score) for p in proto.pieces]
    unk_id = next(i for i, p in enumerate(proto.pieces) if p.type == 2)
    tok = Tokenizer(Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Lowercase(),
        normalizers.Replace(Regex(f"[{PUNCT}]"), ""),
        normalizers.Replace(Regex(r"\s+"), " "),
        normalizers.Strip(),
        normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    eos = proto.pieces[eos_id].piece
    tok.post_processor = processors.TemplateProcessing(single=f"$A {eos}", pair=f"$A {eos} $B {eos}",
                                                       special_tokens=[(eos, eos_id)])
    tok.add_special_tokens([eos, proto.pieces[unk_id].piece])
    return tok


def siglip_text_outputs(model, enc, with_mask):
    kwargs = {"input_ids": enc["input_ids"]}
    if with_mask:
        kwargs["attention_mask"] = enc["attention_mask"]
    with torch.no_grad():
        return model.get_text_features(**kwargs).pooler_output


def clip_style_block(img, txt, scale, bias):
    img_n, txt_n = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = img_n @ txt_n.T * scale + bias
    return {
        "text_features": to_list(txt),
        "text_embeddings": to_list(txt_n),
        "logits_per_image": to_list(logits),
        "probs": to_list(torch.sigmoid(logits)),
    }


def tiny_siglip_text(vocab_size, pad_token_id, eos_token_id, bos_token_id):
    """The tiny text tower every SigLIP fixture shares: only the vocabulary and
    the special ids differ."""
    return dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=MAX_LENGTH,
                hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, projection_size=32,
                pad_token_id=pad_token_id, eos_token_id=eos_token_id, bos_token_id=bos_token_id)


def tiny_siglip_vision(**size):
    """The tiny vision tower every SigLIP fixture shares; `size` is image_size
    (fixed resolution) or num_patches (NaFlex)."""
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                patch_size=16, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
                vision_use_head=True, **size)


def make_siglip(shared, name, seed):
    torch.manual_seed(seed)
    d = fresh_dir(name)
    # SigLIP's spiece.model: unigram with the T5 ids <pad>=0, </s>=1, <unk>=2, no <s>.
    spm_bytes = train_spm(training_text(shared), vocab_size=400, model_type="unigram",
                          pad_id=0, pad_piece="<pad>", eos_id=1, eos_piece="</s>",
                          unk_id=2, unk_piece="<unk>", bos_id=-1)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "spiece.model").write_bytes(spm_bytes)
        tok = SiglipTokenizer(str(Path(tmp) / "spiece.model"))  # defaults: pad=eos=</s>, lowercase
        tok.save_pretrained(d)
    tok = AutoTokenizer.from_pretrained(d)
    fast = siglip_fast_equivalent(spm_bytes, tok.eos_token_id)
    fast.save(str(d / "tokenizer.fast-equivalent.json"))

    cfg = SiglipConfig(
        text_config=tiny_siglip_text(tok.vocab_size, pad_token_id=1, eos_token_id=1,
                                     bos_token_id=None),
        vision_config=tiny_siglip_vision(image_size=224),
    )
    model = SiglipModel(cfg).eval()
    perturb_(model, seed)
    with torch.no_grad():
        # real checkpoints: exp(logit_scale) ~ 117, logit_bias ~ -13; these keep the
        # sigmoid off its saturated ends for random embeddings
        model.logit_scale.fill_(float(np.log(10.0)))
        model.logit_bias.fill_(-1.5)
    model.save_pretrained(d)
    proc = SiglipImageProcessorPil()  # class defaults = the google/siglip-* settings
    proc.save_pretrained(d)

    px = proc(images=open_images(shared, IMAGES), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        img = model.get_image_features(pixel_values=px).pooler_output
        # a non-native size through SigLIP's own (optional) interpolation: bicubic, no antialias
        px_big = SiglipImageProcessorPil(size={"height": 256, "width": 192})(
            images=open_images(shared, IMAGES_SMALL), return_tensors="pt")["pixel_values"]
        img_interp = model.get_image_features(pixel_values=px_big, interpolate_pos_encoding=True).pooler_output
        full = model(pixel_values=px, **tok(TEXTS, padding="max_length", max_length=MAX_LENGTH,
                                             truncation=True, return_tensors="pt"))
    scale, bias = model.logit_scale.exp().item(), model.logit_bias.item()

    tokenization = {}
    results = {}
    # padding="longest" on a batch without the text longer than 64 tokens (with it,
    # "longest" pads to 64 as well and nothing differs)
    short = [i for i, t in enumerate(TEXTS) if len(tok(t)["input_ids"]) < MAX_LENGTH]
    for padding in ["max_length", "longest"]:
        texts = TEXTS if padding == "max_length" else [TEXTS[i] for i in short]
        enc = tok(texts, padding=padding, max_length=MAX_LENGTH, truncation=True, return_tensors="pt")
        fenc = fast.encode_batch(TEXTS)
        fast_ids = [e.ids[:MAX_LENGTH - 1] + [tok.eos_token_id] if len(e.ids) > MAX_LENGTH else e.ids for e in fenc]
        slow_unpadded = [tok(t, truncation=True, max_length=MAX_LENGTH)["input_ids"] for t in TEXTS]
        tokenization[padding] = {
            "call": f"tokenizer(texts, padding={padding!r}, max_length={MAX_LENGTH}, truncation=True)",
            "text_indices": list(range(len(TEXTS))) if padding == "max_length" else short,
            "input_ids": enc["input_ids"].tolist(),
            "attention_mask": enc["attention_mask"].tolist(),
        }
        if padding == "max_length":
            tokenization["unpadded_slow"] = slow_unpadded
            tokenization["unpadded_fast_equivalent"] = fast_ids
            tokenization["fast_equivalent_agrees"] = [a == b for a, b in zip(slow_unpadded, fast_ids)]
            tokenization["pieces"] = [tok.convert_ids_to_tokens(i) for i in slow_unpadded]
        for with_mask in [True, False]:
            txt = siglip_text_outputs(model, enc, with_mask)
            key = f"{padding}/{'attention_mask' if with_mask else 'no_mask'}"
            results[key] = clip_style_block(img, txt, scale, bias)
    # SiglipModel.forward(**tokenizer_output) == the max_length/attention_mask block
    assert torch.allclose(full.logits_per_image, torch.tensor(results["max_length/attention_mask"]["logits_per_image"]), atol=1e-5)

    ref = {
        "library": "transformers", "versions": versions(), "class": "SiglipModel",
        "images": IMAGES, "texts": TEXTS,
        "image_processor": proc.to_dict(),
        "pixel_values": pixel_summary(px, 16),
        "image_features": to_list(img),
        "image_embeddings": to_list(F.normalize(img, dim=-1)),
        "image_features_interpolated": {
            "what": "SiglipImageProcessorPil(size={'height': 256, 'width': 192}) then get_image_features(..., interpolate_pos_encoding=True): 16x12 grid from 14x14",
            "images": IMAGES_SMALL,
            "pixel_values": pixel_summary(px_big, 16),
            "image_features": to_list(img_interp),
        },
        "logit_scale_exp": scale, "logit_bias": bias,
        "probability_rule": "sigmoid(exp(logit_scale) * cos(image, text) + logit_bias)",
        "text_pooling_rule": "final_layer_norm(last_hidden_state)[:, -1] then head (Linear): the LAST position, pad or not",
        "tokenizer": {
            "class": type(tok).__name__,
            "vocab_size": tok.vocab_size,
            "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id, "unk_token_id": tok.unk_token_id,
            "do_lower_case": tok.do_lower_case,
            **tokenization,
        },
        "text": results,
        "text_main": "max_length/attention_mask (what SiglipModel(**tokenizer(..., padding='max_length')) computes)",
    }
    write_json(d / "reference.json", ref)


# ----------------------------------------------------------------------------- SigLIP 2

NAFLEX_SETTINGS = [256, 64, 576]  # max_num_patches: native 16x16 table, fewer, more


def make_siglip2(shared, name, seed):
    torch.manual_seed(seed)
    d = fresh_dir(name)
    # Gemma's tokenizer.model: BPE with byte fallback, no dummy prefix, digits split,
    # ids <pad>=0 <eos>=1 <bos>=2 <unk>=3 <mask>=4.
    spm_bytes = train_spm(training_text(shared), vocab_size=600, model_type="bpe",
                          pad_id=0, pad_piece="<pad>", eos_id=1, eos_piece="<eos>",
                          bos_id=2, bos_piece="<bos>", unk_id=3, unk_piece="<unk>",
                          user_defined_symbols=["<mask>"], byte_fallback=True,
                          add_dummy_prefix=False, remove_extra_whitespaces=False,
                          split_digits=True, allow_whitespace_only_pieces=True,
                          normalization_rule_name="identity")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "tokenizer.model").write_bytes(spm_bytes)
        # google/siglip2-* tokenizer_config: GemmaTokenizer, add_bos_token false; the
        # tokenizer.json post-processor appends <eos>; padding on the right.
        gem = GemmaTokenizer.from_pretrained(tmp, add_bos_token=False, add_eos_token=True, padding_side="right")
        gem.save_pretrained(d)
    tc = json.loads((d / "tokenizer_config.json").read_text())
    for k in ["vocab_file", "is_local", "local_files_only"]:  # temp paths, not tokenizer settings
        tc.pop(k, None)
    (d / "tokenizer_config.json").write_text(json.dumps(tc, indent=2, ensure_ascii=False) + "\n")

    cfg = Siglip2Config(
        text_config=tiny_siglip_text(len(gem), pad_token_id=0, eos_token_id=1,
                                     bos_token_id=2),
        vision_config=tiny_siglip_vision(num_patches=256),
    )
    model = Siglip2Model(cfg).eval()
    perturb_(model, seed)
    with torch.no_grad():
        model.logit_scale.fill_(float(np.log(10.0)))
        model.logit_bias.fill_(-1.5)
        pe = model.vision_model.embeddings.position_embedding.weight  # smooth part, as for DINOv2
        g = torch.Generator().manual_seed(seed + 100)
        grid = F.interpolate(torch.randn(1, 32, 4, 4, generator=g), size=(16, 16), mode="bilinear", align_corners=True)
        pe += grid[0].permute(1, 2, 0).reshape(256, 32) * 0.5
    model.save_pretrained(d)
    # = google/siglip2-*-naflex, plus do_convert_rgb (see README: without it grayscale fails)
    proc = Siglip2ImageProcessorPil(max_num_patches=256, patch_size=16, do_convert_rgb=True)
    proc.save_pretrained(d)

    # the tokenizer as transformers 5 loads it for a siglip2 checkpoint
    tok = AutoTokenizer.from_pretrained(d)
    images = open_images(shared, IMAGES)
    image_cases = []
    img_main = None
    for mnp in NAFLEX_SETTINGS:
        enc = proc(images=images, max_num_patches=mnp, return_tensors="pt")
        with torch.no_grad():
            img = model.get_image_features(pixel_values=enc["pixel_values"],
                                           pixel_attention_mask=enc["pixel_attention_mask"],
                                           spatial_shapes=enc["spatial_shapes"]).pooler_output
            # each image alone (no padding beyond its own max_num_patches) must agree
            for i in range(len(images)):
                one = proc(images=[images[i]], max_num_patches=mnp, return_tensors="pt")
                alone = model.get_image_features(**{k: one[k] for k in ["pixel_values", "pixel_attention_mask", "spatial_shapes"]}).pooler_output
                assert torch.allclose(alone[0], img[i], atol=1e-5)
            pos = model.vision_model.embeddings.resize_positional_embeddings(
                model.vision_model.embeddings.position_embedding.weight.reshape(16, 16, -1),
                enc["spatial_shapes"][:1], max_length=int(enc["spatial_shapes"][0].prod()))
        pv = enc["pixel_values"]
        image_cases.append({
            "max_num_patches": mnp,
            "call": f"Siglip2ImageProcessorPil(...)(images, max_num_patches={mnp})",
            "spatial_shapes": enc["spatial_shapes"].tolist(),
            "pixel_attention_mask_sum": enc["pixel_attention_mask"].sum(1).tolist(),
            "pixel_values_shape": list(pv.shape),
            "pixel_values_patch0_images01": to_list(pv[:2, 0]),  # first patch of images 0, 1: (p, p, C) flattened
            "pixel_values_valid_mean": to_list(torch.stack([pv[i, :m].mean() for i, m in enumerate(enc["pixel_attention_mask"].sum(1))])),
            "image_features": to_list(img),
            "image_embeddings": to_list(F.normalize(img, dim=-1)),
        })
        if mnp == 64:
            image_cases[-1]["resized_position_embeddings_image0"] = to_list(pos[0])
        if mnp == 256:
            img_main = img

    scale, bias = model.logit_scale.exp().item(), model.logit_bias.item()
    text = {}
    tokenization = {}
    for side in ["right", "left"]:
        tok.padding_side = side
        enc = tok(TEXTS, padding="max_length", max_length=MAX_LENGTH, truncation=True, return_tensors="pt")
        tokenization[side] = {"input_ids": enc["input_ids"].tolist(), "attention_mask": enc["attention_mask"].tolist()}
        for with_mask in [True, False]:
            txt = siglip_text_outputs(model, enc, with_mask)
            text[f"max_length_{side}/{'attention_mask' if with_mask else 'no_mask'}"] = clip_style_block(img_main, txt, scale, bias)
    tok.padding_side = "right"
    unpadded = [tok(t, truncation=True, max_length=MAX_LENGTH)["input_ids"] for t in TEXTS]
    gem_ids = [gem(t, truncation=True, max_length=MAX_LENGTH)["input_ids"] for t in TEXTS]

    ref = {
        "library": "transformers", "versions": versions(), "class": "Siglip2Model",
        "images": IMAGES, "texts": TEXTS,
        "image_processor": proc.to_dict(),
        "naflex": image_cases,
        "logit_scale_exp": scale, "logit_bias": bias,
        "probability_rule": "sigmoid(exp(logit_scale) * cos(image, text) + logit_bias)",
        "text_pooling_rule": "final_layer_norm(last_hidden_state)[:, -1] then head (Linear): the LAST position, pad or not",
        "image_pooling_rule": "attention-pooling head over the patches; padding patches masked out by pixel_attention_mask",
        "tokenizer": {
            "class_loaded": type(tok).__name__,
            "class_in_tokenizer_config": tc.get("tokenizer_class"),
            "lowercases": tok("ABC")["input_ids"] == tok("abc")["input_ids"],
            "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id,
            "bos_token_id": tok.bos_token_id, "unk_token_id": tok.unk_token_id,
            "call": f"tokenizer(texts, padding='max_length', max_length={MAX_LENGTH}, truncation=True)",
            "padded": tokenization,
            "unpadded": unpadded,
            "pieces": [tok.convert_ids_to_tokens(i) for i in unpadded],
            "unpadded_gemma_tokenizer_no_lowercase": gem_ids,
        },
        "text": text,
        "text_main": "max_length_right/attention_mask (Siglip2Processor defaults: padding='max_length', max_length=64, truncation=True; tokenizer_config padding_side='right')",
    }
    write_json(d / "reference.json", ref)


def make_siglip2_fixres(shared, name, seed):
    """SigLIP 2 FixRes (e.g. google/siglip2-base-patch16-224): a SiglipModel
    (model_type siglip, fixed 224 px, no NaFlex) with SigLIP 2's Gemma tokenizer
    files. transformers loads the tokenizer by its tokenizer_config class,
    GemmaTokenizer: no lowercasing, unlike Siglip2Tokenizer for model_type siglip2."""
    torch.manual_seed(seed)
    d = fresh_dir(name)
    # the same Gemma tokenizer files as siglip2-naflex-tiny (google/siglip2-* ship one set)
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(OUT / "siglip2-naflex-tiny" / f, d / f)
    tok = AutoTokenizer.from_pretrained(d)
    cfg = SiglipConfig(
        text_config=tiny_siglip_text(len(tok), pad_token_id=0, eos_token_id=1,
                                     bos_token_id=2),
        vision_config=tiny_siglip_vision(image_size=224),
    )
    model = SiglipModel(cfg).eval()
    perturb_(model, seed)
    with torch.no_grad():
        model.logit_scale.fill_(float(np.log(10.0)))
        model.logit_bias.fill_(-1.5)
    model.save_pretrained(d)
    tok = AutoTokenizer.from_pretrained(d)  # as a user loads it, config.json (model_type siglip) beside it
    proc = SiglipImageProcessorPil()  # google/siglip2-base-patch16-224: 224x224, bicubic, mean=std=0.5
    proc.save_pretrained(d)
    px = proc(images=open_images(shared, IMAGES_SMALL), return_tensors="pt")["pixel_values"]
    enc = tok(TEXTS, padding="max_length", max_length=MAX_LENGTH, truncation=True, return_tensors="pt")
    with torch.no_grad():
        img = model.get_image_features(pixel_values=px).pooler_output
        full = model(pixel_values=px, **enc)
    txt = siglip_text_outputs(model, enc, True)
    scale, bias = model.logit_scale.exp().item(), model.logit_bias.item()
    block = clip_style_block(img, txt, scale, bias)
    assert torch.allclose(full.logits_per_image, torch.tensor(block["logits_per_image"]), atol=1e-5)
    ref = {
        "library": "transformers", "versions": versions(), "class": "SiglipModel",
        "what": "SigLIP 2 FixRes layout: model_type siglip with SigLIP 2's Gemma tokenizer files",
        "images": IMAGES_SMALL, "texts": TEXTS,
        "image_processor": proc.to_dict(),
        "image_features": to_list(img),
        "image_embeddings": to_list(F.normalize(img, dim=-1)),
        "logit_scale_exp": scale, "logit_bias": bias,
        "tokenizer": {
            "class_loaded": type(tok).__name__,
            "lowercases": tok("ABC")["input_ids"] == tok("abc")["input_ids"],
            "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id,
            "call": f"tokenizer(texts, padding='max_length', max_length={MAX_LENGTH}, truncation=True)",
            "input_ids": enc["input_ids"].tolist(),
            "attention_mask": enc["attention_mask"].tolist(),
            "unpadded": [tok(t, truncation=True, max_length=MAX_LENGTH)["input_ids"] for t in TEXTS],
        },
        "text": {"max_length/attention_mask": block},
        "text_main": "max_length/attention_mask: SiglipModel(**tokenizer(texts, padding='max_length', max_length=64))",
    }
    write_json(d / "reference.json", ref)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    shared = Path(os.environ.get("SEER_SHARED_DATA", args.shared))
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)

    make_dino(shared, "dinov2-tiny", Dinov2Model, Dinov2Config, {}, seed=11,
              note="Dinov2Model, MLP FFN, LayerScale; bicubic interpolation WITHOUT antialias")
    make_dino(shared, "dinov2-swiglu-tiny", Dinov2Model, Dinov2Config, dict(use_swiglu_ffn=True), seed=12,
              note="Dinov2Model with use_swiglu_ffn=True (as facebook/dinov2-giant): mlp.weights_in / weights_out")
    make_dino(shared, "dinov2-registers-tiny", Dinov2WithRegistersModel, Dinov2WithRegistersConfig,
              dict(num_register_tokens=4), seed=13,
              note="Dinov2WithRegistersModel, 4 registers; bicubic interpolation WITH antialias")
    make_siglip(shared, "siglip-tiny", seed=14)
    make_siglip2(shared, "siglip2-naflex-tiny", seed=15)
    make_siglip2_fixres(shared, "siglip2-fixres-tiny", seed=16)
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
