//! Training-curve plots for seer: `metrics.jsonl` (as written by the trainer) to a PNG.
//!
//! - [`read_metrics`] parses the JSON lines: `{"kind":"train","step":..,"loss":..,"lr":..,
//!   "logit_scale":..}` and `{"kind":"eval","step":..,<any numeric metric>..}` records.
//!   Bad lines are skipped and counted, never fatal.
//! - [`render`] draws a [`WIDTH`] x [`HEIGHT`] image: a title over three panels sharing
//!   the step axis: training loss (raw and moving average), evaluation metrics (0..1,
//!   one colour per series, last value in the legend) and learning rate (with the logit
//!   scale on a right-hand axis).
//! - [`plot_metrics`] does both and writes the PNG (atomically, via a temporary file).
//!
//! Text uses a built-in 5x7 bitmap font, so there is no font file or system dependency.

mod canvas;
mod error;
mod font;
mod metrics;
mod render;
mod scale;

use std::io::BufWriter;
use std::path::Path;

use seer_util::fs::{AtomicFile, Durability};

pub use error::PlotError;
pub use metrics::{read_metrics, Metrics, Series};
pub use render::{panel_rects, render, PlotRect, HEIGHT, WIDTH};
pub use scale::{format_tick, ticks, Ticks};

/// What [`plot_metrics`] read and drew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotSummary {
    /// Train records read.
    pub train_points: usize,
    /// Eval records read.
    pub eval_points: usize,
    /// Lines skipped (blank, not JSON, no numeric `step`).
    pub skipped_lines: usize,
    /// Names of the series drawn, panel by panel (`loss`, eval metrics, `lr`,
    /// `logit_scale`).
    pub series: Vec<String>,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
}

/// Reads `metrics_path`, renders it under `title` and writes the PNG to `out_png`.
pub fn plot_metrics(
    metrics_path: &Path,
    out_png: &Path,
    title: &str,
) -> Result<PlotSummary, PlotError> {
    let metrics = read_metrics(metrics_path)?;
    let (img, series) = render::render_with_series(&metrics, title);
    save_png(&img, out_png)?;
    Ok(PlotSummary {
        train_points: metrics.train_points,
        eval_points: metrics.eval_points,
        skipped_lines: metrics.skipped_lines,
        series,
        width: img.width(),
        height: img.height(),
    })
}

/// Writes `img` as PNG to a temporary file beside `path`, then renames it into place so
/// a viewer never sees a half-written plot.
fn save_png(img: &image::RgbImage, path: &Path) -> Result<(), PlotError> {
    let write_err = |source| PlotError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = AtomicFile::create(path, Durability::NoFsync).map_err(write_err)?;
    let mut out = BufWriter::new(file.file());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|source| PlotError::Encode {
            path: path.to_path_buf(),
            source,
        })?;
    out.into_inner().map_err(|e| write_err(e.into_error()))?;
    file.commit().map_err(write_err)
}
