//! The tasks of the families that do more than embed, as the commands run
//! them: captions and answers (BLIP), image–text matching (BLIP retrieval),
//! detection (OWL-ViT, OWLv2) and segmentation (SAM). Each reads its inputs as
//! the matching command reads files (decoded in full, then the model's own
//! preprocessing) and runs the same engine calls, so results equal the
//! command's `--json` for the same files and batch size. Python-facing types
//! stay in `model.rs`; these functions run on a pool from [`crate::pool`].

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use seer_engine::automask::{AutoMask, AutoMaskOptions};
use seer_engine::detect::{one_item_per_thread, DetectOptions, DetectQuery, Detection, Detector};
use seer_engine::segment::{SegmentImage, SegmentMask, SegmentPrompt, Segmenter};
use seer_engine::{
    Captioner, GenerateOptions, Generated, ImageTextMatcher, MatchScore, PixelInput,
    QuestionAnswerer,
};
use seer_image::DecodeLimits;

use crate::batch::{assemble, checked_len, guarded, in_batches, Outcome};
use crate::input::{ImageInput, InputError};

/// How the task calls run: model batches of `batch_size` images, decoded
/// within `limits`, stopping after the first failed batch with
/// `stop_on_error` (see [`in_batches`]).
pub struct Batches<'a> {
    pub batch_size: usize,
    pub limits: &'a DecodeLimits,
    pub stop_on_error: bool,
    pub cancel: &'a AtomicBool,
}

impl Batches<'_> {
    /// `inputs` preprocessed for `model` in batches, each batch's pixels
    /// back to back through `run` (with each prepared input's place).
    fn pixels<T: Send>(
        &self,
        inputs: &[ImageInput],
        model: &dyn PixelInput,
        run: impl Fn(Vec<f32>, &[usize]) -> seer_engine::Result<Vec<T>> + Sync,
    ) -> seer_engine::Result<Vec<Outcome<T>>> {
        let len = model.pixels_len();
        in_batches(
            inputs,
            self.batch_size,
            self.stop_on_error,
            self.cancel,
            |input| checked_len(input, model.preprocess(&input.decoded(self.limits)?), len),
            |batch| {
                let places: Vec<usize> = batch.iter().map(|(i, _)| *i).collect();
                Ok(run(assemble(batch, len), &places)?
                    .into_iter()
                    .map(Ok)
                    .collect())
            },
        )
    }
}

/// A caption for each input (`seer caption`): `prompt` starts each one.
pub fn caption(
    captioner: &dyn Captioner,
    inputs: &[ImageInput],
    prompt: Option<&str>,
    generate: &GenerateOptions,
    batches: &Batches,
) -> seer_engine::Result<Vec<Outcome<Generated>>> {
    batches.pixels(inputs, captioner, |pixels, places| {
        captioner.caption(pixels, places.len(), prompt, generate)
    })
}

/// `questions[i]`'s answer about input `i` (`seer ask`).
pub fn answer(
    answerer: &dyn QuestionAnswerer,
    inputs: &[ImageInput],
    questions: &[String],
    generate: &GenerateOptions,
    batches: &Batches,
) -> seer_engine::Result<Vec<Outcome<Generated>>> {
    batches.pixels(inputs, answerer, |pixels, places| {
        let asked: Vec<String> = places.iter().map(|&i| questions[i].clone()).collect();
        answerer.answer(pixels, places.len(), &asked, generate)
    })
}

/// Each input scored against every text (`seer match`): per input, one
/// [`MatchScore`] per text. The pairs of one image go to the model
/// `batch_size` at a time (each pair is a copy of the image's pixels).
pub fn match_texts(
    matcher: &dyn ImageTextMatcher,
    inputs: &[ImageInput],
    texts: &[String],
    batches: &Batches,
) -> seer_engine::Result<Vec<Outcome<Vec<MatchScore>>>> {
    let len = matcher.pixels_len();
    batches.pixels(inputs, matcher, |pixels, places| {
        let mut scores = Vec::with_capacity(places.len());
        for image in pixels.chunks_exact(len.max(1)).take(places.len()) {
            let mut row = Vec::with_capacity(texts.len());
            for part in texts.chunks(batches.batch_size.max(1)) {
                let pairs: Vec<f32> = image
                    .iter()
                    .copied()
                    .cycle()
                    .take(part.len() * len)
                    .collect();
                row.extend(matcher.match_texts(pairs, part.len(), part)?);
            }
            scores.push(row);
        }
        Ok(scores)
    })
}

/// Detections in each input (`seer detect`), best first: on the CPU each
/// image of a batch is decoded and run alone on a thread, as the command runs
/// them (decoded there rather than ahead, so that a batch never holds its
/// full-size images at once). A failure of one image's forward is that
/// image's error.
pub fn detect(
    detector: &dyn Detector,
    inputs: &[ImageInput],
    query: &DetectQuery,
    options: &DetectOptions,
    on_cpu: bool,
    batches: &Batches,
) -> seer_engine::Result<Vec<Outcome<Vec<Detection>>>> {
    let prepared = detector.prepare(query)?;
    let detect_one = |&(i, ()): &(usize, ())| {
        let input = &inputs[i];
        let image = guarded(input, || input.decoded(batches.limits))?;
        detector
            .detect(&image, &prepared, options)
            .map_err(|e| InputError::new(input.name(), e.to_string()))
    };
    in_batches(
        inputs,
        batches.batch_size,
        batches.stop_on_error,
        batches.cancel,
        |_| Ok(()),
        |batch| Ok(one_item_per_thread(on_cpu, &batch, &detect_one)),
    )
}

/// The masks of one prompt on one image (`seer segment --point/--box`): the
/// image is embedded once for all its objects, or not at all when `last`
/// holds it.
pub fn segment(
    segmenter: &dyn Segmenter,
    last: &LastEmbedding,
    input: &ImageInput,
    prompt: &SegmentPrompt,
    multimask: bool,
    limits: &DecodeLimits,
) -> Result<SegmentResult<Vec<SegmentMask>>, TaskError> {
    let embedded = last.get_or_embed(segmenter, input, limits)?;
    let masks = segmenter
        .segment(&embedded, prompt, multimask)
        .map_err(TaskError::Model)?;
    Ok(SegmentResult {
        width: embedded.width,
        height: embedded.height,
        masks,
    })
}

/// The last image [`segment`] embedded, by its content
/// ([`crate::input::ReadInput::content_key`]): prompting the same image again (clicks in a
/// notebook) costs only SAM's prompt encoder and mask decoder, not its image
/// encoder, which is most of a call. One image: SAM's embedding is 4 MB
/// (256 × 64 × 64 floats), and a session prompts one image at a time.
#[derive(Default)]
pub struct LastEmbedding(Mutex<Option<([u8; 32], Arc<SegmentImage>)>>);

impl LastEmbedding {
    fn get_or_embed(
        &self,
        segmenter: &dyn Segmenter,
        input: &ImageInput,
        limits: &DecodeLimits,
    ) -> Result<Arc<SegmentImage>, TaskError> {
        let read = input.read(limits).map_err(TaskError::Input)?;
        let key = read.content_key();
        // The lock is held only to look and to store: threads embedding
        // other images do not wait for each other.
        if let (Some(key), Ok(last)) = (key, self.0.lock()) {
            if let Some((_, embedded)) = last.as_ref().filter(|(k, _)| *k == key) {
                return Ok(embedded.clone());
            }
        }
        let image = read.decoded(limits).map_err(TaskError::Input)?;
        let embedded = Arc::new(segmenter.embed(&image).map_err(TaskError::Model)?);
        if let (Some(key), Ok(mut last)) = (key, self.0.lock()) {
            *last = Some((key, embedded.clone()));
        }
        Ok(embedded)
    }
}

/// Every object in one image without a prompt (`seer segment --auto`),
/// given up between prompts once `cancel` is set (Ctrl-C).
pub fn generate_masks(
    segmenter: &dyn Segmenter,
    input: &ImageInput,
    options: &AutoMaskOptions,
    limits: &DecodeLimits,
    cancel: &AtomicBool,
) -> Result<SegmentResult<Vec<AutoMask>>, TaskError> {
    let image = input.decoded(limits).map_err(TaskError::Input)?;
    let masks = segmenter
        .auto_masks_until(&image, options, &|| crate::pool::cancelled(cancel))
        .map_err(TaskError::Model)?;
    Ok(SegmentResult {
        width: image.width(),
        height: image.height(),
        masks,
    })
}

/// Masks of one image, and the image's size.
pub struct SegmentResult<M> {
    pub width: u32,
    pub height: u32,
    pub masks: M,
}

/// Why a one-image task gave nothing: its input, or the model.
pub enum TaskError {
    Input(InputError),
    Model(seer_engine::EngineError),
}
