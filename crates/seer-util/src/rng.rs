//! A small deterministic generator: shuffles, augmentations (seer-data), initial
//! weights (seer-train, seer-models' random weights) and HNSW levels (seer-ann)
//! must replay identically from a seed, whatever the number of threads.
//!
//! The sequences are pinned: training-resume parity and the ANN files depend on
//! them, so the algorithm (splitmix64) and the derivations below must not change.

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// One splitmix64 step as a pure function: a well-mixed hash of `x` (the output
/// of a generator in state `x`). For deriving seeds without keeping a state.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for the stream identified by `parts` (e.g. seed, epoch, sample).
    pub fn for_stream(parts: &[u64]) -> Self {
        let mut r = Rng(0x5EE5_DA7A_0000_0001);
        for &p in parts {
            r.0 ^= p;
            r.next_u64();
        }
        r
    }

    /// A generator continuing from a raw splitmix64 state.
    pub fn from_state(state: u64) -> Self {
        Rng(state)
    }

    /// splitmix64.
    pub fn next_u64(&mut self) -> u64 {
        let out = splitmix64(self.0);
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        out
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in (0, 1]: safe to take the logarithm of.
    pub fn uniform_open0(&mut self) -> f64 {
        unit_open0(self.next_u64())
    }

    /// Standard normal (Box–Muller on two uniforms in (0, 1]).
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform_open0(), self.uniform_open0());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// The top 53 bits of `bits` as a uniform in (0, 1].
pub fn unit_open0(bits: u64) -> f64 {
    ((bits >> 11) as f64 + 1.0) / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_is_splitmix64() {
        // Reference values of splitmix64 seeded with 0 (Vigna's splitmix64.c);
        // seeds and saved training positions depend on this exact stream.
        let mut r = Rng::from_state(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        let mut r = Rng::from_state(0x1234);
        let first = r.next_u64();
        assert_eq!(splitmix64(0x1234), first);
        assert_eq!(
            splitmix64(0x1234u64.wrapping_add(GOLDEN_GAMMA)),
            r.next_u64()
        );
    }

    #[test]
    fn uniforms_stay_in_their_ranges() {
        assert_eq!(unit_open0(0), 1.0 / (1u64 << 53) as f64);
        assert_eq!(unit_open0(u64::MAX), 1.0);
        let mut r = Rng::for_stream(&[7, 1]);
        for _ in 0..1000 {
            let u = r.uniform();
            assert!((0.0..1.0).contains(&u));
            assert!(r.below(5) < 5);
            assert!(r.normal().is_finite());
        }
    }
}
