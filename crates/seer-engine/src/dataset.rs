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
    // The first of `names` (in that order of preference) the header has.
    let column = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| headers.iter().position(|h| h.trim() == *name))
    };
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
                    "row {row}: class index '{}' (column '{}') is not a number",
                    field(class_col),
                    headers.get(class_col).unwrap_or_default().trim()
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

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
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
        // Hidden folders (`.ipynb_checkpoints`, `.thumbnails`) are no classes.
        .filter(|p| p.is_dir() && !is_hidden(p))
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
            .filter_entry(|e| e.depth() == 0 || !is_hidden(e.path()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> Vec<String> {
        ["cat", "dog"].map(String::from).to_vec()
    }

    #[test]
    fn a_labels_csv_reads_the_preferred_class_column_whatever_its_place() {
        let dir = tempfile::tempdir().unwrap();
        // `label` holds names, `class_index` the numbers: the numbers are read.
        std::fs::write(
            dir.path().join("labels.csv"),
            "file,label,class_index\na.jpg,cat,0\nb.jpg,dog,1\n",
        )
        .unwrap();
        let items = read_labeled_images(dir.path(), &classes()).unwrap();
        let got: Vec<(PathBuf, usize)> =
            items.into_iter().map(|i| (i.path, i.class_index)).collect();
        assert_eq!(
            got,
            [(dir.path().join("a.jpg"), 0), (dir.path().join("b.jpg"), 1)]
        );
        // Only names: the message says which column it read.
        std::fs::write(dir.path().join("labels.csv"), "file,label\na.jpg,cat\n").unwrap();
        let e = read_labeled_images(dir.path(), &classes())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("class index 'cat' (column 'label')"), "{e}");
    }

    #[test]
    fn hidden_folders_are_no_classes() {
        let dir = tempfile::tempdir().unwrap();
        for folder in ["cat", "dog", ".ipynb_checkpoints", "cat/.thumbnails"] {
            std::fs::create_dir_all(dir.path().join(folder)).unwrap();
        }
        for file in [
            "cat/a.jpg",
            "dog/b.jpg",
            ".ipynb_checkpoints/c.jpg",
            "cat/.thumbnails/d.jpg",
        ] {
            std::fs::write(dir.path().join(file), b"").unwrap();
        }
        let items = read_labeled_images(dir.path(), &classes()).unwrap();
        let got: Vec<(PathBuf, usize)> =
            items.into_iter().map(|i| (i.path, i.class_index)).collect();
        assert_eq!(
            got,
            [
                (dir.path().join("cat/a.jpg"), 0),
                (dir.path().join("dog/b.jpg"), 1)
            ]
        );
    }
}
