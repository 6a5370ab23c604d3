//! The native `Model`: a [`LoadedModel`] with the options its calls use,
//! frozen (no method changes it) and `Sync`, so Python threads share it.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyByteArray;
use seer_engine::prompts::templates as template_set;
use seer_engine::{
    DeviceChoice, EmbedOptions, LoadOptions, LoadedModel, Precision, ZeroShotClassifier,
};
use seer_image::DecodeLimits;

use crate::batch::{embed_images, Row};
use crate::convert::{errors, floats, matrix, pool_error, seer_error};
use crate::input::ImageInput;
use crate::pool;

/// What each input's error is handed back as: `(input name, cause)`.
type InputErrors = Vec<Option<(String, String)>>;

/// One class as Python receives it: `(label, index, probability)`.
type Predicted = (String, usize, f32);

#[pyclass(frozen, module = "seer._seer", name = "Model")]
pub struct Model {
    model: LoadedModel,
    /// Batch size and decode limits of every call (normalisation is per call).
    options: EmbedOptions,
}

/// Prompt templates: a built-in set or file (`default`, `imagenet`, a path,
/// `prompts.json#DATASET`), or the templates themselves.
#[derive(FromPyObject)]
pub enum Templates {
    Spec(String),
    List(Vec<String>),
}

impl Templates {
    fn resolve(self) -> seer_engine::Result<Vec<String>> {
        match self {
            Self::Spec(spec) => template_set(&spec),
            Self::List(list) => match list.iter().find(|t| !t.contains("{}")) {
                Some(bad) => Err(seer_engine::EngineError::Invalid(format!(
                    "template '{bad}' has no {{}} placeholder for the class name"
                ))),
                None => Ok(list),
            },
        }
    }
}

#[pymethods]
impl Model {
    /// Loads `spec` (a folder, an alias or a hub id) as `seer --model` does.
    /// `offline` forbids the network for this load (the process-wide switch
    /// of seer's hub client, which the Python side sets from
    /// `HF_HUB_OFFLINE` unless told).
    #[new]
    #[pyo3(signature = (spec, device = "cpu", precision = "f32", *, batch_size = 32, tokenizer = None, offline = false, max_pixels = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        spec: String,
        device: &str,
        precision: &str,
        batch_size: usize,
        tokenizer: Option<PathBuf>,
        offline: bool,
        max_pixels: Option<u64>,
    ) -> PyResult<Self> {
        if batch_size == 0 {
            return Err(seer_error("batch_size must be at least 1"));
        }
        if max_pixels == Some(0) {
            return Err(seer_error("max_pixels must be at least 1"));
        }
        let device = DeviceChoice::parse(device).map_err(seer_error)?;
        let precision = Precision::parse(precision).ok_or_else(|| {
            seer_error(format!("unknown precision '{precision}' (f32, bf16, int8)"))
        })?;
        let load = LoadOptions {
            tokenizer,
            progress: false,
            device,
            precision,
        };
        seer_hub::set_offline(offline);
        let model = py
            .detach(|| pool::run_transient(|| LoadedModel::load(&spec, &load)))
            .map_err(pool_error)?
            .map_err(|e| seer_error(format!("cannot load model '{spec}': {e}")))?;
        if model.image.is_none() && model.text.is_none() {
            return Err(seer_error(format!(
                "model '{}' ({}) gives no embeddings: seer.Model takes an embedding model (CLIP, SigLIP, DINOv2)",
                model.id, model.family
            )));
        }
        let defaults = DecodeLimits::default();
        let limits = DecodeLimits {
            max_pixels: max_pixels.unwrap_or(defaults.max_pixels),
            ..defaults
        };
        Ok(Self {
            model,
            options: EmbedOptions {
                batch_size,
                normalize: true,
                limits,
            },
        })
    }

    /// Length of the embeddings.
    #[getter]
    fn dim(&self) -> usize {
        self.model.embed_dim()
    }

    /// The hub id, or the model folder's full path.
    #[getter]
    fn name(&self) -> &str {
        &self.model.id
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
    fn embed_images<'py>(
        &self,
        py: Python<'py>,
        inputs: Vec<ImageInput>,
        normalize: bool,
        stop_on_error: bool,
    ) -> PyResult<(Bound<'py, PyByteArray>, InputErrors)> {
        let options = self.options(normalize);
        let image = self.model.image().map_err(seer_error)?;
        let rows = py
            .detach(|| pool::run(|| embed_images(image, &inputs, &options, stop_on_error)))
            .map_err(pool_error)?
            .map_err(seer_error)?;
        Ok((matrix(py, &rows, image.embed_dim())?, errors(&rows)))
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
        let vectors = py
            .detach(|| pool::run(|| text.embed_texts(&texts, &options)))
            .map_err(pool_error)?
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
        top_k: usize,
        stop_on_error: bool,
    ) -> PyResult<(Vec<Option<Vec<Predicted>>>, InputErrors)> {
        let options = self.options(true);
        let text = self.model.text().map_err(seer_error)?;
        let image = self.model.image().map_err(seer_error)?;
        let templates = templates.resolve().map_err(seer_error)?;
        let classified = py
            .detach(|| {
                pool::run(|| -> seer_engine::Result<(Vec<Row>, ZeroShotClassifier)> {
                    let classifier =
                        ZeroShotClassifier::new(text, &labels, &templates, options.batch_size)?;
                    let rows = embed_images(image, &inputs, &options, stop_on_error)?;
                    Ok((rows, classifier))
                })
            })
            .map_err(pool_error)?
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

    fn __repr__(&self) -> String {
        format!(
            "seer.Model(name={:?}, family={:?}, dim={})",
            self.model.id,
            self.model.family,
            self.model.embed_dim()
        )
    }
}

impl Model {
    fn options(&self, normalize: bool) -> EmbedOptions {
        EmbedOptions {
            normalize,
            ..self.options.clone()
        }
    }
}
