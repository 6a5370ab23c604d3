#!/usr/bin/env bash
# Video indexing speed against a Python reference, measured in one run:
#
#   scripts/bench_video.sh PYTHON [VIDEOS] [SECONDS] [PAIRS]
#
# PYTHON has torch, transformers and open_clip (the reference venv, see
# Performance in the README), and PyAV (`pip install av`) for the reference's
# decoding; without PyAV the reference decodes through an ffmpeg subprocess and
# the table says so. VIDEOS (default 4) h264 videos of SECONDS (default 30)
# seconds, 1280x720 at 30 fps, a keyframe every 2 s as phones write them, are
# made with ffmpeg's lavfi sources (different ones, so frames differ). Run from
# the repository root with ../shared/data beside it; needs ffmpeg and ffprobe.
#
# Every round (PAIRS, default 3, at least 3 for a median worth the name) runs,
# one after the other on the same videos:
# - seer: `seer index --threads 2 --frame-interval 2` into a fresh index with a
#   random-weight ViT-B/32, timed as the whole command (model loading included);
# - the reference, scripts/bench_video_reference.py: the same sample times,
#   PyAV decoding, open_clip preprocessing, transformers' CLIPModel on the same
#   weights, 2 torch threads, batch 32, f32 (model loading included, Python's
#   imports not);
# - decode only: seer-video's own ffmpeg command (arguments copied from
#   crates/seer-video/src/lib.rs: Ffmpeg::frames) producing the same samples as
#   PPM into a pipe, one video after the other, so the share of decoding in
#   seer's time is visible.
# The table gives medians; every round's figures are printed too. Then the
# agreement check: one video indexed with `--encoding f32`, its stored frame
# vectors against the reference's embeddings of the same frames (cosines).
# Threads: seer and torch get 2 threads (`--threads 2`, `torch.set_num_threads`);
# ffmpeg (seer's subprocess, and PyAV's libavcodec with thread_type AUTO) picks
# its own decoding threads on both sides.
#
# Everything printed also lands in target/bench-video/<UTC time>/.
set -euo pipefail
py=${1:?usage: $0 PYTHON [VIDEOS] [SECONDS] [PAIRS]}
videos=${2:-4}
seconds=${3:-30}
pairs=${4:-3}
interval=2
threads=2
for n in "$videos" "$seconds" "$pairs"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "$0: VIDEOS, SECONDS and PAIRS are positive whole numbers, not '$n'" >&2; exit 2; }
done
"$py" -c 'import torch, transformers, open_clip' 2>/dev/null ||
    { echo "$0: $py cannot import torch, transformers and open_clip (the reference venv, see the README)" >&2; exit 2; }
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null ||
    { echo "$0: ffmpeg and ffprobe are needed (apt install ffmpeg)" >&2; exit 2; }
# seer-video's demuxer whitelist, read from its source so the decode-only
# command stays the one seer runs.
demuxers=$(grep -o 'pub const DEMUXERS: &str = "[^"]*"' crates/seer-video/src/lib.rs | sed 's/.*= "//; s/"$//')
[[ -n $demuxers ]] || { echo "$0: DEMUXERS not found in crates/seer-video/src/lib.rs" >&2; exit 2; }
# The filter below is a copy; say so when seer-video's has moved on.
grep -q ':start_time=0:round=up,select=' crates/seer-video/src/lib.rs ||
    echo "$0: warning: seer-video's fps/select filter changed: the decode-only command below may no longer be seer's" >&2

out=target/bench-video/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cargo build --release -q -p seer-cli --bin seer
seer=$PWD/target/release/seer

cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
# Virtual machines often name the CPU generically: family/model and the
# widest vector ISA tell kinds apart.
isa="no avx2"
grep -qw avx2 /proc/cpuinfo && isa=avx2
grep -qw avx512f /proc/cpuinfo && isa=avx512f
grep -qw amx_tile /proc/cpuinfo && isa="avx512f, amx"
cpu="$cpu (family $(grep -m1 'cpu family' /proc/cpuinfo | sed 's/.*: //'), model $(grep -m1 '^model[[:space:]]' /proc/cpuinfo | sed 's/.*: //'), $isa)"
{
    echo "cpu: $cpu, $(nproc) threads available; seer --threads $threads, torch.set_num_threads($threads)"
    echo "ffmpeg: $(ffmpeg -hide_banner -version | head -1)"
    echo "reference: $("$py" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
    if "$py" -c 'import av' 2>/dev/null; then
        echo "reference decoder: PyAV $("$py" -c 'import av; print(av.__version__)')"
    else
        echo "reference decoder: ffmpeg subprocess (PyAV not importable: pip install av)"
    fi
    echo "videos: $videos x ${seconds}s h264 1280x720 30 fps, -g 60; a frame every ${interval}s; $pairs rounds"
} | tee "$out/setup.txt"

echo "== model (random-weight ViT-B/32)"
"$py" scripts/make_random_model.py --arch clip-vit-b-32 --out "$tmp/model" >"$out/make-model.txt" 2>&1
tok=../shared/data/clip-tokenizer/hf-clip-vit-base-patch32
for f in tokenizer.json tokenizer_config.json special_tokens_map.json; do
    [[ -f $tok/$f ]] && cp "$tok/$f" "$tmp/model/"
done

echo "== videos"
# Different lavfi sources (the small cellular ones scaled up, blocky) so the
# frames of one video and of different videos differ.
sources=(
    "testsrc2=s=1280x720:r=30"
    "life=s=320x180:r=30:seed=7:mold=10,scale=1280x720:flags=neighbor"
    "cellauto=s=320x180:r=30:rule=110:seed=5,scale=1280x720:flags=neighbor"
    "gradients=s=1280x720:r=30:speed=0.02:seed=3"
    "mandelbrot=s=1280x720:r=30"
)
mkdir -p "$tmp/videos" "$tmp/one"
for ((i = 0; i < videos; i++)); do
    src=${sources[i % ${#sources[@]}]}
    # Later laps over the list shift the pattern so no two videos are equal.
    ((i >= ${#sources[@]})) && src="$src,hue=h=$((i * 47 % 360))"
    ffmpeg -nostdin -hide_banner -loglevel error -f lavfi -i "$src" -t "$seconds" \
        -c:v libx264 -preset veryfast -g 60 -pix_fmt yuv420p "$tmp/videos/v$i.mp4"
    echo "v$i.mp4: $src"
done | tee "$out/videos.txt"
cp "$tmp/videos/v0.mp4" "$tmp/one/"

# Per video: seer-video's plan() (sample count) and fps/select filter for
# interval $interval, from ffprobe's container duration.
plan() { # VIDEO -> "COUNT FILTER"
    local d
    d=$(ffprobe -v error -show_entries format=duration -of default=nw=1:nk=1 "$1")
    "$py" - "$d" "$interval" <<'EOF'
import math, sys
d, interval, max_frames = float(sys.argv[1]), float(sys.argv[2]), 1800
if d > 0:
    interval = min(max(interval, d / max_frames), d)
micros = max(round(interval * 1e6), 2)
count = 0
while count < max_frames and (count + 0.5) * micros < d * 1e6:
    count += 1
g = math.gcd(2_000_000, micros)
print(max(count, 1), f"fps=fps={2_000_000 // g}/{micros // g}:start_time=0:round=up,select='eq(mod(n\\,2)\\,1)',format=rgb24")
EOF
}
declare -a counts filters
expected=0
for ((i = 0; i < videos; i++)); do
    read -r c f < <(plan "$tmp/videos/v$i.mp4")
    counts[i]=$c
    filters[i]=$f
    expected=$((expected + c))
done
echo "samples: $expected frames in all (${counts[*]})" | tee -a "$out/setup.txt"

now() { date +%s.%N; }

decode_only() { # all videos, one after the other, as seer-video runs ffmpeg
    local i bytes total=0
    for ((i = 0; i < videos; i++)); do
        bytes=$(ffmpeg -nostdin -hide_banner -loglevel error -protocol_whitelist file \
            -format_whitelist "$demuxers" -i "file:$tmp/videos/v$i.mp4" -map 0:V:0 -an -sn -dn \
            -vf "${filters[i]}" -fps_mode passthrough -frames:v "${counts[i]}" \
            -c:v ppm -f image2pipe pipe:1 | wc -c)
        total=$((total + bytes))
    done
    echo "$total"
}

echo "== $pairs rounds: seer, reference, decode only"
: >"$out/rounds.tsv"
for ((r = 1; r <= pairs; r++)); do
    rm -rf "$tmp/index"
    t0=$(now)
    "$seer" index --index "$tmp/index" --model "$tmp/model" --offline --threads "$threads" \
        --frame-interval "$interval" --json "$tmp/videos" >"$out/seer-$r.json" 2>"$out/seer-$r.err"
    t1=$(now)
    "$py" scripts/bench_video_reference.py --model "$tmp/model" --threads "$threads" --batch 32 \
        --interval "$interval" "$tmp"/videos/*.mp4 >"$out/reference-$r.out" 2>"$out/reference-$r.err"
    t2=$(now)
    bytes=$(decode_only)
    t3=$(now)
    s_seer=$(echo "$t1 - $t0" | bc) s_ref=$(echo "$t2 - $t1" | bc) s_dec=$(echo "$t3 - $t2" | bc)
    printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$s_seer" "$s_ref" "$s_dec" "$bytes" >>"$out/rounds.tsv"
    printf 'round %s: seer %.2f s, reference process %.2f s, decode only %.2f s\n' "$r" "$s_seer" "$s_ref" "$s_dec"
done

echo "== agreement: one video, seer --encoding f32 against the reference"
"$seer" index --index "$tmp/index-f32" --model "$tmp/model" --offline --threads "$threads" \
    --frame-interval "$interval" --encoding f32 --json "$tmp/one" >"$out/seer-f32.json" 2>"$out/seer-f32.err"
"$py" scripts/bench_video_reference.py --model "$tmp/model" --threads "$threads" --batch 32 \
    --interval "$interval" --compare-index "$tmp/index-f32" "$tmp/one/v0.mp4" \
    >"$out/agreement.out" 2>"$out/agreement.err"

"$py" - "$out" "$videos" "$expected" "$cpu" "$threads" <<'EOF' | tee "$out/summary.txt"
import json, statistics, sys
from pathlib import Path
out, videos, expected, cpu, threads = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
rounds = [line.split("\t") for line in (out / "rounds.tsv").read_text().splitlines()]
seer, ref, dec = [], [], []
problems = []
ref_proc = [float(x[2]) for x in rounds]
for r, seer_s, _ref_proc_s, dec_s, dec_bytes in rounds:
    s = json.loads((out / f"seer-{r}.json").read_text().strip().splitlines()[-1])
    if s.get("video_frames") != expected or s.get("failed"):
        problems.append(f"round {r}: seer indexed {s.get('video_frames')} frames of {expected}, {s.get('failed')} failed")
    seer.append((float(seer_s), s.get("video_frames", 0), s.get("seconds")))
    f = json.loads((out / f"reference-{r}.out").read_text().strip().splitlines()[-1])
    if f["frames"] != expected:
        problems.append(f"round {r}: the reference embedded {f['frames']} frames of {expected}")
    ref.append((f["seconds"], f["frames"], f["decode_seconds"], f["decoder"], f["decoder_short"]))
    dec.append(float(dec_s))
rows = []
for name, secs in [("seer", [x[0] for x in seer]), ("reference", [x[0] for x in ref]), ("ffmpeg decode only", dec)]:
    rows.append((name, [expected / t for t in secs], [videos / t for t in secs]))
med = lambda xs: statistics.median(xs)
seer_fps, ref_fps, dec_fps = (med(r[1]) for r in rows)
print(f"cpu: {cpu}; threads: {threads} (seer --threads, torch.set_num_threads); ffmpeg's decoding threads its own")
print(f"{videos} videos, {expected} sampled frames per round, {len(rounds)} rounds; medians:")
print()
print(f"| engine | frames/s | videos/s | ratio seer/reference | decode-only frames/s |")
print(f"|---|---:|---:|---:|---:|")
print(f"| seer (`seer index`, whole command) | {seer_fps:.2f} | {med(rows[0][2]):.3f} | {seer_fps / ref_fps:.2f}x | {dec_fps:.1f} |")
print(f"| reference (PyTorch, {ref[0][4]}) | {ref_fps:.2f} | {med(rows[1][2]):.3f} | 1.00x | |")
print(f"| ffmpeg decode only (seer-video's command) | {dec_fps:.1f} | {med(rows[2][2]):.3f} | | {dec_fps:.1f} |")
print()
print("every round (frames/s): seer " + ", ".join(f"{x:.2f}" for x in rows[0][1])
      + "; reference " + ", ".join(f"{x:.2f}" for x in rows[1][1])
      + "; decode only " + ", ".join(f"{x:.1f}" for x in rows[2][1]))
print("seer/reference per round: " + ", ".join(f"{a / b:.2f}x" for a, b in zip(rows[0][1], rows[1][1])))
print(f"reference timed from model loading on (its table figure); the whole Python process, imports included, "
      f"took {med(ref_proc):.2f} s (median) = {expected / med(ref_proc):.2f} frames/s")
seer_internal = [x[2] for x in seer if x[2] is not None]
if seer_internal:
    print(f"seer's own summary seconds (median): {med(seer_internal):.2f} s of {med([x[0] for x in seer]):.2f} s wall")
print(f"decode share: ffmpeg alone takes {med(dec) / med([x[0] for x in seer]) * 100:.0f}% of seer's wall time; "
      f"the reference spends {med([x[2] for x in ref]):.2f} s of {med([x[0] for x in ref]):.2f} s decoding + RGB conversion")
a = json.loads((out / "agreement.out").read_text().strip().splitlines()[-1]).get("agreement", {})
print()
print(f"agreement (v0.mp4, seer --encoding f32 vs reference, {a.get('compared')} frames; "
      f"seer frames at ms {a.get('seer_frames')}, reference {a.get('reference_frames')}):")
fmt = lambda x: "n/a" if x is None else f"{x:.7f} (1 - cos = {1 - x:.1e})"
print(f"  min cosine {fmt(a.get('min_cosine'))} (closest two different frames: {fmt(a.get('max_cosine_between_frames'))}); "
      f"with the video's mean embedding taken out: min {fmt(a.get('min_centred_cosine'))} "
      f"(closest two different frames: {fmt(a.get('max_centred_cosine_between_frames'))})")
print(f"  RGB conversion: seer = the ffmpeg CLI's format=rgb24 filter (libswscale with the CLI's flags); "
      f"reference = {ref[0][3]}")
if a.get("compared") != len(a.get("seer_frames") or []) or a.get("compared") != len(a.get("reference_frames") or []):
    problems.append("agreement: seer and the reference sampled different frame times")
for p in problems:
    print("PROBLEM:", p)
(out / "summary.json").write_text(json.dumps({
    "cpu": cpu, "threads": int(threads), "videos": videos, "frames": expected,
    "seer_frames_per_s": rows[0][1], "reference_frames_per_s": rows[1][1], "decode_only_frames_per_s": rows[2][1],
    "median": {"seer": seer_fps, "reference": ref_fps, "decode_only": dec_fps, "ratio": seer_fps / ref_fps},
    "agreement": a, "problems": problems}, indent=1))
EOF
echo "kept in $out"
