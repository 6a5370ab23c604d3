//! A small deterministic generator: shuffles, augmentations and (in seer-train)
//! initial weights must replay identically from a seed, whatever the number of
//! threads.

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
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller on two uniforms in (0, 1]).
    pub fn normal(&mut self) -> f64 {
        let mut unit = || ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let (u1, u2) = (unit(), unit());
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
