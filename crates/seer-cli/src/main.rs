//! `seer`: CLIP embeddings, zero-shot classification and evaluation from the
//! command line. Each subcommand lives in `commands/`; shared options and output
//! helpers in `common.rs` and `output.rs`.

mod commands;
mod common;
mod output;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "seer",
    version,
    about = "A vision-language engine: CLIP embeddings, zero-shot classification, search, evaluation and training"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Embed images and/or texts into the model's joint space.
    Embed(commands::embed::Args),
    /// Zero-shot classify images with prompt-template ensembles.
    Classify(commands::classify::Args),
    /// Evaluate a model.
    #[command(subcommand)]
    Eval(commands::eval::EvalCommand),
    /// Index photo folders (incremental; re-run to bring the index up to date).
    Index(commands::index::Args),
    /// Search indexed photos by text, example image, or both.
    Search(commands::search::Args),
    /// Serve the HTTP API and web page.
    Serve(commands::serve::Args),
    /// Show what the index holds and which files failed.
    Status(commands::status::Args),
    /// Find groups of near-duplicate images in the index.
    Dupes(commands::dupes::Args),
    /// Export the index's embeddings in the clip-retrieval/autofaiss layout.
    Export(commands::exchange::ExportArgs),
    /// Import embeddings from the clip-retrieval/autofaiss layout.
    Import(commands::exchange::ImportArgs),
    /// List model aliases and models in the Hugging Face cache.
    Models(commands::models::Args),
    /// Train or fine-tune a CLIP model contrastively (CLIP or SigLIP loss, LiT).
    Train(Box<commands::train::Args>),
    /// Draw a training run's loss and evaluation curves to a PNG.
    Plot(commands::plot::Args),
    /// Measure embedding throughput (optionally next to the PyTorch reference).
    Bench(commands::bench::Args),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SEER_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Embed(args) => commands::embed::run(args),
        Command::Classify(args) => commands::classify::run(args),
        Command::Eval(cmd) => commands::eval::run(cmd),
        Command::Index(args) => commands::index::run(args),
        Command::Search(args) => commands::search::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Status(args) => commands::status::run(args),
        Command::Dupes(args) => commands::dupes::run(args),
        Command::Export(args) => commands::exchange::export(args),
        Command::Import(args) => commands::exchange::import(args),
        Command::Models(args) => commands::models::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Train(args) => commands::train::run(*args),
        Command::Plot(args) => commands::plot::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", common::error_line(&e));
            std::process::ExitCode::from(2)
        }
    }
}
