//! Read-only view of the Hugging Face cache (`$HF_HOME/hub/models--org--name/...`).

use std::path::{Path, PathBuf};

use hf_hub::Cache;

pub fn cache_dir() -> PathBuf {
    Cache::from_env().path().clone()
}

pub(crate) fn cached_file(id: &str, filename: &str) -> Option<PathBuf> {
    Cache::from_env().model(id.to_string()).get(filename)
}

/// The snapshot folder of `id` if it holds a config and weights of some layout.
pub(crate) fn cached_snapshot(id: &str, layouts: &[(&str, &[&str], &[&str])]) -> Option<PathBuf> {
    layouts.iter().find_map(|(config, weights, _)| {
        let config = cached_file(id, config)?;
        weights.iter().find_map(|w| cached_file(id, w))?;
        config.parent().map(Path::to_path_buf)
    })
}

#[derive(Clone, Debug)]
pub struct CachedModel {
    pub id: String,
    pub dir: PathBuf,
}

/// Models in the cache that have a model config (either layout) in some snapshot.
pub fn cached_models() -> Vec<CachedModel> {
    let root = cache_dir();
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut found: Vec<CachedModel> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let id = name.strip_prefix("models--")?.replacen("--", "/", 1);
            let snapshots = std::fs::read_dir(e.path().join("snapshots")).ok()?;
            snapshots.flatten().map(|s| s.path()).find_map(|dir| {
                let is_model = dir.join("config.json").is_file()
                    || dir.join("open_clip_config.json").is_file();
                is_model.then(|| CachedModel {
                    id: id.clone(),
                    dir,
                })
            })
        })
        .collect();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}
