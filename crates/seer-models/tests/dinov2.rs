//! DINOv2 from image files to features against transformers' `Dinov2Model` and
//! `Dinov2WithRegistersModel` (fixtures/families/dinov2-*, made by
//! scripts/make_family_fixtures.py): preprocessing, the 224 crop (position table
//! shrunk 37→16), the native 518 input (table as is) and a 224×308 resize
//! (37→16×22), for the plain MLP, SwiGLU and register variants.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use seer_image::{
    decode_file_full, normalize_into, pil_resize, preprocess_decoded, DecodeLimits, Interpolation,
    PreprocessConfig,
};
use seer_models::models::dinov2::{Dinov2Config, Dinov2Model, Dinov2Output};
use seer_models::{Device, ModelFiles, Precision, Tensor};
use seer_testkit::{matrix, max_abs_diff, read_json, repo_root, shared_data};
use serde_json::Value;

const FOLDERS: &[&str] = &["dinov2-tiny", "dinov2-swiglu-tiny", "dinov2-registers-tiny"];
const TOLERANCE: f32 = 1e-4;

fn family(name: &str) -> PathBuf {
    repo_root().join("fixtures/families").join(name)
}

/// The case's images through the case's `BitImageProcessor` settings, as one
/// `(N, 3, H, W)` batch.
fn pixels(folder: &Path, case: &Value) -> Tensor {
    let processor = &case["processor"];
    let images: Vec<_> = case["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let path = shared_data().join(p.as_str().unwrap());
            decode_file_full(&path, &DecodeLimits::default()).unwrap()
        })
        .collect();
    let mut data = Vec::new();
    let (h, w) = if processor["do_center_crop"] == Value::Bool(false) {
        // size {height, width} without a crop: a plain resize that ignores the
        // aspect ratio, then the same normalisation.
        let (h, w) = (
            processor["size"]["height"].as_u64().unwrap() as u32,
            processor["size"]["width"].as_u64().unwrap() as u32,
        );
        let json = std::fs::read_to_string(folder.join("preprocessor_config.json")).unwrap();
        let cfg = PreprocessConfig::from_bit_preprocessor_config(&json).unwrap();
        for img in &images {
            let resized = pil_resize(&img.composite_on_white(), w, h, Interpolation::Bicubic);
            normalize_into(&resized, &cfg, &mut data);
        }
        (h, w)
    } else {
        // The checkpoint's file for the 224 case; the case's own settings (the
        // same processor with another size) otherwise.
        let cfg = if case["name"] == "crop224" {
            let json = std::fs::read_to_string(folder.join("preprocessor_config.json")).unwrap();
            PreprocessConfig::from_bit_preprocessor_config(&json).unwrap()
        } else {
            PreprocessConfig::from_bit_preprocessor_config(&processor.to_string()).unwrap()
        };
        for img in &images {
            data.extend(preprocess_decoded(img, &cfg));
        }
        (cfg.crop_size, cfg.crop_size)
    };
    let n = images.len();
    Tensor::from_vec(data, (n, 3, h as usize, w as usize), &Device::Cpu).unwrap()
}

/// `px[:, :, ::s, ::s]` flattened per image, as `pixel_values.sample` records it.
fn strided_sample(px: &Tensor, stride: usize) -> Vec<Vec<f32>> {
    let (n, c, h, w) = px.dims4().unwrap();
    let all = px.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    (0..n)
        .map(|i| {
            let mut row = Vec::new();
            for ch in 0..c {
                for y in (0..h).step_by(stride) {
                    for x in (0..w).step_by(stride) {
                        row.push(all[((i * c + ch) * h + y) * w + x]);
                    }
                }
            }
            row
        })
        .collect()
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

fn check(what: &str, got: &[Vec<f32>], expected: &Value, tolerance: f32) {
    let diff = max_abs_diff(got, &matrix(expected));
    println!("{what}: max |diff| = {diff:.2e}");
    assert!(diff <= tolerance, "{what}: differs by {diff}");
}

fn check_case(name: &str, model: &Dinov2Model, case: &Value) {
    let case_name = case["name"].as_str().unwrap();
    let what = |item: &str| format!("{name} {case_name} {item}");
    let px = pixels(&family(name), case);
    let shape: Vec<usize> = case["pixel_values"]["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(px.dims(), shape, "{}", what("pixel shape"));
    let stride = case["pixel_values"]["sample_stride"].as_u64().unwrap() as usize;
    check(
        &what("pixels"),
        &strided_sample(&px, stride),
        &case["pixel_values"]["sample"],
        1e-5,
    );

    let out: Dinov2Output = model.forward(&px).unwrap();
    let grid: Vec<usize> = case["grid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(out.patch_tokens.dims()[1..3], grid, "{}", what("grid"));
    assert_eq!(
        out.last_hidden_state.dims()[1],
        case["sequence_length"].as_u64().unwrap() as usize,
        "{}",
        what("sequence length")
    );
    check(
        &what("pooler_output"),
        &rows(&out.pooler),
        &case["pooler_output"],
        TOLERANCE,
    );
    check(
        &what("patch_mean"),
        &rows(&out.patch_mean().unwrap()),
        &case["patch_mean"],
        TOLERANCE,
    );
    check(
        &what("mean of all tokens"),
        &rows(&out.last_hidden_state.mean(1).unwrap()),
        &case["last_hidden_state_mean_all_tokens"],
        TOLERANCE,
    );
    if out.num_registers > 0 {
        let registers = out.register_tokens().unwrap().get(0).unwrap();
        check(
            &what("register tokens"),
            &rows(&registers),
            &case["register_tokens_out"],
            TOLERANCE,
        );
    }
    if let Some(expected) = case.get("last_hidden_state_image0") {
        let image0 = out.last_hidden_state.get(0).unwrap();
        check(
            &what("last_hidden_state[0]"),
            &rows(&image0),
            expected,
            TOLERANCE,
        );
    }
}

#[test]
fn features_match_the_reference_at_224_518_and_non_square() {
    for &name in FOLDERS {
        let model = Dinov2Model::load_dir(&family(name), &Device::Cpu, Precision::F32).unwrap();
        let reference = read_json(&family(name).join("reference.json"));
        assert_eq!(
            model.config().num_register_tokens as u64,
            reference["num_register_tokens"].as_u64().unwrap()
        );
        let cases = reference["cases"].as_array().unwrap();
        let names: Vec<_> = cases.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["crop224", "native518", "nonsquare224x308"]);
        for case in cases {
            check_case(name, &model, case);
        }
    }
}

#[test]
fn position_embeddings_for_112x154_match_interpolate_pos_encoding() {
    for &name in FOLDERS {
        let model = Dinov2Model::load_dir(&family(name), &Device::Cpu, Precision::F32).unwrap();
        let reference = read_json(&family(name).join("reference.json"));
        let got = model
            .position_embeddings(112, 154)
            .unwrap()
            .squeeze(0)
            .unwrap();
        check(
            &format!("{name} position embeddings 112x154"),
            &rows(&got),
            &reference["interpolated_position_embeddings"]["sizes"]["112x154"],
            1e-5,
        );
    }
}

#[test]
fn remainder_pixels_past_the_last_patch_are_ignored() {
    let model = Dinov2Model::load_dir(
        &family("dinov2-registers-tiny"),
        &Device::Cpu,
        Precision::F32,
    )
    .unwrap();
    let px = Tensor::randn(0f32, 1.0, (2, 3, 60, 45), &Device::Cpu).unwrap();
    let cut = px.narrow(2, 0, 56).unwrap().narrow(3, 0, 42).unwrap();
    let (a, b) = (model.forward(&px).unwrap(), model.forward(&cut).unwrap());
    assert_eq!(a.patch_tokens.dims(), [2, 4, 3, 40]);
    let diff = max_abs_diff(&rows(&a.pooler), &rows(&b.pooler));
    assert_eq!(diff, 0.0);
}

#[test]
fn bad_pixel_shapes_are_errors() {
    let model =
        Dinov2Model::load_dir(&family("dinov2-tiny"), &Device::Cpu, Precision::F32).unwrap();
    for shape in [(1, 1, 224, 224), (1, 3, 13, 224), (1, 3, 224, 10)] {
        let px = Tensor::zeros(shape, seer_models::DType::F32, &Device::Cpu).unwrap();
        let e = model.forward(&px).unwrap_err().to_string();
        assert!(e.contains("expected images"), "{shape:?}: {e}");
    }
}

/// A copy of `dinov2-tiny` with its config or tensors changed.
fn broken_copy(
    edit_config: impl FnOnce(&mut Value),
    edit_tensors: impl FnOnce(&mut HashMap<String, Tensor>),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = family("dinov2-tiny");
    let mut config = read_json(&src.join("config.json"));
    edit_config(&mut config);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let mut tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    edit_tensors(&mut tensors);
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    dir
}

fn load_error(dir: &Path) -> String {
    let files = ModelFiles::from_dir(dir).unwrap();
    Dinov2Model::load(&files, &Device::Cpu, Precision::F32)
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_checkpoints_are_errors_naming_the_file() {
    let dir = broken_copy(|c| c["model_type"] = "siglip_vision_model".into(), |_| {});
    let e = load_error(dir.path());
    assert!(
        e.contains("config.json") && e.contains("'siglip_vision_model'"),
        "{e}"
    );

    let dir = broken_copy(
        |_| {},
        |t| {
            t.remove("encoder.layer.2.mlp.fc2.weight");
        },
    );
    let e = load_error(dir.path());
    assert!(
        e.contains("model.safetensors") && e.contains("'encoder.layer.2.mlp.fc2.weight'"),
        "{e}"
    );

    let dir = broken_copy(
        |_| {},
        |t| {
            let wrong = Tensor::zeros(41, seer_models::DType::F32, &Device::Cpu).unwrap();
            t.insert("layernorm.weight".into(), wrong);
        },
    );
    let e = load_error(dir.path());
    assert!(
        e.contains("model.safetensors") && e.contains("'layernorm.weight'") && e.contains("[41]"),
        "{e}"
    );

    // A config that disagrees with the weights: a SwiGLU FFN over MLP tensors.
    let dir = broken_copy(|c| c["use_swiglu_ffn"] = true.into(), |_| {});
    let e = load_error(dir.path());
    assert!(
        e.contains("model.safetensors") && e.contains("mlp.weights_in"),
        "{e}"
    );

    // Register tokens in the weights, none in the config (model_type dinov2):
    // running without them would give other features than transformers.
    let dir = broken_copy(
        |_| {},
        |t| {
            let width = t["embeddings.cls_token"].dims()[2];
            let registers =
                Tensor::zeros((1, 4, width), seer_models::DType::F32, &Device::Cpu).unwrap();
            t.insert("embeddings.register_tokens".into(), registers);
        },
    );
    let e = load_error(dir.path());
    assert!(
        e.contains("model.safetensors") && e.contains("register_tokens") && e.contains("[1, 4,"),
        "{e}"
    );

    // The public config parser on its own.
    let e = Dinov2Config::from_file(&dir.path().join("missing.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.json"), "{e}");
}

#[test]
fn candle_layers_agree_with_the_packed_cpu_kernels() {
    // Trainable weights build the blocks from candle ops (the GPU and training
    // path, SwiGLU included) instead of seer's packed kernels.
    for &name in FOLDERS {
        let dir = family(name);
        let cfg = Dinov2Config::from_file(&dir.join("config.json")).unwrap();
        let tensors =
            candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
        let w = seer_models::Weights::trainable(tensors, &Device::Cpu);
        let candle = Dinov2Model::from_weights(&cfg, &w).unwrap();
        let packed = Dinov2Model::load_dir(&dir, &Device::Cpu, Precision::F32).unwrap();
        let px = Tensor::randn(0f32, 1.0, (2, 3, 70, 98), &Device::Cpu).unwrap();
        let (a, b) = (candle.forward(&px).unwrap(), packed.forward(&px).unwrap());
        let flat = |o: &Dinov2Output| rows(&o.last_hidden_state.flatten(0, 1).unwrap());
        let diff = max_abs_diff(&flat(&a), &flat(&b));
        assert!(diff < 1e-4, "{name}: {diff}");
    }
}
