//! The family registry: which code loads a model folder, decided from its
//! config (transformers' `config.json` `model_type`; for open_clip folders the
//! `open_clip_config.json`). Adding a family is one [`Family`] entry in
//! [`FAMILIES`] whose `load` builds a [`LoadedModel`] from the family's own
//! encoders (its code lives in `seer-models/src/models/<family>/`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{file_error, EngineError, Result};
use crate::loader::{Clip, LoadOptions};
use crate::tasks::LoadedModel;

/// Loads a model folder of this family.
pub type LoadFn = fn(&Path, &LoadOptions) -> Result<LoadedModel>;

pub struct Family {
    /// The name commands and errors use (`clip`, `dinov2`, `siglip`).
    pub name: &'static str,
    /// transformers `model_type`s this family reads.
    pub model_types: &'static [&'static str],
    /// None: recognised, but this build cannot load it yet.
    pub load: Option<LoadFn>,
}

pub const CLIP: &str = "clip";

pub static FAMILIES: &[Family] = &[
    Family {
        name: CLIP,
        model_types: &["clip", "clip_vision_model"],
        load: Some(load_clip),
    },
    Family {
        name: "dinov2",
        model_types: &["dinov2", "dinov2_with_registers"],
        load: Some(load_dinov2),
    },
    Family {
        name: "siglip",
        model_types: &["siglip", "siglip2"],
        load: Some(load_siglip),
    },
    Family {
        name: "blip",
        model_types: &["blip"],
        load: Some(load_blip),
    },
    Family {
        name: "owlvit",
        model_types: &["owlvit", "owlv2"],
        load: Some(load_owlvit),
    },
    Family {
        name: "sam",
        // SlimSAM checkpoints are `SamModel`s too (model_type "sam").
        model_types: &["sam"],
        load: Some(load_sam),
    },
];

fn load_clip(dir: &Path, options: &LoadOptions) -> Result<LoadedModel> {
    Ok(Clip::load_dir(dir, options)?.into_loaded())
}

fn load_dinov2(dir: &Path, options: &LoadOptions) -> Result<LoadedModel> {
    Ok(crate::dinov2::Dinov2::load_dir(dir, options)?.into_loaded(dir.display().to_string()))
}

fn load_blip(dir: &Path, options: &LoadOptions) -> Result<LoadedModel> {
    Ok(crate::blip::Blip::load_dir(dir, options)?.into_loaded(dir.display().to_string()))
}

fn load_owlvit(dir: &Path, options: &LoadOptions) -> Result<LoadedModel> {
    Ok(crate::owlvit::Owl::load_dir(dir, options)?.into_loaded(dir.display().to_string()))
}

fn load_sam(dir: &Path, options: &LoadOptions) -> Result<LoadedModel> {
    Ok(crate::sam::Sam::load_dir(dir, options)?.into_loaded(dir.display().to_string()))
}

fn load_siglip(dir: &Path, options: &LoadOptions) -> Result<LoadedModel> {
    Ok(crate::siglip::Siglip::load_dir(dir, options)?.into_loaded(dir.display().to_string()))
}

/// What identified a folder's family: the file read and the `model_type` in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detected {
    pub family: &'static Family,
    pub file: PathBuf,
    pub model_type: String,
}

impl std::fmt::Debug for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for Family {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Family {}

/// The family of the model in `dir`. transformers' `config.json` wins when a
/// folder has both layouts (as the loader does); a config without a
/// `model_type` is read as CLIP, which older CLIP exports are.
pub fn detect(dir: &Path) -> Result<Detected> {
    let config = dir.join("config.json");
    let open_clip = dir.join("open_clip_config.json");
    let (file, model_type) = if config.is_file() {
        let root = read_json(&config)?;
        let kind = root
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or(CLIP);
        (config, kind.to_string())
    } else if open_clip.is_file() {
        let kind = open_clip_model_type(&read_json(&open_clip)?);
        (open_clip, kind.to_string())
    } else {
        // The loader says which files it looked for.
        return Ok(Detected {
            family: family_named(CLIP),
            file: config,
            model_type: CLIP.into(),
        });
    };
    let family = FAMILIES
        .iter()
        .find(|f| f.model_types.contains(&model_type.as_str()))
        .ok_or_else(|| EngineError::UnknownFamily {
            path: file.clone(),
            model_type: model_type.clone(),
            known: known_model_types(),
        })?;
    Ok(Detected {
        family,
        file,
        model_type,
    })
}

/// open_clip configs carry no `model_type`: a SigLIP one is told apart by its
/// learnt logit bias (`init_logit_bias`), which only the sigmoid loss has.
fn open_clip_model_type(root: &Value) -> &'static str {
    let cfg = root.get("model_cfg").unwrap_or(root);
    if cfg.get("init_logit_bias").is_some() {
        "siglip"
    } else {
        CLIP
    }
}

fn family_named(name: &str) -> &'static Family {
    FAMILIES
        .iter()
        .find(|f| f.name == name)
        .expect("the registry lists every built-in family")
}

fn known_model_types() -> String {
    FAMILIES
        .iter()
        .flat_map(|f| f.model_types.iter().copied())
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    serde_json::from_str(&text).map_err(|e| file_error(path, format!("invalid JSON: {e}")))
}

/// Loads the model in `dir` with its family's loader.
pub fn load_dir(dir: &Path, options: &LoadOptions) -> Result<LoadedModel> {
    let detected = detect(dir)?;
    let load = detected
        .family
        .load
        .ok_or_else(|| EngineError::FamilyNotBuilt {
            path: detected.file.clone(),
            model_type: detected.model_type.clone(),
            family: detected.family.name,
        })?;
    let mut model = load(dir, options)?;
    model.family = detected.family.name;
    Ok(model)
}

impl LoadedModel {
    /// Loads `spec`: a folder, an alias or a hub id, whatever its family.
    pub fn load(spec: &str, options: &LoadOptions) -> Result<Self> {
        let resolved = seer_hub::resolve(spec, options.progress)?;
        let mut model = load_dir(&resolved.dir, options)?;
        model.id = resolved.id;
        Ok(model)
    }

    /// Loads the model in a local folder (its id is the folder's path).
    pub fn load_dir(dir: &Path, options: &LoadOptions) -> Result<Self> {
        load_dir(dir, options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(file: &str, json: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file), json).unwrap();
        dir
    }

    #[test]
    fn families_are_detected_from_the_config() {
        for (file, json, family) in [
            ("config.json", r#"{"model_type": "clip"}"#, "clip"),
            ("config.json", r#"{"vision_config": {}}"#, "clip"),
            ("config.json", r#"{"model_type": "dinov2"}"#, "dinov2"),
            (
                "config.json",
                r#"{"model_type": "dinov2_with_registers"}"#,
                "dinov2",
            ),
            ("config.json", r#"{"model_type": "siglip"}"#, "siglip"),
            ("config.json", r#"{"model_type": "siglip2"}"#, "siglip"),
            ("config.json", r#"{"model_type": "blip"}"#, "blip"),
            ("config.json", r#"{"model_type": "sam"}"#, "sam"),
            ("config.json", r#"{"model_type": "owlvit"}"#, "owlvit"),
            ("config.json", r#"{"model_type": "owlv2"}"#, "owlvit"),
            (
                "open_clip_config.json",
                r#"{"model_cfg": {"embed_dim": 512}}"#,
                "clip",
            ),
            (
                "open_clip_config.json",
                r#"{"model_cfg": {"embed_dim": 768, "init_logit_bias": -10}}"#,
                "siglip",
            ),
        ] {
            let dir = folder(file, json);
            assert_eq!(detect(dir.path()).unwrap().family.name, family, "{json}");
        }
    }

    #[test]
    fn unknown_and_unbuilt_families_are_clear_errors() {
        let dir = folder("config.json", r#"{"model_type": "mask2former"}"#);
        let err = detect(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("'mask2former'") && err.contains("config.json"),
            "{err}"
        );
        assert!(err.contains("dinov2"), "names what is known: {err}");

        // Every built-in family loads now; the refusal itself is one error.
        let unbuilt = EngineError::FamilyNotBuilt {
            path: "config.json".into(),
            model_type: "sam".into(),
            family: "sam",
        };
        assert!(unbuilt.to_string().contains("not supported yet"));
        assert!(FAMILIES.iter().all(|f| f.load.is_some()));

        let dir = folder("config.json", "{");
        let err = detect(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("config.json") && err.contains("invalid JSON"),
            "{err}"
        );
    }
}
