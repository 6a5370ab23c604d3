//! `seer train`: contrastive fine-tuning, locked-image tuning (LiT) or training
//! from scratch, with checkpoints, evaluation and export.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use seer_data::{ClassPrompts, DataPosition, DataSource, Loader, LoaderConfig, RandomResizedCrop};
use seer_engine::prompts::{read_list, templates, ListKind};
use seer_engine::{Clip, DeviceChoice, LoadOptions};
use seer_image::{DecodeLimits, PreprocessConfig};
use seer_tokenizer::ClipTokenizer;
use seer_train::epochs::count_pass;
use seer_train::evaluate::{LabeledSet, PairSet};
use seer_train::outdir::{check_out, check_source};
use seer_train::trainer::{
    train, EvalReport, ModelInit, Observer, PositivesRule, StepReport, TrainOptions,
};
use seer_train::validate::{check_numbers, validate, Numbers};
use seer_train::{AdamWConfig, LossKind};

use crate::common::configure_threads;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum InitArg {
    Pretrained,
    Scratch,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LossArg {
    Clip,
    Siglip,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum PositivesArg {
    /// Each image matches only its own caption (CLIP).
    Pairs,
    /// Samples with identical captions are positives of each other.
    SameText,
    /// Samples of the same class (or with identical captions) are positives.
    SameClass,
}

#[derive(clap::Args)]
pub struct Args {
    /// Training data: webdataset shards (.tar, .tar.gz, a brace range like
    /// train-{0000..0004}.tar.gz, or a folder of shards), or JSONL/CSV lists of
    /// (image path, caption).
    #[arg(long, required = true, num_args = 1.., value_name = "SOURCE")]
    data: Vec<String>,
    /// Model to start from: a transformers folder, alias or hub id.
    #[arg(long, short, conflicts_with = "config")]
    model: Option<String>,
    /// A transformers CLIP config.json describing a model to train from scratch.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// pretrained (default with --model) or scratch (random weights of the architecture).
    #[arg(long, value_enum)]
    init: Option<InitArg>,
    /// Tokenizer file (needed with --config; else the model folder's).
    #[arg(long, env = "SEER_TOKENIZER")]
    tokenizer: Option<PathBuf>,
    /// Freeze the image tower (LiT: locked-image text tuning).
    #[arg(long)]
    lock_image: bool,
    /// Freeze the text tower.
    #[arg(long)]
    lock_text: bool,
    /// Pairs per optimizer step (the contrastive batch).
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Pairs per forward pass; smaller than --batch-size turns on gradient caching
    /// (same result, less memory).
    #[arg(long)]
    micro_batch: Option<usize>,
    /// Optimizer steps.
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<u64>,
    /// Passes over the data (counted once before training).
    #[arg(long)]
    epochs: Option<f64>,
    #[arg(long, default_value_t = 5e-4)]
    lr: f64,
    /// Decoupled weight decay (not applied to gains, biases, embeddings, logit scale).
    #[arg(long, default_value_t = 0.2)]
    wd: f64,
    /// Linear warm-up steps before the cosine decay [default: 100, or all the
    /// steps of a shorter run].
    #[arg(long)]
    warmup: Option<u64>,
    #[arg(long, default_value_t = 0.9)]
    beta1: f64,
    #[arg(long, default_value_t = 0.98)]
    beta2: f64,
    #[arg(long, default_value_t = 1e-6)]
    eps: f64,
    /// Clip the global gradient norm to this (0 = off).
    #[arg(long, default_value_t = 0.0)]
    grad_clip: f64,
    #[arg(long, value_enum, default_value = "clip")]
    loss: LossArg,
    /// Which pairs count as matches when samples share a caption or class.
    #[arg(long, value_enum, default_value = "pairs")]
    positives: PositivesArg,
    /// Class names for samples labeled with a `.cls` index (file, JSON list or prompts.json#DATASET).
    #[arg(long, value_name = "FILE")]
    classes: Option<String>,
    /// Caption templates for class-labeled samples: default, imagenet or a FILE.
    #[arg(long, default_value = "default")]
    templates: String,
    /// Random resized crop (scale 0.9-1) and horizontal flips while training.
    #[arg(long)]
    augment: bool,
    /// Samples held in the shuffle buffer.
    #[arg(long, default_value_t = 2000)]
    shuffle_buffer: usize,
    /// Decoding threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Labeled set for zero-shot accuracy during training (shards with `.cls`);
    /// class names and templates from --classes/--templates unless
    /// --eval-classes/--eval-templates are given.
    #[arg(long, value_name = "SOURCE")]
    eval_zeroshot: Option<String>,
    #[arg(long, value_name = "FILE")]
    eval_classes: Option<String>,
    #[arg(long)]
    eval_templates: Option<String>,
    /// Held-out image–caption pairs for recall@K during training.
    #[arg(long, value_name = "SOURCE")]
    eval_pairs: Option<String>,
    /// K values for recall@K.
    #[arg(long, value_delimiter = ',', default_value = "1,5,10")]
    recall_k: Vec<usize>,
    /// Use at most this many evaluation samples per set.
    #[arg(long)]
    eval_limit: Option<usize>,
    /// Evaluate every N steps (and at the end; 0 = only at the end).
    #[arg(long, default_value_t = 0)]
    eval_every: u64,
    /// Save a checkpoint every N steps (and at the end; 0 = only at the end).
    #[arg(long, default_value_t = 500)]
    checkpoint_every: u64,
    /// Checkpoints kept (older ones are deleted).
    #[arg(long, default_value_t = 2)]
    keep_checkpoints: usize,
    /// Output folder: checkpoints/, metrics.jsonl and the final model/.
    #[arg(long, required = true)]
    out: PathBuf,
    /// Continue the run in --out from its newest checkpoint.
    #[arg(long)]
    resume: bool,
    /// Stop after this many steps of this invocation (the schedule still spans
    /// --steps); continue later with --resume.
    #[arg(long)]
    stop_after: Option<u64>,
    /// cpu, cuda or cuda:N (cuda needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Worker threads for the model (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// One JSON object per step and evaluation on stdout, a summary at the end.
    #[arg(long)]
    json: bool,
}

/// The model to start from, with its tokenizer and preprocessing.
struct Start {
    init: ModelInit,
    tokenizer: Arc<ClipTokenizer>,
    tokenizer_path: Option<PathBuf>,
    preprocess: PreprocessConfig,
}

fn resolve_start(args: &Args) -> anyhow::Result<Start> {
    let device = DeviceChoice::parse(&args.device)?;
    match (&args.model, &args.config) {
        (Some(spec), None) => {
            let resolved = seer_hub::resolve(spec, crate::output::stderr_is_terminal())
                .with_context(|| format!("cannot load model '{spec}'"))?;
            let dir = resolved.dir;
            // Before loading: the run's export would replace a model in OUT/model.
            check_source(&dir, &args.out)?;
            let clip = Clip::load_dir(
                &dir,
                &LoadOptions {
                    tokenizer: args.tokenizer.clone(),
                    progress: false,
                    device,
                    ..Default::default()
                },
            )
            .with_context(|| format!("cannot load model '{spec}'"))?;
            let init = match args.init.unwrap_or(InitArg::Pretrained) {
                InitArg::Pretrained => ModelInit::Pretrained { dir: dir.clone() },
                InitArg::Scratch => ModelInit::Scratch {
                    config: dir.join("config.json"),
                },
            };
            Ok(Start {
                init,
                tokenizer: clip.tokenizer.clone(),
                tokenizer_path: args.tokenizer.clone().or(Some(dir)),
                preprocess: clip.preprocess,
            })
        }
        (None, Some(config)) => {
            anyhow::ensure!(
                args.init != Some(InitArg::Pretrained),
                "--config describes an architecture only; --init pretrained needs --model"
            );
            check_source(config, &args.out)?;
            let tokenizer_path = args.tokenizer.clone().context(
                "training from a --config needs a tokenizer: pass --tokenizer FILE or set SEER_TOKENIZER",
            )?;
            let tokenizer = ClipTokenizer::from_file(&tokenizer_path)
                .with_context(|| format!("cannot read tokenizer {}", tokenizer_path.display()))?;
            let text = std::fs::read_to_string(config)
                .with_context(|| format!("{}: cannot read", config.display()))?;
            let cfg = seer_models::ClipConfig::from_transformers_json(&text, config)?;
            Ok(Start {
                init: ModelInit::Scratch {
                    config: config.clone(),
                },
                tokenizer: Arc::new(tokenizer),
                tokenizer_path: Some(tokenizer_path),
                preprocess: PreprocessConfig::openai_clip(cfg.vision.image_size() as u32),
            })
        }
        _ => anyhow::bail!("give the model to train: --model M (a transformers folder, alias or hub id) or --config FILE"),
    }
}

fn sources(specs: &[String]) -> anyhow::Result<Vec<DataSource>> {
    let mut out = Vec::new();
    for s in specs {
        out.extend(DataSource::parse(s).with_context(|| format!("bad data source '{s}'"))?);
    }
    Ok(out)
}

fn prompts(classes: Option<&str>, templates_spec: &str) -> anyhow::Result<Option<ClassPrompts>> {
    let Some(classes) = classes else {
        return Ok(None);
    };
    Ok(Some(ClassPrompts {
        classes: read_list(classes, ListKind::Classes)?,
        templates: templates(templates_spec)?,
    }))
}

/// An evaluation set decoded into memory.
struct EvalSamples {
    pixels: Vec<f32>,
    captions: Vec<String>,
    classes: Vec<Option<usize>>,
}

/// Decodes a whole evaluation set once (eval preprocessing, no shuffling).
fn read_eval_set(
    spec: &str,
    preprocess: &PreprocessConfig,
    prompts: Option<ClassPrompts>,
    limit: Option<usize>,
    workers: usize,
) -> anyhow::Result<EvalSamples> {
    let config = LoaderConfig {
        sources: sources(&[spec.to_string()])?,
        preprocess: preprocess.clone(),
        augment: None,
        shuffle_buffer: 0,
        workers,
        seed: 0,
        prompts,
        limits: DecodeLimits::default(),
        repeat: false,
    };
    let mut loader = Loader::new(config, DataPosition::default())?;
    let limit = limit.unwrap_or(usize::MAX);
    let (mut pixels, mut captions, mut classes) = (Vec::new(), Vec::new(), Vec::new());
    while captions.len() < limit {
        let Some(batch) = loader.next_batch(1024.min(limit - captions.len()))? else {
            break;
        };
        pixels.extend_from_slice(batch.pixels());
        captions.extend(batch.captions().iter().cloned());
        classes.extend(batch.classes().iter().copied());
    }
    let stats = loader.stats();
    if stats.skipped > 0 {
        diag!("warning: {spec}: {} bad samples skipped", stats.skipped);
    }
    anyhow::ensure!(!captions.is_empty(), "{spec}: no usable evaluation samples");
    Ok(EvalSamples {
        pixels,
        captions,
        classes,
    })
}

const DEFAULT_WARMUP: u64 = 100;

/// The plain values, checked before anything is read, loaded or written (a
/// `--warmup` longer than a run measured in `--epochs` is caught by `validate`
/// once the data is counted).
fn check_args(args: &Args) -> anyhow::Result<()> {
    match (args.steps, args.epochs) {
        (None, None) => anyhow::bail!("say how long to train: --steps S or --epochs E"),
        (None, Some(e)) => anyhow::ensure!(
            e.is_finite() && e > 0.0,
            "--epochs must be a number above 0 (got {e})"
        ),
        _ => {}
    }
    anyhow::ensure!(
        args.eval_limit != Some(0),
        "--eval-limit must be at least 1 (got 0)"
    );
    check_numbers(&Numbers {
        batch_size: args.batch_size,
        micro_batch: args.micro_batch.unwrap_or(args.batch_size),
        steps: args.steps,
        warmup: args.warmup,
        lr: args.lr,
        adamw: adamw(args),
        grad_clip: args.grad_clip,
        keep_checkpoints: args.keep_checkpoints,
        stop_after: args.stop_after,
        workers: args.workers,
        recall_k: &args.recall_k,
    })?;
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    check_args(&args)?;
    // The output folder next, before any model or data is read: no model to
    // start from inside OUT/model (the export replaces it; a hub id or alias is
    // checked once resolved), no new run in a folder holding another run's
    // output, no --resume without a checkpoint.
    let local_start = match (&args.model, &args.config) {
        (Some(spec), _) => Some(Path::new(spec.as_str())).filter(|p| p.exists()),
        (None, Some(config)) => Some(config.as_path()),
        (None, None) => None,
    };
    if let Some(source) = local_start {
        check_source(source, &args.out)?;
    }
    check_out(&args.out, args.resume)?;
    configure_threads(args.threads)?;
    let start = resolve_start(&args)?;
    let train_prompts = prompts(args.classes.as_deref(), &args.templates)?;
    let data = LoaderConfig {
        sources: sources(&args.data)?,
        preprocess: start.preprocess.clone(),
        augment: args.augment.then(|| RandomResizedCrop {
            hflip: true,
            ..RandomResizedCrop::default()
        }),
        shuffle_buffer: args.shuffle_buffer,
        workers: args.workers,
        seed: args.seed,
        prompts: train_prompts.clone(),
        limits: DecodeLimits::default(),
        repeat: true,
    };
    // --epochs counts one pass over the data (the trainer counts it otherwise).
    let (steps, epoch_size) = match (args.steps, args.epochs) {
        (Some(s), _) => (s, None),
        (None, Some(e)) => {
            let n = count_pass(&data.sources);
            anyhow::ensure!(
                n.usable > 0,
                "--epochs: the data holds no usable samples to count ({})",
                args.data.join(", ")
            );
            let steps = ((e * n.usable as f64) / args.batch_size as f64).ceil() as u64;
            (steps, Some(n.stored))
        }
        (None, None) => anyhow::bail!("say how long to train: --steps S or --epochs E"),
    };
    let device = DeviceChoice::parse(&args.device)?.device()?;
    let mut options = TrainOptions {
        init: start.init,
        data,
        tokenizer: start.tokenizer,
        tokenizer_path: start.tokenizer_path,
        lock_image: args.lock_image,
        lock_text: args.lock_text,
        batch_size: args.batch_size,
        micro_batch: args.micro_batch.unwrap_or(args.batch_size),
        steps,
        lr: args.lr,
        warmup: args.warmup.unwrap_or(DEFAULT_WARMUP.min(steps)),
        adamw: adamw(&args),
        grad_clip: args.grad_clip,
        loss: match args.loss {
            LossArg::Clip => LossKind::Clip,
            LossArg::Siglip => LossKind::Siglip,
        },
        positives: match args.positives {
            PositivesArg::Pairs => PositivesRule::Pairs,
            PositivesArg::SameText => PositivesRule::SameText,
            PositivesArg::SameClass => PositivesRule::SameClass,
        },
        seed: args.seed,
        zeroshot: None,
        pairs: None,
        eval_every: args.eval_every,
        checkpoint_every: args.checkpoint_every,
        keep_checkpoints: args.keep_checkpoints,
        out: args.out.clone(),
        resume: args.resume,
        stop_after: args.stop_after,
        device,
        epoch_size,
    };
    // Refuse bad numbers before the evaluation sets are decoded.
    validate(&options)?;

    options.zeroshot = match &args.eval_zeroshot {
        Some(spec) => {
            let classes = args
                .eval_classes
                .as_deref()
                .or(args.classes.as_deref())
                .context("--eval-zeroshot needs class names: --eval-classes or --classes")?;
            let eval_prompts = prompts(
                Some(classes),
                args.eval_templates.as_deref().unwrap_or(&args.templates),
            )?
            .context("class names")?;
            let set = read_eval_set(
                spec,
                &start.preprocess,
                Some(eval_prompts.clone()),
                args.eval_limit,
                args.workers,
            )?;
            let classes: Option<Vec<usize>> = set.classes.into_iter().collect();
            Some(LabeledSet {
                pixels: set.pixels,
                classes: classes.with_context(|| {
                    format!("{spec}: every zero-shot sample needs a class (.cls)")
                })?,
                class_names: eval_prompts.classes,
                templates: eval_prompts.templates,
            })
        }
        None => None,
    };
    options.pairs = match &args.eval_pairs {
        Some(spec) => {
            let set = read_eval_set(
                spec,
                &start.preprocess,
                train_prompts.clone(),
                args.eval_limit,
                args.workers,
            )?;
            Some(PairSet {
                pixels: set.pixels,
                captions: set.captions,
                ks: args.recall_k.clone(),
            })
        }
        None => None,
    };
    let mut observer = Progress::new(args.json, steps);
    let summary = train(options, &mut observer)?;
    observer.finish();
    if args.json {
        out!(
            "{}",
            serde_json::json!({"kind": "summary", "summary": summary_json(&summary)})
        )?;
    } else {
        print_summary(&summary, &args.out)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn summary_json(s: &seer_train::trainer::TrainSummary) -> serde_json::Value {
    serde_json::json!({
        "steps": s.steps,
        "resumed_from": s.resumed_from,
        "samples": s.samples,
        "skipped_samples": s.skipped_samples,
        "final_loss": s.final_loss,
        "last_eval": s.last_eval,
        "model_dir": s.model_dir,
        "elapsed_s": s.elapsed_s,
    })
}

fn print_summary(s: &seer_train::trainer::TrainSummary, out: &Path) -> anyhow::Result<()> {
    let loss = s
        .final_loss
        .map(|l| format!("; final loss {l:.4}"))
        .unwrap_or_default();
    if s.losses.is_empty() && s.resumed_from == Some(s.steps) {
        // --resume on a run that had already finished: nothing was trained now.
        out!("already finished at step {}{loss}", s.steps)?;
    } else {
        out!(
            "trained {} steps ({} samples, {} skipped) in {:.0} s{loss}",
            s.steps,
            s.samples,
            s.skipped_samples,
            s.elapsed_s,
        )?;
    }
    if let Some(e) = &s.last_eval {
        for (k, v) in &e.metrics {
            out!("  {k}: {:.2}%", v * 100.0)?;
        }
    }
    match &s.model_dir {
        Some(dir) => out!("model: {}", dir.display())?,
        None => out!(
            "stopped early; continue with the same command and --resume (checkpoints in {})",
            out.join("checkpoints").display()
        )?,
    }
    out!("curves: seer plot {}", out.display())?;
    Ok(())
}

/// A progress bar with loss, lr and samples/s on a terminal; JSON lines with --json.
struct Progress {
    json: bool,
    bar: indicatif::ProgressBar,
}

impl Progress {
    fn new(json: bool, steps: u64) -> Self {
        let bar = crate::output::progress_with_details(steps as usize, "training");
        Self { json, bar }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for Progress {
    fn on_start(&mut self, first_step: u64, _steps: u64) {
        self.bar.set_position(first_step);
    }

    fn on_step(&mut self, r: &StepReport) {
        if self.json {
            // A closed stdout must not stop the run: its checkpoints and
            // report files still hold every step. The bar is cleared while the
            // line is printed, so the line starts a line of its own.
            self.bar.suspend(|| {
                let _ = out!("{}", serde_json::json!({"kind": "train", "report": r}));
            });
        }
        self.bar.set_position(r.step);
        self.bar.set_message(format!(
            "loss {:.4} lr {:.2e} {:.0} samples/s",
            r.loss, r.lr, r.samples_per_sec
        ));
    }

    fn on_eval(&mut self, r: &EvalReport) {
        if self.json {
            // A closed stdout must not stop the run: its checkpoints and
            // report files still hold every step.
            self.bar.suspend(|| {
                let _ = out!("{}", serde_json::json!({"kind": "eval", "report": r}));
            });
        } else {
            let parts: Vec<String> = r
                .metrics
                .iter()
                .map(|(k, v)| format!("{k} {:.2}%", v * 100.0))
                .collect();
            self.bar
                .suspend(|| diag!("step {}: {}", r.step, parts.join(", ")));
        }
    }

    fn on_checkpoint(&mut self, path: &Path) {
        tracing::info!("checkpoint {}", path.display());
    }
}

/// The optimizer settings the flags give.
fn adamw(args: &Args) -> AdamWConfig {
    AdamWConfig {
        beta1: args.beta1,
        beta2: args.beta2,
        eps: args.eps,
        weight_decay: args.wd,
    }
}
