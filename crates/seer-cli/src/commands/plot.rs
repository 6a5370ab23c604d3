//! `seer plot`: draws a training run's curves (metrics.jsonl) to a PNG.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// A training output folder (with metrics.jsonl) or a metrics.jsonl file.
    run: PathBuf,
    /// Where to write the picture (default: RUN/curves.png).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Title (default: the folder name).
    #[arg(long)]
    title: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (metrics, dir) = if args.run.is_dir() {
        (args.run.join("metrics.jsonl"), args.run.clone())
    } else {
        let dir = args.run.parent().map(PathBuf::from).unwrap_or_default();
        (args.run.clone(), dir)
    };
    let out = args.out.unwrap_or_else(|| dir.join("curves.png"));
    let title = args.title.unwrap_or_else(|| {
        dir.canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().to_string()))
            .unwrap_or_else(|| "training run".into())
    });
    let summary = seer_plot::plot_metrics(&metrics, &out, &title)?;
    if args.json {
        out!(
            "{}",
            serde_json::json!({
                "png": out,
                "train_points": summary.train_points,
                "eval_points": summary.eval_points,
                "skipped_lines": summary.skipped_lines,
                "series": summary.series,
            })
        )?;
    } else {
        out!(
            "{} ({} training points, {} evaluations)",
            out.display(),
            summary.train_points,
            summary.eval_points
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
