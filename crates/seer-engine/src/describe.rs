//! Captions and answers for image files, in model batches: what `seer
//! caption`, `seer ask`, `seer eval caption` and the index share.
//!
//! Files are decoded and preprocessed in parallel, one batch at a time; a file
//! that cannot be read is reported with its cause and the rest of the batch
//! goes on. Generation dominates the time (tens of decoder steps per image),
//! so unlike embedding there is no decode-ahead thread.

use std::path::PathBuf;

use rayon::prelude::*;
use seer_image::DecodeLimits;

use crate::error::{EngineError, Result};
use crate::tasks::{Captioner, GenerateOptions, Generated, PixelInput};

#[derive(Clone, Debug)]
pub struct CaptionOptions {
    /// Images per model call.
    pub batch_size: usize,
    pub limits: DecodeLimits,
    /// Text every caption starts with (BLIP's conditional captioning).
    pub prompt: Option<String>,
    pub generate: GenerateOptions,
}

impl Default for CaptionOptions {
    fn default() -> Self {
        Self {
            batch_size: 8,
            limits: DecodeLimits::default(),
            prompt: None,
            generate: GenerateOptions::default(),
        }
    }
}

/// One file's caption, or why it has none.
#[derive(Debug)]
pub struct CaptionOutcome {
    pub index: usize,
    pub path: PathBuf,
    pub result: std::result::Result<Generated, EngineError>,
}

/// Decodes and preprocesses `paths` in parallel: each file's pixels or error.
pub fn prepare_files(
    input: &dyn PixelInput,
    paths: &[PathBuf],
    limits: &DecodeLimits,
) -> Vec<Result<Vec<f32>>> {
    paths
        .par_iter()
        .map(|path| {
            let decoded = seer_image::decode_file_full(path, limits)?;
            Ok(input.preprocess(&decoded))
        })
        .collect()
}

impl dyn Captioner + '_ {
    /// Captions image files, calling `on_result` once per file in input
    /// order. A model failure is reported for every file of its batch.
    pub fn caption_files(
        &self,
        paths: &[PathBuf],
        options: &CaptionOptions,
        mut on_result: impl FnMut(CaptionOutcome),
    ) {
        let batch = options.batch_size.max(1);
        for (chunk_index, chunk) in paths.chunks(batch).enumerate() {
            let first = chunk_index * batch;
            let prepared = prepare_files(self, chunk, &options.limits);
            let mut pixels = Vec::with_capacity(chunk.len() * self.pixels_len());
            let mut ready = Vec::with_capacity(chunk.len());
            let mut outcomes: Vec<Option<std::result::Result<Generated, EngineError>>> =
                Vec::with_capacity(chunk.len());
            for (i, p) in prepared.into_iter().enumerate() {
                match p {
                    Ok(px) => {
                        pixels.extend_from_slice(&px);
                        ready.push(i);
                        outcomes.push(None);
                    }
                    Err(e) => outcomes.push(Some(Err(e))),
                }
            }
            if !ready.is_empty() {
                match self.caption(
                    pixels,
                    ready.len(),
                    options.prompt.as_deref(),
                    &options.generate,
                ) {
                    Ok(captions) => {
                        for (&i, caption) in ready.iter().zip(captions) {
                            outcomes[i] = Some(Ok(caption));
                        }
                    }
                    Err(e) => {
                        let message = e.to_string();
                        for &i in &ready {
                            outcomes[i] = Some(Err(EngineError::Invalid(message.clone())));
                        }
                    }
                }
            }
            for (i, (path, outcome)) in chunk.iter().zip(outcomes).enumerate() {
                let result = outcome.unwrap_or_else(|| {
                    Err(EngineError::Invalid("the model returned no caption".into()))
                });
                on_result(CaptionOutcome {
                    index: first + i,
                    path: path.clone(),
                    result,
                });
            }
        }
    }
}
