//! Options every model-using command shares, and turning them into a loaded model.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use seer_engine::{DeviceChoice, EmbedOptions, LoadOptions, LoadedModel, Precision};
use seer_image::DecodeLimits;

/// The model a command uses when none is named.
pub const DEFAULT_MODEL: &str = "ViT-B-32";

#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// Model: a local folder, an alias (`seer models`) or a Hugging Face hub id.
    #[arg(long, short, env = "SEER_MODEL", default_value = DEFAULT_MODEL)]
    pub model: String,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Field access as before the split (`args.model.batch_size`).
impl std::ops::Deref for ModelArgs {
    type Target = RunArgs;
    fn deref(&self) -> &RunArgs {
        &self.run
    }
}

impl ModelArgs {
    pub fn load(&self) -> anyhow::Result<LoadedModel> {
        self.run.load(&self.model)
    }

    /// The model for embedding images only (no tokenizer needed).
    pub fn load_images(&self) -> anyhow::Result<LoadedModel> {
        self.run.load_images(&self.model)
    }

    pub fn embed_options(&self, normalize: bool) -> anyhow::Result<EmbedOptions> {
        self.run.embed_options(normalize)
    }
}

/// How a model runs: every command that loads one takes these (the commands
/// that work on an index too, where the model comes from the index).
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Tokenizer file (tokenizer.json, merges.txt or bpe_simple_vocab_16e6.txt.gz)
    /// when the model folder has none.
    #[arg(long, env = "SEER_TOKENIZER")]
    pub tokenizer: Option<PathBuf>,
    /// cpu, cuda or cuda:N (cuda needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Matmul weights: f32 (exact), bf16 (half the memory; faster where the
    /// CPU has AVX-512 BF16 or AMX, about as fast as f32 elsewhere; on a GPU
    /// the tensor cores; embeddings within cos 0.999) or int8 (dynamically
    /// quantised activations; about 2-3x f32 with VNNI or AMX, less with AVX2
    /// alone; embeddings within cos 0.995; CPU only). Speeds differ by CPU:
    /// the README's Performance section has each kind's measured ratios.
    #[arg(long, env = "SEER_PRECISION", default_value = "f32", value_parser = parse_precision)]
    pub precision: Precision,
    /// Worker threads for the model and image decoding (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Images per model batch (`serve`: the largest batch concurrent requests share).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Refuse images with more pixels than this (decompression-bomb guard;
    /// default 178956970, `serve` 50000000).
    #[arg(long, value_parser = at_least_one_pixel)]
    pub max_pixels: Option<u64>,
}

impl RunArgs {
    /// Loads `spec` (a folder, an alias or a hub id) with these options, with
    /// the loader of its family (see `seer_engine::registry`).
    pub fn load(&self, spec: &str) -> anyhow::Result<LoadedModel> {
        let options = self.load_options()?;
        LoadedModel::load(spec, &options).with_context(|| format!("cannot load model '{spec}'"))
    }

    /// [`RunArgs::load`] for commands that embed images only: a CLIP model
    /// comes without its text side, so no tokenizer is looked for (an
    /// open_clip folder without one loads offline).
    pub fn load_images(&self, spec: &str) -> anyhow::Result<LoadedModel> {
        let options = self.load_options()?;
        LoadedModel::load_images(spec, &options)
            .with_context(|| format!("cannot load model '{spec}'"))
    }

    fn load_options(&self) -> anyhow::Result<LoadOptions> {
        configure_threads(self.threads)?;
        let options = LoadOptions {
            tokenizer: self.tokenizer.clone(),
            progress: crate::output::stderr_is_terminal(),
            device: DeviceChoice::parse(&self.device)?,
            precision: self.precision,
        };
        warn_if_int8_is_slow(self.precision, options.device);
        Ok(options)
    }

    pub fn embed_options(&self, normalize: bool) -> anyhow::Result<EmbedOptions> {
        anyhow::ensure!(self.batch_size > 0, "--batch-size must be at least 1");
        Ok(EmbedOptions {
            batch_size: self.batch_size,
            normalize,
            limits: self.limits(DecodeLimits::default()),
        })
    }

    /// `defaults` with `--max-pixels` applied.
    pub fn limits(&self, defaults: DecodeLimits) -> DecodeLimits {
        DecodeLimits {
            max_pixels: self.max_pixels.unwrap_or(defaults.max_pixels),
            ..defaults
        }
    }
}

/// int8 has SIMD kernels on AVX2 (`vpmaddubsw`) and AVX-512 VNNI; without AVX2
/// (or with `$SEER_ISA=portable`) it runs the portable kernel, correct but far
/// slower than f32: say so rather than let it pass.
pub fn warn_if_int8_is_slow(precision: Precision, device: DeviceChoice) {
    if precision == Precision::Int8
        && device == DeviceChoice::Cpu
        && seer_kernels::Isa::detected() == seer_kernels::Isa::Portable
    {
        diag!(
            "warning: int8 runs on the portable kernel here, much slower than f32 (the SIMD ones need AVX2, or AVX-512 VNNI, not ruled out by $SEER_ISA)"
        );
    }
}

pub fn parse_precision(s: &str) -> Result<Precision, String> {
    Precision::parse(s).ok_or_else(|| format!("unknown precision '{s}' (f32, bf16, int8)"))
}

/// Options of the commands that work on an index: where it is, and which of its
/// models to use.
#[derive(Args, Clone, Debug)]
pub struct IndexArgs {
    /// Index folder (default: $SEER_INDEX or ~/.local/share/seer/index).
    #[arg(long, env = "SEER_INDEX")]
    pub index: Option<PathBuf>,
    /// The model whose vectors to use (default: the index's only model).
    #[arg(long, short, env = "SEER_MODEL")]
    pub model: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub ann: AnnArgs,
}

/// When search switches to the approximate index: a tuning knob (and a way for
/// tests to reach it with a few photos), hidden from `--help`.
#[derive(Args, Clone, Copy, Debug)]
pub struct AnnArgs {
    /// Search a model with at least this many vectors with its approximate
    /// (HNSW) index, and keep that index up to date when indexing.
    #[arg(long, hide = true, env = "SEER_ANN_THRESHOLD", default_value_t = seer_index::ann::ANN_THRESHOLD)]
    pub ann_threshold: usize,
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
    pub fn load_model(&self, name: &str) -> anyhow::Result<LoadedModel> {
        self.run.load(name)
    }
}

/// `--index`, else `$SEER_INDEX` (via clap), else the default location.
pub fn index_dir(arg: &Option<PathBuf>) -> PathBuf {
    arg.clone().unwrap_or_else(default_index_dir)
}

/// The default index folder: `$XDG_DATA_HOME/seer/index`, else
/// `~/.local/share/seer/index` (`$SEER_INDEX` arrives through clap as `--index`).
fn default_index_dir() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("seer").join("index")
}

/// An index folder a command (`index`, `import`) may create as it opens it
/// for writing: where the command fails before anything is stored (nothing to
/// index, a folder that does not exist, a refused import), the empty index it
/// made is removed again, so a mistyped command leaves nothing behind.
pub struct IndexCreatedHere {
    dir: PathBuf,
    /// Whether the folder, and the database in it, were there before.
    had_dir: bool,
    had_index: bool,
}

/// The files an index folder holds while it is empty (the database, its
/// write-ahead log and shared memory, and the lock, last).
const EMPTY_INDEX_FILES: &[&str] = &[
    "index.sqlite",
    "index.sqlite-wal",
    "index.sqlite-shm",
    "index.lock",
];

impl IndexCreatedHere {
    /// Notes what `dir` holds before the command opens it.
    pub fn note(dir: &Path) -> Self {
        IndexCreatedHere {
            dir: dir.to_path_buf(),
            had_dir: dir.exists(),
            had_index: dir.join("index.sqlite").exists(),
        }
    }

    /// After the command failed: removes the index it created, if it holds
    /// nothing (no file, root or model) and no one else holds its lock (a
    /// run refused as busy leaves the other run's index alone), and the
    /// folder, if this run made it and it is empty now. Anything else stays,
    /// as do indexes that were there.
    pub fn remove_if_failed_empty(&self) {
        if self.had_index {
            return;
        }
        // Held while the files go: no other run starts on them meanwhile.
        let Ok(_lock) = seer_index::IndexLock::try_acquire(&self.dir) else {
            return;
        };
        let empty = seer_index::Store::open_read_only(&self.dir).is_ok_and(|store| {
            store.file_count().is_ok_and(|n| n == 0)
                && store.roots().is_ok_and(|r| r.is_empty())
                && store.models().is_ok_and(|m| m.is_empty())
        });
        if !empty {
            return;
        }
        let files = match self.had_dir {
            // The lock file of a folder that was there may be another
            // run's to wait on: it stays.
            true => &EMPTY_INDEX_FILES[..3],
            false => EMPTY_INDEX_FILES,
        };
        for name in files {
            let _ = std::fs::remove_file(self.dir.join(name));
        }
        if !self.had_dir {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// The most threads `--threads` takes.
const MAX_THREADS: usize = 1024;

/// Sizes the shared thread pool used by decoding and by candle's CPU kernels.
pub fn configure_threads(threads: Option<usize>) -> anyhow::Result<()> {
    if let Some(n) = threads {
        anyhow::ensure!(n > 0, "--threads must be at least 1");
        // Each thread takes a stack and per-thread buffers: far more threads
        // than cores only slows the work down (100,000 of them hung).
        anyhow::ensure!(
            n <= MAX_THREADS,
            "--threads {n}: at most {MAX_THREADS} (this machine has {} cores)",
            std::thread::available_parallelism().map_or(1, |c| c.get())
        );
        // candle reads this for its own kernels; rayon's global pool for decoding.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .ok();
    }
    Ok(())
}

/// An error and its causes on one line, each said once: many errors already
/// include their cause in their own message (`{path}: {source}`), so printing
/// the whole chain (`{:#}`) said the same thing two or three times.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if line.contains(&cause) {
            continue;
        }
        // "cannot read a.jpg" then "a.jpg: bad data": the cause's first
        // parts (up to a ':') that the line ends with, as whole words or
        // path components, are said once.
        let overlap = cause.match_indices(':').rev().map(|(i, _)| i).find(|&i| {
            line.strip_suffix(&cause[..i])
                .is_some_and(|before| before.is_empty() || before.ends_with([' ', '/']))
        });
        match overlap {
            Some(i) => line.push_str(&cause[i..]),
            None => {
                line.push_str(": ");
                line.push_str(&cause);
            }
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Inner;

    impl std::fmt::Display for Inner {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("inner cause")
        }
    }

    impl std::error::Error for Inner {}

    /// Says its cause in its message and also gives it as its source.
    #[derive(Debug)]
    struct Outer(Inner);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "outer: {}", self.0)
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let e = anyhow::Error::new(Outer(Inner));
        assert_eq!(format!("{e:#}"), "outer: inner cause: inner cause");
        assert_eq!(error_line(&e), "outer: inner cause");
        let e = anyhow::Error::new(Inner).context("reading x");
        assert_eq!(error_line(&e), "reading x: inner cause");
        // A cause that starts with what the line ends with (a file's name).
        let e =
            anyhow::anyhow!("bad/a.jpg: cannot decode: truncated").context("cannot read bad/a.jpg");
        assert_eq!(
            error_line(&e),
            "cannot read bad/a.jpg: cannot decode: truncated"
        );
        let e = anyhow::anyhow!("a.jpg: truncated").context("cannot read b/a.jpg");
        assert_eq!(error_line(&e), "cannot read b/a.jpg: truncated");
        let e = anyhow::anyhow!("x: y").context("cannot read ax");
        assert_eq!(error_line(&e), "cannot read ax: x: y");
    }
}

/// Changes to how a generative model searches (BLIP's defaults are
/// transformers': greedy, 20 new tokens).
#[derive(Args, Clone, Debug, Default)]
pub struct GenerationArgs {
    /// Beam search width (1: greedy, the default).
    #[arg(long, value_name = "K")]
    pub beams: Option<usize>,
    /// Generate at most N tokens after the prompt (default 20).
    #[arg(long, value_name = "N")]
    pub max_new_tokens: Option<usize>,
}

impl GenerationArgs {
    pub fn options(&self) -> anyhow::Result<seer_engine::GenerateOptions> {
        anyhow::ensure!(self.beams != Some(0), "--beams must be at least 1");
        anyhow::ensure!(
            self.max_new_tokens != Some(0),
            "--max-new-tokens must be at least 1"
        );
        Ok(seer_engine::GenerateOptions {
            beams: self.beams,
            max_new_tokens: self.max_new_tokens,
        })
    }
}

/// clap's parser for a text to search with: an empty one (or only spaces)
/// would be embedded as a real query and rank everything by nothing the user
/// asked for, so it is a usage error (as the server's empty `q` is a 400).
pub fn words(text: &str) -> Result<String, String> {
    match text.trim().is_empty() {
        true => Err("is empty: give some words (or leave it out)".into()),
        false => Ok(text.to_string()),
    }
}

/// clap's parser for a pixel budget: 0 would refuse every image.
pub fn at_least_one_pixel(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1 (0 would refuse every image)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("must be a whole number of pixels, at least 1".into()),
    }
}

/// clap's parser for a count that must be at least 1 (a batch size, an
/// iteration count): 0 is a usage error, not a run that measures nothing.
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("must be a whole number, at least 1".into()),
    }
}
