//! Safe decoding into PIL-equivalent pixels.
//!
//! Formats are recognised by their signature, never by file extension (PIL does
//! the same: `smoke/rclip-formats/duck.jp2` is really a JPEG and decodes).
//! Dimensions are read from the header and checked against [`DecodeLimits`]
//! before any pixel buffer is allocated.
//!
//! The result, [`DecodedImage`], keeps the pixels in the *mode PIL would open
//! the file in* (L, LA, RGB, RGBA, P, 1, CMYK), because the CLIP references do
//! different things per mode: open_clip resizes before `convert("RGB")` (so
//! palette images are resized with nearest neighbour and RGBA with premultiplied
//! alpha), transformers composites transparency onto white first.

use std::io::{Cursor, Read};
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, RgbImage};

use crate::budget::{DecodeBudget, Reservation, RESERVED_BYTES_PER_PIXEL};
use crate::error::ImageError;

/// Resource limits applied while decoding untrusted files.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// The memory all decodes share: each reserves [`RESERVED_BYTES_PER_PIXEL`]
    /// times its pixel count before allocating, and waits while the budget is
    /// spent. Default: [`DecodeBudget::global`].
    pub memory: &'static DecodeBudget,
    /// Largest `width * height` accepted, checked from the header before
    /// allocating. Default 178,956,970 = 2 × PIL's `MAX_IMAGE_PIXELS`, the size
    /// at which PIL raises `DecompressionBombError` rather than just warning.
    pub max_pixels: u64,
    /// Largest input accepted, in bytes. Default 256 MiB.
    pub max_file_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            memory: DecodeBudget::global(),
            max_pixels: 178_956_970,
            max_file_bytes: 256 << 20,
        }
    }
}

/// The PIL mode a file opens in, which decides how the references resize it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceMode {
    /// PIL "L" (also 16-bit grayscale, scaled to 8 bits).
    Gray,
    /// PIL "LA".
    GrayAlpha,
    /// PIL "RGB".
    Rgb,
    /// PIL "RGBA".
    Rgba,
    /// PIL "P": stored expanded as RGBA (palette colour + palette alpha).
    Palette,
    /// PIL "1": stored as 0/255 gray.
    Bilevel,
    /// PIL "CMYK" (values as PIL holds them, i.e. after its Adobe inversion).
    Cmyk,
}

impl SourceMode {
    /// Bytes per pixel in [`DecodedImage`]'s buffer.
    pub fn channels(self) -> usize {
        match self {
            SourceMode::Gray | SourceMode::Bilevel => 1,
            SourceMode::GrayAlpha => 2,
            SourceMode::Rgb => 3,
            SourceMode::Rgba | SourceMode::Palette | SourceMode::Cmyk => 4,
        }
    }
}

/// A decoded, EXIF-oriented image in its PIL mode.
#[derive(Clone, Debug)]
pub struct DecodedImage {
    pub(crate) mode: SourceMode,
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// Interleaved samples, `mode.channels()` per pixel.
    pub(crate) data: Vec<u8>,
    /// Colour-key transparency of L/RGB images (PNG tRNS), as a 0/255 mask.
    /// PIL keeps it in `info["transparency"]`; only compositing uses it.
    pub(crate) key_alpha: Option<Vec<u8>>,
    /// PIL has `info["transparency"]` (palette or colour key): transformers
    /// composites such images onto white even when the mode has no alpha band.
    pub(crate) has_transparency: bool,
    /// Its share of the decode budget, released when the image is dropped.
    /// Never read: it is held for its `Drop`.
    pub(crate) _reservation: Held,
}

/// A reservation as an image holds it. A clone holds none: clones are made by
/// callers, outside decoding, and the budget bounds decoding.
#[derive(Debug, Default)]
pub(crate) struct Held {
    _reservation: Option<Reservation>,
}

impl Clone for Held {
    fn clone(&self) -> Self {
        Held::default()
    }
}

/// Reserves decode memory for a `w` × `h` image (dimensions already checked
/// against `max_pixels`), waiting while other decodes hold the budget.
fn reserve(w: u64, h: u64, limits: &DecodeLimits) -> Held {
    let bytes = w.saturating_mul(h).saturating_mul(RESERVED_BYTES_PER_PIXEL);
    Held {
        _reservation: Some(limits.memory.reserve(bytes)),
    }
}

impl DecodedImage {
    /// An RGB image from interleaved 8-bit samples produced outside this crate
    /// (e.g. video frames decoded by ffmpeg). It holds no share of the decode
    /// budget: the caller bounded the size before allocating `data`.
    pub fn from_rgb8(width: u32, height: u32, data: Vec<u8>) -> Result<Self, ImageError> {
        let expected = (width as u64) * (height as u64) * 3;
        if width == 0 || height == 0 || data.len() as u64 != expected {
            return Err(ImageError::decode(
                "<rgb8>",
                "RGB8",
                format_args!(
                    "{width}x{height} image needs {expected} bytes, got {}",
                    data.len()
                ),
            ));
        }
        Ok(DecodedImage {
            mode: SourceMode::Rgb,
            width,
            height,
            data,
            key_alpha: None,
            has_transparency: false,
            _reservation: Held::default(),
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }
    pub fn mode(&self) -> SourceMode {
        self.mode
    }

    /// PIL `convert("RGB")`: gray replicated, alpha dropped (not composited),
    /// palette expanded, CMYK converted with PIL's formula.
    pub fn to_rgb(&self) -> RgbImage {
        let data = mode_to_rgb(self.mode, &self.data);
        RgbImage::from_raw(self.width, self.height, data).expect("buffer size matches dimensions")
    }

    /// transformers' `convert_to_rgb`: images with an alpha band or
    /// `info["transparency"]` are alpha-composited onto opaque white with PIL's
    /// integer `alpha_composite`; others are plain `convert("RGB")`.
    pub fn composite_on_white(&self) -> RgbImage {
        let n = self.width as usize * self.height as usize;
        let alpha: Option<Vec<u8>> = match self.mode {
            SourceMode::Rgba | SourceMode::Palette
                if self.mode == SourceMode::Rgba || self.has_transparency =>
            {
                Some(self.data.chunks_exact(4).map(|p| p[3]).collect())
            }
            SourceMode::GrayAlpha => Some(self.data.chunks_exact(2).map(|p| p[1]).collect()),
            _ if self.has_transparency => self.key_alpha.clone(),
            _ => None,
        };
        let mut rgb = mode_to_rgb(self.mode, &self.data);
        if let Some(alpha) = alpha {
            for (px, &a) in rgb.chunks_exact_mut(3).zip(alpha.iter()).take(n) {
                for v in px.iter_mut() {
                    *v = composite_over_white(*v, a);
                }
            }
        }
        RgbImage::from_raw(self.width, self.height, rgb).expect("buffer size matches dimensions")
    }
}

/// One channel of PIL `alpha_composite(white, src)` (AlphaComposite.c with an
/// opaque white destination; 7 extra bits of precision, rounded divisions).
fn composite_over_white(c: u8, a: u8) -> u8 {
    if a == 0 {
        return 255;
    }
    const PB: u32 = 7;
    let a = a as u32;
    let outa255 = a * 255 + 255 * (255 - a);
    let coef1 = a * 255 * 255 * (1 << PB) / outa255;
    let coef2 = 255 * (1 << PB) - coef1;
    let tmp = c as u32 * coef1 + 255 * coef2 + (0x80 << PB);
    ((((tmp >> 8) + tmp) >> 8) >> PB) as u8
}

/// PIL's MULDIV255: (a*b + 127) / 255 computed the way libImaging does.
#[inline]
pub(crate) fn muldiv255(a: u32, b: u32) -> u32 {
    let t = a * b + 128;
    ((t >> 8) + t) >> 8
}

/// PIL `convert("RGB")` from the given mode's buffer.
pub(crate) fn mode_to_rgb(mode: SourceMode, data: &[u8]) -> Vec<u8> {
    match mode {
        SourceMode::Rgb => data.to_vec(),
        SourceMode::Gray | SourceMode::Bilevel => data.iter().flat_map(|&v| [v, v, v]).collect(),
        SourceMode::GrayAlpha => data
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        SourceMode::Rgba | SourceMode::Palette => data
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        SourceMode::Cmyk => data
            .chunks_exact(4)
            .flat_map(|p| {
                // Convert.c cmyk2rgb
                let nk = 255 - p[3] as u32;
                let f = |c: u8| (nk - muldiv255(c as u32, nk)) as u8;
                [f(p[0]), f(p[1]), f(p[2])]
            })
            .collect(),
    }
}

/// Decode a file into RGB8 exactly as PIL `exif_transpose` + `convert("RGB")`
/// would (16-bit samples become round(v / 257), where PIL truncates or clips).
pub fn decode_file(path: &Path, limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
    Ok(decode_file_full(path, limits)?.to_rgb())
}

/// Decode in-memory bytes; `name` is used in error messages (e.g. `"<bytes>"`).
pub fn decode_bytes(
    bytes: &[u8],
    name: &str,
    limits: &DecodeLimits,
) -> Result<RgbImage, ImageError> {
    Ok(decode_bytes_full(bytes, name, limits)?.to_rgb())
}

/// Like [`decode_file`] but keeps the PIL mode (needed for exact open_clip /
/// transformers parity on palette, alpha and CMYK images).
pub fn decode_file_full(path: &Path, limits: &DecodeLimits) -> Result<DecodedImage, ImageError> {
    let (bytes, name) = read_file_limited(path, limits)?;
    decode_bytes_full(&bytes, &name, limits)
}

/// Like [`decode_file_full`] but the pixels as stored, the EXIF orientation
/// not applied: what `PIL.Image.open` gives without `exif_transpose`, and the
/// frame COCO's annotations (and pycocotools) use.
pub fn decode_file_stored(path: &Path, limits: &DecodeLimits) -> Result<DecodedImage, ImageError> {
    let (bytes, name) = read_file_limited(path, limits)?;
    decode_oriented(&bytes, &name, limits, false)
}

/// A file's bytes, refused past `limits.max_file_bytes`, and its name for
/// messages: what [`decode_file_full`] decodes, for a caller that needs the
/// bytes too (to hash the content it decodes).
pub fn read_file_limited(
    path: &Path,
    limits: &DecodeLimits,
) -> Result<(Vec<u8>, String), ImageError> {
    let name = path.display().to_string();
    let io_err = |source| ImageError::Io {
        path: name.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    if len > limits.max_file_bytes {
        return Err(ImageError::FileTooLarge {
            path: name,
            size: len,
            limit: limits.max_file_bytes,
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // `take` guards against a file that grows while we read it.
    file.take(limits.max_file_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    Ok((bytes, name))
}

/// Like [`decode_bytes`] but keeps the PIL mode.
pub fn decode_bytes_full(
    bytes: &[u8],
    name: &str,
    limits: &DecodeLimits,
) -> Result<DecodedImage, ImageError> {
    decode_oriented(bytes, name, limits, true)
}

/// Decodes `bytes`, turned upright by their EXIF orientation when `orient`.
fn decode_oriented(
    bytes: &[u8],
    name: &str,
    limits: &DecodeLimits,
    orient: bool,
) -> Result<DecodedImage, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty {
            path: name.to_string(),
        });
    }
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(ImageError::FileTooLarge {
            path: name.to_string(),
            size: bytes.len() as u64,
            limit: limits.max_file_bytes,
        });
    }
    let (mut img, orientation) = match sniff(bytes) {
        Format::Jpeg => decode_jpeg(bytes, name, limits)?,
        Format::Png => decode_png(bytes, name, limits)?,
        Format::Gif => (decode_gif(bytes, name, limits)?, 1),
        Format::Other(fmt, label) => decode_with_image(bytes, name, limits, fmt, label)?,
        Format::Unsupported(detail) => {
            return Err(ImageError::UnsupportedFormat {
                path: name.to_string(),
                detail,
            })
        }
    };
    if orient {
        apply_orientation(&mut img, orientation);
    }
    Ok(img)
}

enum Format {
    Jpeg,
    Png,
    Gif,
    Other(image::ImageFormat, &'static str),
    Unsupported(String),
}

fn sniff(b: &[u8]) -> Format {
    if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Format::Jpeg
    } else if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Format::Png
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        Format::Gif
    } else if b.len() >= 12 && &b[0..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        Format::Other(image::ImageFormat::WebP, "WebP")
    } else if b.starts_with(b"BM") {
        Format::Other(image::ImageFormat::Bmp, "BMP")
    } else if b.starts_with(b"II*\0") || b.starts_with(b"MM\0*") {
        Format::Other(image::ImageFormat::Tiff, "TIFF")
    } else if b.len() >= 3
        && b[0] == b'P'
        && (b'1'..=b'6').contains(&b[1])
        && b[2].is_ascii_whitespace()
    {
        Format::Other(image::ImageFormat::Pnm, "PNM")
    } else if b.starts_with(b"\0\0\0\x0cjP  \r\n\x87\n") || b.starts_with(&[0xFF, 0x4F, 0xFF, 0x51])
    {
        Format::Unsupported("JPEG 2000 is not supported".into())
    } else if let Some(kind) = video_container(b) {
        Format::Unsupported(format!("a video ({kind}), not an image"))
    } else {
        Format::Unsupported(if looks_like_text(&b[..b.len().min(512)]) {
            "no image signature (looks like text)".into()
        } else {
            format!(
                "no known image signature (starts with {:02x?})",
                &b[..b.len().min(8)]
            )
        })
    }
}

/// The container of a video file, by its signature: what a user who gave a
/// video where an image goes should be told. (ISO BMFF brands of still
/// images, HEIF/AVIF, are not videos.)
fn video_container(b: &[u8]) -> Option<&'static str> {
    if b.len() >= 12 && &b[4..8] == b"ftyp" {
        let still = [
            b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis", b"heim", b"heis",
        ];
        return (!still.iter().any(|brand| &b[8..12] == *brand)).then_some("MP4/QuickTime");
    }
    if b.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Some("Matroska/WebM");
    }
    if b.len() >= 12 && &b[0..4] == b"RIFF" && &b[8..12] == b"AVI " {
        return Some("AVI");
    }
    if b.starts_with(b"FLV\x01") {
        return Some("FLV");
    }
    None
}

/// Valid UTF-8 (the cut at 512 bytes may split a character) without control
/// characters other than whitespace: what a text file holds, and random or
/// 0xFF-filled bytes do not.
fn looks_like_text(head: &[u8]) -> bool {
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => match std::str::from_utf8(&head[..e.valid_up_to()]) {
            Ok(t) => t,
            Err(_) => return false,
        },
        Err(_) => return false,
    };
    !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\x0c'))
}

fn check_pixels(name: &str, w: u64, h: u64, limits: &DecodeLimits) -> Result<(), ImageError> {
    if w == 0 || h == 0 {
        return Err(ImageError::decode(
            name,
            "image",
            format!("header declares an empty {w}x{h} image"),
        ));
    }
    let pixels = w.saturating_mul(h);
    if pixels > limits.max_pixels {
        return Err(ImageError::TooManyPixels {
            path: name.to_string(),
            width: w,
            height: h,
            pixels,
            limit: limits.max_pixels,
        });
    }
    Ok(())
}

/// Bytes a decoder may allocate for `pixels` at up to 8 bytes per pixel (16-bit
/// RGBA), plus slack for per-row state.
fn alloc_budget(limits: &DecodeLimits) -> u64 {
    limits.max_pixels.saturating_mul(8).saturating_add(64 << 20)
}

fn exif_orientation(exif: Option<&[u8]>) -> u8 {
    exif.and_then(Orientation::from_exif_chunk)
        .map(|o| o.to_exif())
        .unwrap_or(1)
}

/// round(v / 257): the 16→8 bit mapping we use (PIL truncates or clips instead).
#[inline]
fn u16_to_u8(v: u16) -> u8 {
    ((v as u32 + 128) / 257) as u8
}

fn decode_jpeg(
    bytes: &[u8],
    name: &str,
    limits: &DecodeLimits,
) -> Result<(DecodedImage, u8), ImageError> {
    use crate::jpeg::{JpegError, JpegKind};
    let mut reservation = Held::default();
    let mut before_alloc = |w: usize, h: usize| reservation = reserve(w as u64, h as u64, limits);
    let j = match crate::jpeg::decode(bytes, limits.max_pixels, &mut before_alloc) {
        Ok(j) => j,
        Err(JpegError::Unsupported(why)) => {
            return Err(ImageError::UnsupportedFormat {
                path: name.to_string(),
                detail: format!("JPEG variant not supported: {why}"),
            })
        }
        Err(JpegError::Corrupt(m)) => return Err(ImageError::decode(name, "JPEG", m)),
        Err(JpegError::Truncated) => {
            return Err(ImageError::decode(
                name,
                "JPEG",
                "truncated (file ends inside the image data)",
            ))
        }
        Err(JpegError::TooManyPixels(w, h)) => {
            check_pixels(name, w as u64, h as u64, limits)?;
            return Err(ImageError::decode(name, "JPEG", "pixel budget exceeded"));
        }
    };
    let orientation = exif_orientation(j.exif.as_deref());
    let (mode, mut data) = match j.kind {
        JpegKind::Gray => (SourceMode::Gray, j.data),
        JpegKind::Rgb => (SourceMode::Rgb, j.data),
        JpegKind::Cmyk => (SourceMode::Cmyk, j.data),
    };
    if mode == SourceMode::Cmyk {
        // PIL reads every CMYK JPEG with rawmode "CMYK;I" ("assume adobe
        // conventions"): Photoshop stores inverted CMYK, so PIL inverts back.
        for v in data.iter_mut() {
            *v = 255 - *v;
        }
    }
    let img = DecodedImage {
        mode,
        width: j.width as u32,
        height: j.height as u32,
        data,
        key_alpha: None,
        has_transparency: false,
        _reservation: reservation,
    };
    Ok((img, orientation))
}

fn decode_png(
    bytes: &[u8],
    name: &str,
    limits: &DecodeLimits,
) -> Result<(DecodedImage, u8), ImageError> {
    let err = |e: png::DecodingError| ImageError::decode(name, "PNG", e);
    let mut dec = png::Decoder::new_with_limits(
        Cursor::new(bytes),
        png::Limits {
            bytes: usize::try_from(alloc_budget(limits)).unwrap_or(usize::MAX),
        },
    );
    // Expand palette/low-bit/tRNS to 8-bit samples (+alpha); 16-bit stays 16.
    dec.set_transformations(png::Transformations::EXPAND);
    let mut reader = dec.read_info().map_err(err)?;
    let (w, h, color, depth, has_trns, orientation) = {
        let info = reader.info();
        (
            info.width,
            info.height,
            info.color_type,
            info.bit_depth,
            info.trns.is_some(),
            exif_orientation(info.exif_metadata.as_deref()),
        )
    };
    check_pixels(name, w as u64, h as u64, limits)?;
    let reservation = reserve(w as u64, h as u64, limits);
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| ImageError::decode(name, "PNG", "image too large for this platform"))?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(err)?;
    buf.truncate(frame.buffer_size());
    let (out_color, out_depth) = reader.output_color_type();
    let out_ch = out_color.samples();
    let n = w as usize * h as usize;
    // Collapse to 8-bit samples, dropping row padding (there is none for 8/16-bit).
    let samples: Vec<u8> = match out_depth {
        png::BitDepth::Eight => buf,
        png::BitDepth::Sixteen => buf
            .chunks_exact(2)
            .map(|b| u16_to_u8(u16::from_be_bytes([b[0], b[1]])))
            .collect(),
        d => {
            return Err(ImageError::decode(
                name,
                "PNG",
                format!("unexpected output bit depth {d:?}"),
            ))
        }
    };
    if samples.len() != n * out_ch {
        return Err(ImageError::decode(
            name,
            "PNG",
            "decoded buffer has unexpected size",
        ));
    }
    use png::ColorType as C;
    let split_key = |samples: Vec<u8>, ch: usize| -> (Vec<u8>, Vec<u8>) {
        let alpha = samples.chunks_exact(ch + 1).map(|p| p[ch]).collect();
        let color = samples
            .chunks_exact(ch + 1)
            .flat_map(|p| p[..ch].to_vec())
            .collect();
        (color, alpha)
    };
    let mut key_alpha = None;
    let (mode, data) = match (color, out_color) {
        (C::Indexed, C::Rgb) => (
            SourceMode::Palette,
            samples
                .chunks_exact(3)
                .flat_map(|p| [p[0], p[1], p[2], 255])
                .collect(),
        ),
        (C::Indexed, C::Rgba) => (SourceMode::Palette, samples),
        (C::Grayscale, C::Grayscale) => (
            if depth == png::BitDepth::One {
                SourceMode::Bilevel
            } else {
                SourceMode::Gray
            },
            samples,
        ),
        (C::Grayscale, C::GrayscaleAlpha) => {
            let (c, a) = split_key(samples, 1);
            key_alpha = Some(a);
            (
                if depth == png::BitDepth::One {
                    SourceMode::Bilevel
                } else {
                    SourceMode::Gray
                },
                c,
            )
        }
        (C::Rgb, C::Rgb) => (SourceMode::Rgb, samples),
        (C::Rgb, C::Rgba) => {
            let (c, a) = split_key(samples, 3);
            key_alpha = Some(a);
            (SourceMode::Rgb, c)
        }
        (C::GrayscaleAlpha, C::GrayscaleAlpha) => (SourceMode::GrayAlpha, samples),
        (C::Rgba, C::Rgba) => (SourceMode::Rgba, samples),
        (a, b) => {
            return Err(ImageError::decode(
                name,
                "PNG",
                format!("unexpected colour conversion {a:?} -> {b:?}"),
            ))
        }
    };
    let img = DecodedImage {
        mode,
        width: w,
        height: h,
        data,
        key_alpha,
        has_transparency: has_trns && matches!(color, C::Indexed | C::Grayscale | C::Rgb),
        _reservation: reservation,
    };
    Ok((img, orientation))
}

/// First frame as PIL shows it: mode P, canvas of the logical screen size
/// filled with the frame's transparent index (or index 0), frame pasted at its
/// offset, local palette preferred over the global one.
fn decode_gif(bytes: &[u8], name: &str, limits: &DecodeLimits) -> Result<DecodedImage, ImageError> {
    let err = |e: gif::DecodingError| ImageError::decode(name, "GIF", e);
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::Indexed);
    if let Some(limit) = std::num::NonZeroU64::new(alloc_budget(limits)) {
        opts.set_memory_limit(gif::MemoryLimit::Bytes(limit));
    }
    let mut dec = opts.read_info(Cursor::new(bytes)).map_err(err)?;
    let (w, h) = (dec.width() as usize, dec.height() as usize);
    check_pixels(name, w as u64, h as u64, limits)?;
    let reservation = reserve(w as u64, h as u64, limits);
    let global = dec.global_palette().map(|p| p.to_vec());
    let frame = dec
        .read_next_frame()
        .map_err(err)?
        .ok_or_else(|| ImageError::decode(name, "GIF", "no image frame"))?;
    let (fw, fh) = (frame.width as usize, frame.height as usize);
    check_pixels(name, fw as u64, fh as u64, limits)?;
    if frame.buffer.len() < fw * fh {
        return Err(ImageError::decode(name, "GIF", "truncated frame"));
    }
    let fill = frame.transparent.unwrap_or(0);
    let mut idx = vec![fill; w * h];
    let (left, top) = (frame.left as usize, frame.top as usize);
    for y in 0..fh.min(h.saturating_sub(top)) {
        let cols = fw.min(w.saturating_sub(left));
        let src = &frame.buffer[y * fw..y * fw + cols];
        idx[(top + y) * w + left..(top + y) * w + left + cols].copy_from_slice(src);
    }
    let palette = frame.palette.clone().or(global);
    let transparent = frame.transparent;
    let (mode, data) = match palette {
        // No palette at all: PIL opens the indices as mode L.
        None => (SourceMode::Gray, idx),
        Some(pal) => {
            let data = idx
                .iter()
                .flat_map(|&i| {
                    let o = i as usize * 3;
                    // Indices past the palette's end read as black.
                    let c = pal.get(o..o + 3).map_or([0, 0, 0], |c| [c[0], c[1], c[2]]);
                    [
                        c[0],
                        c[1],
                        c[2],
                        if Some(i) == transparent { 0 } else { 255 },
                    ]
                })
                .collect();
            (SourceMode::Palette, data)
        }
    };
    Ok(DecodedImage {
        mode,
        width: w as u32,
        height: h as u32,
        data,
        key_alpha: None,
        has_transparency: transparent.is_some(),
        _reservation: reservation,
    })
}

/// PIL opens BMPs of up to 8 bits per pixel as "P", or as "L"/"1" when the
/// palette is the identity gray ramp. Returns None for true-colour BMPs.
fn bmp_palette_mode(b: &[u8]) -> Option<SourceMode> {
    let u16at = |o: usize| b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u32at = |o: usize| {
        b.get(o..o + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    let header = u32at(14)? as usize;
    let (bits, colors, entry) = if header == 12 {
        let bits = u16at(24)?;
        (bits, 0u32, 3usize)
    } else {
        (u16at(28)?, u32at(46)?, 4usize)
    };
    if !matches!(bits, 1 | 2 | 4 | 8) {
        return None;
    }
    let colors = if colors == 0 || colors > 1 << bits {
        1u32 << bits
    } else {
        colors
    } as usize;
    let start = 14 + header;
    let gray = (0..colors).all(|i| {
        let v = if colors == 2 { [0u8, 255][i] } else { i as u8 };
        b.get(start + i * entry..start + i * entry + 3) == Some(&[v, v, v][..])
    });
    Some(match (gray, colors) {
        (true, 2) => SourceMode::Bilevel,
        (true, _) => SourceMode::Gray,
        _ => SourceMode::Palette,
    })
}

fn decode_with_image(
    bytes: &[u8],
    name: &str,
    limits: &DecodeLimits,
    format: image::ImageFormat,
    label: &'static str,
) -> Result<(DecodedImage, u8), ImageError> {
    let err = |e: image::ImageError| ImageError::decode(name, label, e);
    if format == image::ImageFormat::WebP {
        // libwebp (PIL) refuses a file shorter than its RIFF header says;
        // image-webp would decode what is there.
        let riff = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as u64;
        if riff + 8 > bytes.len() as u64 {
            return Err(ImageError::decode(
                name,
                label,
                format!(
                    "truncated: RIFF header declares {} bytes, file has {}",
                    riff + 8,
                    bytes.len()
                ),
            ));
        }
    }
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut lim = image::Limits::default();
    lim.max_alloc = Some(alloc_budget(limits));
    reader.limits(lim);
    let mut dec = reader.into_decoder().map_err(err)?;
    let (w, h) = dec.dimensions();
    check_pixels(name, w as u64, h as u64, limits)?;
    let reservation = reserve(w as u64, h as u64, limits);
    let orientation = dec.orientation().map(|o| o.to_exif()).unwrap_or(1);
    let img = DynamicImage::from_decoder(dec).map_err(err)?;
    let (mut mode, mut data) = match img {
        DynamicImage::ImageLuma8(i) => (SourceMode::Gray, i.into_raw()),
        DynamicImage::ImageLumaA8(i) => (SourceMode::GrayAlpha, i.into_raw()),
        DynamicImage::ImageRgb8(i) => (SourceMode::Rgb, i.into_raw()),
        DynamicImage::ImageRgba8(i) => (SourceMode::Rgba, i.into_raw()),
        DynamicImage::ImageLuma16(i) => (
            SourceMode::Gray,
            i.into_raw().into_iter().map(u16_to_u8).collect(),
        ),
        DynamicImage::ImageLumaA16(i) => (
            SourceMode::GrayAlpha,
            i.into_raw().into_iter().map(u16_to_u8).collect(),
        ),
        DynamicImage::ImageRgb16(i) => (
            SourceMode::Rgb,
            i.into_raw().into_iter().map(u16_to_u8).collect(),
        ),
        DynamicImage::ImageRgba16(i) => (
            SourceMode::Rgba,
            i.into_raw().into_iter().map(u16_to_u8).collect(),
        ),
        other => {
            return Err(ImageError::decode(
                name,
                label,
                format!("unsupported sample type {:?}", other.color()),
            ));
        }
    };
    if format == image::ImageFormat::Pnm
        && (bytes[1] == b'1' || bytes[1] == b'4')
        && mode == SourceMode::Gray
    {
        mode = SourceMode::Bilevel; // PBM opens as PIL mode "1"
    }
    if format == image::ImageFormat::Bmp {
        match (bmp_palette_mode(bytes), mode) {
            (Some(SourceMode::Palette), SourceMode::Rgb) => {
                mode = SourceMode::Palette;
                data = data
                    .chunks_exact(3)
                    .flat_map(|p| [p[0], p[1], p[2], 255])
                    .collect();
            }
            (Some(m @ (SourceMode::Gray | SourceMode::Bilevel)), SourceMode::Rgb) => {
                mode = m;
                data = data.chunks_exact(3).map(|p| p[0]).collect();
            }
            _ => {}
        }
    }
    let img = DecodedImage {
        mode,
        width: w,
        height: h,
        data,
        key_alpha: None,
        has_transparency: false,
        _reservation: reservation,
    };
    Ok((img, orientation))
}

/// Apply an EXIF orientation the way `PIL.ImageOps.exif_transpose` does.
fn apply_orientation(img: &mut DecodedImage, orientation: u8) {
    if !(2..=8).contains(&orientation) {
        return;
    }
    let (w, h) = (img.width as usize, img.height as usize);
    let swap = orientation >= 5;
    let (ow, oh) = if swap { (h, w) } else { (w, h) };
    // Source coordinates of output pixel (x, y).
    let src = move |x: usize, y: usize| -> (usize, usize) {
        match orientation {
            2 => (w - 1 - x, y),         // FLIP_LEFT_RIGHT
            3 => (w - 1 - x, h - 1 - y), // ROTATE_180
            4 => (x, h - 1 - y),         // FLIP_TOP_BOTTOM
            5 => (y, x),                 // TRANSPOSE
            6 => (y, h - 1 - x),         // ROTATE_270 (90° clockwise)
            7 => (w - 1 - y, h - 1 - x), // TRANSVERSE
            _ => (w - 1 - y, x),         // 8: ROTATE_90 (90° counter-clockwise)
        }
    };
    let remap = |buf: &[u8], ch: usize| -> Vec<u8> {
        let mut out = vec![0u8; buf.len()];
        for y in 0..oh {
            for x in 0..ow {
                let (sx, sy) = src(x, y);
                let s = (sy * w + sx) * ch;
                let d = (y * ow + x) * ch;
                out[d..d + ch].copy_from_slice(&buf[s..s + ch]);
            }
        }
        out
    };
    img.data = remap(&img.data, img.mode.channels());
    if let Some(a) = &img.key_alpha {
        img.key_alpha = Some(remap(a, 1));
    }
    img.width = ow as u32;
    img.height = oh as u32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_rgb8_checks_the_length_and_keeps_the_pixels() {
        let img = DecodedImage::from_rgb8(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(
            (img.width(), img.height(), img.mode()),
            (2, 1, SourceMode::Rgb)
        );
        assert_eq!(img.to_rgb().into_raw(), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(img.composite_on_white().into_raw(), vec![1, 2, 3, 4, 5, 6]);
        let err = DecodedImage::from_rgb8(2, 2, vec![0; 6])
            .unwrap_err()
            .to_string();
        assert!(err.contains("2x2 image needs 12 bytes, got 6"), "{err}");
        assert!(DecodedImage::from_rgb8(0, 0, Vec::new()).is_err());
    }
}
