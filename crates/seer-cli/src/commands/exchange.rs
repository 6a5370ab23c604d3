//! `seer export` / `seer import`: embeddings in the layout clip-retrieval and
//! autofaiss read (`img_emb/img_emb_N.npy` + `metadata/metadata_N.parquet`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use seer_index::exchange;
use seer_index::npy::Dtype;
use seer_index::{Encoding, Store};

use crate::common::{index_dir, IndexCreatedHere};

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Output format (only the clip-retrieval npy + parquet layout).
    #[arg(long, default_value = "npy", value_parser = ["npy"])]
    format: String,
    /// Output folder. One already holding files of this layout (an earlier
    /// export) is refused, unless --overwrite.
    #[arg(long)]
    out: PathBuf,
    /// Remove the layout's files already in the output folder (img_emb_N.npy,
    /// metadata_N.parquet, errors/errors_N.parquet, errors/empty_N) before
    /// writing, so no earlier shard is left beside the new one; other files stay.
    #[arg(long)]
    overwrite: bool,
    /// Element type of the .npy: f32 or f16.
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16"])]
    dtype: String,
    /// The model whose vectors to export (default: the index's only model).
    #[arg(long, short, env = "SEER_MODEL")]
    model: Option<String>,
    #[arg(long, env = "SEER_INDEX")]
    index: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// A folder in the clip-retrieval layout.
    dir: PathBuf,
    /// The model the embeddings were made with (an alias, hub id or folder): queries
    /// will use it, and vectors of another size than it makes are refused.
    #[arg(long, short, env = "SEER_MODEL")]
    model: String,
    /// How vectors are stored: f16 (default), f32 or int8.
    #[arg(long, default_value = "f16", value_parser = crate::commands::index::parse_encoding)]
    encoding: Encoding,
    #[arg(long, env = "SEER_INDEX")]
    index: Option<PathBuf>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    ann: crate::common::AnnArgs,
}

pub fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(&index_dir(&args.index))?;
    let model = store.choose_model(args.model.as_deref().map(seer_hub::model_key).as_deref())?;
    let dtype = if args.dtype == "f16" {
        Dtype::F16
    } else {
        Dtype::F32
    };
    let summary = exchange::export(&store, &model, &args.out, dtype, args.overwrite)?;
    report(
        &summary,
        args.json,
        &format!("exported to {}", args.out.display()),
    )
}

pub fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let created = IndexCreatedHere::note(&index_dir(&args.index));
    let result = import_into(args);
    if result.is_err() {
        created.remove_if_failed_empty();
    }
    result
}

/// `seer import`'s work (see [`import`]).
fn import_into(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let mut store = Store::open(&index_dir(&args.index))?;
    let name = seer_hub::model_key(&args.model);
    let dim = match store.models()?.into_iter().find(|m| m.name == name) {
        Some(known) => known.dim,
        None => model_dim(&args.model)?,
    };
    let summary = exchange::import(
        &mut store,
        &name,
        dim,
        &args.dir,
        args.encoding,
        args.ann.ann_threshold,
    )?;
    report(
        &summary,
        args.json,
        &format!("imported from {}", args.dir.display()),
    )
}

/// The size of the vectors `spec` makes. A CLIP model's is read from its
/// config without loading weights (nor the tokenizer, which open_clip folders
/// lack); another family's model is loaded, as its families define the size
/// differently. A hub model is fetched like any other command would.
fn model_dim(spec: &str) -> anyhow::Result<usize> {
    let context = || format!("cannot learn the size of the vectors model '{spec}' makes");
    let resolved =
        seer_hub::resolve(spec, crate::output::stderr_is_terminal()).with_context(context)?;
    let family = seer_engine::registry::detect(&resolved.dir).with_context(context)?;
    if family.family.name != seer_engine::registry::CLIP {
        let model = seer_engine::LoadedModel::load_dir(&resolved.dir, &Default::default())
            .with_context(context)?;
        return Ok(model.embed_dim());
    }
    let config = seer_models::ModelFiles::from_dir(&resolved.dir)
        .and_then(|files| files.read_config())
        .with_context(context)?;
    Ok(config.embed_dim)
}

fn report(summary: &exchange::ExchangeSummary, json: bool, what: &str) -> anyhow::Result<ExitCode> {
    if json {
        out!("{}", serde_json::to_string(summary)?)?;
    } else {
        let repeated = match summary.duplicates {
            0 => String::new(),
            1 => "; 1 row named a path an earlier row had (stored once, the later vector)".into(),
            n => format!(
                "; {n} rows named a path an earlier row had (stored once, the later vector)"
            ),
        };
        let frames = match summary.frames {
            0 => String::new(),
            n => format!(", and {n} video frames"),
        };
        out!(
            "{what}: {} vectors ({}-d) in {} shard(s){frames}{repeated}",
            summary.rows,
            summary.dim,
            summary.shards
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
