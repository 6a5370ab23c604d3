//! The settings a resumed run must share with the run it continues: the model's
//! architecture, everything that decides the data stream, and the optimisation
//! hyper-parameters. They are stored in every checkpoint and compared on
//! `--resume`; a refusal lists each difference as `name: old → new`.

use seer_data::DataSource;
use serde_json::{json, Map, Value};

use crate::params::ParamStore;
use crate::trainer::TrainOptions;

/// The run's settings as JSON (stored in `state.json` under `run`).
pub fn run_settings(o: &TrainOptions, store: &ParamStore) -> Value {
    let d = &o.data;
    json!({
        "model": serde_json::to_value(store.config()).unwrap_or(Value::Null),
        "data": {
            "sources": d.sources.iter().map(source_name).collect::<Vec<_>>(),
            "classes": d.prompts.as_ref().map(|p| &p.classes),
            "templates": d.prompts.as_ref().map(|p| &p.templates),
            "augment": d.augment.map(|a| format!("{a:?}")),
            "preprocess": format!("{:?}", d.preprocess),
            "shuffle_buffer": d.shuffle_buffer,
            "seed": d.seed,
            "max_pixels": d.limits.max_pixels,
            "max_file_bytes": d.limits.max_file_bytes,
        },
        "batch_size": o.batch_size,
        "steps": o.steps,
        "lr": o.lr,
        "warmup": o.warmup,
        "loss": o.loss,
        "positives": o.positives,
        "seed": o.seed,
        "lock_image": o.lock_image,
        "lock_text": o.lock_text,
        "weight_decay": o.adamw.weight_decay,
        "beta1": o.adamw.beta1,
        "beta2": o.adamw.beta2,
        "eps": o.adamw.eps,
        "grad_clip": o.grad_clip,
    })
}

/// A source by its canonical path, so `./shards/a.tar` and `shards/a.tar` (or
/// the same file named from another folder) count as the same data.
fn source_name(source: &DataSource) -> String {
    let (DataSource::Shard(p) | DataSource::Jsonl(p) | DataSource::Csv(p)) = source;
    let path = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
    path.display().to_string()
}

/// Longest value shown in a difference (class lists can be long).
const SHOWN_CHARS: usize = 80;

fn show(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "(not recorded)".into();
    };
    let text = v.to_string();
    if text.chars().count() <= SHOWN_CHARS {
        return text;
    }
    let head: String = text.chars().take(SHOWN_CHARS).collect();
    format!("{head}…")
}

/// Leaves of a JSON object as `a.b.c` → value; arrays and scalars are leaves.
fn flatten(prefix: &str, v: &Value, out: &mut Map<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// Each setting that differs, as `name: old → new`, in name order.
pub fn differences(old: &Value, new: &Value) -> Vec<String> {
    let (mut a, mut b) = (Map::new(), Map::new());
    flatten("", old, &mut a);
    flatten("", new, &mut b);
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {} → {}", show(a.get(k)), show(b.get(k))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_nested_settings_with_both_values() {
        let old = json!({"model": {"vision": {"layers": 2, "width": 32}}, "lr": 0.001, "gone": 1});
        let new =
            json!({"model": {"vision": {"layers": 4, "width": 32}}, "lr": 0.001, "new": true});
        assert_eq!(
            differences(&old, &new),
            [
                "gone: 1 → (not recorded)",
                "model.vision.layers: 2 → 4",
                "new: (not recorded) → true"
            ]
        );
        assert!(differences(&old, &old).is_empty());
    }

    #[test]
    fn long_values_are_shortened() {
        let long: Vec<String> = (0..100).map(|i| format!("class {i}")).collect();
        let d = differences(&json!({ "classes": long }), &json!({ "classes": ["a"] }));
        assert_eq!(d.len(), 1);
        assert!(d[0].contains('…') && d[0].len() < 300, "{}", d[0]);
    }
}
