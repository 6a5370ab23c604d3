//! Captions in the index, word and hybrid search, reranking and the language
//! routes of `seer serve`, end to end with the tiny random-weight BLIP
//! checkpoints in fixtures/blip. Their captions are nonsense, so these tests
//! check the plumbing: captions stored and found by their words, runs that
//! resume after SIGKILL, rerank order following the ITM probability.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::server::{index_with, json_of, post_form, serve};
use seer_index::Store;
use seer_testkit::{model_fixture, repo_root, shared_data, tokenizer_file};
use serde_json::Value;

fn blip(name: &str) -> PathBuf {
    repo_root().join("fixtures/blip").join(name)
}

fn arg(p: &Path) -> String {
    p.display().to_string()
}

fn clip() -> String {
    arg(&model_fixture("openclip-vit"))
}

fn seer_command(index: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_seer"));
    c.args(args)
        .env("SEER_INDEX", index)
        .env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1");
    c
}

fn seer(index: &Path, args: &[&str]) -> Output {
    seer_command(index, args).output().expect("run seer")
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "seer failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A folder of `n` distinct sample photos.
fn photo_folder(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(shared_data().join("imagenet-samples/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files.iter().take(n) {
        std::fs::copy(f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    dir
}

/// Every stored caption, by path.
fn captions(index: &Path) -> Vec<(String, String)> {
    let store = Store::open_read_only(index).unwrap();
    let model = store.choose_model(None).unwrap();
    let (ids, paths) = store.ids_and_paths(&model).unwrap();
    ids.iter()
        .zip(paths)
        .filter_map(|(id, path)| Some((path, store.caption_of(*id).unwrap()?.text)))
        .collect()
}

#[test]
fn indexing_captions_photos_and_search_finds_them_by_their_words() {
    let photos = photo_folder(6);
    let idx = tempfile::tempdir().unwrap();
    let caption_model = arg(&blip("caption-tiny"));
    let out = ok(seer(
        idx.path(),
        &[
            "index",
            photos.path().to_str().unwrap(),
            "--model",
            &clip(),
            "--caption-model",
            &caption_model,
            "--json",
        ],
    ));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0]["added"], 6, "{out}");
    let run = &lines[1];
    assert_eq!(
        (run["captioned"].as_u64(), run["failed"].as_u64()),
        (Some(6), Some(0)),
        "{run}"
    );
    // The caption model is recorded, as the index records models.
    let recorded = blip("caption-tiny").canonicalize().unwrap();
    assert_eq!(run["caption_model"].as_str(), recorded.to_str());
    let status: Value =
        serde_json::from_str(ok(seer(idx.path(), &["status", "--json"])).trim()).unwrap();
    assert_eq!(status["captions"][0]["name"].as_str(), recorded.to_str());
    assert_eq!(status["captions"][0]["captions"], 6);

    // A word of a stored caption finds that photo, in words and hybrid search.
    let stored = captions(idx.path());
    assert_eq!(stored.len(), 6);
    let (path, word) = stored
        .iter()
        .find_map(|(p, c)| {
            Some((
                p.clone(),
                seer_index::words::query_words(c).first()?.clone(),
            ))
        })
        .expect("some caption has a word that is not a stop word");
    let found = json_lines(&ok(seer(
        idx.path(),
        &["search", &word, "--mode", "words", "--json"],
    )));
    assert!(!found.is_empty());
    for hit in &found {
        assert_eq!(hit["matched"], serde_json::json!(["words"]), "{hit}");
        assert_eq!(hit["score"], hit["bm25"], "{hit}");
        let caption = hit["caption"].as_str().unwrap().to_lowercase();
        assert!(caption.contains(&word), "'{word}' not in {hit}");
    }
    assert!(
        found.iter().any(|h| h["path"] == path.as_str()),
        "{found:?}"
    );
    let hybrid = json_lines(&ok(seer(
        idx.path(),
        &["search", &word, "-k", "6", "--json"],
    )));
    assert_eq!(hybrid.len(), 6);
    let hit = hybrid.iter().find(|h| h["path"] == path.as_str()).unwrap();
    let matched = hit["matched"].as_array().unwrap();
    assert!(matched.contains(&"words".into()), "{hit}");
    assert!(
        hit["score"].is_number() && hit["fused"].is_number(),
        "{hit}"
    );
    // The fused order: what the words found comes before what they did not,
    // at equal vector rank or better.
    let fused: Vec<f64> = hybrid
        .iter()
        .map(|h| h["fused"].as_f64().unwrap())
        .collect();
    assert!(fused.windows(2).all(|w| w[0] >= w[1]), "{fused:?}");
    // Vector mode: the vectors' ranking, with captions shown.
    let vector = json_lines(&ok(seer(
        idx.path(),
        &["search", &word, "--mode", "vector", "-k", "2", "--json"],
    )));
    assert!(vector
        .iter()
        .all(|h| h.get("matched").is_none() && h["caption"].is_string()));
    let text = ok(seer(idx.path(), &["search", &word, "--mode", "words"]));
    assert!(
        text.contains("[words]") && text.contains('\u{2014}'),
        "{text}"
    );

    // A bare re-run keeps the held caption model's captions up to date: none new.
    std::fs::copy(
        shared_data().join("smoke/skimage/chelsea.png"),
        photos.path().join("chelsea.png"),
    )
    .unwrap();
    let lines = json_lines(&ok(seer(idx.path(), &["index", "--json"])));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        (
            lines[1]["captioned"].as_u64(),
            lines[1]["unchanged"].as_u64()
        ),
        (Some(1), Some(6)),
        "{lines:?}"
    );
}

#[test]
fn search_refuses_what_it_cannot_do_in_one_sentence() {
    let photos = photo_folder(2);
    let idx = tempfile::tempdir().unwrap();
    ok(seer(
        idx.path(),
        &["index", photos.path().to_str().unwrap(), "--model", &clip()],
    ));
    let cases: &[(&[&str], &str)] = &[
        (&["search", "fish", "--mode", "words"], "no captions"),
        (&["search", "fish", "--mode", "hybrid"], "--caption-model"),
        (&["search", "fish", "--mode", "sideways"], "unknown mode"),
        (
            &["search", "--like", "x.jpg", "--rerank", "m"],
            "needs a text",
        ),
        (&["search", "fish", "--rerank-depth", "101"], "101"),
    ];
    for (args, says) in cases {
        let o = seer(idx.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // A model without a matching head, by name.
    let o = seer(idx.path(), &["search", "fish", "--rerank", &clip()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("image-text matching"), "{err}");
    let o = seer(
        idx.path(),
        &["index", "--caption-model", &clip(), "--model", &clip()],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(2) && err.contains("writes no captions"),
        "{err}"
    );
}

#[test]
fn reranking_orders_the_best_hits_by_itm_probability() {
    let photos = photo_folder(8);
    let idx = tempfile::tempdir().unwrap();
    ok(seer(
        idx.path(),
        &["index", photos.path().to_str().unwrap(), "--model", &clip()],
    ));
    let query = "a horse riding an astronaut";
    let plain = json_lines(&ok(seer(
        idx.path(),
        &["search", query, "-k", "8", "--json"],
    )));
    let matcher = arg(&blip("retrieval-tiny"));
    let reranked = json_lines(&ok(seer(
        idx.path(),
        &[
            "search",
            query,
            "-k",
            "8",
            "--rerank",
            &matcher,
            "--rerank-depth",
            "5",
            "--json",
        ],
    )));
    assert_eq!(reranked.len(), 8);
    // The first five are the vector search's first five, by ITM probability;
    // the last three keep their places.
    let p: Vec<f64> = reranked[..5]
        .iter()
        .map(|h| h["itm_probability"].as_f64().unwrap())
        .collect();
    assert!(p.windows(2).all(|w| w[0] >= w[1]), "{p:?}");
    assert!(p.iter().all(|p| (0.0..=1.0).contains(p)), "{p:?}");
    let paths = |hits: &[Value]| {
        let mut v: Vec<String> = hits.iter().map(|h| h["path"].to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(paths(&reranked[..5]), paths(&plain[..5]));
    assert_eq!(reranked[5..], plain[5..]);
    // The probabilities are the model's for that text and photo.
    let model =
        seer_engine::LoadedModel::load(matcher.as_str(), &seer_engine::LoadOptions::default())
            .unwrap();
    let head = model.matcher().unwrap();
    let image = reranked[0]["path"].as_str().unwrap();
    let decoded = seer_image::decode_file_full(Path::new(image), &Default::default()).unwrap();
    let want = head
        .match_texts(head.preprocess(&decoded), 1, &[query.to_string()])
        .unwrap()[0];
    assert!(
        (want.itm_probability as f64 - p[0]).abs() < 1e-4,
        "{want:?} vs {}",
        reranked[0]
    );
}

/// Captions stored so far (0 while the table is not there yet).
fn caption_count(index: &Path) -> usize {
    Store::open_read_only(index)
        .ok()
        .and_then(|s| s.captioners().ok())
        .map_or(0, |c| c.iter().map(|c| c.captions).sum())
}

#[test]
fn a_caption_run_killed_with_sigkill_keeps_its_batches_and_the_next_run_finishes() {
    const FILES: usize = 48;
    let photos = photo_folder(FILES);
    let caption_model = arg(&blip("caption-tiny"));
    let folder = photos.path().to_str().unwrap();
    let run_args = [
        "index",
        folder,
        "--caption-model",
        &caption_model,
        "--batch-size",
        "2",
        "--threads",
        "1",
        "--json",
    ];
    // Killed once some batches are committed and before the last: tried on a
    // fresh index until a kill lands in between (a run fast enough to finish
    // first proves nothing).
    for attempt in 0..5 {
        let idx = tempfile::tempdir().unwrap();
        ok(seer(idx.path(), &["index", folder, "--model", &clip()]));
        let mut child = seer_command(idx.path(), &run_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let killed = loop {
            let n = caption_count(idx.path());
            if n > 0 && n < FILES {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                break true;
            }
            if child.try_wait().unwrap().is_some() {
                break false;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        if !killed {
            println!("attempt {attempt}: the run finished before a kill; again");
            continue;
        }
        let kept = caption_count(idx.path());
        assert!(kept > 0 && kept < FILES, "{kept}");
        {
            let store = Store::open(idx.path()).expect("the index opens after a kill");
            assert_eq!(store.integrity_check().unwrap(), "ok");
            store.words_integrity_check().unwrap();
        }
        // The next run captions only what is left.
        let lines = json_lines(&ok(seer(idx.path(), &run_args)));
        let run = lines.last().unwrap();
        assert_eq!(
            (run["captioned"].as_u64(), run["unchanged"].as_u64()),
            (Some((FILES - kept) as u64), Some(kept as u64)),
            "{run}"
        );
        assert_eq!(caption_count(idx.path()), FILES);
        return;
    }
    panic!("no run was killed between batches in 5 attempts");
}

#[test]
fn the_server_captions_answers_matches_and_reranks_with_blip_models() {
    let index = tempfile::tempdir().unwrap();
    let smoke = shared_data().join("smoke/skimage");
    index_with(index.path(), &[&smoke], &model_fixture("openclip-vit"));
    let caption_model = arg(&blip("caption-tiny"));
    ok(seer(
        index.path(),
        &["index", "--caption-model", &caption_model],
    ));
    let s = serve(
        index,
        &[
            "--caption-model",
            &caption_model,
            "--vqa-model",
            &arg(&blip("vqa-tiny")),
            "--match-model",
            &arg(&blip("retrieval-tiny")),
        ],
    );
    let (code, models) = json_of(ureq::get(&format!("{}/v1/models", s.url)).call());
    assert_eq!(code, 200);
    for task in ["caption", "ask", "match"] {
        assert!(models["tasks"][task].is_string(), "{models}");
    }

    // Search answers carry captions, and fuse words with vectors.
    let (code, found) = json_of(ureq::get(&format!("{}/v1/search?q=a%20cat&k=40", s.url)).call());
    assert_eq!(code, 200, "{found}");
    assert_eq!(found["mode"], "hybrid");
    let results = found["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["caption"].is_string()), "{found}");
    let first = &results[0];
    let id = first["id"].as_i64().unwrap().to_string();

    let chelsea = smoke.join("chelsea.png");
    let (code, captioned) = post_form(&format!("{}/v1/caption", s.url), &[("id", &id)], None);
    assert_eq!(code, 200, "{captioned}");
    assert!(captioned["caption"].is_string(), "{captioned}");
    let (code, uploaded) = post_form(&format!("{}/v1/caption", s.url), &[], Some(&chelsea));
    assert_eq!(code, 200, "{uploaded}");
    let (code, asked) = post_form(
        &format!("{}/v1/ask", s.url),
        &[("id", &id), ("question", "what is in the picture?")],
        None,
    );
    assert_eq!(code, 200, "{asked}");
    assert!(asked["answer"].is_string(), "{asked}");
    let (code, matched) = post_form(
        &format!("{}/v1/match", s.url),
        &[
            ("text", "a horse riding an astronaut"),
            ("text", "an astronaut riding a horse"),
        ],
        Some(&chelsea),
    );
    assert_eq!(code, 200, "{matched}");
    let m = matched["matches"].as_array().unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[1]["text"], "an astronaut riding a horse");
    assert!(
        m[0]["itm_probability"] != m[1]["itm_probability"],
        "the matching head reads word order: {matched}"
    );

    // Reranking: the best five in order of their probability.
    let (code, reranked) = json_of(
        ureq::get(&format!(
            "{}/v1/search?q=a%20horse%20riding%20an%20astronaut&k=5&rerank=true&rerank_depth=5&mode=vector",
            s.url
        ))
        .call(),
    );
    assert_eq!(code, 200, "{reranked}");
    assert_eq!(reranked["reranked"], 5);
    let p: Vec<f64> = reranked["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["itm_probability"].as_f64().unwrap())
        .collect();
    assert_eq!(p.len(), 5);
    assert!(p.windows(2).all(|w| w[0] >= w[1]), "{p:?}");

    // Texts the models cannot read are the request's fault (400, before any
    // work), named by their field: the tiny models read 64 positions.
    let long = "word ".repeat(70);
    let long = long.trim();
    for (route, fields, says) in [
        ("caption", vec![("prompt", long)], "prompt is too long"),
        ("ask", vec![("question", long)], "question is too long"),
        (
            "match",
            vec![("text", "a cat"), ("text", long)],
            "text 2 is too long",
        ),
    ] {
        let mut fields = fields;
        fields.push(("id", &id));
        let (code, refused) = post_form(&format!("{}/v1/{route}", s.url), &fields, None);
        assert_eq!(code, 400, "{route}: {refused}");
        let message = refused["error"].as_str().unwrap();
        assert!(
            message.starts_with(says) && message.contains("64"),
            "{message}"
        );
    }
    let (code, refused) = json_of(
        ureq::get(&format!("{}/v1/search?rerank=true", s.url))
            .query("q", long)
            .call(),
    );
    assert_eq!(code, 400, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .starts_with("q is too long"),
        "{refused}"
    );

    // The page offers questions and shows captions.
    let page = ureq::get(&s.url).call().unwrap().into_string().unwrap();
    assert!(page.contains("id=\"ask-form\""));
}

#[test]
fn an_index_without_captions_answers_searches_as_before() {
    let photos = photo_folder(3);
    let idx = tempfile::tempdir().unwrap();
    ok(seer(
        idx.path(),
        &["index", photos.path().to_str().unwrap(), "--model", &clip()],
    ));
    for hit in json_lines(&ok(seer(idx.path(), &["search", "a fish", "--json"]))) {
        let keys: Vec<&String> = hit.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["path", "score"], "{hit}");
    }
    let text = ok(seer(idx.path(), &["search", "a fish"]));
    for line in text.lines() {
        let (score, path) = line.split_once("  ").unwrap();
        assert!(
            score.parse::<f32>().is_ok() && Path::new(path).is_file(),
            "{line}"
        );
    }
}
