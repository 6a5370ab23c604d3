//! The native `Model`: a [`LoadedModel`] with the options its calls use,
//! frozen (no method changes it) and `Sync`, so Python threads share it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use pyo3::exceptions::{PyTypeError, PyUnicodeEncodeError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyString};
use seer_engine::prompts::templates as template_set;
use seer_engine::{
    DeviceChoice, EmbedOptions, LoadOptions, LoadedModel, Precision, ZeroShotClassifier,
};
use seer_image::DecodeLimits;

use crate::batch::{embed_images, interrupted, Row};
use crate::convert::{errors, floats, matrix, pool_error, seer_error, Int};
use crate::input::{special_file, ImageInput};
use crate::pool;

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
        let device = DeviceChoice::parse(device).map_err(seer_error)?;
        let precision = Precision::parse(precision).ok_or_else(|| {
            seer_error(format!("unknown precision '{precision}' (f32, bf16, int8)"))
        })?;
        // A FIFO would block the load forever; a device is no tokenizer.
        if let Some((path, kind)) = tokenizer
            .as_deref()
            .and_then(|path| Some((path, special_file(path)?)))
        {
            return Err(seer_error(format!(
                "cannot load model '{}': tokenizer {}: not a regular file ({kind})",
                spec.display(),
                path.display()
            )));
        }
        let load = LoadOptions {
            tokenizer,
            progress: false,
            device,
            precision,
        };
        seer_hub::set_offline(offline);
        let (model, name) = py
            .detach(|| pool::run_transient(|| load_model(&spec, &load)))
            .map_err(pool_error)?
            .map_err(|e| seer_error(format!("cannot load model '{}': {e}", spec.display())))?;
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
            name,
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
    fn embed_images<'py>(
        &self,
        py: Python<'py>,
        inputs: Vec<ImageInput>,
        normalize: bool,
        stop_on_error: bool,
    ) -> PyResult<(Bound<'py, PyByteArray>, InputErrors)> {
        let options = self.options(normalize);
        let image = self.model.image().map_err(seer_error)?;
        let rows = pool::run_interruptible(py, |cancel| {
            embed_images(image, &inputs, &options, stop_on_error, cancel)
        })?
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
                let rows = embed_images(image, &inputs, &options, stop_on_error, cancel)?;
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

/// Loads `spec` as `LoadedModel::load` does, with the name Python sees. A
/// path that is not UTF-8 can only be a folder (hub ids and aliases are
/// UTF-8): it is loaded as `seer_hub::resolve` loads a folder, from its
/// canonical path.
fn load_model(spec: &Path, options: &LoadOptions) -> seer_engine::Result<(LoadedModel, PathBuf)> {
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
    fn options(&self, normalize: bool) -> EmbedOptions {
        EmbedOptions {
            normalize,
            ..self.options.clone()
        }
    }
}
