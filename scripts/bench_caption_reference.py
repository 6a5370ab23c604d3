#!/usr/bin/env python3
"""PyTorch reference for `seer bench --model BLIP_DIR` (captioning), and the writer
of the random-weight BLIP-base captioning checkpoint it is measured on.

Benchmark (what `seer bench --model DIR --reference PYTHON` runs for a BLIP
captioning folder): transformers' `BlipForConditionalGeneration.generate` on the
very pixels seer captioned (`--pixels`: the N images seer preprocessed, raw
little-endian f32, N x 3 x S x S), batch by batch, for every batch size and beam
width seer timed, with `torch.set_num_threads(--threads)`. Each configuration
gets one untimed warm-up call per batch size (the first batch, 2 new tokens),
then one timed pass over the N images. The generated ids go back to seer, which
compares them image by image. With `--files-list` (the N image paths, JSON) it
also reports how far seer's pixels are from `BlipImageProcessorPil`'s.

Prints progress to stderr and one JSON object as the last line of stdout:
    {"torch", "transformers", "threads", "caption": {"greedy"|"beamK": {"B":
     {"images_per_second", "tokens_per_second", "generated_tokens", "seconds",
      "batch_seconds", "other_cores", "images", "tokens": [[ids]...]}}},
     "pixels_max_abs_diff_to_processor"}
`other_cores`: cores other processes (and the hypervisor's steal) kept busy on
average during the pass, from /proc/stat less this process's own time.
`tokens` are the sequences `generate` returns for each image, `[DEC]` (and
prompt) first, cut after the first `[SEP]` (the batch's fill dropped).

Checkpoint (`--write-model OUT`): `BlipForConditionalGeneration` with the
published blip-image-captioning-base sizes (ViT-B/16 at 384 px, 12 layers, 768
wide; BERT-base decoder, 12 layers, 768 wide, 30524 ids, `[DEC]` = 30522,
`[SEP]` = 102, `[PAD]` = 0), random weights, plus a `BlipImageProcessor` (PIL)
and a WordPiece tokenizer laid out like bert-base-uncased (which cannot be
downloaded here): `[PAD]`, `[unused0..98]`, `[UNK]` 100, `[CLS]` 101, `[SEP]`
102, `[MASK]` 103, then the 995 pieces of fixtures/blip/caption-tiny's vocabulary,
then filler words `xx00000`... up to 30522 pieces, then `[DEC]` and `[ENC]`.
So the LM head is the real 30524 x 768. The weights are re-drawn as
scripts/make_blip_fixtures.py does (transformers' std-0.02 init gives
near-uniform logits and one caption for every image), with the word table
scaled so logits spread a few units (std about 4). At this depth the random
decoder's hidden state barely depends on the tokens so far, so each image's
caption is mostly one token repeated and none ends on `[SEP]`: every caption
is `[DEC]` plus the 20 new tokens of `generate`'s default, and every image costs
the same (real captions stop after about 10, which favours seer, which drops
finished rows: not measured here).

    ../refvenv/bin/python scripts/bench_caption_reference.py --write-model /work/rand/blip-base
"""
import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "fixtures" / "blip" / "caption-tiny"

# Re-initialisation scales (see make_blip_fixtures.py's reinit_).
LIN = 1.0  # matrices: N(0, LIN / sqrt(fan_in))
WORD = 0.15  # text word table (also the tied LM head): logits of std ~ 4
POSITION = 0.6  # text position table


# --------------------------------------------------------------------- checkpoint

def base_vocab():
    """bert-base-uncased's layout with the fixture's pieces and filler words."""
    pieces = (FIXTURE / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert pieces[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], pieces[:5]
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += pieces[5:]
    vocab += [f"xx{i:05d}" for i in range(30522 - len(vocab))]
    assert len(vocab) == len(set(vocab)) == 30522
    return vocab


def reinit_(model, seed):
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
            elif "embeddings.word_embeddings" in name:
                p.copy_(WORD * torch.randn(p.shape, generator=g))
            elif "embeddings.position_embeddings" in name:
                p.copy_(POSITION * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:  # biases (cls.predictions.bias included)
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(LIN / math.sqrt(p[0].numel()) * torch.randn(p.shape, generator=g))
        dec = model.text_decoder
        assert dec.cls.predictions.decoder.weight is dec.bert.embeddings.word_embeddings.weight


def write_model(out):
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = base_vocab()
    tok = BertTokenizer(vocab={p: i for i, p in enumerate(vocab)}, do_lower_case=True, model_max_length=512)
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    assert (len(tok), tok.bos_token_id, tok.sep_token_id, tok.pad_token_id) == (30524, 30522, 102, 0)
    text = dict(vocab_size=len(tok), hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, max_position_embeddings=512, hidden_act="gelu", layer_norm_eps=1e-12,
                bos_token_id=tok.bos_token_id, sep_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id,
                eos_token_id=2)
    vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  image_size=384, patch_size=16, hidden_act="gelu", layer_norm_eps=1e-5)
    config = BlipConfig(text_config=text, vision_config=vision, image_text_hidden_size=256)
    config.architectures = ["BlipForConditionalGeneration"]
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config).eval()
    reinit_(model, 24)
    model.save_pretrained(out)
    BlipImageProcessorPil().save_pretrained(out)  # 384 x 384, bicubic, CLIP mean/std
    tok.save_pretrained(out)
    (out / "vocab.txt").write_text("".join(p + "\n" for p in vocab), encoding="utf-8")
    print(f"wrote random-weight BLIP-base captioning ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M "
          f"parameters) to {out}", file=sys.stderr)


# ---------------------------------------------------------------------- benchmark

def config_name(beams):
    return "greedy" if beams == 1 else f"beam{beams}"


def cut(row, prompt_len, sep):
    """`generate`'s row for one image: up to and including the first [SEP] after
    the prompt (what follows is the batch's fill), or the whole row."""
    for i in range(prompt_len, len(row)):
        if row[i] == sep:
            return row[: i + 1]
    return row


def cpu_times():
    """(machine busy ticks incl. steal, this process's ticks), or None off Linux."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    at = lambda i: fields[i] if i < len(fields) else 0
    return at(0) + at(1) + at(2) + at(5) + at(6) + at(7), int(own[11]) + int(own[12])


def other_cores(start, seconds):
    """Cores other processes kept busy on average since `start` (seer reports the same)."""
    end = cpu_times()
    if start is None or end is None or seconds <= 0:
        return None
    return max(0.0, ((end[0] - start[0]) - (end[1] - start[1])) / 100.0 / seconds)


def processor_diff(model_dir, files, pixels):
    from PIL import Image, ImageOps
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    processor = BlipImageProcessorPil.from_pretrained(model_dir)
    worst = 0.0
    for i, f in enumerate(files):
        image = ImageOps.exif_transpose(Image.open(f))
        px = processor(images=image, return_tensors="np")["pixel_values"][0]
        worst = max(worst, float(np.abs(px - pixels[i]).max()))
    return worst


def bench(args):
    import transformers
    from transformers import BlipForConditionalGeneration

    torch.set_num_threads(args.threads)
    # generate's advice to pass max_new_tokens: its default (20) is what is measured.
    warnings.filterwarnings("ignore", message=".*max_length.*")
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model = BlipForConditionalGeneration.from_pretrained(args.model).eval().to(device)
    text = model.config.text_config
    size = model.config.vision_config.image_size
    n = args.count
    pixels = np.fromfile(args.pixels, dtype="<f4").reshape(n, 3, size, size)
    px = torch.from_numpy(pixels.copy()).to(device)
    kwargs = {}
    if args.max_new_tokens:
        kwargs["max_new_tokens"] = args.max_new_tokens
    prompt_len = 1  # [DEC]
    out = {"torch": torch.__version__, "transformers": transformers.__version__, "threads": args.threads,
           "device": args.device, "caption": {}}
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    beams_list = [int(k) for k in args.beams.split(",")]
    with torch.inference_mode():
        for b in batch_sizes:
            model.generate(pixel_values=px[:b], max_new_tokens=2)  # warm-up
            sync()
            for k in beams_list:
                tokens, batch_seconds = [], []
                cpu_start = cpu_times()
                start = time.perf_counter()
                for i in range(0, n, b):
                    t = time.perf_counter()
                    ids = model.generate(pixel_values=px[i:i + b], num_beams=k, **kwargs)
                    tokens.extend(ids.tolist())  # waits for the GPU too
                    batch_seconds.append(time.perf_counter() - t)
                sync()
                seconds = time.perf_counter() - start
                others = other_cores(cpu_start, seconds)
                tokens = [cut(row, prompt_len, text.sep_token_id) for row in tokens]
                generated = sum(len(t) - prompt_len for t in tokens)
                ips, tps = n / seconds, generated / seconds
                out["caption"].setdefault(config_name(k), {})[str(b)] = {
                    "images_per_second": ips, "tokens_per_second": tps, "generated_tokens": generated,
                    "seconds": seconds, "batch_seconds": batch_seconds, "other_cores": others, "images": n,
                    "tokens": tokens}
                busy = f", other processes used {others:.1f} cores" if others is not None and others >= 0.1 else ""
                print(f"torch caption {config_name(k):<7} batch {b:>2}: {ips:8.3f} images/s "
                      f"{tps:8.2f} tokens/s ({generated} tokens, {seconds:.1f} s{busy})", file=sys.stderr)
    if args.files_list:
        files = json.loads(Path(args.files_list).read_text())
        out["pixels_max_abs_diff_to_processor"] = processor_diff(args.model, files, pixels)
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write-model", metavar="OUT", help="write the random BLIP-base checkpoint and exit")
    ap.add_argument("--model", help="BLIP captioning folder")
    ap.add_argument("--pixels", help="raw little-endian f32 pixels, N x 3 x S x S")
    ap.add_argument("--count", type=int, help="N")
    ap.add_argument("--files-list", help="JSON list of the N image files (pixel check against the processor)")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--beams", default="1,3")
    ap.add_argument("--max-new-tokens", type=int, default=0, help="0: generate's default (20)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.write_model:
        return write_model(args.write_model)
    if not (args.model and args.pixels and args.count):
        ap.error("--model, --pixels and --count are needed (or --write-model)")
    bench(args)


if __name__ == "__main__":
    main()
