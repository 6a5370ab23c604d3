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
use crate::error::{file_error, io_error, Result, TrainError};
use crate::evaluate::{pair_recall, snapshot_clip, zeroshot_accuracy, LabeledSet, PairSet};
use crate::export::export_model;
use crate::loss::{LossKind, Positives};
use crate::optim::{clip_grad_norm, AdamW, AdamWConfig, Schedule};
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
    std::fs::create_dir_all(&o.out).map_err(|e| io_error(&o.out, e))?;
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
    let existing = checkpoint::latest(&o.out)?;
    let resumed_from = match (o.resume, existing) {
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
            truncate_metrics(&o.out.join(METRICS_FILE), first_step)?;
            tracing::info!("resuming from {} (step {first_step})", dir.display());
            Some(first_step)
        }
        (true, None) => {
            return Err(TrainError::Invalid(format!(
                "--resume: {} holds no checkpoint to continue from; leave out --resume to start a new run there",
                o.out.display()
            )))
        }
        (false, Some((dir, _))) => {
            return Err(TrainError::Invalid(format!(
                "{} already holds a run (checkpoint {}); pass --resume to continue it or choose another --out",
                o.out.display(),
                dir.display()
            )))
        }
        (false, None) => {
            let _ = std::fs::remove_file(o.out.join(METRICS_FILE));
            None
        }
    };

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
    // Raw samples per epoch, known once the first epoch boundary is crossed.
    let mut epoch_size: Option<u64> = None;
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
        let before = loader.position();
        let batch = loader
            .next_batch(o.batch_size)?
            .ok_or_else(|| TrainError::Invalid("the training data ran out".into()))?;
        let after = loader.position();
        if after.epoch > before.epoch && epoch_size.is_none() {
            epoch_size = Some(before.consumed);
        }
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
        let epoch = match epoch_size {
            Some(size) if size > 0 => after.epoch as f64 + after.consumed as f64 / size as f64,
            _ => after.epoch as f64,
        };
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
            };
            let path = checkpoint::save(&o.out, &store, &optimizer, &state, o.keep_checkpoints)?;
            observer.on_checkpoint(&path);
        }
    }
    let model_dir = if step == o.steps {
        let dir = o.out.join(MODEL_DIR);
        export_model(
            &store,
            &dir,
            &o.data.preprocess,
            o.tokenizer_path.as_deref(),
        )?;
        Some(dir)
    } else {
        None
    };
    Ok(TrainSummary {
        steps: step,
        resumed_from,
        samples,
        skipped_samples: loader.stats().skipped,
        final_loss: losses.last().copied(),
        losses,
        last_eval,
        model_dir,
        elapsed_s: elapsed(),
    })
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
    std::fs::write(path, kept).map_err(|e| io_error(path, e))
}
