//! A small index, and a fake model, the unit tests of several modules build on.

use std::path::Path;
use std::sync::Arc;

use seer_engine::{ImageEncoder, LoadedModel};
use seer_image::{DecodedImage, PreprocessConfig};

use crate::store::{write, FileRecord, ModelInfo, Store};
use crate::{Encoding, IndexOptions, VideoOptions};

/// The mean colour of an image, in [0, 1].
pub(crate) fn mean_rgb(image: &DecodedImage) -> Vec<f32> {
    mean_of(&image.to_rgb())
}

fn mean_of(rgb: &seer_image::image::RgbImage) -> Vec<f32> {
    let n = (rgb.width() * rgb.height()).max(1) as f32;
    let mut sum = [0f32; 3];
    for p in rgb.pixels() {
        for (s, v) in sum.iter_mut().zip(p.0) {
            *s += v as f32 / 255.0;
        }
    }
    sum.iter().map(|s| s / n).collect()
}

pub(crate) fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.iter().map(|x| x / n).collect()
}

/// Embeds an image as its normalised mean colour (3-d): solid-colour test
/// images and video frames rank by colour.
struct MeanColour(PreprocessConfig);

impl ImageEncoder for MeanColour {
    fn embed_dim(&self) -> usize {
        3
    }
    fn preprocess_config(&self) -> &PreprocessConfig {
        &self.0
    }
    fn pixels_len(&self) -> usize {
        3
    }
    fn preprocess(&self, image: &DecodedImage) -> Vec<f32> {
        mean_rgb(image)
    }
    fn preprocess_rgb(&self, image: &seer_image::image::RgbImage) -> Vec<f32> {
        mean_of(image)
    }
    fn embed_pixels(
        &self,
        pixels: Vec<f32>,
        n: usize,
        _: bool,
    ) -> seer_engine::Result<Vec<Vec<f32>>> {
        Ok((0..n).map(|i| unit(&pixels[i * 3..i * 3 + 3])).collect())
    }
}

/// A model with [`MeanColour`] as its image side.
pub(crate) fn encoder_model() -> LoadedModel {
    LoadedModel::encoders(
        "fake-encoder".into(),
        "fake",
        Some(Arc::new(MeanColour(PreprocessConfig::openai_clip(224)))),
        None,
    )
}

/// An index of 40 unit vectors in 8-d for model "m", paths `/p/{i}.jpg`,
/// committed as one generation.
pub(crate) fn store_with_vectors(dir: &Path) -> (Store, ModelInfo) {
    let mut store = Store::open(dir).unwrap();
    let tx = store.transaction().unwrap();
    let model = write::model_id(&tx, "m", 8).unwrap();
    for i in 0..40u32 {
        let v: Vec<f32> = (0..8)
            .map(|d| ((i * 31 + d * 17) % 23) as f32 - 11.0)
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let v: Vec<f32> = v.iter().map(|x| x / n).collect();
        let file = FileRecord {
            path: format!("/p/{i}.jpg"),
            ..Default::default()
        };
        let id = write::upsert_file(&tx, &file).unwrap();
        write::put_embedding(&tx, id, model, Encoding::F32, &v).unwrap();
    }
    write::bump_generation(&tx).unwrap();
    tx.commit().unwrap();
    let info = store.choose_model(Some("m")).unwrap();
    (store, info)
}

/// Indexing `root` with f32 vectors, model batches of 2 and exact search.
pub(crate) fn index_options(root: &Path, videos: Option<VideoOptions>) -> IndexOptions {
    IndexOptions {
        roots: vec![root.to_path_buf()],
        include_hidden: false,
        encoding: Encoding::F32,
        embed: seer_engine::EmbedOptions {
            batch_size: 2,
            ..Default::default()
        },
        ann_threshold: usize::MAX,
        videos,
    }
}
