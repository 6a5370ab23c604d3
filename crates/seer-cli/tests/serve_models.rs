//! `seer serve` with several models: an index with a CLIP and an image-only
//! DINOv2 model, served together; each request picks one with `model`.

mod common;

use std::path::{Path, PathBuf};

use common::exif::dated_photos;
use common::server::{index_with, json_of, post_form, serve};
use seer_testkit::{model_fixture, repo_root, shared_data};
use serde_json::{json, Value};

fn get(url: &str) -> (u16, Value) {
    json_of(ureq::get(url).call())
}

/// A search with these query parameters (encoded: model ids are paths).
fn search(base: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let mut request = ureq::get(&format!("{base}/v1/search"));
    for (k, v) in params {
        request = request.query(k, v);
    }
    json_of(request.call())
}

fn dino() -> PathBuf {
    repo_root().join("fixtures/families/dinov2-tiny")
}

/// The id an index records for a model folder (its real path).
fn id_of(model: &Path) -> String {
    model.canonicalize().unwrap().display().to_string()
}

/// The smoke photos indexed with DINOv2 first, then CLIP.
fn two_model_index() -> tempfile::TempDir {
    let index = tempfile::tempdir().unwrap();
    let smoke = shared_data().join("smoke");
    index_with(index.path(), &[&smoke], &dino());
    index_with(index.path(), &[&smoke], &model_fixture("openclip-vit"));
    index
}

fn assert_bad_model(code: u16, body: &Value, clip: &str, dino: &str) {
    assert_eq!(code, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("does not serve model 'no-such-model'")
            && error.contains(&format!("{clip} (default)"))
            && error.contains(dino),
        "{error}"
    );
}

/// Without --model every model of the index is served; the default is the
/// first with a text tower (CLIP, although DINOv2 was indexed first).
#[test]
fn every_model_of_the_index_is_served_and_each_request_picks_one() {
    let s = serve(two_model_index(), &[]);
    let (clip, dino) = (id_of(&model_fixture("openclip-vit")), id_of(&dino()));
    let chelsea = shared_data().join("smoke/skimage/chelsea.png");

    let (code, models) = get(&format!("{}/v1/models", s.url));
    assert_eq!(code, 200, "{models}");
    assert_eq!(models["default"], json!(clip));
    let list = models["models"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{models}");
    let of = |id: &str| list.iter().find(|m| m["id"] == json!(id)).unwrap().clone();
    let (c, d) = (of(&clip), of(&dino));
    assert_eq!(
        (
            &c["family"],
            &c["text_tower"],
            &c["image_tower"],
            &c["default"]
        ),
        (&json!("clip"), &json!(true), &json!(true), &json!(true)),
        "{c}"
    );
    assert_eq!(c["score_rule"]["rule"], "softmax", "{c}");
    assert_eq!(
        (
            &d["family"],
            &d["text_tower"],
            &d["image_tower"],
            &d["default"]
        ),
        (&json!("dinov2"), &json!(false), &json!(true), &json!(false)),
        "{d}"
    );
    assert_eq!((&d["dim"], &d["score_rule"]), (&json!(40), &Value::Null));
    assert_eq!(c["vectors"], 34);
    assert_eq!(d["vectors"], 34);
    let (_, health) = get(&format!("{}/healthz", s.url));
    assert_eq!(health["model"], json!(clip));

    // Text: the default model; DINOv2 has no text tower.
    let (code, found) = get(&format!("{}/v1/search?q=a%20cat&k=3", s.url));
    assert_eq!((code, &found["model"]), (200, &json!(clip)), "{found}");
    let like = found["results"][0]["id"].as_i64().unwrap();
    let (code, refused) = search(&s.url, &[("q", "a cat"), ("model", &dino)]);
    assert_eq!(code, 400, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("text tower"),
        "{refused}"
    );

    // More like this with DINOv2, named by its id or by its folder's name.
    for name in [dino.as_str(), "dinov2-tiny"] {
        let like = like.to_string();
        let (code, similar) = search(&s.url, &[("like", &like), ("k", "5"), ("model", name)]);
        assert_eq!((code, &similar["model"]), (200, &json!(dino)), "{similar}");
        let ids: Vec<i64> = similar["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids.len(), 5);
        assert!(!ids.iter().any(|id| id.to_string() == like), "{similar}");
        // DINOv2 ranks otherwise than CLIP: these are its own scores.
        let (_, by_clip) = search(&s.url, &[("like", &like), ("k", "5")]);
        assert_eq!(by_clip["model"], json!(clip));
        assert_ne!(by_clip["results"], similar["results"]);
    }

    // An uploaded image, searched with DINOv2, finds itself first.
    let (code, by_image) = post_form(
        &format!("{}/v1/search", s.url),
        &[("k", "1"), ("model", &dino)],
        Some(&chelsea),
    );
    assert_eq!(
        (code, &by_image["model"]),
        (200, &json!(dino)),
        "{by_image}"
    );
    assert_eq!(
        by_image["results"][0]["path"].as_str(),
        Some(chelsea.canonicalize().unwrap().to_str().unwrap())
    );
    let (code, _) = get(&format!(
        "{}{}",
        s.url,
        by_image["results"][0]["thumbnail"].as_str().unwrap()
    ));
    assert_eq!(code, 200);

    // Embeddings of each model; DINOv2 embeds no text and classifies nothing.
    let embed = |body: Value| json_of(ureq::post(&format!("{}/v1/embed", s.url)).send_json(body));
    let b64 = base64_of(&chelsea);
    let (code, e) = embed(json!({ "images": [b64], "model": dino }));
    assert_eq!(
        (code, &e["dim"], &e["model"]),
        (200, &json!(40), &json!(dino)),
        "{e}"
    );
    let (code, e) = embed(json!({ "images": [b64] }));
    assert_eq!((code, &e["model"]), (200, &json!(clip)), "{e}");
    let (code, e) = embed(json!({ "texts": ["a dog"], "model": "dinov2-tiny" }));
    assert_eq!(code, 400, "{e}");
    let (code, c) = post_form(
        &format!("{}/v1/classify", s.url),
        &[("labels", "cat,dog"), ("model", &dino)],
        Some(&chelsea),
    );
    assert!(
        code == 400 && c["error"].as_str().unwrap().contains("text tower"),
        "{c}"
    );

    // A model this server does not serve: 400 naming those it does, on every route.
    let (code, body) = search(&s.url, &[("q", "cat"), ("model", "no-such-model")]);
    assert_bad_model(code, &body, &clip, &dino);
    let (code, body) = post_form(
        &format!("{}/v1/search", s.url),
        &[("model", "no-such-model")],
        Some(&chelsea),
    );
    assert_bad_model(code, &body, &clip, &dino);
    let (code, body) = embed(json!({ "texts": ["a dog"], "model": "no-such-model" }));
    assert_bad_model(code, &body, &clip, &dino);
    let (code, body) = post_form(
        &format!("{}/v1/classify", s.url),
        &[("labels", "cat,dog"), ("model", "no-such-model")],
        Some(&chelsea),
    );
    assert_bad_model(code, &body, &clip, &dino);
}

/// Repeated --model serves those models, the first named the default; one
/// --model serves that one alone, as before.
#[test]
fn repeated_model_options_name_the_served_models_and_the_default() {
    let (clip, dino) = (model_fixture("openclip-vit"), dino());
    let s = serve(
        two_model_index(),
        &[
            "--model",
            dino.to_str().unwrap(),
            "--model",
            clip.to_str().unwrap(),
        ],
    );
    let (_, models) = get(&format!("{}/v1/models", s.url));
    assert_eq!(models["default"], json!(id_of(&dino)), "{models}");
    assert_eq!(models["models"].as_array().unwrap().len(), 2);
    // The default cannot read text; the other model can.
    let (code, _) = get(&format!("{}/v1/search?q=a%20cat", s.url));
    assert_eq!(code, 400);
    let (code, found) = get(&format!("{}/v1/search?q=a%20cat&model=openclip-vit", s.url));
    assert_eq!(code, 200, "{found}");

    let index = tempfile::tempdir().unwrap();
    let smoke = shared_data().join("smoke");
    index_with(index.path(), &[&smoke], &dino);
    index_with(index.path(), &[&smoke], &clip);
    let one = serve(index, &["--model", clip.to_str().unwrap()]);
    let (_, models) = get(&format!("{}/v1/models", one.url));
    let list = models["models"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{models}");
    assert_eq!(list[0]["id"], json!(id_of(&clip)));
    let (code, body) = get(&format!("{}/v1/search?like=1&model=dinov2-tiny", one.url));
    assert_eq!(code, 400, "{body}");
}

/// A file indexed under only one of the models is served when that model is
/// served, and not by a server without it.
#[test]
fn a_file_is_served_when_any_served_model_indexed_it() {
    let (clip, dino) = (model_fixture("openclip-vit"), dino());
    let dated = dated_photos();
    let index = tempfile::tempdir().unwrap();
    // CLIP indexes the smoke photos only, DINOv2 the dated ones only.
    index_with(index.path(), &[&shared_data().join("smoke")], &clip);
    index_with(index.path(), &[dated.path()], &dino);
    let photo = std::fs::read_dir(dated.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file())
        .unwrap();
    let both = serve(index, &[]);
    let (code, found) = post_form(
        &format!("{}/v1/search", both.url),
        &[("k", "1"), ("model", "dinov2-tiny")],
        Some(&photo),
    );
    assert_eq!(code, 200, "{found}");
    let hit = &found["results"][0];
    assert_eq!(
        hit["path"].as_str(),
        Some(photo.canonicalize().unwrap().to_str().unwrap())
    );
    let url = |base: &str, what: &str| format!("{base}{}", hit[what].as_str().unwrap());
    for what in ["url", "thumbnail"] {
        let r = ureq::get(&url(&both.url, what)).call();
        assert_eq!(r.map(|r| r.status()).ok(), Some(200), "{what}");
    }
    let clip_only = serve_copy(both.index.path(), &["--model", clip.to_str().unwrap()]);
    for what in ["url", "thumbnail"] {
        let (code, body) = get(&url(&clip_only.url, what));
        assert_eq!(code, 404, "{what}: {body}");
    }
}

/// `serve` of a copy of an index folder (another server holds the original).
fn serve_copy(index: &Path, extra: &[&str]) -> common::server::Server {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(index, copy.path());
    serve(copy, extra)
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&p, &target);
        } else {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

fn base64_of(path: &Path) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
}
