//! Options every model-using command shares, and turning them into a loaded model.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use seer_engine::{Clip, DeviceChoice, EmbedOptions, LoadOptions, Precision};
use seer_image::DecodeLimits;

#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// Model: a local folder, an alias (`seer models`) or a Hugging Face hub id.
    #[arg(long, short, env = "SEER_MODEL", default_value = "ViT-B-32")]
    pub model: String,
    /// Tokenizer file (tokenizer.json, merges.txt or bpe_simple_vocab_16e6.txt.gz)
    /// when the model folder has none.
    #[arg(long, env = "SEER_TOKENIZER")]
    pub tokenizer: Option<PathBuf>,
    /// cpu, cuda or cuda:N (cuda needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Matmul weights on the CPU: f32 (exact) or bf16 (half the memory; about
    /// 1.7x faster where the CPU has AVX-512 BF16, embeddings within cos 0.999).
    #[arg(long, env = "SEER_PRECISION", default_value = "f32", value_parser = parse_precision)]
    pub precision: Precision,
    /// Worker threads for the model and image decoding (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Images per model batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Refuse images with more pixels than this (decompression-bomb guard).
    #[arg(long, default_value_t = DecodeLimits::default().max_pixels)]
    pub max_pixels: u64,
}

impl ModelArgs {
    pub fn load(&self) -> anyhow::Result<Clip> {
        configure_threads(self.threads)?;
        let options = LoadOptions {
            tokenizer: self.tokenizer.clone(),
            progress: crate::output::stderr_is_terminal(),
            device: DeviceChoice::parse(&self.device)?,
            precision: self.precision,
        };
        Clip::load(&self.model, &options)
            .with_context(|| format!("cannot load model '{}'", self.model))
    }

    pub fn embed_options(&self, normalize: bool) -> anyhow::Result<EmbedOptions> {
        anyhow::ensure!(self.batch_size > 0, "--batch-size must be at least 1");
        Ok(EmbedOptions {
            batch_size: self.batch_size,
            normalize,
            limits: DecodeLimits {
                max_pixels: self.max_pixels,
                ..DecodeLimits::default()
            },
        })
    }
}

pub fn parse_precision(s: &str) -> Result<Precision, String> {
    Precision::parse(s).ok_or_else(|| format!("unknown precision '{s}' (f32, bf16)"))
}

fn load_clip(
    spec: &str,
    tokenizer: Option<PathBuf>,
    device: DeviceChoice,
    precision: Precision,
) -> anyhow::Result<Clip> {
    let options = LoadOptions {
        tokenizer,
        progress: crate::output::stderr_is_terminal(),
        device,
        precision,
    };
    Clip::load(spec, &options).with_context(|| format!("cannot load model '{spec}'"))
}

/// Options of the commands that work on an index: where it is, and which of its
/// models to use.
#[derive(Args, Clone, Debug)]
pub struct IndexArgs {
    /// Index folder (default: $SEER_INDEX or ~/.local/share/seer/index).
    #[arg(long, env = "SEER_INDEX")]
    pub index: Option<PathBuf>,
    /// The model whose vectors to use (default: the index's only model).
    #[arg(long, short)]
    pub model: Option<String>,
    /// Tokenizer file when the model folder has none.
    #[arg(long, env = "SEER_TOKENIZER")]
    pub tokenizer: Option<PathBuf>,
    /// Matmul weights on the CPU: f32 or bf16 (see `seer embed --help`).
    #[arg(long, env = "SEER_PRECISION", default_value = "f32", value_parser = parse_precision)]
    pub precision: Precision,
}

impl IndexArgs {
    pub fn dir(&self) -> PathBuf {
        index_dir(&self.index)
    }

    /// The model asked for, as the index records model names.
    pub fn requested_model(&self) -> Option<String> {
        self.model.as_deref().map(seer_hub::model_key)
    }

    /// Loads the model an index's vectors were made with (its recorded name).
    pub fn load_clip(&self, name: &str) -> anyhow::Result<Clip> {
        load_clip(
            name,
            self.tokenizer.clone(),
            DeviceChoice::Cpu,
            self.precision,
        )
    }
}

/// `--index`, else `$SEER_INDEX` (via clap), else the default location.
pub fn index_dir(arg: &Option<PathBuf>) -> PathBuf {
    arg.clone().unwrap_or_else(seer_index::default_index_dir)
}

/// Sizes the shared thread pool used by decoding and by candle's CPU kernels.
pub fn configure_threads(threads: Option<usize>) -> anyhow::Result<()> {
    if let Some(n) = threads {
        anyhow::ensure!(n > 0, "--threads must be at least 1");
        // candle reads this for its own kernels; rayon's global pool for decoding.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .ok();
    }
    Ok(())
}
