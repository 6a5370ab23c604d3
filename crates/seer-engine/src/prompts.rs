//! Class names and prompt templates from built-in sets or files.
//!
//! Files: plain text (one entry per line), a JSON list of strings, or a CLIP
//! `prompts.json` (`{dataset: {"classes": [...], "templates": [...]}}`) with the
//! dataset chosen by a `#DATASET` suffix, e.g. `prompts.json#CIFAR10`.

use std::path::Path;

use serde_json::Value;

use crate::error::{file_error, io_error, EngineError, Result};

/// The single template CLIP's paper uses as its baseline.
pub const DEFAULT_TEMPLATES: &[&str] = &["a photo of a {}."];

/// The 7-template subset OpenAI's prompt-engineering notebook selected for
/// ImageNet; it performs about as well as the full 80-template ensemble (pass that
/// as a file, e.g. `clip-prompts/imagenet_templates.txt`, when wanted).
pub const IMAGENET_TEMPLATES: &[&str] = &[
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    Classes,
    Templates,
}

impl ListKind {
    fn key(self) -> &'static str {
        match self {
            Self::Classes => "classes",
            Self::Templates => "templates",
        }
    }
}

/// Templates from `default`, `imagenet`, or a file.
pub fn templates(spec: &str) -> Result<Vec<String>> {
    let list = match spec {
        "default" => DEFAULT_TEMPLATES.iter().map(|s| s.to_string()).collect(),
        "imagenet" => IMAGENET_TEMPLATES.iter().map(|s| s.to_string()).collect(),
        file => read_list(file, ListKind::Templates)?,
    };
    // One class name fills one `{}`: Python's `str.format` with one argument
    // refuses a second placeholder (IndexError), so the reference would too.
    if let Some(bad) = list.iter().find(|t| t.matches("{}").count() != 1) {
        let found = bad.matches("{}").count();
        return Err(EngineError::Invalid(if found == 0 {
            format!("template '{bad}' has no {{}} placeholder for the class name")
        } else {
            format!("template '{bad}' has {found} {{}} placeholders; the class name fills one")
        }));
    }
    Ok(list)
}

/// A list from `FILE` or `FILE#DATASET`.
pub fn read_list(spec: &str, kind: ListKind) -> Result<Vec<String>> {
    let (file, dataset) = match spec.rsplit_once('#') {
        Some((f, d)) if !Path::new(spec).exists() => (f, Some(d)),
        _ => (spec, None),
    };
    let path = Path::new(file);
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let list: Vec<String> = if is_json {
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| file_error(path, format!("invalid JSON: {e}")))?;
        let value = match dataset {
            Some(d) => value
                .get(d)
                .and_then(|v| v.get(kind.key()))
                .ok_or_else(|| file_error(path, format!("no '{d}' entry with '{}'", kind.key())))?,
            None => &value,
        };
        json_strings(value).ok_or_else(|| {
            file_error(path, format!("expected a list of strings (for a prompts.json, name the dataset: {file}#DATASET)"))
        })?
    } else {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    if list.is_empty() {
        return Err(file_error(path, format!("no {} found", kind.key())));
    }
    Ok(list)
}

/// Strings from a JSON list; a list of synonym lists (as FER2013) takes the first.
fn json_strings(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|e| match e {
            Value::String(s) => Some(s.clone()),
            Value::Array(a) => a.first()?.as_str().map(str::to_string),
            _ => None,
        })
        .collect()
}

/// `template` with its placeholder replaced by `class`, as Python's `str.format`.
pub fn fill(template: &str, class: &str) -> String {
    template.replace("{}", class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_has_exactly_one_placeholder() {
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &str| {
            let path = dir.path().join("t.txt");
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        assert_eq!(templates(&write("a photo of a {}.")).unwrap().len(), 1);
        let e = templates(&write("a photo")).unwrap_err().to_string();
        assert!(e.contains("no {} placeholder"), "{e}");
        let e = templates(&write("a {}\nb {} {}")).unwrap_err().to_string();
        assert!(e.contains("has 2 {} placeholders"), "{e}");
        for builtin in ["default", "imagenet"] {
            assert!(!templates(builtin).unwrap().is_empty());
        }
    }
}
