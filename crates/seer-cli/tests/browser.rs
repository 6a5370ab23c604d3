//! The web page end to end in a real headless browser (Debian's chromium driven
//! by playwright-core): search as you type, paging on scroll, the detail view and
//! its keyboard, "more like this", the URL (reload, back, forward), the date
//! filter, upload, the classify chart, the duplicates panel, the phone layout
//! and, with several models, the model picker. Needs
//! `npm ci --prefix tests/browser` and /usr/bin/chromium, which `.ci/run` installs.

mod common;

use std::path::Path;
use std::process::Command;

use common::exif::dated_photos;
use common::server::{index_with, serve, start_on, Server};
use seer_testkit::{model_fixture, repo_root, shared_data};

#[test]
fn the_page_searches_uploads_and_classifies_in_a_real_browser() {
    // The smoke photos (more than one page of results) and three with EXIF capture
    // times, two of them in the range the date-filter check uses.
    let dated = dated_photos();
    let server = start_on(&[&shared_data().join("smoke"), dated.path()], &[]);
    run_e2e(&server);
}

/// The same page over CLIP and the image-only DINOv2 fixture, served together:
/// everything above with the default model (CLIP), then the model picker.
#[test]
fn the_page_picks_among_several_models_in_a_real_browser() {
    let dated = dated_photos();
    let index = tempfile::tempdir().unwrap();
    let folders = [&shared_data().join("smoke"), dated.path()];
    for model in [
        model_fixture("openclip-vit"),
        repo_root().join("fixtures/families/dinov2-tiny"),
    ] {
        index_with(index.path(), &folders, &model);
    }
    run_e2e(&serve(index, &[]));
}

/// Runs tests/browser/e2e.mjs against `server`; it fails with the script's log.
fn run_e2e(server: &Server) {
    let browser_dir = repo_root().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs `npm ci --prefix tests/browser` and Debian's chromium (`apt-get install chromium`); .ci/run installs both"
    );
    let screenshot = server.index.path().join("page.png");
    let out = Command::new("node")
        .arg(browser_dir.join("e2e.mjs"))
        .env("SEER_URL", &server.url)
        .env(
            "SEER_TEST_IMAGE",
            shared_data().join("smoke/skimage/chelsea.png"),
        )
        .env("SEER_DATE_FROM", "2020-01-01")
        .env("SEER_DATE_TO", "2021-12-31")
        .env("SEER_SCREENSHOT", &screenshot)
        .output()
        .expect("run node");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{log}");
    assert!(out.status.success(), "the browser test failed:\n{log}");
    for shot in ["page.png", "page-lightbox.png", "page-phone.png"] {
        assert!(
            server.index.path().join(shot).is_file(),
            "no screenshot {shot}"
        );
    }
}
