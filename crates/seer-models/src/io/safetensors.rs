//! A safetensors reader that copies each tensor straight from the file into its
//! own buffer with positioned reads.
//!
//! Memory-mapping the file and copying out of the map (candle's
//! `MmapedSafetensors`) counts every touched page of the map in the process's
//! resident memory until the map is dropped, so loading a model peaked at twice
//! its size. Positioned reads go through the page cache instead: the resident
//! set holds only the tensors being converted, and start-up is a sequential read.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};

/// A header larger than this is not a model header (safetensors caps it at 100 MB).
const MAX_HEADER_BYTES: u64 = 100 << 20;

#[derive(Debug)]
struct Entry {
    dtype: DType,
    shape: Vec<usize>,
    start: u64,
    len: usize,
}

#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    file: File,
    entries: HashMap<String, Entry>,
}

#[derive(serde::Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

impl SafetensorsFile {
    pub fn open(path: &Path) -> Result<Self> {
        let fail = |message: String| ModelError::Weights {
            path: path.to_path_buf(),
            message,
        };
        let io = |source| ModelError::Io {
            path: path.to_path_buf(),
            weights: true,
            source,
        };
        let file = File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let mut len_bytes = [0u8; 8];
        file.read_exact_at(&mut len_bytes, 0)
            .map_err(|_| fail("file too short for a safetensors header".into()))?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > MAX_HEADER_BYTES || 8 + header_len > size {
            return Err(fail(format!(
                "not a safetensors file (header length {header_len}, file size {size})"
            )));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact_at(&mut header, 8).map_err(io)?;
        let raw: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| fail(format!("invalid safetensors header: {e}")))?;
        let data_start = 8 + header_len;
        let mut entries = HashMap::with_capacity(raw.len());
        for (name, value) in raw {
            if name == "__metadata__" {
                continue;
            }
            let e: RawEntry =
                serde_json::from_value(value).map_err(|e| fail(format!("tensor '{name}': {e}")))?;
            let dtype = match e.dtype.as_str() {
                "F32" => DType::F32,
                "F16" => DType::F16,
                "BF16" => DType::BF16,
                "F64" => DType::F64,
                "I64" => DType::I64,
                "U8" => DType::U8,
                "U32" => DType::U32,
                other => return Err(fail(format!("tensor '{name}': unsupported dtype {other}"))),
            };
            let (begin, end) = e.data_offsets;
            let elems = e
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d));
            let want = elems.and_then(|n| n.checked_mul(dtype.size_in_bytes()));
            // checked_add: offsets near u64::MAX must not wrap into the file.
            let inside = data_start.checked_add(end).is_some_and(|e| e <= size);
            if end < begin || Some((end - begin) as usize) != want || !inside {
                return Err(fail(format!(
                    "tensor '{name}': offsets {begin}..{end} do not fit its shape {:?} or the file",
                    e.shape
                )));
            }
            entries.insert(
                name,
                Entry {
                    dtype,
                    shape: e.shape,
                    start: data_start + begin,
                    len: (end - begin) as usize,
                },
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            entries,
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// Tensor `name` in its stored dtype, or None when the file has no such tensor.
    pub fn load(&self, name: &str, device: &Device) -> Result<Option<Tensor>> {
        let Some(e) = self.entries.get(name) else {
            return Ok(None);
        };
        let fail = |err: std::io::Error| ModelError::Weights {
            path: self.path.clone(),
            message: format!("tensor '{name}': {err}"),
        };
        if e.dtype == DType::F32 && cfg!(target_endian = "little") && device.is_cpu() {
            // Read straight into the tensor's own buffer: one pass, one allocation.
            let mut data: Vec<f32> = seer_kernels::alloc::zeroed_vec(e.len / 4);
            // SAFETY: any bit pattern is a valid f32, and the byte view covers
            // exactly the vector's initialised elements.
            let bytes =
                unsafe { std::slice::from_raw_parts_mut(data.as_mut_ptr().cast::<u8>(), e.len) };
            self.file.read_exact_at(bytes, e.start).map_err(fail)?;
            return Ok(Some(Tensor::from_vec(data, e.shape.as_slice(), device)?));
        }
        let mut bytes = vec![0u8; e.len];
        self.file.read_exact_at(&mut bytes, e.start).map_err(fail)?;
        Ok(Some(Tensor::from_raw_buffer(
            &bytes, e.dtype, &e.shape, device,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file of one F32 tensor `[1]` with the given offsets and
    /// four bytes of data.
    fn file_with_offsets(begin: u64, end: u64) -> (tempfile::TempDir, PathBuf) {
        let header = format!(
            r#"{{"t": {{"dtype": "F32", "shape": [1], "data_offsets": [{begin}, {end}]}}}}"#
        );
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(1f32.to_le_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn offsets_inside_the_file_load() {
        let (_dir, path) = file_with_offsets(0, 4);
        let st = SafetensorsFile::open(&path).unwrap();
        let t = st.load("t", &Device::Cpu).unwrap().unwrap();
        assert_eq!(t.to_vec1::<f32>().unwrap(), [1.0]);
    }

    #[test]
    fn offsets_that_wrap_past_u64_max_are_refused() {
        // begin + header length wraps to a small position inside the file.
        let begin = u64::MAX - 20;
        let (_dir, path) = file_with_offsets(begin, begin + 4);
        let err = SafetensorsFile::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("model.safetensors") && err.contains("tensor 't'"),
            "{err}"
        );
    }

    /// Mutations of a safetensors file's header (JSON-aware or bytes, the
    /// length prefix kept right or mutated too), its data kept.
    fn mutate_header(
        rng: &mut seer_testkit::fuzz::Rng,
        input: &[u8],
        seeds: &[Vec<u8>],
    ) -> Vec<u8> {
        let len = u64::from_le_bytes(input[..8].try_into().unwrap()) as usize;
        let (header, data) = input[8..].split_at(len);
        match rng.below(3) {
            0 => seer_testkit::fuzz::mutate_bytes(
                rng,
                &input[..(8 + len + 64).min(input.len())],
                seeds,
            )
            .into_iter()
            .chain(input[(8 + len + 64).min(input.len())..].iter().copied())
            .collect(),
            _ => {
                let header = if rng.below(2) == 0 {
                    seer_testkit::fuzz::mutate_json(rng, header, &[])
                } else {
                    seer_testkit::fuzz::mutate_bytes(rng, header, &[])
                };
                let mut out = (header.len() as u64).to_le_bytes().to_vec();
                out.extend(header);
                out.extend(data);
                out
            }
        }
    }

    /// Mutation fuzzing of the safetensors reader (header, offsets, and
    /// loading every tensor) on the committed fixtures' `.safetensors`. Not
    /// run by default: `cargo test --release -q -p seer-models --lib --
    /// --ignored fuzz_safetensors --test-threads=1 --nocapture` (20,000
    /// inputs, about 1 minute on one core); findings under
    /// /tmp/fuzz-models/safetensors/.
    #[test]
    #[ignore = "fuzzing: run by hand"]
    fn fuzz_safetensors() {
        let seeds: Vec<Vec<u8>> = seer_testkit::fuzz::fixture_files(
            &[
                "families/siglip-tiny",
                "families/dinov2-tiny",
                "sam/slimsam-tiny",
                "blip/caption-tiny",
            ],
            &|n| n.ends_with(".safetensors"),
        )
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let target = |_: usize, bytes: &[u8]| -> std::result::Result<(), String> {
            std::fs::write(&path, bytes).unwrap();
            let st = SafetensorsFile::open(&path).map_err(|e| e.to_string())?;
            for name in st.entries.keys() {
                st.load(name, &Device::Cpu).map_err(|e| e.to_string())?;
            }
            Ok(())
        };
        let findings =
            seer_testkit::fuzz::run("safetensors", &seeds, 20_000, mutate_header, &target);
        seer_testkit::fuzz::assert_clean("safetensors", &findings);
    }
}
