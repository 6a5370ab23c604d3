//! A run's output folder (`--out`): what a run may start on, the lock that keeps
//! a second live run out of it, and the temporary folders of writes an earlier
//! run was killed in.
//!
//! A new run refuses a folder that holds anything a run writes there (it would
//! replace or mix with it), a resumed one needs a checkpoint in it, and no run
//! starts from a model inside `OUT/model`, which the export at its end replaces.
//! All of this is checked before anything is created or loaded.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::Path;

use crate::checkpoint;
use crate::error::{io_error, Result, TrainError};
use crate::trainer::{METRICS_FILE, MODEL_DIR};

/// Held by the live run writing a folder (`OUT/.seer-train.lock`).
pub const LOCK_FILE: &str = ".seer-train.lock";
/// Written by `seer plot` beside the metrics.
const CURVES_FILE: &str = "curves.png";
/// Present while a new run has no checkpoint yet (made before its metrics,
/// removed at its first checkpoint): metrics beside it, with no checkpoint,
/// are a run's that was killed before it saved anything (SIGKILL, Ctrl-C, a
/// power cut), which the same command may take back and start over. Without
/// it a metrics file could be anyone's, and is refused.
pub const UNSAVED_MARKER: &str = ".seer-train.unsaved";

/// Whether `out` holds only what a new run killed before its first
/// checkpoint left: the marker, and no checkpoint or export.
fn unsaved_run(out: &Path) -> bool {
    out.join(UNSAVED_MARKER).is_file()
        && out.join(MODEL_DIR).symlink_metadata().is_err()
        && checkpoint::list(out).is_ok_and(|l| l.is_empty())
}

/// Takes back what a new run killed before its first checkpoint left (see
/// [`UNSAVED_MARKER`]): its metrics, the checkpoints folder when empty, the
/// marker. Only call it while holding the folder's [`lock`], after
/// [`remove_stale_temps`]. Returns the metrics file when it held lines.
pub fn take_back_unsaved_run(out: &Path) -> Option<std::path::PathBuf> {
    if !unsaved_run(out) {
        return None;
    }
    let metrics = out.join(METRICS_FILE);
    let logged = std::fs::metadata(&metrics).is_ok_and(|m| m.len() > 0);
    let _ = std::fs::remove_file(&metrics);
    // Fails, as it should, where anything is inside.
    let _ = std::fs::remove_dir(checkpoint::checkpoints_dir(out));
    let _ = std::fs::remove_file(out.join(UNSAVED_MARKER));
    logged.then_some(metrics)
}

/// Whether a checkpoints folder holds anything but the temporaries of a
/// killed write (which the next run removes under the lock).
fn holds_checkpoints(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(|e| e.ok()).any(|e| {
            let name = e.file_name();
            !name.to_str().is_some_and(|n| is_temp_name(n, "step-"))
        })
    })
}

/// What a run has written into `out`, as named in refusals: `model/`,
/// `checkpoints/`, a non-empty `metrics.jsonl`, `curves.png`. (A new run that
/// fails before its first checkpoint removes the metrics it wrote, and one
/// killed then leaves them beside [`UNSAVED_MARKER`], so the same command can
/// run again: such metrics do not count, nor do a checkpoints folder holding
/// only a killed write's temporaries, nor an empty metrics file, which older
/// versions left after a failure before the first step.)
pub fn run_outputs(out: &Path) -> Vec<&'static str> {
    let mut found = Vec::new();
    if out.join(MODEL_DIR).symlink_metadata().is_ok() {
        found.push("model/");
    }
    if holds_checkpoints(&checkpoint::checkpoints_dir(out)) {
        found.push("checkpoints/");
    }
    if std::fs::metadata(out.join(METRICS_FILE)).is_ok_and(|m| m.len() > 0) && !unsaved_run(out) {
        found.push(METRICS_FILE);
    }
    if out.join(CURVES_FILE).symlink_metadata().is_ok() {
        found.push(CURVES_FILE);
    }
    found
}

/// Refuses an output folder a run must not start on; creates nothing. A resumed
/// run needs a complete checkpoint in `out`; a new one needs `out` free of
/// everything a run writes (see [`run_outputs`]).
pub fn check_out(out: &Path, resume: bool) -> Result<()> {
    let newest = checkpoint::list(out)?.pop();
    if resume {
        return match newest {
            Some(_) => Ok(()),
            None => Err(TrainError::Invalid(format!(
                "--resume: {} holds no checkpoint to continue from; leave out --resume to start a new run there",
                out.display()
            ))),
        };
    }
    let found = run_outputs(out);
    if found.is_empty() {
        return Ok(());
    }
    Err(TrainError::Invalid(match newest {
        Some((_, dir)) => format!(
            "{} already holds a run ({}; newest checkpoint {}); pass --resume to continue it or choose another --out",
            out.display(),
            found.join(", "),
            dir.display()
        ),
        None => format!(
            "{} already holds the output of an earlier run ({}) but no checkpoint to resume from; a new run would replace it: choose another --out, or remove them first",
            out.display(),
            found.join(", ")
        ),
    }))
}

/// Refuses to start from `source` (a model folder or config file) when it lies
/// inside `OUT/model`: the run replaces that folder with its export at the end,
/// so the model it started from would be gone.
pub fn check_source(source: &Path, out: &Path) -> Result<()> {
    let target = out.join(MODEL_DIR);
    let (Ok(src), Ok(dst)) = (source.canonicalize(), target.canonicalize()) else {
        // Either is missing: a missing source fails when it is loaded, and
        // nothing can lie inside a folder that does not exist.
        return Ok(());
    };
    if src.starts_with(&dst) {
        let relation = if src == dst { "is" } else { "lies inside" };
        return Err(TrainError::Invalid(format!(
            "the model to start from ({}) {relation} {}, the folder this run's export replaces \
             at its end; copy the model elsewhere first, or choose another --out",
            source.display(),
            target.display()
        )));
    }
    Ok(())
}

/// The lock of an output folder, released when dropped (or when the process
/// ends, however it ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    /// False where the file system has no locks and the run goes on unguarded.
    pub held: bool,
}

/// Takes the lock of `out` (which must exist), or refuses when another live run
/// holds it, naming that run's process.
pub fn lock(out: &Path) -> Result<RunLock> {
    let path = out.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_error(&path, e))?;
    match file.try_lock() {
        Ok(()) => {
            // Who holds it, for the refusal another run gets.
            let _ = file
                .set_len(0)
                .and_then(|()| writeln!(file, "process {}", std::process::id()));
            Ok(RunLock {
                _file: file,
                held: true,
            })
        }
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() {
                String::new()
            } else {
                format!(" ({holder})")
            };
            Err(TrainError::Invalid(format!(
                "{} is in use by another seer train{holder}; wait for it to end or choose another --out",
                out.display()
            )))
        }
        Err(TryLockError::Error(e)) => {
            tracing::warn!(
                "{}: cannot lock ({e}); another run on this folder would not be noticed",
                path.display()
            );
            Ok(RunLock {
                _file: file,
                held: false,
            })
        }
    }
}

/// What [`remove_stale_temps`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub folders: usize,
    pub bytes: u64,
}

/// Whether `name` is a temporary folder `AtomicDir` makes for a destination whose
/// name starts with `stem` (`.<dest name>.<random>.tmp`).
fn is_temp_name(name: &str, stem: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.strip_prefix(stem))
        .is_some_and(|rest| rest.ends_with(".tmp"))
}

/// Removes what an earlier run killed while writing left in `out`: the
/// temporary folders of checkpoint writes and deletions
/// (`checkpoints/.step-….tmp`) and of exports (`.model.….tmp`), and `step-N`
/// folders older than the newest checkpoint that lack their `state.json` (a
/// deletion of an old checkpoint cut short by older versions). Only call it
/// while holding the folder's [`lock`]: no live run is writing them then.
pub fn remove_stale_temps(out: &Path) -> Removed {
    let mut removed = Removed::default();
    let newest = checkpoint::list(out)
        .ok()
        .and_then(|l| l.last().map(|(step, _)| *step));
    let half_deleted = |name: &str, path: &Path| {
        checkpoint::step_of(name).is_some_and(|step| newest.is_some_and(|n| step < n))
            && !path.join(checkpoint::STATE_FILE).exists()
    };
    let places = [
        (checkpoint::checkpoints_dir(out), "step-"),
        (out.to_path_buf(), "model."),
    ];
    for (dir, stem) in places {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // Folders only, never through a symlink.
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let path = entry.path();
            let stale = is_temp_name(name, stem) || (stem == "step-" && half_deleted(name, &path));
            if !is_dir || !stale {
                continue;
            }
            let bytes = tree_bytes(&path);
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    removed.folders += 1;
                    removed.bytes += bytes;
                }
                Err(e) => tracing::warn!("could not remove {}: {e}", path.display()),
            }
        }
    }
    removed
}

/// Bytes of the files under `dir` (symlinks not followed).
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// `bytes` for people: 1.5 GB, 90.2 MB, 12 kB.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metrics count as a run's output unless a killed new run's marker is
    /// beside them with no checkpoint; a checkpoints folder holding only a
    /// killed write's temporary does not count (it was refused before the
    /// run that would remove it could start).
    #[test]
    fn what_a_run_killed_before_its_first_checkpoint_left_is_not_output() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        std::fs::create_dir_all(out.join("checkpoints/.step-00000002.Ab12.tmp")).unwrap();
        assert_eq!(run_outputs(out), Vec::<&str>::new());
        std::fs::write(out.join(METRICS_FILE), "{\"step\": 1}\n").unwrap();
        assert_eq!(run_outputs(out), [METRICS_FILE]);
        std::fs::write(out.join(UNSAVED_MARKER), "").unwrap();
        assert_eq!(run_outputs(out), Vec::<&str>::new());
        // Taken back under the lock, after the temporaries went.
        assert_eq!(remove_stale_temps(out).folders, 1);
        assert_eq!(take_back_unsaved_run(out), Some(out.join(METRICS_FILE)));
        assert_eq!(std::fs::read_dir(out).unwrap().count(), 0);
        // With a checkpoint the marker means nothing: the run stays.
        std::fs::create_dir_all(out.join("checkpoints/step-00000001")).unwrap();
        std::fs::write(out.join("checkpoints/step-00000001/state.json"), "{}").unwrap();
        std::fs::write(out.join(METRICS_FILE), "{\"step\": 1}\n").unwrap();
        std::fs::write(out.join(UNSAVED_MARKER), "").unwrap();
        assert_eq!(take_back_unsaved_run(out), None);
        assert!(out.join(METRICS_FILE).is_file());
    }

    #[test]
    fn only_the_temporaries_atomic_dir_makes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let ck = out.join("checkpoints");
        for d in [
            "step-00000001",
            "step-00000004",
            "step-00000009",
            ".step-00000005.aB3dEf.tmp",
            ".step-00000006.x.tmp",
            ".other.aB3dEf.tmp",
            "step-00000007.tmp",
        ] {
            std::fs::create_dir_all(ck.join(d)).unwrap();
        }
        for complete in ["step-00000004", "step-00000009"] {
            std::fs::write(ck.join(complete).join("state.json"), "{}").unwrap();
        }
        // Half deleted (no state.json) and older than the newest: removed.
        std::fs::write(ck.join("step-00000001/model.safetensors"), [0u8; 5]).unwrap();
        std::fs::write(
            ck.join(".step-00000005.aB3dEf.tmp/model.safetensors"),
            [0u8; 1500],
        )
        .unwrap();
        std::fs::write(ck.join(".step-00000008.file.tmp"), b"a file, not a folder").unwrap();
        std::fs::create_dir_all(out.join(".model.Qw3rTy.tmp/sub")).unwrap();
        std::fs::write(out.join(".model.Qw3rTy.tmp/sub/w"), [0u8; 10]).unwrap();
        std::fs::create_dir_all(out.join(".step-00000009.aaaaaa.tmp")).unwrap();

        let removed = remove_stale_temps(out);
        assert_eq!(
            removed,
            Removed {
                folders: 4,
                bytes: 1515
            }
        );
        let mut left: Vec<String> = std::fs::read_dir(&ck)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".other.aB3dEf.tmp",
                ".step-00000008.file.tmp",
                "step-00000004",
                "step-00000007.tmp",
                "step-00000009"
            ]
        );
        assert!(!out.join(".model.Qw3rTy.tmp").exists());
        assert!(
            out.join(".step-00000009.aaaaaa.tmp").exists(),
            "checkpoint temporaries only in checkpoints/"
        );
    }

    #[test]
    fn a_second_lock_on_a_folder_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        if !first.held {
            return; // a file system without locks
        }
        let second = lock(dir.path()).unwrap_err().to_string();
        assert!(second.contains("in use by another seer train"), "{second}");
        assert!(
            second.contains(&format!("process {}", std::process::id())),
            "{second}"
        );
        drop(first);
        assert!(lock(dir.path()).unwrap().held);
    }

    #[test]
    fn bytes_are_said_in_units() {
        assert_eq!(human_bytes(999), "999 bytes");
        assert_eq!(human_bytes(90_200_000), "90.2 MB");
        assert_eq!(human_bytes(1_500_000_000), "1.5 GB");
    }
}
