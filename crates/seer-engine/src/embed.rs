//! Batched embedding of texts and image files.
//!
//! Image files flow through a two-stage pipeline: a producer thread decodes and
//! preprocesses the next batch on all cores (rayon) while the model runs on the
//! current one, so decoding hides behind inference instead of adding to it.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rayon::prelude::*;
use seer_image::DecodeLimits;
use seer_models::{l2_normalize, Tensor, TextPadding};

use crate::error::{EngineError, Result};
use crate::loader::Clip;

#[derive(Clone, Debug)]
pub struct EmbedOptions {
    pub batch_size: usize,
    /// L2-normalise (the default for users); false gives the raw projected features.
    pub normalize: bool,
    pub limits: DecodeLimits,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            normalize: true,
            limits: DecodeLimits::default(),
        }
    }
}

/// The outcome for one input file; failures name the file and never stop a batch.
#[derive(Debug)]
pub struct ImageEmbedding {
    pub index: usize,
    pub path: PathBuf,
    pub result: std::result::Result<Vec<f32>, EngineError>,
}

type Decoded = (usize, PathBuf, std::result::Result<Vec<f32>, EngineError>);

impl Clip {
    /// Embeds texts in batches; each batch is padded only to its longest text.
    pub fn embed_texts(&self, texts: &[String], options: &EmbedOptions) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(options.batch_size.max(1)) {
            let tokens: Vec<Vec<u32>> = chunk.iter().map(|t| self.tokenize(t)).collect();
            let features = self.model.encode_texts(&tokens, TextPadding::Longest)?;
            out.extend(self.finish(features, options.normalize)?);
        }
        Ok(out)
    }

    /// Embeds preprocessed pixels: `pixels` holds `n` CHW images back to back.
    pub fn embed_pixels(
        &self,
        pixels: Vec<f32>,
        n: usize,
        normalize: bool,
    ) -> Result<Vec<Vec<f32>>> {
        let s = self.model.image_size();
        let batch = Tensor::from_vec(pixels, (n, 3, s, s), self.model.device())
            .map_err(seer_models::ModelError::from)?;
        let features = self.model.encode_images(&batch)?;
        self.finish(features, normalize)
    }

    fn finish(&self, features: Tensor, normalize: bool) -> Result<Vec<Vec<f32>>> {
        let features = if normalize {
            l2_normalize(&features).map_err(seer_models::ModelError::from)?
        } else {
            features
        };
        Ok(features
            .to_vec2::<f32>()
            .map_err(seer_models::ModelError::from)?)
    }

    /// Embeds image files, calling `on_result` once per file in input order.
    /// Returns an error only when the model itself fails (not for bad files).
    pub fn embed_image_files(
        &self,
        paths: &[PathBuf],
        options: &EmbedOptions,
        mut on_result: impl FnMut(ImageEmbedding),
    ) -> Result<()> {
        let batch_size = options.batch_size.max(1);
        let (tx, rx) = mpsc::sync_channel::<Vec<Decoded>>(1);
        std::thread::scope(|scope| {
            let preprocess = &self.preprocess;
            let limits = &options.limits;
            scope.spawn(move || {
                for (chunk_index, chunk) in paths.chunks(batch_size).enumerate() {
                    let decoded: Vec<Decoded> = chunk
                        .par_iter()
                        .enumerate()
                        .map(|(i, path)| {
                            let result = seer_image::load_and_preprocess(path, preprocess, limits)
                                .map_err(EngineError::from);
                            (chunk_index * batch_size + i, path.clone(), result)
                        })
                        .collect();
                    if tx.send(decoded).is_err() {
                        return; // the consumer stopped on a model error
                    }
                }
            });
            for batch in rx {
                self.run_decoded_batch(batch, options.normalize, &mut on_result)?;
            }
            Ok(())
        })
    }

    fn run_decoded_batch(
        &self,
        batch: Vec<Decoded>,
        normalize: bool,
        on_result: &mut impl FnMut(ImageEmbedding),
    ) -> Result<()> {
        let ok = batch.iter().filter(|(_, _, r)| r.is_ok()).count();
        let mut pixels = Vec::with_capacity(ok * 3 * self.model.image_size().pow(2));
        let mut slots = Vec::with_capacity(batch.len());
        for (index, path, result) in batch {
            match result {
                Ok(p) => {
                    pixels.extend_from_slice(&p);
                    slots.push((index, path, None));
                }
                Err(e) => slots.push((index, path, Some(e))),
            }
        }
        let mut embeddings = if ok > 0 {
            self.embed_pixels(pixels, ok, normalize)?.into_iter()
        } else {
            Vec::new().into_iter()
        };
        for (index, path, error) in slots {
            let result = match error {
                Some(e) => Err(e),
                None => Ok(embeddings.next().expect("one embedding per decoded image")),
            };
            on_result(ImageEmbedding {
                index,
                path,
                result,
            });
        }
        Ok(())
    }
}

/// File extensions picked up when walking folders (explicitly named files are
/// always tried, whatever their extension).
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "jfif", "png", "webp", "gif", "bmp", "tif", "tiff", "pnm", "pbm", "pgm",
    "ppm",
];

pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Expands folders (recursively, sorted, skipping hidden entries) into image files;
/// files are kept as given. Unreadable folders are reported as failures.
pub fn collect_image_paths(inputs: &[PathBuf]) -> (Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let mut files = Vec::new();
    let mut failures = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let walker = walkdir::WalkDir::new(input)
                .follow_links(true)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| {
                    e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.')
                });
            for entry in walker {
                match entry {
                    Ok(e) if e.file_type().is_file() && has_image_extension(e.path()) => {
                        files.push(e.into_path())
                    }
                    Ok(_) => {}
                    Err(e) => {
                        failures.push((e.path().unwrap_or(input).to_path_buf(), e.to_string()))
                    }
                }
            }
        } else if input.exists() {
            files.push(input.clone());
        } else {
            failures.push((input.clone(), "no such file or folder".into()));
        }
    }
    (files, failures)
}
