#!/usr/bin/env python3
"""Build the reference fixtures for `crates/seer-tokenizer`.

Run with the reference virtualenv (torch, open_clip_torch, ftfy, transformers):

    /work/refvenv/bin/python scripts/make_tokenizer_fixtures.py

It writes, relative to the repository root:

* `fixtures/tokenizer/corpus.jsonl`: one JSON object per line,
  `{"text", "open_clip", "hf"}` plus optional fields:
    - `open_clip`: ids from `open_clip.tokenize(text)` (context 77), trailing
      zero padding removed;
    - `hf`: ids from `transformers.CLIPTokenizerFast` (the Hugging Face
      `tokenizer.json` in shared data) with truncation to 77;
    - `full_len`, `full_hash`: for texts longer than the context, the length of
      the untruncated `SimpleTokenizer.encode(text)` and a polynomial hash of it
      (h = h * 1000003 + id, mod 2**64), so the whole text is checked, not
      just its first 75 tokens;
    - `no_fix_encoding`: only where ftfy's mojibake repair (`fix_encoding`)
      changes the text: `{"open_clip", "full_len", "full_hash"}` as above but
      with that one ftfy step turned off.
* `fixtures/tokenizer/unicode_tables.json`: per-code-point facts about the
  reference (Python's `str.lower`, `unicodedata` NFC, and which alternative of
  open_clip's split regex a lone character falls in), so the Rust crate can be
  checked against every code point Python's Unicode database assigns.
* `crates/seer-tokenizer/src/entities.rs`: the HTML5 named character
  references as Python's `html.entities.html5` has them, plus ftfy's
  upper-case variants.

Everything is deterministic (fixed seeds, sorted iteration).
"""

from __future__ import annotations

import csv
import functools
import html
import html.entities
import json
import os
import random
import sys
import unicodedata
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import ftfy  # noqa: E402
import open_clip  # noqa: E402
import regex  # noqa: E402
from open_clip.tokenizer import _tokenizer as OC  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SEER_SHARED_DATA", REPO.parent / "shared" / "data"))
OUT_DIR = REPO / "fixtures" / "tokenizer"
HF_DIR = SHARED / "clip-tokenizer" / "hf-clip-vit-base-patch32"

SEED = 20240611


# --------------------------------------------------------------------------
# Corpus: real prompts
# --------------------------------------------------------------------------


def prompt_strings(rng: random.Random) -> list[str]:
    data = json.loads((SHARED / "clip-prompts" / "prompts.json").read_text())
    out: list[str] = []
    for name in sorted(data):
        ds = data[name]
        classes = []
        for c in ds["classes"]:
            classes.extend(c if isinstance(c, list) else [c])
        templates = ds["templates"]
        # Every template once, formatted with a class drawn at random.
        for t in templates:
            out.append(t.format(rng.choice(classes)))
        # A sample of class names, bare and inside a template.
        for c in rng.sample(classes, min(len(classes), 25)):
            out.append(c)
            out.append(rng.choice(templates).format(c))
    return out


def coco_captions() -> list[str]:
    out = []
    with open(SHARED / "coco-mini" / "captions.jsonl") as f:
        for line in f:
            out.extend(json.loads(line)["captions"])
    return out


def ram_tags(rng: random.Random) -> list[str]:
    with open(SHARED / "tags" / "ram_tags.csv", newline="") as f:
        tags = [row["tag"] for row in csv.DictReader(f)]
    return rng.sample(tags, 400)


# --------------------------------------------------------------------------
# Corpus: hand-written edge cases
# --------------------------------------------------------------------------

HANDWRITTEN = [
    "Hello World!",
    "",
    " ",
    "   \t\n  ",
    "\n",
    "\u3000",
    "\u00a0\u2003\u2028",
    "a photo of a cat",
    "A PHOTO OF A CAT",
    "it's, we're, they've, I'm, you'll, she'd, don't",
    "IT'S WE'RE THEY'VE I'M YOU'LL SHE'D DON'T",
    "it\u2019s a dog\u2019s life \u201cquoted\u201d \u2018single\u2019 \u201ehigh\u201f \u02bcx",
    "'s't're've'm'll'd",
    "'ſ 'ſt it'ſ ſtart <ſtart_of_text>",
    "o'clock rock'n'roll ''quoted''",
    "<start_of_text>",
    "<end_of_text>",
    "a <start_of_text> b <end_of_text> c",
    "<START_OF_TEXT> and <End_Of_Text>",
    "<|startoftext|>hello<|endoftext|>",
    "<start_of_text><start_of_text><end_of_text>",
    "&amp; &lt; &gt; &quot; &#39; &#x27; &apos;",
    "Tom &amp; Jerry",
    "caf&eacute; na&iuml;ve r&eacute;sum&eacute;",
    "P&EACUTE;REZ BUNDESSTRA&SZLIG;E &NTILDE; &nTILDE;",
    "&amp;amp; &amp;amp;amp; &amp;lt;b&amp;gt;",
    "&amp;amp;amp;amp;amp;amp;amp;amp;amp;amp;",
    "fish &amp chips &copy 2024 &notit; &notin; &ampfoo",
    "&nbsp;non&nbsp;breaking&nbsp;",
    "&hellip; &mdash; &ndash; &laquo;x&raquo; &euro;5 &pound;3",
    "&#0; &#1; &#11; &#128; &#133; &#150; &#x80; &#x9F; &#159;",
    "&#55296; &#xD800; &#x110000; &#99999999999999999999; &#xFFFFFFFFFFFF;",
    "&#65;&#x42;&#X43; &#65abc; &#x4z; &#; &#x; &;",
    "&#x1F600; &#128512; &#x2764;&#xFE0F;",
    "&Jscr;ohn &HilbertSpace;ancock &checkmark; &fjlig; &NotNestedGreaterGreater;",
    "&ThisIsNotAnEntityAtAllButLong; &aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;",
    "a < b &amp; c",
    "<b>bold</b> &amp; &lt;i&gt;",
    "first &amp; line\n<second> line &amp;\nthird &amp; line",
    "first &amp; line\nsecond &lt; line\n<third> &amp;",
    "&amp\u037e and &lt\u037e",
    "\uff21\uff22\uff23\uff11\uff12\uff13\uff01\uff1f\uff06\uff41\uff4d\uff50\uff1b",
    "\uff2c\uff2f\uff35\uff24\u3000\uff2e\uff2f\uff29\uff33\uff25\uff33",
    "\uff76\uff80\uff76\uff85 \uff9d\uff7a\uff9e\uff70\uff9e \uffa1\uffa4 \uffe0\uffe1\uffe5\uffe6\uffe8",
    "\ufb01sh \ufb02our o\ufb03ce wa\ufb04e \ufb05 \ufb06 \ufb00 \u0132sselmeer \u01c6 \u01c4 \u01c9 \u01cc \u0149",
    "e\u0301 a\u0300 o\u0308 n\u0303 \u212b \u2126 \u1e9b\u0323",
    "\u0301",
    "\u0301\u0302\u0303",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333",
    "\u0345 \u03b1\u0345 \u1fbc a\u0345b",
    "\u039f\u0394\u039f\u03a3 \u03a3\u0391\u03a3. \u03a3 \u0391\u03a3\u0391 \u03c3\u03a3\u03c3",
    "\u0130stanbul \u0130 I\u0307 \u0131",
    "STRASSE Stra\u00dfe \u1e9e",
    "\x00\x01\x02\x03\x07\x08\x0b\x0c\x0e\x1b\x1c\x1f\x7f",
    "tab\tseparated\tvalues",
    "windows\r\nline\r\nbreaks\rmac",
    "\u2028line\u2029para\x85nel",
    "\x80\x81\x85\x8d\x91\x92\x93\x94\x96\x97\x99\x9f",
    "\x1b[31mred\x1b[0m \x1b[1;32;40mgreen\x1b[m \x1b[\u0663m",
    "\u200b\u200c\u200d\u200e\u200f\u202a\u202e\u2060\ufeff\u206a\u206f\ufff9\ufffa\ufffb\ufffc\ufffd",
    "\U0001d173\U0001d17a \U000e0067\U000e0062",
    "\U0001f600\U0001f601\U0001f923",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 family",
    "\U0001f44d\U0001f3fd \U0001f44b\U0001f3ff \U0001f9d1\U0001f3fb\u200d\U0001f4bb",
    "\U0001f1fa\U0001f1f8 \U0001f1ef\U0001f1f5 \U0001f1e9\U0001f1ea\U0001f1eb\U0001f1f7",
    "\U0001f3f4\U000e0067\U000e0062\U000e0077\U000e006c\U000e0073\U000e007f Wales",
    "1\ufe0f\u20e3 #\ufe0f\u20e3 \u2764\ufe0f \u2764\ufe0e \u263a",
    "\U0001f3f3\ufe0f\u200d\U0001f308 \U0001f3f4\u200d\u2620\ufe0f",
    "12345 3.14159 1,000,000 -42 +7 1e10 0x1F",
    "\u0661\u0662\u0663 \u0967\u0968\u0969 \uff13\uff14 \u00b2\u00b3\u00b9 \u00bd\u00bc \u2160\u216b\u2170 \u2460\u2461 \U0001d7d8",
    "!!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((())) [[]] {{}} <<>> ~~~ ``` ||| \\\\ //",
    "\u2026 \u2014 \u2013 \u00ab\u00bb \u00bf\u00a1 \u2022 \u00b7 \u00a7 \u00b6 \u2020\u2021 \u2030 \u2122 \u00ae \u00a9",
    "Caf\u00e9 na\u00efve fa\u00e7ade co\u00f6perate \u00e5ngstr\u00f6m \u0142\u00f3d\u017a \u0111\u1ea1i h\u1ecdc",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0424\u043e\u0442\u043e \u043a\u043e\u0448\u043a\u0438.",
    "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5 \u03c6\u03c9\u03c4\u03bf\u03b3\u03c1\u03b1\u03c6\u03af\u03b1",
    "\u4e00\u53ea\u732b\u7684\u7167\u7247 \u732b\u306e\u5199\u771f \u3053\u308c\u306f\u30da\u30f3\u3067\u3059",
    "\uace0\uc591\uc774 \uc0ac\uc9c4 \ud55c\uad6d\uc5b4 \u1100\u1161\u11a8",
    "\u0635\u0648\u0631\u0629 \u0642\u0637\u0629 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0628\u0650\u0633\u0652\u0645\u0650",
    "\u092c\u093f\u0932\u094d\u0932\u0940 \u0915\u0940 \u0924\u0938\u094d\u0935\u0940\u0930 \u0928\u092e\u0938\u094d\u0924\u0947",
    "\u0e20\u0e32\u0e1e\u0e41\u0e21\u0e27 \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
    "https://example.com/path?q=a+b&x=1#frag user@example.com @handle #hashtag",
    "C++ C# F# .NET node.js snake_case camelCase kebab-case",
    "a" * 300,
    "ab" * 200,
    "x" + "\u0301" * 200,
    " ".join(["word"] * 100),
    "\U0001f600" * 120,
    # Mojibake: ftfy's fix_encoding repairs these.
    "\u00e2\u0153\u201d No problems",
    "s\u00c3\u00b3",
    "voil\u00c3\u00a0 le travail",
    "\u00c3\u00a9t\u00c3\u00a9 \u00c3\u00a0 la plage",
    "\u00e2\u20ac\u0153quoted\u00e2\u20ac\x9d",
    "&macr;\\_(\u00e3\x83\x84)_/&macr;",
    "Broken text&hellip; it&#x2019;s \ufb02ubberi\ufb01c!",
]


# --------------------------------------------------------------------------
# Corpus: seeded random strings
# --------------------------------------------------------------------------


def assigned(lo: int, hi: int) -> list[str]:
    return [
        chr(c)
        for c in range(lo, hi + 1)
        if unicodedata.category(chr(c)) not in ("Cn", "Cs", "Co")
    ]


SCRIPTS = {
    "latin": assigned(0x00C0, 0x024F) + assigned(0x1E00, 0x1EFF),
    "cyrillic": assigned(0x0400, 0x04FF),
    "greek": assigned(0x0370, 0x03FF) + assigned(0x1F00, 0x1FFF),
    "cjk": assigned(0x4E00, 0x9FFF) + assigned(0x3040, 0x30FF),
    "hangul": assigned(0xAC00, 0xD7A3) + assigned(0x1100, 0x11FF),
    "arabic": assigned(0x0600, 0x06FF),
    "devanagari": assigned(0x0900, 0x097F),
    "thai": assigned(0x0E00, 0x0E7F),
    "hebrew": assigned(0x0590, 0x05FF),
    "ascii_letters": [chr(c) for c in range(0x41, 0x5B)] + [chr(c) for c in range(0x61, 0x7B)],
}

EMOJI = [
    "\U0001f600", "\U0001f431", "\U0001f436", "\U0001f355", "\U0001f680", "\u2764\ufe0f",
    "\U0001f44d\U0001f3fb", "\U0001f44d\U0001f3ff", "\U0001f469\u200d\U0001f52c",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f1e8\U0001f1e6", "\U0001f1ec\U0001f1e7",
    "\U0001f3f3\ufe0f\u200d\U0001f308", "\u270c\ufe0f", "\U0001f9d1\u200d\U0001f91d\u200d\U0001f9d1",
    "\u2b50", "\U0001f525", "\U0001f4af", "#\ufe0f\u20e3", "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + list(
    "\u2026\u2014\u2013\u00ab\u00bb\u00bf\u00a1\u2022\u00b7\u00a7\u00b6\u2020\u2030\u2122\u00ae\u00a9\u3001\u3002\u300c\u300d\uff01"
)
DIGITS = list("0123456789") + list("\u0660\u0661\u0669\u0966\u096f\uff10\uff19\u00b2\u00bd\u2160\u2167\u2460")
QUOTES = list("\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f\u02bc\"'`\u00b4")
LIGATURES = list("\ufb00\ufb01\ufb02\ufb03\ufb04\ufb05\ufb06\u0132\u0133\u01c4\u01c5\u01c6\u01c7\u01c9\u01ca\u01cc\u01f1\u01f3\u0149")
FULLWIDTH = [chr(c) for c in range(0xFF01, 0xFF5F)] + [chr(c) for c in range(0xFF61, 0xFFA0)] + ["\u3000"]
ENTITIES = [
    "&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&#x27;", "&eacute;", "&Eacute;", "&EACUTE;", "&amp;amp;",
    "&nbsp;", "&copy;", "&copy", "&hellip;", "&rsquo;", "&ldquo;", "&#8217;", "&#x2014;", "&#128;",
    "&notin;", "&not", "&amp", "&AMP;", "&zwj;", "&#0;", "&#x1F431;", "&frac12;", "&sup2;", "&alpha;",
    "&Sigma;", "&bogus;", "&#xD83D;", "&lt;br&gt;", "&amp;#39;",
]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'LL", "n't", "'", "\u2019s", "\u2019ll"]
WHITESPACE = [" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u2003", "\u3000", "\u2028", "\u2029", "\x0b", "\x0c", "\u200b", "\x1c"]
CONTROLS = [chr(c) for c in range(0x00, 0x20)] + ["\x7f"] + [chr(c) for c in range(0x80, 0xA0)] + [
    "\u200e", "\u200f", "\u202a", "\u202e", "\ufeff", "\u206a", "\ufff9", "\ufffc", "\x1b[0m", "\x1b[1;31m",
]
COMBINING = [chr(c) for c in range(0x0300, 0x0370)] + ["\u0345", "\u20dd", "\u3099", "\u309a"]
WORDS = "a photo of the cat dog car tree sky water person man woman child bird red blue green small large old new running sitting on in with and".split()


def rand_piece(rng: random.Random, kind: str) -> str:
    if kind in SCRIPTS:
        return "".join(rng.choice(SCRIPTS[kind]) for _ in range(rng.randint(1, 8)))
    table = {
        "emoji": EMOJI,
        "punct": PUNCT,
        "digits": DIGITS,
        "quotes": QUOTES,
        "ligatures": LIGATURES,
        "fullwidth": FULLWIDTH,
        "entities": ENTITIES,
        "contractions": CONTRACTIONS,
        "whitespace": WHITESPACE,
        "controls": CONTROLS,
        "combining": COMBINING,
        "words": WORDS,
    }[kind]
    n = rng.randint(1, 4)
    return "".join(rng.choice(table) for _ in range(n))


KINDS = sorted(list(SCRIPTS) + [
    "emoji", "punct", "digits", "quotes", "ligatures", "fullwidth", "entities",
    "contractions", "whitespace", "controls", "combining", "words", "words", "words",
])


def random_strings(rng: random.Random, count: int) -> list[str]:
    out = []
    for _ in range(count):
        pieces = []
        for _ in range(rng.randint(1, 12)):
            pieces.append(rand_piece(rng, rng.choice(KINDS)))
            pieces.append(rng.choice(["", " ", " ", " ", "\t", "\n", "-"]))
        s = "".join(pieces)
        if rng.random() < 0.3:
            s = s.upper() if rng.random() < 0.5 else s.title()
        out.append(s)
    return out


def random_codepoint_strings(rng: random.Random, count: int) -> list[str]:
    """Strings of arbitrary assigned BMP/SMP code points (Unicode 14 as in Python)."""
    out = []
    for _ in range(count):
        chars = []
        while len(chars) < rng.randint(1, 30):
            c = chr(rng.randrange(0x20, 0x20000))
            if unicodedata.category(c) not in ("Cn", "Cs", "Co"):
                chars.append(c)
        out.append("".join(chars))
    return out


def long_strings(rng: random.Random) -> list[str]:
    out = []
    for n in (80, 120, 300, 1000, 5200, 7000):
        out.append(" ".join(rng.choice(WORDS) for _ in range(n)))
    for n in (2000, 6000):
        s = random_strings(rng, n // 20)
        out.append(" ".join(s)[:n])
    out.append("A very long caption. " * 260)
    out.append("\u732b" * 5100)
    out.append(("&amp;" * 40 + " ") * 30)
    out.append("x" * 6000)
    return out


# --------------------------------------------------------------------------
# Reference tokenizers
# --------------------------------------------------------------------------


def open_clip_ids(text: str) -> list[int]:
    ids = open_clip.tokenize([text])[0].tolist()
    while ids and ids[-1] == 0:
        ids.pop()
    return ids


def full_hash(ids: list[int]) -> int:
    h = 0
    for i in ids:
        h = (h * 1000003 + i) % (1 << 64)
    return h


_orig_fix_text = ftfy.fix_text


def reference_row(text: str) -> dict:
    """open_clip's ids for `text`, plus the untruncated length and hash when
    the text does not fit the context."""
    row = {"open_clip": open_clip_ids(text)}
    full = OC.encode(text)
    if len(full) + 2 > 77:
        row["full_len"] = len(full)
        row["full_hash"] = str(full_hash(full))
    return row


def without_fix_encoding(text: str) -> dict:
    """`reference_row` with ftfy's `fix_encoding` step turned off."""
    ftfy.fix_text = functools.partial(_orig_fix_text, fix_encoding=False)
    try:
        return reference_row(text)
    finally:
        ftfy.fix_text = _orig_fix_text


def build_corpus() -> list[dict]:
    from transformers import CLIPTokenizerFast

    hf = CLIPTokenizerFast.from_pretrained(str(HF_DIR))
    rng = random.Random(SEED)
    texts: list[str] = []
    texts += HANDWRITTEN
    texts += prompt_strings(rng)
    texts += coco_captions()
    texts += ram_tags(rng)
    texts += random_strings(rng, 700)
    texts += random_codepoint_strings(rng, 120)
    texts += long_strings(rng)
    # Deduplicate, keeping first occurrence.
    seen, uniq = set(), []
    for t in texts:
        if t not in seen:
            seen.add(t)
            uniq.append(t)

    rows = []
    for t in uniq:
        row = {"text": t, **reference_row(t)}
        row["hf"] = hf(t, truncation=True, max_length=77)["input_ids"]
        if _orig_fix_text(t) != _orig_fix_text(t, fix_encoding=False):
            row["no_fix_encoding"] = without_fix_encoding(t)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------
# Unicode facts about the reference
# --------------------------------------------------------------------------


def unicode_tables() -> dict:
    """Per-code-point behaviour of the reference's Unicode-dependent steps."""
    # The alternatives of open_clip's split regex that can match one character,
    # with the same flags (IGNORECASE matters: it drops U+0345 from `O`).
    alts = [
        ("L", regex.compile(r"[\p{L}]", regex.IGNORECASE)),
        ("N", regex.compile(r"[\p{N}]", regex.IGNORECASE)),
        ("O", regex.compile(r"[^\s\p{L}\p{N}]", regex.IGNORECASE)),
    ]
    assigned_runs, class_runs, lower, nfc = [], [], [], []

    def push(runs, cp, value):
        if runs and runs[-1][2] == value and runs[-1][1] == cp - 1:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp, value])

    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        if unicodedata.category(c) == "Cn":
            continue
        push(assigned_runs, cp, 1)
        cls = next((k for k, p in alts if p.match(c)), "-")
        push(class_runs, cp, cls)
        if c.lower() != c:
            lower.append([cp, c.lower()])
        n = unicodedata.normalize("NFC", c)
        if n != c:
            nfc.append([cp, n])
    return {
        "unicode_version": unicodedata.unidata_version,
        "assigned": [[a, b] for a, b, _ in assigned_runs],
        "split_class": class_runs,
        "lower": lower,
        "nfc": nfc,
    }


# --------------------------------------------------------------------------
# HTML5 entity table for the Rust crate
# --------------------------------------------------------------------------


def rust_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in "\\\"":
            out.append("\\" + ch)
        elif 0x20 <= ord(ch) < 0x7F:
            out.append(ch)
        else:
            out.append("\\u{%x}" % ord(ch))
    return '"' + "".join(out) + '"'


def write_entities(path: Path) -> None:
    html5 = html.entities.html5
    names = sorted(html5)
    # ftfy 6.x `_build_html_entities`: upper-cased names of all-lower-case
    # entities, unless html.unescape already gives the upper-case form a meaning.
    upper = {}
    for name, char in html5.items():
        if name.endswith(";") and name == name.lower():
            up = "&" + name.upper()
            if html.unescape(up) == up:
                upper[name.upper()] = char.upper()
    lines = [
        "// @generated by scripts/make_tokenizer_fixtures.py from Python's",
        "// `html.entities.html5` and ftfy's upper-case entity rule. Do not edit.",
        "",
        "/// HTML5 named character references, without the leading `&`, sorted",
        "/// by name (byte order). Names with and without the trailing `;` are",
        "/// separate entries, exactly as in Python's `html.entities.html5`.",
        "pub(crate) static HTML5: &[(&str, &str)] = &[",
    ]
    lines += [f"    ({rust_str(n)}, {rust_str(html5[n])})," for n in sorted(names, key=lambda s: s.encode())]
    lines += [
        "];",
        "",
        "/// ftfy's extra entities: upper-cased names of all-lower-case HTML5",
        "/// entities (such as `EACUTE;`), mapping to the upper-cased text.",
        "pub(crate) static FTFY_UPPER: &[(&str, &str)] = &[",
    ]
    lines += [f"    ({rust_str(n)}, {rust_str(upper[n])})," for n in sorted(upper, key=lambda s: s.encode())]
    lines += ["];", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    if not SHARED.is_dir():
        sys.exit(f"shared data not found at {SHARED} (set SEER_SHARED_DATA)")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    write_entities(REPO / "crates" / "seer-tokenizer" / "src" / "entities.rs")

    rows = build_corpus()
    with open(OUT_DIR / "corpus.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    n_hf = sum(r["open_clip"] != r["hf"] for r in rows)
    n_moj = sum(
        "no_fix_encoding" in r
        and {k: r[k] for k in r["no_fix_encoding"] if k in r} != r["no_fix_encoding"]
        for r in rows
    )
    print(f"corpus: {len(rows)} strings, {n_hf} differ open_clip vs hf, {n_moj} tokenized differently because of fix_encoding")

    tables = unicode_tables()
    with open(OUT_DIR / "unicode_tables.json", "w", encoding="utf-8") as f:
        json.dump(tables, f, ensure_ascii=True, separators=(",", ":"))
    print(f"unicode tables: {len(tables['split_class'])} class runs, {len(tables['lower'])} lower, {len(tables['nfc'])} nfc")


if __name__ == "__main__":
    main()
