//! `/v1/segment` and `/v1/detect` of a real `seer serve --segment-model
//! --detect-model` with the tiny SAM and OWL-ViT fixtures: answers as the
//! `seer segment` and `seer detect` commands give them, by upload and by
//! indexed id, refinement with a returned `mask_id`, the embedding cache
//! (`cached`, /metrics), and clear 400s for what a request gets wrong.

mod common;

use std::path::{Path, PathBuf};

use base64::Engine;
use common::server::{index_with, json_of, metric, post_form, seer, serve, Server};
use seer_testkit::{model_fixture, repo_root, shared_data};
use serde_json::Value;

fn sam() -> PathBuf {
    repo_root().join("fixtures/sam/sam-tiny")
}

fn owl() -> PathBuf {
    repo_root().join("fixtures/owlvit/owlvit-tiny")
}

fn arg(p: &Path) -> String {
    p.display().to_string()
}

fn skimage() -> PathBuf {
    shared_data().join("smoke/skimage")
}

/// A server over the skimage photos with both vision models and `extra`.
fn start(extra: &[&str]) -> Server {
    let index = tempfile::tempdir().unwrap();
    index_with(index.path(), &[&skimage()], &model_fixture("openclip-vit"));
    let (sam, owl) = (arg(&sam()), arg(&owl()));
    let mut args = vec!["--segment-model", &sam, "--detect-model", &owl];
    args.extend_from_slice(extra);
    serve(index, &args)
}

/// The indexed id, width and height of a skimage photo.
fn indexed(url: &str, name: &str) -> (i64, u64, u64) {
    let (code, found) = json_of(ureq::get(&format!("{url}/v1/search?q=a%20photo&k=100")).call());
    assert_eq!(code, 200, "{found}");
    let hit = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"].as_str().unwrap().ends_with(name))
        .unwrap_or_else(|| panic!("{name} not indexed: {found}"))
        .clone();
    (
        hit["id"].as_i64().unwrap(),
        hit["width"].as_u64().unwrap(),
        hit["height"].as_u64().unwrap(),
    )
}

/// What `seer <args>` prints as JSON (the first line).
fn cli(args: &[&str]) -> Value {
    let out = seer().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "seer {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().next().unwrap()).unwrap()
}

fn close(a: &Value, b: &Value, what: &str) {
    let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
    assert!((a - b).abs() < 1e-4, "{what}: {a} vs {b}");
}

/// A mask's PNG: decodes to the size the answer says, and is not blank
/// when the mask is not.
fn check_png(mask: &Value) {
    let url = mask["png"].as_str().unwrap();
    let b64 = url
        .strip_prefix("data:image/png;base64,")
        .unwrap_or_else(|| panic!("not a PNG data URL: {}", &url[..40.min(url.len())]));
    let png = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let img = seer_image::image::load_from_memory(&png)
        .unwrap()
        .to_rgba8();
    assert_eq!(
        (img.width() as u64, img.height() as u64),
        (
            mask["png_width"].as_u64().unwrap(),
            mask["png_height"].as_u64().unwrap()
        )
    );
    let drawn = img.pixels().filter(|p| p[3] > 0).count();
    assert_eq!(drawn > 0, mask["area"].as_u64().unwrap() > 0, "{drawn}");
}

#[test]
fn segment_by_id_and_upload_refines_a_mask_and_caches_the_embedding() {
    let s = start(&[]);
    let url = &s.url;
    let (code, models) = json_of(ureq::get(&format!("{url}/v1/models")).call());
    assert_eq!(code, 200);
    assert!(models["tasks"]["segment"].is_string(), "{models}");
    assert!(models["tasks"]["detect"].is_string(), "{models}");
    let (id, w, h) = indexed(url, "chelsea.png");
    let (x, y) = (w / 2, h / 2);
    let point = format!("[[{x}, {y}, 1]]");
    let segment = format!("{url}/v1/segment");

    // First click: the image encoder runs; three masks for one point.
    let (code, first) = post_form(
        &segment,
        &[("id", &id.to_string()), ("points", &point)],
        None,
    );
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["cached"], false, "{first}");
    assert_eq!(first["id"], id);
    assert_eq!(
        (first["width"].as_u64(), first["height"].as_u64()),
        (Some(w), Some(h))
    );
    assert!(first["timing"]["embed_ms"].is_number(), "{first}");
    assert!(first["timing"]["decoder_ms"].is_number(), "{first}");
    let masks = first["masks"].as_array().unwrap();
    assert_eq!(masks.len(), 3, "{first}");
    // The same masks as `seer segment` gives.
    let photo = skimage().join("chelsea.png");
    let want = cli(&[
        "segment",
        "--model",
        &arg(&sam()),
        &arg(&photo),
        "--point",
        &format!("{x},{y},1"),
        "--json",
    ]);
    let want = want["masks"].as_array().unwrap();
    assert_eq!(want.len(), 3);
    for (got, want) in masks.iter().zip(want) {
        close(&got["iou"], &want["iou"], "iou");
        assert_eq!(got["area"], want["area"], "area");
        let b = got["bbox"].as_array().map(|b| {
            let b: Vec<u64> = b.iter().map(|v| v.as_u64().unwrap()).collect();
            [b[0], b[1], b[2] - b[0], b[3] - b[1]]
        });
        match b {
            Some(b) => assert_eq!(serde_json::json!(b), want["bbox"], "bbox"),
            None => assert_eq!(got["area"], 0),
        }
        assert!(got["mask_id"].is_string());
        check_png(got);
    }

    // A second click refines the best mask: only the decoder runs.
    let best = masks
        .iter()
        .max_by(|a, b| {
            a["iou"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["iou"].as_f64().unwrap())
        })
        .unwrap();
    let refine_points = format!("[[{x}, {y}, 1], [{}, {}, 0]]", w / 8, h / 8);
    let mask_id = best["mask_id"].as_str().unwrap();
    let (code, refined) = post_form(
        &segment,
        &[
            ("id", &id.to_string()),
            ("points", &refine_points),
            ("mask_id", mask_id),
        ],
        None,
    );
    assert_eq!(code, 200, "{refined}");
    assert_eq!(refined["cached"], true, "{refined}");
    assert!(refined["timing"]["embed_ms"].is_null(), "{refined}");
    assert_eq!(refined["masks"].as_array().unwrap().len(), 1, "{refined}");
    check_png(&refined["masks"][0]);

    // Fractions of the size are the same click.
    let (code, normalized) = post_form(
        &segment,
        &[
            ("id", &id.to_string()),
            ("normalized", "true"),
            (
                "points",
                &format!("[[{}, {}, 1]]", x as f64 / w as f64, y as f64 / h as f64),
            ),
        ],
        None,
    );
    assert_eq!(code, 200, "{normalized}");
    assert_eq!(normalized["cached"], true);
    for (a, b) in normalized["masks"].as_array().unwrap().iter().zip(masks) {
        close(&a["iou"], &b["iou"], "normalized iou");
        assert_eq!(a["area"], b["area"]);
    }

    // The same photo uploaded is the same content: the cached embedding.
    let (code, uploaded) = post_form(&segment, &[("points", &point)], Some(&photo));
    assert_eq!(code, 200, "{uploaded}");
    assert_eq!(uploaded["cached"], true, "{uploaded}");
    assert!(uploaded.get("id").is_none());
    close(
        &uploaded["masks"][0]["iou"],
        &masks[0]["iou"],
        "uploaded iou",
    );

    // Another photo is embedded; a mask of chelsea does not refine it.
    let other = skimage().join("coffee.png");
    let (code, fresh) = post_form(
        &segment,
        &[("points", "[[10, 10]]"), ("mask_id", mask_id)],
        Some(&other),
    );
    assert_eq!(code, 400, "{fresh}");
    assert!(
        fresh["error"].as_str().unwrap().contains("another image"),
        "{fresh}"
    );
    let (code, fresh) = post_form(
        &segment,
        &[("boxes", "[[5, 5, 100, 80]]"), ("multimask", "false")],
        Some(&other),
    );
    assert_eq!(code, 200, "{fresh}");
    assert_eq!(fresh["cached"], false);
    assert_eq!(fresh["masks"].as_array().unwrap().len(), 1);

    // Counted: two images embedded; the refine, normalized and upload hits;
    // five decoder runs (the refused refinement never reached the model).
    assert_eq!(metric(url, "seer_segment_embeddings_total"), 2.0);
    assert_eq!(metric(url, "seer_segment_embedding_cache_hits_total"), 3.0);
    assert_eq!(metric(url, "seer_segment_decoder_runs_total"), 5.0);
    assert!(metric(url, "seer_segment_decoder_seconds_total") > 0.0);
}

#[test]
fn detect_by_labels_and_by_a_photo_answers_as_seer_detect() {
    let s = start(&[]);
    let url = &s.url;
    let (id, w, h) = indexed(url, "astronaut.png");
    let detect = format!("{url}/v1/detect");
    let labels = "a person,a flag";
    let fields = [
        ("id", id.to_string()),
        ("labels", labels.to_string()),
        ("threshold", "0".to_string()),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, found) = post_form(&detect, &fields, None);
    assert_eq!(code, 200, "{found}");
    assert_eq!(found["cached_queries"], false);
    assert!(found["timing"]["prepare_ms"].is_number(), "{found}");
    let got = found["detections"].as_array().unwrap();
    assert!(
        !got.is_empty(),
        "threshold 0 keeps every box NMS leaves: {found}"
    );
    let photo = skimage().join("astronaut.png");
    let want = cli(&[
        "detect",
        "--model",
        &arg(&owl()),
        &arg(&photo),
        "--labels",
        labels,
        "--threshold",
        "0",
        "--json",
    ]);
    let want = want["detections"].as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{found}");
    for (g, w_) in got.iter().zip(want) {
        assert_eq!(g["label"], w_["label"]);
        close(&g["score"], &w_["score"], "score");
        for k in 0..4 {
            close(&g["box"][k], &w_["box"][k], "box");
        }
        let keys: Vec<&String> = g.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 3, "label, score and box: {g}");
    }
    let scores: Vec<f64> = got.iter().map(|d| d["score"].as_f64().unwrap()).collect();
    assert!(
        scores.windows(2).all(|p| p[0] >= p[1]),
        "best first: {scores:?}"
    );
    assert!(got.iter().all(|d| {
        let b = d["box"].as_array().unwrap();
        b[0].as_f64().unwrap() > -(w as f64) && b[3].as_f64().unwrap() < 2.0 * h as f64
    }));

    // The same labels again: their embeddings come from the cache; an upload
    // of the photo finds the same boxes.
    let (code, again) = post_form(
        &detect,
        &[("labels", labels), ("threshold", "0")],
        Some(&photo),
    );
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["cached_queries"], true);
    assert!(again["timing"]["prepare_ms"].is_null());
    assert_eq!(again["detections"], found["detections"]);
    assert_eq!(metric(url, "seer_detect_query_cache_hits_total"), 1.0);
    assert_eq!(metric(url, "seer_detect_runs_total"), 2.0);

    // An indexed photo as the query: boxes labelled "image".
    let (code, by_photo) = post_form(
        &detect,
        &[("id", &id.to_string()), ("query_id", &id.to_string())],
        None,
    );
    assert_eq!(code, 200, "{by_photo}");
    assert_eq!(by_photo["query_id"], id);
    for d in by_photo["detections"].as_array().unwrap() {
        assert_eq!(d["label"], "image", "{d}");
    }
}

/// (status, error message) of a form post.
fn refused(url: &str, fields: &[(&str, &str)], image: Option<&Path>) -> (u16, String) {
    let (code, body) = post_form(url, fields, image);
    (code, body["error"].as_str().unwrap_or_default().to_string())
}

#[test]
fn bad_requests_are_refused_with_clear_messages() {
    let s = start(&["--max-pixels", "600000"]);
    let url = &s.url;
    let (id, w, _) = indexed(url, "coffee.png");
    let id = id.to_string();
    let segment = format!("{url}/v1/segment");
    let detect = format!("{url}/v1/detect");
    let many_points = format!("[{}]", vec!["[1, 1, 1]"; 65].join(", "));
    let many_boxes = format!("[{}]", vec!["[1, 1, 5, 5]"; 17].join(", "));
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("id", &id)], "give \"points\""),
        (vec![("id", &id), ("points", "nope")], "points must be JSON"),
        (
            vec![("id", &id), ("points", "[[1, \"x\", 1]]")],
            "point 0: y must be a number",
        ),
        (
            vec![("id", &id), ("points", "[[1, 2, 7]]")],
            "label must be 1",
        ),
        (vec![("id", &id), ("points", "[[1]]")], "point 0 must be"),
        (
            vec![("id", &id), ("points", &many_points)],
            "at most 64 points",
        ),
        (
            vec![("id", &id), ("boxes", &many_boxes)],
            "at most 16 boxes",
        ),
        (vec![("id", &id), ("boxes", "[[1, 2, 3]]")], "box 0 must be"),
        (
            vec![
                ("id", &id),
                ("points", "[[0.5, 2, 1]]"),
                ("normalized", "yes"),
            ],
            "fraction",
        ),
        (
            vec![("id", &id), ("points", "[[1, 1]]"), ("multimask", "maybe")],
            "multimask must be true or false",
        ),
        (vec![("id", &id), ("mask_id", "0123")], "unknown or expired"),
        (
            vec![("id", "seven"), ("points", "[[1, 1]]")],
            "not an image id",
        ),
        (vec![("points", "[[1, 1]]")], "upload the image"),
    ];
    for (fields, want) in &cases {
        let (code, message) = refused(&segment, fields, None);
        assert_eq!(code, 400, "{fields:?}: {message}");
        assert!(
            message.contains(want),
            "{fields:?}: '{message}' lacks '{want}'"
        );
    }
    let x = (w / 2).to_string();
    let point = format!("[[{x}, 3]]");
    let (code, message) = refused(&segment, &[("id", "999999"), ("points", &point)], None);
    assert_eq!(code, 404, "{message}");
    let chelsea = skimage().join("chelsea.png");
    let (code, message) = refused(&segment, &[("id", &id), ("points", &point)], Some(&chelsea));
    assert_eq!(code, 400, "{message}");
    assert!(message.contains("not both"), "{message}");
    // Larger than --max-pixels: refused before the model sees it.
    let big = tempfile::tempdir().unwrap();
    let big_png = big.path().join("big.png");
    seer_image::image::RgbImage::new(1000, 1000)
        .save(&big_png)
        .unwrap();
    let (code, message) = refused(&segment, &[("points", "[[1, 1]]")], Some(&big_png));
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("pixels"), "{message}");

    let many_labels = (0..33)
        .map(|i| format!("thing {i}"))
        .collect::<Vec<_>>()
        .join(",");
    let long_label = "x".repeat(1001);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("id", &id)], "give \"labels\""),
        (vec![("id", &id), ("labels", " , ,")], "give \"labels\""),
        (
            vec![("id", &id), ("labels", &many_labels)],
            "at most 32 labels",
        ),
        (
            vec![("id", &id), ("labels", &long_label)],
            "longer than 1000",
        ),
        (
            vec![("id", &id), ("labels", "cat"), ("threshold", "high")],
            "threshold must be a number",
        ),
        (
            vec![("id", &id), ("labels", "cat"), ("threshold", "NaN")],
            "threshold must be a number",
        ),
        (
            vec![("id", &id), ("labels", "cat"), ("threshold", "1.5")],
            "from 0 to 1",
        ),
        (
            vec![("id", &id), ("labels", "cat"), ("nms", "0")],
            "nms must be",
        ),
        (
            vec![("id", &id), ("labels", "cat"), ("query_id", &id)],
            "not both",
        ),
        (
            vec![("id", &id), ("query_id", "x")],
            "query_id: 'x' is not an image id",
        ),
        (vec![("labels", "cat")], "upload the image"),
    ];
    for (fields, want) in &cases {
        let (code, message) = refused(&detect, fields, None);
        assert_eq!(code, 400, "{fields:?}: {message}");
        assert!(
            message.contains(want),
            "{fields:?}: '{message}' lacks '{want}'"
        );
    }
    let (code, message) = refused(&detect, &[("labels", "cat")], Some(&big_png));
    assert_eq!(code, 422, "{message}");
    // Nothing reached the models so far.
    assert_eq!(metric(url, "seer_segment_embeddings_total"), 0.0);
    assert_eq!(metric(url, "seer_detect_runs_total"), 0.0);
    // A click outside the image is the model's to refuse, once it knows the size.
    let (code, message) = refused(
        &segment,
        &[("id", &id), ("points", "[[100000, 5, 1]]")],
        None,
    );
    assert_eq!(code, 400, "{message}");
    assert!(message.contains("outside"), "{message}");
    assert_eq!(metric(url, "seer_segment_decoder_runs_total"), 0.0);
}

#[test]
fn a_server_without_the_models_says_which_option_gives_them() {
    let index = tempfile::tempdir().unwrap();
    index_with(index.path(), &[&skimage()], &model_fixture("openclip-vit"));
    let s = serve(index, &[]);
    let (code, message) = refused(
        &format!("{}/v1/segment", s.url),
        &[("id", "1"), ("points", "[[1, 1]]")],
        None,
    );
    assert_eq!(code, 400, "{message}");
    assert!(message.contains("--segment-model"), "{message}");
    let (code, message) = refused(
        &format!("{}/v1/detect", s.url),
        &[("id", "1"), ("labels", "cat")],
        None,
    );
    assert_eq!(code, 400, "{message}");
    assert!(message.contains("--detect-model"), "{message}");
    let (_, models) = json_of(ureq::get(&format!("{}/v1/models", s.url)).call());
    assert!(models["tasks"]["segment"].is_null() && models["tasks"]["detect"].is_null());

    // A model without the head is refused at start, naming the option.
    for (option, model) in [("--segment-model", owl()), ("--detect-model", sam())] {
        let index = tempfile::tempdir().unwrap();
        let out = seer()
            .args(["serve", "--bind", "127.0.0.1:0", "--model"])
            .arg(model_fixture("openclip-vit"))
            .arg(option)
            .arg(&model)
            .env("SEER_INDEX", index.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(option), "{option}: {err}");
    }
}
