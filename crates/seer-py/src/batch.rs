//! Embeds a list of image inputs in model batches, decoding the next batch
//! while the model runs the current one.
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
use seer_engine::{EmbedOptions, ImageEncoder};

use crate::input::{ImageInput, InputError};
use crate::pool::cancelled;

/// One input's embedding, or why it has none.
pub type Row = Result<Vec<f32>, InputError>;

/// Embeds `inputs` in order, one [`Row`] each. With `stop_on_error`, stops
/// after the first batch with a failed input (the rows returned then end with
/// that batch). An `Err` is the model's failure, not an input's, or the call
/// being interrupted (`cancel`, checked before each batch).
///
/// Run it on a pool from [`crate::pool`]: its parallel work uses the current
/// rayon pool.
pub fn embed_images(
    encoder: &dyn ImageEncoder,
    inputs: &[ImageInput],
    options: &EmbedOptions,
    stop_on_error: bool,
    cancel: &AtomicBool,
) -> seer_engine::Result<Vec<Row>> {
    let prepare = |chunk: &[ImageInput]| -> Prepared {
        let rows = chunk
            .par_iter()
            .map(|input| prepare_one(encoder, input, options))
            .collect();
        Prepared::assemble(rows, encoder.pixels_len())
    };
    let mut chunks = inputs.chunks(options.batch_size.max(1));
    let mut rows = Vec::with_capacity(inputs.len());
    let mut next = chunks.next().map(prepare);
    while let Some(batch) = next.take() {
        if cancelled(cancel) {
            return Err(interrupted());
        }
        let following = chunks.next();
        let (prepared, embedded) = rayon::join(
            || following.map(prepare),
            || batch.embed(encoder, options.normalize),
        );
        let embedded = embedded?;
        let failed = embedded.iter().any(Result::is_err);
        rows.extend(embedded);
        if failed && stop_on_error {
            break;
        }
        next = prepared;
    }
    Ok(rows)
}

/// The error of a call stopped by a signal (the caller raises the signal's
/// exception instead).
pub fn interrupted() -> seer_engine::EngineError {
    seer_engine::EngineError::Invalid("interrupted".into())
}

/// The input's pixels, [`ImageEncoder::pixels_len`] of them; a panic while
/// decoding it (a decoder bug) fails this input alone.
fn prepare_one(
    encoder: &dyn ImageEncoder,
    input: &ImageInput,
    options: &EmbedOptions,
) -> Result<Vec<f32>, InputError> {
    let pixels = catch_unwind(AssertUnwindSafe(|| input.pixels(encoder, &options.limits)))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".into());
            Err(InputError::new(
                input.name(),
                format!("internal error while reading it: {what}"),
            ))
        })?;
    match pixels.len() == encoder.pixels_len() {
        true => Ok(pixels),
        false => Err(InputError::new(
            input.name(),
            format!(
                "internal error: preprocessing gave {} values, the model takes {}",
                pixels.len(),
                encoder.pixels_len()
            ),
        )),
    }
}

/// One model batch: the readable images' pixels back to back, and each
/// input's error or, for a readable one, its place in the batch.
struct Prepared {
    pixels: Vec<f32>,
    ok: usize,
    slots: Vec<Result<(), InputError>>,
}

impl Prepared {
    /// Gathers the prepared images (each `image_len` values, as
    /// [`prepare_one`] checked) into one buffer, copying on all cores: a large
    /// batch is hundreds of MB.
    fn assemble(rows: Vec<Result<Vec<f32>, InputError>>, image_len: usize) -> Self {
        let mut images = Vec::with_capacity(rows.len());
        let slots = rows
            .into_iter()
            .map(|row| row.map(|pixels| images.push(pixels)))
            .collect();
        let mut pixels = vec![0f32; images.len() * image_len];
        if image_len > 0 {
            pixels
                .par_chunks_mut(image_len)
                .zip(&images)
                .for_each(|(dst, src)| dst.copy_from_slice(src));
        }
        Self {
            pixels,
            ok: images.len(),
            slots,
        }
    }

    /// Runs the model on the batch's images: one row per input, in order.
    fn embed(self, encoder: &dyn ImageEncoder, normalize: bool) -> seer_engine::Result<Vec<Row>> {
        let Prepared { pixels, ok, slots } = self;
        let embeddings = match ok {
            0 => Vec::new(),
            n => encoder.embed_pixels(pixels, n, normalize)?,
        };
        if embeddings.len() != ok {
            return Err(seer_engine::EngineError::Invalid(format!(
                "the model gave {} embeddings for {ok} images",
                embeddings.len()
            )));
        }
        let mut embeddings = embeddings.into_iter();
        Ok(slots
            .into_iter()
            .map(|slot| {
                // One embedding per readable input, in order (counted above).
                slot.map(|()| embeddings.next().unwrap_or_default())
            })
            .collect())
    }
}
