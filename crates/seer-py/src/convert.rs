//! Results on their way to Python: embeddings as one `bytearray` of native
//! float32 (numpy reads it without a copy), input errors as `(name, cause)`
//! pairs, and seer's errors as `SeerError`; and the integer arguments on their
//! way in ([`Int`]).

use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::types::PyByteArray;

use crate::batch::{Outcome, Row};
use crate::SeerError;

/// A `SeerError` with `message`.
pub fn seer_error(message: impl std::fmt::Display) -> PyErr {
    SeerError::new_err(message.to_string())
}

/// The worker pool could not start (the system refused threads).
pub fn pool_error(e: rayon::ThreadPoolBuildError) -> PyErr {
    seer_error(format!("cannot start seer's worker threads: {e}"))
}

/// `rows` as a row-major `len × dim` float32 matrix; a failed row is NaN.
pub fn matrix<'py>(py: Python<'py>, rows: &[Row], dim: usize) -> PyResult<Bound<'py, PyByteArray>> {
    let vectors: Vec<Option<&[f32]>> = rows.iter().map(|r| r.as_deref().ok()).collect();
    floats(py, &vectors, dim)
}

/// Vectors, each `dim` long, as a row-major float32 matrix (`None`: NaN).
pub fn floats<'py>(
    py: Python<'py>,
    vectors: &[Option<&[f32]>],
    dim: usize,
) -> PyResult<Bound<'py, PyByteArray>> {
    const F32: usize = std::mem::size_of::<f32>();
    if let Some(bad) = vectors.iter().flatten().find(|v| v.len() != dim) {
        return Err(seer_error(format!(
            "internal error: a vector of {} values where the model's are {dim}",
            bad.len()
        )));
    }
    if dim == 0 {
        return Ok(PyByteArray::new(py, &[]));
    }
    PyByteArray::new_with(py, vectors.len() * dim * F32, |out| {
        for (row, vector) in out.chunks_exact_mut(dim * F32).zip(vectors) {
            let values = row.chunks_exact_mut(F32);
            match vector {
                Some(v) => values
                    .zip(v.iter())
                    .for_each(|(dst, x)| dst.copy_from_slice(&x.to_ne_bytes())),
                None => values.for_each(|dst| dst.copy_from_slice(&f32::NAN.to_ne_bytes())),
            }
        }
        Ok(())
    })
}

/// Each input's error as `(input name, cause)`, `None` for one that worked.
pub fn errors<T>(rows: &[Outcome<T>]) -> Vec<Option<(String, String)>> {
    rows.iter()
        .map(|r| r.as_ref().err().map(|e| (e.name.clone(), e.cause.clone())))
        .collect()
}

/// An integer argument of a count (`batch_size`, `max_pixels`, `top_k`), taken
/// as Python gives it so that [`Int::at_least_one`] can name the argument: a
/// negative value then gets the same `SeerError` as 0, where pyo3's own
/// conversion to an unsigned type raises `OverflowError` for it. A value that
/// is not an integer stays pyo3's `TypeError` (`argument 'batch_size': ...`).
#[derive(Clone, Debug)]
pub enum Int {
    Value(i128),
    /// Past `i128`: its sign and its digits.
    Huge {
        negative: bool,
        digits: String,
    },
}

impl<'a, 'py> FromPyObject<'a, 'py> for Int {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match obj.extract::<i128>() {
            Ok(value) => Ok(Self::Value(value)),
            Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => Ok(Self::Huge {
                negative: obj.lt(0)?,
                digits: obj.str()?.to_string(),
            }),
            Err(e) => Err(e),
        }
    }
}

impl Int {
    /// The value if it is between 1 and `max`, else a `SeerError` naming
    /// `name` and the value.
    pub fn at_least_one(&self, name: &str, max: u64) -> PyResult<u64> {
        match self {
            Self::Value(value) if *value < 1 => Err(seer_error(format!(
                "{name} must be at least 1, got {value}"
            ))),
            Self::Value(value) => u64::try_from(*value)
                .ok()
                .filter(|v| *v <= max)
                .ok_or_else(|| seer_error(format!("{name} must be at most {max}, got {value}"))),
            Self::Huge {
                negative: true,
                digits,
            } => Err(seer_error(format!(
                "{name} must be at least 1, got {digits}"
            ))),
            Self::Huge { digits, .. } => Err(seer_error(format!(
                "{name} must be at most {max}, got {digits}"
            ))),
        }
    }

    /// [`Self::at_least_one`] for a `usize`.
    pub fn count(&self, name: &str) -> PyResult<usize> {
        let max = u64::try_from(usize::MAX).unwrap_or(u64::MAX);
        let value = self.at_least_one(name, max)?;
        Ok(usize::try_from(value).unwrap_or(usize::MAX))
    }
}
