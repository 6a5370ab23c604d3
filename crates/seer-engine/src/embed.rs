//! Batched embedding of texts and image files.
//!
//! Image files flow through a two-stage pipeline: a producer thread decodes and
//! preprocesses the next batch on all cores (rayon) while the model runs on the
//! current one, so decoding hides behind inference instead of adding to it.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rayon::prelude::*;
use seer_image::DecodeLimits;

use crate::error::{EngineError, Result};
use crate::tasks::{ImageEncoder, ImageFeatures, TextEncoder};

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

impl dyn TextEncoder + '_ {
    /// Embeds texts in model batches of `options.batch_size`.
    pub fn embed_texts(&self, texts: &[String], options: &EmbedOptions) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(options.batch_size.max(1)) {
            out.extend(self.embed_text_batch(chunk, options.normalize)?);
        }
        Ok(out)
    }
}

impl dyn ImageEncoder + '_ {
    /// Embeds image files, calling `on_result` once per file in input order.
    /// Returns an error only when the model itself fails (not for bad files).
    pub fn embed_image_files(
        &self,
        paths: &[PathBuf],
        options: &EmbedOptions,
        on_result: impl FnMut(ImageEmbedding),
    ) -> Result<()> {
        self.image_file_features(paths, options, ImageFeatures::Embedding, on_result)
    }

    /// [`embed_image_files`](#method.embed_image_files) for any of the tower's
    /// [`ImageFeatures`] (`seer embed --features`): each result is one vector,
    /// or for [`ImageFeatures::PatchGrid`] the `h·w·D` patch tokens row-major.
    /// Features the tower does not give are an error before any file is read.
    pub fn image_file_features(
        &self,
        paths: &[PathBuf],
        options: &EmbedOptions,
        features: ImageFeatures,
        mut on_result: impl FnMut(ImageEmbedding),
    ) -> Result<()> {
        if !self.gives(features) {
            return Err(EngineError::Invalid(format!(
                "this model does not give {}",
                features.describe()
            )));
        }
        let prepare = |path: &PathBuf| -> Result<(Vec<f32>, ())> {
            let decoded = seer_image::decode_file_full(path, &options.limits)?;
            Ok((self.preprocess(&decoded), ()))
        };
        self.pipeline(paths, options, features, prepare, |index, result| {
            on_result(ImageEmbedding {
                index,
                path: paths[index].clone(),
                result: result.map(|(embedding, ())| embedding),
            })
        })
    }

    /// The pipeline behind [`embed_image_files`](#method.embed_image_files), for
    /// callers that need more from each file than its pixels: `prepare` turns an
    /// item into preprocessed pixels ([`ImageEncoder::pixels_len`] floats) plus
    /// anything it learnt on the way (a hash, dimensions), in parallel on all
    /// cores and one batch ahead of the model; `on_result` receives `(item index,
    /// embedding and extra)` in input order.
    pub fn embed_prepared<T: Sync, X: Send>(
        &self,
        items: &[T],
        options: &EmbedOptions,
        prepare: impl Fn(&T) -> Result<(Vec<f32>, X)> + Sync,
        on_result: impl FnMut(usize, Result<(Vec<f32>, X)>),
    ) -> Result<()> {
        self.pipeline(items, options, ImageFeatures::Embedding, prepare, on_result)
    }

    /// The pipeline itself, running the model for `features`.
    fn pipeline<T: Sync, X: Send>(
        &self,
        items: &[T],
        options: &EmbedOptions,
        features: ImageFeatures,
        prepare: impl Fn(&T) -> Result<(Vec<f32>, X)> + Sync,
        mut on_result: impl FnMut(usize, Result<(Vec<f32>, X)>),
    ) -> Result<()> {
        let batch_size = options.batch_size.max(1);
        let image_len = self.pixels_len();
        let (tx, rx) = mpsc::sync_channel::<PreparedBatch<X>>(1);
        std::thread::scope(|scope| {
            let prepare = &prepare;
            scope.spawn(move || {
                for chunk in items.chunks(batch_size) {
                    let prepared: Vec<_> = chunk.par_iter().map(prepare).collect();
                    if tx
                        .send(PreparedBatch::assemble(prepared, image_len))
                        .is_err()
                    {
                        return; // the consumer stopped on a model error
                    }
                }
            });
            let mut next_index = 0;
            for batch in rx {
                let first = next_index;
                next_index += batch.slots.len();
                self.run_prepared_batch(batch, features, options.normalize, |i, r| {
                    on_result(first + i, r)
                })?;
            }
            Ok(())
        })
    }

    fn run_prepared_batch<X>(
        &self,
        batch: PreparedBatch<X>,
        features: ImageFeatures,
        normalize: bool,
        mut on_result: impl FnMut(usize, Result<(Vec<f32>, X)>),
    ) -> Result<()> {
        let PreparedBatch { pixels, ok, slots } = batch;
        let mut embeddings = if ok > 0 {
            self.embed_pixels_as(pixels, ok, features, normalize)?
                .into_iter()
        } else {
            Vec::new().into_iter()
        };
        for (i, slot) in slots.into_iter().enumerate() {
            let result = slot.map(|extra| {
                (
                    embeddings.next().expect("one embedding per prepared image"),
                    extra,
                )
            });
            on_result(i, result);
        }
        Ok(())
    }
}

/// One model batch: the prepared images' pixels back to back, and per item its
/// extra data or its error.
struct PreparedBatch<X> {
    pixels: Vec<f32>,
    ok: usize,
    slots: Vec<Result<X>>,
}

impl<X: Send> PreparedBatch<X> {
    /// Copies the images into one buffer on all cores, on the preparing side of
    /// the pipeline: a single-threaded copy of a large batch (150 MB at 256
    /// ViT-B images) was slower than a GPU's whole forward pass.
    fn assemble(prepared: Vec<Result<(Vec<f32>, X)>>, image_len: usize) -> Self {
        let (images, slots): (Vec<Option<Vec<f32>>>, Vec<Result<X>>) = prepared
            .into_iter()
            .map(|r| match r {
                Ok((pixels, extra)) => (Some(pixels), Ok(extra)),
                Err(e) => (None, Err(e)),
            })
            .unzip();
        let images: Vec<Vec<f32>> = images.into_iter().flatten().collect();
        let mut pixels = vec![0f32; images.len() * image_len];
        pixels
            .par_chunks_mut(image_len)
            .zip(&images)
            .for_each(|(dst, src)| dst.copy_from_slice(src));
        Self {
            pixels,
            ok: images.len(),
            slots,
        }
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

/// Folders that operating systems and NAS boxes create (thumbnails, trash), skipped
/// like hidden ones when walking.
const SYSTEM_FOLDERS: &[&str] = &[
    "@eaDir",
    "#recycle",
    "#snapshot",
    "$RECYCLE.BIN",
    "System Volume Information",
    "lost+found",
];

/// Hidden (dot) entries and system folders, which folder walks skip.
pub fn is_hidden_or_system(name: &str) -> bool {
    name.starts_with('.') || SYSTEM_FOLDERS.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// Whether a folder walk's error is a symlink whose target does not exist.
pub fn is_broken_link(e: &walkdir::Error) -> bool {
    e.io_error()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
        && e.path()
            .and_then(|p| p.symlink_metadata().ok())
            .is_some_and(|m| m.file_type().is_symlink())
}

/// Expands folders (recursively, sorted, skipping hidden and system entries) into image files;
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
                    e.depth() == 0 || !is_hidden_or_system(&e.file_name().to_string_lossy())
                });
            for entry in walker {
                match entry {
                    Ok(e) if e.file_type().is_file() && has_image_extension(e.path()) => {
                        files.push(e.into_path())
                    }
                    Ok(_) => {}
                    // A dangling link to what is no image (notes.txt) is
                    // skipped as the file itself would be.
                    Err(e) if is_broken_link(&e) && !e.path().is_some_and(has_image_extension) => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder's walk takes its images; a dangling link is a failure only
    /// where it names an image (a link to nothing named notes.txt is skipped,
    /// as notes.txt itself would be).
    #[cfg(unix)]
    #[test]
    fn a_dangling_link_fails_only_where_it_names_an_image() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("photos");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("a.jpg"), b"x").unwrap();
        std::fs::write(folder.join("readme.txt"), b"x").unwrap();
        symlink(dir.path().join("gone.jpg"), folder.join("gone.jpg")).unwrap();
        symlink(dir.path().join("gone.txt"), folder.join("notes.txt")).unwrap();
        let (files, failures) = collect_image_paths(std::slice::from_ref(&folder));
        assert_eq!(files, [folder.join("a.jpg")]);
        let failed: Vec<&Path> = failures.iter().map(|(p, _)| p.as_path()).collect();
        assert_eq!(failed, [folder.join("gone.jpg")]);
    }
}
