//! NumPy `.npy` (format 1.0) for 2-d little-endian float arrays: what seer writes
//! for `embed --out` and `export`, and reads on `import` (f32 or f16).

use half::f16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
}

impl Dtype {
    fn descr(self) -> &'static str {
        match self {
            Self::F32 => "<f4",
            Self::F16 => "<f2",
        }
    }
}

/// The preamble and header of an `.npy` file (format 1.0) of `shape`: the
/// magic, version, header length and the header dict, padded with spaces so the
/// data starts at a multiple of 64 bytes and at least `min_len` bytes in (a
/// writer that learns the row count last reserves the longest header first).
pub fn header(shape: &[usize], dtype: Dtype, min_len: usize) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    // A 1-d shape is written `(n,)`, as Python writes a one-element tuple.
    let trailing = if shape.len() == 1 { "," } else { "" };
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': ({}{trailing}), }}",
        dtype.descr(),
        dims.join(", ")
    );
    // Magic (6) + version (2) + length (2) + header + newline.
    let unpadded = 10 + dict.len() + 1;
    let total = unpadded.max(min_len).next_multiple_of(64);
    dict.push_str(&" ".repeat(total - unpadded));
    dict.push('\n');
    let mut bytes = Vec::with_capacity(total);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    bytes
}

/// The bytes of an `.npy` file holding `rows` (each `cols` long) as `dtype`.
pub fn encode(rows: &[Vec<f32>], cols: usize, dtype: Dtype) -> Result<Vec<u8>, String> {
    let header = header(&[rows.len(), cols], dtype, 0);
    let width = if dtype == Dtype::F32 { 4 } else { 2 };
    let mut bytes = Vec::with_capacity(header.len() + rows.len() * cols * width);
    bytes.extend_from_slice(&header);
    for row in rows {
        if row.len() != cols {
            return Err(format!("a row has {} values, expected {cols}", row.len()));
        }
        for &v in row {
            match dtype {
                Dtype::F32 => bytes.extend_from_slice(&v.to_le_bytes()),
                Dtype::F16 => bytes.extend_from_slice(&f16::from_f32(v).to_le_bytes()),
            }
        }
    }
    Ok(bytes)
}

/// Parses an `.npy` 2-d float array: `(rows, cols, values as f32)`.
pub fn decode(bytes: &[u8]) -> Result<(usize, usize, Vec<f32>), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated .npy header")?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        Some(header[at..].trim_start_matches([':', ' ']))
    };
    let dtype = match field("descr") {
        Some(d) if d.starts_with("'<f4'") => Dtype::F32,
        Some(d) if d.starts_with("'<f2'") => Dtype::F16,
        Some(d) => {
            // The quoted dtype alone, not the rest of the header after it.
            let quoted = d.split([',', '}']).next().unwrap_or(d).trim();
            return Err(format!(
                "unsupported dtype {quoted} (expected little-endian f4 or f2)"
            ));
        }
        None => return Err("no dtype in the .npy header".into()),
    };
    if field("fortran_order").is_some_and(|f| f.starts_with("True")) {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape = field("shape").ok_or("no shape")?;
    let inside = shape
        .trim_start_matches('(')
        .split(')')
        .next()
        .ok_or("bad shape")?;
    let dims: Vec<usize> = inside
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("bad shape {inside}")))
        .collect::<Result<_, _>>()?;
    let [rows, cols] = dims[..] else {
        return Err(format!("expected a 2-d array, shape is ({inside})"));
    };
    let data = &bytes[start + header_len..];
    let width = if dtype == Dtype::F32 { 4 } else { 2 };
    let expected = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(width))
        .ok_or("shape too large")?;
    if data.len() != expected {
        return Err(format!(
            "expected {expected} bytes of data for shape ({rows}, {cols}), found {}",
            data.len()
        ));
    }
    let values = match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    };
    Ok((rows, cols, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_any_rank_and_reserved_length() {
        let h = header(&[2, 16, 16, 40], Dtype::F32, 0);
        let text = std::str::from_utf8(&h[10..]).unwrap();
        assert!(text.contains("'shape': (2, 16, 16, 40)"), "{text}");
        assert_eq!(h.len() % 64, 0);
        assert!(std::str::from_utf8(&header(&[3], Dtype::F32, 0)[10..])
            .unwrap()
            .contains("'shape': (3,)"));
        // Reserved room: the longest header, and a shorter one padded to it.
        let longest = header(&[usize::MAX, 16, 16, 40], Dtype::F32, 0);
        let padded = header(&[1, 16, 16, 40], Dtype::F32, longest.len());
        assert_eq!(padded.len(), longest.len());
        assert_eq!(
            u16::from_le_bytes([padded[8], padded[9]]) as usize + 10,
            padded.len()
        );
        assert!(padded.ends_with(b"\n"));
    }

    #[test]
    fn round_trip_and_alignment() {
        let rows = vec![vec![1.0, 2.0], vec![3.0, 4.5], vec![-5.0, 6.0]];
        for dtype in [Dtype::F32, Dtype::F16] {
            let bytes = encode(&rows, 2, dtype).unwrap();
            let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + header_len) % 64, 0);
            assert_eq!(
                decode(&bytes).unwrap(),
                (3, 2, vec![1.0, 2.0, 3.0, 4.5, -5.0, 6.0])
            );
        }
    }

    #[test]
    fn damaged_files_are_errors() {
        let bytes = encode(&[vec![1.0; 4]], 4, Dtype::F32).unwrap();
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(&bytes[..20]).is_err());
        assert!(decode(b"").is_err());
        assert!(decode(b"PK\x03\x04 a zip").is_err());
        assert!(encode(&[vec![1.0; 3]], 4, Dtype::F32).is_err());
    }
}
