//! The web page end to end in a real headless browser (Debian's chromium driven
//! by playwright-core): type a query and see results, upload an image, see the
//! classify chart. Needs `npm ci --prefix tests/browser` and /usr/bin/chromium,
//! which `.ci/run` installs.

mod common;

use std::path::Path;
use std::process::Command;

use common::server::start;
use seer_testkit::{repo_root, shared_data};

#[test]
fn the_page_searches_uploads_and_classifies_in_a_real_browser() {
    let browser_dir = repo_root().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs `npm ci --prefix tests/browser` and Debian's chromium (`apt-get install chromium`); .ci/run installs both"
    );
    let server = start(&[]);
    let screenshot = server.index.path().join("page.png");
    let out = Command::new("node")
        .arg(browser_dir.join("e2e.mjs"))
        .env("SEER_URL", &server.url)
        .env(
            "SEER_TEST_IMAGE",
            shared_data().join("smoke/skimage/chelsea.png"),
        )
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
    assert!(screenshot.is_file(), "no screenshot was taken");
}
