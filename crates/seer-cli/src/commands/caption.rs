//! `seer caption`: a caption for each image, from a BLIP captioning model.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use seer_engine::collect_image_paths;
use seer_engine::describe::CaptionOptions;
use seer_engine::GenerateOptions;
use seer_index::pathcodec::display_path;
use seer_models::models::blip::{BlipConfig, BlipHead};
use seer_tokenizer::WordPieceTokenizer;

use crate::common::{GenerationArgs, RunArgs};
use crate::output::{progress, Failures};

/// The captioning model used when none is named.
pub const DEFAULT_CAPTION_MODEL: &str = "blip-base";

#[derive(clap::Args)]
pub struct Args {
    /// Image files or folders.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Captioning model: a folder, an alias (`seer models`) or a hub id.
    #[arg(long, short, default_value = DEFAULT_CAPTION_MODEL)]
    model: String,
    /// Text every caption starts with (conditional captioning, e.g. "a picture of").
    #[arg(long)]
    prompt: Option<String>,
    #[command(flatten)]
    generation: GenerationArgs,
    #[command(flatten)]
    run: RunArgs,
    /// One JSON object per image: {"input", "caption", "tokens"}; `tokens` is the
    /// whole id sequence transformers' `generate` returns, prompt included.
    #[arg(long)]
    json: bool,
}

/// A BLIP checkpoint's text side as its processor and text model see it: the
/// tokenizer and the number of positions. Prompts, questions and texts are
/// checked against it once, before any image, so that a text the model cannot
/// read is one usage error (exit 2), not a failure blamed on every image.
pub(crate) struct BlipText {
    tokenizer: WordPieceTokenizer,
    pub(crate) positions: usize,
}

impl BlipText {
    /// Reads the tokenizer and `config.json` of the model `spec` names (already
    /// loaded: a local folder or the hub cache) as the engine's BLIP does;
    /// `head` is the head it was loaded with.
    pub(crate) fn read(spec: &str, head: BlipHead) -> anyhow::Result<Self> {
        let dir = seer_hub::resolve(spec, false)
            .with_context(|| format!("cannot load model '{spec}'"))?
            .dir;
        let config_path = dir.join("config.json");
        let config = std::fs::read_to_string(&config_path)
            .with_context(|| format!("{}: cannot read", config_path.display()))?;
        let config = BlipConfig::from_json(&config, &config_path, Some(head))?;
        Ok(Self {
            tokenizer: WordPieceTokenizer::from_dir(&dir)?,
            positions: config.text.max_positions,
        })
    }

    /// The processor's ids of `text` (`[CLS]` … `[SEP]`), refused when it has
    /// no words. `what` names it in messages (`--prompt`, `the question`).
    pub(crate) fn ids(&self, text: &str, what: &str) -> anyhow::Result<Vec<u32>> {
        let ids = self
            .tokenizer
            .encode(text)
            .with_context(|| format!("{what}: cannot tokenize"))?;
        if text.trim().is_empty() || ids.len() <= 2 {
            bail!("{what} is empty: it has no words");
        }
        Ok(ids)
    }

    /// How many ids the text encoder reads for `text`, refused when it has no
    /// words or more ids than the model has positions.
    pub(crate) fn count(&self, text: &str, what: &str) -> anyhow::Result<usize> {
        let n = self.ids(text, what)?.len();
        if n > self.positions {
            bail!(
                "{what} is too long: {n} tokens ([CLS] and [SEP] included), and the model \
                 reads at most {} (its text positions)",
                self.positions
            );
        }
        Ok(n)
    }

    /// Refuses `--max-new-tokens` that would run the text decoder past its
    /// positions: generation starts from `start` tokens (`start_what`, for the
    /// message) and adds at most that many. Unset, transformers' 20 are cut to
    /// the positions, as the engine's `generate` does.
    pub(crate) fn check_new_tokens(
        &self,
        start: usize,
        start_what: &str,
        options: &GenerateOptions,
    ) -> anyhow::Result<()> {
        let p = self.positions;
        match options.max_new_tokens {
            Some(n) if start.saturating_add(n) > p => bail!(
                "--max-new-tokens {n} is too many: the model has {p} text positions, and \
                 {start_what} ({start} {}) and {n} new ones would need {}; give \
                 --max-new-tokens {} or less",
                if start == 1 { "token" } else { "tokens" },
                start.saturating_add(n),
                p.saturating_sub(start)
            ),
            _ => Ok(()),
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let generate = args.generation.options()?;
    if args.prompt.as_deref().is_some_and(|p| p.trim().is_empty()) {
        bail!("--prompt is empty: give the words every caption starts with, or leave it out");
    }
    let model = args.run.load(&args.model)?;
    let captioner = model.captioner()?;
    // Checked once, before any image: the prompt and the length to generate.
    let text = BlipText::read(&args.model, BlipHead::Captioning)?;
    match &args.prompt {
        Some(p) => {
            // Generation starts from `[DEC]` and the prompt's ids without
            // `[CLS]` and `[SEP]`, and needs room for one new token.
            let words = text.ids(p, "--prompt")?.len() - 2;
            if 1 + words >= text.positions {
                bail!(
                    "--prompt is too long: {words} tokens, and the model's {} text positions \
                     hold [DEC], at most {} prompt tokens and the caption",
                    text.positions,
                    text.positions.saturating_sub(2)
                );
            }
            text.check_new_tokens(1 + words, "[DEC] and the prompt", &generate)?;
        }
        None => text.check_new_tokens(1, "[DEC]", &generate)?,
    }
    let options = CaptionOptions {
        batch_size: args.run.batch_size.max(1),
        limits: args.run.limits(Default::default()),
        prompt: args.prompt.clone(),
        generate,
    };
    let (paths, walk_failures) = collect_image_paths(&args.images);
    let pb = progress(paths.len(), "captioning");
    let mut failures = Failures::default();
    for (path, cause) in walk_failures {
        failures.report_path(&pb, &path, &cause);
    }
    let mut done = 0;
    let mut write_error = None;
    captioner.caption_files(&paths, &options, |outcome| {
        pb.inc(1);
        let input = display_path(&outcome.path);
        match outcome.result {
            Ok(caption) => {
                let mut out = std::io::stdout().lock();
                let written = match args.json {
                    true => writeln!(
                        out,
                        "{}",
                        serde_json::json!({
                            "input": input,
                            "caption": caption.text,
                            "tokens": caption.tokens,
                        })
                    ),
                    false => writeln!(out, "{input}\t{}", caption.text),
                };
                match written {
                    Ok(()) => done += 1,
                    Err(e) => {
                        write_error.get_or_insert(e);
                    }
                }
            }
            Err(e) => failures.report_path(&pb, &outcome.path, &e.to_string()),
        }
    });
    pb.finish_and_clear();
    if let Some(e) = write_error {
        return Err(e.into());
    }
    failures.summary(done, "images");
    Ok(failures.exit_code())
}
