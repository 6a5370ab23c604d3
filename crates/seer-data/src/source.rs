//! Where samples come from: webdataset shards, or lists of (image, caption).

use std::path::{Path, PathBuf};

use crate::error::{source_error, DataError, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// A `.tar`, `.tar.gz` or `.tgz` webdataset shard.
    Shard(PathBuf),
    /// A JSONL file: `{"image": PATH, "caption": TEXT}` per line.
    Jsonl(PathBuf),
    /// A CSV file with a header naming the image and caption columns.
    Csv(PathBuf),
}

const SHARD_SUFFIXES: &[&str] = &[".tar", ".tar.gz", ".tgz"];

fn is_shard(path: &Path) -> bool {
    let name = path.to_string_lossy().to_lowercase();
    SHARD_SUFFIXES.iter().any(|s| name.ends_with(s))
}

impl DataSource {
    /// Parses one `--data` argument into sources: a file, a folder of shards, or
    /// a brace range as webdataset writes them (`train-{0000..0004}.tar.gz`).
    pub fn parse(spec: &str) -> Result<Vec<DataSource>> {
        let expanded = expand_braces(spec)?;
        let mut out = Vec::new();
        for s in expanded {
            let path = PathBuf::from(&s);
            if path.is_dir() {
                let mut shards: Vec<PathBuf> = std::fs::read_dir(&path)
                    .map_err(|source| DataError::Io {
                        path: path.clone(),
                        source,
                    })?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| is_shard(p))
                    .collect();
                shards.sort();
                if shards.is_empty() {
                    return Err(source_error(&path, "no .tar/.tar.gz shards in this folder"));
                }
                out.extend(shards.into_iter().map(DataSource::Shard));
                continue;
            }
            if !path.is_file() {
                return Err(source_error(&path, "no such file"));
            }
            let lower = s.to_lowercase();
            out.push(if is_shard(&path) {
                DataSource::Shard(path)
            } else if lower.ends_with(".jsonl") {
                DataSource::Jsonl(path)
            } else if lower.ends_with(".csv") {
                DataSource::Csv(path)
            } else {
                return Err(source_error(
                    &path,
                    "unknown data format (expected .tar, .tar.gz, .tgz, .jsonl or .csv)",
                ));
            });
        }
        Ok(out)
    }

    pub fn path(&self) -> &Path {
        match self {
            Self::Shard(p) | Self::Jsonl(p) | Self::Csv(p) => p,
        }
    }
}

/// Expands one `{A..B}` numeric range, keeping zero padding.
fn expand_braces(spec: &str) -> Result<Vec<String>> {
    let (Some(open), Some(close)) = (spec.find('{'), spec.find('}')) else {
        return Ok(vec![spec.to_string()]);
    };
    let bad = || {
        DataError::Invalid(format!(
            "bad brace range in '{spec}' (expected {{0000..0009}})"
        ))
    };
    if close < open {
        return Err(bad());
    }
    let (a, b) = spec[open + 1..close].split_once("..").ok_or_else(bad)?;
    let (lo, hi): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if hi < lo || hi - lo > 1_000_000 {
        return Err(bad());
    }
    let width = a.len();
    Ok((lo..=hi)
        .map(|i| format!("{}{i:0width$}{}", &spec[..open], &spec[close + 1..]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_keep_padding() {
        assert_eq!(
            expand_braces("a-{0008..0010}.tar").unwrap(),
            vec!["a-0008.tar", "a-0009.tar", "a-0010.tar"]
        );
        assert!(expand_braces("a-{3..1}.tar").is_err());
        assert!(expand_braces("a-{x..1}.tar").is_err());
    }
}
