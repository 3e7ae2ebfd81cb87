//! A small counter-based random source: every random number of a training run
//! is a pure function of `(seed, stream, index)`, so a run resumed at step `s`
//! draws exactly what the uninterrupted run drew, with no generator state to save.
//!
//! ```
//! use idx_flow_core::rng::SplitMix64;
//! let mut a = SplitMix64::for_stream(7, 3, 12);
//! let mut b = SplitMix64::for_stream(7, 3, 12);
//! assert_eq!(a.next_u64(), b.next_u64());
//! let u = a.uniform();
//! assert!((0.0..1.0).contains(&u));
//! ```

/// Sebastiano Vigna's SplitMix64 generator (64-bit state, full period).
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl SplitMix64 {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// An independent generator for sample `index` of stream `stream` under `seed`
    /// (e.g. stream = training step, index = position in the batch).
    pub fn for_stream(seed: u64, stream: u64, index: u64) -> Self {
        let s = mix(seed ^ 0x9e37_79b9_7f4a_7c15);
        let s = mix(s ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03));
        Self::new(mix(s ^ index.wrapping_mul(0x8cb9_2ba7_2f3d_8dd7)))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        // Lemire's multiply-shift; the bias (< n / 2^64) is negligible here.
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}
