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
