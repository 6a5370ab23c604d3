#!/usr/bin/env python3
"""Training-step throughput of the PyTorch reference, to compare with seer's
`cargo run --release -p seer-train --example step_speed -- CONFIG BATCH [MICRO]`.

Same work per step: random (B,3,S,S) pixels and B captions of 8-14 tokens with 180
distinct captions (as class-template captions), a transformers CLIPModel built from
CONFIG, open_clip's ClipLoss, backward, AdamW (open_clip's groups). Prints samples/s
over the steps after the first.

    ../refvenv/bin/python scripts/bench_train_reference.py demos/cifar10/config.json 256 --threads 2
    python3 scripts/bench_train_reference.py demos/cifar10/config.json 256 --device cuda
"""
import argparse
import json
import time

import open_clip
import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("batch", type=int)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    device = torch.device(a.device)
    torch.set_num_threads(a.threads)
    cfg = CLIPConfig.from_dict(json.load(open(a.config)))
    model = CLIPModel(cfg).train().to(device)
    s = cfg.vision_config.image_size
    ctx = cfg.text_config.max_position_embeddings
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    plain = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": plain, "weight_decay": 0.0}, {"params": decay, "weight_decay": 0.1}],
                            lr=1e-3, betas=(0.9, 0.98), eps=1e-6)
    loss_fn = open_clip.loss.ClipLoss()
    ids = torch.zeros(a.batch, ctx, dtype=torch.long)
    for i in range(a.batch):
        n = 6 + i % 7
        ids[i, 0] = 49406
        ids[i, 1:1 + n] = torch.arange(n) + 300 + (i % 180) * 7
        ids[i, 1 + n] = 49407
    # Trim padding to the longest caption, as seer does (exact for the causal tower).
    longest = int((ids == 49407).int().argmax(dim=1).max()) + 1
    ids = ids[:, :longest].to(device)
    times = []
    for step in range(a.steps):
        pixels = torch.randn(a.batch, 3, s, s, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        img = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        txt = model.text_projection(model.text_model(input_ids=ids).pooler_output)
        loss = loss_fn(F.normalize(img, dim=-1), F.normalize(txt, dim=-1), model.logit_scale.exp())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":  # the step is queued: wait for it
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        print(f"step {step}: loss {loss.item():.4f} {times[-1]:.3f}s -> {a.batch / times[-1]:.1f} samples/s")
    steady = times[1:] or times
    print(json.dumps({"samples_per_sec": a.batch * len(steady) / sum(steady), "threads": a.threads,
                      "device": a.device}))


if __name__ == "__main__":
    main()
