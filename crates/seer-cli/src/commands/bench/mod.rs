//! `seer bench`: images/s and texts/s for a model (by default the ViT-B/32
//! architecture with random weights, so no download is needed), model-only and
//! end to end from image files; with `--reference PYTHON` the same measurements
//! from PyTorch (`scripts/bench_reference.py`), each taken right after seer's
//! ([`reference`]), and the ratios are printed; ONNX Runtime and OpenVINO, when that
//! Python has them, run the same exported model in f32 and in their own reduced
//! precision, PyTorch once more on a bf16 copy of the model, and seer's figure
//! over each is printed too. Every run names the
//! CPU and the kernel seer chose ([`cpu`]). `--rounds N` repeats the
//! measurements N times (the reference set up once) and reports medians and each round's ratios (embedding
//! models; captioning, segmentation, detection and `--reindex-files` refuse
//! it rather than run once under a median's name).
//!
//! A DINOv2 or SigLIP folder given to `--model` is measured by [`family`]
//! through the task traits, against the same folder loaded by transformers; a
//! BLIP captioning folder by [`caption`] (images captioned and tokens generated
//! per second, against transformers' `generate`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use seer_engine::{
    collect_image_paths, Clip, DeviceChoice, EmbedOptions, ImageEncoder, LoadedModel,
};
use seer_hub::ResolvedModel;
use seer_image::PreprocessConfig;
use seer_models::{ClipConfig, ClipModel, Precision, Tensor, TextPadding, Weights};
use seer_tokenizer::ClipTokenizer;
use serde_json::{json, Value};

mod caption;
mod cpu;
mod detect;
mod family;
mod reference;
mod segment;
mod timing;

use reference::Reference;
use timing::Rate;

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Benchmark this model instead of a random-weight ViT-B/32.
    #[arg(long)]
    model: Option<String>,
    /// Tokenizer file (default: the model's, or ../shared/data/clip-tokenizer).
    #[arg(long, env = "SEER_TOKENIZER")]
    tokenizer: Option<PathBuf>,
    /// Image batch sizes for the model-only measurement.
    #[arg(long, value_delimiter = ',', default_value = "8,32", value_parser = crate::common::at_least_one)]
    batch_sizes: Vec<usize>,
    /// Timed batches per measurement (after one warm-up batch).
    #[arg(long, default_value_t = 3, value_parser = crate::common::at_least_one)]
    iterations: usize,
    /// Image files or folder for the end-to-end measurement (the default is
    /// the repository's test data; where it is absent that line is skipped).
    #[arg(long, default_value = DEFAULT_IMAGES)]
    images: PathBuf,
    /// How many files to embed end to end (the list repeats when it is shorter);
    /// for a captioning model, how many images to caption in each configuration.
    /// Default 256, or 16 when captioning.
    #[arg(long, value_parser = crate::common::at_least_one)]
    files: Option<usize>,
    /// Captioning models: batch sizes to caption at.
    #[arg(long, value_delimiter = ',', default_value = "1,8", value_parser = crate::common::at_least_one)]
    caption_batch_sizes: Vec<usize>,
    /// Captioning models: beam widths to caption with (1 is greedy search).
    #[arg(long, value_delimiter = ',', default_value = "1,3", value_parser = crate::common::at_least_one)]
    beams: Vec<usize>,
    /// Captioning models: new tokens at most (default: `generate`'s, 20).
    #[arg(long, value_parser = crate::common::at_least_one)]
    max_new_tokens: Option<usize>,
    /// Matmul weights for seer: f32, bf16 or int8 (timed against f32 in the same run).
    #[arg(long, default_value = "f32", value_parser = crate::common::parse_precision)]
    precision: Precision,
    /// Threads for seer and for the reference (the reference's DataLoader gets
    /// as many workers).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// cpu, cuda or cuda:N, for seer and for the reference.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// A Python with torch, transformers and open_clip: also run the reference
    /// (PyTorch in f32 and bf16, and ONNX Runtime and OpenVINO when installed in
    /// that Python).
    #[arg(long, env = "SEER_REFERENCE_PYTHON")]
    reference: Option<PathBuf>,
    /// Instead of embedding throughput, measure indexing a synthetic tree of this
    /// many tiny images and re-indexing it unchanged (needs --model).
    #[arg(long, value_name = "N", value_parser = crate::common::at_least_one)]
    reindex_files: Option<usize>,
    /// Run the measurements (seer's, each followed by the reference's) this
    /// many times over;
    /// the table shows medians over the rounds (each ratio taken within its
    /// round) and each round's ratio to the fastest f32 engine. A shared
    /// machine's speed moves between minutes, so one round can mislead.
    /// Embedding models (CLIP, SigLIP, DINOv2) only: the other benchmarks
    /// run once.
    #[arg(long, default_value_t = 1, value_parser = crate::common::at_least_one)]
    rounds: usize,
    /// Run each batch whole, its steps shared by the threads, instead of one
    /// part per thread (CLIP, SigLIP and DINOv2 on the CPU): to compare the two
    /// on the CPU at hand.
    #[arg(long)]
    whole_batches: bool,
    #[arg(long)]
    json: bool,
}

impl Args {
    /// Files embedded end to end (`--files`, 256 by default).
    fn files(&self) -> usize {
        self.files.unwrap_or(256)
    }
}

/// Typical zero-shot prompts: short, as users write them.
const PROMPTS: &[&str] = &[
    "a photo of a dog.",
    "a photo of a cat.",
    "a blurry photo of a truck.",
    "a drawing of an airplane.",
    "a photo of the small bird.",
    "a close-up photo of a frog.",
    "a photo of a horse in a field.",
    "a photo of a ship at sea.",
    "itap of a deer.",
    "a bright photo of a red car.",
    "a black and white photo of the automobile.",
    "art of the tench.",
    "a photo of a goldfish.",
    "a photo of the large great white shark.",
    "a origami hammerhead shark.",
    "a photo of a beach at sunset",
    "two people riding bicycles down a city street",
    "a bowl of fruit on a wooden table",
    "a snowy mountain under a blue sky",
    "a child playing with a ball in the park",
    "a plate of spaghetti with tomato sauce",
    "an old castle on a hill",
    "a cup of coffee and a laptop",
    "a group of friends at a party",
    "a dog catching a frisbee",
    "a cat sleeping on a sofa",
    "a red double-decker bus",
    "a lighthouse by the ocean",
    "fireworks over a river at night",
    "a bookshelf full of books",
    "a vintage typewriter",
    "a field of sunflowers",
];

/// `--images` when not given: the shared test data beside a checkout.
const DEFAULT_IMAGES: &str = "../shared/data/imagenet-samples/images";

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    // A path the user typed that is not there is a mistake, not a reason to
    // quietly measure less (the default may be absent outside a checkout).
    if args.images != Path::new(DEFAULT_IMAGES) && !args.images.exists() {
        anyhow::bail!(
            "{}: no such file or folder (--images)",
            args.images.display()
        );
    }
    if args.reindex_files.is_some() {
        refuse_rounds(&args, "--reindex-files")?;
    }
    crate::common::configure_threads(Some(args.threads))?;
    if args.whole_batches {
        seer_models::nn::split_batch::keep_batches_whole();
    }
    // Resolved once (a hub id may mean a download), then loaded by its family.
    let resolved = match &args.model {
        Some(spec) => Some(
            seer_hub::resolve(spec, crate::output::stderr_is_terminal())
                .with_context(|| format!("cannot load model '{spec}'"))?,
        ),
        None => None,
    };
    if let Some(resolved) = &resolved {
        let detected = seer_engine::registry::detect(&resolved.dir)?;
        // SAM and OWL: per-image and per-click latencies ([`segment`], [`detect`]).
        match detected.family.name {
            "sam" => {
                refuse_rounds(&args, "a segmentation model")?;
                return segment::run(&args, resolved);
            }
            "owlvit" => {
                refuse_rounds(&args, "a detection model")?;
                return detect::run(&args, resolved);
            }
            _ => {}
        }
        if detected.family.name != seer_engine::registry::CLIP {
            return family::run(&args, resolved);
        }
    }
    let clip = load(&args, resolved.as_ref())?;
    if let Some(n) = args.reindex_files {
        return bench_reindex(clip.into_loaded(), n, args.json);
    }
    // The f32 model a reduced precision is compared with, loaded once for
    // every round.
    let exact = match args.precision {
        Precision::F32 => None,
        _ => Some(load(
            &Args {
                precision: Precision::F32,
                ..args.clone()
            },
            resolved.as_ref(),
        )?),
    };
    let tokens: Vec<Vec<u32>> = PROMPTS.iter().map(|p| clip.tokenize(p)).collect();
    // The same token ids seer embeds, so the reference needs no tokenizer.
    let mut reference = match &args.reference {
        Some(python) => Some(Reference::start(
            python,
            &args,
            &["--tokens".to_string(), serde_json::to_string(&tokens)?],
        )?),
        None => None,
    };
    let results = measure_rounds(&args, || {
        measure_clip(&clip, exact.as_ref(), &args, &tokens, reference.as_mut())
    })?;
    if args.json {
        out!("{results}")?;
    } else {
        print_table(
            &results,
            &[
                ("texts, both padded to 77 tokens", "text_context"),
                // seer's default runs prompts unpadded (exact: the tower is
                // causal); PyTorch pads to the longest prompt of the batch.
                ("texts, unpadded / longest", "text_longest"),
            ],
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One round of the CLIP measurements: seer's figures, each followed by the
/// reference's (with `--reference`), and the ratios between them; for a
/// reduced precision, each image and unpadded text figure is followed by the
/// same weights' in f32 (`exact`) too, and their agreement is measured.
fn measure_clip(
    clip: &Clip,
    exact: Option<&Clip>,
    args: &Args,
    tokens: &[Vec<u32>],
    mut reference: Option<&mut Reference>,
) -> anyhow::Result<Value> {
    let mut results = json!({
        "model": clip.id,
        "threads": args.threads,
        "device": args.device,
        "image_model": {},
        "whole_batches": args.whole_batches,
    });
    results["precision"] = json!(args.precision.name());
    describe_cpu(args.precision, &mut results);
    let flops = clip.model.image_flops();
    // The measured peak is the CPU's: a GPU run reports GFLOP/s alone.
    let peak = if clip.model.device().is_cpu() {
        seer_kernels::peak::f32_gflops()
    } else {
        None
    };
    results["image_gflop_per_image"] = json!(flops.map(|f| f / 1e9));
    results["peak_f32_gflops"] = json!(peak);
    for &b in &args.batch_sizes {
        anyhow::ensure!(b > 0, "batch sizes must be positive");
        let measured = bench_image_model(clip, b, args.iterations)?;
        let ips = measured.mean;
        results["image_model"][b.to_string()] = json!(ips);
        measured.record_range(&mut results, &format!("image_model/{b}"));
        let rate = flops.map(|f| ips * f / 1e9);
        results["image_model_gflops"][b.to_string()] = json!(rate);
        let achieved = match (rate, peak) {
            (Some(r), Some(p)) if args.precision == Precision::F32 => format!(
                " ({r:.0} GFLOP/s, {:.0}% of the f32 peak {p:.0})",
                100.0 * r / p
            ),
            // bf16 and int8 run past the f32 peak by design: a percentage of it
            // would read as an impossible efficiency.
            (Some(r), Some(p)) => format!(" ({r:.0} GFLOP/s, {:.2}x the f32 peak {p:.0})", r / p),
            (Some(r), None) => format!(" ({r:.0} GFLOP/s)"),
            _ => String::new(),
        };
        diag!(
            "seer  image model-only   batch {b:>3}: {ips:8.2} images/s{achieved}{}",
            measured.note("images/s")
        );
        if let Some(exact) = exact {
            let f32_ips = bench_image_model(exact, b, args.iterations)?.mean;
            record_f32_image_speed(args, &mut results, b, f32_ips);
        }
        follow(&mut reference, &["image_model", &b.to_string()])?;
    }
    let mean_len = tokens.iter().map(Vec::len).sum::<usize>() as f64 / tokens.len() as f64;
    for (key, padding) in [
        ("text_context", TextPadding::Context),
        ("text_longest", TextPadding::Longest),
    ] {
        let rate = bench_text(clip, tokens, padding, args.iterations)?;
        let tps = rate.mean;
        results[key] = json!(tps);
        rate.record_range(&mut results, key);
        diag!(
            "seer  text {key:<13} batch {:>3}: {tps:8.2} texts/s (mean {mean_len:.1} tokens){}",
            tokens.len(),
            rate.note("texts/s")
        );
        if let (Some(exact), TextPadding::Longest) = (exact, padding) {
            let f32_tps = bench_text(exact, tokens, padding, args.iterations)?.mean;
            let line = format!(
                "text {key:<13} batch {:>3}: {f32_tps:8.2} texts/s",
                tokens.len()
            );
            record_f32_speed(args, &mut results, &[key], f32_tps, &line);
        }
        follow(&mut reference, &[key])?;
    }
    measure_end_to_end(args, clip, &mut results)?;
    follow(&mut reference, &["e2e"])?;

    if let Some(exact) = exact {
        let agreement = compare_with_f32(clip, exact, args)?;
        diag!(
            "seer  {} vs f32 cosine: images min {:.5}, texts min {:.5}",
            args.precision.name(),
            agreement["image_cosine_min"].as_f64().unwrap_or(f64::NAN),
            agreement["text_cosine_min"].as_f64().unwrap_or(f64::NAN)
        );
        results["agreement_with_f32"] = agreement;
    }
    if let Some(reference) = reference {
        attach_reference(
            &mut results,
            reference.finish_round()?,
            &["text_context", "text_longest", "e2e"],
        );
    }
    Ok(results)
}

/// The reference's figures for `key`, when there is a reference: taken right
/// after seer's own.
fn follow(reference: &mut Option<&mut Reference>, key: &[&str]) -> anyhow::Result<()> {
    match reference {
        Some(reference) => reference.follow(key),
        None => Ok(()),
    }
}

/// An error where `--rounds` asks for more than one round of a benchmark
/// that runs once (`what`): quietly measuring one round would leave the user
/// reading a single run as a median.
fn refuse_rounds(args: &Args, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rounds == 1,
        "--rounds {} is for embedding benchmarks (CLIP, SigLIP, DINOv2); {what} is measured in one round",
        args.rounds
    );
    Ok(())
}

/// `measure` run `--rounds` times: one round's results as they are, or the
/// rounds' medians (see [`median_of`]) with each round's own results under
/// `rounds`.
fn measure_rounds(
    args: &Args,
    mut measure: impl FnMut() -> anyhow::Result<Value>,
) -> anyhow::Result<Value> {
    let mut rounds = Vec::with_capacity(args.rounds);
    for round in 1..=args.rounds {
        if args.rounds > 1 {
            diag!("round {round} of {}", args.rounds);
        }
        rounds.push(measure()?);
    }
    Ok(match rounds.len() {
        1 => rounds.pop().expect("one round"),
        _ => {
            let mut medians = median_of(&rounds.iter().collect::<Vec<_>>());
            // A range of iterations belongs to its round: no median of it.
            if let Some(fields) = medians.as_object_mut() {
                fields.remove("iteration_range");
            }
            medians["rounds"] = Value::Array(rounds);
            medians
        }
    })
}

/// The rounds' results combined: each number the median of its value in
/// every round (ratios included, so each is a median of same-round ratios);
/// anything else as the first round has it.
fn median_of(rounds: &[&Value]) -> Value {
    match rounds[0] {
        Value::Object(first) => Value::Object(
            first
                .iter()
                .map(|(key, value)| {
                    let values: Vec<&Value> = rounds.iter().map(|r| &r[key.as_str()]).collect();
                    let combined = match values.iter().all(|v| v.is_object() || v.is_number()) {
                        true => median_of(&values),
                        false => value.clone(),
                    };
                    (key.clone(), combined)
                })
                .collect(),
        ),
        // Settings (threads, sizes) repeat unchanged: kept as they are.
        first if rounds.iter().all(|r| *r == first) => first.clone(),
        Value::Number(_) => {
            let mut numbers: Vec<f64> = rounds.iter().filter_map(|v| v.as_f64()).collect();
            if numbers.len() < rounds.len() {
                return rounds[0].clone();
            }
            numbers.sort_by(f64::total_cmp);
            let mid = numbers.len() / 2;
            let median = match numbers.len() % 2 {
                1 => numbers[mid],
                _ => (numbers[mid - 1] + numbers[mid]) / 2.0,
            };
            json!(median)
        }
        other => other.clone(),
    }
}

/// Cosine similarity between this model's embeddings and those of the same
/// weights in f32, over the prompts and a batch of real images (or noise).
fn compare_with_f32(clip: &Clip, exact: &Clip, args: &Args) -> anyhow::Result<Value> {
    let tokens: Vec<Vec<u32>> = PROMPTS.iter().map(|p| clip.tokenize(p)).collect();
    let texts = (
        clip.model.encode_texts(&tokens, TextPadding::Longest)?,
        exact.model.encode_texts(&tokens, TextPadding::Longest)?,
    );
    let (files, _) = collect_image_paths(std::slice::from_ref(&args.images));
    let s = clip.model.image_size();
    let pixels = if files.is_empty() {
        Tensor::randn(0f32, 1.0, (32, 3, s, s), clip.model.device())?
    } else {
        let images: Vec<Tensor> = files
            .iter()
            .take(32)
            .filter_map(|f| {
                seer_image::load_and_preprocess(f, &clip.preprocess, &Default::default()).ok()
            })
            .map(|img| Tensor::from_vec(img, (3, s, s), clip.model.device()))
            .collect::<Result<_, _>>()?;
        Tensor::stack(&images, 0)?
    };
    let images = (
        clip.model.encode_images(&pixels)?,
        exact.model.encode_images(&pixels)?,
    );
    let cosines = |(a, b): (Tensor, Tensor)| -> anyhow::Result<Vec<f32>> {
        let (a, b) = (
            seer_models::l2_normalize(&a)?,
            seer_models::l2_normalize(&b)?,
        );
        Ok((a * b)?.sum(1)?.to_vec1::<f32>()?)
    };
    let (ti, tt) = (cosines(images)?, cosines(texts)?);
    let min = |v: &[f32]| v.iter().copied().fold(f32::INFINITY, f32::min);
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
    Ok(json!({
        "image_cosine_min": min(&ti), "image_cosine_mean": mean(&ti), "images": ti.len(),
        "text_cosine_min": min(&tt), "text_cosine_mean": mean(&tt), "texts": tt.len(),
    }))
}

/// The resolved `--model`, or a random-weight ViT-B/32 without one.
fn load(args: &Args, resolved: Option<&ResolvedModel>) -> anyhow::Result<Clip> {
    let device = DeviceChoice::parse(&args.device)?;
    let tokenizer_path = args.tokenizer.clone().unwrap_or_else(|| {
        PathBuf::from("../shared/data/clip-tokenizer/bpe_simple_vocab_16e6.txt.gz")
    });
    if let Some(resolved) = resolved {
        let options = seer_engine::LoadOptions {
            tokenizer: args.tokenizer.clone(),
            progress: crate::output::stderr_is_terminal(),
            precision: args.precision,
            device,
        };
        let mut clip = Clip::load_dir(&resolved.dir, &options)
            .with_context(|| format!("cannot load model '{}'", resolved.id))?;
        clip.id = resolved.id.clone();
        return Ok(clip);
    }
    let config = ClipConfig::from_transformers_json("{}", Path::new("<ViT-B/32 defaults>"))?;
    let model = ClipModel::from_weights(
        config,
        &Weights::random(&device.device()?).with_precision(args.precision),
    )?;
    let tokenizer = ClipTokenizer::from_file(&tokenizer_path).with_context(|| {
        format!(
            "the benchmark needs the CLIP tokenizer: pass --tokenizer (tried {})",
            tokenizer_path.display()
        )
    })?;
    let preprocess = PreprocessConfig::open_clip(224, None)?;
    Ok(Clip::from_parts(
        "ViT-B/32 (random weights)".into(),
        model,
        tokenizer,
        preprocess,
    ))
}

fn bench_image_model(clip: &Clip, batch: usize, iterations: usize) -> anyhow::Result<Rate> {
    let s = clip.model.image_size();
    let device = clip.model.device();
    let pixels = Tensor::randn(0f32, 1.0, (batch, 3, s, s), device)?;
    // GPU work is asynchronous: only the synchronisation at the end makes
    // the clock mean anything there, so iterations are timed on the CPU alone.
    Rate::measure(
        iterations,
        batch,
        device.is_cpu(),
        || Ok(clip.model.encode_images(&pixels).map(drop)?),
        || Ok(device.synchronize()?),
    )
}

fn bench_text(
    clip: &Clip,
    tokens: &[Vec<u32>],
    padding: TextPadding,
    iterations: usize,
) -> anyhow::Result<Rate> {
    let device = clip.model.device();
    Rate::measure(
        iterations,
        tokens.len(),
        device.is_cpu(),
        || Ok(clip.model.encode_texts(tokens, padding).map(drop)?),
        || Ok(device.synchronize()?),
    )
}

/// End to end from image files: `--images` repeated to `--files`, at the last
/// batch size, through the encoder's decode-ahead pipeline; skipped with a line
/// when there are no image files.
fn measure_end_to_end(
    args: &Args,
    image: &dyn ImageEncoder,
    results: &mut Value,
) -> anyhow::Result<()> {
    let (files, _) = collect_image_paths(std::slice::from_ref(&args.images));
    if files.is_empty() {
        diag!(
            "no image files under {}: skipping the end-to-end measurement",
            args.images.display()
        );
        return Ok(());
    }
    let files: Vec<PathBuf> = files.iter().cycle().take(args.files()).cloned().collect();
    let options = EmbedOptions {
        batch_size: *args.batch_sizes.last().unwrap_or(&32),
        ..Default::default()
    };
    let start = Instant::now();
    let mut ok = 0usize;
    image.embed_image_files(&files, &options, |o| ok += usize::from(o.result.is_ok()))?;
    let ips = ok as f64 / start.elapsed().as_secs_f64();
    results["e2e"] = json!(ips);
    results["e2e_files"] = json!(files.len());
    diag!(
        "seer  end-to-end ({} files)    : {ips:8.2} images/s",
        files.len()
    );
    Ok(())
}

/// Records the same weights' f32 figure for `key` (`f32_rate`, timed right
/// after the reduced precision's own, described by `line`) as `f32_<key>`,
/// and the reduced precision's speed-up over it as `speedup_over_f32.<key>`:
/// it only means something against a measurement taken under the same
/// conditions.
fn record_f32_speed(args: &Args, results: &mut Value, key: &[&str], f32_rate: f64, line: &str) {
    let (first, rest) = key.split_first().expect("a key has a name");
    let own = rest.iter().fold(&results[*first], |node, k| &node[*k]);
    let speedup = own.as_f64().unwrap_or(0.0) / f32_rate;
    diag!(
        "seer  {line} in f32, {} is {speedup:.2}x",
        args.precision.name()
    );
    let f32_root = format!("f32_{first}");
    let node = rest
        .iter()
        .fold(&mut results[f32_root.as_str()], |node, k| &mut node[*k]);
    *node = json!(f32_rate);
    let node = rest
        .iter()
        .fold(&mut results["speedup_over_f32"][*first], |node, k| {
            &mut node[*k]
        });
    *node = json!(speedup);
}

/// [`record_f32_speed`] for the model-only image figure at batch `b`.
fn record_f32_image_speed(args: &Args, results: &mut Value, b: usize, f32_ips: f64) {
    let line = format!("image model-only   batch {b:>3}: {f32_ips:8.2} images/s");
    record_f32_speed(
        args,
        results,
        &["image_model", &b.to_string()],
        f32_ips,
        &line,
    );
}

/// The engines `scripts/bench_reference.py` runs besides PyTorch, with their
/// column names.
const ENGINES: &[(&str, &str)] = &[
    ("onnxruntime", "ONNX RT"),
    ("openvino", "OpenVINO"),
    ("pytorch", "PyTorch"),
];

/// Puts the CPU, seer's kernel and the load average before the run into
/// `results` and names them on stderr.
fn describe_cpu(precision: Precision, results: &mut Value) {
    let cpu = cpu::describe(precision);
    diag!("cpu: {}", cpu::summary(&cpu));
    results["cpu"] = cpu;
    results["load_average"]["start"] = json!(cpu::load_average());
}

/// Stores the reference's figures in `results` with seer's ratios to them:
/// `ratio` against PyTorch, `ratio_engines.<engine>.<precision>` against each
/// other engine's run (same shape as `ratio`); and the load average after it.
fn attach_reference(results: &mut Value, reference: Value, keys: &[&str]) {
    results["load_average"]["end"] = json!(cpu::load_average());
    results["ratio"] = ratios(results, &reference, keys);
    let mut engines = json!({});
    for (engine, _) in ENGINES {
        for (precision, figures) in engine_runs(&reference[*engine]) {
            engines[*engine][precision] = ratios(results, figures, keys);
        }
    }
    results["ratio_engines"] = engines;
    results["reference"] = reference;
}

/// An engine's per-precision results (objects with images/s), f32 first.
fn engine_runs(engine: &Value) -> Vec<(&str, &Value)> {
    let mut runs: Vec<(&str, &Value)> = engine
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.get("image_model").is_some())
                .map(|(k, v)| (k.as_str(), v))
                .collect()
        })
        .unwrap_or_default();
    runs.sort_by_key(|&(precision, _)| precision != "f32");
    runs
}

/// seer's figure over the reference's for each image batch size and each `keys`.
fn ratios(seer: &Value, reference: &Value, keys: &[&str]) -> Value {
    let ratio = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) if b > 0.0 => json!(a / b),
        _ => Value::Null,
    };
    let mut out = json!({ "image_model": {} });
    if let Some(map) = seer["image_model"].as_object() {
        for (b, v) in map {
            out["image_model"][b] = ratio(v, &reference["image_model"][b]);
        }
    }
    for &key in keys {
        out[key] = ratio(&seer[key], &reference[key]);
    }
    out
}

/// The results as a table: image batches, then `text_rows` (label, key), then
/// end to end; then, when the reference ran other engines, a second table of
/// their figures with seer's ratio to each, every one shown (also the losses).
fn print_table(r: &Value, text_rows: &[(&str, &str)]) -> anyhow::Result<()> {
    out!(
        "model: {}   threads: {}   device: {}   precision: {}",
        r["model"].as_str().unwrap_or("?"),
        r["threads"],
        r["device"].as_str().unwrap_or("cpu"),
        r["precision"].as_str().unwrap_or("f32")
    )?;
    out!("cpu: {}", cpu::summary(&r["cpu"]))?;
    if r["whole_batches"] == true {
        out!("batches: whole, each step shared by the threads (--whole-batches)")?;
    }
    if let (Some(start), Some(end)) = (
        r["load_average"]["start"].as_f64(),
        r["load_average"]["end"].as_f64(),
    ) {
        // Seer and each engine run one after another: other work on the
        // machine in between moves the ratios.
        out!("load average (1 min): {start:.2} before the run, {end:.2} after the reference")?;
    }
    out!(
        "{:<34} {:>9} {:>9} {:>7}",
        "measurement (per second)",
        "seer",
        "pytorch",
        "ratio"
    )?;
    let mut rows: Vec<(String, String)> = Vec::new();
    if let Some(map) = r["image_model"].as_object() {
        // JSON keys sort as text ("32" before "8"): list the batches by size.
        let mut batches: Vec<&String> = map.keys().collect();
        batches.sort_by_key(|b| b.parse::<usize>().unwrap_or(usize::MAX));
        for b in batches {
            rows.push((
                format!("images, model only, batch {b}"),
                format!("image_model/{b}"),
            ));
        }
    }
    rows.extend(
        text_rows
            .iter()
            .map(|(label, key)| (label.to_string(), key.to_string())),
    );
    rows.push((E2E_LABEL.to_string(), "e2e".to_string()));
    for (label, key) in &rows {
        out!(
            "{label:<34} {} {} {}",
            num(&lookup(r, key)),
            num(&lookup(&r["reference"], key)),
            ratio(&lookup(&r["ratio"], key))
        )?;
    }
    print_engines(r, &rows)?;
    print_round_ratios(r, &rows)?;
    Ok(())
}

/// With `--rounds`: each round's ratio of seer over the fastest engine that
/// ran in f32 (PyTorch, ONNX Runtime, OpenVINO), one line per row of `rows`.
fn print_round_ratios(r: &Value, rows: &[(String, String)]) -> anyhow::Result<()> {
    let Some(rounds) = r["rounds"].as_array() else {
        return Ok(());
    };
    if rounds.iter().all(|round| round["reference"].is_null()) {
        return Ok(());
    }
    out!("seer over the fastest f32 engine, each round:")?;
    for (label, key) in rows {
        let cells: String = rounds
            .iter()
            .map(|round| format!(" {}", ratio(&over_fastest_f32(round, key))))
            .collect();
        out!("{label:<34}{cells}")?;
    }
    Ok(())
}

/// seer's figure for `key` over the best f32 figure among the engines of
/// one round, or null where either is missing.
fn over_fastest_f32(round: &Value, key: &str) -> Value {
    let reference = &round["reference"];
    let fastest = [
        lookup(reference, key),
        lookup(&reference["onnxruntime"]["f32"], key),
        lookup(&reference["openvino"]["f32"], key),
    ]
    .iter()
    .filter_map(Value::as_f64)
    .reduce(f64::max);
    match (lookup(round, key).as_f64(), fastest) {
        (Some(seer), Some(best)) if best > 0.0 => json!(seer / best),
        _ => Value::Null,
    }
}

/// The end-to-end row's label (its key is `e2e`), last in the tables: every
/// engine decodes and resizes through PyTorch's DataLoader pipeline there.
const E2E_LABEL: &str = "images, end to end from files";

/// `root.a.b` for the key `a/b`.
fn lookup(root: &Value, key: &str) -> Value {
    key.split('/').fold(root.clone(), |v, k| v[k].clone())
}

fn num(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{x:9.2}"))
        .unwrap_or_else(|| format!("{:>9}", "-"))
}

fn ratio(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{x:6.2}x"))
        .unwrap_or_else(|| format!("{:>7}", "-"))
}

/// Each other engine's figure and seer's ratio to it, one column per engine
/// and precision; then the agreement of each with PyTorch f32, and a line for
/// each engine skipped, failed or run at another precision than asked.
fn print_engines(r: &Value, rows: &[(String, String)]) -> anyhow::Result<()> {
    let reference = &r["reference"];
    let mut columns = Vec::new();
    for (engine, label) in ENGINES {
        let figures = &reference[*engine];
        if let Some(why) = figures["skipped"].as_str().or(figures["error"].as_str()) {
            out!("{engine}: not measured, {why}")?;
        }
        for (precision, run) in figures.as_object().into_iter().flatten() {
            if let Some(why) = run["skipped"].as_str() {
                out!("{engine} {precision}: not measured, {why}")?;
            }
        }
        for (precision, run) in engine_runs(figures) {
            columns.push((
                format!("{label} {precision}"),
                run,
                &r["ratio_engines"][*engine][precision],
            ));
            if let Some(used) = run["inference_precision"].as_str() {
                if used != precision {
                    out!("{engine} {precision}: this CPU has no {precision} path, it ran {used}")?;
                }
            }
        }
    }
    if columns.is_empty() {
        return Ok(());
    }
    out!(
        "seer {} against other engines (their figure, then seer's over it):",
        r["precision"].as_str().unwrap_or("f32")
    )?;
    let header: String = columns.iter().map(|(h, ..)| format!(" {h:>17}")).collect();
    out!("{:<34}{header}", "measurement (per second)")?;
    for (label, key) in rows {
        let cells: String = columns
            .iter()
            .map(|(_, run, ratios)| {
                format!(
                    " {} {}",
                    num(&lookup(run, key)),
                    ratio(&lookup(ratios, key))
                )
            })
            .collect();
        out!("{label:<34}{cells}")?;
    }
    for tower in ["image", "text"] {
        let cells: Vec<String> = columns
            .iter()
            .map(|(_, run, _)| {
                run["cosine_to_torch_f32"][tower]["min"]
                    .as_f64()
                    .map_or(format!(" {:>17}", "-"), |c| format!(" {c:>17.5}"))
            })
            .collect();
        if cells.iter().any(|c| c.trim() != "-") {
            let label = format!("{tower}s: min cosine to PyTorch f32");
            out!("{label:<34}{}", cells.concat())?;
        }
    }
    Ok(())
}

/// Index a synthetic tree of `n` tiny distinct images, then re-index it unchanged:
/// the second run only walks, stats and compares, which is what users wait for
/// every time they refresh a large collection.
fn bench_reindex(model: LoadedModel, n: usize, json: bool) -> anyhow::Result<ExitCode> {
    let root = std::env::temp_dir().join(format!("seer-bench-tree-{n}"));
    let index = std::env::temp_dir().join(format!("seer-bench-index-{}", std::process::id()));
    let start = Instant::now();
    write_tree(&root, n)?;
    let generated = start.elapsed().as_secs_f64();
    let mut store = seer_index::Store::open(&index)?;
    let options = seer_index::IndexOptions {
        roots: vec![root.clone()],
        include_hidden: false,
        encoding: seer_index::Encoding::F16,
        embed: EmbedOptions {
            batch_size: 64,
            ..Default::default()
        },
        ann_threshold: seer_index::ann::ANN_THRESHOLD,
        videos: None,
    };
    let first = seer_index::index(&mut store, &model, &options, &mut |_| {})?;
    let second = seer_index::index(&mut store, &model, &options, &mut |_| {})?;
    anyhow::ensure!(
        second.skipped == n && second.added == 0,
        "the unchanged tree was not fully skipped: {second:?}"
    );
    let _ = std::fs::remove_dir_all(&index);
    let result = json!({
        "files": n,
        "generate_seconds": generated,
        "first_index_seconds": first.seconds,
        "first_index_files_per_second": n as f64 / first.seconds,
        "reindex_unchanged_seconds": second.seconds,
    });
    if json {
        out!("{result}")?;
    } else {
        out!(
            "tree of {n} tiny images at {} (made in {generated:.1}s)",
            root.display()
        )?;
        out!(
            "first index:          {:8.2} s ({:.0} files/s, model {})",
            first.seconds,
            n as f64 / first.seconds,
            model.id
        )?;
        out!("re-index, unchanged:  {:8.2} s", second.seconds)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `n` distinct 8x8 PNGs, 500 per folder; kept between runs (same n, same tree).
fn write_tree(root: &Path, n: usize) -> anyhow::Result<()> {
    let done = root.join(".complete");
    if done.is_file() {
        return Ok(());
    }
    for i in 0..n {
        let dir = root.join(format!("d{:04}", i / 500));
        if i % 500 == 0 {
            std::fs::create_dir_all(&dir)?;
        }
        let img = seer_image::image::RgbImage::from_fn(8, 8, |x, y| {
            let v = (i as u32).wrapping_mul(2654435761).rotate_left(x * 8 + y);
            seer_image::image::Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
        });
        img.save(dir.join(format!("img{i:07}.png")))?;
    }
    std::fs::write(done, b"")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_args() -> Args {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            bench: Args,
        }
        <Cli as clap::Parser>::try_parse_from(["bench"])
            .unwrap()
            .bench
    }

    /// A reference killed mid-run leaves no ONNX exports: the folder it was
    /// given is removed when the run fails.
    #[test]
    fn a_killed_reference_leaves_no_scratch_folder() {
        let dir = tempfile::tempdir().unwrap();
        let recorded = dir.path().join("scratch-path");
        // Stands in for the Python: writes an export into the folder after
        // `--scratch`, records where, and is killed as the OOM killer would.
        let python = dir.path().join("python");
        let script = format!(
            "#!/bin/sh\nwhile [ $# -gt 0 ] && [ \"$1\" != --scratch ]; do shift; done\n\
             printf %s \"$2\" > {recorded}\nhead -c 1000 /dev/zero > \"$2/image.onnx\"\n\
             kill -9 $$\n",
            recorded = recorded.display()
        );
        seer_testkit::write_script(&python, &script);
        let error = Reference::start(&python, &default_args(), &[])
            .err()
            .expect("the reference died");
        assert!(
            error.to_string().contains("the reference benchmark failed"),
            "{error:#}"
        );
        let scratch = std::fs::read_to_string(&recorded).expect("the stand-in ran");
        assert!(scratch.contains("seer-bench-onnx-"), "{scratch}");
        assert!(!Path::new(&scratch).exists(), "{scratch} is left behind");
    }

    /// The reference times a key's figures when seer has taken its own, the
    /// rest when the round ends, and each round starts from set-up's results.
    #[test]
    fn the_reference_follows_each_of_seers_measurements() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests");
        // Stands in for the Python: three figures, each answered with its
        // index + 10 (the second fails), every request logged.
        let python = dir.path().join("python");
        let ready = json!({
            "ready": {"torch": "2", "image_model": {}, "openvino": {"version": "1", "f32": {"cosine": 1}}},
            "measurements": [
                {"path": ["image_model", "8"], "key": ["image_model", "8"]},
                {"path": ["openvino", "f32", "image_model", "8"], "key": ["image_model", "8"]},
                {"path": ["openvino", "f32", "e2e"], "key": ["e2e"]},
            ],
        });
        let script = format!(
            "#!/bin/sh\necho '{ready}'\nwhile read line; do echo \"$line\" >> {log}\n\
             case \"$line\" in *1*) echo '{{\"error\": \"boom\"}}';;\n\
             *0*) echo '{{\"rate\": 10}}';; *) echo '{{\"rate\": 12.5}}';; esac; done\n",
            log = log.display()
        );
        seer_testkit::write_script(&python, &script);
        let mut reference = Reference::start(&python, &default_args(), &[]).unwrap();
        let requests = || std::fs::read_to_string(&log).unwrap_or_default();
        reference.follow(&["text"]).unwrap();
        assert_eq!(requests(), "");
        reference.follow(&["image_model", "8"]).unwrap();
        assert_eq!(requests(), "{\"measure\":0}\n{\"measure\":1}\n");
        // Taken once a round.
        reference.follow(&["image_model", "8"]).unwrap();
        let round = reference.finish_round().unwrap();
        assert_eq!(requests().lines().count(), 3);
        assert_eq!(round["image_model"]["8"], json!(10));
        assert_eq!(round["openvino"]["f32"]["e2e"], json!(12.5));
        assert_eq!(round["openvino"]["f32"]["cosine"], json!(1));
        assert!(round["openvino"]["f32"]["image_model"].is_null(), "{round}");
        assert_eq!(round["torch"], json!("2"));
        let second = reference.finish_round().unwrap();
        assert_eq!(requests().lines().count(), 6);
        assert_eq!(second, round);
    }

    #[test]
    fn rounds_combine_into_medians_of_each_figure() {
        let rounds = [
            json!({"threads": 2, "model": "m", "image_model": {"8": 10.0, "32": 1.0}, "ratio": {"e2e": 0.9}, "only_first": 5.0}),
            json!({"threads": 2, "model": "m", "image_model": {"8": 30.0, "32": 2.0}, "ratio": {"e2e": 1.3}}),
            json!({"threads": 2, "model": "m", "image_model": {"8": 20.0, "32": 4.0}, "ratio": {"e2e": 1.1}}),
        ];
        let combined = median_of(&rounds.iter().collect::<Vec<_>>());
        assert_eq!(combined["image_model"]["8"], json!(20.0));
        assert_eq!(combined["image_model"]["32"], json!(2.0));
        assert_eq!(combined["ratio"]["e2e"], json!(1.1));
        // Unchanged settings keep their type (an integer stays one).
        assert_eq!(combined["threads"], json!(2));
        assert_eq!(combined["model"], json!("m"));
        // A figure missing from a round is not passed off as a median.
        assert_eq!(combined["only_first"], json!(5.0));
        let two = median_of(&[&json!({"x": 1.0}), &json!({"x": 4.0})]);
        assert_eq!(two["x"], json!(2.5));
    }

    #[test]
    fn the_fastest_f32_engine_sets_the_round_ratio() {
        let round = json!({
            "image_model": {"8": 30.0},
            "text_longest": 100.0,
            "reference": {
                "image_model": {"8": 20.0},
                "text_longest": 50.0,
                "onnxruntime": {"f32": {"image_model": {"8": 25.0}}, "int8": {"image_model": {"8": 60.0}}},
                "openvino": {"f32": {"image_model": {"8": 24.0}, "text_longest": 200.0}},
            },
        });
        assert_eq!(
            over_fastest_f32(&round, "image_model/8"),
            json!(30.0 / 25.0)
        );
        assert_eq!(over_fastest_f32(&round, "text_longest"), json!(0.5));
        assert_eq!(over_fastest_f32(&round, "e2e"), Value::Null);
        // End to end, the engines that timed it count; one that did not is skipped.
        let round = json!({
            "e2e": 40.0,
            "reference": {
                "e2e": 20.0,
                "onnxruntime": {"f32": {"image_model": {"8": 25.0}, "e2e": 32.0}, "int8": {"e2e": 90.0}},
                "openvino": {"f32": {"image_model": {"8": 24.0}}},
            },
        });
        assert_eq!(over_fastest_f32(&round, "e2e"), json!(40.0 / 32.0));
    }
}
