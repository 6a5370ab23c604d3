//! Image–text retrieval recall@K (text→image and image→text), as CLIP papers and
//! clip_benchmark report it: a caption hits when its own image ranks in the top
//! K images; an image hits when any of its captions ranks in the top K captions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::embed::EmbedOptions;
use crate::error::{file_error, io_error, Result};
use crate::tasks::LoadedModel;
use crate::zeroshot::dot;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptionedImage {
    pub image: PathBuf,
    pub captions: Vec<String>,
}

/// Reads a JSONL of `{"file": ..., "captions": [...]}` (the layout of COCO-style
/// caption sets). `file` is resolved against `images_dir` when given and the file
/// is there, else against the JSONL's folder.
pub fn read_captions_jsonl(path: &Path, images_dir: Option<&Path>) -> Result<Vec<CaptionedImage>> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut items = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |m: String| file_error(path, format!("line {}: {m}", n + 1));
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let file = v["file"]
            .as_str()
            .ok_or_else(|| bad("no \"file\"".into()))?;
        let captions: Vec<String> = v["captions"]
            .as_array()
            .ok_or_else(|| bad("no \"captions\" list".into()))?
            .iter()
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect();
        if captions.is_empty() {
            return Err(bad("empty \"captions\"".into()));
        }
        let image = match images_dir {
            Some(dir) if dir.join(file).exists() => dir.join(file),
            Some(dir)
                if dir
                    .join(Path::new(file).file_name().unwrap_or_default())
                    .exists() =>
            {
                dir.join(Path::new(file).file_name().unwrap_or_default())
            }
            _ => base.join(file),
        };
        items.push(CaptionedImage { image, captions });
    }
    if items.is_empty() {
        return Err(file_error(path, "no captioned images"));
    }
    Ok(items)
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RetrievalReport {
    pub images: usize,
    pub captions: usize,
    /// K -> recall, captions as queries.
    pub text_to_image: BTreeMap<usize, f64>,
    /// K -> recall, images as queries.
    pub image_to_text: BTreeMap<usize, f64>,
    pub failures: Vec<(PathBuf, String)>,
}

/// Needs both towers: an image-only model is refused before any embedding.
pub fn evaluate_retrieval(
    model: &LoadedModel,
    items: &[CaptionedImage],
    ks: &[usize],
    options: &EmbedOptions,
) -> Result<RetrievalReport> {
    let options = EmbedOptions {
        normalize: true,
        ..options.clone()
    };
    let (image, text) = (model.image()?, model.text()?);
    let paths: Vec<PathBuf> = items.iter().map(|i| i.image.clone()).collect();
    let mut image_vectors = vec![None; items.len()];
    let mut failures = Vec::new();
    image.embed_image_files(&paths, &options, |o| match o.result {
        Ok(v) => image_vectors[o.index] = Some(v),
        Err(e) => failures.push((o.path, e.to_string())),
    })?;
    // Images that failed are left out together with their captions.
    let kept: Vec<usize> = (0..items.len())
        .filter(|&i| image_vectors[i].is_some())
        .collect();
    let images: Vec<Vec<f32>> = kept
        .iter()
        .map(|&i| image_vectors[i].take().expect("kept"))
        .collect();
    let mut captions = Vec::new();
    let mut owner = Vec::new();
    for (image_row, &i) in kept.iter().enumerate() {
        for c in &items[i].captions {
            captions.push(c.clone());
            owner.push(image_row);
        }
    }
    let texts = text.embed_texts(&captions, &options)?;

    // Rank of the best correct answer for each query (0 = first).
    let t2i: Vec<usize> = texts
        .iter()
        .zip(&owner)
        .map(|(t, &own)| {
            let target = dot(t, &images[own]);
            images.iter().filter(|img| dot(t, img) > target).count()
        })
        .collect();
    let i2t: Vec<usize> = images
        .iter()
        .enumerate()
        .map(|(row, img)| {
            let scores: Vec<f32> = texts.iter().map(|t| dot(t, img)).collect();
            let best_own = (0..texts.len())
                .filter(|&j| owner[j] == row)
                .map(|j| scores[j])
                .fold(f32::NEG_INFINITY, f32::max);
            scores.iter().filter(|&&s| s > best_own).count()
        })
        .collect();
    let recall = |ranks: &[usize], k: usize| {
        ranks.iter().filter(|&&r| r < k).count() as f64 / ranks.len().max(1) as f64
    };
    Ok(RetrievalReport {
        images: images.len(),
        captions: captions.len(),
        text_to_image: ks.iter().map(|&k| (k, recall(&t2i, k))).collect(),
        image_to_text: ks.iter().map(|&k| (k, recall(&i2t, k))).collect(),
        failures,
    })
}
