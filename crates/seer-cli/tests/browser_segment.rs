//! Click-to-segment, boxes for typed labels and "show where" on the page in a
//! real headless browser (tests/browser/segment.mjs), with the tiny SAM and
//! OWL-ViT fixtures. Needs what the other browser tests need (`npm ci
//! --prefix tests/browser`, /usr/bin/chromium).

mod common;

use std::path::Path;
use std::process::Command;

use common::server::{index_with, serve};
use seer_testkit::{model_fixture, repo_root, shared_data};

#[test]
fn the_page_segments_a_clicked_photo_and_boxes_what_is_asked_for() {
    let browser_dir = repo_root().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir()
            && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs `npm ci --prefix tests/browser` and Debian's chromium; .ci/run installs both"
    );
    let index = tempfile::tempdir().unwrap();
    index_with(
        index.path(),
        &[&shared_data().join("smoke/skimage")],
        &model_fixture("openclip-vit"),
    );
    let sam = repo_root().join("fixtures/sam/sam-tiny");
    let owl = repo_root().join("fixtures/owlvit/owlvit-tiny");
    let server = serve(
        index,
        &[
            "--segment-model",
            sam.to_str().unwrap(),
            "--detect-model",
            owl.to_str().unwrap(),
        ],
    );
    let shot = server.index.path().join("segment.png");
    let out = Command::new("node")
        .arg(browser_dir.join("segment.mjs"))
        .env("SEER_URL", &server.url)
        .env("SEER_QUERY", "a photo")
        .env("SEER_SCREENSHOT", &shot)
        .output()
        .expect("run node");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{log}");
    assert!(out.status.success(), "the browser test failed:\n{log}");
    assert!(shot.is_file(), "no screenshot");
}
