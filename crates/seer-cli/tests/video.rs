//! Videos end to end through the `seer` binary: `seer index` samples frames
//! with ffmpeg, `seer search` answers with the video and the time of its best
//! frame (reranked from that frame), and `seer status` counts videos and
//! frames (`seer embed` of a video: tests/video_embed.rs).
//! fixtures/video/colors.mkv shows one solid colour a second (colors.json),
//! so the frame at 3 s is yellow.
//!
//! These tests need ffmpeg on PATH: without it they fail and say to install
//! it, as skipping would hide that nothing was tested.

use std::path::Path;
use std::process::{Command, Output};

use seer_index::Store;
use seer_testkit::{repo_root, shared_data, tokenizer_file};
use serde_json::Value;

mod common;
use common::video::{arg, clip, fixture, need_ffmpeg, solid_png};

fn seer_command(index: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_seer"));
    c.args(args)
        .env("SEER_INDEX", index)
        .env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("SEER_FFMPEG");
    c
}

/// `seer ARGS` on `index`; with `path` Some, PATH is that (to hide ffmpeg).
fn seer_path(index: &Path, args: &[&str], path: Option<&Path>) -> Output {
    let mut c = seer_command(index, args);
    if let Some(p) = path {
        c.env("PATH", p);
    }
    c.output().expect("run seer")
}

fn seer(index: &Path, args: &[&str]) -> Output {
    seer_path(index, args, None)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "seer failed: {}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn json(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{e}: {s}"))
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines().map(json).collect()
}

/// A folder with colors.mkv and one sample photo.
fn video_and_photo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("colors.mkv"), dir.path().join("colors.mkv")).unwrap();
    let photo = shared_data().join("imagenet-samples/images/n01440764_tench.JPEG");
    std::fs::copy(photo, dir.path().join("tench.jpg")).unwrap();
    dir
}

fn index_json(index: &Path, folder: &Path, extra: &[&str]) -> Value {
    let model = clip();
    let mut args = vec![
        "index",
        folder.to_str().unwrap(),
        "--model",
        &model,
        "--json",
    ];
    args.extend(extra);
    json(&ok(seer(index, &args)))
}

/// (videos, frames) of the only model, from `seer status --json`.
fn status_counts(index: &Path) -> (u64, u64) {
    let s = json(&ok(seer(index, &["status", "--json"])));
    let m = &s["models"][0];
    (m["videos"].as_u64().unwrap(), m["frames"].as_u64().unwrap())
}

/// The result for a path ending in `name`.
fn hit<'a>(hits: &'a [Value], name: &str) -> &'a Value {
    hits.iter()
        .find(|h| h["path"].as_str().unwrap().ends_with(name))
        .unwrap_or_else(|| panic!("no {name} among {hits:?}"))
}

#[test]
fn a_video_is_indexed_counted_and_found_at_its_time() {
    need_ffmpeg();
    let folder = video_and_photo();
    let idx = tempfile::tempdir().unwrap();
    let s = index_json(idx.path(), folder.path(), &[]);
    assert_eq!(s["added"], 2, "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    // 6.4 s at one frame every 2 s: frames at 1, 3 and 5 s.
    assert_eq!(s["video_frames"], 3, "{s}");
    assert_eq!(s["videos_without_ffmpeg"], 0, "{s}");

    assert_eq!(status_counts(idx.path()), (1, 3));
    let text = ok(seer(idx.path(), &["status"]));
    assert!(text.contains("2 vectors (1 video, 3 frames)"), "{text}");

    // A text query: the video carries its best frame's time, the photo none.
    let hits = json_lines(&ok(seer(idx.path(), &["search", "a fish", "--json"])));
    assert_eq!(hits.len(), 2, "{hits:?}");
    let video = hit(&hits, "colors.mkv");
    let time = video["time"].as_f64().expect("a video hit has a time");
    assert!([1.0, 3.0, 5.0].contains(&time), "{video}");
    let photo = hit(&hits, "tench.jpg");
    let keys: Vec<&String> = photo.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["path", "score"],
        "a photo's result is as before: {photo}"
    );

    // A yellow image finds the video at 3 s, where it is yellow.
    let pictures = tempfile::tempdir().unwrap();
    let yellow = solid_png(pictures.path(), [255, 255, 0]);
    let hits = json_lines(&ok(seer(
        idx.path(),
        &["search", "--image", yellow.to_str().unwrap(), "--json"],
    )));
    assert!(
        hits[0]["path"].as_str().unwrap().ends_with("colors.mkv"),
        "{hits:?}"
    );
    assert_eq!(hits[0]["time"].as_f64(), Some(3.0), "{hits:?}");
    let lines = ok(seer(
        idx.path(),
        &["search", "--image", yellow.to_str().unwrap()],
    ));
    let first = lines.lines().next().unwrap();
    assert!(first.ends_with("colors.mkv  @ 0:03.0"), "{lines}");
    assert!(
        lines
            .lines()
            .nth(1)
            .is_some_and(|l| l.ends_with("tench.jpg")),
        "{lines}"
    );

    // More like the video: its stored vector (the mean of its frames); the
    // video is not among its own results.
    let like = folder.path().join("colors.mkv");
    let hits = json_lines(&ok(seer(
        idx.path(),
        &["search", "--like", like.to_str().unwrap(), "--json"],
    )));
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(
        hits[0]["path"].as_str().unwrap().ends_with("tench.jpg"),
        "{hits:?}"
    );
    let store = Store::open_read_only(idx.path()).unwrap();
    let model = store.choose_model(None).unwrap();
    let id = store.id_of(&seer_index::pathcodec::to_stored(
        &like.canonicalize().unwrap(),
    ));
    assert!(id.unwrap().is_some(), "the video is one file of the index");
    // And like the photo: the video is found, at a frame's time.
    let tench = folder.path().join("tench.jpg");
    let hits = json_lines(&ok(seer(
        idx.path(),
        &["search", "--like", tench.to_str().unwrap(), "--json"],
    )));
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(hits[0]["time"].is_f64(), "{hits:?}");
    assert_eq!(model.vectors, 2);
}

#[test]
fn frame_interval_and_max_frames_set_the_sampling() {
    need_ffmpeg();
    let folder = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("colors.mkv"), folder.path().join("colors.mkv")).unwrap();
    let idx = tempfile::tempdir().unwrap();
    let s = index_json(idx.path(), folder.path(), &["--frame-interval", "1"]);
    // Midpoints of whole seconds while under 6.4 s: 0.5 … 5.5.
    assert_eq!(s["video_frames"], 6, "{s}");
    let times = frame_times(idx.path());
    assert_eq!(times, [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]);

    let idx = tempfile::tempdir().unwrap();
    let s = index_json(idx.path(), folder.path(), &["--max-frames", "2"]);
    assert_eq!(s["video_frames"], 2, "{s}");
    assert_eq!(status_counts(idx.path()), (1, 2));

    for bad in ["0", "abc", "nan", "-1", "inf"] {
        let flag = format!("--frame-interval={bad}");
        let o = seer(
            idx.path(),
            &[
                "index",
                folder.path().to_str().unwrap(),
                "--model",
                &clip(),
                &flag,
            ],
        );
        assert_eq!(
            o.status.code(),
            Some(2),
            "--frame-interval {bad}: {}",
            stderr(&o)
        );
        assert!(
            stderr(&o).contains("--frame-interval"),
            "--frame-interval {bad}: {}",
            stderr(&o)
        );
    }
}

/// The times of the only video's frames.
fn frame_times(index: &Path) -> Vec<f64> {
    let store = Store::open_read_only(index).unwrap();
    let model = store.choose_model(None).unwrap();
    let (ids, _) = store.ids_and_paths(&model).unwrap();
    let frames: Vec<_> = ids
        .iter()
        .map(|id| store.frames_of(*id, &model).unwrap())
        .find(|f| !f.is_empty())
        .expect("a video");
    frames.iter().map(|f| f.time).collect()
}

#[test]
fn without_ffmpeg_videos_wait_and_the_next_run_indexes_them() {
    need_ffmpeg();
    let folder = video_and_photo();
    let idx = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let model = clip();
    let args = [
        "index",
        folder.path().to_str().unwrap(),
        "--model",
        &model,
        "--json",
    ];
    let o = seer_path(idx.path(), &args, Some(empty.path()));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = json(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(s["added"], 1, "{s}");
    assert_eq!(s["videos_without_ffmpeg"], 1, "{s}");
    assert!(stderr(&o).contains("ffmpeg"), "{}", stderr(&o));
    assert_eq!(status_counts(idx.path()), (0, 0));

    let s = index_json(idx.path(), folder.path(), &[]);
    assert_eq!(
        (s["added"].as_u64(), s["video_frames"].as_u64()),
        (Some(1), Some(3)),
        "{s}"
    );
    assert_eq!(s["videos_without_ffmpeg"], 0, "{s}");
    assert_eq!(status_counts(idx.path()), (1, 3));

    // An ffmpeg asked for by name must be there.
    let o = seer(
        idx.path(),
        &[
            "index",
            folder.path().to_str().unwrap(),
            "--model",
            &model,
            "--ffmpeg",
            "/nonexistent/ffmpeg",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nonexistent/ffmpeg"), "{}", stderr(&o));

    // Searching needs no ffmpeg; reranking a video hit without it keeps the
    // hit in its order and says so once.
    let o = seer_path(
        idx.path(),
        &["search", "a fish", "--json"],
        Some(empty.path()),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json_lines(&String::from_utf8_lossy(&o.stdout)).len(), 2);
    let matcher = arg(&repo_root().join("fixtures/blip/retrieval-tiny"));
    let o = seer_path(
        idx.path(),
        &["search", "a fish", "--rerank", &matcher, "--json"],
        Some(empty.path()),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let hits = json_lines(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert!(
        hit(&hits, "tench.jpg")["itm_probability"].is_f64(),
        "{hits:?}"
    );
    let video = hit(&hits, "colors.mkv");
    assert!(video.get("itm_probability").is_none(), "{video}");
    assert!(video["time"].is_f64(), "{video}");
    let warnings: Vec<&str> = std::str::from_utf8(&o.stderr)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("ffmpeg") && warnings[0].contains("1 video hit"),
        "{warnings:?}"
    );

    // One asked for by name (here through SEER_FFMPEG) must be there.
    let o = seer_command(idx.path(), &["search", "a fish", "--rerank", &matcher])
        .env("SEER_FFMPEG", "/nonexistent/ffmpeg")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nonexistent/ffmpeg"), "{}", stderr(&o));
}

#[test]
fn reranking_reads_a_video_hit_as_its_frame_at_the_hits_time() {
    need_ffmpeg();
    let folder = video_and_photo();
    let idx = tempfile::tempdir().unwrap();
    index_json(idx.path(), folder.path(), &[]);
    let matcher = repo_root().join("fixtures/blip/retrieval-tiny");
    let query = "a yellow square";
    let hits = json_lines(&ok(seer(
        idx.path(),
        &["search", query, "--rerank", &arg(&matcher), "--json"],
    )));
    assert_eq!(hits.len(), 2, "{hits:?}");
    let video = hit(&hits, "colors.mkv");
    let time = video["time"].as_f64().unwrap();
    let p = video["itm_probability"]
        .as_f64()
        .expect("the video reranked");
    // The probability is the model's for the frame shown at that time.
    let model =
        seer_engine::LoadedModel::load(matcher.to_str().unwrap(), &Default::default()).unwrap();
    let head = model.matcher().unwrap();
    let ffmpeg = seer_video::Ffmpeg::find(None).unwrap();
    let frame = ffmpeg
        .frame_at(&folder.path().join("colors.mkv"), time, &Default::default())
        .unwrap();
    let want = head
        .match_texts(head.preprocess(&frame.image), 1, &[query.to_string()])
        .unwrap()[0];
    assert!(
        (want.itm_probability as f64 - p).abs() < 1e-4,
        "{want:?} vs {video}"
    );
}

#[test]
fn damaged_videos_fail_by_name_and_the_rest_is_indexed() {
    need_ffmpeg();
    let folder = video_and_photo();
    let damaged = ["not-a-video.mp4", "empty.mp4", "playlist.mp4"];
    // Half of clip.mp4: indexed from the frames before the cut.
    std::fs::copy(
        fixture("truncated.mp4"),
        folder.path().join("truncated.mp4"),
    )
    .unwrap();
    for name in damaged {
        std::fs::copy(fixture(name), folder.path().join(name)).unwrap();
    }
    let idx = tempfile::tempdir().unwrap();
    let model = clip();
    let o = seer(
        idx.path(),
        &[
            "index",
            folder.path().to_str().unwrap(),
            "--model",
            &model,
            "--json",
        ],
    );
    // As for photos that fail: the run goes on, and exits with 1.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let s = json(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(s["added"], 3, "{s}");
    assert_eq!(s["failed"], 3, "{s}");
    // colors.mkv's 3 and truncated.mp4's one (at 1 s; the cut is before 3 s).
    assert_eq!(s["video_frames"], 4, "{s}");
    let err = stderr(&o);
    for name in damaged {
        let path = folder.path().canonicalize().unwrap().join(name);
        let prefix = format!("error: {}: ", path.display());
        let line = err
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no error line for {name}: {err}"));
        assert!(line.len() > prefix.len() + 5, "a cause: {line}");
    }
    assert_eq!(status_counts(idx.path()), (2, 4));
    // The failures are listed by `seer status` with their causes.
    let status = json(&ok(seer(idx.path(), &["status", "--json"])));
    assert_eq!(status["failures"].as_array().unwrap().len(), 3, "{status}");
}

#[test]
fn no_videos_takes_indexed_videos_out() {
    need_ffmpeg();
    let folder = video_and_photo();
    let idx = tempfile::tempdir().unwrap();
    index_json(idx.path(), folder.path(), &[]);
    assert_eq!(status_counts(idx.path()), (1, 3));
    let s = index_json(idx.path(), folder.path(), &["--no-videos"]);
    assert_eq!(s["removed"], 1, "{s}");
    assert_eq!(status_counts(idx.path()), (0, 0));
    let hits = json_lines(&ok(seer(idx.path(), &["search", "a fish", "--json"])));
    assert_eq!(hits.len(), 1, "{hits:?}");
    let text = ok(seer(idx.path(), &["status"]));
    assert!(
        text.contains(": 1 vectors, "),
        "a photo index's line as before: {text}"
    );
}

#[test]
fn a_frames_vector_is_the_vector_of_that_frame_as_a_photo() {
    need_ffmpeg();
    let folder = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("colors.mkv"), folder.path().join("colors.mkv")).unwrap();
    let idx = tempfile::tempdir().unwrap();
    index_json(
        idx.path(),
        folder.path(),
        &["--encoding", "f32", "--frame-interval", "1"],
    );
    let store = Store::open_read_only(idx.path()).unwrap();
    let model = store.choose_model(None).unwrap();
    let (ids, _) = store.ids_and_paths(&model).unwrap();
    let frames = store.frames_of(ids[0], &model).unwrap();
    let pictures = tempfile::tempdir().unwrap();
    // Second 3 (the frame at 3.5 s) is yellow, second 0 red.
    for (rgb, time) in [([255, 255, 0], 3.5), ([255, 0, 0], 0.5)] {
        let png = solid_png(pictures.path(), rgb);
        let out = json(&ok(seer(
            idx.path(),
            &[
                "embed",
                "--model",
                &clip(),
                "--image",
                png.to_str().unwrap(),
                "--json",
            ],
        )));
        let photo: Vec<f64> = out["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let frame = frames
            .iter()
            .find(|f| f.time == time)
            .expect("a frame then");
        assert_eq!(frame.vector.len(), photo.len());
        let dot: f64 = frame
            .vector
            .iter()
            .zip(&photo)
            .map(|(a, b)| *a as f64 * b)
            .sum();
        let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
        let cos = dot
            / norm(&mut frame.vector.iter().map(|&x| x as f64))
            / norm(&mut photo.iter().copied());
        assert!(cos >= 0.99999, "frame at {time} s vs photo: cosine {cos}");
    }
}

#[test]
fn hybrid_search_carries_a_videos_time() {
    need_ffmpeg();
    let folder = video_and_photo();
    let idx = tempfile::tempdir().unwrap();
    let captioner = arg(&repo_root().join("fixtures/blip/caption-tiny"));
    let model = clip();
    let index = [
        "index",
        folder.path().to_str().unwrap(),
        "--model",
        &model,
        "--caption-model",
        &captioner,
    ];
    ok(seer(idx.path(), &index));
    let args = ["search", "a fish", "--mode", "hybrid"];
    let hits = json_lines(&ok(seer(idx.path(), &[&args[..], &["--json"]].concat())));
    assert_eq!(hits.len(), 2, "{hits:?}");
    let video = hit(&hits, "colors.mkv");
    assert!(video["time"].is_f64() && video["fused"].is_f64(), "{video}");
    assert!(hit(&hits, "tench.jpg").get("time").is_none(), "{hits:?}");
    let time = video["time"].as_f64().unwrap();
    let lines = ok(seer(idx.path(), &args));
    // The video's caption (of its most typical frame) follows, as a photo's.
    let caption = video["caption"].as_str().expect("the video is captioned");
    let want = format!("colors.mkv  @ 0:0{time:.1}  [vector]  — {caption}");
    assert!(lines.lines().any(|l| l.ends_with(&want)), "{want}: {lines}");
}

/// `seer index --caption-model` captions a video by its frame most like the
/// whole video: the caption is the one `seer caption` writes for a picture of
/// that frame's colour, and words search finds the video by it. Without
/// ffmpeg the video waits (a warning, not a failure) while photos are
/// captioned.
#[test]
fn a_video_is_captioned_by_its_most_typical_frame_and_found_by_words() {
    need_ffmpeg();
    let folder = video_and_photo();
    let idx = tempfile::tempdir().unwrap();
    let captioner = arg(&repo_root().join("fixtures/blip/caption-tiny"));
    index_json(idx.path(), folder.path(), &[]);
    let empty = tempfile::tempdir().unwrap();
    let args = [
        "index",
        folder.path().to_str().unwrap(),
        "--caption-model",
        &captioner,
        "--json",
    ];
    let o = seer_path(idx.path(), &args, Some(empty.path()));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let waiting = json_lines(&String::from_utf8_lossy(&o.stdout));
    let run = waiting.last().unwrap();
    assert_eq!(
        (
            run["captioned"].as_u64(),
            run["videos_without_ffmpeg"].as_u64(),
            run["failed"].as_u64()
        ),
        (Some(1), Some(1), Some(0)),
        "{run}"
    );
    assert!(
        stderr(&o).contains("1 video not captioned: ffmpeg was not found"),
        "{}",
        stderr(&o)
    );

    let lines = json_lines(&ok(seer(idx.path(), &args)));
    let run = lines.last().unwrap();
    assert_eq!(
        (run["captioned"].as_u64(), run["failed"].as_u64()),
        (Some(1), Some(0)),
        "{run}"
    );
    let store = Store::open_read_only(idx.path()).unwrap();
    let video =
        seer_index::pathcodec::to_stored(&folder.path().canonicalize().unwrap().join("colors.mkv"));
    let id = store.id_of(&video).unwrap().unwrap();
    let time = store.representative_frame(id).unwrap().unwrap();
    let caption = store.caption_of(id).unwrap().unwrap().text;

    // colors.mkv shows colors.json's colours a second each.
    let colours: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("colors.json")).unwrap()).unwrap();
    let hex = colours["colors"][time as usize].as_str().unwrap();
    let rgb: Vec<u8> = (0..3)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let pictures = tempfile::tempdir().unwrap();
    let picture = solid_png(pictures.path(), [rgb[0], rgb[1], rgb[2]]);
    let of_picture = json(&ok(seer(
        idx.path(),
        &["caption", &arg(&picture), "--model", &captioner, "--json"],
    )));
    assert_eq!(of_picture["caption"].as_str(), Some(caption.as_str()));

    let word = seer_index::words::query_words(&caption)
        .into_iter()
        .next()
        .expect("the caption has a word that is not a stop word");
    let found = json_lines(&ok(seer(
        idx.path(),
        &["search", &word, "--mode", "words", "--json"],
    )));
    assert!(
        found
            .iter()
            .any(|h| h["path"].as_str().unwrap().ends_with("colors.mkv")),
        "{word}: {found:?}"
    );
}
