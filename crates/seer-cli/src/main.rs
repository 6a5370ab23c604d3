//! `seer`: CLIP embeddings, zero-shot classification and evaluation from the
//! command line. Each subcommand lives in `commands/`; shared options and output
//! helpers in `common.rs` and `output.rs`.

/// `println!` that returns the write's error (as `anyhow::Error`) instead of
/// panicking: stdout closed early (`seer status | head -1`) ends the command
/// quietly (see `closed_pipe`), stdout full (`> /dev/full`) with `error: No
/// space left on device`, exit 2, as for the commands that stream their
/// results through `writeln!`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err(anyhow::Error::from)
    }};
}

/// `eprintln!` for the command line's messages, ignoring a failed write: a
/// stderr whose reader has gone (`seer classify … 2>&1 | head -1`) made
/// `eprintln!` panic mid-batch; the run goes on and ends with its own status.
macro_rules! diag {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

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
    /// Memory, in MiB, that all image decodes share: a decode reserves 8 bytes per
    /// pixel before it allocates, so large images wait for each other instead of
    /// decoding side by side on every thread (0: one image at a time).
    #[arg(
        long,
        global = true,
        env = "SEER_DECODE_MEMORY",
        value_name = "MIB",
        default_value_t = seer_image::DEFAULT_DECODE_MEMORY >> 20
    )]
    decode_memory: u64,
    /// Never use the network: models must be local folders or in the Hugging
    /// Face cache (also `HF_HUB_OFFLINE=1`, as Python tools read it).
    #[arg(
        long,
        global = true,
        env = "HF_HUB_OFFLINE",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    offline: bool,
    /// Highest instruction set the CPU kernels use: portable, avx2, avx512 or amx
    /// (to compare kernels or rule one out).
    #[arg(long, global = true, hide = true, env = "SEER_ISA", value_parser = parse_isa)]
    isa: Option<seer_kernels::Isa>,
    /// Run f32 models on AVX-512 FMA where the CPU has AMX tiles, instead of
    /// splitting them onto the tiles: faster where the tiles are slow or
    /// shared (`seer bench` times both and says which pays).
    #[arg(
        long,
        global = true,
        env = "SEER_F32_FMA",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    f32_on_fma: bool,
    /// Portable dot products in the vector search (no AVX2).
    #[arg(
        long,
        global = true,
        hide = true,
        env = "SEER_ANN_NO_SIMD",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    ann_no_simd: bool,
}

fn parse_isa(s: &str) -> Result<seer_kernels::Isa, String> {
    seer_kernels::Isa::parse(s)
        .ok_or_else(|| format!("unknown ISA '{s}' (portable, avx2, avx512, amx)"))
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
    /// Write a caption for each image (BLIP).
    Caption(commands::caption::Args),
    /// Find objects by text labels or an example image (OWL-ViT, OWLv2).
    Detect(commands::detect::Args),
    /// Cut objects out of an image from clicks and boxes (SAM).
    Segment(commands::segment::Args),
    /// Answer a question about an image (BLIP VQA).
    Ask(commands::ask::Args),
    /// Score how well texts describe an image (BLIP image-text matching).
    Match(commands::matching::Args),
    /// Index folders of photos and videos (incremental; re-run to bring the index up to date).
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

/// Colour log lines only for a person at a terminal: never when stderr is piped
/// or redirected (escape codes would land in the file), nor under `NO_COLOR`
/// (https://no-color.org: set and not empty).
fn log_colours() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    std::io::stderr().is_terminal() && !no_color
}

fn main() -> std::process::ExitCode {
    seer_kernels::alloc::keep_freed_blocks();
    seer_models::nn::candle_threads::run_candle_ops_inline();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SEER_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(log_colours())
        .init();
    let cli = Cli::parse();
    // What an interrupted run leaves, said when it stops (`serve` shuts down
    // gracefully on Ctrl-C by itself).
    let after_signal = match &cli.command {
        Command::Serve(_) => None,
        Command::Index(_) => Some("the files indexed so far stay indexed, run it again to finish"),
        Command::Train(_) => Some(
            "`--resume` continues from its newest checkpoint; before the first one, the same \
             command starts over",
        ),
        _ => Some(""),
    };
    if let Some(note) = after_signal {
        output::exit_cleanly_on_signals(note);
    }
    seer_image::DecodeBudget::global().set_capacity(cli.decode_memory.saturating_mul(1 << 20));
    // Process-wide settings the libraries take as calls, not from the environment.
    seer_hub::set_offline(cli.offline);
    if let Some(isa) = cli.isa {
        seer_kernels::Isa::limit(isa);
    }
    if cli.f32_on_fma {
        seer_kernels::gemm::keep_f32_off_tiles();
    }
    if cli.ann_no_simd {
        seer_ann::simd::force_portable();
    }
    let result = match cli.command {
        Command::Embed(args) => commands::embed::run(args),
        Command::Classify(args) => commands::classify::run(args),
        Command::Eval(cmd) => commands::eval::run(cmd),
        Command::Caption(args) => commands::caption::run(args),
        Command::Detect(args) => commands::detect::run(args),
        Command::Segment(args) => commands::segment::run(args),
        Command::Ask(args) => commands::ask::run(args),
        Command::Match(args) => commands::matching::run(args),
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
        // The reader went away (`seer search dog | head -1`): it has what it
        // wanted, so stop quietly, as ripgrep and the coreutils do.
        Err(e) if closed_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            diag!("error: {}", common::error_line(&e));
            std::process::ExitCode::from(2)
        }
    }
}

/// Whether `e` comes from writing to a pipe whose reader has closed it.
fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
