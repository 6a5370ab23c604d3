//! `seer status`: what the index holds and what could not be indexed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use seer_index::Store;

use crate::common::index_dir;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, env = "SEER_INDEX")]
    index: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = index_dir(&args.index);
    let store = Store::open_read_only(&dir)?;
    let models = store.models()?;
    let failures = store.failures()?;
    // Group failures by their cause without the file name, for counts.
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for (path, error) in &failures {
        let reason = error
            .strip_prefix(path.as_str())
            .unwrap_or(error)
            .trim_start_matches(':')
            .trim()
            .to_string();
        *by_reason.entry(reason).or_default() += 1;
    }
    if args.json {
        let value = serde_json::json!({
            "index": dir,
            "files": store.file_count()?,
            "roots": store.roots()?,
            "models": models,
            "failures": failures.iter().map(|(p, e)| serde_json::json!({"path": p, "error": e})).collect::<Vec<_>>(),
            "failure_counts": by_reason,
        });
        println!("{value}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("index: {}", dir.display());
    println!("files: {}", store.file_count()?);
    for root in store.roots()? {
        println!("root:  {root}");
    }
    for m in &models {
        println!("model: {} ({}-d): {} vectors", m.name, m.dim, m.vectors);
    }
    println!("failures: {}", failures.len());
    for (reason, count) in &by_reason {
        println!("  {count:>6}  {reason}");
    }
    for (path, error) in &failures {
        println!(
            "  {path}: {}",
            crate::output::cause_without_path(path, error)
        );
    }
    Ok(ExitCode::SUCCESS)
}
