//! The native `Model`: a [`LoadedModel`] with the options its calls use,
//! frozen (no method changes it) and `Sync`, so Python threads share it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use pyo3::exceptions::{PyTypeError, PyUnicodeEncodeError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyString};
use seer_engine::automask::AutoMaskOptions;
use seer_engine::detect::{detector_of, DetectOptions, DetectQuery};
use seer_engine::prompts::templates as template_set;
use seer_engine::segment::SegmentPrompt;
use seer_engine::video::{embed_video_file, FramesError};
use seer_engine::{
    DeviceChoice, EmbedOptions, GenerateOptions, Generated, ImageEncoder, ImageFeatures,
    LoadOptions, LoadedModel, MatchScore, Precision, ZeroShotClassifier,
};
use seer_image::DecodeLimits;

use crate::batch::{embed_images, interrupted, Outcome, Row};
use crate::convert::{errors, floats, matrix, pool_error, seer_error, Int};
use crate::input::{special_file, ImageInput};
use crate::{pool, tasks};

/// What each input's error is handed back as: `(input name, cause)`.
type InputErrors = Vec<Option<(String, String)>>;

/// One class as Python receives it: `(label, index, probability)`.
type Predicted = (String, usize, f32);

#[pyclass(frozen, module = "seer._seer", name = "Model")]
pub struct Model {
    model: LoadedModel,
    /// `model.id` as Python sees it: a folder's path that is not UTF-8 too.
    name: PathBuf,
    /// Batch size and decode limits of every call (normalisation is per call).
    options: EmbedOptions,
    /// Whether it runs on the CPU (detection then runs an image per thread).
    on_cpu: bool,
    /// The image `segment` embedded last (SAM), for the next prompt on it.
    last_segmented: tasks::LastEmbedding,
}

/// Prompt templates: a built-in set or file (`default`, `imagenet`, a path,
/// `prompts.json#DATASET`), or the templates themselves.
pub enum Templates {
    Spec(String),
    List(Vec<String>),
}

impl<'a, 'py> FromPyObject<'a, 'py> for Templates {
    type Error = PyErr;

    /// A `str`, or a sequence of `str` (not `bytes`, whose items are ints).
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(spec) = obj.cast::<PyString>() {
            return Ok(Self::Spec(spec.to_cow()?.into_owned()));
        }
        obj.extract::<Vec<String>>().map(Self::List).map_err(|e| {
            // Text that UTF-8 cannot hold is a bad value, not a wrong type:
            // the Python side names the template.
            if e.is_instance_of::<PyUnicodeEncodeError>(obj.py()) {
                return e;
            }
            let kind = obj
                .get_type()
                .name()
                .map_or_else(|_| "?".to_string(), |n| n.to_string());
            PyTypeError::new_err(format!(
                "templates must be a str (default, imagenet, a file) or a list of str \
                 templates, got {kind}"
            ))
        })
    }
}

impl Templates {
    fn resolve(self) -> seer_engine::Result<Vec<String>> {
        match self {
            Self::Spec(spec) => {
                refuse_special(&spec, "templates")?;
                template_set(&spec)
            }
            // The rule `seer classify` applies to a file's templates: the class
            // name fills exactly one `{}`.
            Self::List(list) => match list.iter().find(|t| t.matches("{}").count() != 1) {
                Some(bad) => {
                    let found = bad.matches("{}").count();
                    Err(seer_engine::EngineError::Invalid(if found == 0 {
                        format!("template '{bad}' has no {{}} placeholder for the class name")
                    } else {
                        format!(
                            "template '{bad}' has {found} {{}} placeholders; the class name fills one"
                        )
                    }))
                }
                None => Ok(list),
            },
        }
    }
}

/// Refuses a FIFO, socket or device named as a file seer reads whole (a
/// templates file, `FILE#DATASET` too, or a tokenizer): reading a FIFO with no
/// writer would block the call forever.
fn refuse_special(spec: &str, what: &str) -> seer_engine::Result<()> {
    let whole = Path::new(spec);
    // `FILE#DATASET` names FILE, unless the whole spec is a path.
    let file = match spec.rsplit_once('#') {
        Some((file, _)) if !whole.exists() => Path::new(file),
        _ => whole,
    };
    match special_file(file) {
        None => Ok(()),
        Some(kind) => Err(seer_engine::EngineError::Invalid(format!(
            "{what} {}: not a regular file ({kind})",
            file.display()
        ))),
    }
}

#[pymethods]
impl Model {
    /// Loads `spec` (a folder, an alias or a hub id) as `seer --model` does;
    /// a folder's path need not be UTF-8 (`str` with surrogate escapes, or
    /// `os.PathLike`).
    /// `offline` forbids the network for this load (the process-wide switch
    /// of seer's hub client, which the Python side sets from
    /// `HF_HUB_OFFLINE` unless told).
    #[new]
    #[pyo3(signature = (spec, device = "cpu", precision = "f32", *, batch_size = Int::Value(32), tokenizer = None, offline = false, max_pixels = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        spec: PathBuf,
        device: &str,
        precision: &str,
        batch_size: Int,
        tokenizer: Option<PathBuf>,
        offline: bool,
        max_pixels: Option<Int>,
    ) -> PyResult<Self> {
        let batch_size = batch_size.count("batch_size")?;
        let max_pixels = max_pixels
            .map(|m| m.at_least_one("max_pixels", u64::MAX))
            .transpose()?;
        let load = load_options(
            device,
            precision,
            tokenizer,
            &format!("model '{}'", spec.display()),
        )?;
        seer_hub::set_offline(offline);
        let (model, name) = py
            .detach(|| pool::run_transient(|| load_model(&spec, &load)))
            .map_err(pool_error)?
            .map_err(|e| seer_error(format!("cannot load model '{}': {e}", spec.display())))?;
        let limits = decode_limits(max_pixels);
        Ok(Self {
            model,
            name,
            options: EmbedOptions {
                batch_size,
                normalize: true,
                limits,
            },
            on_cpu: load.device == DeviceChoice::Cpu,
            last_segmented: tasks::LastEmbedding::default(),
        })
    }

    /// Length of the embeddings.
    #[getter]
    fn dim(&self) -> usize {
        self.model.embed_dim()
    }

    /// The hub id, or the model folder's full path (a `str` with surrogate
    /// escapes where the path is not UTF-8, as `os.fsdecode` gives).
    #[getter]
    fn name(&self) -> &OsStr {
        self.name.as_os_str()
    }

    /// The model's family in seer's registry (`clip`, `siglip`, `dinov2`).
    #[getter]
    fn family(&self) -> &'static str {
        self.model.family
    }

    #[getter]
    fn batch_size(&self) -> usize {
        self.options.batch_size
    }

    /// The largest image accepted, in pixels (`max_pixels`, or the default).
    #[getter]
    fn max_pixels(&self) -> u64 {
        self.options.limits.max_pixels
    }

    /// Embeds the inputs in order: a row-major float32 matrix (a failed input's
    /// row NaN) and each input's error. With `stop_on_error`, stops after the
    /// first batch that holds a failed input: fewer rows come back then.
    /// `features` as `seer embed --features`: `cls` (the embedding), `mean`
    /// (the patch tokens' mean) or `patch` (every patch token: a row is
    /// [`Self::patch_grid`]'s rows × columns × `dim` values).
    #[pyo3(signature = (inputs, normalize, stop_on_error, features = "cls"))]
    fn embed_images<'py>(
        &self,
        py: Python<'py>,
        inputs: Vec<ImageInput>,
        normalize: bool,
        stop_on_error: bool,
        features: &str,
    ) -> PyResult<(Bound<'py, PyByteArray>, InputErrors)> {
        let options = self.options(normalize);
        let features = image_features(features)?;
        let image = self.model.image_for(features).map_err(seer_error)?;
        let row_len = row_len(image, features)?;
        let rows = pool::run_interruptible(py, |cancel| {
            embed_images(image, &inputs, &options, features, stop_on_error, cancel)
        })?
        .map_err(seer_error)?;
        Ok((matrix(py, &rows, row_len)?, errors(&rows)))
    }

    /// Embeds the frames ffmpeg samples from the video at `path` as `seer
    /// embed` does (every `interval` seconds, at most `max_frames`): their
    /// times in seconds and a row-major float32 matrix of their `features`.
    #[pyo3(signature = (path, interval, max_frames, ffmpeg, normalize, features))]
    #[allow(clippy::too_many_arguments)]
    fn embed_video<'py>(
        &self,
        py: Python<'py>,
        path: PathBuf,
        interval: f64,
        max_frames: usize,
        ffmpeg: Option<PathBuf>,
        normalize: bool,
        features: &str,
    ) -> PyResult<(Vec<f64>, Bound<'py, PyByteArray>)> {
        let features = image_features(features)?;
        let image = self.model.image_for(features).map_err(seer_error)?;
        let row_len = row_len(image, features)?;
        let ffmpeg = seer_video::Ffmpeg::find(ffmpeg.as_deref()).map_err(|e| {
            seer_error(format!(
                "{}: reading a video's frames needs ffmpeg: {e}",
                path.display()
            ))
        })?;
        let mut sampling = seer_video::Sampling {
            interval,
            max_frames,
            ..seer_video::Sampling::default()
        };
        // max_pixels guards frames as it guards photos (as in `seer embed`).
        sampling.limits.max_pixels = self.options.limits.max_pixels;
        let batch_size = self.options.batch_size;
        let frames = pool::run_interruptible(py, |cancel| {
            let mut frames = Vec::new();
            embed_video_file(
                image,
                &ffmpeg,
                &path,
                &sampling,
                batch_size,
                features,
                normalize,
                |batch| {
                    if pool::cancelled(cancel) {
                        return Err(interrupted());
                    }
                    frames.extend(batch);
                    Ok(())
                },
            )?;
            Ok::<_, FramesError<seer_engine::EngineError>>(frames)
        })?
        .map_err(|e| match e {
            FramesError::Video(e) => seer_error(e),
            FramesError::Model(e) => seer_error(format!(
                "{}: the model failed on its frames: {e}",
                path.display()
            )),
            FramesError::Sink(e) => seer_error(e),
        })?;
        let times = frames.iter().map(|(t, _)| *t).collect();
        let rows: Vec<Option<&[f32]>> = frames.iter().map(|(_, v)| Some(v.as_slice())).collect();
        Ok((times, floats(py, &rows, row_len)?))
    }

    /// `(rows, columns)` of patch tokens per image, for models with patch
    /// features (DINOv2); `None` for the others.
    #[getter]
    fn patch_grid(&self) -> Option<(usize, usize)> {
        self.model.image.as_ref().and_then(|i| i.patch_grid())
    }

    /// Embeds texts in order: a row-major float32 matrix.
    fn embed_texts<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        normalize: bool,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        let options = self.options(normalize);
        let text = self.model.text().map_err(seer_error)?;
        // The engine's `embed_texts` batches, one at a time so that Ctrl-C
        // stops the call between two.
        let vectors = pool::run_interruptible(py, |cancel| {
            let mut vectors = Vec::with_capacity(texts.len());
            for batch in texts.chunks(options.batch_size.max(1)) {
                if pool::cancelled(cancel) {
                    return Err(interrupted());
                }
                vectors.extend(text.embed_text_batch(batch, options.normalize)?);
            }
            Ok(vectors)
        })?
        .map_err(seer_error)?;
        let rows: Vec<Option<&[f32]>> = vectors.iter().map(|v| Some(v.as_slice())).collect();
        floats(py, &rows, text.embed_dim())
    }

    /// Zero-shot classifies the inputs as `seer classify` does: each input's
    /// `top_k` classes, best first (`None` for a failed input), and each
    /// input's error.
    fn classify(
        &self,
        py: Python<'_>,
        inputs: Vec<ImageInput>,
        labels: Vec<String>,
        templates: Templates,
        top_k: Int,
        stop_on_error: bool,
    ) -> PyResult<(Vec<Option<Vec<Predicted>>>, InputErrors)> {
        let top_k = top_k.count("top_k")?;
        let options = self.options(true);
        let text = self.model.text().map_err(seer_error)?;
        let image = self.model.image().map_err(seer_error)?;
        let templates = templates.resolve().map_err(seer_error)?;
        let classified = pool::run_interruptible(
            py,
            |cancel| -> seer_engine::Result<(Vec<Row>, ZeroShotClassifier)> {
                let classifier =
                    ZeroShotClassifier::new(text, &labels, &templates, options.batch_size)?;
                let rows = embed_images(
                    image,
                    &inputs,
                    &options,
                    ImageFeatures::Embedding,
                    stop_on_error,
                    cancel,
                )?;
                Ok((rows, classifier))
            },
        )?
        .map_err(seer_error)?;
        let (rows, classifier) = classified;
        let predictions = rows
            .iter()
            .map(|row| {
                row.as_ref().ok().map(|embedding| {
                    let probabilities = classifier.probabilities(embedding);
                    classifier
                        .top_k(&probabilities, top_k)
                        .into_iter()
                        .map(|p| (p.label, p.index, p.probability))
                        .collect()
                })
            })
            .collect();
        Ok((predictions, errors(&rows)))
    }

    /// Captions the inputs as `seer caption` does: each input's caption
    /// (`None` for a failed input) and each input's error.
    #[pyo3(signature = (inputs, prompt, beams, max_new_tokens, stop_on_error))]
    fn caption(
        &self,
        py: Python<'_>,
        inputs: Vec<ImageInput>,
        prompt: Option<String>,
        beams: Option<Int>,
        max_new_tokens: Option<Int>,
        stop_on_error: bool,
    ) -> PyResult<(Vec<Option<String>>, InputErrors)> {
        let generate = generate_options(beams, max_new_tokens)?;
        let captioner = self.model.captioner().map_err(seer_error)?;
        if prompt.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return Err(seer_error(
                "prompt is empty: give the words every caption starts with, or None",
            ));
        }
        captioner
            .check_prompt(prompt.as_deref(), "prompt", &generate)
            .map_err(seer_error)?;
        let captions = pool::run_interruptible(py, |cancel| {
            tasks::caption(
                captioner,
                &inputs,
                prompt.as_deref(),
                &generate,
                &self.batches(stop_on_error, cancel),
            )
        })?
        .map_err(seer_error)?;
        Ok(texts_and_errors(captions))
    }

    /// Answers `questions[i]` about input `i` as `seer ask` does.
    #[pyo3(signature = (inputs, questions, beams, max_new_tokens, stop_on_error))]
    fn ask(
        &self,
        py: Python<'_>,
        inputs: Vec<ImageInput>,
        questions: Vec<String>,
        beams: Option<Int>,
        max_new_tokens: Option<Int>,
        stop_on_error: bool,
    ) -> PyResult<(Vec<Option<String>>, InputErrors)> {
        let generate = generate_options(beams, max_new_tokens)?;
        let answerer = self.model.answerer().map_err(seer_error)?;
        if questions.len() != inputs.len() {
            return Err(seer_error(format!(
                "{} questions for {} images",
                questions.len(),
                inputs.len()
            )));
        }
        for (i, question) in questions.iter().enumerate() {
            let what = format!("questions[{i}]");
            if question.trim().is_empty() {
                return Err(seer_error(format!("{what} is empty")));
            }
            answerer
                .check_question(question, &what, &generate)
                .map_err(seer_error)?;
        }
        let answers = pool::run_interruptible(py, |cancel| {
            tasks::answer(
                answerer,
                &inputs,
                &questions,
                &generate,
                &self.batches(stop_on_error, cancel),
            )
        })?
        .map_err(seer_error)?;
        Ok(texts_and_errors(answers))
    }

    /// Scores every input against every text as `seer match` does: the
    /// image-text matching probabilities and the contrastive cosines, each
    /// a row-major (inputs × texts) float32 matrix (a failed input's row
    /// NaN), and each input's error.
    fn match_texts<'py>(
        &self,
        py: Python<'py>,
        inputs: Vec<ImageInput>,
        texts: Vec<String>,
        stop_on_error: bool,
    ) -> PyResult<(
        Bound<'py, PyByteArray>,
        Bound<'py, PyByteArray>,
        InputErrors,
    )> {
        let matcher = self.model.matcher().map_err(seer_error)?;
        for (i, text) in texts.iter().enumerate() {
            let what = format!("texts[{i}]");
            if text.trim().is_empty() {
                return Err(seer_error(format!("{what} is empty")));
            }
            matcher.check_text(text, &what).map_err(seer_error)?;
        }
        let scores = pool::run_interruptible(py, |cancel| {
            tasks::match_texts(
                matcher,
                &inputs,
                &texts,
                &self.batches(stop_on_error, cancel),
            )
        })?
        .map_err(seer_error)?;
        let field = |pick: fn(&MatchScore) -> f32| -> Vec<Option<Vec<f32>>> {
            scores
                .iter()
                .map(|row| row.as_ref().ok().map(|r| r.iter().map(pick).collect()))
                .collect()
        };
        let (itm, cosine) = (field(|s| s.itm_probability), field(|s| s.similarity));
        Ok((
            floats(py, &borrowed(&itm), texts.len())?,
            floats(py, &borrowed(&cosine), texts.len())?,
            errors(&scores),
        ))
    }

    /// Detects `labels` (or what `image_query` shows) in each input as `seer
    /// detect` does: each input's detections, best first, as `(label,
    /// label index, score, (x0, y0, x1, y1))` (`None` for a failed input),
    /// and each input's error.
    #[pyo3(signature = (inputs, labels, image_query, threshold, nms, stop_on_error))]
    #[allow(clippy::too_many_arguments)]
    fn detect(
        &self,
        py: Python<'_>,
        inputs: Vec<ImageInput>,
        labels: Option<Vec<String>>,
        image_query: Option<ImageInput>,
        threshold: Option<f32>,
        nms: f32,
        stop_on_error: bool,
    ) -> PyResult<(Vec<Option<Vec<Detected>>>, InputErrors)> {
        let detector = detector_of(&self.model).map_err(seer_error)?;
        let query = match (labels, image_query) {
            (Some(labels), None) => DetectQuery::Texts(labels),
            (None, Some(query)) => DetectQuery::Image(
                query
                    .decoded(&self.options.limits)
                    .map_err(|e| seer_error(format!("image_query ({}): {}", e.name, e.cause)))?,
            ),
            _ => return Err(seer_error("give labels or an image_query, not both")),
        };
        let options = DetectOptions {
            threshold: threshold.unwrap_or_else(|| query.default_threshold()),
            nms_iou: nms,
        };
        let on_cpu = self.on_cpu;
        let found = pool::run_interruptible(py, |cancel| {
            let batches = self.batches(stop_on_error, cancel);
            tasks::detect(&*detector, &inputs, &query, &options, on_cpu, &batches)
        })?
        .map_err(seer_error)?;
        let detections = found
            .iter()
            .map(|row| {
                row.as_ref().ok().map(|found| {
                    found
                        .iter()
                        .map(|d| (d.label.clone(), d.label_index, d.score, d.bbox))
                        .collect()
                })
            })
            .collect();
        Ok((detections, errors(&found)))
    }

    /// The masks of one prompt on one image as `seer segment` gives them:
    /// the image's `(width, height)` and per mask `(object, iou, mask, logits)`,
    /// the mask `height × width` bytes of 0 or 1, the logits 256 × 256 float32.
    #[pyo3(signature = (input, points, boxes, mask_logits, multimask))]
    fn segment<'py>(
        &self,
        py: Python<'py>,
        input: ImageInput,
        points: Vec<(f32, f32, bool)>,
        boxes: Vec<[f32; 4]>,
        mask_logits: Option<Vec<f32>>,
        multimask: bool,
    ) -> PyResult<SegmentOut<'py, (usize, f32)>> {
        let segmenter = self.model.segmenter().map_err(seer_error)?;
        let prompt = SegmentPrompt {
            points,
            boxes,
            mask_logits,
        };
        let limits = &self.options.limits;
        let result = pool::run_interruptible(py, |_| {
            let last = &self.last_segmented;
            tasks::segment(segmenter, last, &input, &prompt, multimask, limits)
        })?
        .map_err(task_error)?;
        let masks = result
            .masks
            .iter()
            .map(|m| {
                let logits: [Option<&[f32]>; 1] = [Some(&m.low_res_logits)];
                Ok((
                    (m.object, m.iou),
                    mask_bytes(py, &m.mask),
                    floats(py, &logits, m.low_res_logits.len())?,
                ))
            })
            .collect::<PyResult<_>>()?;
        Ok((result.width, result.height, masks))
    }

    /// Every object of one image without a prompt, as `seer segment --auto`
    /// finds them, best first: the image's `(width, height)` and per mask
    /// `((iou, stability score, box, crop box, point), mask)`, the mask as in
    /// [`Self::segment`].
    #[pyo3(signature = (input, points_per_side, pred_iou_thresh, stability_score_thresh, stability_score_offset, box_nms_thresh, crop_n_layers, crop_overlap_ratio, crop_n_points_downscale_factor))]
    #[allow(clippy::too_many_arguments)]
    fn generate_masks<'py>(
        &self,
        py: Python<'py>,
        input: ImageInput,
        points_per_side: usize,
        pred_iou_thresh: f32,
        stability_score_thresh: f32,
        stability_score_offset: f32,
        box_nms_thresh: f32,
        crop_n_layers: usize,
        crop_overlap_ratio: f64,
        crop_n_points_downscale_factor: usize,
    ) -> PyResult<SegmentOut<'py, AutoFacts>> {
        let segmenter = self.model.segmenter().map_err(seer_error)?;
        let options = AutoMaskOptions {
            points_per_side,
            pred_iou_thresh,
            stability_score_thresh,
            stability_score_offset,
            nms_thresh: box_nms_thresh,
            crop_n_layers,
            crop_overlap_ratio,
            crop_n_points_downscale_factor,
            ..AutoMaskOptions::default()
        };
        options.validate().map_err(seer_error)?;
        let limits = &self.options.limits;
        let result = pool::run_interruptible(py, |cancel| {
            tasks::generate_masks(segmenter, &input, &options, limits, cancel)
        })?
        .map_err(task_error)?;
        let masks = result
            .masks
            .iter()
            .map(|m| {
                let facts = (
                    m.mask.iou,
                    m.stability_score,
                    m.box_xyxy,
                    m.crop_box,
                    m.point,
                );
                let logits: [Option<&[f32]>; 0] = [];
                Ok((facts, mask_bytes(py, &m.mask.mask), floats(py, &logits, 0)?))
            })
            .collect::<PyResult<_>>()?;
        Ok((result.width, result.height, masks))
    }

    /// The model itself: it never changes, so a copy would be the same.
    fn __copy__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The model itself, as [`Self::__copy__`].
    fn __deepcopy__(slf: Py<Self>, _memo: &Bound<'_, PyAny>) -> Py<Self> {
        slf
    }

    /// The name as Rust quotes it: a path's bytes that are not UTF-8 as
    /// `\xFF` escapes.
    fn __repr__(&self) -> String {
        format!(
            "seer.Model(name={:?}, family={:?}, dim={})",
            self.name,
            self.model.family,
            self.model.embed_dim()
        )
    }
}

/// A load's options from the arguments `Model` and `Index` take, refusing a
/// tokenizer that is a FIFO, socket or device (reading a FIFO would block the
/// load forever); `what` names what would have been loaded.
pub(crate) fn load_options(
    device: &str,
    precision: &str,
    tokenizer: Option<PathBuf>,
    what: &str,
) -> PyResult<LoadOptions> {
    let device = DeviceChoice::parse(device).map_err(seer_error)?;
    let precision = Precision::parse(precision)
        .ok_or_else(|| seer_error(format!("unknown precision '{precision}' (f32, bf16, int8)")))?;
    if let Some((path, kind)) = tokenizer
        .as_deref()
        .and_then(|path| Some((path, special_file(path)?)))
    {
        return Err(seer_error(format!(
            "cannot load {what}: tokenizer {}: not a regular file ({kind})",
            path.display()
        )));
    }
    Ok(LoadOptions {
        tokenizer,
        progress: false,
        device,
        precision,
    })
}

/// The decode limits with `max_pixels` (None: the default).
pub(crate) fn decode_limits(max_pixels: Option<u64>) -> DecodeLimits {
    let defaults = DecodeLimits::default();
    DecodeLimits {
        max_pixels: max_pixels.unwrap_or(defaults.max_pixels),
        ..defaults
    }
}

/// Loads `spec` as `LoadedModel::load` does, with the name Python sees. A
/// path that is not UTF-8 can only be a folder (hub ids and aliases are
/// UTF-8): it is loaded as `seer_hub::resolve` loads a folder, from its
/// canonical path.
pub(crate) fn load_model(
    spec: &Path,
    options: &LoadOptions,
) -> seer_engine::Result<(LoadedModel, PathBuf)> {
    if let Some(spec) = spec.to_str() {
        let model = LoadedModel::load(spec, options)?;
        let name = PathBuf::from(&model.id);
        return Ok((model, name));
    }
    if !spec.is_dir() {
        let error = if spec.exists() {
            seer_hub::HubError::NotAFolder(spec.to_path_buf())
        } else {
            seer_hub::HubError::NoSuchFolder(spec.to_path_buf())
        };
        return Err(error.into());
    }
    let dir = spec.canonicalize().unwrap_or_else(|_| spec.to_path_buf());
    let mut model = LoadedModel::load_dir(&dir, options)?;
    model.id = dir.display().to_string();
    Ok((model, dir))
}

impl Model {
    /// The loaded model and its batch size and limits (an `Index` reranks
    /// with them).
    pub(crate) fn loaded(&self) -> (&LoadedModel, &EmbedOptions) {
        (&self.model, &self.options)
    }

    fn options(&self, normalize: bool) -> EmbedOptions {
        EmbedOptions {
            normalize,
            ..self.options.clone()
        }
    }

    /// How a task call runs its inputs: this model's batch size and limits.
    fn batches<'a>(&'a self, stop_on_error: bool, cancel: &'a AtomicBool) -> tasks::Batches<'a> {
        tasks::Batches {
            batch_size: self.options.batch_size,
            limits: &self.options.limits,
            stop_on_error,
            cancel,
        }
    }
}

/// One detection as Python receives it: `(label, label index, score, box)`.
type Detected = (String, usize, f32, [f32; 4]);

/// What an automatic mask says besides its pixels: `(iou, stability score,
/// box, crop box, point)`.
type AutoFacts = (f32, f32, [u32; 4], [u32; 4], (f64, f64));

/// A segmentation as Python receives it: the image's width and height, and
/// per mask its facts, its pixels (0/1 bytes) and its logits (float32).
type SegmentOut<'py, F> = (
    u32,
    u32,
    Vec<(F, Bound<'py, PyByteArray>, Bound<'py, PyByteArray>)>,
);

/// Values in one row of `features` from `image`.
fn row_len(image: &dyn ImageEncoder, features: ImageFeatures) -> PyResult<usize> {
    match (features, image.patch_grid()) {
        (ImageFeatures::PatchGrid, Some((h, w))) => Ok(h * w * image.embed_dim()),
        (ImageFeatures::PatchGrid, None) => Err(seer_error(
            "internal error: a patch-feature tower without a grid",
        )),
        _ => Ok(image.embed_dim()),
    }
}

/// `seer embed --features`' names.
fn image_features(name: &str) -> PyResult<ImageFeatures> {
    match name {
        "cls" => Ok(ImageFeatures::Embedding),
        "mean" => Ok(ImageFeatures::PatchMean),
        "patch" => Ok(ImageFeatures::PatchGrid),
        other => Err(seer_error(format!(
            "unknown features '{other}' (cls, mean, patch)"
        ))),
    }
}

/// `beams` and `max_new_tokens` as the engine takes them: each at least 1.
fn generate_options(beams: Option<Int>, max_new_tokens: Option<Int>) -> PyResult<GenerateOptions> {
    Ok(GenerateOptions {
        beams: beams.map(|b| b.count("beams")).transpose()?,
        max_new_tokens: max_new_tokens
            .map(|m| m.count("max_new_tokens"))
            .transpose()?,
    })
}

/// Generated texts as Python receives them (`None` for a failed input), and
/// each input's error.
fn texts_and_errors(outcomes: Vec<Outcome<Generated>>) -> (Vec<Option<String>>, InputErrors) {
    let failures = errors(&outcomes);
    let texts = outcomes
        .into_iter()
        .map(|o| o.ok().map(|g| g.text))
        .collect();
    (texts, failures)
}

/// Rows as [`floats`] takes them.
fn borrowed(rows: &[Option<Vec<f32>>]) -> Vec<Option<&[f32]>> {
    rows.iter().map(|v| v.as_deref()).collect()
}

/// A mask as bytes of 0 or 1 (numpy reads them as `bool` without a copy).
fn mask_bytes<'py>(py: Python<'py>, mask: &[bool]) -> Bound<'py, PyByteArray> {
    let bytes: Vec<u8> = mask.iter().map(|&m| u8::from(m)).collect();
    PyByteArray::new(py, &bytes)
}

/// A one-image task's error: the input's, named as the batch calls name
/// theirs (`input 0 (NAME): cause`), or the model's.
fn task_error(error: tasks::TaskError) -> PyErr {
    match error {
        tasks::TaskError::Input(e) => seer_error(format!("input 0 ({}): {}", e.name, e.cause)),
        tasks::TaskError::Model(e) => seer_error(e),
    }
}
