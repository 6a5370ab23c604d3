//! Loads everything a model needs to turn files and strings into embeddings: the
//! weights, its tokenizer and its preprocessing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use seer_image::PreprocessConfig;
use seer_models::{
    l2_normalize, ClipModel, Device, Layout, ModelFiles, Precision, Tensor, TextPadding,
};
use seer_tokenizer::ClipTokenizer;

use crate::error::{file_error, EngineError, Result};
use crate::tasks::{ImageEncoder, LoadedModel, ScoreRule, TextEncoder};

/// Where a tokenizer comes from when the model folder has none (open_clip folders
/// often do not): all OpenAI-derived CLIP models share this vocabulary.
const FALLBACK_TOKENIZER_REPO: &str = "openai/clip-vit-base-patch32";

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Use this tokenizer file instead of looking in the model folder (the CLI
    /// fills it from `--tokenizer` or `$SEER_TOKENIZER`).
    pub tokenizer: Option<PathBuf>,
    /// Show download progress bars.
    pub progress: bool,
    pub device: DeviceChoice,
    /// How matmul weights are stored: f32 (exact), bf16 (half the memory,
    /// faster on CPUs with AVX-512 BF16 or AMX, on a GPU's tensor cores) or
    /// int8 (a quarter, activations quantised per row; fastest with AVX-512
    /// VNNI or AMX; refused on a GPU).
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

/// A loaded CLIP model with its tokenizer and preprocessing: the CLIP family's
/// [`ImageEncoder`] and [`TextEncoder`]. Commands hold it as a [`LoadedModel`];
/// training and `seer bench` use it directly.
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
        let (files, model, preprocess) = load_weights(dir, options)?;
        let tokenizer = load_tokenizer(&files, options)?;
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

    /// Embeds texts in batches; each batch is padded only to its longest text.
    pub fn embed_texts(
        &self,
        texts: &[String],
        options: &crate::EmbedOptions,
    ) -> Result<Vec<Vec<f32>>> {
        (self as &dyn TextEncoder).embed_texts(texts, options)
    }

    /// Embeds preprocessed pixels: `pixels` holds `n` CHW images back to back.
    pub fn embed_pixels(
        &self,
        pixels: Vec<f32>,
        n: usize,
        normalize: bool,
    ) -> Result<Vec<Vec<f32>>> {
        ImageEncoder::embed_pixels(self, pixels, n, normalize)
    }

    /// Embeds image files (see [`ImageEncoder`]'s pipeline in `embed.rs`).
    pub fn embed_image_files(
        &self,
        paths: &[PathBuf],
        options: &crate::EmbedOptions,
        on_result: impl FnMut(crate::ImageEmbedding),
    ) -> Result<()> {
        (self as &dyn ImageEncoder).embed_image_files(paths, options, on_result)
    }

    /// This model as the commands hold it.
    pub fn into_loaded(self) -> LoadedModel {
        let id = self.id.clone();
        let clip = Arc::new(self);
        LoadedModel::encoders(id, crate::registry::CLIP, Some(clip.clone()), Some(clip))
    }

    fn finish(&self, features: Tensor, normalize: bool) -> Result<Vec<Vec<f32>>> {
        finish(features, normalize)
    }
}

/// The weights and preprocessing of the CLIP model in `dir` (everything but
/// the tokenizer).
fn load_weights(
    dir: &Path,
    options: &LoadOptions,
) -> Result<(ModelFiles, ClipModel, PreprocessConfig)> {
    let files = ModelFiles::from_dir(dir)?;
    let device = options.device.device()?;
    let model = ClipModel::load(&files, &device, options.precision)?;
    let preprocess = preprocess_config(&files, model.image_size())?;
    Ok((files, model, preprocess))
}

fn finish(features: Tensor, normalize: bool) -> Result<Vec<Vec<f32>>> {
    let features = if normalize {
        l2_normalize(&features).map_err(seer_models::ModelError::from)?
    } else {
        features
    };
    Ok(features
        .to_vec2::<f32>()
        .map_err(seer_models::ModelError::from)?)
}

/// A CLIP image tower's embeddings of `n` preprocessed images.
fn embed_clip_pixels(
    model: &ClipModel,
    pixels: Vec<f32>,
    n: usize,
    normalize: bool,
) -> Result<Vec<Vec<f32>>> {
    let s = model.image_size();
    let batch = Tensor::from_vec(pixels, (n, 3, s, s), model.device())
        .map_err(seer_models::ModelError::from)?;
    finish(model.encode_images(&batch)?, normalize)
}

impl ImageEncoder for Clip {
    fn embed_dim(&self) -> usize {
        self.model.embed_dim()
    }

    fn preprocess_config(&self) -> &PreprocessConfig {
        &self.preprocess
    }

    fn embed_pixels(&self, pixels: Vec<f32>, n: usize, normalize: bool) -> Result<Vec<Vec<f32>>> {
        embed_clip_pixels(&self.model, pixels, n, normalize)
    }
}

/// A CLIP model loaded for images only: no tokenizer, so none is looked for
/// (an open_clip folder often has none, and the shared one comes from the hub,
/// which an offline machine cannot reach). Its embeddings are [`Clip`]'s.
struct ClipImages {
    model: ClipModel,
    preprocess: PreprocessConfig,
}

impl ImageEncoder for ClipImages {
    fn embed_dim(&self) -> usize {
        self.model.embed_dim()
    }

    fn preprocess_config(&self) -> &PreprocessConfig {
        &self.preprocess
    }

    fn embed_pixels(&self, pixels: Vec<f32>, n: usize, normalize: bool) -> Result<Vec<Vec<f32>>> {
        embed_clip_pixels(&self.model, pixels, n, normalize)
    }
}

impl LoadedModel {
    /// Loads `spec` (a folder, an alias or a hub id) for embedding images
    /// only: a CLIP model comes without its text side, so a folder without a
    /// tokenizer loads with the network off (`--offline`, a cluster node).
    /// The result has no text encoder; other families load as
    /// [`LoadedModel::load`] loads them.
    pub fn load_images(spec: &str, options: &LoadOptions) -> Result<Self> {
        let resolved = seer_hub::resolve(spec, options.progress)?;
        let mut model = Self::load_dir_images(&resolved.dir, options)?;
        model.id = resolved.id;
        Ok(model)
    }

    /// [`LoadedModel::load_images`] for a local folder (its id is the path).
    pub fn load_dir_images(dir: &Path, options: &LoadOptions) -> Result<Self> {
        let detected = crate::registry::detect(dir)?;
        if detected.family.name != crate::registry::CLIP {
            return Self::load_dir(dir, options);
        }
        let (_, model, preprocess) = load_weights(dir, options)?;
        let images = Arc::new(ClipImages { model, preprocess });
        Ok(LoadedModel::encoders(
            dir.display().to_string(),
            crate::registry::CLIP,
            Some(images),
            None,
        ))
    }
}

impl TextEncoder for Clip {
    fn embed_dim(&self) -> usize {
        self.model.embed_dim()
    }

    fn tokenize(&self, text: &str) -> Vec<u32> {
        Clip::tokenize(self, text)
    }

    /// Padded to the batch's longest text: CLIP pools at the end token, so the
    /// padding length does not change the embedding.
    fn embed_text_batch(&self, texts: &[String], normalize: bool) -> Result<Vec<Vec<f32>>> {
        let tokens: Vec<Vec<u32>> = texts.iter().map(|t| self.tokenize(t)).collect();
        let features = self.model.encode_texts(&tokens, TextPadding::Longest)?;
        self.finish(features, normalize)
    }

    fn score_rule(&self) -> ScoreRule {
        ScoreRule::Softmax {
            scale: self.model.logit_scale(),
        }
    }
}

fn load_tokenizer(files: &ModelFiles, options: &LoadOptions) -> Result<ClipTokenizer> {
    if let Some(path) = &options.tokenizer {
        return Ok(ClipTokenizer::from_file(path)?);
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
                // Name the file by its full path: the image crate's error knows
                // only its base name.
                PreprocessConfig::from_hf_preprocessor_config(&text)
                    .map_err(|e| file_error(path, e))?
            }
            // Without a processor config transformers users get CLIP's defaults.
            None => PreprocessConfig::open_clip(image_size, None).map(|mut c| {
                c.crop_rounding = seer_image::CropRounding::Floor;
                c
            })?,
        },
        Layout::OpenClip => {
            PreprocessConfig::open_clip(image_size, files.open_clip_preprocess_cfg().as_ref())
                .map_err(|e| file_error(&files.config, e))?
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

/// Which tokenizer class reads a folder's `tokenizer_config.json`: the keys
/// each refuses when damaged differ.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum TokenizerClass {
    /// `BertTokenizer` (BLIP): `do_lower_case` must be a boolean.
    Bert,
    /// `CLIPTokenizer` (OWL-ViT): the processor pads to `model_max_length`,
    /// which must not be negative.
    Clip,
}

/// Refuses a damaged `tokenizer_config.json` as transformers' tokenizer
/// loading does (it raises on each of these); seer reads little of it, but a
/// folder transformers cannot load is not one to answer from. Absent: the
/// defaults.
pub(crate) fn check_tokenizer_config(dir: &Path, class: TokenizerClass) -> Result<()> {
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(());
    }
    let fail = |message: String| Err(file_error(&path, message));
    let text = std::fs::read_to_string(&path).map_err(|e| file_error(&path, e))?;
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return fail(format!("invalid JSON: {e}")),
    };
    let Some(obj) = value.as_object() else {
        return fail("not a tokenizer config: expected a JSON object".into());
    };
    let get = |key: &str| obj.get(key).filter(|v| !v.is_null());
    if class == TokenizerClass::Bert {
        // BertTokenizer checks the type even of null.
        match obj.get("do_lower_case") {
            None | Some(serde_json::Value::Bool(_)) => {}
            Some(v) => return fail(format!("do_lower_case: expected true or false, found {v}")),
        }
    }
    if let Some(v) = get("model_max_length") {
        match v.as_f64() {
            Some(n) if n < 0.0 && class == TokenizerClass::Clip => {
                return fail(format!(
                    "model_max_length: expected a non-negative number, found {v}"
                ))
            }
            Some(_) => {}
            None => return fail(format!("model_max_length: expected a number, found {v}")),
        }
    }
    if let Some(v) = get("tokenizer_class") {
        if !v.is_string() {
            return fail(format!("tokenizer_class: expected a class name, found {v}"));
        }
    }
    for key in [
        "bos_token",
        "eos_token",
        "unk_token",
        "sep_token",
        "pad_token",
        "cls_token",
        "mask_token",
    ] {
        let Some(v) = get(key) else { continue };
        // A token, or an AddedToken as {"content": …, …}.
        let ok = v.is_string() || v.get("content").is_some_and(serde_json::Value::is_string);
        if !ok {
            return fail(format!("{key}: expected a token (a string), found {v}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tokenizer_config_tests {
    use super::*;

    fn check(text: &str, class: TokenizerClass) -> std::result::Result<(), String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer_config.json"), text).unwrap();
        check_tokenizer_config(dir.path(), class).map_err(|e| e.to_string())
    }

    #[test]
    fn damage_transformers_raises_on_is_refused() {
        use TokenizerClass::{Bert, Clip};
        let cases = [
            ("{\"do_lower_case\": true", Bert, "invalid JSON"),
            ("", Clip, "invalid JSON"),
            ("[1]", Clip, "expected a JSON object"),
            ("null", Bert, "expected a JSON object"),
            (
                r#"{"do_lower_case": "x"}"#,
                Bert,
                "do_lower_case: expected true or false",
            ),
            (r#"{"do_lower_case": null}"#, Bert, "do_lower_case"),
            (
                r#"{"model_max_length": "x"}"#,
                Bert,
                "model_max_length: expected a number",
            ),
            (
                r#"{"model_max_length": -1}"#,
                Clip,
                "model_max_length: expected a non-negative",
            ),
            (r#"{"tokenizer_class": 5}"#, Clip, "tokenizer_class"),
            (r#"{"pad_token": 5}"#, Bert, "pad_token: expected a token"),
            (r#"{"unk_token": [1]}"#, Clip, "unk_token: expected a token"),
        ];
        for (text, class, needle) in cases {
            let err = check(text, class).unwrap_err();
            assert!(
                err.contains("tokenizer_config.json: ") && err.contains(needle),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn what_transformers_loads_is_accepted() {
        use TokenizerClass::{Bert, Clip};
        let ok = [
            (r#"{"do_lower_case": "x", "model_max_length": 16}"#, Clip),
            (r#"{"model_max_length": -1, "do_lower_case": false}"#, Bert),
            (r#"{"model_max_length": null, "pad_token": null}"#, Bert),
            (
                r#"{"unk_token": {"content": "[UNK]", "lstrip": false}}"#,
                Bert,
            ),
            ("{}", Clip),
        ];
        for (text, class) in ok {
            check(text, class).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
        let dir = tempfile::tempdir().unwrap();
        check_tokenizer_config(dir.path(), TokenizerClass::Bert).unwrap();
    }
}

/// Mutation fuzzing of the JSON files a model folder holds (`config.json`,
/// `open_clip_config.json`, `preprocessor_config.json`,
/// `processor_config.json`, `tokenizer_config.json`,
/// `generation_config.json`) through the whole load of each committed fixture
/// model (CLIP, DINOv2, SigLIP/SigLIP 2, BLIP, OWL-ViT, SAM): the configs'
/// values reach the model builders, which allocate and index by them. Not run
/// by default:
///
/// ```text
/// cargo test --release -q -p seer-engine --lib -- --ignored fuzz_model_configs --test-threads=1 --nocapture
/// ```
///
/// (8,000 loads, about 2 minutes on one core). Panicking or slow inputs are
/// saved under /tmp/fuzz-models/model-configs/ (huge allocations are not
/// seen here: this crate's tests have another global allocator).
#[cfg(test)]
mod config_fuzz {
    use std::path::{Path, PathBuf};

    use super::*;
    use seer_testkit::fuzz::{assert_clean, fixture_files, mutate_json, run};

    const CONFIGS: [&str; 6] = [
        "config.json",
        "open_clip_config.json",
        "preprocessor_config.json",
        "processor_config.json",
        "tokenizer_config.json",
        "generation_config.json",
    ];

    #[test]
    #[ignore = "fuzzing: run by hand"]
    fn fuzz_model_configs() {
        let configs = fixture_files(&["models", "families", "blip", "owlvit", "sam"], &|n| {
            CONFIGS.contains(&n)
        });
        // A copy of each fixture folder made of links, in which one file at a
        // time is replaced by its mutation.
        let work = tempfile::tempdir().unwrap();
        let mut folders: Vec<(PathBuf, PathBuf)> = Vec::new(); // (copy, original file)
        for config in &configs {
            let source = config.parent().unwrap();
            let copy = work.path().join(
                source
                    .strip_prefix(source.parent().unwrap().parent().unwrap())
                    .unwrap(),
            );
            if !copy.exists() {
                std::fs::create_dir_all(&copy).unwrap();
                for entry in std::fs::read_dir(source).unwrap().flatten() {
                    std::os::unix::fs::symlink(entry.path(), copy.join(entry.file_name())).unwrap();
                }
            }
            folders.push((copy, config.clone()));
        }
        let seeds: Vec<Vec<u8>> = configs.iter().map(|p| std::fs::read(p).unwrap()).collect();
        let options = LoadOptions {
            tokenizer: Some(PathBuf::from(
                "/work/shared/data/clip-tokenizer/bpe_simple_vocab_16e6.txt.gz",
            )),
            ..LoadOptions::default()
        };
        let target = |which: usize, bytes: &[u8]| -> std::result::Result<(), String> {
            let (copy, original) = &folders[which];
            let file = copy.join(original.file_name().unwrap());
            let _ = std::fs::remove_file(&file);
            std::fs::write(&file, bytes).unwrap();
            let result = crate::LoadedModel::load_dir(copy, &options)
                .map(|_| ())
                .map_err(|e| e.to_string());
            std::fs::remove_file(&file).unwrap();
            std::os::unix::fs::symlink(original, &file).unwrap();
            result
        };
        let _: &Path = work.path();
        let findings = run("model-configs", &seeds, 8000, mutate_json, &target);
        assert_clean("model-configs", &findings);
    }
}
