//! `seer bench --model` for a family other than CLIP (DINOv2, SigLIP; BLIP
//! captioning models go on to [`super::caption`]): the same
//! measurements through the task traits, so any registered family is covered.
//! Images, model only: the family's embedding of random pixels at each batch
//! size. Texts (models with a text tower): the prompts tokenised and embedded by
//! the family's own rule, tokenisation included (SigLIP pads to 64). End to end:
//! image files through the checkpoint's preprocessing. With `--reference` the
//! same folder runs in transformers (and the other engines), each measurement
//! right after seer's.

use std::process::ExitCode;

use anyhow::Context;
use seer_engine::{ImageEncoder, LoadOptions, LoadedModel};
use seer_hub::ResolvedModel;
use seer_models::Precision;
use serde_json::{json, Value};

use super::timing::Rate;
use super::{
    attach_reference, follow, measure_end_to_end, print_table, record_f32_image_speed, Args,
    Reference, PROMPTS,
};

pub(super) fn run(args: &Args, resolved: &ResolvedModel) -> anyhow::Result<ExitCode> {
    let model = load(args, resolved, args.precision)?;
    if let Some(n) = args.reindex_files {
        return super::bench_reindex(model, n, args.json);
    }
    if let Some(captioner) = model.captioner.clone() {
        super::refuse_rounds(args, "a captioning model")?;
        return super::caption::run(args, resolved, &model, captioner.as_ref());
    }
    let image = model.image()?;
    // The f32 model a reduced precision is compared with, loaded once for
    // every round.
    let exact = match args.precision {
        Precision::F32 => None,
        _ => Some(load(args, resolved, Precision::F32)?),
    };
    let exact = exact.as_ref().map(LoadedModel::image).transpose()?;
    let mut reference = match &args.reference {
        Some(python) => {
            let extra = ["--model".to_string(), resolved.dir.display().to_string()];
            Some(Reference::start(python, args, &extra)?)
        }
        None => None,
    };
    let results = super::measure_rounds(args, || {
        measure(args, &model, image, exact, reference.as_mut())
    })?;
    if args.json {
        out!("{results}")?;
    } else {
        let text_rows: &[(&str, &str)] = if model.text.is_some() {
            &[("texts, the family's padding", "text")]
        } else {
            &[]
        };
        print_table(&results, text_rows)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One round: seer's figures, each followed by the reference's (with
/// `--reference`), and the ratios between them; for a reduced precision, each
/// image figure is followed by the same weights' in f32 (`exact`) too, and
/// their agreement is measured.
fn measure(
    args: &Args,
    model: &LoadedModel,
    image: &dyn ImageEncoder,
    exact: Option<&dyn ImageEncoder>,
    mut reference: Option<&mut Reference>,
) -> anyhow::Result<Value> {
    let mut results = json!({
        "model": model.id,
        "family": model.family,
        "threads": args.threads,
        "device": args.device,
        "precision": args.precision.name(),
        "image_model": {},
        "whole_batches": args.whole_batches,
    });
    super::describe_cpu(args.precision, &mut results);
    for &b in &args.batch_sizes {
        anyhow::ensure!(b > 0, "batch sizes must be positive");
        let rate = bench_image_model(image, b, args.iterations)?;
        let ips = rate.mean;
        results["image_model"][b.to_string()] = json!(ips);
        rate.record_range(&mut results, &format!("image_model/{b}"));
        diag!(
            "seer  image model-only   batch {b:>3}: {ips:8.2} images/s{}",
            rate.note("images/s")
        );
        if let Some(exact) = exact {
            let f32_ips = bench_image_model(exact, b, args.iterations)?.mean;
            record_f32_image_speed(args, &mut results, b, f32_ips);
        }
        follow(&mut reference, &["image_model", &b.to_string()])?;
    }
    if let Ok(text) = model.text() {
        let prompts: Vec<String> = PROMPTS.iter().map(|p| p.to_string()).collect();
        let rate = Rate::measure(
            args.iterations,
            prompts.len(),
            true,
            || Ok(text.embed_text_batch(&prompts, false).map(drop)?),
            || Ok(()),
        )?;
        let tps = rate.mean;
        results["text"] = json!(tps);
        rate.record_range(&mut results, "text");
        diag!(
            "seer  text               batch {:>3}: {tps:8.2} texts/s{}",
            prompts.len(),
            rate.note("texts/s")
        );
        follow(&mut reference, &["text"])?;
    }
    measure_end_to_end(args, image, &mut results)?;
    follow(&mut reference, &["e2e"])?;
    if let Some(exact) = exact {
        agreement_with_f32(args, image, exact, &mut results)?;
    }
    if let Some(reference) = reference {
        attach_reference(&mut results, reference.finish_round()?, &["text", "e2e"]);
    }
    Ok(results)
}

fn load(
    args: &Args,
    resolved: &ResolvedModel,
    precision: Precision,
) -> anyhow::Result<LoadedModel> {
    let options = LoadOptions {
        tokenizer: args.tokenizer.clone(),
        progress: false,
        precision,
        device: seer_engine::DeviceChoice::parse(&args.device)?,
    };
    let mut model = seer_engine::registry::load_dir(&resolved.dir, &options)
        .with_context(|| format!("cannot load model '{}'", resolved.id))?;
    model.id = resolved.id.clone();
    Ok(model)
}

/// Random pixels in the model's input layout, the same on every run.
fn random_pixels(image: &dyn ImageEncoder, batch: usize) -> Vec<f32> {
    let mut rng = seer_util::rng::Rng::for_stream(&[0]);
    (0..batch * image.pixels_len())
        .map(|_| rng.normal() as f32)
        .collect()
}

fn bench_image_model(
    image: &dyn ImageEncoder,
    batch: usize,
    iterations: usize,
) -> anyhow::Result<Rate> {
    let pixels = random_pixels(image, batch);
    // `embed_pixels` returns host vectors, so each call has finished its
    // work on any device: every iteration can be timed.
    Rate::measure(
        iterations,
        batch,
        true,
        || Ok(image.embed_pixels(pixels.clone(), batch, false).map(drop)?),
        || Ok(()),
    )
}

/// How closely the reduced precision's image embeddings agree with the same
/// weights' in f32 (`exact`): cosine, on random pixels.
fn agreement_with_f32(
    args: &Args,
    image: &dyn ImageEncoder,
    exact: &dyn ImageEncoder,
    results: &mut Value,
) -> anyhow::Result<()> {
    let n = 8;
    let pixels = random_pixels(image, n);
    let a = image.embed_pixels(pixels.clone(), n, true)?;
    let b = exact.embed_pixels(pixels, n, true)?;
    let cosines: Vec<f32> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| x.iter().zip(y).map(|(p, q)| p * q).sum())
        .collect();
    let min = cosines.iter().copied().fold(f32::INFINITY, f32::min);
    diag!(
        "seer  {} vs f32 cosine: images min {min:.5}",
        args.precision.name()
    );
    results["agreement_with_f32"] = json!({ "image_cosine_min": min, "images": n });
    Ok(())
}
