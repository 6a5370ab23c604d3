//! Runs a list of image inputs through a model in batches, decoding the next
//! batch while the model runs the current one ([`in_batches`]): embeddings,
//! and the tasks of the captioning and detection families.
//!
//! The batches are the engine's (`ImageEncoder::embed_image_files`): inputs
//! cut into `batch_size` runs in order, each run's readable images given to
//! [`ImageEncoder::embed_pixels`] together, so rows equal `seer embed`'s bit
//! for bit. The engine's own pipeline is not used because its decoding runs on
//! a thread it spawns, whose parallel work lands on rayon's global pool, which
//! this crate must never start (see [`crate::pool`]). Here the overlap comes
//! from `rayon::join` on the current pool instead.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicBool;

use rayon::prelude::*;
use seer_engine::{EmbedOptions, ImageEncoder, ImageFeatures};

use crate::input::{ImageInput, InputError};
use crate::pool::cancelled;

/// One input's result, or why it has none.
pub type Outcome<T> = Result<T, InputError>;

/// One input's embedding, or why it has none.
pub type Row = Outcome<Vec<f32>>;

/// Runs `inputs` in model batches of `batch_size`, in order, one [`Outcome`]
/// each: `prepare` reads one input (on all threads, the next batch while the
/// model runs this one; a panic in it, a decoder bug, fails that input alone),
/// and `run` gets one batch's prepared inputs with their places in `inputs`
/// and gives one outcome each. With `stop_on_error`, stops after the first
/// batch with a failed input (the outcomes then end with that batch). An
/// `Err` is the model's failure, not an input's, or the call being
/// interrupted (`cancel`, checked before each batch).
///
/// Run it on a pool from [`crate::pool`]: its parallel work uses the current
/// rayon pool.
pub fn in_batches<P: Send, T: Send>(
    inputs: &[ImageInput],
    batch_size: usize,
    stop_on_error: bool,
    cancel: &AtomicBool,
    prepare: impl Fn(&ImageInput) -> Outcome<P> + Sync,
    run: impl Fn(Vec<(usize, P)>) -> seer_engine::Result<Vec<Outcome<T>>> + Sync,
) -> seer_engine::Result<Vec<Outcome<T>>> {
    let batch_size = batch_size.max(1);
    let prepare_batch = |chunk: &[ImageInput]| -> Vec<Outcome<P>> {
        chunk
            .par_iter()
            .map(|input| guarded(input, || prepare(input)))
            .collect()
    };
    let mut chunks = inputs.chunks(batch_size);
    let mut outcomes = Vec::with_capacity(inputs.len());
    let mut next = chunks.next().map(&prepare_batch);
    while let Some(batch) = next.take() {
        if cancelled(cancel) {
            return Err(interrupted());
        }
        let first = outcomes.len();
        let following = chunks.next();
        let (prepared, ran) = rayon::join(
            || following.map(&prepare_batch),
            || run_batch(batch, first, &run),
        );
        let ran = ran?;
        let failed = ran.iter().any(Result::is_err);
        outcomes.extend(ran);
        if failed && stop_on_error {
            break;
        }
        next = prepared;
    }
    Ok(outcomes)
}

/// One batch through `run`: the prepared inputs (numbered from `first`) go
/// in, and each input's outcome comes back in its place.
fn run_batch<P, T>(
    batch: Vec<Outcome<P>>,
    first: usize,
    run: &impl Fn(Vec<(usize, P)>) -> seer_engine::Result<Vec<Outcome<T>>>,
) -> seer_engine::Result<Vec<Outcome<T>>> {
    let mut ready = Vec::with_capacity(batch.len());
    let slots: Vec<Result<(), InputError>> = batch
        .into_iter()
        .enumerate()
        .map(|(i, prepared)| prepared.map(|p| ready.push((first + i, p))))
        .collect();

    let ok = ready.len();
    let results = match ok {
        0 => Vec::new(),
        _ => run(ready)?,
    };
    if results.len() != ok {
        return Err(seer_engine::EngineError::Invalid(format!(
            "the model gave {} results for {ok} images",
            results.len()
        )));
    }
    // One result per prepared input, in order (counted above).
    let mut results = results.into_iter();
    Ok(slots
        .into_iter()
        .map(|slot| slot.and_then(|()| results.next().unwrap_or_else(|| unreachable_result())))
        .collect())
}

/// Embeds `inputs` in order, one [`Row`] of `features` each (`seer embed
/// --features`), in the engine's batches (see the module's comment); `stop_on_error` and the errors as [`in_batches`].
pub fn embed_images(
    encoder: &dyn ImageEncoder,
    inputs: &[ImageInput],
    options: &EmbedOptions,
    features: ImageFeatures,
    stop_on_error: bool,
    cancel: &AtomicBool,
) -> seer_engine::Result<Vec<Row>> {
    let pixels_len = encoder.pixels_len();
    in_batches(
        inputs,
        options.batch_size,
        stop_on_error,
        cancel,
        |input| checked_len(input, input.pixels(encoder, &options.limits)?, pixels_len),
        |batch| {
            let n = batch.len();
            let pixels = assemble(batch, pixels_len);
            let embeddings = encoder.embed_pixels_as(pixels, n, features, options.normalize)?;
            Ok(embeddings.into_iter().map(Ok).collect())
        },
    )
}

/// What [`run_batch`] would hand back for a result `run` did not give
/// (counted before, so never): an error, not a panic.
fn unreachable_result<T>() -> Outcome<T> {
    Err(InputError::new(
        "?",
        "internal error: the model gave no result for it",
    ))
}

/// The error of a call stopped by a signal (the caller raises the signal's
/// exception instead).
pub fn interrupted() -> seer_engine::EngineError {
    seer_engine::EngineError::Invalid("interrupted".into())
}

/// `prepare()`, with a panic in it (a decoder bug) as this input's error.
pub fn guarded<P>(input: &ImageInput, prepare: impl FnOnce() -> Outcome<P>) -> Outcome<P> {
    catch_unwind(AssertUnwindSafe(prepare)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        Err(InputError::new(
            input.name(),
            format!("internal error while reading it: {what}"),
        ))
    })
}

/// `pixels`, checked to be the `expected` count the model takes.
pub fn checked_len(input: &ImageInput, pixels: Vec<f32>, expected: usize) -> Outcome<Vec<f32>> {
    match pixels.len() == expected {
        true => Ok(pixels),
        false => Err(InputError::new(
            input.name(),
            format!(
                "internal error: preprocessing gave {} values, the model takes {expected}",
                pixels.len()
            ),
        )),
    }
}

/// A batch's preprocessed images (each `image_len` values, as
/// [`checked_len`] checked) back to back in one buffer, copied on all cores:
/// a large batch is hundreds of MB.
pub fn assemble(batch: Vec<(usize, Vec<f32>)>, image_len: usize) -> Vec<f32> {
    let mut pixels = vec![0f32; batch.len() * image_len];
    if image_len > 0 {
        pixels
            .par_chunks_mut(image_len)
            .zip(&batch)
            .for_each(|(dst, (_, src))| dst.copy_from_slice(src));
    }
    pixels
}
