//! Writes a trained model as a transformers model folder: `config.json`,
//! `model.safetensors` (CLIPModel names), `preprocessor_config.json` and the
//! tokenizer, loadable by `transformers.CLIPModel.from_pretrained` and by seer.

use std::path::Path;

use seer_image::PreprocessConfig;
use serde_json::json;

use seer_util::fs::{AtomicDir, Durability};

use crate::error::{file_error, io_error, Result};
use crate::params::ParamStore;

/// Tokenizer file names seer and transformers look for in a model folder.
const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "bpe_simple_vocab_16e6.txt.gz",
];

/// Exports into `dir` (replaced atomically). `tokenizer` is a tokenizer file or a
/// folder holding tokenizer files; they are copied beside the weights.
pub fn export_model(
    store: &ParamStore,
    dir: &Path,
    preprocess: &PreprocessConfig,
    tokenizer: Option<&Path>,
) -> Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    }
    let staged = AtomicDir::create(dir, Durability::Fsync).map_err(|e| io_error(dir, e))?;
    let tmp = staged.path();

    let mut config = store.config_json().clone();
    if let Some(obj) = config.as_object_mut() {
        obj.insert("architectures".into(), json!(["CLIPModel"]));
        obj.insert("model_type".into(), json!("clip"));
    }
    write_json(&tmp.join("config.json"), &config)?;
    store.save(&tmp.join("model.safetensors"))?;
    write_json(
        &tmp.join("preprocessor_config.json"),
        &preprocessor_json(preprocess),
    )?;
    if let Some(tok) = tokenizer {
        copy_tokenizer(tok, tmp)?;
    }
    staged.commit().map_err(|e| io_error(dir, e))
}

fn preprocessor_json(p: &PreprocessConfig) -> serde_json::Value {
    json!({
        "crop_size": {"height": p.crop_size, "width": p.crop_size},
        "do_center_crop": true,
        "do_convert_rgb": true,
        "do_normalize": p.do_normalize,
        "do_rescale": true,
        "do_resize": p.do_resize,
        "image_mean": p.mean,
        "image_processor_type": "CLIPImageProcessor",
        "image_std": p.std,
        "resample": 3,
        "rescale_factor": 1.0 / 255.0,
        "size": {"shortest_edge": p.resize_to},
    })
}

fn copy_tokenizer(source: &Path, dest: &Path) -> Result<()> {
    let files: Vec<std::path::PathBuf> = if source.is_dir() {
        TOKENIZER_FILES
            .iter()
            .map(|f| source.join(f))
            .filter(|p| p.is_file())
            .collect()
    } else {
        vec![source.to_path_buf()]
    };
    for f in files {
        let Some(name) = f.file_name() else { continue };
        std::fs::copy(&f, dest.join(name)).map_err(|e| io_error(&f, e))?;
    }
    Ok(())
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| file_error(path, e))?;
    std::fs::write(path, text).map_err(|e| io_error(path, e))
}
