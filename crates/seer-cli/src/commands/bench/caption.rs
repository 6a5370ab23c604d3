//! `seer bench --model` for a captioning model (BLIP's
//! `BlipForConditionalGeneration`): images captioned per second and generated
//! tokens per second, at each `--caption-batch-sizes` (1 and 8) and each
//! `--beams` (greedy and beam 3), model only: the images are decoded and
//! preprocessed once, before any clock starts, and every configuration captions
//! the same `--files` of them (16 by default; random pixels when `--images` has
//! no image files). "Generated" counts the tokens after the prompt (`[DEC]`),
//! the `[SEP]` that ends a caption included.
//!
//! Each batch size gets one untimed warm-up call (its first batch, greedy, 2 new
//! tokens), then each beam width one timed pass over the images. With
//! `--reference PYTHON`, `scripts/bench_caption_reference.py` runs transformers'
//! `generate` on the very same pixels (written to a temporary file), batches and
//! settings, with as many threads, and seer's figures over PyTorch's are
//! printed with how many images got exactly the same token sequence.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use seer_engine::{collect_image_paths, Captioner, GenerateOptions, Generated, LoadedModel};
use seer_hub::ResolvedModel;
use serde_json::{json, Value};

use super::{cpu, describe_cpu, Args};

/// Images captioned per configuration when `--files` is not given.
const DEFAULT_IMAGES: usize = 16;
/// Mismatching images listed in full per configuration.
const MISMATCHES_SHOWN: usize = 3;

/// The images every configuration captions, preprocessed.
struct Images {
    /// `n` images back to back, `pixels_len` floats each.
    pixels: Vec<f32>,
    n: usize,
    pixels_len: usize,
    /// Where they came from (cycled to `n`), empty for random pixels.
    files: Vec<PathBuf>,
}

impl Images {
    fn batch(&self, first: usize, count: usize) -> Vec<f32> {
        self.pixels[first * self.pixels_len..(first + count) * self.pixels_len].to_vec()
    }
}

/// One configuration's results, as seer measured it.
struct Run {
    beams: usize,
    batch: usize,
    seconds: f64,
    /// Each batch's own time: the spread shows how steady the machine was.
    batch_seconds: Vec<f64>,
    /// Cores other processes kept busy meanwhile ([`cpu::other_cores`]).
    other_cores: Option<f64>,
    outputs: Vec<Generated>,
}

/// A configuration's name in the results: `greedy` or `beamK`.
fn config_name(beams: usize) -> String {
    match beams {
        1 => "greedy".into(),
        k => format!("beam{k}"),
    }
}

/// Tokens after the prompt, over all `sequences` (each starts with `prompt_len`).
fn generated_tokens<'a>(
    sequences: impl IntoIterator<Item = &'a [u32]>,
    prompt_len: usize,
) -> usize {
    sequences
        .into_iter()
        .map(|s| s.len().saturating_sub(prompt_len))
        .sum()
}

pub(super) fn run(
    args: &Args,
    resolved: &ResolvedModel,
    model: &LoadedModel,
    captioner: &dyn Captioner,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !args.caption_batch_sizes.is_empty() && args.caption_batch_sizes.iter().all(|&b| b > 0),
        "--caption-batch-sizes must be positive"
    );
    anyhow::ensure!(
        !args.beams.is_empty() && args.beams.iter().all(|&k| k > 0),
        "--beams must be at least 1"
    );
    let n = args.files.unwrap_or(DEFAULT_IMAGES);
    anyhow::ensure!(n > 0, "--files must be positive");
    let images = load_images(args, captioner, n)?;
    // No prompt: every sequence starts with `[DEC]` alone.
    let prompt_len = 1;
    let mut results = json!({
        "model": model.id,
        "family": model.family,
        "threads": args.threads,
        "device": args.device,
        "precision": args.precision.name(),
    });
    describe_cpu(args.precision, &mut results);
    let mut caption = json!({
        "images": n,
        "source": if images.files.is_empty() { "random pixels" } else { "image files" },
        "distinct_files": distinct(&images.files),
        "prompt": Value::Null,
        "max_new_tokens": args.max_new_tokens,
        "prompt_tokens": prompt_len,
    });
    diag!(
        "seer  captioning {n} images ({}), model only, {} new tokens at most",
        caption["source"].as_str().unwrap_or("?"),
        args.max_new_tokens
            .map_or("generate's default of 20".to_string(), |m| m.to_string())
    );
    let mut runs = Vec::new();
    for &b in &args.caption_batch_sizes {
        let warm_up = GenerateOptions {
            beams: Some(1),
            max_new_tokens: Some(2),
        };
        let first = b.min(n);
        captioner.caption(images.batch(0, first), first, None, &warm_up)?;
        for &k in &args.beams {
            let run = time_config(captioner, &images, b, k, args.max_new_tokens)?;
            let tokens =
                generated_tokens(run.outputs.iter().map(|g| g.tokens.as_slice()), prompt_len);
            let (ips, tps) = (n as f64 / run.seconds, tokens as f64 / run.seconds);
            caption[config_name(k)][b.to_string()] = json!({
                "images_per_second": ips,
                "tokens_per_second": tps,
                "generated_tokens": tokens,
                "seconds": run.seconds,
                "batch_seconds": run.batch_seconds,
                "other_cores": run.other_cores,
            });
            diag!(
                "seer  caption {:<7} batch {b:>2}: {ips:8.3} images/s {tps:8.2} tokens/s ({tokens} tokens, {:.1} s{})",
                config_name(k),
                run.seconds,
                busy_note(run.other_cores)
            );
            runs.push(run);
        }
    }
    caption["batch_invariant"] = batch_invariance(&runs);
    results["caption"] = caption;
    if let Some(python) = &args.reference {
        let reference = run_reference(python, args, &resolved.dir, &images)?;
        attach_reference(&mut results, reference, &runs, prompt_len);
    }
    if args.json {
        out!("{results}")?;
    } else {
        print_table(&results, args)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `, other processes used 1.2 cores` when they used a tenth of one or more.
fn busy_note(other_cores: Option<f64>) -> String {
    match other_cores {
        Some(c) if c >= 0.1 => format!(", other processes used {c:.1} cores"),
        _ => String::new(),
    }
}

/// `n` images from `--images` (cycled), decoded and preprocessed by the
/// captioner; seeded random pixels when there are no image files.
fn load_images(args: &Args, captioner: &dyn Captioner, n: usize) -> anyhow::Result<Images> {
    let pixels_len = captioner.pixels_len();
    let (found, _) = collect_image_paths(std::slice::from_ref(&args.images));
    if found.is_empty() {
        diag!(
            "no image files under {}: captioning random pixels",
            args.images.display()
        );
        let mut rng = seer_util::rng::Rng::for_stream(&[0]);
        let pixels = (0..n * pixels_len).map(|_| rng.normal() as f32).collect();
        return Ok(Images {
            pixels,
            n,
            pixels_len,
            files: Vec::new(),
        });
    }
    let files: Vec<PathBuf> = found.iter().cycle().take(n).cloned().collect();
    let mut pixels = Vec::with_capacity(n * pixels_len);
    for f in &files {
        let decoded = seer_image::decode_file_full(f, &Default::default())
            .with_context(|| format!("cannot decode {}", f.display()))?;
        pixels.extend(captioner.preprocess(&decoded));
    }
    Ok(Images {
        pixels,
        n,
        pixels_len,
        files,
    })
}

fn distinct(files: &[PathBuf]) -> usize {
    let mut seen: Vec<&PathBuf> = files.iter().collect();
    seen.sort();
    seen.dedup();
    seen.len()
}

/// One timed pass over the images at batch `b` with `beams`.
fn time_config(
    captioner: &dyn Captioner,
    images: &Images,
    b: usize,
    beams: usize,
    max_new_tokens: Option<usize>,
) -> anyhow::Result<Run> {
    let options = GenerateOptions {
        beams: Some(beams),
        max_new_tokens,
    };
    // Batches copied out before the clock starts: `caption` takes them by value.
    let batches: Vec<(Vec<f32>, usize)> = (0..images.n)
        .step_by(b)
        .map(|first| {
            let count = b.min(images.n - first);
            (images.batch(first, count), count)
        })
        .collect();
    let mut outputs = Vec::with_capacity(images.n);
    let mut batch_seconds = Vec::with_capacity(batches.len());
    let cpu_start = cpu::cpu_times();
    let start = Instant::now();
    for (pixels, count) in batches {
        let t = Instant::now();
        outputs.extend(captioner.caption(pixels, count, None, &options)?);
        batch_seconds.push(t.elapsed().as_secs_f64());
    }
    let seconds = start.elapsed().as_secs_f64();
    let other_cores = cpu::other_cores(cpu_start, seconds);
    anyhow::ensure!(
        outputs.len() == images.n,
        "{} captions for {} images",
        outputs.len(),
        images.n
    );
    Ok(Run {
        beams,
        batch: b,
        seconds,
        batch_seconds,
        other_cores,
        outputs,
    })
}

/// Per beam width, whether every batch size gave the same tokens as the first.
fn batch_invariance(runs: &[Run]) -> Value {
    let mut out = json!({});
    for first in runs {
        let same: Vec<&Run> = runs.iter().filter(|r| r.beams == first.beams).collect();
        if same.len() < 2 || !std::ptr::eq(same[0], first) {
            continue;
        }
        let equal = same.iter().all(|r| {
            r.outputs
                .iter()
                .zip(&first.outputs)
                .all(|(a, b)| a.tokens == b.tokens)
        });
        out[config_name(first.beams)] = json!(equal);
    }
    out
}

/// Runs `scripts/bench_caption_reference.py` on the same pixels; returns the
/// JSON object it prints last.
fn run_reference(
    python: &Path,
    args: &Args,
    model_dir: &Path,
    images: &Images,
) -> anyhow::Result<Value> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_caption_reference.py");
    let stem = format!("seer-bench-caption-{}", std::process::id());
    let pixels_path = std::env::temp_dir().join(format!("{stem}.f32"));
    let files_path = std::env::temp_dir().join(format!("{stem}.json"));
    let bytes: Vec<u8> = images.pixels.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(&pixels_path, bytes)
        .with_context(|| format!("cannot write {}", pixels_path.display()))?;
    let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let mut command = std::process::Command::new(python);
    command
        .arg(&script)
        .arg("--model")
        .arg(model_dir)
        .arg("--pixels")
        .arg(&pixels_path)
        .args(["--count", &images.n.to_string()])
        .args(["--batch-sizes", &list(&args.caption_batch_sizes)])
        .args(["--beams", &list(&args.beams)])
        .args(["--threads", &args.threads.to_string()])
        .args(["--device", &args.device]);
    if let Some(m) = args.max_new_tokens {
        command.args(["--max-new-tokens", &m.to_string()]);
    }
    if !images.files.is_empty() {
        let names: Vec<String> = images
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        std::fs::write(&files_path, serde_json::to_string(&names)?)?;
        command.arg("--files-list").arg(&files_path);
    }
    diag!(
        "running the reference: transformers' generate ({})...",
        python.display()
    );
    // PyTorch alone: its caps need no flag for the script.
    super::cpu::cap_reference(&mut command);
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", python.display()));
    let _ = std::fs::remove_file(&pixels_path);
    let _ = std::fs::remove_file(&files_path);
    let output = output?;
    anyhow::ensure!(
        output.status.success(),
        "the reference benchmark failed ({})",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("unexpected reference output: {last}"))
}

/// Ratios seer / PyTorch per configuration (`ratio.caption.<config>.<batch>`),
/// the token agreement per configuration (`caption_agreement`), and the
/// reference's figures (`reference`, its token lists dropped).
fn attach_reference(results: &mut Value, mut reference: Value, runs: &[Run], prompt_len: usize) {
    results["load_average"]["end"] = json!(cpu::load_average());
    let mut ratio = json!({});
    let mut agreement = json!({});
    for run in runs {
        let (name, b) = (config_name(run.beams), run.batch.to_string());
        let theirs = &mut reference["caption"][&name][&b];
        let ours = &results["caption"][&name][&b];
        for key in ["images_per_second", "tokens_per_second"] {
            ratio[&name][&b][key] = match (ours[key].as_f64(), theirs[key].as_f64()) {
                (Some(a), Some(t)) if t > 0.0 => json!(a / t),
                _ => Value::Null,
            };
        }
        let torch: Vec<Vec<u32>> =
            serde_json::from_value(theirs["tokens"].take()).unwrap_or_default();
        agreement[&name][&b] = compare_tokens(&run.outputs, &torch, prompt_len);
        if let Some(map) = theirs.as_object_mut() {
            map.remove("tokens");
        }
    }
    results["ratio"] = json!({ "caption": ratio });
    results["caption_agreement"] = agreement;
    results["reference"] = reference;
}

/// How many images got exactly PyTorch's sequence, and the first few that did not.
fn compare_tokens(seer: &[Generated], torch: &[Vec<u32>], prompt_len: usize) -> Value {
    let mut matched = 0;
    let mut mismatches = Vec::new();
    for (i, (ours, theirs)) in seer.iter().zip(torch).enumerate() {
        if &ours.tokens == theirs {
            matched += 1;
            continue;
        }
        let first = ours
            .tokens
            .iter()
            .zip(theirs)
            .position(|(a, b)| a != b)
            .unwrap_or(ours.tokens.len().min(theirs.len()));
        if mismatches.len() < MISMATCHES_SHOWN {
            mismatches.push(json!({
                "image": i,
                // Index among the generated tokens (0: the first after the prompt).
                "first_difference": first.saturating_sub(prompt_len),
                "seer": ours.tokens,
                "torch": theirs,
            }));
        }
    }
    json!({
        "matched": matched,
        "images": seer.len(),
        "compared": seer.len().min(torch.len()),
        "mismatches": mismatches,
    })
}

fn print_table(r: &Value, args: &Args) -> anyhow::Result<()> {
    out!(
        "model: {}   threads: {}   device: {}   precision: {}",
        r["model"].as_str().unwrap_or("?"),
        r["threads"],
        r["device"].as_str().unwrap_or("cpu"),
        r["precision"].as_str().unwrap_or("f32")
    )?;
    out!("cpu: {}", cpu::summary(&r["cpu"]))?;
    if let (Some(start), Some(end)) = (
        r["load_average"]["start"].as_f64(),
        r["load_average"]["end"].as_f64(),
    ) {
        out!("load average (1 min): {start:.2} before the run, {end:.2} after the reference")?;
    }
    let c = &r["caption"];
    out!(
        "captioning {} images ({}), model only, {} new tokens at most",
        c["images"],
        c["source"].as_str().unwrap_or("?"),
        args.max_new_tokens
            .map_or("20 (generate's default)".to_string(), |m| m.to_string())
    )?;
    out!(
        "{:<18} {:>10} {:>10} {:>7}  {:>10} {:>10} {:>7}  {:>10}  {:>11}",
        "configuration",
        "seer im/s",
        "torch im/s",
        "ratio",
        "seer tok/s",
        "torch tok/s",
        "ratio",
        "same ids",
        "other cores"
    )?;
    for &b in &args.caption_batch_sizes {
        for &k in &args.beams {
            let (name, batch) = (config_name(k), b.to_string());
            let cell = |root: &Value, key: &str| root[&name][&batch][key].as_f64();
            let num = |x: Option<f64>| x.map_or(format!("{:>10}", "-"), |x| format!("{x:10.3}"));
            let ratio = |x: Option<f64>| x.map_or(format!("{:>7}", "-"), |x| format!("{x:6.2}x"));
            let agreement = &r["caption_agreement"][&name][&batch];
            let same = match (agreement["matched"].as_u64(), agreement["images"].as_u64()) {
                (Some(m), Some(n)) => format!("{m}/{n}"),
                _ => "-".into(),
            };
            // Cores other processes used while seer / PyTorch ran.
            let busy =
                |root: &Value| cell(root, "other_cores").map_or("-".into(), |c| format!("{c:.1}"));
            let others = format!("{}/{}", busy(c), busy(&r["reference"]["caption"]));
            out!(
                "{:<18} {} {} {}  {} {} {}  {same:>10}  {others:>11}",
                format!("{name}, batch {b}"),
                num(cell(c, "images_per_second")),
                num(cell(&r["reference"]["caption"], "images_per_second")),
                ratio(cell(&r["ratio"]["caption"], "images_per_second")),
                num(cell(c, "tokens_per_second")),
                num(cell(&r["reference"]["caption"], "tokens_per_second")),
                ratio(cell(&r["ratio"]["caption"], "tokens_per_second")),
            )?;
        }
    }
    if let Some(d) = r["reference"]["pixels_max_abs_diff_to_processor"].as_f64() {
        out!("seer's pixels vs BlipImageProcessorPil: max abs diff {d:.2e}")?;
    }
    if let Some(map) = c["batch_invariant"].as_object() {
        for (name, equal) in map {
            if equal == &json!(false) {
                out!("seer {name}: the batch sizes gave different tokens for some images")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(tokens: &[u32]) -> Generated {
        Generated {
            text: String::new(),
            tokens: tokens.to_vec(),
        }
    }

    #[test]
    fn generated_tokens_leave_out_the_prompt() {
        let seqs: [&[u32]; 3] = [&[9, 1, 2, 3], &[9], &[9, 4]];
        assert_eq!(generated_tokens(seqs, 1), 4);
    }

    #[test]
    fn token_agreement_counts_exact_matches_and_locates_the_first_difference() {
        let seer = [
            generated(&[9, 1, 2]),
            generated(&[9, 5, 6, 7]),
            generated(&[9, 3]),
        ];
        let torch = vec![vec![9, 1, 2], vec![9, 5, 8, 7], vec![9, 3, 4]];
        let a = compare_tokens(&seer, &torch, 1);
        assert_eq!(a["matched"], 1);
        assert_eq!(a["images"], 3);
        let m = a["mismatches"].as_array().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0]["image"].as_u64(), m[0]["first_difference"].as_u64()),
            (Some(1), Some(1))
        );
        // A prefix: the first difference is where the shorter one ends.
        assert_eq!(
            (m[1]["image"].as_u64(), m[1]["first_difference"].as_u64()),
            (Some(2), Some(1))
        );
    }

    #[test]
    fn config_names() {
        assert_eq!(config_name(1), "greedy");
        assert_eq!(config_name(3), "beam3");
    }
}
