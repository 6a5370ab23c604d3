//! BLIP against transformers (fixtures/blip, made by
//! scripts/make_blip_fixtures.py): the PIL image processor, the vision tower,
//! the decoder's logits step by step, greedy and beam captions token for token
//! (with every generation setting the fixture records), batched captions,
//! image–text matching and ITC scores, and VQA answers; then the engine's
//! task traits and their refusals.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use seer_engine::blip::Blip;
use seer_engine::{GenerateOptions, LoadOptions, LoadedModel, PixelInput};
use seer_models::generate::{Decoder, GenerationConfig};
use seer_models::{Device, Tensor};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    repo_root().join("fixtures/blip").join(name)
}

fn load(name: &str) -> (Blip, Value) {
    let dir = fixture(name);
    let blip = Blip::load_dir(&dir, &LoadOptions::default()).unwrap();
    (blip, read_json(&dir.join("reference.json")))
}

fn image_paths(reference: &Value) -> Vec<PathBuf> {
    strings(&reference["images"])
        .iter()
        .map(|p| shared_data().join(p))
        .collect()
}

fn pixels(blip: &Blip, path: &Path) -> Vec<f32> {
    let decoded = seer_image::decode_file_full(path, &Default::default()).unwrap();
    blip.preprocess(&decoded)
}

fn image_tensor(blip: &Blip, paths: &[PathBuf]) -> Tensor {
    let side = blip.model().config().vision.image_size;
    let data: Vec<f32> = paths.iter().flat_map(|p| pixels(blip, p)).collect();
    Tensor::from_vec(data, (paths.len(), 3, side, side), &Device::Cpu).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The decoder ids of a prompt as the processor and `generate` make them.
fn prompt_ids(blip: &Blip, prompt: &Value) -> Vec<u32> {
    match prompt.as_str() {
        None => Vec::new(),
        Some(text) => {
            let ids = blip.tokenizer().encode(text).unwrap();
            ids[1..ids.len() - 1].to_vec()
        }
    }
}

#[test]
fn preprocessing_is_the_pil_blip_image_processor() {
    let (blip, reference) = load("caption-tiny");
    let pre = &reference["preprocessing"];
    let stride = pre["sample_stride"].as_u64().unwrap() as usize;
    let side = 384;
    for (i, path) in image_paths(&reference).iter().enumerate() {
        let px = pixels(&blip, path);
        assert_eq!(px.len(), 3 * side * side);
        let mut sample = Vec::new();
        for c in 0..3 {
            for y in (0..side).step_by(stride) {
                for x in (0..side).step_by(stride) {
                    sample.push(px[(c * side + y) * side + x]);
                }
            }
        }
        let diff = max_diff(&sample, &floats(&pre["sample"][i]));
        assert!(diff <= 1e-5, "{}: sample differs by {diff}", path.display());
        let mean: Vec<f32> = (0..3)
            .map(|c| {
                let plane = &px[c * side * side..][..side * side];
                // In f64: an f32 sum of 147,456 values drifts by 1e-3.
                (plane.iter().map(|&v| v as f64).sum::<f64>() / plane.len() as f64) as f32
            })
            .collect();
        let diff = max_diff(&mean, &floats(&pre["channel_mean"][i]));
        assert!(
            diff <= 1e-4,
            "{}: channel means differ by {diff}",
            path.display()
        );
    }
}

#[test]
fn the_vision_tower_matches_last_hidden_state() {
    let (blip, reference) = load("caption-tiny");
    let paths = image_paths(&reference);
    let embeds = blip
        .model()
        .image_embeds(&image_tensor(&blip, &paths))
        .unwrap();
    let mut worst = 0f32;
    for (i, expected) in reference["vision"].as_array().unwrap().iter().enumerate() {
        let rows = embeds.get(i).unwrap().to_vec2::<f32>().unwrap();
        worst = worst.max(max_diff(&rows[0], &floats(&expected["cls"])));
        for (row, values) in expected["rows_first8"].as_object().unwrap() {
            let row: usize = row.parse().unwrap();
            worst = worst.max(max_diff(&rows[row][..8], &floats(values)));
        }
        let n = rows.len() as f32;
        let mean: Vec<f32> = (0..rows[0].len())
            .map(|j| rows.iter().map(|r| r[j]).sum::<f32>() / n)
            .collect();
        worst = worst.max(max_diff(&mean, &floats(&expected["token_mean"])));
    }
    println!("vision last_hidden_state max |diff| = {worst:.2e}");
    assert!(worst <= 1e-4, "{worst}");
}

#[test]
fn decoder_logits_match_step_by_step() {
    let (blip, reference) = load("caption-tiny");
    let paths = image_paths(&reference);
    let mut worst = 0f32;
    for case in reference["step_logits"].as_array().unwrap() {
        let image = case["image"].as_u64().unwrap() as usize;
        let decoder = blip
            .model()
            .caption_decoder(&image_tensor(&blip, &paths[image..=image]))
            .unwrap();
        let steps = case["steps"].as_array().unwrap();
        let first = ids(&steps[0]["decoder_input_ids"]);
        let (mut state, mut logits) = decoder.start(&[first], &[0]).unwrap();
        for (s, step) in steps.iter().enumerate() {
            let expected = floats(&step["logits"]);
            worst = worst.max(max_diff(&logits, &expected));
            let argmax = step["argmax"].as_u64().unwrap() as u32;
            if let Some(next) = steps.get(s + 1) {
                let next_ids = ids(&next["decoder_input_ids"]);
                assert_eq!(*next_ids.last().unwrap(), argmax);
                logits = decoder.step(&mut state, &[argmax]).unwrap();
            }
        }
    }
    println!("decoder logits max |diff| = {worst:.2e}");
    assert!(worst <= 1e-4, "{worst}");
}

#[test]
fn captions_are_token_identical_for_every_generation_case() {
    let (blip, reference) = load("caption-tiny");
    let paths = image_paths(&reference);
    let images = image_tensor(&blip, &paths);
    for case in reference["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let config = GenerationConfig::from_json(&case["generate_kwargs"].to_string()).unwrap();
        let prompt = prompt_ids(&blip, &case["prompt"]);
        let got = blip.model().caption(&images, &prompt, &config).unwrap();
        for (i, expected) in case["results"].as_array().unwrap().iter().enumerate() {
            assert_eq!(
                got[i],
                ids(&expected["output_ids"]),
                "{name}, image {i} ({})",
                paths[i].display()
            );
            assert_eq!(
                blip.tokenizer().decode(&got[i]).unwrap(),
                expected["caption"].as_str().unwrap(),
                "{name}, image {i}"
            );
        }
    }
}

#[test]
fn a_batch_gives_each_image_its_own_caption() {
    let (blip, reference) = load("caption-tiny");
    let paths = image_paths(&reference);
    for case in reference["batched"].as_array().unwrap() {
        let chosen: Vec<PathBuf> = ids(&case["images"])
            .iter()
            .map(|&i| paths[i as usize].clone())
            .collect();
        let config = GenerationConfig::from_json(&case["generate_kwargs"].to_string()).unwrap();
        let prompt = prompt_ids(&blip, &case["prompt"]);
        let got = blip
            .model()
            .caption(&image_tensor(&blip, &chosen), &prompt, &config)
            .unwrap();
        assert_eq!(
            got,
            token_lists(&case["output_ids_stripped"]),
            "{}",
            case["case"]
        );
    }
}

#[test]
fn the_captioner_trait_applies_prompt_beams_and_length() {
    let dir = fixture("caption-tiny");
    let model = LoadedModel::load_dir(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(model.family, "blip");
    assert!(model.answerer().is_err() && model.matcher().is_err());
    let captioner = model.captioner().unwrap();
    let reference = read_json(&dir.join("reference.json"));
    let paths = image_paths(&reference);
    let case = |name: &str| {
        reference["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no case {name}"))
            .clone()
    };
    let px: Vec<f32> = paths[..2]
        .iter()
        .flat_map(|p| {
            let d = seer_image::decode_file_full(p, &Default::default()).unwrap();
            captioner.preprocess(&d)
        })
        .collect();
    for (name, prompt, options) in [
        ("greedy", None, GenerateOptions::default()),
        (
            "beam3_prompt_a_picture_of",
            Some("a picture of"),
            GenerateOptions {
                beams: Some(3),
                max_new_tokens: None,
            },
        ),
        (
            "greedy_max_new_tokens5",
            None,
            GenerateOptions {
                beams: None,
                max_new_tokens: Some(5),
            },
        ),
    ] {
        let got = captioner.caption(px.clone(), 2, prompt, &options).unwrap();
        let expected = case(name);
        for (i, g) in got.iter().enumerate() {
            assert_eq!(
                g.tokens,
                ids(&expected["results"][i]["output_ids"]),
                "{name}"
            );
            assert_eq!(g.text, expected["results"][i]["caption"].as_str().unwrap());
        }
    }
    // Bad requests are errors, not panics.
    let empty = captioner.caption(px.clone(), 2, Some("   "), &GenerateOptions::default());
    assert!(empty.unwrap_err().to_string().contains("prompt is empty"));
    let wrong = captioner.caption(px[..10].to_vec(), 2, None, &GenerateOptions::default());
    assert!(wrong.unwrap_err().to_string().contains("images of 3"));
    let zero = GenerateOptions {
        beams: Some(0),
        max_new_tokens: None,
    };
    assert!(captioner.caption(px, 2, None, &zero).is_err());
}

#[test]
fn generation_config_json_is_ignored_as_transformers_blip_ignores_it() {
    // transformers' BLIP generate runs its text decoder's own generation
    // config (the fixture checked it with these very fields set).
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture("caption-tiny")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let reference = read_json(&fixture("caption-tiny/reference.json"));
    let behaviour = &reference["generation_config_behaviour"];
    assert_eq!(behaviour["generate_output_equals_plain_checkpoint"], true);
    let mut config = read_json(&dir.path().join("generation_config.json"));
    for (k, v) in behaviour["generation_config_json_extra_fields"]
        .as_object()
        .unwrap()
    {
        config[k] = v.clone();
    }
    std::fs::write(
        dir.path().join("generation_config.json"),
        config.to_string(),
    )
    .unwrap();
    let model = LoadedModel::load_dir(dir.path(), &LoadOptions::default()).unwrap();
    let captioner = model.captioner().unwrap();
    let path = &image_paths(&reference)[0];
    let px =
        captioner.preprocess(&seer_image::decode_file_full(path, &Default::default()).unwrap());
    let got = captioner
        .caption(px, 1, None, &GenerateOptions::default())
        .unwrap();
    assert_eq!(
        got[0].tokens,
        ids(&reference["cases"][0]["results"][0]["output_ids"])
    );
}

#[test]
fn image_text_matching_and_itc_match_the_retrieval_head() {
    let (blip, reference) = load("retrieval-tiny");
    let paths = image_paths(&reference);
    let texts = strings(&reference["texts"]);
    for (i, (t, expected)) in texts
        .iter()
        .zip(token_lists(&reference["text_input_ids"]))
        .enumerate()
    {
        assert_eq!(blip.tokenizer().encode(t).unwrap(), expected, "text {i}");
    }
    let (mut worst_p, mut worst_s) = (0f32, 0f32);
    for (i, pairs) in reference["pairs"].as_array().unwrap().iter().enumerate() {
        let image = image_tensor(&blip, &paths[i..=i]);
        for pair in pairs.as_array().unwrap() {
            let t = pair["text_index"].as_u64().unwrap() as usize;
            let ids = blip.tokenizer().encode(&texts[t]).unwrap();
            let got = blip.model().match_text(&image, &ids).unwrap();
            let p = pair["itm_probability"].as_f64().unwrap() as f32;
            let s = pair["similarity"].as_f64().unwrap() as f32;
            worst_p = worst_p.max((got.itm_probability - p).abs());
            worst_s = worst_s.max((got.similarity - s).abs());
        }
    }
    println!("ITM probability max |diff| = {worst_p:.2e}, ITC cosine {worst_s:.2e}");
    assert!(worst_p <= 1e-4 && worst_s <= 1e-4, "{worst_p} {worst_s}");

    // Through the trait: the word-order pair gets two different scores.
    let model = LoadedModel::load_dir(&fixture("retrieval-tiny"), &LoadOptions::default()).unwrap();
    let matcher = model.matcher().unwrap();
    assert!(model.captioner().is_err());
    let px = pixels(&blip, &paths[0]);
    let pair = vec![texts[2].clone(), texts[3].clone()];
    let both: Vec<f32> = px.iter().chain(&px).copied().collect();
    let scores = matcher.match_texts(both, 2, &pair).unwrap();
    let expected = &reference["pairs"][0];
    for (k, score) in scores.iter().enumerate() {
        let e = expected
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["text_index"] == 2 + k)
            .unwrap();
        assert!(
            (score.itm_probability - e["itm_probability"].as_f64().unwrap() as f32).abs() <= 1e-4
        );
    }
    assert!(matcher.match_texts(px.clone(), 1, &["".into()]).is_err());
    assert!(
        matcher.match_texts(px, 1, &pair).is_err(),
        "two texts for one image"
    );
}

#[test]
fn vqa_answers_are_token_identical() {
    let (blip, reference) = load("vqa-tiny");
    let paths = image_paths(&reference);
    let questions = reference["questions"].as_array().unwrap();
    for question in questions {
        let text = question["text"].as_str().unwrap();
        assert_eq!(
            blip.tokenizer().encode(text).unwrap(),
            ids(&question["input_ids"])
        );
    }
    let greedy = GenerationConfig::from_json("{}").unwrap();
    let beam3 = GenerationConfig::from_json(r#"{"num_beams": 3}"#).unwrap();
    for (i, answers) in reference["answers"].as_array().unwrap().iter().enumerate() {
        let image = image_tensor(&blip, &paths[i..=i]);
        for (q, answer) in answers.as_array().unwrap().iter().enumerate() {
            let ids_q = ids(&questions[q]["input_ids"]);
            for (kind, config) in [("greedy", &greedy), ("beam3", &beam3)] {
                let got = blip.model().answer(&image, &ids_q, config).unwrap();
                assert_eq!(
                    got,
                    ids(&answer[kind]["output_ids"]),
                    "image {i}, question {q}, {kind}"
                );
                assert_eq!(
                    blip.tokenizer().decode(&got).unwrap(),
                    answer[kind]["answer"].as_str().unwrap()
                );
            }
        }
    }
    let model = LoadedModel::load_dir(&fixture("vqa-tiny"), &LoadOptions::default()).unwrap();
    let answerer = model.answerer().unwrap();
    let px = pixels(&blip, &paths[0]);
    let got = answerer
        .answer(
            px.clone(),
            1,
            &[questions[0]["text"].as_str().unwrap().into()],
            &GenerateOptions::default(),
        )
        .unwrap();
    assert_eq!(
        got[0].tokens,
        ids(&reference["answers"][0][0]["greedy"]["output_ids"])
    );
    // A question the encoder cannot read whole is refused by name, by the
    // check the commands and the server run before any image, and by
    // `answer` itself.
    let long = "?".repeat(200);
    let options = GenerateOptions::default();
    let checked = answerer
        .check_question(&long, "the question", &options)
        .unwrap_err()
        .to_string();
    assert!(
        checked.starts_with("the question is too long: 202 tokens"),
        "{checked}"
    );
    let answered = answerer
        .answer(px, 1, &[long], &options)
        .unwrap_err()
        .to_string();
    assert_eq!(answered, checked);
    assert!(answerer
        .check_question("  ", "the question", &options)
        .unwrap_err()
        .to_string()
        .contains("the question is empty"));
    let too_many = GenerateOptions {
        max_new_tokens: Some(64),
        ..Default::default()
    };
    assert!(answerer
        .check_question("what?", "the question", &too_many)
        .unwrap_err()
        .to_string()
        .contains("give --max-new-tokens 63 or less"));
}
