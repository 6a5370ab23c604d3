//! Read-only view of the Hugging Face cache (`$HF_HOME/hub/models--org--name/...`).

use std::path::{Path, PathBuf};

use hf_hub::Cache;

pub fn cache_dir() -> PathBuf {
    Cache::from_env().path().clone()
}

pub(crate) fn cached_file(id: &str, filename: &str) -> Option<PathBuf> {
    Cache::from_env().model(id.to_string()).get(filename)
}

/// The snapshot folder of `id` if it holds a config and weights of some
/// layout: the one `refs/main` names, else the only such snapshot (a model
/// downloaded by commit hash has no `refs/main`; with several snapshots and no
/// `refs/main`, which one is meant is unknown, so none is).
pub(crate) fn cached_snapshot(id: &str, layouts: &[(&str, &[&str], &[&str])]) -> Option<PathBuf> {
    let main = layouts.iter().find_map(|(config, weights, _)| {
        let config = cached_file(id, config)?;
        weights.iter().find_map(|w| cached_file(id, w))?;
        config.parent().map(Path::to_path_buf)
    });
    main.or_else(|| only_snapshot(id, layouts))
}

/// The one snapshot of `id` that holds a config and weights of some layout.
fn only_snapshot(id: &str, layouts: &[(&str, &[&str], &[&str])]) -> Option<PathBuf> {
    let folder = cache_dir().join(format!("models--{}", id.replace('/', "--")));
    let complete = |dir: &Path| {
        layouts.iter().any(|(config, weights, _)| {
            dir.join(config).is_file() && weights.iter().any(|w| dir.join(w).is_file())
        })
    };
    let mut found = std::fs::read_dir(folder.join("snapshots"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|dir| complete(dir));
    let only = found.next()?;
    found.next().is_none().then_some(only)
}

#[derive(Clone, Debug)]
pub struct CachedModel {
    pub id: String,
    pub dir: PathBuf,
}

/// Models in the cache that `--model ID` loads offline: those with a snapshot
/// [`cached_snapshot`] finds (a config and weights of some layout).
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
            let dir = cached_snapshot(&id, crate::LAYOUTS)?;
            Some(CachedModel { id, dir })
        })
        .collect();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}
