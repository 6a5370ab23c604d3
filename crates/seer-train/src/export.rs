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
    let fill = || -> Result<()> {
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
        Ok(())
    };
    // A failure (a full disk) drops the temporary folder: name the files by
    // where they were going.
    fill().map_err(|e| e.staged_in(tmp, dir))?;
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
        // Read, then written: a failure names the file it happened to, the
        // tokenizer read or the copy written (a full disk is the copy's).
        let bytes = std::fs::read(&f).map_err(|e| io_error(&f, e))?;
        let to = dest.join(name);
        std::fs::write(&to, bytes).map_err(|e| io_error(&to, e))?;
    }
    Ok(())
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| file_error(path, e))?;
    std::fs::write(path, text).map_err(|e| io_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tokenizer file that cannot be written into the model folder (a full
    /// disk; here a folder in its place) is named where it was going, not as
    /// the file it was read from.
    #[test]
    fn a_tokenizer_copy_that_fails_names_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("vocab.txt");
        std::fs::write(&source, b"tokens").unwrap();
        let dest = dir.path().join("model");
        std::fs::create_dir_all(dest.join("vocab.txt")).unwrap();
        let err = copy_tokenizer(&source, &dest).unwrap_err();
        match &err {
            crate::TrainError::Io { path, .. } => assert_eq!(path, &dest.join("vocab.txt")),
            other => panic!("expected an I/O error, got {other:?}"),
        }
        // One that cannot be read is named as itself.
        let missing = dir.path().join("gone.txt");
        match copy_tokenizer(&missing, &dest).unwrap_err() {
            crate::TrainError::Io { path, .. } => assert_eq!(path, missing),
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }
}
