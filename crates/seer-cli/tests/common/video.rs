//! What the video command tests share: the fixture videos, the model they
//! run, and ffmpeg, which they need (without it they fail and say so:
//! skipping would hide that nothing was tested).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use seer_testkit::{model_fixture, repo_root};

/// A path as a command-line argument.
pub fn arg(p: &Path) -> String {
    p.display().to_string()
}

/// The tiny OpenCLIP fixture model's folder.
pub fn clip() -> String {
    arg(&model_fixture("openclip-vit"))
}

/// `fixtures/video/NAME`.
pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("fixtures/video").join(name)
}

/// Fails the test, saying to install ffmpeg, when it is not on PATH.
pub fn need_ffmpeg() {
    if let Err(e) = seer_video::Ffmpeg::find(None) {
        panic!("these tests need ffmpeg on PATH: install ffmpeg (e.g. `apt install ffmpeg`): {e}");
    }
}

/// A 64x48 PNG of one colour (as colors.mkv's frames), written into `dir`.
pub fn solid_png(dir: &Path, rgb: [u8; 3]) -> PathBuf {
    let path = dir.join(format!(
        "solid-{:02x}{:02x}{:02x}.png",
        rgb[0], rgb[1], rgb[2]
    ));
    seer_image::image::RgbImage::from_pixel(64, 48, seer_image::image::Rgb(rgb))
        .save(&path)
        .unwrap();
    path
}
