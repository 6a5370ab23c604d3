//! What a model can do, as traits the rest of seer depends on: the index, the
//! server and the command line see an [`ImageEncoder`] and a [`TextEncoder`],
//! never a concrete family (CLIP, DINOv2, SigLIP). A family implements the
//! traits for its towers and registers a loader in [`crate::registry`].
//!
//! An encoder does only what differs between families: its preprocessing, one
//! model batch, and (for text) its tokenizer, padding and zero-shot
//! [`ScoreRule`]. Batching, the decode-ahead pipeline and error handling per file
//! are written once, on `dyn ImageEncoder` / `dyn TextEncoder` (see `embed.rs`).
//!
//! Models that read images and write or score language (BLIP) implement
//! [`Captioner`], [`QuestionAnswerer`] and [`ImageTextMatcher`]; each has its
//! own optional slot in [`LoadedModel`], as do [`crate::detect::Detector`]
//! (OWL-ViT) and [`crate::segment::Segmenter`] (SAM).

use std::sync::Arc;

use seer_image::{DecodedImage, PreprocessConfig};

use crate::error::{EngineError, Result};

/// The image tower of a model: preprocessed pixels in, one embedding per image out.
pub trait ImageEncoder: Send + Sync {
    /// Length of one embedding.
    fn embed_dim(&self) -> usize;

    /// The processor this tower's images go through (resize, crop, mean/std),
    /// as the checkpoint's `preprocessor_config.json` (or open_clip config) says.
    fn preprocess_config(&self) -> &PreprocessConfig;

    /// Floats in one preprocessed image: what [`ImageEncoder::preprocess`]
    /// returns and [`ImageEncoder::embed_pixels`] expects per image.
    fn pixels_len(&self) -> usize {
        3 * (self.preprocess_config().crop_size as usize).pow(2)
    }

    /// A decoded file as this tower's input, [`ImageEncoder::pixels_len`] floats.
    /// Families whose processor a [`PreprocessConfig`] cannot express (SigLIP's
    /// squash resize, NaFlex) override this and [`ImageEncoder::preprocess_rgb`].
    fn preprocess(&self, image: &DecodedImage) -> Vec<f32> {
        seer_image::preprocess_decoded(image, self.preprocess_config())
    }

    /// [`ImageEncoder::preprocess`] for an RGB image made in memory (e.g. the
    /// altered copies `seer dupes --calibrate` embeds).
    fn preprocess_rgb(&self, image: &seer_image::image::RgbImage) -> Vec<f32> {
        let cfg = self.preprocess_config();
        let mut out = Vec::with_capacity(self.pixels_len());
        seer_image::normalize_into(&seer_image::resize_and_crop(image, cfg), cfg, &mut out);
        out
    }

    /// Runs one model batch: `pixels` holds `n` preprocessed images back to back.
    /// `normalize: false` gives the family's raw features exactly (CLIP's and
    /// SigLIP's `get_image_features`, DINOv2's `pooler_output`); `true` their
    /// L2-normalised form, which search and zero-shot use.
    fn embed_pixels(&self, pixels: Vec<f32>, n: usize, normalize: bool) -> Result<Vec<Vec<f32>>>;

    /// The features this tower gives besides [`ImageFeatures::Embedding`], which
    /// every tower gives. Towers whose tokens map to image patches (DINOv2) list
    /// [`ImageFeatures::PatchMean`] and [`ImageFeatures::PatchGrid`].
    fn extra_features(&self) -> &'static [ImageFeatures] {
        &[]
    }

    /// Whether this tower gives `features`.
    fn gives(&self, features: ImageFeatures) -> bool {
        features == ImageFeatures::Embedding || self.extra_features().contains(&features)
    }

    /// `(rows, columns)` of patches in one preprocessed image, for towers that
    /// give [`ImageFeatures::PatchGrid`].
    fn patch_grid(&self) -> Option<(usize, usize)> {
        None
    }

    /// Runs one model batch for `features`: the embedding as
    /// [`ImageEncoder::embed_pixels`], or one of [`ImageEncoder::extra_features`].
    /// A tower that lists extra features overrides this.
    fn embed_pixels_as(
        &self,
        pixels: Vec<f32>,
        n: usize,
        features: ImageFeatures,
        normalize: bool,
    ) -> Result<Vec<Vec<f32>>> {
        match features {
            ImageFeatures::Embedding => self.embed_pixels(pixels, n, normalize),
            other => Err(EngineError::Invalid(format!(
                "this image tower does not give {}",
                other.describe()
            ))),
        }
    }
}

/// What an image tower is asked for (`seer embed --features`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImageFeatures {
    /// The model's embedding: CLIP's and SigLIP's image features, DINOv2's CLS
    /// token after the final LayerNorm (`pooler_output`). `--features cls`.
    #[default]
    Embedding,
    /// The mean of the patch tokens after the final LayerNorm, register tokens
    /// left out (`last_hidden_state[:, 1 + registers:].mean(1)`): one `D` vector,
    /// normalised like the embedding. `--features mean`.
    PatchMean,
    /// Every patch token after the final LayerNorm, `h × w × D` row-major, never
    /// normalised. `--features patch`.
    PatchGrid,
}

impl ImageFeatures {
    /// Its name in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Embedding => "its embedding",
            Self::PatchMean => "the mean of its patch tokens",
            Self::PatchGrid => "its grid of patch tokens",
        }
    }
}

/// The text tower of a model: strings in, embeddings in the image tower's space out.
pub trait TextEncoder: Send + Sync {
    /// Length of one embedding (the image tower's).
    fn embed_dim(&self) -> usize;

    /// Token ids as this model sees `text`: its tokenizer, special tokens and
    /// truncation (padding is the model's business in [`TextEncoder::embed_text_batch`]).
    fn tokenize(&self, text: &str) -> Vec<u32>;

    /// Runs one model batch of texts, padded as the reference pads them (CLIP:
    /// to the longest text; SigLIP: `max_length` 64). `normalize` as for images.
    fn embed_text_batch(&self, texts: &[String], normalize: bool) -> Result<Vec<Vec<f32>>>;

    /// How this model turns cosine similarities into zero-shot probabilities.
    fn score_rule(&self) -> ScoreRule;
}

/// How a family turns an image's cosine similarities to class embeddings into
/// probabilities. `scale` is the multiplier itself (the exponential of the
/// checkpoint's stored `logit_scale`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "rule", rename_all = "lowercase")]
pub enum ScoreRule {
    /// CLIP: `softmax(scale · cos)` over the labels; they sum to 1.
    Softmax { scale: f32 },
    /// SigLIP: `sigmoid(scale · cos + bias)` for each label on its own.
    Sigmoid { scale: f32, bias: f32 },
}

impl ScoreRule {
    pub fn probabilities(&self, cosines: &[f32]) -> Vec<f32> {
        match *self {
            Self::Softmax { scale } => {
                let logits: Vec<f32> = cosines.iter().map(|c| scale * c).collect();
                crate::zeroshot::softmax(&logits)
            }
            Self::Sigmoid { scale, bias } => cosines
                .iter()
                .map(|c| 1.0 / (1.0 + (-(scale * c + bias)).exp()))
                .collect(),
        }
    }
}

/// How a model that reads images prepares one: its processor, as the
/// checkpoint's `preprocessor_config.json` says (BLIP: a squash resize to 384 px).
pub trait PixelInput: Send + Sync {
    /// A decoded file as the model's input, [`PixelInput::pixels_len`] floats.
    fn preprocess(&self, image: &DecodedImage) -> Vec<f32>;

    /// Floats in one preprocessed image.
    fn pixels_len(&self) -> usize;
}

/// Text a model generated for one input: the decoded string (special tokens
/// skipped) and the whole id sequence transformers' `generate` returns for that
/// input alone, prompt included, up to and including the end token.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Generated {
    pub text: String,
    pub tokens: Vec<u32>,
}

/// What a user may change of a checkpoint's generation defaults
/// (`generation_config.json`); `None` keeps the checkpoint's value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GenerateOptions {
    /// Beam width; 1 is greedy search.
    pub beams: Option<usize>,
    /// Tokens generated after the prompt, at most.
    pub max_new_tokens: Option<usize>,
}

/// Writes a caption for each image (BLIP's `BlipForConditionalGeneration`).
pub trait Captioner: PixelInput {
    /// Captions `n` preprocessed images given back to back. `prompt` starts
    /// every caption (conditional captioning, e.g. "a picture of"); the
    /// prompt's tokens are part of [`Generated::tokens`] and of the text.
    fn caption(
        &self,
        pixels: Vec<f32>,
        n: usize,
        prompt: Option<&str>,
        options: &GenerateOptions,
    ) -> Result<Vec<Generated>>;

    /// Refuses ([`EngineError::Invalid`]) a prompt or generation length that
    /// [`Captioner::caption`] would refuse for every image, before any image
    /// is read: a prompt without words, one that leaves the text decoder no
    /// position to write in, a `max_new_tokens` past its positions. `what`
    /// names the prompt in messages (`--prompt`, `prompt`). A model with no
    /// such limits accepts everything.
    ///
    /// [`EngineError::Invalid`]: crate::EngineError::Invalid
    fn check_prompt(
        &self,
        prompt: Option<&str>,
        what: &str,
        options: &GenerateOptions,
    ) -> Result<()> {
        let _ = (prompt, what, options);
        Ok(())
    }
}

/// Answers a question about each image (BLIP's `BlipForQuestionAnswering`).
pub trait QuestionAnswerer: PixelInput {
    /// `questions[i]` is asked of image `i` of the `n` given back to back.
    fn answer(
        &self,
        pixels: Vec<f32>,
        n: usize,
        questions: &[String],
        options: &GenerateOptions,
    ) -> Result<Vec<Generated>>;

    /// Refuses a question [`QuestionAnswerer::answer`] would refuse (no
    /// words, more tokens than the text encoder's positions) or a generation
    /// length past the answer decoder's positions, before any image is read;
    /// `what` names the question in messages. See [`Captioner::check_prompt`].
    fn check_question(&self, question: &str, what: &str, options: &GenerateOptions) -> Result<()> {
        let _ = (question, what, options);
        Ok(())
    }
}

/// How well a text describes an image, both ways BLIP's
/// `BlipForImageTextRetrieval` scores it.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct MatchScore {
    /// The image–text matching head's softmax, the "match" class
    /// (`use_itm_head=True`): reads word order, unlike a cosine.
    pub itm_probability: f32,
    /// Cosine of the contrastive (ITC) image and text features
    /// (`use_itm_head=False`).
    pub similarity: f32,
}

/// Scores image–text pairs (BLIP's `BlipForImageTextRetrieval`).
pub trait ImageTextMatcher: PixelInput {
    /// `texts[i]` is scored against image `i` of the `n` given back to back.
    fn match_texts(&self, pixels: Vec<f32>, n: usize, texts: &[String]) -> Result<Vec<MatchScore>>;

    /// Refuses a text [`ImageTextMatcher::match_texts`] would refuse (no
    /// words, more tokens than the text encoder's positions), before any
    /// image is read; `what` names it in messages. See [`Captioner::check_prompt`].
    fn check_text(&self, text: &str, what: &str) -> Result<()> {
        let _ = (text, what);
        Ok(())
    }
}

/// A model ready to use, as commands see it: which towers it has, behind the
/// task traits. Loaded by [`LoadedModel::load`] through the family registry.
#[derive(Clone)]
pub struct LoadedModel {
    /// The hub id or folder the model came from (what an index records).
    pub id: String,
    /// The registry's name of its family (`clip`, `dinov2`, `siglip`).
    pub family: &'static str,
    pub image: Option<Arc<dyn ImageEncoder>>,
    /// None for image-only models (DINOv2).
    pub text: Option<Arc<dyn TextEncoder>>,
    /// Captioning, question answering and image–text matching: the BLIP
    /// checkpoint's head, when it has that one.
    pub captioner: Option<Arc<dyn Captioner>>,
    pub answerer: Option<Arc<dyn QuestionAnswerer>>,
    pub matcher: Option<Arc<dyn ImageTextMatcher>>,
    /// Open-vocabulary detection (OWL-ViT) and promptable segmentation (SAM).
    pub detector: Option<Arc<dyn crate::detect::Detector>>,
    pub segmenter: Option<Arc<dyn crate::segment::Segmenter>>,
}

impl LoadedModel {
    /// The image tower, or an error naming the model when it has none.
    pub fn image(&self) -> Result<&dyn ImageEncoder> {
        self.image.as_deref().ok_or_else(|| {
            EngineError::Invalid(format!(
                "model '{}' ({}) has no image tower",
                self.id, self.family
            ))
        })
    }

    /// The image tower, checked to give `features`: an error naming the model
    /// and its family when it does not (CLIP and SigLIP pool their tokens into
    /// one embedding, and give no patch features).
    pub fn image_for(&self, features: ImageFeatures) -> Result<&dyn ImageEncoder> {
        let image = self.image()?;
        match image.gives(features) {
            true => Ok(image),
            false => Err(EngineError::FeaturesNotGiven {
                model: self.id.clone(),
                family: self.family,
                features: features.describe(),
            }),
        }
    }

    /// A model with only image and text towers (every embedding family).
    pub fn encoders(
        id: String,
        family: &'static str,
        image: Option<Arc<dyn ImageEncoder>>,
        text: Option<Arc<dyn TextEncoder>>,
    ) -> Self {
        Self {
            id,
            family,
            image,
            text,
            captioner: None,
            answerer: None,
            matcher: None,
            detector: None,
            segmenter: None,
        }
    }

    /// The captioning head, or an error naming what the model is.
    pub fn captioner(&self) -> Result<&dyn Captioner> {
        self.captioner
            .as_deref()
            .ok_or_else(|| self.lacks("writes no captions", "a BLIP captioning checkpoint (BlipForConditionalGeneration, e.g. Salesforce/blip-image-captioning-base)"))
    }

    /// The question-answering head, or an error naming what the model is.
    pub fn answerer(&self) -> Result<&dyn QuestionAnswerer> {
        self.answerer.as_deref().ok_or_else(|| {
            self.lacks(
                "answers no questions",
                "a BLIP VQA checkpoint (BlipForQuestionAnswering, e.g. Salesforce/blip-vqa-base)",
            )
        })
    }

    /// The image–text matching head, or an error naming what the model is.
    pub fn matcher(&self) -> Result<&dyn ImageTextMatcher> {
        self.matcher
            .as_deref()
            .ok_or_else(|| self.lacks("has no image-text matching head", "a BLIP retrieval checkpoint (BlipForImageTextRetrieval, e.g. Salesforce/blip-itm-base-coco)"))
    }

    /// The segmenter, or an error naming what the model is.
    pub fn segmenter(&self) -> Result<&dyn crate::segment::Segmenter> {
        self.segmenter.as_deref().ok_or_else(|| {
            self.lacks(
                "does not segment",
                "a SAM checkpoint (SamModel, e.g. facebook/sam-vit-base or SlimSAM)",
            )
        })
    }

    fn lacks(&self, what: &str, needed: &str) -> EngineError {
        EngineError::Invalid(format!(
            "model '{}' ({}) {what}: this needs {needed}",
            self.id, self.family
        ))
    }

    /// The text tower, or an error saying that this model only embeds images.
    pub fn text(&self) -> Result<&dyn TextEncoder> {
        self.text
            .as_deref()
            .ok_or_else(|| EngineError::NoTextTower {
                model: self.id.clone(),
                family: self.family,
            })
    }

    /// Length of its embeddings.
    pub fn embed_dim(&self) -> usize {
        match (&self.image, &self.text) {
            (Some(i), _) => i.embed_dim(),
            (None, Some(t)) => t.embed_dim(),
            (None, None) => 0,
        }
    }

    /// The zero-shot rule, when the model has a text tower.
    pub fn score_rule(&self) -> Result<ScoreRule> {
        Ok(self.text()?.score_rule())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_sigmoid_scores_each_label_alone() {
        let cos = [0.30, 0.25, -0.1];
        let p = ScoreRule::Softmax { scale: 100.0 }.probabilities(&cos);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[0] > p[1] && p[1] > p[2]);
        let rule = ScoreRule::Sigmoid {
            scale: 10.0,
            bias: -2.0,
        };
        let s = rule.probabilities(&cos);
        // sigmoid(10 * 0.3 - 2) = sigmoid(1)
        assert!((s[0] - 1.0 / (1.0 + (-1.0f32).exp())).abs() < 1e-6);
        // Each label alone: dropping one leaves the others' scores unchanged.
        assert_eq!(rule.probabilities(&cos[..2]), s[..2].to_vec());
    }
}
