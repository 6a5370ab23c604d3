//! The BLIP family as the commands see it: one transformers checkpoint with
//! its head (captions, image–text matching or question answering), its BERT
//! tokenizer and its image processor.
//!
//! What the Python classes add on top of the model, reproduced here:
//! - `BlipImageProcessor` squashes every image to 384×384 (bicubic, no crop)
//!   with OpenAI CLIP's mean and std ([`ExactResizeConfig`]);
//! - `BlipForConditionalGeneration.generate` starts from the processor's ids
//!   of the prompt with `[CLS]` replaced by `[DEC]` and `[SEP]` dropped, and
//!   stops at `[SEP]`;
//! - the answer of `BlipForQuestionAnswering` starts from `[DEC]` alone;
//! - `generate` runs with transformers' default settings: the text decoder
//!   has its own generation config, so the checkpoint's
//!   `generation_config.json` changes nothing (the fixture checks it), and
//!   without a length limit 20 tokens follow the prompt;
//! - every pair is run on its own, as a batch of one: transformers pads a
//!   batch of questions and its answer decoder then reads the padding too, so
//!   batched answers depend on the other questions in the batch.

use std::path::Path;
use std::sync::Arc;

use seer_image::{DecodedImage, ExactResizeConfig};
use seer_models::generate::GenerationConfig;
use seer_models::models::blip::{BlipHead, BlipModel};
use seer_models::{ModelFiles, Tensor};
use seer_tokenizer::WordPieceTokenizer;

use crate::error::{file_error, EngineError, Result};
use crate::loader::{check_tokenizer_config, LoadOptions, TokenizerClass};
use crate::tasks::{
    Captioner, GenerateOptions, Generated, ImageTextMatcher, LoadedModel, MatchScore, PixelInput,
    QuestionAnswerer,
};

pub struct Blip {
    model: BlipModel,
    tokenizer: WordPieceTokenizer,
    processor: ExactResizeConfig,
    /// The generation settings before the user's changes.
    generation: GenerationConfig,
    device: seer_models::Device,
}

impl Blip {
    pub fn load_dir(dir: &Path, options: &LoadOptions) -> Result<Self> {
        let files = ModelFiles::from_dir(dir)?;
        let device = options.device.device()?;
        let model = BlipModel::load(&files, &device, options.precision)?;
        let processor = read_processor(dir)?;
        check_tokenizer_config(dir, TokenizerClass::Bert)?;
        check_generation_config(dir)?;
        let side = model.config().vision.image_size as u32;
        if processor.width != side || processor.height != side {
            return Err(file_error(
                dir.join("preprocessor_config.json"),
                format!(
                    "resizes to {}×{}, but the model's image_size is {side}",
                    processor.width, processor.height
                ),
            ));
        }
        Ok(Self {
            tokenizer: WordPieceTokenizer::from_dir(dir)?,
            model,
            processor,
            // transformers' BLIP `generate` runs the text decoder's own
            // generation config, not the checkpoint's generation_config.json
            // (fixtures/blip/README.md): its defaults, then the user's changes.
            generation: GenerationConfig::default(),
            device,
        })
    }

    pub fn into_loaded(self, id: String) -> LoadedModel {
        let head = self.model.config().head;
        let blip = Arc::new(self);
        let mut loaded = LoadedModel::encoders(id, "blip", None, None);
        match head {
            BlipHead::Captioning => loaded.captioner = Some(blip),
            BlipHead::Retrieval => loaded.matcher = Some(blip),
            BlipHead::QuestionAnswering => loaded.answerer = Some(blip),
        }
        loaded
    }

    pub fn model(&self) -> &BlipModel {
        &self.model
    }

    pub fn tokenizer(&self) -> &WordPieceTokenizer {
        &self.tokenizer
    }

    /// The checkpoint's generation settings with the user's changes.
    pub fn generation(&self, options: &GenerateOptions) -> Result<GenerationConfig> {
        let mut g = self.generation.clone();
        if let Some(beams) = options.beams {
            if beams == 0 {
                return Err(EngineError::Invalid("--beams must be at least 1".into()));
            }
            g.num_beams = beams;
        }
        if let Some(n) = options.max_new_tokens {
            if n == 0 {
                return Err(EngineError::Invalid(
                    "--max-new-tokens must be at least 1".into(),
                ));
            }
            g.max_new_tokens = Some(n);
        }
        Ok(g)
    }

    /// `n` preprocessed images as the model's (n, 3, S, S) input.
    fn pixels(&self, pixels: Vec<f32>, n: usize) -> Result<Tensor> {
        let (w, h) = (
            self.processor.width as usize,
            self.processor.height as usize,
        );
        if n == 0 || pixels.len() != n * 3 * w * h {
            return Err(EngineError::Invalid(format!(
                "{} floats is not {n} images of 3×{h}×{w}",
                pixels.len()
            )));
        }
        Ok(Tensor::from_vec(pixels, (n, 3, h, w), &self.device)
            .map_err(seer_models::ModelError::from)?)
    }

    /// The text decoder's and encoder's positions.
    fn positions(&self) -> usize {
        self.model.config().text.max_positions
    }

    /// The processor's ids of `text` (`[CLS] … [SEP]`), refused when the text
    /// has no words.
    fn text_ids(&self, text: &str, what: &str) -> Result<Vec<u32>> {
        let ids = self.tokenizer.encode(text)?;
        if ids.len() <= 2 || text.trim().is_empty() {
            return Err(EngineError::Invalid(format!(
                "{what} is empty: it has no words"
            )));
        }
        Ok(ids)
    }

    /// [`Blip::text_ids`] of a text the encoder reads whole (a question, a
    /// text to match), refused when it has more ids than the positions.
    fn encoder_ids(&self, text: &str, what: &str) -> Result<Vec<u32>> {
        let ids = self.text_ids(text, what)?;
        let p = self.positions();
        if ids.len() > p {
            return Err(EngineError::Invalid(format!(
                "{what} is too long: {} tokens ([CLS] and [SEP] included), and the model \
                 reads at most {p} (its text positions)",
                ids.len()
            )));
        }
        Ok(ids)
    }

    /// The ids a caption starts from after `[DEC]`: the prompt's without
    /// `[CLS]` and `[SEP]`, refused when they leave the decoder no position
    /// for a word of its own.
    fn prompt_words(&self, prompt: &str, what: &str) -> Result<Vec<u32>> {
        let ids = self.text_ids(prompt, what)?;
        let words = &ids[1..ids.len() - 1];
        let p = self.positions();
        if 1 + words.len() >= p {
            return Err(EngineError::Invalid(format!(
                "{what} is too long: {} tokens, and the model's {p} text positions hold \
                 [DEC], at most {} prompt tokens and the caption",
                words.len(),
                p.saturating_sub(2)
            )));
        }
        Ok(words.to_vec())
    }

    /// The ids a caption starts from after `[DEC]` (none without a prompt),
    /// checked with the generation length as [`Captioner::check_prompt`] says.
    fn caption_start(
        &self,
        prompt: Option<&str>,
        what: &str,
        options: &GenerateOptions,
    ) -> Result<Vec<u32>> {
        let Some(prompt) = prompt else {
            self.check_new_tokens(1, "[DEC]", options)?;
            return Ok(Vec::new());
        };
        // `[CLS]` becomes `[DEC]` (added by the model) and `[SEP]` is dropped.
        let words = self.prompt_words(prompt, what)?;
        self.check_new_tokens(1 + words.len(), "[DEC] and the prompt", options)?;
        Ok(words)
    }

    /// Refuses a `max_new_tokens` that would run the text decoder past its
    /// positions: generation starts from `start` tokens (`start_what`, for the
    /// message) and adds at most that many. Unset, transformers' 20 are cut to
    /// the positions, as `generate` does.
    fn check_new_tokens(
        &self,
        start: usize,
        start_what: &str,
        options: &GenerateOptions,
    ) -> Result<()> {
        self.generation(options)?;
        let p = self.positions();
        match options.max_new_tokens {
            Some(n) if start.saturating_add(n) > p => Err(EngineError::Invalid(format!(
                "--max-new-tokens {n} is too many: the model has {p} text positions, and \
                 {start_what} ({start} {}) and {n} new ones would need {}; give \
                 --max-new-tokens {} or less",
                if start == 1 { "token" } else { "tokens" },
                start.saturating_add(n),
                p.saturating_sub(start)
            ))),
            _ => Ok(()),
        }
    }

    fn generated(&self, tokens: Vec<u32>) -> Result<Generated> {
        Ok(Generated {
            text: self.tokenizer.decode(&tokens)?,
            tokens,
        })
    }

    fn split(&self, pixels: Vec<f32>, n: usize, count: usize) -> Result<Vec<Tensor>> {
        if count != n {
            return Err(EngineError::Invalid(format!(
                "{count} texts for {n} images"
            )));
        }
        let all = self.pixels(pixels, n)?;
        (0..n)
            .map(|i| Ok(all.narrow(0, i, 1).map_err(seer_models::ModelError::from)?))
            .collect()
    }
}

/// seer runs BLIP with transformers' default generation settings whatever
/// `generation_config.json` says (see the module's notes), but transformers
/// still loads the file: valid JSON that is not an object fails its
/// `from_pretrained`, so it is refused here too. Text that is not JSON (or
/// not UTF-8) transformers passes over for the model config's settings, and a
/// field of the wrong type it keeps unused: neither changes a BLIP answer.
fn check_generation_config(dir: &Path) -> Result<()> {
    let path = dir.join("generation_config.json");
    if !path.is_file() {
        return Ok(());
    }
    let bytes = std::fs::read(&path).map_err(|e| file_error(&path, e))?;
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) if !v.is_object() => Err(file_error(
            &path,
            "not a generation config: expected a JSON object",
        )),
        _ => Ok(()),
    }
}

/// `preprocessor_config.json` as a `BlipImageProcessor` (the class defaults
/// without one, as transformers would use).
fn read_processor(dir: &Path) -> Result<ExactResizeConfig> {
    let path = dir.join("preprocessor_config.json");
    let text = match path.is_file() {
        true => std::fs::read_to_string(&path).map_err(|e| file_error(&path, e))?,
        false => "{}".to_string(),
    };
    ExactResizeConfig::from_blip_preprocessor_config(&text).map_err(|e| file_error(&path, e))
}

impl PixelInput for Blip {
    fn preprocess(&self, image: &DecodedImage) -> Vec<f32> {
        seer_image::preprocess_exact(image, &self.processor)
    }

    fn pixels_len(&self) -> usize {
        3 * self.processor.width as usize * self.processor.height as usize
    }
}

impl Captioner for Blip {
    fn caption(
        &self,
        pixels: Vec<f32>,
        n: usize,
        prompt: Option<&str>,
        options: &GenerateOptions,
    ) -> Result<Vec<Generated>> {
        let prompt = self.caption_start(prompt, "the prompt", options)?;
        let generation = self.generation(options)?;
        let pixels = self.pixels(pixels, n)?;
        self.model
            .caption(&pixels, &prompt, &generation)?
            .into_iter()
            .map(|tokens| self.generated(tokens))
            .collect()
    }

    fn check_prompt(
        &self,
        prompt: Option<&str>,
        what: &str,
        options: &GenerateOptions,
    ) -> Result<()> {
        self.caption_start(prompt, what, options).map(|_| ())
    }
}

impl QuestionAnswerer for Blip {
    fn answer(
        &self,
        pixels: Vec<f32>,
        n: usize,
        questions: &[String],
        options: &GenerateOptions,
    ) -> Result<Vec<Generated>> {
        // The answer starts from `[DEC]` alone, whatever the question.
        self.check_new_tokens(1, "[DEC]", options)?;
        let generation = self.generation(options)?;
        let images = self.split(pixels, n, questions.len())?;
        images
            .iter()
            .zip(questions)
            .map(|(image, question)| {
                let ids = self.encoder_ids(question, "the question")?;
                self.generated(self.model.answer(image, &ids, &generation)?)
            })
            .collect()
    }

    fn check_question(&self, question: &str, what: &str, options: &GenerateOptions) -> Result<()> {
        self.encoder_ids(question, what)?;
        // The answer starts from `[DEC]` alone.
        self.check_new_tokens(1, "[DEC]", options)
    }
}

impl ImageTextMatcher for Blip {
    fn match_texts(&self, pixels: Vec<f32>, n: usize, texts: &[String]) -> Result<Vec<MatchScore>> {
        if texts.len() != n {
            return Err(EngineError::Invalid(format!(
                "{} texts for {n} images",
                texts.len()
            )));
        }
        let len = self.pixels_len();
        let images = self.pixels(pixels, n)?;
        let data = images
            .flatten_all()
            .map_err(seer_models::ModelError::from)?;
        let data = data
            .to_vec1::<f32>()
            .map_err(seer_models::ModelError::from)?;
        let mut scores = Vec::with_capacity(n);
        let mut current = None;
        for (i, text) in texts.iter().enumerate() {
            let ids = self.encoder_ids(text, "the text")?;
            // Several texts against one image (`seer match`, `/v1/match`) come
            // as the same pixels repeated: its side runs once.
            if i == 0 || data[i * len..][..len] != data[(i - 1) * len..][..len] {
                let image = images
                    .narrow(0, i, 1)
                    .map_err(seer_models::ModelError::from)?;
                current = Some(self.model.match_image(&image)?);
            }
            let s = current.as_ref().expect("set at i == 0").score(&ids)?;
            scores.push(MatchScore {
                itm_probability: s.itm_probability,
                similarity: s.similarity,
            });
        }
        Ok(scores)
    }

    fn check_text(&self, text: &str, what: &str) -> Result<()> {
        self.encoder_ids(text, what).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generation_config_transformers_cannot_load_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("generation_config.json");
        check_generation_config(dir.path()).unwrap();
        for text in ["[1]", "null", "\"abc\"", "3"] {
            std::fs::write(&path, text).unwrap();
            let err = check_generation_config(dir.path()).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "{}: not a generation config: expected a JSON object",
                    path.display()
                ),
                "{text}"
            );
        }
        // transformers falls back to config.json for text that is not JSON,
        // and keeps wrong-typed fields unused by BLIP's generate.
        for text in ["x{", "", r#"{"num_beams": "x", "max_length": "y"}"#] {
            std::fs::write(&path, text).unwrap();
            check_generation_config(dir.path()).unwrap();
        }
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        check_generation_config(dir.path()).unwrap();
    }
}
