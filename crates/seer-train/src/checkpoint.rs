//! Resumable checkpoints: weights, optimizer moments and the run's position,
//! written to a temporary folder and renamed into place so a crash never leaves a
//! half-written checkpoint behind (at most the steps since the last one are lost).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use seer_util::fs::{AtomicDir, Durability};

use crate::error::{file_error, io_error, Result};
use crate::optim::AdamW;
use crate::params::ParamStore;

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "state.json";

/// Where the run stands; everything besides tensors that resuming needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Optimizer updates done.
    pub step: u64,
    pub samples_seen: u64,
    /// The training loader's position (seer-data's `DataPosition`).
    pub data: serde_json::Value,
    pub elapsed_s: f64,
    /// The settings that must not change on resume (see `settings::run_settings`).
    pub run: serde_json::Value,
    /// Samples as stored in one pass over the data (see `epochs::count_pass`),
    /// so a resumed run reports the epochs an uninterrupted one does. Absent in
    /// checkpoints of older versions: the data is counted again then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_size: Option<u64>,
    /// The loss of the step this checkpoint follows (absent in older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
}

pub(crate) fn checkpoints_dir(out: &Path) -> PathBuf {
    out.join("checkpoints")
}

fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// Writes a checkpoint and removes all but the newest `keep`.
pub fn save(
    out: &Path,
    store: &ParamStore,
    optimizer: &AdamW,
    state: &CheckpointState,
    keep: usize,
) -> Result<PathBuf> {
    let root = checkpoints_dir(out);
    std::fs::create_dir_all(&root).map_err(|e| io_error(&root, e))?;
    let dest = root.join(step_dir_name(state.step));
    // A temporary `.step-….tmp` folder, synced and renamed into place: `list`
    // only sees complete checkpoints, even after a crash.
    let tmp = AtomicDir::create(&dest, Durability::Fsync).map_err(|e| io_error(&root, e))?;
    let fill = || -> Result<()> {
        store.save(&tmp.path().join(MODEL_FILE))?;
        optimizer.save(store, &tmp.path().join(OPTIMIZER_FILE))?;
        let state_path = tmp.path().join(STATE_FILE);
        let json = serde_json::to_string_pretty(state).map_err(|e| file_error(&state_path, e))?;
        std::fs::write(&state_path, json).map_err(|e| io_error(&state_path, e))
    };
    // A failure (a full disk) drops the temporary folder: name the files by
    // where they were going.
    fill().map_err(|e| e.staged_in(tmp.path(), &dest))?;
    tmp.commit().map_err(|e| io_error(&dest, e))?;
    for (_, old) in list(out)?.into_iter().rev().skip(keep.max(1)) {
        remove(&old);
    }
    Ok(dest)
}

/// Deletes a checkpoint folder. It is first renamed to a temporary name
/// (`.step-N.removed.tmp`), so a run killed while deleting it leaves a
/// temporary the next run removes (`outdir::remove_stale_temps`), not a
/// half-deleted `step-N` that no listing sees and nothing ever removes.
fn remove(dir: &Path) {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let doomed = dir.with_file_name(format!(".{}.removed.tmp", name.unwrap_or_default()));
    let target = match std::fs::rename(dir, &doomed) {
        Ok(()) => doomed,
        Err(_) => dir.to_path_buf(),
    };
    if let Err(e) = std::fs::remove_dir_all(&target) {
        tracing::warn!("could not remove old checkpoint {}: {e}", target.display());
    }
}

/// The step of a checkpoint folder named `step-N`.
pub(crate) fn step_of(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?.parse().ok()
}

/// Complete checkpoints, oldest first.
pub fn list(out: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let root = checkpoints_dir(out);
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(Vec::new());
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = step_of(&name)?;
            let dir = e.path();
            dir.join(STATE_FILE).is_file().then_some((step, dir))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// The newest complete checkpoint and its state.
pub fn latest(out: &Path) -> Result<Option<(PathBuf, CheckpointState)>> {
    let Some((_, dir)) = list(out)?.pop() else {
        return Ok(None);
    };
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
    let state = serde_json::from_str(&text).map_err(|e| file_error(&path, e))?;
    Ok(Some((dir, state)))
}

/// Restores weights and optimizer moments from a checkpoint folder.
pub fn restore(
    dir: &Path,
    state: &CheckpointState,
    store: &mut ParamStore,
    optimizer: &mut AdamW,
) -> Result<()> {
    store.load_values(&dir.join(MODEL_FILE))?;
    optimizer.load(store, &dir.join(OPTIMIZER_FILE), state.step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_of_an_older_version_still_reads() {
        let old = r#"{"step": 4, "samples_seen": 32, "data": {"epoch": 1, "consumed": 8},
                      "elapsed_s": 1.5, "run": {"lr": 0.001}}"#;
        let state: CheckpointState = serde_json::from_str(old).unwrap();
        assert_eq!((state.step, state.epoch_size, state.loss), (4, None, None));
        let new = CheckpointState {
            epoch_size: Some(24),
            loss: Some(2.5),
            ..state
        };
        let back: CheckpointState =
            serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
        assert_eq!((back.epoch_size, back.loss), (Some(24), Some(2.5)));
    }
}
