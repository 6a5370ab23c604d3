//! `seer embed --image VIDEO` through the `seer` binary: a vector per sampled
//! frame, with its time, in every output (--json, --out, the plain listing).
//! fixtures/video/colors.mkv shows one solid colour a second (colors.json),
//! losslessly, so its frame at 3 s embeds exactly as a yellow photo does.
//!
//! These tests need ffmpeg on PATH (except where PATH is emptied on purpose):
//! without it they fail and say to install it, as skipping would hide that
//! nothing was tested.

use std::path::Path;
use std::process::{Command, Output};

use seer_testkit::{read_json, repo_root, shared_data, tokenizer_file};
use serde_json::Value;

mod common;
use common::video::{arg, clip, fixture, need_ffmpeg, solid_png};

/// `seer embed --model openclip-vit ARGS`; with `path` Some, PATH is that
/// (to hide ffmpeg).
fn embed_path(args: &[&str], path: Option<&Path>) -> Output {
    let idx = tempfile::tempdir().unwrap();
    let model = clip();
    let mut c = Command::new(env!("CARGO_BIN_EXE_seer"));
    c.arg("embed")
        .args(["--model", &model])
        .args(args)
        .env("SEER_INDEX", idx.path())
        .env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("SEER_FFMPEG");
    if let Some(p) = path {
        c.env("PATH", p);
    }
    c.output().expect("run seer")
}

fn embed(args: &[&str]) -> Output {
    embed_path(args, None)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "seer failed: {}", stderr(&o));
    stdout(&o)
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `seer embed --image VIDEO FLAGS --json`, which must succeed: its lines.
fn frames_json(video: &Path, flags: &[&str]) -> Vec<Value> {
    let mut args = vec!["--image", video.to_str().unwrap()];
    args.extend_from_slice(flags);
    args.push("--json");
    json_lines(&ok(embed(&args)))
}

fn vector(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// colors.json's colour shown at `time` seconds.
fn color_at(time: f64) -> [u8; 3] {
    let colors = read_json(&fixture("colors.json"));
    let hex = colors["colors"][time.floor() as usize].as_str().unwrap();
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap();
    [byte(0), byte(2), byte(4)]
}

/// The shape and the f32 values of an .npy file.
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + len]).unwrap();
    assert!(header.contains("'<f4'"), "{header}");
    let shape = header.split("'shape': (").nth(1).unwrap();
    let shape: Vec<usize> = shape[..shape.find(')').unwrap()]
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let data = bytes[start + len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (shape, data)
}

#[test]
fn json_lines_give_each_frame_with_its_time_equal_to_the_photo_of_it() {
    need_ffmpeg();
    let video = fixture("colors.mkv");
    let out = frames_json(&video, &["--frame-interval", "2"]);
    let times: Vec<f64> = out.iter().map(|l| l["time"].as_f64().unwrap()).collect();
    assert_eq!(times, [1.0, 3.0, 5.0], "{out:?}");
    let pictures = tempfile::tempdir().unwrap();
    for line in &out {
        assert_eq!(line["input"], arg(&video), "{line}");
        assert_eq!(
            line.as_object().unwrap().len(),
            3,
            "input, time, embedding: {line}"
        );
        let time = line["time"].as_f64().unwrap();
        let png = solid_png(pictures.path(), color_at(time));
        let photo = json_lines(&ok(embed(&["--image", png.to_str().unwrap(), "--json"])));
        assert_eq!(photo.len(), 1);
        // A photo's line is as before: no time.
        assert!(photo[0].get("time").is_none(), "{}", photo[0]);
        assert_eq!(
            vector(&line["embedding"]),
            vector(&photo[0]["embedding"]),
            "the frame at {time} s vs the photo of its colour"
        );
    }
}

#[test]
fn frames_match_the_open_clip_reference() {
    need_ffmpeg();
    let reference = read_json(&fixture("reference.json"));
    assert_eq!(reference["interval"], 2.0);
    let videos = reference["videos"].as_object().unwrap();
    assert_eq!(videos.len(), 4);
    for (name, want) in videos {
        let video = fixture(name);
        let out = frames_json(&video, &["--frame-interval", "2"]);
        let want_times = want["times"].as_array().unwrap();
        let want_vectors = want["embeddings"].as_array().unwrap();
        assert_eq!(out.len(), want_times.len(), "{name}: {out:?}");
        for ((line, time), expected) in out.iter().zip(want_times).zip(want_vectors) {
            let (got_t, want_t) = (line["time"].as_f64().unwrap(), time.as_f64().unwrap());
            assert!((got_t - want_t).abs() < 1e-6, "{name}: {got_t} vs {want_t}");
            let (got, expected) = (vector(&line["embedding"]), vector(expected));
            assert_eq!(got.len(), expected.len(), "{name}");
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert!(
                    (g - e).abs() <= 1e-4,
                    "{name} at {want_t} s, dim {i}: {g} vs reference {e}"
                );
            }
        }
    }
}

#[test]
fn out_has_a_row_per_frame_named_with_its_time() {
    need_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let png = solid_png(dir.path(), [0, 0, 255]);
    let video = fixture("colors.mkv");
    let npy = dir.path().join("v.npy");
    let o = embed(&[
        "--image",
        png.to_str().unwrap(),
        video.to_str().unwrap(),
        "--frame-interval",
        "2",
        "--out",
        npy.to_str().unwrap(),
    ]);
    ok(o);
    let (shape, data) = read_npy(&npy);
    assert_eq!(shape, [4, 16]);
    let names = std::fs::read_to_string(dir.path().join("v.inputs.txt")).unwrap();
    let v = arg(&video);
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        [
            arg(&png),
            format!("{v}#t=1.000"),
            format!("{v}#t=3.000"),
            format!("{v}#t=5.000")
        ]
    );
    // Row 2 is the frame at 3 s, as --json gives it.
    let json = frames_json(&video, &["--frame-interval", "2"]);
    assert_eq!(
        &data[2 * 16..3 * 16],
        vector(&json[1]["embedding"]).as_slice()
    );
}

#[test]
fn the_plain_listing_has_a_line_per_frame_with_its_time() {
    need_ffmpeg();
    let video = fixture("colors.mkv");
    let out = ok(embed(&["--image", video.to_str().unwrap()]));
    let heads: Vec<&str> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
    let v = arg(&video);
    assert_eq!(
        heads,
        [
            format!("{v}#t=1.000"),
            format!("{v}#t=3.000"),
            format!("{v}#t=5.000")
        ]
    );
    assert!(out.lines().all(|l| l.ends_with("(16 dims)")), "{out}");
}

#[test]
fn max_frames_caps_the_frames() {
    need_ffmpeg();
    let video = fixture("colors.mkv");
    let out = frames_json(&video, &["--max-frames", "1"]);
    assert_eq!(out.len(), 1, "{out:?}");
    // Bad values are refused as `seer index` refuses them.
    for bad in [
        ["--max-frames", "0"],
        ["--frame-interval", "0"],
        ["--frame-interval", "-1"],
    ] {
        let o = embed(&["--image", video.to_str().unwrap(), bad[0], bad[1]]);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
    }
}

#[test]
fn without_ffmpeg_a_video_fails_by_name_and_the_rest_is_embedded() {
    let pictures = tempfile::tempdir().unwrap();
    let png = solid_png(pictures.path(), [0, 0, 255]);
    let video = fixture("clip.mp4");
    let empty = tempfile::tempdir().unwrap();
    let o = embed_path(
        &[
            "--image",
            video.to_str().unwrap(),
            png.to_str().unwrap(),
            "--json",
        ],
        Some(empty.path()),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = json_lines(&stdout(&o));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0]["input"], arg(&png));
    let want = format!(
        "error: {}: is a video, and reading its frames needs ffmpeg, which was not found (install ffmpeg, e.g. apt install ffmpeg, or give --ffmpeg PATH)",
        video.display()
    );
    assert!(stderr(&o).lines().any(|l| l == want), "{}", stderr(&o));
}

#[test]
fn a_broken_ffmpeg_given_by_name_is_an_error() {
    let video = fixture("colors.mkv");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-ffmpeg");
    let o = embed(&[
        "--image",
        video.to_str().unwrap(),
        "--ffmpeg",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains(&arg(&missing)), "{}", stderr(&o));
}

#[test]
fn a_damaged_video_fails_by_name_and_the_rest_is_embedded() {
    need_ffmpeg();
    let damaged = ["not-a-video.mp4", "empty.mp4"];
    let good = fixture("colors.mkv");
    let mut args = vec!["--image".to_string(), arg(&good)];
    args.extend(damaged.iter().map(|n| arg(&fixture(n))));
    args.push("--json".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = embed(&args);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = json_lines(&stdout(&o));
    assert_eq!(out.len(), 3, "colors.mkv's frames: {out:?}");
    assert!(out.iter().all(|l| l["input"] == arg(&good)), "{out:?}");
    let err = stderr(&o);
    for name in damaged {
        let prefix = format!("error: {}: ", fixture(name).display());
        let line = err
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no error line for {name}: {err}"));
        assert!(line.len() > prefix.len() + 5, "a cause: {line}");
    }
}

#[test]
fn a_folder_walk_takes_its_images_not_its_videos() {
    need_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("colors.mkv"), dir.path().join("colors.mkv")).unwrap();
    let photo = shared_data().join("imagenet-samples/images/n01440764_tench.JPEG");
    std::fs::copy(photo, dir.path().join("tench.jpg")).unwrap();
    // Beside the folder, a video named on its own: that one is embedded.
    let named = fixture("clip.webm");
    let o = embed(&[
        "--image",
        dir.path().to_str().unwrap(),
        named.to_str().unwrap(),
        "--json",
    ]);
    let out = json_lines(&ok(o));
    assert_eq!(out.len(), 2, "the photo and clip.webm's frame: {out:?}");
    assert!(
        out[0]["input"].as_str().unwrap().ends_with("tench.jpg"),
        "{out:?}"
    );
    assert!(out[0].get("time").is_none());
    assert_eq!(out[1]["input"], arg(&named));
    assert_eq!(out[1]["time"], 1.0);
}

/// `seer embed --model MODEL ARGS` (images only: no tokenizer needed).
fn embed_with(model: &Path, args: &[&str]) -> Output {
    let idx = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_seer"))
        .arg("embed")
        .args(["--model", &arg(model)])
        .args(args)
        .env("SEER_INDEX", idx.path())
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("SEER_FFMPEG")
        .output()
        .expect("run seer")
}

#[test]
fn raw_mean_and_patch_features_of_a_frame_are_those_of_the_photo_of_it() {
    need_ffmpeg();
    let dinov2 = repo_root().join("fixtures/families/dinov2-tiny");
    let video = fixture("colors.mkv");
    let dir = tempfile::tempdir().unwrap();
    let png = solid_png(dir.path(), color_at(3.0));
    let v = video.to_str().unwrap();
    let p = png.to_str().unwrap();
    let at3 = ["--frame-interval", "2", "--max-frames", "1000"];
    for extra in [
        &["--raw"][..],
        &["--features", "mean"],
        &["--features", "mean", "--raw"],
    ] {
        let frames = json_lines(&ok(embed_with(
            &dinov2,
            &[&["--image", v, "--json"][..], &at3, extra].concat(),
        )));
        assert_eq!(frames.len(), 3, "{extra:?}: {frames:?}");
        assert_eq!(frames[1]["time"], 3.0);
        let photo = json_lines(&ok(embed_with(
            &dinov2,
            &[&["--image", p, "--json"][..], extra].concat(),
        )));
        assert_eq!(
            vector(&frames[1]["embedding"]),
            vector(&photo[0]["embedding"]),
            "{extra:?}"
        );
    }
    // Patch: one [h, w, D] block per frame, the JSON lines naming each row.
    let npy = dir.path().join("grid.npy");
    let n = npy.to_str().unwrap();
    let o = embed_with(
        &dinov2,
        &[
            &["--image", v, "--features", "patch", "--out", n, "--json"][..],
            &at3,
        ]
        .concat(),
    );
    let lines = json_lines(&ok(o));
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[1]["row"], 1);
    assert_eq!(lines[1]["time"], 3.0);
    let (shape, grids) = read_npy(&npy);
    assert_eq!(shape.len(), 4, "{shape:?}");
    assert_eq!(shape[0], 3);
    let names = std::fs::read_to_string(dir.path().join("grid.inputs.txt")).unwrap();
    assert_eq!(names.lines().nth(1), Some(format!("{v}#t=3.000").as_str()));
    let photo_npy = dir.path().join("photo.npy");
    ok(embed_with(
        &dinov2,
        &[
            "--image",
            p,
            "--features",
            "patch",
            "--out",
            photo_npy.to_str().unwrap(),
        ],
    ));
    let (photo_shape, photo_grid) = read_npy(&photo_npy);
    assert_eq!(photo_shape[1..], shape[1..]);
    let block = photo_grid.len();
    assert_eq!(&grids[block..2 * block], photo_grid.as_slice());
}

#[test]
fn max_pixels_guards_frames_as_it_guards_photos() {
    need_ffmpeg();
    let video = fixture("colors.mkv");
    // Its frames are 64x48 = 3072 pixels.
    let o = embed(&[
        "--image",
        video.to_str().unwrap(),
        "--max-pixels",
        "3000",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    let prefix = format!("error: {}: ", video.display());
    assert!(
        stderr(&o).lines().any(|l| l.starts_with(&prefix)),
        "{}",
        stderr(&o)
    );
    let o = embed(&[
        "--image",
        video.to_str().unwrap(),
        "--max-pixels",
        "3072",
        "--json",
    ]);
    assert_eq!(json_lines(&ok(o)).len(), 3);
}
