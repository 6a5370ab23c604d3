//! The web page's corner cases in a real headless browser: the checks of
//! `scripts/web-checks/run.mjs` (tokens that are not printable ASCII, the
//! detail view across a re-index, escaped file names, failed requests, models
//! named in the address bar, long words, classify and detect limits, filter
//! values, an unreachable server), against this build's `seer`. Needs what the
//! other browser tests need (`npm ci --prefix tests/browser`, /usr/bin/chromium),
//! which `.ci/run` installs.

use std::path::Path;
use std::process::Command;

use seer_testkit::{repo_root, shared_data};

#[test]
fn the_pages_corner_cases_hold_in_a_real_browser() {
    let browser_dir = repo_root().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir()
            && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs `npm ci --prefix tests/browser` and Debian's chromium; .ci/run installs both"
    );
    let out = Command::new("node")
        .arg(repo_root().join("scripts/web-checks/run.mjs"))
        .env("SEER_BIN", env!("CARGO_BIN_EXE_seer"))
        .env("PLAYWRIGHT_DIR", &browser_dir)
        .env("SEER_SHARED_DATA", shared_data())
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
