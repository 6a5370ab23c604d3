//! Turns what a user types after `--model` into a local folder of model files.
//!
//! Accepted: a local folder; a short alias (`ViT-B-32`); a Hugging Face hub id
//! (`openai/clip-vit-base-patch32`). Hub models live in the standard Hugging Face
//! cache (`$HF_HOME/hub`, default `~/.cache/huggingface/hub`), shared with Python
//! tools; [`set_offline`] (the CLI's `--offline` / `HF_HUB_OFFLINE=1`) forbids
//! network access.

mod aliases;
mod cache;

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;

pub use aliases::{resolve_alias, Alias, ALIASES};
pub use cache::{cache_dir, cached_models, CachedModel};

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("model folder {0} does not exist")]
    NoSuchFolder(PathBuf),

    #[error("{0} is a file; a model is a folder (config.json + model.safetensors), an alias (see `seer models`) or a hub id")]
    NotAFolder(PathBuf),

    #[error("'{0}' is neither a folder, an alias (see `seer models`) nor a hub id like 'openai/clip-vit-base-patch32'")]
    Unknown(String),

    #[error("model '{id}' is not in the Hugging Face cache ({cache}) and {why}. Download it where the hub is reachable (e.g. `huggingface-cli download {id}`) and copy the cache folder here, or pass --model /path/to/folder containing config.json + model.safetensors (transformers layout) or open_clip_config.json + open_clip_model.safetensors (open_clip layout)")]
    NotAvailable {
        id: String,
        cache: PathBuf,
        why: String,
    },

    #[error("{id}: the hub repository has neither config.json (transformers layout) nor open_clip_config.json (open_clip layout), so it holds no model seer can load")]
    NoModelConfig { id: String },
}

/// Where a model's files were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    LocalFolder,
    Cache,
    Downloaded,
}

#[derive(Clone, Debug)]
pub struct ResolvedModel {
    /// A stable name for the model: the hub id, or the canonical folder path.
    pub id: String,
    pub dir: PathBuf,
    pub origin: Origin,
}

/// Files a model folder may hold, by layout: (config, weights in order of
/// preference, optional extras). The extras are every other file a family's
/// loader reads when it is there (seer-engine, seer-tokenizer, seer-image):
/// a download fetches those the repository has, and a missing one is fine.
/// - `preprocessor_config.json`: the image processor (CLIP, DINOv2, SigLIP).
/// - `tokenizer.json`: CLIP's BPE, SigLIP 2's Gemma tokenizer.
/// - `spiece.model`, `tokenizer_config.json`: SigLIP's SentencePiece model and
///   its `model_max_length` / `padding_side`.
/// - `vocab.json` + `merges.txt`, `bpe_simple_vocab_16e6.txt.gz`: the CLIP
///   tokenizer's other forms, read when there is no `tokenizer.json`.
///
/// The test `every_file_the_loaders_read_is_downloaded` checks the list against
/// the file names in the loaders' sources.
const LAYOUTS: &[(&str, &[&str], &[&str])] = &[
    (
        "config.json",
        &["model.safetensors", "pytorch_model.bin"],
        &[
            "preprocessor_config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "spiece.model",
            "vocab.json",
            "merges.txt",
            // BERT WordPiece (BLIP), for folders without tokenizer.json.
            "vocab.txt",
            // Generation defaults of generative families (BLIP's generate
            // ignores it, as transformers' does; later families read it).
            "generation_config.json",
            // transformers 5 saves image processor settings here (OWL-ViT
            // reads it when preprocessor_config.json is absent).
            "processor_config.json",
        ],
    ),
    (
        "open_clip_config.json",
        &["open_clip_model.safetensors", "open_clip_pytorch_model.bin"],
        &[
            "tokenizer.json",
            "vocab.json",
            "merges.txt",
            "bpe_simple_vocab_16e6.txt.gz",
        ],
    ),
];

static OFFLINE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Forbids (or allows again) network access for the rest of the process (the
/// CLI's `--offline`, or `$HF_HUB_OFFLINE` as Python tools read it).
pub fn set_offline(offline: bool) {
    OFFLINE.store(offline, std::sync::atomic::Ordering::Relaxed);
}

pub fn offline() -> bool {
    OFFLINE.load(std::sync::atomic::Ordering::Relaxed)
}

/// The stable name a model is recorded under (e.g. in an index): the canonical
/// path of a local folder, or the hub id an alias stands for.
pub fn model_key(spec: &str) -> String {
    let path = Path::new(spec);
    if path.is_dir() {
        if let Ok(c) = path.canonicalize() {
            return c.display().to_string();
        }
    }
    resolve_alias(spec).to_string()
}

/// Resolves `spec` to a folder, downloading from the hub when needed and allowed.
pub fn resolve(spec: &str, progress: bool) -> Result<ResolvedModel, HubError> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(ResolvedModel {
            id: model_key(spec),
            dir: path.canonicalize().unwrap_or_else(|_| path.to_path_buf()),
            origin: Origin::LocalFolder,
        });
    }
    if path.is_file() {
        return Err(HubError::NotAFolder(path.to_path_buf()));
    }
    let id = resolve_alias(spec);
    if !looks_like_hub_id(id) {
        return Err(
            if spec.starts_with('.') || spec.starts_with('/') || spec.starts_with('~') {
                HubError::NoSuchFolder(path.to_path_buf())
            } else {
                HubError::Unknown(spec.to_string())
            },
        );
    }
    if let Some(dir) = cache::cached_snapshot(id, LAYOUTS) {
        return Ok(ResolvedModel {
            id: id.to_string(),
            dir,
            origin: Origin::Cache,
        });
    }
    let unavailable = |why: String| not_available(id, why);
    let repo = hub_api(id, progress)?.model(id.to_string());
    for (config, weights, extras) in LAYOUTS {
        let config_path = match repo.get(config) {
            Ok(p) => p,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(unavailable(format!("the hub cannot be reached ({e})"))),
        };
        let mut last_error = None;
        let found_weights = weights.iter().any(|w| match repo.get(w) {
            Ok(_) => true,
            Err(e) => {
                last_error = Some(e.to_string());
                false
            }
        });
        if !found_weights {
            return Err(unavailable(format!(
                "its weights could not be downloaded ({})",
                last_error.unwrap_or_default()
            )));
        }
        for extra in *extras {
            // Optional files: absent ones are fine.
            if let Err(e) = repo.get(extra) {
                tracing::debug!("{id}: no {extra}: {e}");
            }
        }
        let dir = config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        return Ok(ResolvedModel {
            id: id.to_string(),
            dir,
            origin: Origin::Downloaded,
        });
    }
    Err(HubError::NoModelConfig { id: id.to_string() })
}

/// One file of a hub repository, from the cache or downloaded (used for tokenizer
/// files that open_clip folders may lack).
pub fn fetch_file(id: &str, filename: &str, progress: bool) -> Result<PathBuf, HubError> {
    if let Some(p) = cache::cached_file(id, filename) {
        return Ok(p);
    }
    hub_api(id, progress)?
        .model(id.to_string())
        .get(filename)
        .map_err(|e| not_available(id, format!("the hub cannot be reached ({e})")))
}

fn not_available(id: &str, why: String) -> HubError {
    HubError::NotAvailable {
        id: id.to_string(),
        cache: cache_dir(),
        why,
    }
}

/// A hub client configured from the environment (HF_HOME, HF_ENDPOINT, and the token
/// `huggingface-cli login` saved under HF_HOME),
/// unless [`set_offline`] forbids the network.
fn hub_api(id: &str, progress: bool) -> Result<hf_hub::api::sync::Api, HubError> {
    if offline() {
        return Err(not_available(
            id,
            "the network is off (--offline or HF_HUB_OFFLINE)".into(),
        ));
    }
    ApiBuilder::from_env()
        .with_progress(progress)
        .build()
        .map_err(|e| not_available(id, format!("the hub client could not start ({e})")))
}

fn is_not_found(e: &hf_hub::api::sync::ApiError) -> bool {
    e.to_string().contains("404")
}

fn looks_like_hub_id(s: &str) -> bool {
    let mut parts = s.split('/');
    let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    ok(owner) && ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_given_as_the_model_is_named_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("photo.jpg");
        std::fs::write(&file, b"not a model").unwrap();
        let e = resolve(file.to_str().unwrap(), false).unwrap_err();
        assert!(matches!(e, HubError::NotAFolder(_)), "{e}");
        assert!(e.to_string().contains("is a file"), "{e}");
    }

    #[test]
    fn hub_ids_are_recognised() {
        assert!(looks_like_hub_id("openai/clip-vit-base-patch32"));
        assert!(looks_like_hub_id("laion/CLIP-ViT-B-32-laion2B-s34B-b79K"));
        assert!(!looks_like_hub_id("ViT-B-32"));
        assert!(!looks_like_hub_id("a/b/c"));
        assert!(!looks_like_hub_id("../x"));
        assert!(!looks_like_hub_id("/abs/path"));
    }

    /// The file names quoted in the loaders' sources (outside their tests),
    /// so a loader that starts reading a new file fails here until the hub
    /// downloads it too.
    fn names_the_loaders_read() -> std::collections::BTreeSet<String> {
        fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    rust_files(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for loader in ["seer-engine", "seer-models", "seer-tokenizer", "seer-image"] {
            rust_files(&crates.join(loader).join("src"), &mut files);
        }
        let suffixes = [".json", ".model", ".txt", ".txt.gz", ".safetensors", ".bin"];
        let mut names = std::collections::BTreeSet::new();
        for file in files {
            let source = std::fs::read_to_string(&file).unwrap();
            // Up to its tests; a file that is a test module whole says so
            // with an inner `#![cfg(test)]`.
            if source.contains("#![cfg(test)]") {
                continue;
            }
            let code = source.split("#[cfg(test)]").next().unwrap();
            for quoted in code.split('"').skip(1).step_by(2) {
                // A bare extension (".json" in an `ends_with`) names no file.
                let plain = !quoted.is_empty()
                    && !quoted.starts_with('.')
                    && quoted
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
                if plain && suffixes.iter().any(|s| quoted.ends_with(s)) {
                    names.insert(quoted.to_string());
                }
            }
        }
        names
    }

    #[test]
    fn every_file_the_loaders_read_is_downloaded() {
        let names = names_the_loaders_read();
        // The scan finds them at all: the files every family reads.
        for known in ["config.json", "preprocessor_config.json", "spiece.model"] {
            assert!(names.contains(known), "{names:?}");
        }
        let listed = |name: &str| {
            LAYOUTS.iter().any(|(config, weights, extras)| {
                *config == name || weights.contains(&name) || extras.contains(&name)
            })
        };
        let missing: Vec<_> = names.iter().filter(|n| !listed(n)).collect();
        assert!(
            missing.is_empty(),
            "the loaders read {missing:?}, which a hub download does not fetch: add them to LAYOUTS"
        );
    }
}
