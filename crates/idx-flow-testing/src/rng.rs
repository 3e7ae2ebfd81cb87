//! A small deterministic generator (xorshift64*) for test data, so that the
//! kernel tests' random cases are the same on every machine and every run.

pub struct Rng(pub u64);

impl Rng {
    /// A generator for any seed, zero included (the raw state must not be 0).
    pub fn seeded(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[-1, 1)`.
    pub fn uniform_vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| (self.unit() * 2.0 - 1.0) as f32).collect()
    }

    /// Approximately standard normal (Irwin–Hall: the sum of 12 uniforms
    /// minus 6), plenty for test data.
    pub fn normal_vec(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| ((0..12).map(|_| self.unit()).sum::<f64>() - 6.0) as f32)
            .collect()
    }
}

/// `n` values uniform in `[-1, 1)` from `seed` (any seed, zero included).
pub fn uniform(n: usize, seed: u64) -> Vec<f32> {
    Rng::seeded(seed).uniform_vec(n)
}
