#!/usr/bin/env python3
"""Reference embeddings of sampled video frames, for seer's video parity test.

What a Python user would write: decode the video with PyAV, take the frame
shown at each sample time, and embed it with open_clip (the fixture model
fixtures/models/openclip-vit, its own preprocessing). seer samples at the
midpoints of `interval`-second steps, (i + 0.5) * interval while shorter than
the video, and takes the last frame whose time is at or before each; this
script does the same independently. Writes fixtures/video/reference.json,
which crates/seer-index/tests/video_parity.rs compares with the vectors
`seer index` stores (1e-4).

Run with the reference venv (torch, open_clip_torch, av), from the repository root:
    /path/to/venv/bin/python scripts/make_video_reference.py
"""
import json
from pathlib import Path

import av
import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
VIDEOS = ROOT / "fixtures" / "video"
MODEL = ROOT / "fixtures" / "models" / "openclip-vit"
INTERVAL = 2.0
FILES = ["colors.mkv", "clip.mp4", "clip.webm", "rotated.mp4"]


def sample_times(duration, interval):
    times, i = [], 0
    while (i + 0.5) * interval < duration:
        times.append((i + 0.5) * interval)
        i += 1
    return times or [duration / 2]


def frames_at(path, times):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = [(float(f.time), f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
    picked = []
    for t in times:
        shown = [rgb for (ft, rgb) in decoded if ft <= t + 1e-9]
        picked.append(shown[-1] if shown else decoded[0][1])
    return picked


def main():
    cfg = json.loads((MODEL / "open_clip_config.json").read_text())
    model = open_clip.model.CLIP(**cfg["model_cfg"]).eval()
    model.load_state_dict({k: v.float() for k, v in load_file(MODEL / "open_clip_model.safetensors").items()})
    pre = cfg["preprocess_cfg"]
    transform = open_clip.image_transform(
        cfg["model_cfg"]["vision_cfg"]["image_size"], is_train=False, mean=pre["mean"],
        std=pre["std"], interpolation="bicubic", resize_mode="shortest")
    out = {
        "model": "fixtures/models/openclip-vit",
        "interval": INTERVAL,
        "decoder": f"PyAV {av.__version__} (FFmpeg {'.'.join(map(str, av.library_versions['libavcodec']))} libavcodec), to_ndarray(format='rgb24')",
        "videos": {},
    }
    for name in FILES:
        path = VIDEOS / name
        with av.open(str(path)) as container:
            duration = float(container.duration / av.time_base)
        times = sample_times(duration, INTERVAL)
        frames = frames_at(path, times)
        # ffmpeg (and seer through it) turn rotated videos upright; PyAV does
        # not: turn the frames by the stream's display matrix here.
        if name == "rotated.mp4":
            frames = [np.rot90(f, k=1).copy() for f in frames]
        images = [Image.fromarray(f) for f in frames]
        pixels = torch.stack([transform(im) for im in images])
        with torch.no_grad():
            emb = F.normalize(model.encode_image(pixels), dim=-1)
        out["videos"][name] = {
            "duration": duration,
            "times": times,
            "sizes": [list(im.size) for im in images],
            "embeddings": [[float(x) for x in row] for row in emb],
        }
    (VIDEOS / "reference.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {VIDEOS / 'reference.json'}")


if __name__ == "__main__":
    main()
