//! Page layout: a title over three panels sharing the step axis (training loss,
//! evaluation metrics, learning rate), each with a legend in the right margin.

use image::RgbImage;

use crate::canvas::{Canvas, Colour};
use crate::font;
use crate::metrics::{Metrics, Series};
use crate::scale::{format_tick, format_value, ticks, Ticks};
use crate::PlotError;

/// Width of the rendered image in pixels.
pub const WIDTH: u32 = 1200;
/// Height of the rendered image in pixels.
pub const HEIGHT: u32 = 900;

const LEFT: i64 = 120;
const RIGHT: i64 = 910;
const TOP: i64 = 60;
const PANEL_H: i64 = 240;
const GAP: i64 = 30;
const LEGEND_X: i64 = RIGHT + 72;
const LEGEND_ROW: i64 = 38;
/// Text scale for labels and legends; the title is drawn at 1.5 times this.
const S: i64 = 2;

const WHITE: Colour = [255; 3];
const BLACK: Colour = [0; 3];
const GRID: Colour = [228; 3];
const GREY: Colour = [110; 3];
const LOSS_RAW: Colour = [174, 199, 232];
const LOSS_AVG: Colour = [31, 119, 180];
const LR: Colour = [44, 160, 44];
const LOGIT: Colour = [148, 103, 189];
const PALETTE: [Colour; 8] = [
    [214, 39, 40],
    [31, 119, 180],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [23, 190, 207],
    [140, 86, 75],
    [227, 119, 194],
];

/// A rectangle in image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlotRect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// The plot areas (inside the axes, frame included) of the loss, evaluation and
/// learning-rate panels, top to bottom, in a [`render`]ed image.
pub fn panel_rects() -> [PlotRect; 3] {
    std::array::from_fn(|i| PlotRect {
        x: LEFT as u32,
        y: (TOP + i as i64 * (PANEL_H + GAP)) as u32,
        width: (RIGHT - LEFT + 1) as u32,
        height: (PANEL_H + 1) as u32,
    })
}

/// Maps data to pixels in one panel.
struct Panel {
    x0: i64,
    y0: i64,
    x1: i64,
    y1: i64,
    x: Ticks,
    y: Ticks,
}

impl Panel {
    fn new(index: usize, x: &Ticks, y: Ticks) -> Panel {
        let y0 = TOP + index as i64 * (PANEL_H + GAP);
        Panel {
            x0: LEFT,
            y0,
            x1: RIGHT,
            y1: y0 + PANEL_H,
            x: x.clone(),
            y,
        }
    }

    /// Pixel position of `(step, value)` with values read on axis `y`.
    fn at(&self, (step, value): (f64, f64), y: &Ticks) -> (f64, f64) {
        let w = (self.x1 - self.x0) as f64;
        let h = (self.y1 - self.y0) as f64;
        (
            self.x0 as f64 + self.x.fraction(step) * w,
            self.y1 as f64 - y.fraction(value) * h,
        )
    }

    /// Clip rectangle strictly inside the frame, for lines.
    fn inner(&self) -> (i64, i64, i64, i64) {
        (self.x0 + 1, self.y0 + 1, self.x1, self.y1)
    }

    /// Clip rectangle for markers: they may overlap the frame by their radius so that
    /// points on an edge (the first step, the latest eval) stay whole.
    fn outer(&self) -> (i64, i64, i64, i64) {
        (self.x0 - 4, self.y0 - 4, self.x1 + 5, self.y1 + 5)
    }
}

/// One legend row: a swatch, a name and a value underneath.
struct Entry {
    colour: Colour,
    name: String,
    value: String,
    marker: bool,
}

/// Draws the training curves of `metrics` under `title` as a [`WIDTH`] x [`HEIGHT`]
/// image. Eval series whose values all lie in 0..=1 go to the evaluation panel; other
/// eval series with "loss" in their name are drawn as markers over the training loss.
/// Any input renders (empty panels say so); the `Result` is kept for future checks.
pub fn render(metrics: &Metrics, title: &str) -> Result<RgbImage, PlotError> {
    Ok(render_with_series(metrics, title).0)
}

/// [`render`], also returning the names of the series drawn, panel by panel.
pub(crate) fn render_with_series(metrics: &Metrics, title: &str) -> (RgbImage, Vec<String>) {
    let mut c = Canvas::new(WIDTH, HEIGHT, WHITE);
    let mut drawn = Vec::new();
    let usable = |s: &&Series| !s.points.is_empty();
    let is_acc = |s: &Series| s.points.iter().all(|&(_, v)| (0.0..=1.0).contains(&v));
    let acc: Vec<&Series> = metrics
        .eval
        .iter()
        .filter(usable)
        .filter(|s| is_acc(s))
        .collect();
    let eval_loss: Vec<&Series> = metrics
        .eval
        .iter()
        .filter(usable)
        .filter(|s| !is_acc(s) && s.name.contains("loss"))
        .collect();

    let train = [&metrics.loss, &metrics.lr, &metrics.logit_scale];
    let steps = train
        .iter()
        .chain(&acc)
        .chain(&eval_loss)
        .flat_map(|s| s.points.iter().map(|p| p.0));
    let (xmin, xmax) = steps.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), s| {
        (a.min(s), b.max(s))
    });
    // Steps start at 0 (unless negative) and span at least 10, so few points still get
    // whole-number ticks.
    let xlo = if xmin <= xmax { xmin.min(0.0) } else { 0.0 };
    let x = ticks(xlo, if xmax > xlo + 10.0 { xmax } else { xlo + 10.0 }, 10);

    let title = fit(title, (WIDTH as i64 - 40) / (font::ADVANCE * 3));
    c.text(
        (WIDTH as i64 - font::text_width(&title, 3)) / 2,
        16,
        &title,
        3,
        BLACK,
    );

    // Panel 1: training loss, raw and smoothed, plus any eval loss.
    let (avg, window) = moving_average(&metrics.loss.points);
    let mut values: Vec<f64> = metrics.loss.points.iter().map(|p| p.1).collect();
    values.extend(eval_loss.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    let (lo, hi) = robust_range(&mut values);
    let p = Panel::new(0, &x, ticks(lo, hi, 6));
    frame(&mut c, &p, "loss", false);
    let mut legend = Vec::new();
    if values.is_empty() {
        centre_text(&mut c, &p, "no training loss yet");
    }
    c.set_clip(Some(p.inner()));
    // With under 50 points the average is the raw curve: draw that alone, dark.
    let raw_colour = if window > 1 { LOSS_RAW } else { LOSS_AVG };
    polyline(
        &mut c,
        &p,
        &p.y,
        &metrics.loss.points,
        raw_colour,
        window.min(2) as i64,
    );
    if let Some(raw) = metrics.loss.last() {
        drawn.push("loss".to_string());
        legend.push(Entry {
            colour: raw_colour,
            name: "loss".into(),
            value: format_value(raw),
            marker: false,
        });
    }
    if let (true, Some(&(_, smooth))) = (window > 1, avg.last()) {
        polyline(&mut c, &p, &p.y, &avg, LOSS_AVG, 2);
        let name = format!("avg of {window}");
        legend.push(Entry {
            colour: LOSS_AVG,
            name,
            value: format_value(smooth),
            marker: false,
        });
    }
    for (i, s) in eval_loss.iter().enumerate() {
        let colour = PALETTE[(i + 3) % PALETTE.len()];
        series_with_markers(&mut c, &p, s, colour);
        let value = s.last().map(format_value).unwrap_or_default();
        legend.push(Entry {
            colour,
            name: s.name.clone(),
            value,
            marker: true,
        });
        drawn.push(s.name.clone());
    }
    c.set_clip(None);
    draw_legend(&mut c, &p, &legend);

    // Panel 2: evaluation metrics on a fixed 0..1 axis.
    let p = Panel::new(1, &x, ticks(0.0, 1.0, 6));
    frame(&mut c, &p, "accuracy", false);
    if acc.is_empty() {
        centre_text(&mut c, &p, "no evaluation yet");
    }
    let mut legend = Vec::new();
    c.set_clip(Some(p.inner()));
    for (i, s) in acc.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        series_with_markers(&mut c, &p, s, colour);
        let value = s
            .last()
            .map(|v| format!("{:.1}%", v * 100.0))
            .unwrap_or_default();
        legend.push(Entry {
            colour,
            name: s.name.clone(),
            value,
            marker: true,
        });
        drawn.push(s.name.clone());
    }
    c.set_clip(None);
    draw_legend(&mut c, &p, &legend);

    // Panel 3: learning rate (left axis, from 0) and logit scale (right axis).
    let lr_hi = metrics.lr.points.iter().fold(0.0f64, |m, p| m.max(p.1));
    let lr_lo = metrics.lr.points.iter().fold(0.0f64, |m, p| m.min(p.1));
    let p = Panel::new(
        2,
        &x,
        ticks(lr_lo, if lr_hi > lr_lo { lr_hi } else { lr_lo + 1.0 }, 6),
    );
    frame(&mut c, &p, "learning rate", true);
    let mut legend = Vec::new();
    if metrics.lr.points.is_empty() && metrics.logit_scale.points.is_empty() {
        centre_text(&mut c, &p, "no learning rate logged");
    }
    c.set_clip(Some(p.inner()));
    polyline(&mut c, &p, &p.y, &metrics.lr.points, LR, 2);
    if let Some(v) = metrics.lr.last() {
        legend.push(Entry {
            colour: LR,
            name: "lr".into(),
            value: format_value(v),
            marker: false,
        });
        drawn.push("lr".into());
    }
    let logit = &metrics.logit_scale.points;
    if let Some(v) = metrics.logit_scale.last() {
        let (lo, hi) = logit
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.1), b.max(p.1))
            });
        let ly = ticks(lo, hi, 6);
        polyline(&mut c, &p, &ly, logit, LOGIT, 2);
        c.set_clip(None);
        for &t in &ly.values {
            let y = p.at((p.x.lo, t), &ly).1.round() as i64;
            c.fill_rect(RIGHT + 1, y, 5, 1, BLACK);
            c.text(RIGHT + 9, y - 3 * S, &format_tick(t, ly.step), S, LOGIT);
        }
        legend.push(Entry {
            colour: LOGIT,
            name: "logit scale".into(),
            value: format_value(v),
            marker: false,
        });
        drawn.push("logit_scale".into());
    }
    c.set_clip(None);
    draw_legend(&mut c, &p, &legend);
    let w = font::text_width("step", S);
    c.text((LEFT + RIGHT - w) / 2, p.y1 + 34, "step", S, BLACK);

    (c.img, drawn)
}

/// Grid, frame, tick labels (x labels only if `x_labels`) and the rotated axis name.
fn frame(c: &mut Canvas, p: &Panel, name: &str, x_labels: bool) {
    for &v in &p.x.values {
        let x = p.at((v, p.y.lo), &p.y).0.round() as i64;
        c.fill_rect(x, p.y0, 1, p.y1 - p.y0, GRID);
        if x_labels {
            let label = format_tick(v, p.x.step);
            c.fill_rect(x, p.y1, 1, 6, BLACK);
            c.text(
                x - font::text_width(&label, S) / 2,
                p.y1 + 10,
                &label,
                S,
                BLACK,
            );
        }
    }
    for &v in &p.y.values {
        let y = p.at((p.x.lo, v), &p.y).1.round() as i64;
        c.fill_rect(p.x0, y, p.x1 - p.x0, 1, GRID);
        c.fill_rect(p.x0 - 5, y, 5, 1, BLACK);
        let label = format_tick(v, p.y.step);
        c.text(
            p.x0 - 9 - font::text_width(&label, S),
            y - 3 * S,
            &label,
            S,
            BLACK,
        );
    }
    c.fill_rect(p.x0, p.y0, p.x1 - p.x0 + 1, 1, BLACK);
    c.fill_rect(p.x0, p.y1, p.x1 - p.x0 + 1, 1, BLACK);
    c.fill_rect(p.x0, p.y0, 1, p.y1 - p.y0 + 1, BLACK);
    c.fill_rect(p.x1, p.y0, 1, p.y1 - p.y0 + 1, BLACK);
    let w = font::text_width(name, S);
    c.text_up(16, (p.y0 + p.y1 + w) / 2, name, S, BLACK);
}

fn centre_text(c: &mut Canvas, p: &Panel, s: &str) {
    let w = font::text_width(s, S);
    c.text((p.x0 + p.x1 - w) / 2, (p.y0 + p.y1) / 2 - 7, s, S, GREY);
}

/// Joins the points with a line; a single point is drawn as a dot.
fn polyline(c: &mut Canvas, p: &Panel, y: &Ticks, pts: &[(f64, f64)], colour: Colour, thick: i64) {
    if let [only] = pts {
        c.set_clip(Some(p.outer()));
        c.dot(p.at(*only, y), 4, colour);
        c.set_clip(Some(p.inner()));
    }
    for w in pts.windows(2) {
        c.line(p.at(w[0], y), p.at(w[1], y), colour, thick);
    }
}

/// A 2-pixel line with a dot per point.
fn series_with_markers(c: &mut Canvas, p: &Panel, s: &Series, colour: Colour) {
    polyline(c, p, &p.y, &s.points, colour, 2);
    c.set_clip(Some(p.outer()));
    for &pt in &s.points {
        c.dot(p.at(pt, &p.y), 4, colour);
    }
    c.set_clip(Some(p.inner()));
}

/// Legend rows in the right margin beside panel `p`; rows that do not fit are counted.
fn draw_legend(c: &mut Canvas, p: &Panel, entries: &[Entry]) {
    let fits = ((p.y1 - p.y0) / LEGEND_ROW) as usize;
    let shown = if entries.len() <= fits {
        entries.len()
    } else {
        fits.saturating_sub(1)
    };
    let max_chars = (WIDTH as i64 - 6 - LEGEND_X - 26) / (font::ADVANCE * S);
    let mut y = p.y0 + 2;
    for e in &entries[..shown] {
        if e.marker {
            c.dot(((LEGEND_X + 9) as f64, (y + 7) as f64), 5, e.colour);
        } else {
            c.fill_rect(LEGEND_X, y + 6, 18, 3, e.colour);
        }
        c.text(LEGEND_X + 26, y, &fit_tail(&e.name, max_chars), S, BLACK);
        c.text(LEGEND_X + 26, y + 18, &fit(&e.value, max_chars), S, GREY);
        y += LEGEND_ROW;
    }
    if shown < entries.len() {
        c.text(
            LEGEND_X + 26,
            y,
            &format!("+{} more", entries.len() - shown),
            S,
            GREY,
        );
    }
}

/// `s` cut to `max` characters, ending in "..." when cut.
fn fit(s: &str, max: i64) -> String {
    let max = max.max(3) as usize;
    if s.chars().count() <= max {
        return s.to_string();
    }
    s.chars().take(max - 3).chain("...".chars()).collect()
}

/// `s` cut to its last `max` characters, starting with ".." when cut (metric names
/// differ mostly at the end: `..._top1`, `..._top5`).
fn fit_tail(s: &str, max: i64) -> String {
    let max = max.max(3) as usize;
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    "..".chars().chain(s.chars().skip(n - (max - 2))).collect()
}

/// Centred moving average over about 2% of the points, and its window length.
fn moving_average(pts: &[(f64, f64)]) -> (Vec<(f64, f64)>, usize) {
    let n = pts.len();
    let half = ((n as f64 * 0.02).round() as usize) / 2;
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0);
    for p in pts {
        prefix.push(prefix[prefix.len() - 1] + p.1);
    }
    let avg = (0..n)
        .map(|i| {
            let (a, b) = (i.saturating_sub(half), (i + half + 1).min(n));
            (pts[i].0, (prefix[b] - prefix[a]) / (b - a) as f64)
        })
        .collect();
    (avg, 2 * half + 1)
}

/// Value range for the loss axis: min to max, except that a few extreme spikes (beyond
/// three times the spread of the lowest 98%) are cut off so the curve stays readable.
fn robust_range(values: &mut [f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (0.0, 1.0);
    }
    values.sort_by(f64::total_cmp);
    let (lo, max) = (values[0], values[n - 1]);
    let q = values[((n - 1) as f64 * 0.98) as usize];
    if q > lo && max - lo > 3.0 * (q - lo) {
        (lo, q + 0.25 * (q - lo))
    } else {
        (lo, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        let pts: Vec<(f64, f64)> = (0..100).map(|i| (i as f64, (i % 2) as f64)).collect();
        let (avg, w) = moving_average(&pts);
        assert_eq!(w, 3);
        assert!((avg[50].1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(moving_average(&[]).0, vec![]);
        assert_eq!(fit("abcdefgh", 6), "abc...");
        assert_eq!(fit_tail("zeroshot_top1", 8), "..t_top1");
        let mut v: Vec<f64> = (0..100).map(f64::from).chain([1e9]).collect();
        let (lo, hi) = robust_range(&mut v);
        assert!(lo == 0.0 && hi < 200.0);
    }
}
