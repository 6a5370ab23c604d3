"""Shared setup: the tiny random-weight models committed under fixtures/, the
shared test images, and the `seer` binary the results are compared with.

Paths: the repository is three levels up; the shared data is
``$SEER_SHARED_DATA`` or ``../shared/data`` beside the repository; the binary is
``$SEER_BIN`` or ``target/release/seer`` (``cargo build --release -p seer-cli``;
``scripts/python-tests.sh`` builds it).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import List, Sequence

import numpy as np
import pytest

import seer

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("SEER_SHARED_DATA", REPO.parent / "shared" / "data"))
TOKENIZER = SHARED / "clip-tokenizer" / "bpe_simple_vocab_16e6.txt.gz"
SEER_BIN = Path(os.environ.get("SEER_BIN", REPO / "target" / "release" / "seer"))

# Both CLIP layouts (open_clip, transformers) and a SigLIP and a DINOv2.
CLIP_OPENCLIP = REPO / "fixtures" / "models" / "openclip-vit"
CLIP_HF = REPO / "fixtures" / "models" / "hf-vit-quickgelu"
SIGLIP = REPO / "fixtures" / "families" / "siglip-tiny"
DINOV2 = REPO / "fixtures" / "families" / "dinov2-tiny"

SMOKE = SHARED / "smoke"
RCLIP = SMOKE / "rclip-formats"
# Plain RGB photos (no alpha, palette or EXIF rotation): decoded by PIL and by
# seer to the same pixels, so a path, its bytes, its numpy array and its PIL
# image must give one embedding.
RGB_FILES = [
    SMOKE / "skimage" / "chelsea.png",
    SMOKE / "skimage" / "rocket.jpg",
    SMOKE / "skimage" / "coffee.png",
    SMOKE / "misc" / "red_apple.jpg",
    RCLIP / "cat.jpg",
]
# Every format seer reads, for parity with the command line.
MANY_FORMATS = RGB_FILES + [
    SMOKE / "skimage" / "camera.png",  # grayscale
    SMOKE / "misc" / "CLIP.png",  # RGBA
    RCLIP / "bee_animated.gif",
    RCLIP / "tree.webp",
    RCLIP / "chess-pawns.bmp",
    RCLIP / "chess-knight.tiff",
    RCLIP / "black cat sleeping on a chair.JPG",  # EXIF orientation
    RCLIP / "parrot-and-flowers.pgm",
    RCLIP / "kookaburras.pnm",
    RCLIP / "magpie.pbm",
]


def pytest_configure(config: pytest.Config) -> None:
    missing = [p for p in (SMOKE, TOKENIZER, CLIP_OPENCLIP) if not p.exists()]
    if missing:
        raise pytest.UsageError(
            "test data not found: "
            + ", ".join(map(str, missing))
            + " (set SEER_SHARED_DATA to the folder holding smoke/)"
        )


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reaches the network or a user's Hugging Face cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "empty-hf-home"))
    monkeypatch.delenv("SEER_TOKENIZER", raising=False)


def load(path: Path, **options) -> seer.Model:
    return seer.Model(path, tokenizer=TOKENIZER, offline=True, **options)


@pytest.fixture(scope="session")
def clip() -> seer.Model:
    return load(CLIP_OPENCLIP)


def run_seer(args: Sequence[str]) -> subprocess.CompletedProcess:
    """Runs the command line; fails the test when it does not succeed."""
    if not SEER_BIN.exists():
        pytest.fail(f"{SEER_BIN} not found: build it with `cargo build --release -p seer-cli`")
    env = dict(os.environ, SEER_TOKENIZER=str(TOKENIZER), HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [str(SEER_BIN), *map(str, args)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, f"seer {' '.join(map(str, args))}: {done.stderr}"
    return done


def cli_embed(model: Path, what: List[str], tmp_path: Path, *extra: str) -> np.ndarray:
    """`seer embed ... --out X.npy`, read back."""
    out = tmp_path / "cli.npy"
    run_seer(["embed", "--model", model, *what, "--out", out, *extra])
    return np.load(out)


def cli_classify(model: Path, images: List[Path], labels: List[str], *extra: str) -> List[dict]:
    done = run_seer(
        ["classify", *images, "--model", model, "--labels", ",".join(labels), "--json", *extra]
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit for bit (not just within rounding)."""
    return (
        a.dtype == b.dtype == np.float32
        and a.shape == b.shape
        and bool(np.array_equal(a.view(np.uint32), b.view(np.uint32)))
    )
