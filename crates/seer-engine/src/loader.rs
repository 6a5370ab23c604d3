//! Loads everything a model needs to turn files and strings into embeddings: the
//! weights, its tokenizer and its preprocessing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use seer_image::PreprocessConfig;
use seer_models::{ClipModel, Device, Layout, ModelFiles, Precision};
use seer_tokenizer::ClipTokenizer;

use crate::error::{file_error, EngineError, Result};

/// Where a tokenizer comes from when the model folder has none (open_clip folders
/// often do not): all OpenAI-derived CLIP models share this vocabulary.
const FALLBACK_TOKENIZER_REPO: &str = "openai/clip-vit-base-patch32";

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Use this tokenizer file instead of looking in the model folder.
    pub tokenizer: Option<PathBuf>,
    /// Show download progress bars.
    pub progress: bool,
    pub device: DeviceChoice,
    /// How CPU matmul weights are stored: f32 (exact) or bf16 (half the memory,
    /// faster on CPUs with AVX-512 BF16).
    pub precision: Precision,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    #[default]
    Cpu,
    Cuda(usize),
}

impl DeviceChoice {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => match s.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
                Some(n) => Ok(Self::Cuda(n)),
                None => Err(EngineError::Invalid(format!(
                    "unknown device '{s}' (cpu, cuda, cuda:N)"
                ))),
            },
        }
    }

    pub fn device(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => Device::new_cuda(n).map_err(|e| {
                EngineError::Invalid(format!(
                    "CUDA device {n} is not available ({e}); seer must be built with `--features cuda` on a machine with the CUDA toolkit"
                ))
            }),
        }
    }
}

/// A loaded CLIP model with its tokenizer and preprocessing.
pub struct Clip {
    /// The hub id or folder the model came from.
    pub id: String,
    pub model: ClipModel,
    pub tokenizer: Arc<ClipTokenizer>,
    pub preprocess: PreprocessConfig,
}

impl Clip {
    /// Loads `spec`: a folder, an alias or a hub id.
    pub fn load(spec: &str, options: &LoadOptions) -> Result<Self> {
        let resolved = seer_hub::resolve(spec, options.progress)?;
        let mut clip = Self::load_dir(&resolved.dir, options)?;
        clip.id = resolved.id;
        Ok(clip)
    }

    pub fn load_dir(dir: &Path, options: &LoadOptions) -> Result<Self> {
        let files = ModelFiles::from_dir(dir)?;
        let device = options.device.device()?;
        let model = ClipModel::load(&files, &device, options.precision)?;
        let tokenizer = load_tokenizer(&files, options)?;
        let preprocess = preprocess_config(&files, model.image_size())?;
        Ok(Self::from_parts(
            dir.display().to_string(),
            model,
            tokenizer,
            preprocess,
        ))
    }

    /// Assembles a model from parts (e.g. random weights for benchmarks).
    pub fn from_parts(
        id: String,
        model: ClipModel,
        tokenizer: ClipTokenizer,
        preprocess: PreprocessConfig,
    ) -> Self {
        Self {
            id,
            model,
            tokenizer: Arc::new(tokenizer),
            preprocess,
        }
    }

    /// Token ids of `text`, with start and end tokens, within the context length.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text, self.model.context_length())
    }
}

fn load_tokenizer(files: &ModelFiles, options: &LoadOptions) -> Result<ClipTokenizer> {
    if let Some(path) = &options.tokenizer {
        return Ok(ClipTokenizer::from_file(path)?);
    }
    if let Ok(path) = std::env::var("SEER_TOKENIZER") {
        return Ok(ClipTokenizer::from_file(Path::new(&path))?);
    }
    if let Some(tok) = ClipTokenizer::from_dir(&files.dir)? {
        return Ok(tok);
    }
    let path = seer_hub::fetch_file(FALLBACK_TOKENIZER_REPO, "tokenizer.json", options.progress).map_err(|e| {
        file_error(
            &files.dir,
            format!("the folder has no tokenizer (tokenizer.json, vocab.json + merges.txt or bpe_simple_vocab_16e6.txt.gz) and the shared CLIP tokenizer could not be fetched: {e}. Pass --tokenizer FILE or set SEER_TOKENIZER"),
        )
    })?;
    Ok(ClipTokenizer::from_file(&path)?)
}

fn preprocess_config(files: &ModelFiles, image_size: usize) -> Result<PreprocessConfig> {
    let image_size = image_size as u32;
    let cfg = match files.layout {
        Layout::Transformers => match &files.preprocessor_config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
                PreprocessConfig::from_hf_preprocessor_config(&text)?
            }
            // Without a processor config transformers users get CLIP's defaults.
            None => PreprocessConfig::open_clip(image_size, None).map(|mut c| {
                c.crop_rounding = seer_image::CropRounding::Floor;
                c
            })?,
        },
        Layout::OpenClip => {
            PreprocessConfig::open_clip(image_size, files.open_clip_preprocess_cfg().as_ref())?
        }
    };
    if cfg.crop_size != image_size {
        return Err(file_error(
            &files.dir,
            format!(
                "the preprocessor crops to {} px but the model expects {image_size} px",
                cfg.crop_size
            ),
        ));
    }
    Ok(cfg)
}
