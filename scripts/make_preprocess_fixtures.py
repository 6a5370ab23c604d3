#!/usr/bin/env python3
"""Generate CLIP preprocessing parity fixtures for crates/seer-image.

Run with the reference venv:  /work/refvenv/bin/python scripts/make_preprocess_fixtures.py

For every image under <shared>/smoke that PIL can open, plus generated edge
cases written to fixtures/preprocess/inputs/, this applies
PIL.ImageOps.exif_transpose and then the reference pipelines without
rescale/normalize, saving uint8 results as lossless PNGs:

  expected/hf/        transformers CLIPImageProcessor (transformers 5: torchvision backend)
  expected/hf_pil/    transformers CLIPImageProcessorPil (PIL backend; what CLIPImageProcessor was in 4.x)
  expected/open_clip/ open_clip.image_transform(size, is_train=False) minus ToTensor/Normalize
                      (= torchvision Resize + CenterCrop + PIL convert("RGB"))

When two libraries produce identical bytes the manifest points both at one file.
manifest.json records sources (relative to the shared data root or to
fixtures/preprocess), sizes and library versions. A few HF outputs are also
stored as normalized float32 .npy (size 32) to check normalize.
"""

import hashlib
import io
import json
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import open_clip
import PIL
import torch
import torchvision
import transformers
from PIL import Image, ImageOps
from torchvision import transforms as T
from transformers import CLIPImageProcessor
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SEER_SHARED_DATA", REPO.parent / "shared" / "data"))
HF_DIR = SHARED / "clip-tokenizer" / "hf-clip-vit-base-patch32"
OUT = REPO / "fixtures" / "preprocess"
INPUTS = OUT / "inputs"

# Shared images processed at the real CLIP size; the rest use smaller (and odd)
# sizes, which keeps the fixtures small and exercises other filter supports.
FULL_SIZE = {
    "smoke/misc/CLIP.png",
    "smoke/misc/red_apple.jpg",
    "smoke/rclip-formats/books.jpg",
    "smoke/rclip-formats/magpie.pbm",
    "smoke/rclip-formats/chess-queen.gif",
    "smoke/rclip-formats/tree.webp",
    "smoke/segment-anything/dog.jpg",
    "smoke/skimage/horse.png",
    "smoke/skimage/page.png",
    "smoke/skimage/chelsea.png",
}
SMALL_SIZES = [64, 97]


def png_bytes(arr: np.ndarray) -> bytes:
    """Minimal PNG writer for 16-bit data (PIL cannot write 16-bit RGB)."""
    h, w = arr.shape[:2]
    ch = 1 if arr.ndim == 2 else arr.shape[2]
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[ch]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def smooth_rgb(w, h, seed):
    """Deterministic image with gradients and some texture (compresses well, not trivial to resample)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 120 * np.sin(x / max(w, 1) * 6.3 + seed)
    g = 127 + 120 * np.cos(y / max(h, 1) * 5.1 + x / max(w, 1) * 2)
    b = (x * 7 + y * 3) % 256
    img = np.stack([r, g, b], -1) + rng.normal(0, 6, (h, w, 3))
    img[(x.astype(int) // 8 + y.astype(int) // 8) % 5 == 0] = [250, 20, 30]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_inputs():
    """Write edge-case inputs. Returns {name: override_array_or_None}: for 16-bit
    files the reference input is the round(v/257) 8-bit image, since PIL itself
    truncates (RGB) or clips (I;16 -> L) 16-bit data."""
    INPUTS.mkdir(parents=True, exist_ok=True)
    overrides = {}
    base = Image.open(SHARED / "smoke" / "skimage" / "chelsea.png").convert("RGB")
    small = base.resize((120, 80), Image.BICUBIC)

    small.convert("CMYK").save(INPUTS / "cmyk.jpg", quality=90)
    small.save(INPUTS / "progressive.jpg", quality=85, progressive=True)
    small.convert("L").save(INPUTS / "gray.jpg", quality=85)
    small.save(INPUTS / "subsampled_422.jpg", quality=80, subsampling=1)
    small.save(INPUTS / "restart_markers.jpg", quality=70, restart_marker_blocks=3, progressive=True)

    # EXIF orientation: pixels stored rotated, tag tells the viewer how to undo it.
    for ori in (3, 6, 8):
        exif = Image.Exif()
        exif[0x0112] = ori
        small.save(INPUTS / f"exif_orientation_{ori}.jpg", quality=85, exif=exif.tobytes())
    exif = Image.Exif()
    exif[0x0112] = 6
    small.save(INPUTS / "exif_orientation_6.png", exif=exif.tobytes())

    # 16-bit PNGs (RGB and gray) from known data.
    rng = np.random.default_rng(1)
    a8 = smooth_rgb(40, 30, 3).astype(np.uint32)
    a16 = np.clip(a8 * 257 + rng.integers(-128, 129, a8.shape), 0, 65535).astype(np.uint16)
    (INPUTS / "rgb16.png").write_bytes(png_bytes(a16))
    overrides["rgb16.png"] = Image.fromarray(np.round(a16 / 257).astype(np.uint8), "RGB")
    g16 = a16[..., 1]
    (INPUTS / "gray16.png").write_bytes(png_bytes(g16))
    overrides["gray16.png"] = Image.fromarray(np.round(g16 / 257).astype(np.uint8), "L")

    # Palette PNG with transparency (tRNS), LA PNG, RGBA with hidden colour under alpha 0.
    pal = small.quantize(colors=32)
    trans = [255] * 32
    trans[3] = 0
    trans[7] = 128
    pal.save(INPUTS / "palette_trns.png", transparency=bytes(trans))
    gray = np.asarray(small.convert("L"))
    yy, xx = np.mgrid[0:80, 0:120]
    alpha = np.clip(xx * 3 - 60, 0, 255).astype(np.uint8)
    Image.fromarray(np.stack([gray, alpha], -1), "LA").save(INPUTS / "la.png")
    rgba = np.concatenate([np.asarray(small), alpha[..., None]], -1)
    rgba[alpha == 0, :3] = [0, 255, 0]  # invisible green: dropping alpha shows it, compositing hides it
    Image.fromarray(rgba, "RGBA").save(INPUTS / "rgba_hidden.png")

    # Extreme aspect ratios. The tall one is >100x taller than wide and is
    # downscaled (crop 16 < width 17), which makes Pillow resize vertically first.
    Image.fromarray(smooth_rgb(600, 24, 5)).save(INPUTS / "wide.png")
    Image.fromarray(smooth_rgb(17, 1800, 6)).save(INPUTS / "tall.png")
    Image.fromarray(smooth_rgb(5, 3, 7)).save(INPUTS / "tiny_5x3.png")

    # Paletted GIF with a transparent index, BMP, lossless WebP, palette BMP.
    pal.save(INPUTS / "palette.gif", transparency=3)
    small.save(INPUTS / "rgb.bmp")
    small.save(INPUTS / "lossless.webp", lossless=True)
    Image.fromarray(np.asarray(small.convert("L")) > 128).save(INPUTS / "bilevel.png")

    # A real JPEG 2000 file: PIL reads it, seer rejects it by design.
    small.resize((16, 12)).save(INPUTS / "real_jpeg2000.jp2")
    return overrides


def hf_processor(cls, resize, crop):
    return cls.from_pretrained(
        str(HF_DIR),
        size={"shortest_edge": resize},
        crop_size={"height": crop, "width": crop},
        do_normalize=False,
        do_rescale=False,
    )


def run_hf(cls, img, resize, crop):
    out = hf_processor(cls, resize, crop)(img, return_tensors="np")["pixel_values"][0]
    out = np.asarray(out)
    assert out.dtype == np.uint8 or np.all(out == np.round(out)), out.dtype
    return np.ascontiguousarray(out.transpose(1, 2, 0).astype(np.uint8))


def run_open_clip(img, resize, crop):
    if resize == crop:
        t = open_clip.image_transform(resize, is_train=False)
        steps = t.transforms
        assert type(steps[-1]).__name__ == "Normalize" and type(steps[-2]).__name__ == "MaybeToTensor", steps
        pipeline = T.Compose(steps[:-2])
    else:
        # open_clip only uses resize == crop; the same torchvision composition covers the padding case.
        pipeline = T.Compose(
            [T.Resize(resize, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(crop), lambda im: im.convert("RGB")]
        )
    out = pipeline(img)
    assert out.mode == "RGB"
    return np.asarray(out)


def save_png(arr, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG", optimize=True)
    path.write_bytes(buf.getvalue())


def main():
    overrides = make_inputs()
    for sub in ("hf", "hf_pil", "open_clip", "normalize"):
        d = OUT / "expected" / sub
        d.mkdir(parents=True, exist_ok=True)
        for f in d.iterdir():
            f.unlink()

    sources = []  # (root, rel, abs)
    pil_failed = []
    for p in sorted((SHARED / "smoke").rglob("*")):
        if p.is_file():
            sources.append(("shared", str(p.relative_to(SHARED)), p))
    for p in sorted(INPUTS.iterdir()):
        sources.append(("fixtures", str(p.relative_to(OUT)), p))

    entries = []
    small_i = 0
    for root, rel, path in sources:
        try:
            with Image.open(path) as probe:
                fmt, mode = probe.format, probe.mode
                probe.load()
        except Exception as e:  # noqa: BLE001 - recording what PIL rejects
            pil_failed.append({"root": root, "path": rel, "error": f"{type(e).__name__}: {e}"})
            continue
        if path.name == "real_jpeg2000.jp2":
            continue  # listed under unsupported_by_design below
        name = rel.replace("/", "__").replace(" ", "_")
        name = os.path.splitext(name)[0] + "_" + os.path.splitext(name)[1][1:].lower()
        img = overrides.get(path.name)
        if img is None:
            img = ImageOps.exif_transpose(Image.open(path))
        img.load()
        rel_key = rel if root == "shared" else None
        if rel_key in FULL_SIZE:
            size = 224
        elif path.name == "tall.png":
            size = 16
        elif root == "fixtures":
            size = 96
        else:
            size = SMALL_SIZES[small_i % len(SMALL_SIZES)]
            small_i += 1
        cases = [(name, size, size)]
        if path.name == "tiny_5x3.png":
            cases.append((name + "_pad", 47, 64))  # crop larger than the resized image: padding
        for case_name, resize, crop in cases:
            outs = {
                "open_clip": run_open_clip(img, resize, crop),
                "hf": run_hf(CLIPImageProcessor, img, resize, crop),
                "hf_pil": run_hf(CLIPImageProcessorPil, img, resize, crop),
            }
            expected = {}
            written = {}
            for lib in ("open_clip", "hf_pil", "hf"):
                arr = outs[lib]
                assert arr.shape == (crop, crop, 3), (case_name, lib, arr.shape)
                digest = hashlib.sha256(arr.tobytes()).hexdigest()
                if digest in written:
                    file = written[digest]
                else:
                    file = f"expected/{lib}/{case_name}.png"
                    save_png(arr, OUT / file)
                    written[digest] = file
                expected[lib] = file
            entries.append(
                {
                    "name": case_name,
                    "root": root,
                    "path": rel,
                    "pil_format": fmt,
                    "pil_mode": mode,
                    "size_after_exif_transpose": list(img.size),
                    "resize_to": resize,
                    "crop_size": crop,
                    "reference_is_round_v_over_257": path.name in overrides,
                    "expected": expected,
                }
            )
            print(f"{case_name:55s} {fmt:5s} {mode:5s} {img.size} -> {resize}/{crop}")

    # Normalized float output of the default HF processor for a few images.
    normalize = []
    for rel in ("smoke/skimage/astronaut.png", "smoke/rclip-formats/cat.jpg", "smoke/skimage/camera.png"):
        img = ImageOps.exif_transpose(Image.open(SHARED / rel))
        u8 = run_hf(CLIPImageProcessor, img, 32, 32)
        proc = CLIPImageProcessor.from_pretrained(
            str(HF_DIR), size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        )
        f = np.asarray(proc(img, return_tensors="np")["pixel_values"][0]).astype(np.float32)
        name = rel.replace("/", "__").rsplit(".", 1)[0]
        save_png(u8, OUT / f"expected/normalize/{name}.png")
        np.save(OUT / f"expected/normalize/{name}.npy", f)
        normalize.append(
            {
                "path": rel,
                "uint8": f"expected/normalize/{name}.png",
                "npy": f"expected/normalize/{name}.npy",
                "mean": proc.image_mean,
                "std": proc.image_std,
            }
        )

    manifest = {
        "about": "CLIP preprocessing references (uint8 after resize+crop). Paths: root=shared -> $SEER_SHARED_DATA, root=fixtures -> fixtures/preprocess.",
        "generator": "scripts/make_preprocess_fixtures.py",
        "versions": {
            "python": sys.version.split()[0],
            "pillow": PIL.__version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "transformers": transformers.__version__,
            "open_clip": open_clip.__version__,
            "numpy": np.__version__,
        },
        "libraries": {
            "hf": "transformers CLIPImageProcessor (default class; torchvision backend in transformers 5), do_rescale=False, do_normalize=False",
            "hf_pil": "transformers CLIPImageProcessorPil (PIL backend), do_rescale=False, do_normalize=False",
            "open_clip": "open_clip.image_transform(n, is_train=False) without MaybeToTensor/Normalize; for resize != crop the equivalent torchvision Resize+CenterCrop+convert('RGB')",
        },
        "entries": entries,
        "normalize": normalize,
        "pil_failed": pil_failed,
        "unsupported_by_design": [
            {"root": "fixtures", "path": "inputs/real_jpeg2000.jp2", "why": "JPEG 2000 is not decoded by seer (PIL opens it via OpenJPEG)"}
        ],
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"{len(entries)} entries, PIL failed on {len(pil_failed)} files, fixtures total {total/1e6:.2f} MB")


if __name__ == "__main__":
    main()
