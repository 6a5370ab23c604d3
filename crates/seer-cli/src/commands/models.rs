//! `seer models`: the alias table and what is in the local Hugging Face cache.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cached = seer_hub::cached_models();
    if args.json {
        let aliases: Vec<_> = seer_hub::ALIASES
            .iter()
            .map(|a| serde_json::json!({"alias": a.name, "hub_id": a.hub_id, "description": a.description, "cached": cached.iter().any(|c| c.id == a.hub_id)}))
            .collect();
        let cached: Vec<_> = cached
            .iter()
            .map(|c| serde_json::json!({"id": c.id, "path": c.dir, "family": family(&c.dir)}))
            .collect();
        let families: Vec<_> = seer_engine::FAMILIES
            .iter()
            .map(|f| serde_json::json!({"family": f.name, "model_types": f.model_types, "loads": f.load.is_some()}))
            .collect();
        out!(
            "{}",
            serde_json::json!({"aliases": aliases, "cached": cached, "cache_dir": seer_hub::cache_dir(), "families": families})
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    out!("Aliases (use with --model):")?;
    for a in seer_hub::ALIASES {
        let mark = if cached.iter().any(|c| c.id == a.hub_id) {
            "cached"
        } else {
            ""
        };
        out!(
            "  {:<18} {:<42} {:<7} {}",
            a.name,
            a.hub_id,
            mark,
            a.description
        )?;
    }
    out!(
        "\nModels in the Hugging Face cache ({}):",
        seer_hub::cache_dir().display()
    )?;
    if cached.is_empty() {
        out!("  (none)")?;
    }
    for c in &cached {
        out!(
            "  {:<42} {:<8} {}",
            c.id,
            family(&c.dir).unwrap_or_else(|| "?".into()),
            c.dir.display()
        )?;
    }
    let types: Vec<String> = seer_engine::FAMILIES
        .iter()
        .filter(|f| f.load.is_some())
        .map(|f| format!("{} ({})", f.name, f.model_types.join(", ")))
        .collect();
    out!("\nFamilies this build loads: {}.", types.join("; "))?;
    out!("A local folder also works: --model /path/to/folder (transformers or open_clip layout).")?;
    Ok(ExitCode::SUCCESS)
}

/// The family of a cached model folder, or None when its config does not say
/// one this build knows.
fn family(dir: &std::path::Path) -> Option<String> {
    seer_engine::registry::detect(dir)
        .ok()
        .map(|d| d.family.name.to_string())
}
