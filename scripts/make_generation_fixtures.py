#!/usr/bin/env python3
"""Parity fixtures for seer's model-agnostic text generation (crates/seer-models/src/generate).

A toy causal LM that transformers' `GenerationMixin.generate` drives (no cache: every
step recomputes from the full `input_ids`), whose next-token logits are a deterministic
function the Rust test reimplements bit for bit in f32:

    logits = (A[last token] + B[last position]) + (C[x_0] + C[x_1] + ... + C[x_last]) * 0.25

with the history sum added left to right. Every step is an element-wise f32 add or a
multiply by a power of two, so torch and Rust round identically (no reductions, whose
order would differ). The tables are random multiples of 2^-16 (stored as integers k,
value k / 65536), so exact ties between tokens are rare but possible, and the tie
behaviour of torch.topk is exercised by its own cases below.

Written to fixtures/generation/reference.json:
  - `tables`: A (V×V), B (P×V), C (V×V) as integers.
  - `cases`: a generation_config dict (what `GenerationConfig(**config)` gets, and what
    seer's `GenerationConfig::from_json` parses), the prompts (one batch, all the same
    length) and `expected`: per prompt, the sequence `generate` returns for it with the
    padding after its end removed. The end is defined by the generated length, not by
    token values: greedy, the first generated EOS (inclusive) or the length limit; beam
    search, the number of generated tokens of the returned hypothesis, read from
    `beam_indices` (entries that are not -1). The script checks that each stripped row
    equals `generate` on that prompt alone.
  - `saved_config`: a generation_config.json written by `save_pretrained`, with prompts
    and the expected sequences of `generate` run from that file.
  - `topk`: torch.topk index orders on tie-heavy rows (both of its CPU paths: the heap
    when k * 64 <= n, nth_element + sort otherwise) and torch.argmax on ties (null stands for -inf).
  - `config_defaults`: the fields of `GenerationConfig()` seer reads, after transformers
    applies `_get_default_generation_params()`.

Deterministic (fixed seeds, one thread). Run with the reference venv:
    ../refvenv/bin/python scripts/make_generation_fixtures.py
"""
import json
import logging
import random
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import GenerationConfig, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()
logging.disable(logging.WARNING)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "generation" / "reference.json"

V = 40  # vocabulary
P = 48  # positions in B: every case stays below this length
SCALE = 65536  # table values are integers / SCALE
PAD, EOS, EOS2 = 0, 1, 2


class ToyConfig(PretrainedConfig):
    model_type = "seer_toy_lm"

    def __init__(self, vocab_size=V, positions=P, **kwargs):
        self.vocab_size = vocab_size
        self.positions = positions
        super().__init__(**kwargs)


class ToyLM(PreTrainedModel, GenerationMixin):
    config_class = ToyConfig

    def __init__(self, config):
        super().__init__(config)
        self.register_buffer("A", torch.zeros(config.vocab_size, config.vocab_size))
        self.register_buffer("B", torch.zeros(config.positions, config.vocab_size))
        self.register_buffer("C", torch.zeros(config.vocab_size, config.vocab_size))
        # generate() wants a parameter to find the device and dtype.
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    # `**kwargs` only: forward takes no attention_mask, so generate infers none and the
    # repetition penalty counts every prompt token.
    def forward(self, input_ids=None, **kwargs):
        n, length = input_ids.shape
        logits = torch.zeros(n, length, self.config.vocab_size)
        for r in range(n):
            ids = input_ids[r].tolist()
            acc = self.C[ids[0]].clone()
            for t in ids[1:]:
                acc = acc + self.C[t]
            logits[r, -1] = (self.A[ids[-1]] + self.B[length - 1]) + acc * 0.25
        return CausalLMOutput(logits=logits)


def make_tables():
    rng = np.random.default_rng(20240611)

    def q(x):
        return np.round(np.asarray(x) * SCALE).astype(np.int64)

    a = rng.uniform(-2.0, 2.0, (V, V))
    # Short cycles the model likes to follow, so that repetition penalties and n-gram bans
    # change the outcome.
    perm = rng.permutation(np.arange(3, V))
    cycles, i = [], 0
    for size in [3, 4, 5, 3, 4, 6, 3, 5, 4]:
        cycles.append(perm[i : i + size])
        i += size
    for cyc in cycles:
        for j, t in enumerate(cyc):
            a[t, cyc[(j + 1) % len(cyc)]] += 2.2
    a[:, PAD] -= 1.5  # pad is a plain token, but a rare one
    b = rng.uniform(-0.6, 0.6, (P, V))
    for pos in range(P):
        # EOS grows likelier with position, so hypotheses end at different lengths.
        b[pos, EOS] += -3.2 + 0.42 * pos
        b[pos, EOS2] += -4.0 + 0.40 * pos
    c = rng.uniform(-1.0, 1.0, (V, V))
    return q(a), q(b), q(c)


def tensor(table):
    return torch.tensor(table, dtype=torch.float32) / SCALE  # exact: |k| < 2^24


def prompts(n, length):
    """The same prompts for every case of a shape, so that cases can be compared. They avoid
    PAD and the EOS ids: those are not what these tests are about."""
    rng = random.Random(1000 * length + n)
    return [[rng.randrange(3, V) for _ in range(length)] for _ in range(n)]


# (name, generation_config, prompt length, batch). Greedy first, then beam search.
CASES = [
    ("greedy_no_eos_default_max_length", {}, 5, 4),
    ("greedy_eos", {"eos_token_id": EOS, "max_new_tokens": 30}, 4, 6),
    ("greedy_eos_pad", {"eos_token_id": EOS, "pad_token_id": PAD, "max_new_tokens": 30}, 4, 6),
    ("greedy_eos_list", {"eos_token_id": [EOS2, EOS], "max_new_tokens": 30}, 4, 6),
    ("greedy_eos_default_max_length", {"eos_token_id": EOS}, 3, 6),
    ("greedy_max_length", {"eos_token_id": EOS, "max_length": 11}, 4, 6),
    ("greedy_max_new_tokens_wins", {"eos_token_id": EOS, "max_length": 6, "max_new_tokens": 14}, 4, 6),
    ("greedy_max_new_tokens_1", {"eos_token_id": EOS, "max_new_tokens": 1}, 4, 3),
    ("greedy_min_length", {"eos_token_id": EOS, "min_length": 20, "max_new_tokens": 30}, 4, 6),
    ("greedy_min_new_tokens", {"eos_token_id": EOS, "min_new_tokens": 16, "max_new_tokens": 30}, 4, 6),
    ("greedy_min_length_and_min_new_tokens",
     {"eos_token_id": [EOS, EOS2], "min_length": 20, "min_new_tokens": 9, "max_new_tokens": 30}, 4, 6),
    ("greedy_min_length_no_eos", {"min_length": 16, "max_new_tokens": 12}, 4, 3),
    ("greedy_repetition_1.3", {"eos_token_id": EOS, "repetition_penalty": 1.3, "max_new_tokens": 30}, 4, 6),
    ("greedy_repetition_0.8", {"eos_token_id": EOS, "repetition_penalty": 0.8, "max_new_tokens": 30}, 4, 6),
    ("greedy_ngram2", {"eos_token_id": EOS, "no_repeat_ngram_size": 2, "max_new_tokens": 30}, 4, 6),
    ("greedy_ngram3", {"eos_token_id": EOS, "no_repeat_ngram_size": 3, "max_new_tokens": 30}, 4, 6),
    ("greedy_ngram1", {"eos_token_id": EOS, "no_repeat_ngram_size": 1, "max_new_tokens": 30}, 3, 4),
    ("greedy_all_processors",
     {"eos_token_id": [EOS, EOS2], "pad_token_id": PAD, "repetition_penalty": 1.3,
      "no_repeat_ngram_size": 2, "min_new_tokens": 6, "max_new_tokens": 30}, 4, 6),
    ("greedy_prompt_length_1", {"eos_token_id": EOS, "max_new_tokens": 30}, 1, 6),
    # Beam search.
    ("beam2", {"num_beams": 2, "eos_token_id": EOS, "max_new_tokens": 30}, 4, 6),
    ("beam3", {"num_beams": 3, "eos_token_id": EOS, "max_new_tokens": 30}, 4, 6),
    ("beam5", {"num_beams": 5, "eos_token_id": EOS, "max_new_tokens": 30}, 4, 6),
    ("beam3_default_max_length", {"num_beams": 3, "eos_token_id": EOS}, 3, 4),
    ("beam3_max_length", {"num_beams": 3, "eos_token_id": EOS, "max_length": 12}, 4, 6),
    ("beam3_max_new_tokens_wins",
     {"num_beams": 3, "eos_token_id": EOS, "max_length": 6, "max_new_tokens": 12}, 4, 6),
    ("beam3_max_new_tokens_1", {"num_beams": 3, "eos_token_id": EOS, "max_new_tokens": 1}, 4, 3),
    ("beam3_no_eos", {"num_beams": 3, "max_new_tokens": 12}, 4, 4),
    ("beam3_pad", {"num_beams": 3, "eos_token_id": EOS, "pad_token_id": PAD, "max_new_tokens": 30}, 4, 6),
    ("beam3_eos_list", {"num_beams": 3, "eos_token_id": [EOS, EOS2], "max_new_tokens": 30}, 4, 6),
    ("beam5_eos_list_pad",
     {"num_beams": 5, "eos_token_id": [EOS2, EOS], "pad_token_id": PAD, "max_new_tokens": 30}, 4, 6),
    ("beam3_min_length", {"num_beams": 3, "eos_token_id": EOS, "min_length": 20, "max_new_tokens": 30}, 4, 6),
    # EOS held back, then both EOS ids lead every beam: the two extra candidates per EOS id
    # are what keeps beams running, and a positive length penalty judged at max_length
    # ("never") lets them finish better.
    ("beam3_eos_list_min_new_tokens_never",
     {"num_beams": 3, "eos_token_id": [EOS, EOS2], "min_new_tokens": 18, "length_penalty": 2.0,
      "early_stopping": "never", "max_new_tokens": 26}, 4, 6),
    ("beam3_min_new_tokens",
     {"num_beams": 3, "eos_token_id": EOS, "min_new_tokens": 16, "max_new_tokens": 30}, 4, 6),
    ("beam3_repetition_1.3",
     {"num_beams": 3, "eos_token_id": EOS, "repetition_penalty": 1.3, "max_new_tokens": 30}, 4, 6),
    ("beam3_repetition_0.8",
     {"num_beams": 3, "eos_token_id": EOS, "repetition_penalty": 0.8, "max_new_tokens": 30}, 4, 6),
    ("beam3_ngram2", {"num_beams": 3, "eos_token_id": EOS, "no_repeat_ngram_size": 2, "max_new_tokens": 30}, 4, 6),
    ("beam3_ngram3", {"num_beams": 3, "eos_token_id": EOS, "no_repeat_ngram_size": 3, "max_new_tokens": 30}, 4, 6),
    ("beam5_all_processors",
     {"num_beams": 5, "eos_token_id": [EOS, EOS2], "pad_token_id": PAD, "repetition_penalty": 1.3,
      "no_repeat_ngram_size": 2, "min_new_tokens": 5, "max_new_tokens": 30}, 4, 6),
    ("beam3_prompt_length_1", {"num_beams": 3, "eos_token_id": EOS, "max_new_tokens": 30}, 1, 6),
]

# Length penalty × early stopping, for 2, 3 and 5 beams.
for beams in (2, 3, 5):
    for lp in (0.0, 1.0, 2.0, -1.0, 0.5):
        for es in (False, True, "never"):
            CASES.append((
                f"beam{beams}_lp{lp:g}_es{es}",
                {"num_beams": beams, "eos_token_id": EOS, "length_penalty": lp, "early_stopping": es,
                 "max_new_tokens": 24},
                4, 6,
            ))


def strip(out, prompt_len, config, beam):
    """Per row, the sequence up to its end (see the module doc)."""
    seqs = out.sequences.tolist()
    rows = []
    if beam:
        gen = ((out.beam_indices != -1).sum(dim=1)).tolist()
        for s, g in zip(seqs, gen):
            rows.append(s[: prompt_len + g])
        return rows
    eos = config.get("eos_token_id")
    eos = set([eos] if isinstance(eos, int) else eos or [])
    for s in seqs:
        end = len(s)
        for i in range(prompt_len, len(s)):
            if s[i] in eos:
                end = i + 1
                break
        rows.append(s[:end])
    return rows


def seer_log_softmax(x, dim=-1, **kwargs):
    """seer's log_softmax: torch's `(x - max) - log(sum(exp(x - max)))` with the sum in
    f64 and its log rounded once to f32 (torch sums its own vectorised exp in f32)."""
    assert dim in (-1, x.dim() - 1)
    d = x - x.max(dim=-1, keepdim=True).values
    return d - torch.log(torch.exp(d.double()).sum(dim=-1, keepdim=True)).float()


def run(model, config, batch, log_softmax=None):
    cfg = GenerationConfig(**config, use_cache=False, return_dict_in_generate=True)
    original = torch.nn.functional.log_softmax
    if log_softmax is not None:
        torch.nn.functional.log_softmax = log_softmax
    try:
        with torch.no_grad():
            out = model.generate(torch.tensor(batch), generation_config=cfg)
    finally:
        torch.nn.functional.log_softmax = original
    return strip(out, len(batch[0]), config, config.get("num_beams", 1) > 1)


def topk_cases(rng):
    cases = []
    # k up to 40 (5 beams × 2 EOS ids keep 15, 10 beams 30): std::sort of the first k - 1
    # switches from insertion sort to introsort past 16.
    for i in range(132):
        n = rng.choice([3, 6, 9, 12, 15, 20, 40, 64, 100, 120, 200, 320]) if i < 120 else 1500
        k = rng.randint(1, min(n, 40)) if i < 120 else rng.randint(2, 23)
        levels = rng.choice([1, 2, 3, 5, 50])
        values = [float(rng.randrange(levels)) - 2.0 for _ in range(n)]
        if rng.random() < 0.3:
            values = [v if rng.random() < 0.8 else float("-inf") for v in values]
        idx = torch.topk(torch.tensor(values), k).indices.tolist()
        # JSON has no infinity: null stands for -inf.
        # All values are integers (written as such) or -inf.
        cases.append({"values": [None if v == float("-inf") else int(v) for v in values], "k": k, "indices": idx})
    argmax = []
    for _ in range(20):
        n = rng.choice([2, 5, 40, 100])
        values = [float(rng.randrange(3)) for _ in range(n)]
        argmax.append({"values": values, "index": int(torch.argmax(torch.tensor(values)))})
    return cases, argmax


def config_defaults():
    g = GenerationConfig()
    defaults = g._get_default_generation_params()
    fields = ["max_length", "max_new_tokens", "min_length", "min_new_tokens", "num_beams", "length_penalty",
              "early_stopping", "repetition_penalty", "no_repeat_ngram_size", "bos_token_id", "eos_token_id",
              "pad_token_id", "do_sample", "num_return_sequences"]
    out = {}
    for f in fields:
        v = getattr(g, f)
        out[f] = defaults.get(f) if v is None else v
    return out


def main():
    rng = random.Random(7)
    a, b, c = make_tables()
    model = ToyLM(ToyConfig())
    model.eval()
    model.A.copy_(tensor(a))
    model.B.copy_(tensor(b))
    model.C.copy_(tensor(c))
    # The model's own generation config must add nothing to the cases' configs.
    assert model.generation_config.to_diff_dict().keys() <= {
        "output_attentions", "output_hidden_states", "_from_model_config", "transformers_version"}

    cases = []
    results = {}
    for name, config, length, n in CASES:
        batch = prompts(n, length)
        expected = run(model, config, batch)
        # The API is per prompt: each stripped row must be what generate gives it alone.
        for p, e in zip(batch, expected):
            assert run(model, config, [p]) == [e], (name, p)
        # torch's log_softmax and seer's can differ in the last bit of a row's shift. The
        # expected tokens must not depend on it, or the case would test rounding luck.
        if config.get("num_beams", 1) > 1:
            assert run(model, config, batch, seer_log_softmax) == expected, (name, "log_softmax")
        results[name] = expected
        cases.append({"name": name, "config": config, "prompts": batch, "expected": expected})

    # The features must change something, or their cases test nothing.
    def differs(x, y):
        return sum(p != q for p, q in zip(results[x], results[y]))

    report = []
    for base, variants in [
        ("greedy_eos", ["greedy_repetition_1.3", "greedy_repetition_0.8", "greedy_ngram2", "greedy_ngram3",
                        "greedy_min_length", "greedy_min_new_tokens", "greedy_eos_list", "greedy_eos_pad"]),
        ("beam3", ["beam3_repetition_1.3", "beam3_repetition_0.8", "beam3_ngram2", "beam3_ngram3",
                   "beam3_min_length", "beam3_min_new_tokens", "beam3_eos_list", "beam3_pad"]),
    ]:
        for v in variants:
            report.append((base, v, differs(base, v)))
    for beams in (2, 3, 5):
        for es in ("False", "True", "never"):
            for lp in ("0", "2", "-1", "0.5"):
                report.append((f"beam{beams}_lp1_es{es}", f"beam{beams}_lp{lp}_es{es}",
                               differs(f"beam{beams}_lp1_es{es}", f"beam{beams}_lp{lp}_es{es}")))
        for lp in ("0", "1", "2", "-1", "0.5"):
            for es in ("True", "never"):
                report.append((f"beam{beams}_lp{lp}_esFalse", f"beam{beams}_lp{lp}_es{es}",
                               differs(f"beam{beams}_lp{lp}_esFalse", f"beam{beams}_lp{lp}_es{es}")))
    for base, v, d in report:
        print(f"{v:32s} vs {base:28s}: {d} rows differ")

    lengths = {name: sorted({len(r) - len(case["prompts"][0]) for r in case["expected"]})
               for name, case in zip(results, cases)}
    for name, ls in lengths.items():
        print(f"{name:40s} generated lengths {ls}")

    # A generation_config.json as transformers writes it (save_pretrained), with fields seer
    # reads, max_length set explicitly, and fields it ignores: use_cache,
    # transformers_version, and sampling knobs and an unknown field added to the file
    # (save_pretrained refuses to write sampling knobs without do_sample).
    saved = GenerationConfig(num_beams=3, max_length=17, min_new_tokens=3, eos_token_id=[EOS, EOS2],
                             pad_token_id=PAD, bos_token_id=5, early_stopping="never", length_penalty=1.5,
                             repetition_penalty=1.2, no_repeat_ngram_size=3, use_cache=False)
    with tempfile.TemporaryDirectory() as d:
        saved.save_pretrained(d)
        path = Path(d) / "generation_config.json"
        fields = json.loads(path.read_text())
        fields.update({"temperature": 0.7, "top_k": 10, "seer_unknown_field": [1, 2]})
        saved_text = json.dumps(fields, indent=2, sort_keys=True) + "\n"
        path.write_text(saved_text)
        loaded = GenerationConfig.from_pretrained(d)
    loaded.return_dict_in_generate = True
    batch = prompts(6, 4)
    with torch.no_grad():
        out = model.generate(torch.tensor(batch), generation_config=loaded)
    saved_case = {"text": saved_text, "prompts": batch,
                  "expected": strip(out, 4, {"eos_token_id": [EOS, EOS2]}, True)}
    original = torch.nn.functional.log_softmax
    torch.nn.functional.log_softmax = seer_log_softmax
    try:
        with torch.no_grad():
            again = model.generate(torch.tensor(batch), generation_config=loaded)
    finally:
        torch.nn.functional.log_softmax = original
    assert strip(again, 4, {"eos_token_id": [EOS, EOS2]}, True) == saved_case["expected"]
    print("saved config generated lengths", sorted({len(r) - 4 for r in saved_case["expected"]}))

    topk, argmax = topk_cases(rng)
    reference = {
        "versions": {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__},
        "model": "logits = (A[last] + B[position of last]) + (sum of C[t] over all tokens, left to right) * 0.25; "
                 "tables are integers / scale",
        "vocab_size": V,
        "scale": SCALE,
        "tables": {"A": a.tolist(), "B": b.tolist(), "C": c.tolist()},
        "cases": cases,
        "saved_config": saved_case,
        "topk": topk,
        "argmax": argmax,
        "config_defaults": config_defaults(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(reference, separators=(",", ":"))
    OUT.write_text(text + "\n")
    print(f"wrote {OUT} ({len(text) // 1024} KB, {len(cases)} cases)")


if __name__ == "__main__":
    main()
