//! The frames ffmpeg writes with `-f image2pipe -c:v ppm`: binary PPM (P6,
//! maxval 255) back to back. Each frame carries its own size, so a stream that
//! changes resolution (or a rotated one) needs no outside knowledge; the size
//! is checked against the pixel limit before the frame's buffer is allocated.

use std::io::BufRead;

#[derive(Debug, PartialEq)]
pub(crate) enum PpmError {
    /// Over `max_pixels` (width, height).
    TooLarge(u64, u64),
    /// Not a PPM frame, or cut short (the message says which).
    Malformed(String),
}

/// One frame: width, height, RGB bytes.
pub(crate) type RgbFrame = (u32, u32, Vec<u8>);

/// Reads the next frame; `Ok(None)` at a clean end of stream.
pub(crate) fn read_frame(
    r: &mut impl BufRead,
    max_pixels: u64,
) -> Result<Option<RgbFrame>, PpmError> {
    if r.fill_buf().map_err(io_err)?.is_empty() {
        return Ok(None);
    }
    let magic = token(r)?;
    if magic != "P6" {
        return Err(PpmError::Malformed(format!(
            "frame starts with {magic:?}, not P6"
        )));
    }
    let width = number(r, "width")?;
    let height = number(r, "height")?;
    let maxval = number(r, "maxval")?;
    // `token` consumed the single whitespace byte that ends the header.
    if maxval != 255 {
        return Err(PpmError::Malformed(format!(
            "maxval {maxval}, expected 255"
        )));
    }
    if width == 0 || height == 0 || width > u32::MAX as u64 || height > u32::MAX as u64 {
        return Err(PpmError::Malformed(format!("frame size {width}x{height}")));
    }
    if width.saturating_mul(height) > max_pixels {
        return Err(PpmError::TooLarge(width, height));
    }
    let len = usize::try_from(width * height * 3).map_err(|_| PpmError::TooLarge(width, height))?;
    let mut data = vec![0u8; len];
    r.read_exact(&mut data).map_err(|e| {
        PpmError::Malformed(format!(
            "output ended inside a {width}x{height} frame ({e})"
        ))
    })?;
    Ok(Some((width as u32, height as u32, data)))
}

fn io_err(e: std::io::Error) -> PpmError {
    PpmError::Malformed(format!("reading ffmpeg's output: {e}"))
}

/// A whitespace-delimited header token, skipping `#` comments.
fn token(r: &mut impl BufRead) -> Result<String, PpmError> {
    let mut out = String::new();
    let mut byte = [0u8; 1];
    let mut in_comment = false;
    loop {
        if r.read(&mut byte).map_err(io_err)? == 0 {
            return Err(PpmError::Malformed(
                "output ended inside a frame header".into(),
            ));
        }
        let b = byte[0];
        if in_comment {
            in_comment = b != b'\n';
            continue;
        }
        if b.is_ascii_whitespace() {
            if out.is_empty() {
                continue;
            }
            return Ok(out);
        }
        if b == b'#' && out.is_empty() {
            in_comment = true;
            continue;
        }
        if out.len() >= 20 {
            return Err(PpmError::Malformed("frame header token too long".into()));
        }
        out.push(b as char);
    }
}

fn number(r: &mut impl BufRead, what: &str) -> Result<u64, PpmError> {
    let t = token(r)?;
    t.parse()
        .map_err(|_| PpmError::Malformed(format!("frame header {what} {t:?} is not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: u32, h: u32, fill: u8) -> Vec<u8> {
        let mut v = format!("P6\n{w} {h}\n255\n").into_bytes();
        v.extend(std::iter::repeat_n(fill, (w * h * 3) as usize));
        v
    }

    #[test]
    fn reads_frames_back_to_back_with_changing_sizes() {
        let mut bytes = frame(2, 1, 7);
        bytes.extend(frame(1, 3, 9));
        let mut r = std::io::Cursor::new(bytes);
        assert_eq!(read_frame(&mut r, 100).unwrap(), Some((2, 1, vec![7; 6])));
        assert_eq!(read_frame(&mut r, 100).unwrap(), Some((1, 3, vec![9; 9])));
        assert_eq!(read_frame(&mut r, 100).unwrap(), None);
    }

    #[test]
    fn comments_in_the_header_are_skipped() {
        let mut bytes = b"P6 # made by hand\n1 1\n255\n".to_vec();
        bytes.extend([1, 2, 3]);
        let mut r = std::io::Cursor::new(bytes);
        assert_eq!(read_frame(&mut r, 1).unwrap(), Some((1, 1, vec![1, 2, 3])));
    }

    #[test]
    fn size_is_checked_before_allocating() {
        // A header claiming 20000x20000 with no samples: refused by size,
        // not by a failed 1.2 GB allocation or a read error.
        let mut r = std::io::Cursor::new(b"P6\n20000 20000\n255\n".to_vec());
        assert_eq!(
            read_frame(&mut r, 178_956_970),
            Err(PpmError::TooLarge(20000, 20000))
        );
    }

    #[test]
    fn truncated_and_garbage_streams_are_errors() {
        let mut bytes = frame(4, 4, 1);
        bytes.truncate(bytes.len() - 5);
        let err = read_frame(&mut std::io::Cursor::new(bytes), 100).unwrap_err();
        assert!(
            matches!(&err, PpmError::Malformed(m) if m.contains("inside a 4x4 frame")),
            "{err:?}"
        );
        let err = read_frame(&mut std::io::Cursor::new(b"P5\n1 1\n255\n\0".to_vec()), 100);
        assert!(matches!(err, Err(PpmError::Malformed(_))));
        let err = read_frame(&mut std::io::Cursor::new(b"P6\n1 x\n255\n".to_vec()), 100);
        assert!(matches!(err, Err(PpmError::Malformed(_))));
        let err = read_frame(
            &mut std::io::Cursor::new(b"P6\n1 1\n65535\n\0\0".to_vec()),
            100,
        );
        assert!(matches!(err, Err(PpmError::Malformed(_))));
        let err = read_frame(&mut std::io::Cursor::new(b"P6\n0 1\n255\n".to_vec()), 100);
        assert!(matches!(err, Err(PpmError::Malformed(_))));
    }
}
