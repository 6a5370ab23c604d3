//! Videos made to be awkward, through the `seer` binary: frames larger than
//! --max-pixels. The videos are made here with ffmpeg (lavfi test sources),
//! which these tests need: without it they fail and say to install it.

use std::path::Path;
use std::process::{Command, Output};

use seer_testkit::{model_fixture, tokenizer_file};
use serde_json::Value;

mod common;
use common::video::need_ffmpeg;

/// A `seconds`-second test-pattern video of `w`x`h` at `path`.
fn make_video(path: &Path, w: u32, h: u32, seconds: u32) {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size={w}x{h}:rate=5"))
        .args(["-t", &seconds.to_string(), "-c:v", "mpeg4", "-y"])
        .arg(path)
        .output()
        .expect("run ffmpeg");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn seer(index: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seer"))
        .args(args)
        .env("SEER_INDEX", index)
        .env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("SEER_FFMPEG")
        .output()
        .expect("run seer")
}

/// --max-pixels guards a video's frames as it guards photos: a video whose
/// frames are larger fails by name with the limit as its cause (before a
/// frame buffer is allocated), and the rest of the batch is indexed.
#[test]
fn max_pixels_refuses_a_video_with_larger_frames_by_name() {
    need_ffmpeg();
    let folder = tempfile::tempdir().unwrap();
    make_video(&folder.path().join("big.mkv"), 320, 240, 2);
    make_video(&folder.path().join("small.mkv"), 64, 48, 2);
    let idx = tempfile::tempdir().unwrap();
    let model = model_fixture("openclip-vit");
    let o = seer(
        idx.path(),
        &[
            "index",
            folder.path().to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--max-pixels",
            "10000",
            "--json",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{err}");
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["added"], 1, "{s}");
    assert_eq!(s["failed"], 1, "{s}");
    let big = folder.path().canonicalize().unwrap().join("big.mkv");
    let line = err
        .lines()
        .find(|l| l.starts_with(&format!("error: {}: ", big.display())))
        .unwrap_or_else(|| panic!("no error naming big.mkv: {err}"));
    assert!(
        line.contains("320x240") && line.contains("10000"),
        "the cause names the size and the limit: {line}"
    );
}
