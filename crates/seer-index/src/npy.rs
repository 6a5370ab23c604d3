//! NumPy `.npy` for 2-d float arrays: what seer writes for `embed --out` and
//! `export` (format 1.0, little-endian f32 or f16), and reads on `import`, a
//! chunk of rows at a time ([`RowReader`]) or whole ([`decode`]). Reading takes
//! f16, f32 and f64 in either byte order: f64 is numpy's default float (an
//! array built from Python floats), and `np.save` keeps the array's own order.

use std::io::Read;

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

    /// Bytes per value.
    fn width(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
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
    let mut bytes = Vec::with_capacity(header.len() + rows.len() * cols * dtype.width());
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

/// How a file read holds its values: IEEE floats of 2, 4 or 8 bytes, in
/// either byte order. They are read as f32 (f64 rounded to the nearest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Bytes per value: 2, 4 or 8.
    pub width: usize,
    pub big_endian: bool,
}

impl Stored {
    /// From a dtype string such as `<f4` or `>f8`; `None` for anything else.
    fn parse(descr: &str) -> Option<Self> {
        let big_endian = match descr.as_bytes().first()? {
            b'<' => false,
            b'>' => true,
            _ => return None,
        };
        let width = match &descr[1..] {
            "f2" => 2,
            "f4" => 4,
            "f8" => 8,
            _ => return None,
        };
        Some(Self { width, big_endian })
    }

    /// Appends the values held in `bytes` (a whole number of them) to `out`.
    fn extend(self, bytes: &[u8], out: &mut Vec<f32>) {
        let Self { width, big_endian } = self;
        let values = bytes.chunks_exact(width);
        match (width, big_endian) {
            (2, false) => out.extend(values.map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())),
            (2, true) => out.extend(values.map(|b| f16::from_be_bytes([b[0], b[1]]).to_f32())),
            (4, false) => out.extend(values.map(|b| f32::from_le_bytes(b.try_into().unwrap()))),
            (4, true) => out.extend(values.map(|b| f32::from_be_bytes(b.try_into().unwrap()))),
            (_, false) => {
                out.extend(values.map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32))
            }
            (_, true) => {
                out.extend(values.map(|b| f64::from_be_bytes(b.try_into().unwrap()) as f32))
            }
        }
    }
}

/// What seer writes as `dtype`.
impl From<Dtype> for Stored {
    fn from(dtype: Dtype) -> Self {
        Self {
            width: dtype.width(),
            big_endian: false,
        }
    }
}

/// What the header of a 2-d float `.npy` says, checked: the shape, the dtype,
/// where the data starts and how long the shape says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub rows: usize,
    pub cols: usize,
    pub dtype: Stored,
    /// The length of the preamble and header: the data's offset in the file.
    pub data_start: usize,
    /// Bytes of data `rows` x `cols` values of `dtype` take.
    pub data_len: usize,
}

/// Checks the magic and version at the start of `bytes` (a file's first 12
/// bytes, or all of it if shorter): `(where the header starts, its length)`.
fn preamble(bytes: &[u8]) -> Result<(usize, usize), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file".into());
    }
    match bytes[6] {
        1 => Ok((10, u16::from_le_bytes([bytes[8], bytes[9]]) as usize)),
        2 | 3 if bytes.len() >= 12 => Ok((
            12,
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
        )),
        v => Err(format!("unsupported .npy version {v}")),
    }
}

/// Parses the preamble and header at the start of `bytes`, which holds the
/// whole header if the file does; the data may follow, or not.
fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    let (start, header_len) = preamble(bytes)?;
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated .npy header")?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        Some(header[at..].trim_start_matches([':', ' ']))
    };
    let dtype = match field("descr") {
        Some(d) => {
            // The quoted dtype alone, not the rest of the header after it.
            let quoted = d.split([',', '}']).next().unwrap_or(d).trim();
            let unquoted = quoted.trim_matches(['\'', '"']);
            Stored::parse(unquoted).ok_or_else(|| {
                format!("unsupported dtype {quoted} (expected a float: f2, f4 or f8)")
            })?
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
    let data_len = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(dtype.width))
        .ok_or("shape too large")?;
    Ok(Header {
        rows,
        cols,
        dtype,
        data_start: start + header_len,
        data_len,
    })
}

/// Why a `.npy` could not be read: reading failed, or the file is not a 2-d
/// float array as long as its header says (the message says how).
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    Invalid(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => e.fmt(f),
            Self::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<String> for ReadError {
    fn from(message: String) -> Self {
        Self::Invalid(message)
    }
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// How much data [`decode`] and `seer import` read at a time.
pub const CHUNK_BYTES: usize = 4 << 20;

/// Appends up to `n` more bytes of `input` to `buf` (fewer at its end): how many.
fn read_up_to(input: &mut impl Read, buf: &mut Vec<u8>, n: usize) -> std::io::Result<usize> {
    buf.reserve(n);
    input.by_ref().take(n as u64).read_to_end(buf)
}

/// The error for data of `found` bytes where `header` says how many there are.
fn size_error(header: &Header, found: u64) -> ReadError {
    let Header {
        rows,
        cols,
        data_len,
        ..
    } = *header;
    ReadError::Invalid(format!(
        "expected {data_len} bytes of data for shape ({rows}, {cols}), found {found}"
    ))
}

/// A 2-d float `.npy` read a chunk of rows at a time, so memory holds one chunk
/// however large the file is. The header and the file's length are checked
/// first, as [`decode`] checks them: a file whose data is shorter or longer
/// than its shape says is refused before any row is read, and one that ends
/// early while it is read (cut short meanwhile) when its end is reached.
pub struct RowReader<R> {
    input: R,
    header: Header,
    /// Rows per chunk (the last one may hold fewer).
    chunk_rows: usize,
    /// Rows not read yet.
    left: usize,
    /// Bytes of data read so far.
    read: u64,
    bytes: Vec<u8>,
    values: Vec<f32>,
}

impl<R: Read> RowReader<R> {
    /// Reads and checks the header of `input`, a file of `len` bytes in all.
    /// Chunks hold `chunk_bytes` of data or less, but at least one row.
    pub fn new(mut input: R, len: u64, chunk_bytes: usize) -> Result<Self, ReadError> {
        // The longest preamble, then the rest of the header if the file holds it.
        let mut head = Vec::new();
        read_up_to(&mut input, &mut head, 12)?;
        let (start, header_len) = preamble(&head)?;
        let end = start + header_len;
        let rest = end.saturating_sub(head.len());
        if end as u64 <= len && rest > 0 {
            read_up_to(&mut input, &mut head, rest)?;
        }
        let header = parse_header(&head)?;
        // A header that parses names its keys, so it is longer than 2 bytes and
        // the 12 bytes read first hold no data.
        debug_assert!(head.len() <= header.data_start);
        let found = len.saturating_sub(header.data_start as u64);
        if found != header.data_len as u64 {
            return Err(size_error(&header, found));
        }
        let row_bytes = header.cols * header.dtype.width;
        let chunk_rows = match row_bytes {
            0 => header.rows.max(1),
            _ => (chunk_bytes / row_bytes).max(1),
        };
        Ok(Self {
            input,
            header,
            chunk_rows,
            left: header.rows,
            read: 0,
            bytes: Vec::new(),
            values: Vec::new(),
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next chunk of rows as f32 values, row after row (`cols` each), or
    /// `None` after the last row.
    pub fn next_chunk(&mut self) -> Result<Option<&[f32]>, ReadError> {
        if self.left == 0 {
            return Ok(None);
        }
        let rows = self.chunk_rows.min(self.left);
        // At most `data_len`, which did not overflow.
        let n = rows * self.header.cols * self.header.dtype.width;
        self.bytes.clear();
        let got = read_up_to(&mut self.input, &mut self.bytes, n)?;
        self.read += got as u64;
        if got < n {
            return Err(size_error(&self.header, self.read));
        }
        self.left -= rows;
        self.values.clear();
        self.header.dtype.extend(&self.bytes, &mut self.values);
        Ok(Some(&self.values))
    }
}

/// Parses a whole `.npy` 2-d float array: `(rows, cols, values as f32)`.
pub fn decode(bytes: &[u8]) -> Result<(usize, usize, Vec<f32>), String> {
    let mut reader =
        RowReader::new(bytes, bytes.len() as u64, CHUNK_BYTES).map_err(|e| e.to_string())?;
    let Header { rows, cols, .. } = *reader.header();
    // The data's length was checked against the shape: this much is there.
    let mut values = Vec::with_capacity(rows * cols);
    while let Some(chunk) = reader.next_chunk().map_err(|e| e.to_string())? {
        values.extend_from_slice(chunk);
    }
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

    /// 10 rows of 3 distinct values, as `dtype` holds them exactly.
    fn ten_rows() -> Vec<Vec<f32>> {
        (0..10)
            .map(|r| (0..3).map(|c| (r * 3 + c) as f32 - 7.5).collect())
            .collect()
    }

    /// A reader that counts the bytes it has given out.
    struct Counting<'a> {
        inner: &'a [u8],
        given: std::rc::Rc<std::cell::Cell<usize>>,
    }

    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.given.set(self.given.get() + n);
            Ok(n)
        }
    }

    #[test]
    fn rows_are_read_a_chunk_at_a_time_with_the_values_decode_gives() {
        for (dtype, width) in [(Dtype::F32, 4), (Dtype::F16, 2)] {
            let bytes = encode(&ten_rows(), 3, dtype).unwrap();
            let (_, _, whole) = decode(&bytes).unwrap();
            let given = std::rc::Rc::new(std::cell::Cell::new(0));
            let input = Counting {
                inner: &bytes,
                given: given.clone(),
            };
            // Room for 4 rows and a bit: chunks of 4, 4 and 2 rows.
            let row = 3 * width;
            let mut reader = RowReader::new(input, bytes.len() as u64, 4 * row + 1).unwrap();
            let header = *reader.header();
            assert_eq!(
                (header.rows, header.cols, header.dtype),
                (10, 3, Stored::from(dtype))
            );
            assert_eq!(header.data_start + header.data_len, bytes.len());
            assert_eq!(given.get(), header.data_start, "only the header so far");
            let mut values = Vec::new();
            let mut sizes = Vec::new();
            while let Some(chunk) = reader.next_chunk().unwrap() {
                sizes.push(chunk.len() / 3);
                // No more of the file was read than the rows given so far.
                assert_eq!(
                    given.get(),
                    header.data_start + (values.len() + chunk.len()) * width
                );
                values.extend_from_slice(chunk);
            }
            assert_eq!(sizes, [4, 4, 2], "{dtype:?}");
            assert_eq!(values, whole, "{dtype:?}");
            assert!(reader.next_chunk().unwrap().is_none());
            // A chunk smaller than a row still reads a row at a time.
            let mut reader = RowReader::new(&bytes[..], bytes.len() as u64, 1).unwrap();
            let mut rows = 0;
            while let Some(chunk) = reader.next_chunk().unwrap() {
                assert_eq!(chunk, &whole[rows * 3..rows * 3 + 3]);
                rows += 1;
            }
            assert_eq!(rows, 10);
        }
        // No rows, or rows of no values.
        for shape in [[0, 3], [4, 0]] {
            let bytes = header(&shape, Dtype::F32, 0);
            assert_eq!(decode(&bytes).unwrap(), (shape[0], shape[1], vec![]));
        }
    }

    #[test]
    fn a_file_cut_in_the_middle_is_refused_before_or_while_it_is_read() {
        let bytes = encode(&ten_rows(), 3, Dtype::F32).unwrap();
        let start = bytes.len() - 10 * 12;
        let cut = &bytes[..start + 5 * 12 + 7];
        let said = format!("expected 120 bytes of data for shape (10, 3), found {}", 67);
        // Its length shows it: refused before any row is read.
        let err = RowReader::new(cut, cut.len() as u64, 12).err().unwrap();
        assert_eq!(err.to_string(), said);
        assert_eq!(decode(cut).unwrap_err(), said);
        // Too long is refused alike.
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            decode(&long).unwrap_err(),
            "expected 120 bytes of data for shape (10, 3), found 121"
        );
        // Cut short after its length was taken: the chunk that runs out is an error.
        let mut reader = RowReader::new(cut, bytes.len() as u64, 2 * 12).unwrap();
        for _ in 0..2 {
            assert_eq!(reader.next_chunk().unwrap().unwrap().len(), 6);
        }
        let err = reader.next_chunk().err().unwrap();
        assert!(matches!(err, ReadError::Invalid(_)), "{err:?}");
        assert_eq!(err.to_string(), said);
    }

    /// numpy's other float layouts read as the same values: f16, f32 and f64,
    /// little- and big-endian (what `np.save` writes for `astype('>f4')` or an
    /// array of Python floats).
    #[test]
    fn every_float_width_and_byte_order_reads_the_same_values() {
        let values = [1.0f32, -2.5, 0.125, 3.0, 0.0, 65504.0];
        let f32_file = encode(&[values.to_vec()], values.len(), Dtype::F32).unwrap();
        let header_len = u16::from_le_bytes([f32_file[8], f32_file[9]]) as usize;
        let text = std::str::from_utf8(&f32_file[10..10 + header_len]).unwrap();
        for (descr, data) in [
            (
                "'<f2'",
                values.map(|v| f16::from_f32(v).to_le_bytes().to_vec()),
            ),
            (
                "'>f2'",
                values.map(|v| f16::from_f32(v).to_be_bytes().to_vec()),
            ),
            ("'<f4'", values.map(|v| v.to_le_bytes().to_vec())),
            ("'>f4'", values.map(|v| v.to_be_bytes().to_vec())),
            ("'<f8'", values.map(|v| f64::from(v).to_le_bytes().to_vec())),
            ("'>f8'", values.map(|v| f64::from(v).to_be_bytes().to_vec())),
        ] {
            let text = text.replace("'<f4'", descr);
            let mut bytes = f32_file[..10].to_vec();
            bytes[8..10].copy_from_slice(&(text.len() as u16).to_le_bytes());
            bytes.extend_from_slice(text.as_bytes());
            bytes.extend(data.concat());
            assert_eq!(
                decode(&bytes).unwrap(),
                (1, values.len(), values.to_vec()),
                "{descr}"
            );
        }
    }

    #[test]
    fn header_errors_are_those_decode_gave() {
        let good = encode(&[vec![1.0; 4]], 4, Dtype::F32).unwrap();
        let header_len = u16::from_le_bytes([good[8], good[9]]) as usize;
        let with = |from: &str, to: &str| -> Vec<u8> {
            let text = std::str::from_utf8(&good[10..10 + header_len])
                .unwrap()
                .replace(from, to);
            let mut bytes = good[..10].to_vec();
            bytes[8..10].copy_from_slice(&(text.len() as u16).to_le_bytes());
            bytes.extend_from_slice(text.as_bytes());
            bytes.extend_from_slice(&good[good.len() - 16..]);
            bytes
        };
        for (bytes, said) in [
            (b"\x93NUMPY".to_vec(), "not a .npy file"),
            (good[..12].to_vec(), "truncated .npy header"),
            (
                [&b"\x93NUMPY\x04\x00"[..], &good[8..]].concat(),
                "unsupported .npy version 4",
            ),
            (
                with("'<f4'", "'<i4'"),
                "unsupported dtype '<i4' (expected a float: f2, f4 or f8)",
            ),
            (
                with("'<f4'", "'|f4'"),
                "unsupported dtype '|f4' (expected a float: f2, f4 or f8)",
            ),
            (
                with("False", "True"),
                "Fortran-ordered arrays are not supported",
            ),
            (
                with("(1, 4)", "(1, 2, 2)"),
                "expected a 2-d array, shape is (1, 2, 2)",
            ),
            (with("(1, 4)", "(1, x)"), "bad shape 1, x"),
            (with("'descr'", "'dtype'"), "no dtype in the .npy header"),
        ] {
            assert_eq!(decode(&bytes).unwrap_err(), said);
            let err = RowReader::new(&bytes[..], bytes.len() as u64, CHUNK_BYTES)
                .err()
                .unwrap();
            assert_eq!(err.to_string(), said);
        }
    }
}

/// Lets the `fuzz_` harnesses see each allocation's size.
#[cfg(test)]
#[global_allocator]
static FUZZ_ALLOC: seer_testkit::fuzz_mutator::PeakAlloc = seer_testkit::fuzz_mutator::PeakAlloc;

/// Mutation fuzzing of the `.npy` reader (`seer import`'s embeddings):
/// [`decode`] and [`RowReader`] in small chunks, each input under
/// `catch_unwind`; findings under `/tmp/fuzz-data/npy/`. Run (well under a
/// minute in release):
/// `cargo test --release -q -p seer-index -- --ignored fuzz_`
#[cfg(test)]
mod fuzz {
    use super::*;
    use seer_testkit::fuzz_mutator::*;

    const SEED: u64 = 0x4E50_5900;
    const ITERATIONS: usize = 200_000;

    /// Seeds of every dtype and byte order seer reads, rank 1 to 3, version
    /// 1.0 and 2.0 headers, empty and non-empty.
    fn seeds() -> Vec<Vec<u8>> {
        let rows: Vec<Vec<f32>> = (0..3).map(|r| vec![r as f32, 0.5, -1.0, 2.0]).collect();
        let mut out = vec![
            encode(&rows, 4, Dtype::F32).unwrap(),
            encode(&rows, 4, Dtype::F16).unwrap(),
            encode(&[], 4, Dtype::F32).unwrap(),
        ];
        for (descr, width, shape) in [
            ("<f8", 8, "(2, 3)"),
            (">f4", 4, "(2, 3)"),
            (">f8", 8, "(3,)"),
            ("<f2", 2, "(1, 2, 3)"),
            ("|u1", 1, "(2, 2)"),
            ("<f4", 4, "(0, 3)"),
        ] {
            let dict =
                format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
            let n: usize = shape
                .trim_matches(|c| c == '(' || c == ')')
                .split(',')
                .filter_map(|d| d.trim().parse::<usize>().ok())
                .product();
            for v2 in [false, true] {
                let mut b = b"\x93NUMPY".to_vec();
                if v2 {
                    b.extend_from_slice(&[2, 0]);
                    b.extend_from_slice(&(dict.len() as u32).to_le_bytes());
                } else {
                    b.extend_from_slice(&[1, 0]);
                    b.extend_from_slice(&(dict.len() as u16).to_le_bytes());
                }
                b.extend_from_slice(dict.as_bytes());
                b.extend((0..n * width).map(|i| i as u8));
                out.push(b);
            }
        }
        out
    }

    /// Header-text mutations: shape numbers, dtype and order swapped for
    /// hostile ones.
    fn mutate_dict(buf: &mut Vec<u8>, rng: &mut Rng) {
        let Some(end) = buf.iter().position(|&b| b == b'}') else {
            return;
        };
        let text = String::from_utf8_lossy(&buf[..=end]).into_owned();
        let swaps: [(&str, &[&str]); 3] = [
            (
                "'shape': (",
                &[
                    "'shape': (18446744073709551615, ",
                    "'shape': (4294967296, 4294967296, ",
                    "'shape': (0, ",
                    "'shape': (-1, ",
                    "'shape': (99999999999999999999999, ",
                    "'shape': (",
                    "'shape': ((",
                ],
            ),
            (
                "'descr': '",
                &[
                    "'descr': '<f16",
                    "'descr': '<c8",
                    "'descr': 'O",
                    "'descr': '",
                    "'descr': '<U9",
                ],
            ),
            ("False", &["True", "None", "1", ""]),
        ];
        let (from, to) = swaps[rng.below(swaps.len())];
        let to = to[rng.below(to.len())];
        let new = text.replacen(from, to, 1);
        buf.splice(..=end, new.into_bytes());
    }

    #[test]
    #[ignore = "fuzz harness: cargo test --release -p seer-index -- --ignored fuzz_"]
    fn fuzz_npy() {
        let seeds = seeds();
        let mut rng = Rng::new(SEED);
        let mut found = Findings::new("npy");
        quiet_panics(|| {
            for iter in 0..ITERATIONS {
                let mut input = seeds[rng.below(seeds.len())].clone();
                let other = &seeds[rng.below(seeds.len())];
                if rng.chance(3) {
                    mutate_dict(&mut input, &mut rng);
                }
                for _ in 0..1 + rng.below(3) {
                    mutate_once(&mut input, other, &mut rng);
                }
                found.run(iter, &input, || {
                    let whole = decode(&input);
                    let mut reader = RowReader::new(&input[..], input.len() as u64, 16)?;
                    while reader.next_chunk()?.is_some() {}
                    whole.map(|_| ()).map_err(ReadError::Invalid)
                });
            }
        });
        found.finish("npy", ITERATIONS);
    }
}
