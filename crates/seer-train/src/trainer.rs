//! The training loop: data → gradients → AdamW, with evaluation, metrics,
//! checkpoints and the final export.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor};
use seer_data::{DataPosition, Loader, LoaderConfig};
use seer_tokenizer::ClipTokenizer;
use serde_json::{json, Value};

use crate::checkpoint::{self, CheckpointState};
use crate::epochs::{count_pass, epoch_value};
use crate::error::{file_error, io_error, Result, TrainError};
use crate::evaluate::{pair_recall, snapshot_clip, zeroshot_accuracy, LabeledSet, PairSet};
use crate::export::export_model;
use crate::loss::{LossKind, Positives};
use crate::optim::{clip_grad_norm, AdamW, AdamWConfig, Schedule};
use crate::outdir;
use crate::params::ParamStore;
use crate::settings::{differences, run_settings};
use crate::step::{compute_gradients, TrainBatch};
use crate::validate::validate;

/// Where the initial weights come from.
pub enum ModelInit {
    /// Random weights for the architecture in a transformers `config.json`.
    Scratch { config: PathBuf },
    /// A transformers model folder.
    Pretrained { dir: PathBuf },
}

/// Which samples of a batch count as matching pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositivesRule {
    /// Each image with its own caption only (CLIP).
    Pairs,
    /// Samples with identical captions are positives of each other.
    SameText,
    /// Samples with the same class index (or identical captions) are positives.
    SameClass,
}

pub struct TrainOptions {
    pub init: ModelInit,
    pub data: LoaderConfig,
    pub tokenizer: Arc<ClipTokenizer>,
    /// Copied into the exported model folder.
    pub tokenizer_path: Option<PathBuf>,
    pub lock_image: bool,
    pub lock_text: bool,
    pub batch_size: usize,
    /// Samples embedded at once, 1 to `batch_size` (gradient caching below it).
    pub micro_batch: usize,
    pub steps: u64,
    pub lr: f64,
    pub warmup: u64,
    pub adamw: AdamWConfig,
    /// Global gradient-norm limit; 0 disables clipping.
    pub grad_clip: f64,
    pub loss: LossKind,
    pub positives: PositivesRule,
    pub seed: u64,
    pub zeroshot: Option<LabeledSet>,
    pub pairs: Option<PairSet>,
    /// Evaluate every N steps (and at the end); 0 = only at the end.
    pub eval_every: u64,
    /// Save a checkpoint every N steps (and at the end); 0 = only at the end.
    pub checkpoint_every: u64,
    /// At least 1 (see [`crate::validate::validate`]).
    pub keep_checkpoints: usize,
    pub out: PathBuf,
    pub resume: bool,
    /// Stop after this many steps of this run, as an interruption would (the
    /// schedule still spans `steps`); used to test resuming.
    pub stop_after: Option<u64>,
    pub device: Device,
    /// Samples as stored in one pass over `data`, when the caller has counted
    /// them (`epochs::count_pass`, as the CLI does for `--epochs`); `None`: the
    /// run counts them before its first step. A resumed run uses its
    /// checkpoint's count.
    pub epoch_size: Option<u64>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct StepReport {
    pub step: u64,
    pub steps: u64,
    pub epoch: f64,
    pub samples: u64,
    pub loss: f64,
    pub lr: f64,
    pub logit_scale: f64,
    pub grad_norm: f64,
    pub samples_per_sec: f64,
    pub elapsed_s: f64,
    pub skipped_samples: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalReport {
    pub step: u64,
    pub metrics: BTreeMap<String, f64>,
    pub seconds: f64,
}

/// Receives progress (the CLI draws a progress bar or prints JSON).
pub trait Observer {
    fn on_start(&mut self, _first_step: u64, _steps: u64) {}
    fn on_step(&mut self, _report: &StepReport) {}
    fn on_eval(&mut self, _report: &EvalReport) {}
    fn on_checkpoint(&mut self, _path: &Path) {}
}

pub struct Silent;
impl Observer for Silent {}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainSummary {
    pub steps: u64,
    pub resumed_from: Option<u64>,
    pub samples: u64,
    pub skipped_samples: u64,
    pub final_loss: Option<f64>,
    pub losses: Vec<f64>,
    pub last_eval: Option<EvalReport>,
    pub model_dir: Option<PathBuf>,
    pub elapsed_s: f64,
}

pub const METRICS_FILE: &str = "metrics.jsonl";
pub const MODEL_DIR: &str = "model";

pub fn train(options: TrainOptions, observer: &mut dyn Observer) -> Result<TrainSummary> {
    let o = &options;
    validate(o)?;
    // The folder and the model to start from, before anything is created or loaded.
    match &o.init {
        ModelInit::Scratch { config } => outdir::check_source(config, &o.out)?,
        ModelInit::Pretrained { dir } => outdir::check_source(dir, &o.out)?,
    }
    outdir::check_out(&o.out, o.resume)?;
    std::fs::create_dir_all(&o.out).map_err(|e| io_error(&o.out, e))?;
    let lock = outdir::lock(&o.out)?;
    // Again under the lock: another run may have written there meanwhile.
    outdir::check_out(&o.out, o.resume)?;
    if lock.held {
        // No other live run writes this folder: temporaries in it were left by
        // a run killed while writing a checkpoint or the export.
        let removed = outdir::remove_stale_temps(&o.out);
        if removed.folders > 0 {
            tracing::warn!(
                "{}: removed {} unfinished checkpoint or export folder(s) of an interrupted run, {} freed",
                o.out.display(),
                removed.folders,
                outdir::human_bytes(removed.bytes)
            );
        }
        if !o.resume {
            if let Some(metrics) = outdir::take_back_unsaved_run(&o.out) {
                tracing::warn!(
                    "removed {}: a run stopped before its first checkpoint left it, with nothing \
                     to resume; starting over",
                    metrics.display()
                );
            }
        }
    }
    let mut store = match &o.init {
        ModelInit::Scratch { config } => {
            let s = ParamStore::from_scratch(config, o.seed, &o.device)?;
            if o.loss == LossKind::Siglip {
                // SigLIP's initialisation: t' = log 10, b = -10.
                s.set_scalar("logit_scale", 10f32.ln())?;
            }
            s
        }
        ModelInit::Pretrained { dir } => ParamStore::from_model_dir(dir, &o.device)?,
    };
    if o.loss == LossKind::Siglip {
        store.ensure_logit_bias(-10.0)?;
    }
    store.lock(o.lock_image, o.lock_text);
    let mut optimizer = AdamW::new(o.adamw);
    let schedule = Schedule {
        base_lr: o.lr,
        warmup: o.warmup,
        steps: o.steps,
    };
    let fingerprint = run_settings(o, &store);

    let mut first_step = 0u64;
    let mut position = DataPosition::default();
    let mut samples = 0u64;
    let mut elapsed_before = 0f64;
    let mut stored_epoch_size = None;
    let mut resumed_loss = None;
    let resumed_from = match (o.resume, checkpoint::latest(&o.out)?) {
        (true, Some((dir, state))) => {
            let changed = differences(&state.run, &fingerprint);
            if !changed.is_empty() {
                return Err(TrainError::Invalid(format!(
                    "{}: the checkpoint was made with different settings ({}); resume with the same settings or train into a new --out",
                    dir.display(),
                    changed.join("; ")
                )));
            }
            checkpoint::restore(&dir, &state, &mut store, &mut optimizer)?;
            position = serde_json::from_value(state.data.clone())
                .map_err(|e| file_error(&dir, format!("bad data position: {e}")))?;
            first_step = state.step;
            samples = state.samples_seen;
            elapsed_before = state.elapsed_s;
            stored_epoch_size = state.epoch_size;
            let metrics_path = o.out.join(METRICS_FILE);
            truncate_metrics(&metrics_path, first_step)?;
            resumed_loss = state
                .loss
                .or_else(|| logged_loss(&metrics_path, first_step));
            tracing::info!("resuming from {} (step {first_step})", dir.display());
            Some(first_step)
        }
        // `check_out` refused both under the lock.
        (true, None) | (false, Some(_)) => {
            return Err(TrainError::Invalid(format!(
                "{}: the folder changed while the run started",
                o.out.display()
            )))
        }
        (false, None) => {
            // At most an empty file of a run that failed before its first step.
            let _ = std::fs::remove_file(o.out.join(METRICS_FILE));
            None
        }
    };
    // Stored samples in one pass: the checkpoint's (so a resumed run reports the
    // epochs the interrupted one did), the caller's count, or counted now.
    let epoch_size = match stored_epoch_size.or(o.epoch_size) {
        Some(n) => n,
        None => {
            let t0 = Instant::now();
            let n = count_pass(&o.data.sources).stored;
            tracing::info!(
                "{n} samples in one pass over the data (counted in {:.1} s)",
                t0.elapsed().as_secs_f64()
            );
            n
        }
    };

    // A new run that fails before its first checkpoint takes back the metrics
    // it wrote: nothing can resume from them, and left behind they would make
    // the same command refuse the folder as holding an earlier run's output.
    let mut fresh = resumed_from.is_none().then(|| FreshRun::new(&o.out));
    let mut loader = Loader::new(o.data.clone(), position)?;
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(o.out.join(METRICS_FILE))
        .map_err(|e| io_error(&o.out.join(METRICS_FILE), e))?;
    let mut write_metric = |v: Value| -> Result<()> {
        writeln!(metrics, "{v}").map_err(|e| io_error(&o.out.join(METRICS_FILE), e))
    };

    let start = Instant::now();
    let elapsed = || elapsed_before + start.elapsed().as_secs_f64();
    let s = store.config().vision.image_size();
    let ctx = store.config().text.context_length;
    let mut losses = Vec::new();
    let mut last_eval = None;
    let last_step = match o.stop_after {
        Some(n) => (first_step + n).min(o.steps),
        None => o.steps,
    };
    observer.on_start(first_step, o.steps);
    let mut step = first_step;
    while step < last_step {
        let t0 = Instant::now();
        let batch = loader
            .next_batch(o.batch_size)?
            .ok_or_else(|| TrainError::Invalid("the training data ran out".into()))?;
        let after = loader.position();
        let n = batch.len();
        let tokens: Vec<Vec<u32>> = batch
            .captions()
            .iter()
            .map(|c| o.tokenizer.encode(c, ctx))
            .collect();
        let positives = match o.positives {
            PositivesRule::Pairs => Positives::Diagonal,
            PositivesRule::SameText => Positives::Groups(group_ids(&tokens)),
            PositivesRule::SameClass => {
                let keys: Vec<(Option<usize>, Vec<u32>)> = batch
                    .classes()
                    .iter()
                    .zip(&tokens)
                    .map(|(c, t)| match c {
                        Some(c) => (Some(*c), Vec::new()),
                        None => (None, t.clone()),
                    })
                    .collect();
                Positives::Groups(group_ids(&keys))
            }
        };
        let pixels = Tensor::from_slice(batch.pixels(), (n, 3, s, s), &o.device)?;
        let train_batch = TrainBatch::new(pixels, tokens, positives);
        let mut result = compute_gradients(&store, &train_batch, o.loss, o.micro_batch)?;
        if !result.loss.is_finite() {
            return Err(TrainError::Invalid(format!(
                "the loss became {} at step {step}; lower --lr or enable --grad-clip",
                result.loss
            )));
        }
        let grad_norm = clip_grad_norm(&mut result.grads, o.grad_clip)?;
        let lr = schedule.lr(step);
        optimizer.update(&store, &result.grads, lr)?;
        // As open_clip: keep the temperature factor exp(t) within [1, 100].
        if let Some(t) = store.scalar("logit_scale")? {
            store.set_scalar("logit_scale", t.clamp(0.0, 100f32.ln()))?;
        }
        step += 1;
        samples += n as u64;
        losses.push(result.loss);
        let epoch = epoch_value(after, epoch_size);
        let report = StepReport {
            step,
            steps: o.steps,
            epoch,
            samples,
            loss: result.loss,
            lr,
            logit_scale: store.scalar("logit_scale")?.unwrap_or(0.0).exp() as f64,
            grad_norm,
            samples_per_sec: n as f64 / t0.elapsed().as_secs_f64(),
            elapsed_s: elapsed(),
            skipped_samples: loader.stats().skipped,
        };
        write_metric(json!({
            "kind": "train", "step": step, "epoch": report.epoch, "samples": samples,
            "loss": report.loss, "lr": lr, "logit_scale": report.logit_scale,
            "grad_norm": grad_norm, "samples_per_sec": report.samples_per_sec,
            "elapsed_s": report.elapsed_s,
        }))?;
        observer.on_step(&report);

        let at_end = step == o.steps;
        if (o.eval_every > 0 && step.is_multiple_of(o.eval_every)) || at_end {
            if let Some(r) = evaluate(&store, o, step)? {
                let mut line =
                    json!({"kind": "eval", "step": step, "epoch": epoch, "elapsed_s": elapsed()});
                for (k, v) in &r.metrics {
                    line[k.as_str()] = json!(v);
                }
                write_metric(line)?;
                observer.on_eval(&r);
                last_eval = Some(r);
            }
        }
        if (o.checkpoint_every > 0 && step.is_multiple_of(o.checkpoint_every))
            || at_end
            || step == last_step
        {
            let state = CheckpointState {
                step,
                samples_seen: samples,
                data: serde_json::to_value(after)
                    .map_err(|e| TrainError::Invalid(e.to_string()))?,
                elapsed_s: elapsed(),
                run: fingerprint.clone(),
                epoch_size: Some(epoch_size),
                loss: Some(result.loss),
            };
            let path = checkpoint::save(&o.out, &store, &optimizer, &state, o.keep_checkpoints)?;
            // From here on the folder holds a run to resume.
            if let Some(f) = fresh.take() {
                f.keep();
            }
            observer.on_checkpoint(&path);
        }
    }
    let model_dir = if step == o.steps {
        let dir = o.out.join(MODEL_DIR);
        // A resumed run that had finished keeps its export (written by the
        // same weights), unless it was lost to a crash during the export.
        let exported = ["config.json", "model.safetensors"]
            .iter()
            .all(|f| dir.join(f).is_file());
        if first_step < o.steps || !exported {
            export_model(
                &store,
                &dir,
                &o.data.preprocess,
                o.tokenizer_path.as_deref(),
            )?;
        }
        Some(dir)
    } else {
        None
    };
    if let Some(f) = fresh {
        f.keep();
    }
    Ok(TrainSummary {
        steps: step,
        resumed_from,
        samples,
        skipped_samples: loader.stats().skipped,
        final_loss: losses.last().copied().or(resumed_loss),
        losses,
        last_eval,
        model_dir,
        elapsed_s: elapsed(),
    })
}

/// What a new run has created in its output folder before its first
/// checkpoint: removed again when the run fails (dropped without
/// [`FreshRun::keep`]), so the same command can start over in that folder.
/// Only this run's own files go: `metrics.jsonl` (an earlier one was refused or
/// was empty) and `checkpoints/` when this run made it and it is still empty.
struct FreshRun {
    metrics: PathBuf,
    checkpoints: Option<PathBuf>,
    kept: bool,
}

impl FreshRun {
    fn new(out: &Path) -> Self {
        let checkpoints = checkpoint::checkpoints_dir(out);
        // Before the metrics exist, so that a run killed before its first
        // checkpoint can be told from a folder someone else put metrics in.
        // Best effort: without it such a folder is refused, as before.
        let marker = out.join(outdir::UNSAVED_MARKER);
        if let Err(e) = std::fs::write(&marker, b"") {
            tracing::debug!("{}: {e}", marker.display());
        }
        Self {
            metrics: out.join(METRICS_FILE),
            checkpoints: (checkpoints.symlink_metadata().is_err()).then_some(checkpoints),
            kept: false,
        }
    }

    /// The run has a checkpoint (or ended well): its files stay.
    fn keep(mut self) {
        self.kept = true;
        let _ = std::fs::remove_file(self.marker());
    }

    fn marker(&self) -> PathBuf {
        self.metrics.with_file_name(outdir::UNSAVED_MARKER)
    }
}

impl Drop for FreshRun {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        if let Some(dir) = &self.checkpoints {
            // Fails, as it should, where anything is inside.
            let _ = std::fs::remove_dir(dir);
        }
        // Said only where it held lines: a run that failed before its first
        // step has its own error to tell.
        let logged = std::fs::metadata(&self.metrics).is_ok_and(|m| m.len() > 0);
        match std::fs::remove_file(&self.metrics) {
            Ok(()) if !logged => {}
            Ok(()) => tracing::warn!(
                "removed {}: the run failed before its first checkpoint, so there is nothing to \
                 resume; the same command starts it over",
                self.metrics.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                "could not remove {} ({e}); remove it before running the same command again",
                self.metrics.display()
            ),
        }
        let _ = std::fs::remove_file(self.marker());
    }
}

/// Dense ids for equal keys, in order of first appearance.
fn group_ids<K: std::hash::Hash + Eq + Clone>(keys: &[K]) -> Vec<usize> {
    let mut ids = std::collections::HashMap::new();
    keys.iter()
        .map(|k| {
            let next = ids.len();
            *ids.entry(k.clone()).or_insert(next)
        })
        .collect()
}

fn evaluate(store: &ParamStore, o: &TrainOptions, step: u64) -> Result<Option<EvalReport>> {
    if o.zeroshot.is_none() && o.pairs.is_none() {
        return Ok(None);
    }
    let t0 = Instant::now();
    let clip = snapshot_clip(store.inference_model()?, &o.tokenizer, &o.data.preprocess);
    let mut metrics = BTreeMap::new();
    if let Some(set) = &o.zeroshot {
        let (top1, top5) = zeroshot_accuracy(&clip, set)?;
        metrics.insert("zeroshot_top1".to_string(), top1);
        metrics.insert("zeroshot_top5".to_string(), top5);
    }
    if let Some(set) = &o.pairs {
        metrics.extend(pair_recall(&clip, set)?);
    }
    Ok(Some(EvalReport {
        step,
        metrics,
        seconds: t0.elapsed().as_secs_f64(),
    }))
}

/// The loss metrics.jsonl holds for `step` (for checkpoints that do not store it).
fn logged_loss(path: &Path, step: u64) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["kind"] == "train" && v["step"].as_u64() == Some(step))
        .and_then(|v| v["loss"].as_f64())
}

/// Drops metric lines past `step` (written after the checkpoint a run resumes from).
fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|v| v.get("step").and_then(Value::as_u64))
                .is_some_and(|s| s <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    // Replaced whole: a write cut short (a full disk, a crash) must not lose
    // the lines before the checkpoint.
    seer_util::fs::write(path, kept.as_bytes(), seer_util::fs::Durability::Fsync)
        .map_err(|e| io_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_of_a_step_is_read_back_from_the_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        std::fs::write(
            &path,
            "{\"kind\":\"train\",\"step\":1,\"loss\":2.5}\n\
             {\"kind\":\"eval\",\"step\":2,\"zeroshot_top1\":0.1}\n\
             {\"kind\":\"train\",\"step\":2,\"loss\":2.25}\n",
        )
        .unwrap();
        assert_eq!(logged_loss(&path, 2), Some(2.25));
        assert_eq!(logged_loss(&path, 1), Some(2.5));
        assert_eq!(logged_loss(&path, 3), None);
        assert_eq!(logged_loss(&dir.path().join("none.jsonl"), 1), None);
    }
}
