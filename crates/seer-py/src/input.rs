//! One image input as the Python side hands it over, and its way to an image
//! tower's preprocessed pixels.
//!
//! The Python side sends `(kind, payload)` pairs:
//!
//! | kind        | payload                      | what it is                              |
//! |-------------|------------------------------|-----------------------------------------|
//! | `"path"`    | `str` or `os.PathLike`       | an image file                           |
//! | `"bytes"`   | `bytes`                      | an encoded image file in memory         |
//! | `"rgb"`     | `(height, width, bytes)`     | `height × width × 3` RGB samples, u8     |
//! | `"invalid"` | `(name, cause)`              | an input the Python side already refused |
//!
//! Refused inputs travel too, so that every input keeps its place in the
//! batches: the model sees the same batches as `seer embed` on the same list.

use std::path::{Path, PathBuf};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use seer_engine::ImageEncoder;
use seer_image::image::RgbImage;
use seer_image::{DecodeLimits, DecodedImage};

/// How bytes inputs are named in messages.
const BYTES_NAME: &str = "bytes";

pub enum ImageInput {
    Path(PathBuf),
    /// Held as the Python `bytes` object itself: no copy, and readable without
    /// the GIL.
    Bytes(PyBackedBytes),
    Rgb {
        height: u32,
        width: u32,
        samples: PyBackedBytes,
    },
    Invalid {
        name: String,
        cause: String,
    },
}

/// Why one input gave no embedding, and which input it was.
#[derive(Clone, Debug)]
pub struct InputError {
    /// The file's path, `bytes`, or `array HxWx3`.
    pub name: String,
    pub cause: String,
}

impl InputError {
    pub fn new(name: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            cause: cause.into(),
        }
    }

    /// From an error whose message starts with the input's name (seer's
    /// decoding errors do: `PATH: cause`), said once.
    fn from_named(name: String, error: impl std::fmt::Display) -> Self {
        let message = error.to_string();
        let cause = message
            .strip_prefix(&name)
            .and_then(|rest| rest.strip_prefix(": "))
            .map(str::to_string)
            .unwrap_or(message);
        Self { name, cause }
    }
}

impl ImageInput {
    /// The input as messages name it.
    pub fn name(&self) -> String {
        match self {
            Self::Path(path) => path.display().to_string(),
            Self::Bytes(_) => BYTES_NAME.to_string(),
            Self::Rgb { height, width, .. } => format!("array {height}x{width}x3"),
            Self::Invalid { name, .. } => name.clone(),
        }
    }

    /// Decodes (files and bytes) and preprocesses the input for `encoder`:
    /// [`ImageEncoder::pixels_len`] floats.
    pub fn pixels(
        &self,
        encoder: &dyn ImageEncoder,
        limits: &DecodeLimits,
    ) -> Result<Vec<f32>, InputError> {
        match self {
            Self::Rgb {
                height,
                width,
                samples,
            } => {
                let image = rgb_image(*height, *width, samples, limits)
                    .map_err(|cause| InputError::new(self.name(), cause))?;
                Ok(encoder.preprocess_rgb(&image))
            }
            _ => self.decoded(limits).map(|image| encoder.preprocess(&image)),
        }
    }

    /// The input with a file's bytes read (once, within `limits`), so that
    /// its [`ReadInput::content_key`] is a digest of the very bytes
    /// [`ReadInput::decoded`] decodes: read twice, a file replaced in between
    /// would be remembered under the other content's key.
    pub fn read(&self, limits: &DecodeLimits) -> Result<ReadInput<'_>, InputError> {
        let file = match self {
            Self::Path(path) => {
                not_special(path).map_err(|cause| InputError::new(self.name(), cause))?;
                let read = seer_image::read_file_limited(path, limits)
                    .map_err(|e| InputError::from_named(self.name(), e))?;
                Some(read)
            }
            _ => None,
        };
        Ok(ReadInput { input: self, file })
    }

    /// The input as a decoded image, as `seer caption` or `seer detect` reads
    /// a file (an array as the RGB image it holds).
    pub fn decoded(&self, limits: &DecodeLimits) -> Result<DecodedImage, InputError> {
        match self {
            Self::Path(path) => not_special(path)
                .map_err(|cause| InputError::new(self.name(), cause))
                .and_then(|()| {
                    seer_image::decode_file_full(path, limits)
                        .map_err(|e| InputError::from_named(self.name(), e))
                }),
            Self::Bytes(bytes) => seer_image::decode_bytes_full(bytes, BYTES_NAME, limits)
                .map_err(|e| InputError::from_named(self.name(), e)),
            Self::Rgb {
                height,
                width,
                samples,
            } => rgb_image(*height, *width, samples, limits)
                .and_then(|image| {
                    DecodedImage::from_rgb8(*width, *height, image.into_raw())
                        .map_err(|e| e.to_string())
                })
                .map_err(|cause| InputError::new(self.name(), cause)),
            Self::Invalid { name, cause } => Err(InputError::new(name.clone(), cause.clone())),
        }
    }
}

/// Refuses a path that is a FIFO, socket or device: reading a FIFO with no
/// writer blocks the whole call forever (a pipe's bytes can be read in Python
/// and passed as bytes), and a device is no image file.
/// (Folders and missing files fail when opened, with the system's words.)
fn not_special(path: &Path) -> Result<(), String> {
    match special_file(path) {
        None => Ok(()),
        Some(kind) => Err(format!(
            "not a regular file ({kind}): pass an image file's path, or its bytes"
        )),
    }
}

/// What `path` is when it is neither a file nor a folder (`a FIFO`, `a
/// socket`, `a device`); `None` for those and for a path that is not there.
pub fn special_file(path: &Path) -> Option<&'static str> {
    let meta = std::fs::metadata(path).ok()?;
    match meta.is_file() || meta.is_dir() {
        true => None,
        false => Some(special_kind(&meta.file_type())),
    }
}

#[cfg(unix)]
fn special_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &std::fs::FileType) -> &'static str {
    "a special file"
}

/// An [`ImageInput`] whose file, if it is one, is read: see
/// [`ImageInput::read`].
pub struct ReadInput<'a> {
    input: &'a ImageInput,
    /// A file's bytes and its name for messages.
    file: Option<(Vec<u8>, String)>,
}

impl ReadInput<'_> {
    /// A digest of what the input holds (a file's bytes, an encoded image's,
    /// an array's shape and samples): equal for inputs that decode to the
    /// same image; `None` for a refused input.
    pub fn content_key(&self) -> Option<[u8; 32]> {
        let mut hasher = blake3::Hasher::new();
        let encoded: Option<&[u8]> = match (&self.file, self.input) {
            (Some((bytes, _)), _) => Some(bytes),
            (None, ImageInput::Bytes(bytes)) => Some(bytes),
            _ => None,
        };
        match (encoded, self.input) {
            (Some(bytes), _) => {
                hasher.update(b"file");
                hasher.update(bytes);
            }
            (
                None,
                ImageInput::Rgb {
                    height,
                    width,
                    samples,
                },
            ) => {
                hasher.update(b"rgb");
                hasher.update(&height.to_le_bytes());
                hasher.update(&width.to_le_bytes());
                hasher.update(samples);
            }
            _ => return None,
        }
        Some(*hasher.finalize().as_bytes())
    }

    /// The input as a decoded image (a file from the bytes read).
    pub fn decoded(&self, limits: &DecodeLimits) -> Result<DecodedImage, InputError> {
        match &self.file {
            Some((bytes, name)) => seer_image::decode_bytes_full(bytes, name, limits)
                .map_err(|e| InputError::from_named(self.input.name(), e)),
            None => self.input.decoded(limits),
        }
    }
}

/// RGB samples as an image, checked as a decoded file would be: not empty,
/// within the pixel budget, and as many samples as the shape says.
fn rgb_image(
    height: u32,
    width: u32,
    samples: &[u8],
    limits: &DecodeLimits,
) -> Result<RgbImage, String> {
    let pixels = u64::from(height) * u64::from(width);
    if pixels == 0 {
        return Err("the array holds no pixels".into());
    }
    if pixels > limits.max_pixels {
        return Err(format!(
            "{pixels} pixels, over the budget of {} pixels",
            limits.max_pixels
        ));
    }
    if samples.len() as u64 != pixels * 3 {
        return Err(format!(
            "{} bytes of samples for {height}x{width}x3",
            samples.len()
        ));
    }
    RgbImage::from_raw(width, height, samples.to_vec())
        .ok_or_else(|| "the samples do not fill the image".to_string())
}

impl<'a, 'py> FromPyObject<'a, 'py> for ImageInput {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let (kind, payload): (PyBackedStr, Bound<'py, PyAny>) = obj.extract()?;
        match &*kind {
            "path" => Ok(Self::Path(payload.extract()?)),
            "bytes" => Ok(Self::Bytes(payload.extract()?)),
            "rgb" => {
                let (height, width, samples) = payload.extract()?;
                Ok(Self::Rgb {
                    height,
                    width,
                    samples,
                })
            }
            "invalid" => {
                let (name, cause) = payload.extract()?;
                Ok(Self::Invalid { name, cause })
            }
            other => Err(PyValueError::new_err(format!(
                "unknown image input kind '{other}' (path, bytes, rgb, invalid)"
            ))),
        }
    }
}
