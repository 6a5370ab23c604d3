//! The page's captions, questions and reranking in a real headless browser
//! (tests/browser/captions.mjs), over an index captioned by the tiny BLIP
//! fixture and a server with the VQA and matching fixtures. Needs what the
//! other browser test needs (`npm ci --prefix tests/browser`, /usr/bin/chromium).

mod common;

use std::path::Path;
use std::process::Command;

use common::server::{index_with, seer, serve};
use seer_testkit::{model_fixture, repo_root, shared_data};

#[test]
fn the_page_shows_captions_answers_questions_and_reranks() {
    let browser_dir = repo_root().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir()
            && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs `npm ci --prefix tests/browser` and Debian's chromium; .ci/run installs both"
    );
    let blip = |name: &str| repo_root().join("fixtures/blip").join(name);
    let index = tempfile::tempdir().unwrap();
    index_with(
        index.path(),
        &[&shared_data().join("smoke")],
        &model_fixture("openclip-vit"),
    );
    let captioned = seer()
        .args(["index", "--caption-model"])
        .arg(blip("caption-tiny"))
        .env("SEER_INDEX", index.path())
        .output()
        .unwrap();
    assert!(
        captioned.status.success(),
        "{}",
        String::from_utf8_lossy(&captioned.stderr)
    );
    // A word of a stored caption, which the page's search must find by its words.
    let word = {
        let store = seer_index::Store::open_read_only(index.path()).unwrap();
        let model = store.choose_model(None).unwrap();
        let (ids, _) = store.ids_and_paths(&model).unwrap();
        ids.iter()
            .filter_map(|id| store.caption_of(*id).unwrap())
            .find_map(|c| seer_index::words::query_words(&c.text).into_iter().next())
            .expect("a caption with a word that is not a stop word")
    };
    let server = serve(
        index,
        &[
            "--vqa-model",
            blip("vqa-tiny").to_str().unwrap(),
            "--match-model",
            blip("retrieval-tiny").to_str().unwrap(),
        ],
    );
    let shot = server.index.path().join("captions.png");
    let out = Command::new("node")
        .arg(browser_dir.join("captions.mjs"))
        .env("SEER_URL", &server.url)
        .env("SEER_QUERY", &word)
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
