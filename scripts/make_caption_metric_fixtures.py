#!/usr/bin/env python3
"""Reference numbers for seer's caption metrics (seer-engine's caption_metrics).

Runs the COCO caption evaluation itself (pycocoevalcap 1.2: `Bleu(4)`, `Cider()`
and its `PTBTokenizer`, which is Stanford CoreNLP 3.4.1 run with Java; the jar
ships inside the pycocoevalcap wheel) on the coco-mini references with
candidates made deterministically from them, and writes
fixtures/caption_metrics/reference.json:

- `references`: every image's five raw references and what PTBTokenizer makes
  of them, tokenised the way COCOEvalCap does (all captions of the set in one
  Java run, one per line);
- `tokenizer`: tricky captions (punctuation, clitics, hyphens, quotes, unicode,
  empty) and their PTBTokenizer tokens, each followed in its Java run by a
  line "X", which is how seer lexes a caption (as if another began after it);
- `cases`: pre-tokenised candidate sets scored by `Bleu(4)` and `Cider()`:
  corpus BLEU-1..4 and CIDEr-D, per-image BLEU-4 and CIDEr-D;
- `raw_case`: raw candidates (case, punctuation) through the whole pipeline:
  PTBTokenizer, then both scorers.

Run with a venv holding pycocoevalcap, Java on PATH:
    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install pycocoevalcap
    /tmp/refvenv/bin/python scripts/make_caption_metric_fixtures.py [--shared ../shared/data]
"""
import argparse
import contextlib
import io
import json
import shutil
from pathlib import Path

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

REPO = Path(__file__).resolve().parent.parent

TRICKY = [
    "",
    "A man riding a wave on top of a surfboard.",
    "A man (in a hat) rides a \"bike\" down the St. Louis road.",
    "The dog's toys aren't here -- they're gone...",
    "A black-and-white photo of 3.5 cats & 1/2 a dog; wow!",
    "I can't believe it's not butter!!",
    "Two people wanna go, gonna go, cannot go.",
    "Rock 'n' roll is here to stay",
    "He said 'hello' to the dogs' owner.",
    "It's 5 o'clock somewhere",
    "A 10-year-old boy in a t-shirt.",
    "Y'all come back now, ma'am.",
    "The '90s were great; the '80s too",
    "A sign with the letter A.",
    "She lives in the U.S. and works for Acme Inc. on Main St. in Washington D.C.",
    "Chairs, tables, etc.",
    "Chairs, tables, etc. and more",
    "A café with crème brûlée.",
    "Ünïcödé ÇAPITALS Σίσυφος ΟΔΥΣΣΕΥΣ",
    "A man\u2014wearing a hat\u2013rides.",
    "A dog\u2026 running. A dog . . . running",
    "Email me at foo@bar.com or visit www.example.com",
    "AT&T and S&P 500, R&D too",
    "Price: $5.00 or US$10 or \u20ac3 or \u00a34 or 50\u00a2",
    "1 1/2 cups, 2-1/2 cups, \u00bd cup",
    "and/or black/white up/down/left/right",
    "Hey!? What?! No!!! Smile :)",
    "[bracketed] {braced} <b>bold</b>",
    "don't DON'T Don\u2019t won\u2019t can\u2019t shouldn\u2019t",
    "\u201cCurly quotes\u201d and \u2018single\u2019 ones",
    "A man's  double  spaced   caption\twith tab",
    "no. 5 and No.5 and fig. 3",
    "Mr. Smith and Dr. Jones met at Mt. Fuji at 3 p.m. The end",
    "x-ray, e-mail, co-op, under_score",
    "emoji \U0001F600 here, zero\u200bwidth, soft\u00adhyphen, no\u00a0break",
    "2\u00d74 lumber \u2122 \u00ae \u00a9 30\u00b0C and 50% humidity",
    "A dog.A cat. image.jpg and 1.jpg",
    "--- dash - dash -- dash ---- dash ----- dash",
    "?",
    "'",
]


def quiet(fn, *args):
    """Bleu prints its totals; keep stdout for nothing."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def score(gts, res):
    """Corpus and per-image scores as COCOEvalCap computes them."""
    bleu, bleu_images = quiet(Bleu(4).compute_score, gts, res)
    cider, cider_images = quiet(Cider().compute_score, gts, res)
    return {
        "bleu": [float(b) for b in bleu],
        "cider": float(cider),
        "per_image_bleu4": [float(b) for b in bleu_images[3]],
        "per_image_cider": [float(c) for c in cider_images],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    args = ap.parse_args()
    if shutil.which("java") is None:
        raise SystemExit("PTBTokenizer needs Java: install a JRE (e.g. openjdk-17-jre-headless)")

    lines = (Path(args.shared) / "coco-mini" / "captions.jsonl").read_text().splitlines()
    images = [json.loads(line) for line in lines if line.strip()]
    raw = {i: img["captions"][:5] for i, img in enumerate(images)}
    n = len(images)

    tokenizer = PTBTokenizer()
    refs = tokenizer.tokenize({i: [{"caption": c} for c in caps] for i, caps in raw.items()})

    # Tricky captions: each followed by an "X" line, as seer lexes one caption.
    tricky_in = {}
    for k, text in enumerate(TRICKY):
        tricky_in[2 * k] = [{"caption": text}]
        tricky_in[2 * k + 1] = [{"caption": "X"}]
    tricky_out = tokenizer.tokenize(tricky_in)
    tricky = [{"text": t, "tokens": tricky_out[2 * k][0]} for k, t in enumerate(TRICKY)]

    # A case scores its candidates against the references of the first len(candidates)
    # images: all five ("all") or the last four ("rest").
    rest = {i: refs[i][1:] for i in range(n)}
    cases = []

    def case(name, candidates, which):
        pool = refs if which == "all" else rest
        gts = {i: pool[i] for i in range(len(candidates))}
        res = {i: [c] for i, c in enumerate(candidates)}
        cases.append({"name": name, "references": which, "candidates": candidates,
                      **score(gts, res)})

    # Each image's first reference against the other four.
    case("first-reference-vs-rest", [refs[i][0] for i in range(n)], "rest")
    # Wrong captions: the first reference of the image 7 further on.
    case("shifted-by-7", [refs[(i + 7) % n][0] for i in range(n)], "all")
    # Empty and one-word candidates (and a long repetitive one).
    short = ["", "a", "dog", "a man", " ".join(["a"] * 30)]
    case("empty-and-short", [short[i % 5] for i in range(n)], "all")
    # Model-like captions: lowercase, no period, built from the image's objects.
    templ = []
    for img in images:
        objects = img.get("objects") or ["thing"]
        templ.append(f"a picture of a {objects[0]} and a {objects[-1]}")
    case("template", templ, "all")
    # Few images: log(1) = 0 makes every idf weight 0 or negative.
    case("one-image", [refs[0][0]], "rest")
    case("two-images", [refs[0][0], refs[1][0]], "rest")

    # The whole pipeline on raw candidates: PTBTokenizer then the scorers.
    raw_candidates = [raw[(i + 3) % n][1] if i % 4 == 0 else raw[i][0] for i in range(n)]
    res_tok = tokenizer.tokenize({i: [{"caption": c}] for i, c in enumerate(raw_candidates)})
    raw_case = {"candidates": raw_candidates, **score(refs, res_tok)}

    out = {
        "source": "pycocoevalcap 1.2 (Bleu(4), Cider(), PTBTokenizer / CoreNLP 3.4.1) on coco-mini",
        "references": [{"raw": raw[i], "tokens": refs[i]} for i in range(n)],
        "tokenizer": tricky,
        "cases": cases,
        "raw_case": raw_case,
    }
    path = REPO / "fixtures" / "caption_metrics" / "reference.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, ensure_ascii=False, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB, {n} images, {len(cases)} cases)")


if __name__ == "__main__":
    main()
