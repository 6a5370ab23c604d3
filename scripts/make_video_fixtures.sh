#!/bin/sh
# Writes fixtures/video/ (the seer-video tests' inputs) with ffmpeg's lavfi
# sources; run from the repository root: `sh scripts/make_video_fixtures.sh`.
# Made with ffmpeg 5.1 (Debian 12). `-fflags +bitexact` / `-bitexact` keep the
# files free of version strings; encoders are single-threaded for determinism.
#
#   colors.mkv      ffv1 (lossless, bgr0), 64x48, 10 fps, 6.4 s: each second one
#                   solid colour (COLORS below, also in colors.json), 7 colours.
#   clip.mp4        h264 (libx264, yuv420p), 96x64, 10 fps, 5 s testsrc, +faststart.
#   rotated.mp4     clip.mp4's stream with rotation metadata 90 (frames 64x96).
#   clip.webm       vp9, 96x64, 10 fps, 3 s testsrc.
#   audio-only.m4a  1 s 440 Hz sine in AAC: "has no video stream".
#   truncated.mp4   the first half of clip.mp4's bytes (index first: decodes partly).
#   not-a-video.mp4 a line of text.
#   empty.mp4       0 bytes.
#   playlist.mp4    an HLS (m3u8) playlist pointing at file:/etc/hostname: refused.
#   no-duration.webm  written to a pipe, so it has no duration: 1 s of red video
#                   (32x24, 10 fps, vp9) and 3 s of audio.
#   short-video.mkv 1 s of green video (32x24, 10 fps, ffv1 bgr0) in a 3 s file
#                   (3 s of audio): the container outlasts the video.
set -eu
out=fixtures/video
mkdir -p "$out"
ff="ffmpeg -nostdin -hide_banner -loglevel error -y"

# Solid colour per second, RGB hex; keep colors.json in step.
COLORS="FF0000 00FF00 0000FF FFFF00 00FFFF FF00FF 804020"
inputs=""
n=0
for c in $COLORS; do
  inputs="$inputs -f lavfi -i color=c=0x$c:s=64x48:r=10:d=1,format=bgr0"
  n=$((n + 1))
done
filter=""
i=0
while [ $i -lt $n ]; do filter="$filter[$i:v]"; i=$((i + 1)); done
# shellcheck disable=SC2086
$ff $inputs -filter_complex "${filter}concat=n=$n:v=1:a=0,format=bgr0,trim=duration=6.4[v]" \
  -map "[v]" -c:v ffv1 -level 3 -threads 1 -g 1 -fflags +bitexact -flags +bitexact \
  "$out/colors.mkv"
printf '{"fps": 10, "duration": 6.4, "width": 64, "height": 48, "colors": [' > "$out/colors.json"
sep=""
for c in $COLORS; do printf '%s"%s"' "$sep" "$c" >> "$out/colors.json"; sep=", "; done
printf ']}\n' >> "$out/colors.json"

x264="-c:v libx264 -preset veryfast -threads 1 -pix_fmt yuv420p -x264-params bitexact=1"
$ff -f lavfi -i testsrc=s=96x64:r=10:d=5 $x264 -movflags +faststart \
  -fflags +bitexact -flags +bitexact "$out/clip.mp4"
$ff -i "$out/clip.mp4" -c copy -metadata:s:v:0 rotate=90 -movflags +faststart \
  -fflags +bitexact -flags +bitexact "$out/rotated.mp4"
rot=$(ffprobe -v error -show_streams -show_entries stream_side_data=rotation "$out/rotated.mp4" | grep -Ec 'rotation=-?90' || true)
[ "$rot" -ge 1 ] || { echo "rotated.mp4 has no rotation side data" >&2; exit 1; }
$ff -f lavfi -i testsrc=s=96x64:r=10:d=3 -c:v libvpx-vp9 -b:v 50k -threads 1 -row-mt 0 \
  -fflags +bitexact -flags +bitexact "$out/clip.webm"
$ff -f lavfi -i sine=frequency=440:duration=1 -c:a aac -b:a 32k \
  -fflags +bitexact -flags +bitexact "$out/audio-only.m4a"

size=$(wc -c < "$out/clip.mp4")
head -c $((size / 2)) "$out/clip.mp4" > "$out/truncated.mp4"
echo "This is a text file, not a video." > "$out/not-a-video.mp4"
: > "$out/empty.mp4"
printf '#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:/etc/hostname\n#EXT-X-ENDLIST\n' > "$out/playlist.mp4"
$ff -f lavfi -i "color=c=red:s=32x24:r=10:d=1,format=yuv420p" -f lavfi -i sine=d=3 \
  -c:v libvpx-vp9 -b:v 20k -threads 1 -row-mt 0 -c:a libopus -b:a 8k \
  -fflags +bitexact -flags +bitexact -f webm pipe:1 > "$out/no-duration.webm"
$ff -f lavfi -i "color=c=0x00FF00:s=32x24:r=10:d=1,format=bgr0" -f lavfi -i sine=d=3 \
  -c:v ffv1 -level 3 -threads 1 -g 1 -c:a libopus -b:a 8k -ar 8000 \
  -fflags +bitexact -flags +bitexact "$out/short-video.mkv"
