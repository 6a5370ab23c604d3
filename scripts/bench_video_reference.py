#!/usr/bin/env python3
"""Reference for scripts/bench_video.sh: video frames embedded the way a Python
user would write it, timed against `seer index` on the same videos.

For each video: the sample times seer-video uses, the midpoints (i + 0.5) *
interval for i = 0.. while < duration (a video shorter than one interval gives
one frame at duration / 2; more than --max-frames samples widen the interval to
duration / max_frames); the frame for time t is the frame a player shows at t
(the last decoded frame whose pts <= t). Frames are decoded with PyAV (one
sequential decode per video, ffmpeg's frame threading on, `thread_type =
"AUTO"`) and converted to RGB by PyAV's `to_image()` (libswscale through
PyAV's VideoReformatter); when PyAV is not importable, an ffmpeg subprocess
with seer-video's own arguments (the `fps`/`select` filter, `format=rgb24`, PPM
on a pipe) stands in and the JSON says so. Then open_clip's eval transform
(resize the shortest side to 224 bicubic, centre crop, normalise; torchvision
on PIL), and transformers' CLIPModel loaded from the same folder seer uses,
f32, `torch.no_grad()`, batches of --batch frames (across videos), on
--threads threads.

Timed: from loading the model to the last embedding (the interpreter and the
imports of torch/transformers are not timed; `seer index` is timed as the
whole command, its model loading included).

With --embeddings FILE the normalised frame embeddings are written as JSON
({video: {time_ms: [floats]}}); with --compare-index DIR they are compared
with the f32 frame vectors a `seer index --encoding f32` run stored in DIR's
index.sqlite (`frames` table, encoding 0 = f32 little-endian) and the cosines
go into the JSON.

Prints progress to stderr and one JSON object as the last line of stdout.
"""
import argparse
import json
import math
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="transformers CLIP folder (the one seer indexes with)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between samples (seer's --frame-interval)")
    p.add_argument("--max-frames", type=int, default=1800, help="seer's --max-frames")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--decoder", choices=["auto", "pyav", "ffmpeg"], default="auto",
                   help="auto: PyAV when importable, else an ffmpeg subprocess")
    p.add_argument("--embeddings", help="write the frame embeddings here (JSON)")
    p.add_argument("--compare-index", help="seer index folder (indexed with --encoding f32) to compare with")
    p.add_argument("videos", nargs="+")
    return p.parse_args()


def plan(duration, interval, max_frames):
    """seer-video's plan(): (interval actually used, number of samples)."""
    max_frames = max(max_frames, 1)
    if not (math.isfinite(interval) and interval > 0):
        interval = 2.0
    if duration > 0:
        interval = min(max(interval, duration / max_frames), duration)
    micros = max(round(interval * 1e6), 2)
    if duration <= 0:
        return micros / 1e6, max_frames
    count = 0
    while count < max_frames and (count + 0.5) * micros < duration * 1e6:
        count += 1
    return micros / 1e6, max(count, 1)


def pyav_frames(path, interval, max_frames):
    """(time, PIL image) of each sample, by one sequential PyAV decode."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threading, as the ffmpeg CLI does by default
        duration = container.duration / 1e6 if container.duration else 0.0
        if duration <= 0 and stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        step, count = plan(duration, interval, max_frames)
        times = [(i + 0.5) * step for i in range(count)]
        # Timestamps as a player shows them: relative to the container's start.
        start = container.start_time / 1e6 if container.start_time else 0.0
        prev = None
        k = 0
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            ft = frame.time - start
            # Samples before this frame show the previous one.
            while k < count and times[k] < ft:
                if prev is not None:
                    yield times[k], prev.to_image()
                k += 1
            if k >= count:
                return
            prev = frame
        while k < count and prev is not None:  # past the last frame: it stays on screen
            yield times[k], prev.to_image()
            k += 1


def ffmpeg_frames(path, interval, max_frames):
    """The fallback: seer-video's ffmpeg command, PPM frames read from its stdout."""
    from PIL import Image

    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                            "default=nw=1:nk=1", str(path)], capture_output=True, text=True, check=True)
    try:
        duration = float(probe.stdout.strip())
    except ValueError:
        duration = 0.0
    step, count = plan(duration, interval, max_frames)
    micros = round(step * 1e6)
    g = math.gcd(2_000_000, micros)
    vf = (f"fps=fps={2_000_000 // g}/{micros // g}:start_time=0:round=up,"
          "select='eq(mod(n\\,2)\\,1)',format=rgb24")
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", "file:" + str(Path(path).resolve()),
           "-map", "0:V:0", "-an", "-sn", "-dn", "-vf", vf, "-fps_mode", "passthrough",
           "-frames:v", str(count), "-c:v", "ppm", "-f", "image2pipe", "pipe:1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    try:
        for i in range(count):
            header = b""
            fields = []
            while len(fields) < 4:  # P6, width, height, maxval
                c = proc.stdout.read(1)
                if not c:
                    return
                if c.isspace():
                    if header:
                        fields.append(header)
                        header = b""
                else:
                    header += c
            w, h = int(fields[1]), int(fields[2])
            data = proc.stdout.read(w * h * 3)
            yield (i + 0.5) * step, Image.frombytes("RGB", (w, h), data)
    finally:
        proc.kill()
        proc.wait()


def index_vectors(index_dir):
    """{time_ms: vector} of the frames in a seer index holding one video."""
    db = sqlite3.connect(f"file:{Path(index_dir) / 'index.sqlite'}?mode=ro", uri=True)
    rows = db.execute("SELECT file_id, time_ms, encoding, vector FROM frames ORDER BY file_id, time_ms").fetchall()
    files = {r[0] for r in rows}
    if len(files) != 1:
        raise SystemExit(f"{index_dir}: expected the frames of one video, found {len(files)} videos")
    out = {}
    for _, time_ms, encoding, blob in rows:
        if encoding != 0:
            raise SystemExit(f"{index_dir}: frame vectors are not f32 (encoding {encoding}); index with --encoding f32")
        out[time_ms] = struct.unpack(f"<{len(blob) // 4}f", blob)
    return out


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def main():
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from transformers import CLIPModel
    import open_clip

    decoder = args.decoder
    if decoder == "auto":
        try:
            import av  # noqa: F401
            decoder = "pyav"
        except ImportError:
            print("PyAV is not importable: decoding with an ffmpeg subprocess", file=sys.stderr)
            decoder = "ffmpeg"
    frames_of = pyav_frames if decoder == "pyav" else ffmpeg_frames
    if decoder == "pyav":
        import av
        decoder_short = f"PyAV {av.__version__}"
        decoder_name = f"{decoder_short} (libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}), to_image() RGB"
    else:
        decoder_short = "ffmpeg subprocess"
        decoder_name = "ffmpeg CLI subprocess (seer-video's arguments, format=rgb24 filter)"

    transform = open_clip.image_transform(224, is_train=False)
    start = time.perf_counter()
    model = CLIPModel.from_pretrained(args.model).eval()
    load_s = time.perf_counter() - start

    embeddings = {}
    pending = []  # (video, time, tensor)
    decode_s = 0.0

    def run_batch():
        pixels = torch.stack([p[2] for p in pending])
        with torch.no_grad():
            out = model.get_image_features(pixel_values=pixels)
        out = out if torch.is_tensor(out) else out.pooler_output  # transformers 5
        out = torch.nn.functional.normalize(out, dim=-1)
        for (video, t, _), v in zip(pending, out):
            embeddings.setdefault(video, {})[round(t * 1000)] = v.tolist()
        pending.clear()

    frames = 0
    for video in args.videos:
        it = frames_of(video, args.interval, args.max_frames)
        while True:
            t0 = time.perf_counter()
            item = next(it, None)
            decode_s += time.perf_counter() - t0
            if item is None:
                break
            t, image = item
            pending.append((video, t, transform(image)))
            frames += 1
            if len(pending) == args.batch:
                run_batch()
    if pending:
        run_batch()
    seconds = time.perf_counter() - start

    result = {
        "engine": "pytorch",
        "torch": torch.__version__,
        "threads": args.threads,
        "batch": args.batch,
        "decoder": decoder_name,
        "decoder_short": decoder_short,
        "videos": len(args.videos),
        "frames": frames,
        "seconds": seconds,
        "model_load_seconds": load_s,
        "decode_seconds": decode_s,
        "frames_per_s": frames / seconds,
        "videos_per_s": len(args.videos) / seconds,
    }
    print(f"reference: {frames} frames of {len(args.videos)} videos in {seconds:.2f} s "
          f"(decode+RGB {decode_s:.2f} s, model load {load_s:.2f} s)", file=sys.stderr)
    if args.embeddings:
        Path(args.embeddings).write_text(json.dumps(embeddings))
    if args.compare_index:
        if len(args.videos) != 1:
            raise SystemExit("--compare-index takes one video")
        ours = embeddings.get(args.videos[0], {})
        theirs = index_vectors(args.compare_index)
        common = sorted(set(ours) & set(theirs))
        cosines = [cosine(ours[t], theirs[t]) for t in common]
        # A random-weight model maps every image near one direction (different
        # frames have cosines near 1 too), so the same comparison is made with
        # the reference frames' mean taken out of both, and the closest pair of
        # different frames is given for scale.
        mean = [sum(col) / len(ours) for col in zip(*ours.values())]
        centred = lambda v: [x - m for x, m in zip(v, mean)]
        centred_cos = [cosine(centred(ours[t]), centred(theirs[t])) for t in common]
        times = sorted(ours)
        between = [cosine(ours[a], ours[b]) for i, a in enumerate(times) for b in times[i + 1:]]
        between_c = [cosine(centred(ours[a]), centred(ours[b])) for i, a in enumerate(times) for b in times[i + 1:]]
        result["agreement"] = {
            "reference_frames": times,
            "seer_frames": sorted(theirs),
            "compared": len(common),
            "min_cosine": min(cosines) if cosines else None,
            "min_centred_cosine": min(centred_cos) if len(ours) > 1 and centred_cos else None,
            "max_cosine_between_frames": max(between) if between else None,
            "max_centred_cosine_between_frames": max(between_c) if between_c else None,
            "cosines": dict(zip(map(str, common), cosines)),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
