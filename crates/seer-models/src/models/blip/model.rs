//! A BLIP checkpoint with its head: captioning, image–text retrieval or
//! question answering, run as transformers' classes run them.

use std::path::Path;

use candle_core::{Device, Module, Tensor};
use seer_kernels::Precision;

use super::config::{BlipConfig, BlipHead};
use super::text::{select_sequences, BlipTextModel, EncoderContext, LmHead, SequenceCache};
use super::vision::BlipVisionModel;
use crate::error::{ModelError, Result};
use crate::generate::{generate, Decoder, GenerationConfig};
use crate::io::files::ModelFiles;
use crate::io::weights::Weights;
use crate::nn::layers::{l2_normalize, Linear};
use crate::nn::split_batch;

#[derive(Clone, Debug)]
enum Head {
    /// `text_decoder`: writes captions while reading the image.
    Captioning { decoder: BlipTextModel, lm: LmHead },
    /// `text_encoder` with the ITM head and the contrastive projections.
    Retrieval {
        encoder: BlipTextModel,
        vision_proj: Linear,
        text_proj: Linear,
        itm: Linear,
    },
    /// `text_encoder` reads the question against the image; `text_decoder`
    /// writes the answer while reading the encoded question.
    QuestionAnswering {
        encoder: BlipTextModel,
        decoder: BlipTextModel,
        lm: LmHead,
    },
}

#[derive(Clone, Debug)]
pub struct BlipModel {
    config: BlipConfig,
    vision: BlipVisionModel,
    head: Head,
    /// Whether the vision tower runs a batch as one part per thread
    /// ([`split_batch::applies`]).
    split_batches: bool,
}

/// Both scores of `BlipForImageTextRetrieval` for one image–text pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ItmScores {
    /// `softmax(itm_score)[1]` with `use_itm_head=True`.
    pub itm_probability: f32,
    /// The ITC cosine (`use_itm_head=False`).
    pub similarity: f32,
}

impl BlipModel {
    pub fn load_dir(dir: &Path, device: &Device, precision: Precision) -> Result<Self> {
        Self::load(&ModelFiles::from_dir(dir)?, device, precision)
    }

    pub fn load(files: &ModelFiles, device: &Device, precision: Precision) -> Result<Self> {
        let root = Weights::open(&files.weights, device)?.with_precision(precision);
        let text = std::fs::read_to_string(&files.config).map_err(|source| ModelError::Io {
            path: files.config.clone(),
            weights: false,
            source,
        })?;
        let config = BlipConfig::from_json(&text, &files.config, head_of_weights(&root))?;
        Self::from_weights(config, &root)
    }

    pub fn from_weights(config: BlipConfig, root: &Weights) -> Result<Self> {
        let vision = BlipVisionModel::load(&root.pp("vision_model"), &config.vision)?;
        let text = &config.text;
        let lm_head = |prefix: &str| -> Result<(BlipTextModel, LmHead)> {
            let bert = root.pp(format!("{prefix}.bert"));
            Ok((
                BlipTextModel::load(&bert, text)?,
                LmHead::load(&root.pp(format!("{prefix}.cls.predictions")), &bert, text)?,
            ))
        };
        let head = match config.head {
            BlipHead::Captioning => {
                let (decoder, lm) = lm_head("text_decoder")?;
                Head::Captioning { decoder, lm }
            }
            BlipHead::Retrieval => {
                let (v, t, p) = (
                    config.vision.transformer.width,
                    text.hidden_size,
                    config.image_text_hidden_size,
                );
                Head::Retrieval {
                    encoder: BlipTextModel::load(&root.pp("text_encoder"), text)?,
                    vision_proj: Linear::load(&root.pp("vision_proj"), v, p, true)?,
                    text_proj: Linear::load(&root.pp("text_proj"), t, p, true)?,
                    itm: Linear::load(&root.pp("itm_head"), t, 2, true)?,
                }
            }
            BlipHead::QuestionAnswering => {
                let (decoder, lm) = lm_head("text_decoder")?;
                Head::QuestionAnswering {
                    encoder: BlipTextModel::load(&root.pp("text_encoder"), text)?,
                    decoder,
                    lm,
                }
            }
        };
        Ok(Self {
            config,
            vision,
            head,
            split_batches: split_batch::applies(root),
        })
    }

    pub fn config(&self) -> &BlipConfig {
        &self.config
    }

    /// The vision tower's `last_hidden_state` (batch, tokens, width) of
    /// normalised `pixels` (batch, 3, S, S).
    pub fn image_embeds(&self, pixels: &Tensor) -> Result<Tensor> {
        let parts =
            split_batch::per_image(self.split_batches, pixels, |part| self.vision.forward(part))?;
        split_batch::cat_parts(parts)
    }

    fn wrong_head(&self, wanted: BlipHead) -> ModelError {
        ModelError::Unsupported(format!(
            "this BLIP checkpoint is a {}; this needs a {}",
            self.config.head.class_name(),
            wanted.class_name()
        ))
    }

    /// The decoder that writes captions for `pixels` (batch, 3, S, S), one
    /// input per image: the captioning head's generation inputs.
    pub fn caption_decoder(&self, pixels: &Tensor) -> Result<TextGenerator<'_>> {
        let Head::Captioning { decoder, lm } = &self.head else {
            return Err(self.wrong_head(BlipHead::Captioning));
        };
        let embeds = self.image_embeds(pixels)?;
        let contexts = (0..embeds.dim(0)?)
            .map(|i| decoder.encoder_context(&embeds.get(i)?))
            .collect::<Result<_>>()?;
        Ok(TextGenerator {
            text: decoder,
            lm,
            contexts,
        })
    }

    /// `BlipForConditionalGeneration.generate`: every image's caption as the
    /// full id sequence (prompt included). `prompt` holds the processor's ids
    /// of the prompt text *without* `[CLS]` and `[SEP]` (empty: no prompt);
    /// `[DEC]` starts every sequence as transformers does.
    pub fn caption(
        &self,
        pixels: &Tensor,
        prompt: &[u32],
        generation: &GenerationConfig,
    ) -> Result<Vec<Vec<u32>>> {
        let decoder = self.caption_decoder(pixels)?;
        let start: Vec<u32> = std::iter::once(self.config.text.bos_token_id)
            .chain(prompt.iter().copied())
            .collect();
        let prompts = vec![start; decoder.contexts.len()];
        generate(&decoder, &prompts, &self.generation_settings(generation))
    }

    /// transformers' BLIP `generate` passes `eos_token_id=sep_token_id` and
    /// `pad_token_id` from the text config, over the checkpoint's own settings.
    fn generation_settings(&self, generation: &GenerationConfig) -> GenerationConfig {
        let mut g = generation.clone();
        g.eos_token_ids = vec![self.config.text.sep_token_id];
        g.pad_token_id = Some(self.config.text.pad_token_id);
        g
    }

    /// `BlipForQuestionAnswering.generate` for one image (1, 3, S, S) and one
    /// question (the processor's ids, `[CLS]` … `[SEP]`): the answer's ids,
    /// starting with `[DEC]`.
    pub fn answer(
        &self,
        pixels: &Tensor,
        question: &[u32],
        generation: &GenerationConfig,
    ) -> Result<Vec<u32>> {
        let decoder = self.answer_decoder(pixels, question)?;
        let prompts = vec![vec![self.config.text.bos_token_id]];
        let mut out = generate(&decoder, &prompts, &self.generation_settings(generation))?;
        Ok(out.pop().unwrap_or_default())
    }

    /// The decoder that writes the answer to `question` about the one image in
    /// `pixels`: the encoded question, read by every step.
    pub fn answer_decoder(&self, pixels: &Tensor, question: &[u32]) -> Result<TextGenerator<'_>> {
        let Head::QuestionAnswering {
            encoder,
            decoder,
            lm,
        } = &self.head
        else {
            return Err(self.wrong_head(BlipHead::QuestionAnswering));
        };
        check_one_image(pixels)?;
        check_text(question)?;
        let embeds = self.image_embeds(pixels)?.get(0)?;
        let image = encoder.encoder_context(&embeds)?;
        let question = encoder.encode(question, Some(&image))?;
        Ok(TextGenerator {
            text: decoder,
            lm,
            contexts: vec![decoder.encoder_context(&question)?],
        })
    }

    /// `BlipForImageTextRetrieval` on one image (1, 3, S, S) and one text (the
    /// processor's ids, `[CLS]` … `[SEP]`).
    pub fn match_text(&self, pixels: &Tensor, text: &[u32]) -> Result<ItmScores> {
        self.match_image(pixels)?.score(text)
    }

    /// The image side of `BlipForImageTextRetrieval` for one image (1, 3, S,
    /// S), computed once for any number of texts.
    pub fn match_image(&self, pixels: &Tensor) -> Result<MatchImage<'_>> {
        let Head::Retrieval {
            encoder,
            vision_proj,
            text_proj,
            itm,
        } = &self.head
        else {
            return Err(self.wrong_head(BlipHead::Retrieval));
        };
        check_one_image(pixels)?;
        let embeds = self.image_embeds(pixels)?.get(0)?;
        Ok(MatchImage {
            encoder,
            text_proj,
            itm,
            context: encoder.encoder_context(&embeds)?,
            // ITC: the class token projected and normalised.
            feature: l2_normalize(&vision_proj.forward(&embeds.narrow(0, 0, 1)?)?)?,
        })
    }
}

/// One image ready to be scored against texts by the retrieval head: its
/// cross-attention keys and values and its contrastive feature.
pub struct MatchImage<'a> {
    encoder: &'a BlipTextModel,
    text_proj: &'a Linear,
    itm: &'a Linear,
    context: EncoderContext,
    feature: Tensor,
}

impl MatchImage<'_> {
    /// Both scores for one text (the processor's ids, `[CLS]` … `[SEP]`).
    pub fn score(&self, text: &[u32]) -> Result<ItmScores> {
        check_text(text)?;
        // ITM: the text read against the image; the head sees the first token.
        let fused = self.encoder.encode(text, Some(&self.context))?;
        let logits = self
            .itm
            .forward(&fused.narrow(0, 0, 1)?)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let itm_probability = softmax2(logits[0], logits[1]);
        // ITC: the text's first token alone, projected and normalised.
        let text_alone = self.encoder.encode(text, None)?;
        let text_feat = l2_normalize(&self.text_proj.forward(&text_alone.narrow(0, 0, 1)?)?)?;
        let similarity = (&self.feature * text_feat)?.sum_all()?.to_scalar::<f32>()?;
        Ok(ItmScores {
            itm_probability,
            similarity,
        })
    }
}

/// `softmax([a, b])[1]` as torch computes it.
fn softmax2(a: f32, b: f32) -> f32 {
    let m = a.max(b);
    let (ea, eb) = ((a - m).exp(), (b - m).exp());
    eb / (ea + eb)
}

fn check_one_image(pixels: &Tensor) -> Result<()> {
    match pixels.dims().first() {
        Some(1) => Ok(()),
        _ => Err(ModelError::Input(format!(
            "expected one image, got pixels of shape {:?}",
            pixels.dims()
        ))),
    }
}

fn check_text(ids: &[u32]) -> Result<()> {
    match ids.is_empty() {
        true => Err(ModelError::Input("empty token sequence".into())),
        false => Ok(()),
    }
}

/// Which head a checkpoint's weights hold, for configs that do not say.
fn head_of_weights(root: &Weights) -> Option<BlipHead> {
    let decoder = root.contains("text_decoder.bert.embeddings.word_embeddings.weight");
    let encoder = root.contains("text_encoder.embeddings.word_embeddings.weight");
    match (encoder, decoder, root.contains("itm_head.weight")) {
        (true, true, _) => Some(BlipHead::QuestionAnswering),
        (true, false, true) => Some(BlipHead::Retrieval),
        (false, true, _) => Some(BlipHead::Captioning),
        _ => None,
    }
}

/// BLIP's text decoder reading a fixed set of inputs (images, or encoded
/// questions), as [`crate::generate`] drives it: one cache per row.
pub struct TextGenerator<'a> {
    text: &'a BlipTextModel,
    lm: &'a LmHead,
    contexts: Vec<EncoderContext>,
}

impl TextGenerator<'_> {
    /// Logits of each sequence's last new token, rows × vocab.
    fn run(&self, tokens: &[&[u32]], state: &mut [SequenceCache]) -> Result<Vec<f32>> {
        let hidden = self.text.decode(tokens, state, &self.contexts)?;
        let mut last = Vec::with_capacity(tokens.len());
        let mut end = 0u32;
        for t in tokens {
            end += t.len() as u32;
            last.push(end - 1);
        }
        let last = Tensor::new(last.as_slice(), hidden.device())?;
        let logits = self.lm.forward(&hidden.index_select(&last, 0)?)?;
        Ok(logits.flatten_all()?.to_vec1::<f32>()?)
    }
}

impl Decoder for TextGenerator<'_> {
    type State = Vec<SequenceCache>;

    fn vocab_size(&self) -> usize {
        self.text.config().vocab_size
    }

    fn max_positions(&self) -> Option<usize> {
        Some(self.text.config().max_positions)
    }

    fn start(&self, prompts: &[Vec<u32>], items: &[usize]) -> Result<(Self::State, Vec<f32>)> {
        if prompts.len() != items.len() || prompts.iter().any(Vec::is_empty) {
            return Err(ModelError::Input(
                "one non-empty prompt per row is needed".into(),
            ));
        }
        let mut state: Vec<SequenceCache> =
            items.iter().map(|&i| self.text.new_sequence(i)).collect();
        let tokens: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        let logits = self.run(&tokens, &mut state)?;
        Ok((state, logits))
    }

    fn step(&self, state: &mut Self::State, tokens: &[u32]) -> Result<Vec<f32>> {
        let tokens: Vec<&[u32]> = tokens.iter().map(std::slice::from_ref).collect();
        self.run(&tokens, state)
    }

    fn select_rows(&self, state: &mut Self::State, rows: &[usize]) -> Result<()> {
        select_sequences(state, rows)
    }
}
