//! Zero-shot accuracy on a labelled image set.

use std::path::PathBuf;

use crate::dataset::LabeledImage;
use crate::embed::EmbedOptions;
use crate::error::Result;
use crate::tasks::ImageEncoder;
use crate::zeroshot::ZeroShotClassifier;

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ClassAccuracy {
    pub class: String,
    pub images: usize,
    pub top1: f64,
    pub top5: f64,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ZeroShotReport {
    /// Images that were classified.
    pub images: usize,
    pub top1: f64,
    pub top5: f64,
    pub per_class: Vec<ClassAccuracy>,
    /// Files that could not be read, with the reason; excluded from accuracy.
    pub failures: Vec<(PathBuf, String)>,
}

/// Classifies every image, calling `on_progress` after each one.
pub fn evaluate_zeroshot(
    image: &dyn ImageEncoder,
    classifier: &ZeroShotClassifier,
    items: &[LabeledImage],
    options: &EmbedOptions,
    mut on_progress: impl FnMut(),
) -> Result<ZeroShotReport> {
    let classes = classifier.labels.len();
    let mut hits1 = vec![0usize; classes];
    let mut hits5 = vec![0usize; classes];
    let mut counts = vec![0usize; classes];
    let mut failures = Vec::new();
    let paths: Vec<PathBuf> = items.iter().map(|i| i.path.clone()).collect();
    let options = EmbedOptions {
        normalize: true,
        ..options.clone()
    };
    image.embed_image_files(&paths, &options, |outcome| {
        on_progress();
        let truth = items[outcome.index].class_index;
        match outcome.result {
            Ok(embedding) => {
                let probs = classifier.probabilities(&embedding);
                // Rank of the true class: how many classes score strictly higher.
                let rank = probs.iter().filter(|&&p| p > probs[truth]).count();
                counts[truth] += 1;
                hits1[truth] += usize::from(rank < 1);
                hits5[truth] += usize::from(rank < 5);
            }
            Err(e) => failures.push((outcome.path, e.to_string())),
        }
    })?;
    let total: usize = counts.iter().sum();
    let ratio = |hits: &[usize]| {
        if total == 0 {
            0.0
        } else {
            hits.iter().sum::<usize>() as f64 / total as f64
        }
    };
    let per_class = (0..classes)
        .filter(|&c| counts[c] > 0)
        .map(|c| ClassAccuracy {
            class: classifier.labels[c].clone(),
            images: counts[c],
            top1: hits1[c] as f64 / counts[c] as f64,
            top5: hits5[c] as f64 / counts[c] as f64,
        })
        .collect();
    Ok(ZeroShotReport {
        images: total,
        top1: ratio(&hits1),
        top5: ratio(&hits5),
        per_class,
        failures,
    })
}
