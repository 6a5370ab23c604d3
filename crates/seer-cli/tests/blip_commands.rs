//! `seer caption`, `seer ask` and `seer match` as a user runs them on the tiny
//! BLIP fixtures: the JSON contract (fields, tokens as transformers'
//! `generate` returns them), bad files that never stop a batch, and clear
//! refusals. Token parity itself is tested in seer-engine (tests/blip.rs).

use std::path::PathBuf;
use std::process::{Command, Output};

use seer_testkit::{read_json, repo_root, shared_data};
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

fn fixture(name: &str) -> String {
    repo_root()
        .join("fixtures/blip")
        .join(name)
        .display()
        .to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn json_lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

fn reference(name: &str) -> Value {
    read_json(
        &repo_root()
            .join("fixtures/blip")
            .join(name)
            .join("reference.json"),
    )
}

fn image(reference: &Value, i: usize) -> String {
    shared_data()
        .join(reference["images"][i].as_str().unwrap())
        .display()
        .to_string()
}

fn case<'a>(reference: &'a Value, name: &str) -> &'a Value {
    reference["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

#[test]
fn caption_json_gives_input_caption_and_tokens_per_image() {
    let r = reference("caption-tiny");
    let (a, b) = (image(&r, 0), image(&r, 1));
    let broken = tempfile::NamedTempFile::with_suffix(".jpg").unwrap();
    std::fs::write(broken.path(), b"\xff\xd8\xff not a jpeg").unwrap();
    let broken_path = broken.path().display().to_string();
    let model = fixture("caption-tiny");
    let o = seer(&["caption", "--model", &model, &a, &broken_path, &b, "--json"]);
    // One bad file: reported, the rest captioned, exit code says so.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(&broken_path), "{}", stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 2);
    let expected = case(&r, "greedy");
    for (line, (i, path)) in lines.iter().zip([(0, &a), (1, &b)]) {
        assert_eq!(line["input"], path.as_str());
        assert_eq!(line["tokens"], expected["results"][i]["output_ids"]);
        assert_eq!(line["caption"], expected["results"][i]["caption"]);
    }

    let o = seer(&[
        "caption",
        "--model",
        &model,
        &a,
        "--prompt",
        "a picture of",
        "--beams",
        "3",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = case(&r, "beam3_prompt_a_picture_of");
    assert_eq!(
        json_lines(&o)[0]["tokens"],
        expected["results"][0]["output_ids"]
    );

    let o = seer(&[
        "caption",
        "--model",
        &model,
        &a,
        "--max-new-tokens",
        "5",
        "--json",
    ]);
    let expected = case(&r, "greedy_max_new_tokens5");
    assert_eq!(
        json_lines(&o)[0]["tokens"],
        expected["results"][0]["output_ids"]
    );

    // Plain output: the file and its caption.
    let o = seer(&["caption", "--model", &model, &a]);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let caption = case(&r, "greedy")["results"][0]["caption"]
        .as_str()
        .unwrap();
    assert_eq!(text, format!("{a}\t{caption}\n"));
}

#[test]
fn caption_refuses_bad_settings_and_models_without_a_captioner() {
    let r = reference("caption-tiny");
    let a = image(&r, 0);
    let model = fixture("caption-tiny");
    for (args, needle) in [
        (vec!["--beams", "0"], "--beams"),
        (vec!["--max-new-tokens", "0"], "--max-new-tokens"),
        (vec!["--prompt", "  "], "prompt is empty"),
    ] {
        let mut all = vec!["caption", "--model", model.as_str(), a.as_str()];
        all.extend(args);
        let o = seer(&all);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(needle), "{all:?}: {}", stderr(&o));
    }
    let o = seer(&["caption", "--model", &fixture("vqa-tiny"), &a]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("writes no captions"), "{}", stderr(&o));
    let clip = repo_root().join("fixtures/models/openclip-vit");
    let tokenizer = shared_data().join("clip-tokenizer/bpe_simple_vocab_16e6.txt.gz");
    let o = seer(&[
        "caption",
        "--model",
        clip.to_str().unwrap(),
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        &a,
    ]);
    assert!(stderr(&o).contains("writes no captions"), "{}", stderr(&o));
}

#[test]
fn ask_answers_with_the_reference_tokens() {
    let r = reference("vqa-tiny");
    let a = image(&r, 0);
    let question = r["questions"][0]["text"].as_str().unwrap();
    let o = seer(&[
        "ask",
        "--model",
        &fixture("vqa-tiny"),
        &a,
        question,
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = &json_lines(&o)[0];
    let expected = &r["answers"][0][0]["greedy"];
    assert_eq!(line["tokens"], expected["output_ids"]);
    assert_eq!(line["answer"], expected["answer"]);
    assert_eq!(line["question"], question);
    assert_eq!(line["input"], a.as_str());

    let o = seer(&[
        "ask",
        "--model",
        &fixture("vqa-tiny"),
        &a,
        question,
        "--beams",
        "3",
        "--json",
    ]);
    assert_eq!(
        json_lines(&o)[0]["tokens"],
        r["answers"][0][0]["beam3"]["output_ids"]
    );

    let missing = PathBuf::from("/nonexistent/photo.jpg");
    let o = seer(&[
        "ask",
        "--model",
        &fixture("vqa-tiny"),
        missing.to_str().unwrap(),
        "why?",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // As every other command says it (was "cannot read …: cannot read file:
    // No such file or directory (os error 2)").
    assert!(
        stderr(&o).contains("error: /nonexistent/photo.jpg: no such file or folder"),
        "{}",
        stderr(&o)
    );
    let o = seer(&[
        "match",
        "--model",
        &fixture("retrieval-tiny"),
        "--image",
        missing.to_str().unwrap(),
        "--text",
        "a dog",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("error: /nonexistent/photo.jpg: no such file or folder"),
        "{}",
        stderr(&o)
    );
    let o = seer(&["ask", "--model", &fixture("vqa-tiny"), &a, " "]);
    assert!(stderr(&o).contains("question is empty"), "{}", stderr(&o));
}

#[test]
fn match_scores_each_text_with_itm_and_itc() {
    let r = reference("retrieval-tiny");
    let a = image(&r, 0);
    let texts: Vec<&str> = r["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let o = seer(&[
        "match",
        "--model",
        &fixture("retrieval-tiny"),
        "--image",
        &a,
        "--text",
        texts[2],
        "--text",
        texts[3],
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 2);
    for (k, line) in lines.iter().enumerate() {
        let expected = r["pairs"][0]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["text_index"] == 2 + k)
            .unwrap();
        assert_eq!(line["text"], texts[2 + k]);
        assert_eq!(line["image"], a.as_str());
        for key in ["itm_probability", "similarity"] {
            let got = line[key].as_f64().unwrap();
            let want = expected[key].as_f64().unwrap();
            assert!((got - want).abs() <= 1e-4, "{key}: {got} vs {want}");
        }
    }
    let o = seer(&[
        "match",
        "--model",
        &fixture("retrieval-tiny"),
        "--image",
        &a,
        "--text",
        "",
    ]);
    assert!(stderr(&o).contains("empty"), "{}", stderr(&o));
    let o = seer(&[
        "match",
        "--model",
        &fixture("caption-tiny"),
        "--image",
        &a,
        "--text",
        "x",
    ]);
    assert!(
        stderr(&o).contains("no image-text matching head"),
        "{}",
        stderr(&o)
    );
}
