//! The OWL-ViT / OWLv2 family as the commands see it: one transformers
//! checkpoint (`OwlViTForObjectDetection` or `Owlv2ForObjectDetection`), the
//! CLIP tokenizer and the image processor, behind [`Detector`].
//!
//! Queries are embedded once in [`Detector::prepare`] (text tower, or the
//! query image's chosen box), so a batch of photos runs only the image side.
//! Text ids are the processor's: `[SOT] … [EOT]` cut to the text tower's 16
//! positions, last id `[EOT]`; padding changes nothing (causal attention, the
//! first `[EOT]` is pooled), so seer does not pad. Boxes are scaled to the
//! original image: by its own size for OWL-ViT (squash resize), by its longer
//! side for OWLv2 (padded to a square at the bottom and right, so boxes may
//! reach into the padding, as in transformers).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use seer_image::{DecodedImage, OwlProcessor};
use seer_models::models::owlvit::{OwlImage, OwlModel, OwlVersion};
use seer_models::{ModelError, Tensor};
use seer_tokenizer::ClipTokenizer;

use crate::detect::{
    image_guided_detections, text_detections, DetectOptions, DetectQuery, Detection, Detector,
    PreparedQueries, RawDetections,
};
use crate::error::{file_error, EngineError, Result};
use crate::loader::{check_tokenizer_config, LoadOptions, TokenizerClass};
use crate::tasks::LoadedModel;

pub struct Owl {
    model: OwlModel,
    tokenizer: ClipTokenizer,
    processor: OwlProcessor,
}

/// Raw outputs for one image, as transformers' forward returns them.
pub struct OwlOutputs {
    /// (boxes × queries), row-major by box.
    pub logits: Vec<f32>,
    /// (cx, cy, w, h) in [0, 1].
    pub boxes: Vec<[f32; 4]>,
    /// OWLv2 only.
    pub objectness: Option<Vec<f32>>,
}

/// The query embeddings [`Detector::prepare`] keeps.
struct OwlQueries {
    embeddings: Tensor,
}

impl Owl {
    pub fn load_dir(dir: &Path, options: &LoadOptions) -> Result<Self> {
        let device = options.device.device()?;
        let model = OwlModel::load_dir(dir, &device, options.precision)?;
        let (processor, processor_path) =
            read_processor(dir, model.config().version == OwlVersion::V2)?;
        check_tokenizer_config(dir, TokenizerClass::Clip)?;
        let side = model.config().image_size as u32;
        if processor.size() != (side, side) {
            return Err(file_error(
                processor_path,
                format!(
                    "resizes to {}×{}, but the model's image_size is {side}",
                    processor.size().0,
                    processor.size().1
                ),
            ));
        }
        let tokenizer = match &options.tokenizer {
            Some(path) => ClipTokenizer::from_file(path)?,
            None => ClipTokenizer::from_dir(dir)?.ok_or_else(|| {
                file_error(
                    dir,
                    "has no tokenizer (tokenizer.json, or vocab.json + merges.txt); pass --tokenizer FILE or set SEER_TOKENIZER",
                )
            })?,
        };
        Ok(Self {
            model,
            tokenizer,
            processor,
        })
    }

    pub fn into_loaded(self, id: String) -> LoadedModel {
        let family = match self.model.config().version {
            OwlVersion::V1 => "owlvit",
            OwlVersion::V2 => "owlv2",
        };
        let mut loaded = LoadedModel::encoders(id, family, None, None);
        loaded.detector = Some(Arc::new(self));
        loaded
    }

    pub fn model(&self) -> &OwlModel {
        &self.model
    }

    pub fn processor(&self) -> &OwlProcessor {
        &self.processor
    }

    /// The processor's ids of `text` (unpadded).
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text, self.model.context_length())
    }

    /// The model input for `image`, CHW.
    pub fn preprocess(&self, image: &DecodedImage) -> Vec<f32> {
        self.processor.preprocess(image)
    }

    /// The image side for one image.
    pub fn run_image(&self, image: &DecodedImage) -> Result<OwlImage> {
        let s = self.model.config().image_size;
        let pixels = Tensor::from_vec(self.preprocess(image), (1, 3, s, s), self.model.device())
            .map_err(ModelError::from)?;
        Ok(self.model.image(&pixels)?)
    }

    /// Embeds text labels (`text_embeds`), one row per label.
    pub fn embed_labels(&self, labels: &[String]) -> Result<Tensor> {
        let ids: Vec<Vec<u32>> = labels.iter().map(|l| self.tokenize(l)).collect();
        Ok(self.model.embed_texts(&ids)?)
    }

    /// The raw outputs for `image` against query embeddings.
    pub fn outputs(&self, image: &OwlImage, queries: &Tensor) -> Result<OwlOutputs> {
        Ok(OwlOutputs {
            logits: self.model.logits(image, queries)?,
            boxes: image.boxes.clone(),
            objectness: self.model.objectness(image)?,
        })
    }
}

/// `preprocessor_config.json`, or transformers 5's `processor_config.json`,
/// or the class defaults without either (as transformers would use); with the
/// path errors about it name (the first name without either).
fn read_processor(dir: &Path, v2: bool) -> Result<(OwlProcessor, PathBuf)> {
    for name in ["preprocessor_config.json", "processor_config.json"] {
        let path = dir.join(name);
        if path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(|e| file_error(&path, e))?;
            // The parser names preprocessor_config.json: name the file read.
            let processor = OwlProcessor::from_config(&text, v2).map_err(|e| e.in_file(&path))?;
            return Ok((processor, path));
        }
    }
    Ok((
        OwlProcessor::from_config("{}", v2)?,
        dir.join("preprocessor_config.json"),
    ))
}

impl Detector for Owl {
    fn prepare(&self, query: &DetectQuery) -> Result<PreparedQueries> {
        match query {
            DetectQuery::Texts(texts) => {
                let labels: Vec<String> = texts.iter().map(|t| t.trim().to_string()).collect();
                if labels.is_empty() {
                    return Err(EngineError::Invalid("no labels to look for".into()));
                }
                if let Some(i) = labels.iter().position(String::is_empty) {
                    return Err(EngineError::Invalid(format!("label {} is empty", i + 1)));
                }
                Ok(PreparedQueries {
                    embeddings: Box::new(OwlQueries {
                        embeddings: self.embed_labels(&labels)?,
                    }),
                    labels,
                    image_query: false,
                })
            }
            DetectQuery::Image(image) => {
                let features = self.run_image(image)?;
                let query = self.model.image_query(&features)?;
                Ok(PreparedQueries {
                    labels: vec!["image".into()],
                    image_query: true,
                    embeddings: Box::new(OwlQueries {
                        embeddings: query.embedding,
                    }),
                })
            }
        }
    }

    fn detect(
        &self,
        image: &DecodedImage,
        queries: &PreparedQueries,
        options: &DetectOptions,
    ) -> Result<Vec<Detection>> {
        options.validate()?;
        let prepared = queries
            .embeddings
            .downcast_ref::<OwlQueries>()
            .ok_or_else(|| {
                EngineError::Invalid("these queries were prepared by another model".into())
            })?;
        let features = self.run_image(image)?;
        let out = self.outputs(&features, &prepared.embeddings)?;
        let raw = RawDetections {
            logits: &out.logits,
            queries: queries.labels.len(),
            boxes: &out.boxes,
            frame: self.processor.box_frame(image.width(), image.height()),
        };
        Ok(if queries.image_query {
            image_guided_detections(&raw, &queries.labels[0], options)
        } else {
            text_detections(&raw, &queries.labels, options)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_processor_config_is_named_by_its_path_once() {
        // transformers 5 writes processor_config.json; the image crate's
        // error named preprocessor_config.json after the path of the other.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("processor_config.json");
        std::fs::write(&path, r#"{"image_mean": "x"}"#).unwrap();
        let err = read_processor(dir.path(), true).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}: invalid preprocessing config: ",
                path.display()
            )),
            "{err}"
        );
        assert!(!err.contains(": preprocessor_config.json"), "{err}");
    }
}
