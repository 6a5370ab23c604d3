//! The parts of a SentencePiece `spiece.model` (a `ModelProto` protobuf) that
//! SigLIP's tokenizer needs: the pieces with their scores and types, the model
//! type and the normaliser settings. A minimal reader of the protobuf wire
//! format; unknown fields are skipped, as protobuf readers do.

/// Piece types (`ModelProto.SentencePiece.Type`).
pub(crate) const PIECE_UNKNOWN: u64 = 2;

pub(crate) struct SpmModel {
    /// (piece, score, type) in id order.
    pub pieces: Vec<(String, f32, u64)>,
    /// `TrainerSpec.model_type`: 1 unigram, 2 BPE, 3 word, 4 char.
    pub model_type: u64,
    pub precompiled_charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
}

/// One protobuf field: its number and value (varint, fixed32 bits or bytes).
enum Field<'a> {
    Varint(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.buf.split_first().ok_or("truncated varint")?;
            self.buf = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.buf.len() {
            return Err("field runs past the end of the file".into());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, String> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => Field::Bytes(self.take(8)?),
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
                Field::Bytes(self.take(n)?)
            }
            5 => Field::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().unwrap())),
            other => return Err(format!("unsupported wire type {other}")),
        };
        Ok(Some((key >> 3, field)))
    }
}

fn fields(
    buf: &[u8],
    mut each: impl FnMut(u64, Field) -> Result<(), String>,
) -> Result<(), String> {
    let mut r = Reader { buf };
    while let Some((number, field)) = r.next()? {
        each(number, field)?;
    }
    Ok(())
}

impl SpmModel {
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        let mut model = SpmModel {
            pieces: Vec::new(),
            model_type: 1,
            precompiled_charsmap: Vec::new(),
            // protobuf defaults of NormalizerSpec
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
        };
        fields(bytes, |number, field| {
            match (number, field) {
                (1, Field::Bytes(piece)) => {
                    let (mut text, mut score, mut kind) = (String::new(), 0f32, 1u64);
                    fields(piece, |n, f| {
                        match (n, f) {
                            (1, Field::Bytes(b)) => {
                                text = String::from_utf8(b.to_vec())
                                    .map_err(|_| "a piece is not UTF-8")?
                            }
                            (2, Field::Fixed32(bits)) => score = f32::from_bits(bits),
                            (3, Field::Varint(v)) => kind = v,
                            _ => {}
                        }
                        Ok(())
                    })?;
                    model.pieces.push((text, score, kind));
                }
                (2, Field::Bytes(trainer)) => fields(trainer, |n, f| {
                    if let (3, Field::Varint(v)) = (n, f) {
                        model.model_type = v;
                    }
                    Ok(())
                })?,
                (3, Field::Bytes(normalizer)) => fields(normalizer, |n, f| {
                    match (n, f) {
                        (2, Field::Bytes(b)) => model.precompiled_charsmap = b.to_vec(),
                        (3, Field::Varint(v)) => model.add_dummy_prefix = v != 0,
                        (4, Field::Varint(v)) => model.remove_extra_whitespaces = v != 0,
                        _ => {}
                    }
                    Ok(())
                })?,
                _ => {}
            }
            Ok(())
        })?;
        if model.pieces.is_empty() {
            return Err("no pieces: not a SentencePiece model".into());
        }
        Ok(model)
    }
}

/// Standard base64 with padding (the form `tokenizer.json` stores the
/// precompiled charsmap in).
/// Checks a SentencePiece `precompiled_charsmap` (a darts double-array trie
/// of u32 units, then the normalised strings) as the tokenizers crate will
/// read and walk it, because that crate panics instead of failing: it
/// `expect`s the charsmap to parse, reserves the trie length the first word
/// states before reading it (up to 8 GiB), and indexes the trie and the
/// strings unchecked when it normalises text. So every unit a lookup can
/// reach, for any byte, must lie inside the trie, and every string offset a
/// leaf gives must be a character boundary of the strings.
pub(crate) fn check_precompiled_charsmap(map: &[u8]) -> Result<(), String> {
    let (size, rest) = map
        .split_first_chunk::<4>()
        .ok_or("the charsmap is shorter than its 4-byte header")?;
    let units = u32::from_le_bytes(*size) as usize / 4;
    if units.saturating_mul(4) > rest.len() {
        return Err(format!(
            "the charsmap's trie of {units} units is longer than the charsmap"
        ));
    }
    let (trie, strings) = rest.split_at(units * 4);
    let strings =
        std::str::from_utf8(strings).map_err(|_| "the charsmap's strings are not UTF-8")?;
    let array: Vec<usize> = trie
        .chunks_exact(4)
        .map(|u| u32::from_le_bytes([u[0], u[1], u[2], u[3]]) as usize)
        .collect();
    // spm_precompiled's unit fields.
    let offset = |u: usize| (u >> 10) << ((u & (1 << 9)) >> 6);
    let label = |u: usize| u & ((1 << 31) | 0xff);
    let has_leaf = |u: usize| (u >> 8) & 1 == 1;
    let value = |u: usize| u & ((1 << 31) - 1);
    let unit = |at: usize| {
        array
            .get(at)
            .copied()
            .ok_or_else(|| format!("the charsmap's trie points outside itself ({at})"))
    };
    // The root is unit 0; a lookup starts at its offset.
    let start = offset(unit(0)?);
    let mut seen = std::collections::HashSet::from([start]);
    let mut todo = vec![start];
    while let Some(node) = todo.pop() {
        // A lookup reads the unit at node ^ c for each byte c but NUL.
        for c in 1..=255usize {
            let u = unit(node ^ c)?;
            if label(u) != c {
                continue;
            }
            let next = (node ^ c) ^ offset(u);
            if has_leaf(u) && !strings.is_char_boundary(value(unit(next)?)) {
                return Err(
                    "the charsmap's trie points outside its strings or inside a character".into(),
                );
            }
            if seen.insert(next) {
                todo.push(next);
            }
        }
    }
    Ok(())
}

pub(crate) fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A protobuf length-delimited field.
    fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
        assert!(bytes.len() < 128 * 128);
        let mut out = vec![number << 3 | 2];
        let mut n = bytes.len();
        while n >= 0x80 {
            out.push(n as u8 | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend(bytes);
        out
    }

    /// A unigram `spiece.model` with `<unk>`, `</s>` and `▁a`, and `charsmap`.
    fn spiece_with_charsmap(charsmap: &[u8]) -> Vec<u8> {
        let piece = |text: &str, kind: u8| {
            let mut p = field(1, text.as_bytes());
            p.extend([2 << 3 | 5, 0, 0, 0, 0]); // score 0.0
            p.extend([3 << 3, kind]);
            field(1, &p)
        };
        let mut model = piece("<unk>", 2);
        model.extend(piece("</s>", 3));
        model.extend(piece("\u{2581}a", 1));
        model.extend(field(3, &field(2, charsmap)));
        model
    }

    fn spiece_error(charsmap: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spiece.model");
        std::fs::write(&path, spiece_with_charsmap(charsmap)).unwrap();
        let result = crate::siglip::SiglipTokenizer::from_spiece_model(&path, 64)
            .and_then(|t| t.encode("a b"));
        let err = result
            .expect_err("a broken charsmap was accepted")
            .to_string();
        assert!(err.contains("spiece.model: "), "{err}");
        err
    }

    #[test]
    fn a_charsmap_trie_longer_than_the_charsmap_is_refused_not_panicking() {
        // tokenizers reserved 2^30 trie units (8 GiB) for the length stated,
        // then `expect`ed the parse to succeed.
        let err = spiece_error(&[0xf0, 0xff, 0xff, 0xff, 1, 2, 3, 4]);
        assert!(err.contains("longer than the charsmap"), "{err}");
    }

    #[test]
    fn a_charsmap_trie_pointing_outside_itself_is_refused_not_panicking() {
        // One unit: the lookup of any byte indexed past the trie's end
        // when text was encoded.
        let err = spiece_error(&[4, 0, 0, 0, 0, 0, 0, 0]);
        assert!(err.contains("trie points outside itself"), "{err}");
    }

    #[test]
    fn a_charsmap_leaf_inside_a_character_is_refused_not_panicking() {
        // 256 units: the root (offset 0) and byte 'a' (unit 97), labelled
        // 'a', with a leaf at 97 ^ offset 0 whose value, 353, lies past the
        // strings "é\0": slicing them there panicked when "a" was encoded.
        let mut units = vec![0u32; 256];
        units[97] = 97 | 1 << 8;
        let mut map = (256u32 * 4).to_le_bytes().to_vec();
        for u in &units {
            map.extend(u.to_le_bytes());
        }
        map.extend("é\0".as_bytes());
        let err = spiece_error(&map);
        assert!(err.contains("outside its strings"), "{err}");
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(SpmModel::parse(b"").is_err());
        assert!(SpmModel::parse(&[0x0a, 0xff]).is_err());
        assert!(SpmModel::parse(&[0x0b]).is_err());
    }
}
