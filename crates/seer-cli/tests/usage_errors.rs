//! Usage errors are refused once, before any image (exit 2, one message, no
//! `error: IMAGE: …` line per image), and what depends on one image fails that
//! image alone (exit 1, the rest go on); `seer segment --out` keeps every
//! cut-out of a run, even where inputs share a stem. On the tiny SAM and BLIP
//! fixtures (fixtures/sam, fixtures/blip) and the shared smoke images.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use seer_testkit::{repo_root, shared_data};
use serde_json::Value;

fn seer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seer"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env(
            "HF_HOME",
            std::env::temp_dir().join("seer-test-empty-hf-home"),
        )
        .output()
        .expect("run seer")
}

fn fixture(path: &str) -> String {
    repo_root()
        .join("fixtures")
        .join(path)
        .display()
        .to_string()
}

fn smoke(name: &str) -> PathBuf {
    shared_data().join("smoke").join(name)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Two images in a folder of their own: astronaut.png (512×512) and
/// red_apple.jpg (600×500).
fn good_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        smoke("skimage/astronaut.png"),
        dir.path().join("astronaut.png"),
    )
    .unwrap();
    std::fs::copy(
        smoke("misc/red_apple.jpg"),
        dir.path().join("red_apple.jpg"),
    )
    .unwrap();
    dir
}

/// Exit 2 with one message that contains `needle`, nothing on stdout, and no
/// image named (no per-image failure line, no summary).
fn assert_usage_error(o: &Output, needle: &str, what: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{what}: {err}");
    assert!(err.contains(needle), "{what}: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{what}: one message, got: {err}");
    for image in ["astronaut", "red_apple", "done"] {
        assert!(!err.contains(image), "{what}: names {image}: {err}");
    }
    assert!(o.stdout.is_empty(), "{what}: printed results");
    assert!(!err.contains("panicked"), "{what}: {err}");
}

#[test]
fn segment_out_keeps_every_cutout_when_stems_clash() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("dupname");
    for (from, to) in [
        ("rclip-formats/cat.jpg", "a/x.jpg"),
        ("skimage/coffee.png", "a/x.png"),
        ("rclip-formats/bee.jpg", "b/x.jpg"),
        ("misc/red_apple.jpg", "y.jpg"),
        ("skimage/camera.png", "z.png"),
    ] {
        let to = input.join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(smoke(from), to).unwrap();
    }
    let out = dir.path().join("cut");
    let twice = input.join("y.jpg");
    let o = seer(&[
        "segment",
        "--model",
        &fixture("sam/sam-tiny"),
        input.to_str().unwrap(),
        // The same file again: its cut-outs are kept too.
        twice.to_str().unwrap(),
        "--point",
        "5,5",
        "--single",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let docs: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 6);
    // README, `### segment`: the stem where it is unique, else the file name,
    // else the path below the folder the clashing inputs share; `-2` for a
    // name still taken.
    let expected = [
        ("a/x.jpg", "a_x.jpg.mask0.png"),
        ("a/x.png", "x.png.mask0.png"),
        ("b/x.jpg", "b_x.jpg.mask0.png"),
        ("y.jpg", "y.jpg.mask0.png"),
        ("z.png", "z.mask0.png"),
        ("y.jpg", "y.jpg-2.mask0.png"),
    ];
    for (doc, (input_end, name)) in docs.iter().zip(expected) {
        assert!(doc["input"].as_str().unwrap().ends_with(input_end), "{doc}");
        let masks = doc["masks"].as_array().unwrap();
        assert_eq!(masks.len(), 1);
        let png = Path::new(masks[0]["png"].as_str().unwrap());
        assert_eq!(png, out.join(name));
        // Each file is its own image's cut-out, not a later one's.
        let cut = seer_image::image::open(png).unwrap();
        assert_eq!(
            (cut.width() as u64, cut.height() as u64),
            (
                doc["width"].as_u64().unwrap(),
                doc["height"].as_u64().unwrap()
            ),
            "{name}"
        );
    }
    let files: BTreeSet<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let wanted: BTreeSet<String> = expected.iter().map(|(_, n)| n.to_string()).collect();
    assert_eq!(files, wanted);
}

/// A cut-out that cannot be written fails its image, and none of that
/// image's cut-outs stay behind; the other images' are written.
#[test]
fn segment_leaves_no_cut_outs_of_an_image_whose_cut_out_failed() {
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let photo = shared_data().join("smoke/skimage/chelsea.png");
    for name in ["a.png", "b.png"] {
        std::fs::copy(&photo, input.path().join(name)).unwrap();
    }
    // The second of a's three cut-outs has a folder in its place.
    std::fs::create_dir(out.path().join("a.mask1.png")).unwrap();
    let o = seer(&[
        "segment",
        "--model",
        &fixture("sam/sam-tiny"),
        input.path().to_str().unwrap(),
        "--point",
        "5,5",
        "--out",
        out.path().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("a.mask1.png: cannot write"),
        "{}",
        stderr(&o)
    );
    let files: BTreeSet<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let wanted: BTreeSet<String> = ["a.mask1.png", "b.mask0.png", "b.mask1.png", "b.mask2.png"]
        .map(String::from)
        .into();
    assert_eq!(files, wanted);
    let docs = String::from_utf8_lossy(&o.stdout);
    assert_eq!(docs.lines().count(), 1, "{docs}");
}

#[test]
fn caption_refuses_an_empty_prompt_once_before_any_image() {
    let good = good_folder();
    let folder = good.path().to_str().unwrap();
    let model = fixture("blip/caption-tiny");
    for prompt in ["", "   ", "\t\n"] {
        let o = seer(&["caption", "--model", &model, folder, "--prompt", prompt]);
        assert_usage_error(&o, "prompt is empty", &format!("--prompt {prompt:?}"));
    }
}

#[test]
fn caption_refuses_a_prompt_or_length_beyond_the_models_positions() {
    let good = good_folder();
    let folder = good.path().to_str().unwrap();
    let model = fixture("blip/caption-tiny");
    // The fixture's text decoder has 64 positions.
    let long = "dog ".repeat(100);
    let o = seer(&["caption", "--model", &model, folder, "--prompt", &long]);
    assert_usage_error(&o, "--prompt is too long", "a 100-token prompt");
    let o = seer(&[
        "caption",
        "--model",
        &model,
        folder,
        "--max-new-tokens",
        "1000",
    ]);
    assert_usage_error(&o, "--max-new-tokens 63 or less", "--max-new-tokens 1000");
    // "a picture of" is 3 tokens: [DEC] and it leave 60 of the 64.
    let o = seer(&[
        "caption",
        "--model",
        &model,
        folder,
        "--prompt",
        "a picture of",
        "--max-new-tokens",
        "61",
    ]);
    assert_usage_error(&o, "--max-new-tokens 60 or less", "prompt + 61 new tokens");
    // The longest allowed runs on every image.
    let o = seer(&[
        "caption",
        "--model",
        &model,
        folder,
        "--max-new-tokens",
        "63",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
}

#[test]
fn ask_and_match_refuse_empty_or_long_texts_before_reading_the_image() {
    // The image does not exist: a text refused up front is what is reported.
    let missing = std::env::temp_dir().join("seer-usage-errors-no-such-image.png");
    let missing = missing.to_str().unwrap();
    let long = "dog ".repeat(100);
    let vqa = fixture("blip/vqa-tiny");
    let o = seer(&["ask", "--model", &vqa, missing, &long]);
    assert_usage_error(&o, "the question is too long", "a long question");
    let o = seer(&[
        "ask",
        "--model",
        &vqa,
        missing,
        "what?",
        "--max-new-tokens",
        "64",
    ]);
    assert_usage_error(&o, "--max-new-tokens 63 or less", "ask --max-new-tokens 64");
    // Tokenizes to nothing but [CLS] [SEP].
    let o = seer(&["ask", "--model", &vqa, missing, "\u{200b}"]);
    assert_usage_error(&o, "the question is empty", "a question without words");
    let itm = fixture("blip/retrieval-tiny");
    let o = seer(&[
        "match", "--model", &itm, "--image", missing, "--text", "a dog", "--text", &long,
    ]);
    assert_usage_error(&o, "--text number 2 is too long", "a long --text");
}

#[test]
fn segment_refuses_an_inverted_box_up_front_and_fails_only_images_a_point_misses() {
    let good = good_folder();
    let folder = good.path().to_str().unwrap();
    let sam = fixture("sam/sam-tiny");
    for (flag, needle) in [
        ("--box=600,400,50,40", "x0 <= x1 and y0 <= y1"),
        ("--box=10,40,50,20", "x0 <= x1 and y0 <= y1"),
        ("--box=-5,0,50,40", "must not be negative"),
        ("--point=3,-1", "must not be negative"),
    ] {
        let o = seer(&["segment", "--model", &sam, folder, flag]);
        assert_usage_error(&o, needle, flag);
    }
    // An output file in a folder that does not exist: said before the batch runs.
    let coco = "--coco=/nonexistent/seer-test/coco.json";
    let o = seer(&["segment", "--model", &sam, folder, "--point=5,5", coco]);
    assert_usage_error(&o, "is not a folder", coco);
    // Past the right edge of the 512×512 astronaut, inside the 600×500 apple:
    // that image fails, the other is segmented (README, `### segment`).
    let o = seer(&[
        "segment", "--model", &sam, folder, "--point", "550,4", "--json",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("astronaut.png: point (550, 4) is outside the 512×512 image"),
        "{err}"
    );
    assert!(!err.contains("red_apple"), "{err}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().count(), 1);
    assert!(out.contains("red_apple.jpg"), "{out}");
}

/// `bench --images` naming nothing: it ran, skipped the end-to-end line with
/// a note and exited 0, so a typo quietly measured less.
#[test]
fn bench_images_that_are_not_there_are_refused() {
    let o = seer(&[
        "bench",
        "--model",
        &fixture("models/openclip-vit"),
        "--images",
        "/nonexistent/seer-typo",
        "--iterations",
        "1",
        "--rounds",
        "1",
    ]);
    assert_usage_error(
        &o,
        "/nonexistent/seer-typo: no such file or folder",
        "bench",
    );
}
