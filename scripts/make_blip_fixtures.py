#!/usr/bin/env python3
"""Tiny random BLIP checkpoints (captioning, image-text retrieval, VQA) and their
reference outputs.

Every model is built from a config with random weights (no hub downloads) by
transformers itself and written with `save_pretrained`, and the processor (a
`BlipImageProcessor` and a BERT WordPiece tokenizer with BLIP's [DEC] / [ENC]) with its
own `save_pretrained`, so each folder has the layout of a real hub checkpoint.
`reference.json` beside it holds the inputs and the outputs seer must reproduce. See
fixtures/blip/README.md for what each folder tests, the generation-config behaviour,
the tied weights and the tensor names.

Run with the reference venv (torch, transformers 5, tokenizers, Pillow, numpy):
    ../refvenv/bin/python scripts/make_blip_fixtures.py [--shared ../shared/data]

Tokenizer: bert-base-uncased can't be downloaded here, so a small WordPiece vocabulary
is trained on the COCO-mini captions plus the prompts, questions and texts used below,
by train_wordpiece() (tokenizers' WordPieceTrainer is not deterministic).
"""
import argparse
import json
import math
import os
import shutil
import warnings
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from PIL import Image, ImageOps
from safetensors import safe_open
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration,
                          BlipForImageTextRetrieval, BlipForQuestionAnswering, BlipImageProcessor,
                          BlipProcessor)
# transformers 5's default BlipImageProcessor resizes with torch; the PIL backend is
# transformers 4's processor and what seer's image pipeline reproduces (see
# make_model_fixtures.py). save_pretrained writes the plain class name
# "BlipImageProcessor" as image_processor_type, as on the hub.
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "blip"

# The first 10 COCO-mini val2017 images (sorted by file name) are added in main();
# then a grayscale png, an RGBA png and an animated (palette) gif, relative to the
# shared data root.
SMOKE_IMAGES = [
    "smoke/skimage/camera.png",
    "smoke/misc/CLIP.png",
    "smoke/rclip-formats/bee_animated.gif",
]
# Own captions for the smoke images (camera.png's is from smoke/skimage/captions.jsonl).
SMOKE_CAPTIONS = {
    "smoke/skimage/camera.png": "a person looking at a camera on a tripod",
    "smoke/misc/CLIP.png": "a diagram of a text encoder and an image encoder",
    "smoke/rclip-formats/bee_animated.gif": "a bee sitting on a white flower",
}

PROMPTS = ["a picture of", "a photography of", "there is"]
QUESTIONS = ["what is in the picture?", "how many people are there?", "is it raining?"]
WORD_ORDER = ["a horse riding an astronaut", "an astronaut riding a horse"]

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDPIECE_VOCAB = 1000  # + [DEC] + [ENC] = 1002 ids
MAX_POSITIONS = 64
# text_config.eos_token_id: every Salesforce BLIP checkpoint has 2 (bert-base-uncased's
# [unused1]), which differs from sep_token_id (102) and is never the stop token:
# generate() passes eos_token_id=sep_token_id. Keep that shape: 2 is [CLS] here.
CONFIG_EOS_ID = 2

# Random-init scales (see reinit_): N(0, LIN/sqrt(fan_in)) for every matrix, N(0, EMB)
# for the text token and position tables, and a raised LM-head bias for [SEP] so that
# some generations stop before the length limit and others run to it.
LIN = 1.0
EMB = 0.6
SEP_BIAS_CAPTION = 7.0
SEP_BIAS_VQA = 4.0

N_LOGIT_IMAGES = 2  # images with full-vocabulary step logits (size)
BATCH = 4  # images in the batched captioning calls

# Captioning cases: (name, prompt or None, generate kwargs). Every case runs on every
# image, one image per call.
CAPTION_CASES = [
    ("greedy", None, {}),
    ("greedy_prompt_a_picture_of", "a picture of", {}),
    ("greedy_prompt_a_photography_of", "a photography of", {}),
    ("greedy_prompt_there_is", "there is", {}),
    ("beam3", None, {"num_beams": 3}),
    ("beam3_prompt_a_picture_of", "a picture of", {"num_beams": 3}),
    ("greedy_max_new_tokens5", None, {"max_new_tokens": 5}),
    ("greedy_prompt_a_picture_of_max_length12", "a picture of", {"max_length": 12}),
    ("greedy_min_length15", None, {"min_length": 15}),
    ("greedy_repetition_penalty1.5", None, {"repetition_penalty": 1.5}),
    ("greedy_no_repeat_ngram2", None, {"no_repeat_ngram_size": 2}),
    ("greedy_prompt_repetition_penalty1.5_no_repeat_ngram2", "a picture of",
     {"repetition_penalty": 1.5, "no_repeat_ngram_size": 2}),
    ("beam3_length_penalty2", None, {"num_beams": 3, "length_penalty": 2.0}),
    ("beam3_length_penalty0", None, {"num_beams": 3, "length_penalty": 0.0}),
    ("beam3_repetition_penalty1.5", None, {"num_beams": 3, "repetition_penalty": 1.5}),
    ("beam3_blip_paper", None, {"num_beams": 3, "max_length": 30, "min_length": 10}),
]


# ----------------------------------------------------------------------------- helpers

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


def fresh_dir(name):
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def write_json(path, obj):
    path.write_text(json.dumps(obj, ensure_ascii=False))


def versions():
    import tokenizers
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "pillow": Image.__version__,
            "numpy": np.__version__}


def coco_rows(shared):
    return [json.loads(line) for line in open(shared / "coco-mini" / "captions.jsonl", encoding="utf-8")]


def pixel_summary(px, stride=None):
    """Shape and per-image, per-channel mean and std of a (N, C, H, W) tensor, and
    (with `stride`) a strided sample px[i, :, ::stride, ::stride] flattened (C, y, x)
    per image."""
    out = {
        "shape": list(px.shape),
        "channel_mean": to_list(px.mean(dim=(2, 3))),
        "channel_std": to_list(px.std(dim=(2, 3))),
    }
    if stride:
        out["sample_stride"] = stride
        out["sample"] = to_list(px[:, :, ::stride, ::stride].reshape(px.shape[0], -1))
    return out


def vision_summary(vision_model, px):
    """BlipVisionModel outputs per image: the full CLS row of last_hidden_state, the
    first 8 values of tokens 1, 72 and 144, the mean over all 145 tokens and
    pooler_output (post_layernorm applied a second time to the CLS row)."""
    with torch.no_grad():
        out = vision_model(pixel_values=px)
    lhs = out.last_hidden_state
    return [{
        "cls": to_list(lhs[i, 0]),
        "rows_first8": {str(t): to_list(lhs[i, t, :8]) for t in (1, 72, 144)},
        "token_mean": to_list(lhs[i].mean(0)),
        "pooler_output": to_list(out.pooler_output[i]),
    } for i in range(px.shape[0])]


def tensor_table(d):
    """Every tensor in model.safetensors: name -> [dtype, shape]."""
    out = {}
    with safe_open(str(d / "model.safetensors"), "pt") as f:
        for k in sorted(f.keys()):
            sl = f.get_slice(k)
            out[k] = [sl.get_dtype(), list(sl.get_shape())]
    return out


# ----------------------------------------------------------------------------- tokenizer

def train_wordpiece(lines, vocab_size):
    """A WordPiece vocabulary the way tokenizers' WordPieceTrainer builds one (BPE merges
    over words split into a first character and "##"-prefixed continuation characters,
    after BertNormalizer(lowercase) and BertPreTokenizer), written out here because
    WordPieceTrainer is not deterministic: its hash-map order breaks ties between equally
    frequent pairs differently from run to run. Ties here go to the lexicographically
    smallest pair. Order: the special tokens, the sorted alphabet, then the merges."""
    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                            strip_accents=None, lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts = {}
    for line in lines:
        for word, _ in pre.pre_tokenize_str(normalizer.normalize_str(line)):
            counts[word] = counts.get(word, 0) + 1
    words = [([w[0]] + ["##" + c for c in w[1:]], n) for w, n in sorted(counts.items())]
    alphabet = sorted({sym for syms, _ in words for sym in syms} | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    vocab = SPECIAL_TOKENS + alphabet
    known = set(vocab)
    while len(vocab) < vocab_size:
        pairs = {}
        for syms, n in words:
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + n
        if not pairs:
            break
        best = min(pairs, key=lambda ab: (-pairs[ab], ab))
        merged = best[0] + best[1][2:]
        if merged not in known:
            vocab.append(merged)
            known.add(merged)
        for syms, _ in words:
            i = 0
            while i < len(syms) - 1:
                if (syms[i], syms[i + 1]) == best:
                    syms[i:i + 2] = [merged]
                i += 1
    return vocab


def build_tokenizer(lines):
    """The WordPiece vocabulary of `lines` wrapped as BertTokenizer (transformers 5's
    BertTokenizerFast: BertNormalizer lowercase, BertPreTokenizer, WordPiece decoder,
    `[CLS] $A [SEP]`), with BLIP's extra tokens added the way BLIP's init_tokenizer does:
    bos_token [DEC], then additional_special_tokens [ENC]."""
    pieces = train_wordpiece(lines, WORDPIECE_VOCAB)
    vocab = {p: i for i, p in enumerate(pieces)}
    assert len(vocab) == WORDPIECE_VOCAB and pieces[:5] == SPECIAL_TOKENS
    bert = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=MAX_POSITIONS)
    bert.add_special_tokens({"bos_token": "[DEC]"})
    bert.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return bert, pieces


def load_processor(d):
    """The saved processor as a user loads it, with the PIL image-processor backend."""
    processor = BlipProcessor.from_pretrained(d)
    processor.image_processor = BlipImageProcessorPil.from_pretrained(d)
    return processor


def save_processor(d, processor, vocab):
    # the hub layout: preprocessor_config.json and the tokenizer files, each written by
    # its own save_pretrained (BlipProcessor.save_pretrained in transformers 5 would
    # write a processor_config.json with the image processor nested in it instead)
    processor.image_processor.save_pretrained(d)
    processor.tokenizer.save_pretrained(d)
    # transformers 5's BertTokenizer (tokenizers backend) writes no vocab.txt; the hub
    # checkpoints have one: the WordPiece vocabulary in id order, one piece a line,
    # without the added [DEC] / [ENC] (those live in tokenizer.json "added_tokens").
    (d / "vocab.txt").write_text("".join(piece + "\n" for piece in vocab), encoding="utf-8")


# ----------------------------------------------------------------------------- models

def blip_config(tok):
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=MAX_POSITIONS, hidden_act="gelu",
                layer_norm_eps=1e-12, bos_token_id=tok.bos_token_id, sep_token_id=tok.sep_token_id,
                pad_token_id=tok.pad_token_id, eos_token_id=CONFIG_EOS_ID)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  image_size=384, patch_size=32, hidden_act="gelu", layer_norm_eps=1e-5)
    return BlipConfig(text_config=text, vision_config=vision, image_text_hidden_size=16)


def reinit_(model, seed, sep_id, sep_bias=0.0):
    """Seeded re-initialisation with larger scales than transformers' std 0.02, so that
    tokens, answers and ITM scores depend on the image and the text. LayerNorm gains
    1+N(0,0.1), every bias and LayerNorm shift N(0,0.1); matrices N(0, LIN/sqrt(fan_in));
    text token / position tables N(0, EMB); vision CLS N(0,1) and position table
    N(0,0.5); and +sep_bias on the LM head's [SEP] bias."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if "LayerNorm" in name or "layer_norm" in name or "layernorm" in name:
                p.copy_((1.0 if leaf == "weight" else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("vision_model.embeddings.class_embedding"):
                p.copy_(torch.randn(p.shape, generator=g))
            elif name.endswith("vision_model.embeddings.position_embedding"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif "embeddings.word_embeddings" in name or "embeddings.position_embeddings" in name:
                p.copy_(EMB * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:  # biases (cls.predictions.bias included)
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                p.copy_(LIN / math.sqrt(fan_in) * torch.randn(p.shape, generator=g))
        if hasattr(model, "text_decoder"):
            model.text_decoder.cls.predictions.bias[sep_id] += sep_bias
            dec = model.text_decoder
            assert dec.cls.predictions.decoder.weight is dec.bert.embeddings.word_embeddings.weight
            assert dec.cls.predictions.decoder.bias is dec.cls.predictions.bias
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all() and p.dtype == torch.float32, name


def save_model(d, model):
    model.save_pretrained(d)
    # reload as a user would: outputs come from the saved checkpoint, and a missing or
    # unexpected tensor (tied weights) fails here
    cls = type(model)
    loaded, info = cls.from_pretrained(d, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    loaded.eval()
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    return loaded


def generation_config_findings(d, model_cls, probe):
    """Empirically: does model.generate honour generation_config.json? Writes a copy
    of the checkpoint with num_beams/max_length/min_length/repetition_penalty in
    generation_config.json, reloads it and compares."""
    tmp = OUT / "_gen_probe"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(d, tmp)
    extra = {"num_beams": 3, "max_length": 7, "min_length": 5, "repetition_penalty": 1.5}
    gc = json.loads((tmp / "generation_config.json").read_text())
    gc.update(extra)
    (tmp / "generation_config.json").write_text(json.dumps(gc, indent=2))
    m = model_cls.from_pretrained(tmp).eval()
    base = model_cls.from_pretrained(d).eval()
    shutil.rmtree(tmp)
    with torch.no_grad():
        plain = probe(base, {})
        with_file = probe(m, {})
        explicit = probe(base, extra)
        passed_cfg = probe(m, {"generation_config": m.generation_config})
    outer = m.generation_config.to_dict()
    inner = m.text_decoder.generation_config.to_dict()
    return {
        "generation_config_json_extra_fields": extra,
        "outer_generation_config_has_them": all(outer.get(k) == v for k, v in extra.items()),
        "text_decoder_generation_config_has_them": all(inner.get(k) == v for k, v in extra.items()),
        "generate_output_equals_plain_checkpoint": with_file == plain,
        "generate_output_equals_explicit_kwargs": with_file == explicit,
        "generate_with_generation_config_argument_equals_explicit_kwargs": passed_cfg == explicit,
        "explicit_kwargs_differ_from_plain": explicit != plain,
    }


# ----------------------------------------------------------------------------- captioning

def decoder_prefix(bos_id, processor_ids):
    """What BlipForConditionalGeneration.generate feeds the decoder: the processor's
    [CLS] ... [SEP] with the first id replaced by bos ([DEC]) and the last dropped."""
    return [bos_id] + processor_ids[1:-1]


def caption_call(model, processor, px_i, prompt, kwargs):
    """model.generate for one image (px_i: (n, 3, 384, 384)), with the prompt as the
    processor tokenizes it. Returns the prompt ids (before generate mutates them) and
    the output ids as lists."""
    gen_kwargs = dict(kwargs)
    if prompt is not None:
        enc = processor(text=[prompt] * px_i.shape[0], return_tensors="pt")
        ids = enc["input_ids"].clone()
        gen_kwargs.update(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    else:
        ids = None
    with torch.no_grad():
        out = model.generate(pixel_values=px_i, **gen_kwargs)
    return ids, out.tolist()


def step_logits(model, px_i, prefix, steps=3):
    """Logits of the first `steps` greedy steps, by full forwards without a cache:
    logits[:, -1] of text_decoder(prefix + chosen ids, encoder_hidden_states=image)."""
    ids = list(prefix)
    rows = []
    with torch.no_grad():
        image_embeds = model.vision_model(pixel_values=px_i).last_hidden_state
        for _ in range(steps):
            logits = model.text_decoder(input_ids=torch.tensor([ids]), encoder_hidden_states=image_embeds).logits[0, -1]
            nxt = int(logits.argmax())
            rows.append({"decoder_input_ids": list(ids), "logits": to_list(logits), "argmax": nxt})
            ids.append(nxt)
    return rows


def make_caption(shared, name, tok, vocab, images, px, backend_diff, seed):
    torch.manual_seed(seed)
    d = fresh_dir(name)
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(), tokenizer=tok)
    save_processor(d, processor, vocab)
    model = BlipForConditionalGeneration(blip_config(tok)).eval()
    reinit_(model, seed, tok.sep_token_id, SEP_BIAS_CAPTION)
    model = save_model(d, model)
    processor = load_processor(d)
    bos = model.config.text_config.bos_token_id
    pad = model.config.text_config.pad_token_id

    decode = checked_decoder(d, processor)

    # pixel values through the saved processor must be what main() computed
    assert torch.equal(processor(images=open_images(shared, images), return_tensors="pt")["pixel_values"], px)

    prompts = [{"text": None, "processor_input_ids": None, "decoder_input_ids": [bos]}]
    for p in PROMPTS:
        ids = processor(text=p)["input_ids"]
        prompts.append({"text": p, "processor_input_ids": ids, "decoder_input_ids": decoder_prefix(bos, ids)})

    # full-vocabulary logits of the first 3 greedy steps, checked against generate's
    # own raw logits (which run with the KV cache)
    logit_cases = []
    for i in range(N_LOGIT_IMAGES):
        for p in [None, "a picture of"]:
            prefix = next(x["decoder_input_ids"] for x in prompts if x["text"] == p)
            rows = step_logits(model, px[i:i + 1], prefix)
            gen_kwargs = {}
            if p is not None:
                enc = processor(text=p, return_tensors="pt")
                gen_kwargs = dict(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            with torch.no_grad():
                g = model.generate(pixel_values=px[i:i + 1], max_new_tokens=3, output_logits=True,
                                   return_dict_in_generate=True, **gen_kwargs)
            for s, row in enumerate(rows[:len(g.logits)]):
                assert torch.allclose(g.logits[s][0], torch.tensor(row["logits"]), atol=1e-4), (i, p, s)
                assert int(g.sequences[0, len(prefix) + s]) == row["argmax"]
            logit_cases.append({"image": i, "prompt": p, "steps": rows})

    cases = []
    for case, prompt, kwargs in CAPTION_CASES:
        results = []
        for i in range(len(images)):
            _, out = caption_call(model, processor, px[i:i + 1], prompt, kwargs)
            results.append({"output_ids": out[0], "caption": decode(out[0])})
        cases.append({"name": case, "prompt": prompt, "generate_kwargs": kwargs, "results": results,
                      "n_distinct_captions": len({r["caption"] for r in results})})
    by_name = {c["name"]: c for c in cases}
    # how many images each setting changes, against greedy (or plain beam 3 for the beam
    # variations) with the same prompt
    for c in cases:
        suffix = "" if c["prompt"] is None else "_prompt_" + c["prompt"].replace(" ", "_")
        kw = c["generate_kwargs"]
        base = ("beam3" if kw.get("num_beams") and kw != {"num_beams": 3} else "greedy") + suffix
        if base != c["name"] and base in by_name:
            c["baseline"] = base
            c["images_differing_from_baseline"] = sum(
                a["output_ids"] != b["output_ids"] for a, b in zip(c["results"], by_name[base]["results"]))

    batched = []
    for case, prompt, kwargs in [("greedy", None, {}), ("beam3", None, {"num_beams": 3}),
                                 ("greedy_prompt_a_picture_of", "a picture of", {})]:
        _, rows = caption_call(model, processor, px[:BATCH], prompt, kwargs)
        singles = [r["output_ids"] for r in by_name[case]["results"][:BATCH]]
        # trailing fill after [SEP]: greedy pads with pad_token_id; beam search fills
        # with `pad_token_id or eos_token_id`, and pad id 0 is falsy, so with [SEP]
        fill = pad if kwargs.get("num_beams", 1) == 1 else (pad or tok.sep_token_id)
        stripped = []
        for row in rows:
            row = list(row)
            while len(row) > 1 and row[-1] == fill and row[-2] in (fill, tok.sep_token_id):
                row.pop()
            stripped.append(row)
        batched.append({
            "case": case, "prompt": prompt, "generate_kwargs": kwargs, "images": list(range(BATCH)),
            "output_ids": rows, "fill_id": fill, "output_ids_stripped": stripped,
            "captions": [decode(r) for r in rows],
            "equal_to_single_image_runs": [a == b for a, b in zip(stripped, singles)],
        })

    def probe(m, extra):
        return m.generate(pixel_values=px[:BATCH], **extra).tolist()
    gen_findings = generation_config_findings(d, BlipForConditionalGeneration, probe)

    ref = {
        "library": "transformers", "versions": versions(), "class": "BlipForConditionalGeneration",
        "images": images,
        "image_processor": processor.image_processor.to_dict(),
        "preprocessing": {
            "what": "BlipImageProcessorPil (checkpoint settings) on ImageOps.exif_transpose(Image.open(path)); sample = px[i, :, ::47, ::47] flattened (C, y, x)",
            **pixel_summary(px, 47),
            "torchvision_backend_max_abs_diff": backend_diff,
        },
        "tokenizer": tokenizer_facts(tok),
        "text_config_ids": config_ids(model),
        "vision": vision_summary(model.vision_model, px),
        "prompts": prompts,
        "step_logits": logit_cases,
        "cases": cases,
        "batched": batched,
        "generation_config_behaviour": gen_findings,
        "generation_config_json": json.loads((d / "generation_config.json").read_text()),
        "tensors": tensor_table(d),
        "rules": {
            "unconditional": "decoder input [bos] ([DEC]); generate builds [[bos, text_config.eos_token_id]] and drops the last id",
            "prompt": "processor(text=prompt).input_ids = [CLS] ... [SEP]; generate sets ids[:, 0] = bos and drops the last id (and the last attention_mask column): decoder input [DEC] + prompt pieces",
            "stop": "eos_token_id = text_config.sep_token_id ([SEP]); pad_token_id = text_config.pad_token_id",
            "output": "generate returns the decoder input (bos and prompt) followed by the new ids; caption = processor.decode(ids, skip_special_tokens=True)",
            "max_length_default": "no max_length / max_new_tokens given: 20 new tokens (max_length = 20 + decoder input length, capped at max_position_embeddings)",
            "max_length_explicit": "max_length counts the whole decoder sequence including [DEC] and the prompt; min_length too",
            "cross_attention": "decoder cross-attends to vision last_hidden_state (all 145 tokens, no mask)",
        },
    }
    write_json(d / "reference.json", ref)
    return ref


def checked_decoder(d, processor):
    """processor.decode(ids, skip_special_tokens=True), checked against the plain
    `tokenizers` pipeline in tokenizer.json (what the Rust tokenizers crate runs)."""
    raw = Tokenizer.from_file(str(d / "tokenizer.json"))

    def decode(ids):
        text = processor.decode(ids, skip_special_tokens=True)
        assert raw.decode(ids, skip_special_tokens=True) == text, ids
        return text
    return decode


def tokenizer_facts(tok):
    return {
        "class_loaded": type(tok).__name__,
        "len": len(tok),
        "do_lower_case": tok.do_lower_case,
        "ids": {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS + ["[DEC]", "[ENC]"]},
        "bos_token": tok.bos_token,
        "model_max_length": tok.model_max_length,
    }


def config_ids(model):
    tc = model.config.text_config
    return {"vocab_size": tc.vocab_size, "bos_token_id": tc.bos_token_id, "sep_token_id": tc.sep_token_id,
            "pad_token_id": tc.pad_token_id, "eos_token_id": tc.eos_token_id}


# ----------------------------------------------------------------------------- retrieval

def make_retrieval(shared, name, tok, vocab, images, own_captions, px, seed):
    torch.manual_seed(seed)
    d = fresh_dir(name)
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(), tokenizer=tok)
    save_processor(d, processor, vocab)
    model = BlipForImageTextRetrieval(blip_config(tok)).eval()
    reinit_(model, seed, tok.sep_token_id)
    model = save_model(d, model)
    processor = load_processor(d)

    texts = []

    def text_index(t):
        if t not in texts:
            texts.append(t)
        return texts.index(t)

    n = len(images)
    pairs = []
    for i in range(n):
        row = []
        for kind, t in [("own_caption", own_captions[i]), ("other_caption", own_captions[(i + 1) % n]),
                        ("horse_riding_astronaut", WORD_ORDER[0]), ("astronaut_riding_horse", WORD_ORDER[1])]:
            enc = processor(text=t, return_tensors="pt")
            with torch.no_grad():
                itm = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                            pixel_values=px[i:i + 1], use_itm_head=True).itm_score
                itc = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                            pixel_values=px[i:i + 1], use_itm_head=False).itm_score
            row.append({"text_index": text_index(t), "kind": kind, "itm_logits": to_list(itm[0]),
                        "itm_probability": r8(itm.softmax(-1)[0, 1]), "similarity": r8(itc[0, 0])})
        pairs.append(row)

    text_ids = [processor(text=t)["input_ids"] for t in texts]
    with torch.no_grad():
        image_embeds = model.vision_model(pixel_values=px).last_hidden_state
        image_feat = F.normalize(model.vision_proj(image_embeds[:, 0]), dim=-1)
        text_feat = []
        for ids in text_ids:
            h = model.text_encoder(input_ids=torch.tensor([ids])).last_hidden_state
            text_feat.append(F.normalize(model.text_proj(h[:, 0]), dim=-1)[0])
        text_feat = torch.stack(text_feat)
    # the per-pair similarity is image_feat . text_feat
    for i, row in enumerate(pairs):
        for p in row:
            assert abs(float(image_feat[i] @ text_feat[p["text_index"]]) - p["similarity"]) < 1e-5

    # the 4 texts of image 0 as one right-padded batch (image repeated): padding and
    # attention_mask must not change anything
    batch_texts = [texts[p["text_index"]] for p in pairs[0]]
    enc = processor(text=batch_texts, padding=True, return_tensors="pt")
    pxb = px[:1].repeat(len(batch_texts), 1, 1, 1)
    with torch.no_grad():
        itm = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=pxb,
                    use_itm_head=True).itm_score.softmax(-1)[:, 1]
        itc = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=pxb,
                    use_itm_head=False).itm_score
    padded = {
        "image": 0, "text_indices": [p["text_index"] for p in pairs[0]],
        "call": "processor(text=texts, padding=True); model(input_ids, attention_mask, pixel_values=image 0 repeated)",
        "input_ids": enc["input_ids"].tolist(), "attention_mask": enc["attention_mask"].tolist(),
        "itm_probability": to_list(itm), "similarity_matrix": to_list(itc),
        "equal_to_unpadded_itm": bool(torch.allclose(itm, torch.tensor([p["itm_probability"] for p in pairs[0]]), atol=1e-5)),
        "equal_to_unpadded_similarity": bool(torch.allclose(itc.diagonal(), torch.tensor([p["similarity"] for p in pairs[0]]), atol=1e-5)),
    }

    ref = {
        "library": "transformers", "versions": versions(), "class": "BlipForImageTextRetrieval",
        "images": images,
        "image_processor": processor.image_processor.to_dict(),
        "pixel_values": pixel_summary(px),
        "tokenizer": tokenizer_facts(tok),
        "text_config_ids": config_ids(model),
        "vision": vision_summary(model.vision_model, px),
        "texts": texts,
        "text_input_ids": text_ids,
        "pairs": pairs,
        "image_itc_features": to_list(image_feat),
        "text_itc_features": to_list(text_feat),
        "padded_batch": padded,
        "tensors": tensor_table(d),
        "rules": {
            "itm": "h = text_encoder(input_ids, attention_mask, encoder_hidden_states=vision last_hidden_state, encoder_attention_mask=ones).last_hidden_state[:, 0]; itm_logits = itm_head(h); itm_probability = softmax(itm_logits)[1]",
            "itc": "image_feat = normalize(vision_proj(vision last_hidden_state[:, 0])); text_feat = normalize(text_proj(text_encoder(input_ids, attention_mask) [no image, cross-attention skipped].last_hidden_state[:, 0])); similarity = image_feat . text_feat (no temperature)",
            "input_ids": "as the processor gives them: [CLS] ... [SEP]. transformers does NOT swap [CLS] for [ENC] as the original BLIP code does for ITM",
            "text_encoder_mask": "bidirectional self-attention with the padding keys masked",
        },
    }
    write_json(d / "reference.json", ref)
    return ref


# ----------------------------------------------------------------------------- VQA

def make_vqa(shared, name, tok, vocab, images, px, seed):
    torch.manual_seed(seed)
    d = fresh_dir(name)
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(), tokenizer=tok)
    save_processor(d, processor, vocab)
    model = BlipForQuestionAnswering(blip_config(tok)).eval()
    reinit_(model, seed, tok.sep_token_id, SEP_BIAS_VQA)
    model = save_model(d, model)
    processor = load_processor(d)
    bos = model.config.text_config.bos_token_id

    decode = checked_decoder(d, processor)

    questions = [{"text": q, "input_ids": processor(text=q)["input_ids"]} for q in QUESTIONS]
    answers = []
    for i in range(len(images)):
        row = []
        for q in QUESTIONS:
            entry = {}
            for mode, kwargs in [("greedy", {}), ("beam3", {"num_beams": 3})]:
                enc = processor(text=q, return_tensors="pt")
                with torch.no_grad():
                    out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                         pixel_values=px[i:i + 1], **kwargs)[0].tolist()
                entry[mode] = {"output_ids": out, "answer": decode(out)}
            row.append(entry)
        answers.append(row)

    # image 0: the question encoder's CLS row and the first answer step's logits
    first_step = []
    with torch.no_grad():
        image_embeds = model.vision_model(pixel_values=px[:1]).last_hidden_state
        for q in questions:
            ids = torch.tensor([q["input_ids"]])
            qe = model.text_encoder(input_ids=ids, attention_mask=torch.ones_like(ids),
                                    encoder_hidden_states=image_embeds).last_hidden_state
            logits = model.text_decoder(input_ids=torch.tensor([[bos]]), encoder_hidden_states=qe).logits[0, -1]
            entry = {"question_embeds_cls": to_list(qe[0, 0]), "question_embeds_mean": to_list(qe[0].mean(0)),
                     "argmax": int(logits.argmax())}
            if not first_step:  # the full row for the first question only (size)
                entry["logits"] = to_list(logits)
            first_step.append(entry)
            assert int(logits.argmax()) == answers[0][len(first_step) - 1]["greedy"]["output_ids"][1]

    # the 3 questions for image 0 as one right-padded batch
    enc = processor(text=QUESTIONS, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                             pixel_values=px[:1].repeat(len(QUESTIONS), 1, 1, 1)).tolist()
    singles = [answers[0][k]["greedy"]["output_ids"] for k in range(len(QUESTIONS))]
    pad = model.config.text_config.pad_token_id
    stripped = []
    for row in out:
        while len(row) > 1 and row[-1] == pad:
            row = row[:-1]
        stripped.append(row)
    batched = {
        "image": 0, "questions": QUESTIONS, "generate_kwargs": {},
        "input_ids": enc["input_ids"].tolist(), "attention_mask": enc["attention_mask"].tolist(),
        "output_ids": out, "output_ids_stripped": stripped, "answers": [decode(r) for r in out],
        "equal_to_single_question_runs": [a == b for a, b in zip(stripped, singles)],
    }

    def probe(m, extra):
        enc = processor(text=[QUESTIONS[0]] * BATCH, return_tensors="pt")
        return m.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                          pixel_values=px[:BATCH], **extra).tolist()
    gen_findings = generation_config_findings(d, BlipForQuestionAnswering, probe)

    ref = {
        "library": "transformers", "versions": versions(), "class": "BlipForQuestionAnswering",
        "images": images,
        "image_processor": processor.image_processor.to_dict(),
        "pixel_values": pixel_summary(px),
        "tokenizer": tokenizer_facts(tok),
        "text_config_ids": config_ids(model),
        "vision": vision_summary(model.vision_model, px),
        "questions": questions,
        "answers": answers,
        "n_distinct_answers": {mode: len({a[k][mode]["answer"] for a in answers for k in range(len(QUESTIONS))})
                               for mode in ["greedy", "beam3"]},
        "first_step_image0": first_step,
        "batched_questions": batched,
        "generation_config_behaviour": gen_findings,
        "generation_config_json": json.loads((d / "generation_config.json").read_text()),
        "tensors": tensor_table(d),
        "rules": {
            "question": "q = text_encoder(input_ids, attention_mask, encoder_hidden_states=vision last_hidden_state, encoder_attention_mask=ones).last_hidden_state (all positions)",
            "answer": "text_decoder.generate(input_ids=[[bos]], encoder_hidden_states=q, encoder_attention_mask=ONES over all question positions (the question's padding is NOT masked here), eos_token_id=sep_token_id, pad_token_id=pad_token_id, **kwargs)",
            "output": "[DEC] then the answer ids (then [SEP] if it stopped); answer = processor.decode(ids, skip_special_tokens=True)",
            "max_length_default": "20 new tokens",
            "input_ids": "as the processor gives them: [CLS] ... [SEP] (no [ENC] swap)",
        },
    }
    write_json(d / "reference.json", ref)
    return ref


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    shared = Path(os.environ.get("SEER_SHARED_DATA", args.shared))
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    # "Using the model-agnostic default `max_length`": that default is what is recorded
    warnings.filterwarnings("ignore", message="Using the model-agnostic default")
    OUT.mkdir(parents=True, exist_ok=True)

    rows = coco_rows(shared)
    val = sorted((r for r in rows if r["split"] == "val2017"), key=lambda r: r["file"])[:10]
    images = ["coco-mini/" + r["file"] for r in val] + SMOKE_IMAGES
    for p in images:
        assert (shared / p).is_file(), p
    own_captions = [r["captions"][0] for r in val] + [SMOKE_CAPTIONS[p] for p in SMOKE_IMAGES]

    lines = [c for r in rows for c in r["captions"]]
    lines += PROMPTS + QUESTIONS + WORD_ORDER + list(SMOKE_CAPTIONS.values())
    tok, vocab = build_tokenizer(lines)

    px = BlipImageProcessorPil()(images=open_images(shared, images), return_tensors="pt")["pixel_values"]
    # for the README: how far transformers 5's default (torchvision) backend is off
    px_tv = BlipImageProcessor()(images=open_images(shared, images), return_tensors="pt")["pixel_values"]
    backend_diff = r8((px_tv - px).abs().max())

    make_caption(shared, "caption-tiny", tok, vocab, images, px, backend_diff, seed=21)
    make_retrieval(shared, "retrieval-tiny", tok, vocab, images, own_captions, px, seed=22)
    make_vqa(shared, "vqa-tiny", tok, vocab, images, px, seed=23)
    # the saved tokenizer.json alone (the Rust tokenizers crate) gives the processor's ids
    raw = Tokenizer.from_file(str(OUT / "caption-tiny" / "tokenizer.json"))
    for t in PROMPTS + QUESTIONS + WORD_ORDER + own_captions:
        assert raw.encode(t).ids == tok(t)["input_ids"], t
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    for sub in sorted(p for p in OUT.iterdir() if p.is_dir()):
        size = sum(f.stat().st_size for f in sub.rglob("*") if f.is_file())
        print(f"{sub.name}: {size / 1e6:.2f} MB")
    print(f"wrote {OUT} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
