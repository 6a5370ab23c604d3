//! How embeddings are stored: f16 by default (half the size of f32, with a cosine
//! error far below what ranking notices), f32 when exactness matters, int8 for the
//! smallest index (one scale per vector).

use half::f16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    F32,
    F16,
    Int8,
}

impl Encoding {
    /// As `--encoding` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Int8 => "int8",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Some(Self::F32),
            "f16" => Some(Self::F16),
            "int8" | "i8" => Some(Self::Int8),
            _ => None,
        }
    }

    pub(crate) fn code(self) -> i64 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Int8 => 2,
        }
    }

    pub(crate) fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(Self::F32),
            1 => Some(Self::F16),
            2 => Some(Self::Int8),
            _ => None,
        }
    }

    pub fn encode(self, v: &[f32]) -> Vec<u8> {
        match self {
            Self::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::F16 => v
                .iter()
                .flat_map(|x| f16::from_f32(*x).to_le_bytes())
                .collect(),
            Self::Int8 => {
                // Symmetric per-vector scale: the largest magnitude maps to 127.
                let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
                let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
                let mut out = scale.to_le_bytes().to_vec();
                out.extend(
                    v.iter()
                        .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8 as u8),
                );
                out
            }
        }
    }

    /// Decodes into `out` (appending); None when the blob does not hold `dim` values.
    pub fn decode_into(self, bytes: &[u8], dim: usize, out: &mut Vec<f32>) -> Option<()> {
        match self {
            Self::F32 if bytes.len() == dim * 4 => {
                out.extend(
                    bytes
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
            }
            Self::F16 if bytes.len() == dim * 2 => {
                out.extend(
                    bytes
                        .chunks_exact(2)
                        .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
                );
            }
            Self::Int8 if bytes.len() == dim + 4 => {
                let scale = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                out.extend(bytes[4..].iter().map(|&b| b as i8 as f32 * scale));
            }
            _ => return None,
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(dim: usize, seed: u32) -> Vec<f32> {
        let v: Vec<f32> = (0..dim)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    #[test]
    fn round_trips_within_the_encodings_precision() {
        let v = unit(512, 7);
        for (enc, tol) in [
            (Encoding::F32, 1e-6),
            (Encoding::F16, 1e-3),
            (Encoding::Int8, 1e-2),
        ] {
            let mut out = Vec::new();
            enc.decode_into(&enc.encode(&v), 512, &mut out).unwrap();
            let cos: f32 = v.iter().zip(&out).map(|(a, b)| a * b).sum();
            assert!((1.0 - cos) <= tol, "{enc:?}: cosine {cos}");
        }
    }

    #[test]
    fn wrong_sizes_are_rejected() {
        let mut out = Vec::new();
        assert!(Encoding::F16.decode_into(&[0; 10], 512, &mut out).is_none());
        assert!(Encoding::Int8.decode_into(&[], 4, &mut out).is_none());
    }
}
