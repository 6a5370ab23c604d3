//! Reading `metrics.jsonl` as written by the trainer.

use std::path::Path;

use serde_json::Value;

use crate::PlotError;

/// Keys of an eval record that are bookkeeping, not metric series.
const NOT_SERIES: [&str; 5] = ["kind", "step", "epoch", "elapsed_s", "samples"];

/// A named series of `(step, value)` points in increasing step order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// The JSON key the values came from.
    pub name: String,
    /// `(step, value)` points; all finite, steps strictly increasing.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// An empty series called `name`.
    pub fn new(name: &str) -> Self {
        Series {
            name: name.to_string(),
            points: Vec::new(),
        }
    }

    /// Appends a point. Non-finite steps or values are skipped. A step at or before the
    /// last one (a run resumed from an earlier checkpoint) replaces the points from that
    /// step on, so the plot shows the history that was kept.
    pub fn push(&mut self, step: f64, value: f64) {
        if !step.is_finite() || !value.is_finite() {
            return;
        }
        while self.points.last().is_some_and(|&(s, _)| s >= step) {
            self.points.pop();
        }
        self.points.push((step, value));
    }

    /// The value of the last point, if any.
    pub fn last(&self) -> Option<f64> {
        self.points.last().map(|&(_, v)| v)
    }
}

/// The curves of one training run.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Training loss per logged step.
    pub loss: Series,
    /// Learning rate per logged step.
    pub lr: Series,
    /// CLIP logit scale (temperature) per logged step.
    pub logit_scale: Series,
    /// Every numeric field of eval records, one series per key, sorted by name.
    pub eval: Vec<Series>,
    /// Number of train records read.
    pub train_points: usize,
    /// Number of eval records read.
    pub eval_points: usize,
    /// Lines skipped as blank, not a JSON object, without a numeric `step`, or of an
    /// unknown kind without a numeric `loss`.
    pub skipped_lines: usize,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            loss: Series::new("loss"),
            lr: Series::new("lr"),
            logit_scale: Series::new("logit_scale"),
            eval: Vec::new(),
            train_points: 0,
            eval_points: 0,
            skipped_lines: 0,
        }
    }
}

impl Metrics {
    /// Parses JSON-lines text. Never fails: unusable lines are counted in
    /// [`Metrics::skipped_lines`]. Python-style `NaN`/`Infinity` tokens read as missing.
    pub fn parse(text: &str) -> Metrics {
        let mut m = Metrics::default();
        for line in text.lines() {
            if !m.add_line(line) {
                m.skipped_lines += 1;
            }
        }
        m.eval.sort_by(|a, b| a.name.cmp(&b.name));
        m
    }

    /// True when no train or eval record was read.
    pub fn is_empty(&self) -> bool {
        self.train_points == 0 && self.eval_points == 0
    }

    /// Adds one line; false if it is not usable.
    fn add_line(&mut self, line: &str) -> bool {
        let line = line.trim();
        if line.is_empty() {
            return false;
        }
        let Some(Value::Object(obj)) = parse_lenient(line) else {
            return false;
        };
        let num = |key: &str| {
            obj.get(key)
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite())
        };
        let Some(step) = num("step") else {
            return false;
        };
        match obj.get("kind").and_then(Value::as_str) {
            Some("eval") => {
                for (key, value) in &obj {
                    if NOT_SERIES.contains(&key.as_str()) {
                        continue;
                    }
                    if let Some(v) = value.as_f64() {
                        self.eval_series(key).push(step, v);
                    }
                }
                self.eval_points += 1;
            }
            kind => {
                if kind != Some("train") && num("loss").is_none() {
                    return false;
                }
                for (series, key) in [
                    (&mut self.loss, "loss"),
                    (&mut self.lr, "lr"),
                    (&mut self.logit_scale, "logit_scale"),
                ] {
                    if let Some(v) = num(key) {
                        series.push(step, v);
                    }
                }
                self.train_points += 1;
            }
        }
        true
    }

    fn eval_series(&mut self, name: &str) -> &mut Series {
        let i = match self.eval.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => {
                self.eval.push(Series::new(name));
                self.eval.len() - 1
            }
        };
        &mut self.eval[i]
    }
}

/// Reads and parses a metrics file. Errors (naming the file) if it cannot be read or
/// holds no usable record; bad lines are otherwise skipped and counted.
pub fn read_metrics(path: &Path) -> Result<Metrics, PlotError> {
    let bytes = std::fs::read(path).map_err(|source| PlotError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let metrics = Metrics::parse(&String::from_utf8_lossy(&bytes));
    if metrics.is_empty() {
        return Err(PlotError::NoData {
            path: path.to_path_buf(),
            skipped: metrics.skipped_lines,
        });
    }
    Ok(metrics)
}

/// Parses a JSON line, retrying with bare `NaN`, `Infinity` and `-Infinity` (as Python's
/// `json` writes them) replaced by `null`.
fn parse_lenient(line: &str) -> Option<Value> {
    match serde_json::from_str(line) {
        Ok(v) => Some(v),
        Err(_) if line.contains("NaN") || line.contains("Infinity") => {
            serde_json::from_str(&replace_non_finite(line)).ok()
        }
        Err(_) => None,
    }
}

fn replace_non_finite(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = line;
    'outer: while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else {
            for token in ["-Infinity", "Infinity", "NaN"] {
                if let Some(after) = rest.strip_prefix(token) {
                    out.push_str("null");
                    rest = after;
                    continue 'outer;
                }
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_non_finite_tokens_become_null_outside_strings() {
        assert_eq!(
            replace_non_finite(r#"{"a":NaN,"b":-Infinity,"c":"NaN \"Infinity"}"#),
            r#"{"a":null,"b":null,"c":"NaN \"Infinity"}"#
        );
    }

    #[test]
    fn resumed_history_replaces_later_points() {
        let mut s = Series::new("x");
        for (step, v) in [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0), (2.0, 9.0), (4.0, 4.0)] {
            s.push(step, v);
        }
        s.push(5.0, f64::NAN);
        assert_eq!(s.points, vec![(1.0, 1.0), (2.0, 9.0), (4.0, 4.0)]);
    }
}
