//! OWL-ViT and OWLv2 against transformers (fixtures/owlvit, made by
//! scripts/make_owlvit_fixtures.py): the PIL image processors, the token ids,
//! the query embeddings, logits, boxes and objectness of every image, the
//! image-query choice, and the detections after transformers' post-processing
//! (and seer's per-class NMS) through the engine's `Detector`.

mod common;

use std::path::PathBuf;

use common::*;
use seer_engine::detect::{detector_of, DetectOptions, DetectQuery, Detection, Detector};
use seer_engine::owlvit::Owl;
use seer_engine::{LoadOptions, LoadedModel};
use serde_json::Value;

const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    repo_root().join("fixtures/owlvit").join(name)
}

fn options() -> LoadOptions {
    LoadOptions {
        tokenizer: Some(tokenizer_file()),
        device: test_device(),
        ..Default::default()
    }
}

fn load(name: &str) -> (Owl, Value) {
    let dir = fixture(name);
    let owl = Owl::load_dir(&dir, &options()).unwrap_or_else(|e| panic!("{name}: {e}"));
    (owl, read_json(&dir.join("reference.json")))
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn flat(v: &Value) -> Vec<f32> {
    matrix(v).concat()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn decode(rel: &str) -> seer_image::DecodedImage {
    seer_image::decode_file_full(&shared_data().join(rel), &Default::default()).unwrap()
}

fn images(reference: &Value) -> Vec<(String, seer_image::DecodedImage)> {
    strings(&reference["images"])
        .into_iter()
        .map(|p| {
            let d = decode(&p);
            (p, d)
        })
        .collect()
}

/// Detections against the reference's list, both best first.
fn same_detections(got: &[Detection], want: &Value, frame: f32, what: &str) -> f32 {
    let mut want: Vec<&Value> = want.as_array().unwrap().iter().collect();
    want.sort_by(|a, b| {
        b["score"]
            .as_f64()
            .unwrap()
            .total_cmp(&a["score"].as_f64().unwrap())
    });
    assert_eq!(got.len(), want.len(), "{what}: {got:?}\nwant {want:?}");
    let mut worst = 0f32;
    for (g, w) in got.iter().zip(want) {
        if let Some(label) = w.get("label_index") {
            assert_eq!(g.label_index as u64, label.as_u64().unwrap(), "{what}");
            assert_eq!(g.label, w["label"].as_str().unwrap(), "{what}");
        }
        let ds = (g.score - w["score"].as_f64().unwrap() as f32).abs();
        let db = max_diff(&g.bbox, &floats(&w["box"])) / frame;
        assert!(
            ds < TOL && db < TOL,
            "{what}: score {ds}, box {db} (relative)"
        );
        worst = worst.max(ds).max(db);
    }
    worst
}

fn parity(name: &str) {
    let (owl, reference) = load(name);
    let imgs = images(&reference);

    // Preprocessing: the PIL processor class.
    let px = &reference["pixel_values"];
    let stride = px["sample_stride"].as_u64().unwrap() as usize;
    let side = owl.model().config().image_size;
    let mut worst_px = 0f32;
    for (i, (path, img)) in imgs.iter().enumerate() {
        let pixels = owl.preprocess(img);
        assert_eq!(pixels.len(), 3 * side * side);
        let mut sample = Vec::new();
        for c in 0..3 {
            for y in (0..side).step_by(stride) {
                for x in (0..side).step_by(stride) {
                    sample.push(pixels[(c * side + y) * side + x]);
                }
            }
        }
        let d = max_diff(&sample, &floats(&px["sample"][i]));
        let mean: Vec<f32> = (0..3)
            .map(|c| {
                let plane = &pixels[c * side * side..(c + 1) * side * side];
                (plane.iter().map(|&v| v as f64).sum::<f64>() / plane.len() as f64) as f32
            })
            .collect();
        let dm = max_diff(&mean, &floats(&px["channel_mean"][i]));
        assert!(
            d < 1e-4 && dm < 1e-5,
            "{name} {path}: pixels differ by {d}, means by {dm}"
        );
        worst_px = worst_px.max(d);
    }

    // Token ids: the processor's, up to the first end-of-text.
    let labels = strings(&reference["labels"]);
    for (label, want) in labels
        .iter()
        .zip(token_lists(&reference["text"]["input_ids"]))
    {
        let eot = want.iter().position(|&t| t == 49407).unwrap();
        assert_eq!(owl.tokenize(label), want[..=eot].to_vec(), "{label}");
    }
    let text = owl.embed_labels(&labels).unwrap();
    let text_embeds: Vec<f32> = text.flatten_all().unwrap().to_vec1().unwrap();
    let d_text = max_diff(&text_embeds, &flat(&reference["text"]["text_embeds"]));
    assert!(d_text < TOL, "{name}: text_embeds differ by {d_text}");

    // Logits, boxes, objectness for every image.
    let (mut d_logits, mut d_boxes, mut d_obj) = (0f32, 0f32, 0f32);
    let detector: &dyn Detector = &owl;
    let prepared = detector
        .prepare(&DetectQuery::Texts(labels.clone()))
        .unwrap();
    let mut d_post = 0f32;
    for (i, (path, img)) in imgs.iter().enumerate() {
        let want = &reference["text_queries"][i];
        let features = owl.run_image(img).unwrap();
        let out = owl.outputs(&features, &text).unwrap();
        let boxes: Vec<f32> = out.boxes.iter().flatten().copied().collect();
        d_logits = d_logits.max(max_diff(&out.logits, &flat(&want["logits"])));
        d_boxes = d_boxes.max(max_diff(&boxes, &flat(&want["pred_boxes"])));
        if let Some(obj) = &out.objectness {
            d_obj = d_obj.max(max_diff(obj, &floats(&want["objectness_logits"])));
        }
        assert_eq!(
            out.objectness.is_some(),
            want.get("objectness_logits").is_some()
        );
        assert!(
            d_logits < TOL && d_boxes < TOL && d_obj < TOL,
            "{name} {path}: logits {d_logits}, boxes {d_boxes}, objectness {d_obj}"
        );
        // Post-processing: nms_1 is transformers' own; the others add per-class NMS.
        let frame = floats(&want["target_size"]).into_iter().fold(0.0, f32::max);
        for (key, by_nms) in want["post_process"].as_object().unwrap() {
            let threshold: f32 = key.trim_start_matches("threshold_").parse().unwrap();
            for (nms_key, expected) in by_nms.as_object().unwrap() {
                let nms_iou: f32 = nms_key.trim_start_matches("nms_").parse().unwrap();
                let got = detector
                    .detect(img, &prepared, &DetectOptions { threshold, nms_iou })
                    .unwrap();
                let what = format!("{name} {path} {key} {nms_key}");
                d_post = d_post.max(same_detections(&got, expected, frame, &what));
            }
        }
    }

    // Image-guided detection.
    let iq = &reference["image_query"];
    let query_image = decode(iq["path"].as_str().unwrap());
    let qfeatures = owl.run_image(&query_image).unwrap();
    let query = owl.model().image_query(&qfeatures).unwrap();
    assert_eq!(
        query.box_index as u64,
        iq["best_box_index"].as_u64().unwrap(),
        "{name}"
    );
    let qe: Vec<f32> = query.embedding.flatten_all().unwrap().to_vec1().unwrap();
    let d_query = max_diff(&qe, &floats(&iq["query_embed"]));
    assert!(
        d_query < TOL,
        "{name}: image query embedding differs by {d_query}"
    );
    let prepared = detector.prepare(&DetectQuery::Image(query_image)).unwrap();
    let mut d_guided = 0f32;
    for (i, (path, img)) in imgs.iter().enumerate() {
        let want = &reference["image_guided"][i];
        let features = owl.run_image(img).unwrap();
        let out = owl.outputs(&features, &query.embedding).unwrap();
        d_guided = d_guided.max(max_diff(&out.logits, &floats(&want["logits"])));
        assert!(
            d_guided < TOL,
            "{name} {path}: guided logits differ by {d_guided}"
        );
        let frame = floats(&reference["text_queries"][i]["target_size"])
            .into_iter()
            .fold(0.0, f32::max);
        for (key, expected) in want["post_process"].as_object().unwrap() {
            let parts: Vec<&str> = key.split('_').collect();
            let threshold: f32 = parts[1].parse().unwrap();
            let nms_iou: f32 = parts[3].parse().unwrap();
            let got = detector
                .detect(img, &prepared, &DetectOptions { threshold, nms_iou })
                .unwrap();
            let what = format!("{name} {path} image query {key}");
            d_post = d_post.max(same_detections(&got, expected, frame, &what));
        }
    }
    println!(
        "{name}: pixels {worst_px:.2e}, text_embeds {d_text:.2e}, logits {d_logits:.2e}, \
         boxes {d_boxes:.2e}, objectness {d_obj:.2e}, query {d_query:.2e}, \
         guided logits {d_guided:.2e}, post-processed {d_post:.2e}"
    );
}

#[test]
fn owlvit_matches_transformers() {
    parity("owlvit-tiny");
}

#[test]
fn owlv2_matches_transformers() {
    parity("owlv2-tiny");
}

#[test]
fn registry_loads_both_as_detectors_and_other_models_are_refused() {
    for name in ["owlvit-tiny", "owlv2-tiny"] {
        let model = LoadedModel::load_dir(&fixture(name), &options()).unwrap();
        assert_eq!(model.family, "owlvit");
        assert!(detector_of(&model).is_ok());
        assert!(model.image.is_none() && model.text.is_none());
    }
    let blip = LoadedModel::load_dir(
        &repo_root().join("fixtures/blip/caption-tiny"),
        &LoadOptions::default(),
    )
    .unwrap();
    let err = detector_of(&blip).err().unwrap().to_string();
    assert!(
        err.contains("detects no objects") && err.contains("OWL"),
        "{err}"
    );
}

#[test]
fn bad_queries_and_settings_are_clear_errors() {
    let (owl, _) = load("owlvit-tiny");
    let err = owl
        .prepare(&DetectQuery::Texts(vec![]))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no labels"), "{err}");
    let err = owl
        .prepare(&DetectQuery::Texts(vec!["a cat".into(), " ".into()]))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("label 2 is empty"), "{err}");
    let prepared = owl
        .prepare(&DetectQuery::Texts(vec!["a cat".into()]))
        .unwrap();
    let img = decode("smoke/skimage/camera.png");
    let err = owl
        .detect(
            &img,
            &prepared,
            &DetectOptions {
                threshold: 0.1,
                nms_iou: 1.5,
            },
        )
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--nms"), "{err}");
    // A folder without a tokenizer says how to give one.
    let err = Owl::load_dir(&fixture("owlvit-tiny"), &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("tokenizer") && err.contains("owlvit-tiny"),
        "{err}"
    );
}
