#!/usr/bin/env python3
"""What reduced precision costs a search: the neighbours an index built and queried
in bf16 or int8 returns, against the ones f32 returns.

Embeds the same images (and one prompt per class, when --classes is given) with
`seer embed --precision P` for f32 and each reduced precision, then reports, per
precision:
  - image -> image recall@K: of each image's K nearest other images under f32,
    the share the reduced-precision embeddings also rank in their top K;
  - text -> image recall@K: the same for each class prompt's K nearest images;
  - the cosine between each image's f32 and reduced embeddings (min and mean).
Exact search on both sides, so the figures are the precision's cost alone (an
HNSW index adds its own approximation on top of either).

Usage:
  scripts/precision_recall.py --seer target/release/seer --model DIR \
      --images ../shared/data/cifar10-test-subset/images \
      [--classes ../shared/data/clip-prompts/prompts.json#CIFAR10] [--k 10] [--json]
Needs numpy.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def embed(seer, model, precision, images, texts, workdir):
    out = os.path.join(workdir, f"{precision}.npy")
    cmd = [seer, "embed", "-m", model, "--precision", precision, "--image", images, "--out", out]
    for t in texts:
        cmd += ["--text", t]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        sys.exit(f"cannot run {seer}: {e}")
    if done.returncode != 0:
        errors = "".join(l + "\n" for l in done.stderr.splitlines() if "error" in l)
        if not os.path.exists(out):
            sys.exit(f"{' '.join(cmd[:6])} ...: exit {done.returncode}\n{done.stderr}")
        # Files seer could not read are left out, the same ones at every precision.
        print(f"{precision}: some inputs were skipped\n{errors}", end="", file=sys.stderr)
    with open(out[: -len(".npy")] + ".inputs.txt") as f:
        inputs = [line.rstrip("\n") for line in f]
    return np.load(out), inputs


def top_k(queries, database, k, exclude_self=False):
    scores = queries @ database.T
    if exclude_self:
        np.fill_diagonal(scores, -np.inf)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def recall(reference, candidate):
    hits = [len(set(r) & set(c)) for r, c in zip(reference.tolist(), candidate.tolist())]
    return float(np.mean(hits)) / reference.shape[1]


def class_prompts(spec):
    path, _, key = spec.partition("#")
    try:
        with open(path) as f:
            data = json.load(f)
        classes = data[key]["classes"] if key else data
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"--classes {spec}: cannot read class names ({type(e).__name__}: {e})")
    if not isinstance(classes, list) or not classes:
        sys.exit(f"--classes {spec}: expected a non-empty list of class names")
    return [f"a photo of a {c}." for c in classes]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seer", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--classes", help="prompts.json#DATASET or a JSON list of class names")
    p.add_argument("--precisions", default="bf16,int8")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.k < 1:
        p.error("--k must be at least 1")

    texts = class_prompts(a.classes) if a.classes else []
    with tempfile.TemporaryDirectory() as tmp:
        base, inputs = embed(a.seer, a.model, "f32", a.images, texts, tmp)
        n_img = len(inputs) - len(texts)
        if n_img <= a.k:
            sys.exit(f"{a.images}: {n_img} images embedded; image->image recall@{a.k} needs more than {a.k}")
        img_ref, txt_ref = base[:n_img], base[n_img:]
        ref_ii = top_k(img_ref, img_ref, a.k, exclude_self=True)
        ref_ti = top_k(txt_ref, img_ref, a.k) if texts else None
        report = {"model": a.model, "images": n_img, "texts": len(texts), "k": a.k, "precisions": {}}
        for prec in a.precisions.split(","):
            emb, got_inputs = embed(a.seer, a.model, prec, a.images, texts, tmp)
            if got_inputs != inputs:
                sys.exit(f"{prec}: the inputs came back in another order")
            img, txt = emb[:n_img], emb[n_img:]
            cos = np.sum(img * img_ref, axis=1) / (
                np.linalg.norm(img, axis=1) * np.linalg.norm(img_ref, axis=1)
            )
            entry = {
                "image_to_image_recall": recall(ref_ii, top_k(img, img, a.k, exclude_self=True)),
                "image_cosine_min": float(cos.min()),
                "image_cosine_mean": float(cos.mean()),
            }
            if texts:
                entry["text_to_image_recall"] = recall(ref_ti, top_k(txt, img, a.k))
            report["precisions"][prec] = entry
    if a.json:
        print(json.dumps(report))
        return
    print(f"{report['model']}: {n_img} images, {len(texts)} prompts, exact top-{a.k} against f32")
    for prec, e in report["precisions"].items():
        line = f"{prec:5} image->image recall@{a.k} {e['image_to_image_recall']:.4f}"
        if "text_to_image_recall" in e:
            line += f"  text->image recall@{a.k} {e['text_to_image_recall']:.4f}"
        line += f"  cosine to f32 min {e['image_cosine_min']:.5f} mean {e['image_cosine_mean']:.5f}"
        print(line)


if __name__ == "__main__":
    main()
