//! Labelled image sets for evaluation: a `labels.csv` (columns `file` and
//! `class_index`, paths relative to the CSV), a folder holding one, or a folder
//! of class folders named after the classes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::embed::has_image_extension;
use crate::error::{file_error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabeledImage {
    pub path: PathBuf,
    pub class_index: usize,
}

pub fn read_labeled_images(spec: &Path, classes: &[String]) -> Result<Vec<LabeledImage>> {
    let items = if spec.is_file() {
        read_labels_csv(spec)?
    } else if spec.join("labels.csv").is_file() {
        read_labels_csv(&spec.join("labels.csv"))?
    } else if spec.is_dir() {
        read_class_folders(spec, classes)?
    } else {
        return Err(file_error(spec, "no such file or folder"));
    };
    if let Some(bad) = items.iter().find(|i| i.class_index >= classes.len()) {
        return Err(file_error(
            &bad.path,
            format!(
                "class index {} but only {} classes were given",
                bad.class_index,
                classes.len()
            ),
        ));
    }
    if items.is_empty() {
        return Err(file_error(spec, "no labelled images found"));
    }
    Ok(items)
}

fn read_labels_csv(csv_path: &Path) -> Result<Vec<LabeledImage>> {
    let base = csv_path.parent().unwrap_or(Path::new("."));
    let mut reader = csv::Reader::from_path(csv_path).map_err(|e| file_error(csv_path, e))?;
    let headers = reader
        .headers()
        .map_err(|e| file_error(csv_path, e))?
        .clone();
    let column = |names: &[&str]| headers.iter().position(|h| names.contains(&h.trim()));
    let file_col = column(&["file", "path", "image", "filepath"])
        .ok_or_else(|| file_error(csv_path, "no 'file' column"))?;
    let class_col = column(&["class_index", "label_index", "class", "label"])
        .ok_or_else(|| file_error(csv_path, "no 'class_index' column"))?;
    let mut items = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(|e| file_error(csv_path, e))?;
        let row = line + 2; // 1-based, after the header
        let field = |col: usize| record.get(col).unwrap_or("").trim().to_string();
        let class_index = field(class_col).parse().map_err(|_| {
            file_error(
                csv_path,
                format!(
                    "row {row}: class index '{}' is not a number",
                    field(class_col)
                ),
            )
        })?;
        items.push(LabeledImage {
            path: base.join(field(file_col)),
            class_index,
        });
    }
    Ok(items)
}

fn comparable(name: &str) -> String {
    name.to_lowercase().replace(['_', '-'], " ")
}

fn read_class_folders(dir: &Path, classes: &[String]) -> Result<Vec<LabeledImage>> {
    let by_name: HashMap<String, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (comparable(c), i))
        .collect();
    let mut folders: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| file_error(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    let mut items = Vec::new();
    for folder in folders {
        let name = folder
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let class_index = *by_name
            .get(&comparable(&name))
            .ok_or_else(|| file_error(&folder, "folder name matches none of the class names"))?;
        let mut files: Vec<PathBuf> = walkdir::WalkDir::new(&folder)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file() && has_image_extension(e.path()))
            .map(|e| e.into_path())
            .collect();
        files.sort();
        items.extend(
            files
                .into_iter()
                .map(|path| LabeledImage { path, class_index }),
        );
    }
    Ok(items)
}
