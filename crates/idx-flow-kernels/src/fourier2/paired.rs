//! The transform for even `N`, two real rows at a time: no real-FFT
//! post-processing, and a last pass that writes whole output rows.
//!
//! Rows `2p` and `2p + 1` of a sample `x` `[N, W]` are packed as one
//! complex row `z_p = x_{2p} + i·x_{2p+1}` (`p < M = N/2`); a complex FFT
//! along `W` of each `z_p`, then one of length `M` down each column, gives
//! `C = A + i·B`, where `A` and `B` are the 2-D transforms of the even and
//! the odd rows. Both are transforms of real arrays, so with `d = C[−m, −k]`
//! `A = (C + d̄)/2` and `B = (C − d̄)/(2i)`; and the full transform is
//! `X[m, k] = A[m, k] + ω^m·B[m, k]`, `X[m + M, k] = A[m, k] − ω^m·B[m, k]`
//! (`ω = e^{−2πi/N}`, `m < M`). Its real part is
//! `(t ± u)/2` with `t = Re C + Re d` and
//! `u = cos(2πm/N)·(Im C + Im d) − sin(2πm/N)·(Re C − Re d)`.
//!
//! The same work as a real FFT per row (`realfft`) followed by the column
//! FFTs, but the complex FFTs need no post-processing and the last pass
//! reads each column's rows `m` and the mirrored column's rows `−m` as
//! contiguous runs, so on AVX-512 it combines 16 rows as a vector and
//! writes 16 × 16 blocks as whole rows, on AVX2 8 × 8. At `[8, 1024, 256]`
//! on the AMD box (two alternated rounds, forward medians) that took 2.3–3.3
//! ms on either against 4.3–5.4 ms for the row-at-a-time
//! [`super::general`], and 3.4–3.7 ms on the scalar path.

use std::sync::Arc;

use rustfft::Fft;
use rustfft::num_complex::Complex32;

use super::Passes;
use crate::fft::plan;

/// Pairs of rows per block of the first pass: a column's block of the
/// spectrum is then 8 complex values, one 64-byte line.
const PAIRS_PER_BLOCK: usize = 8;

/// Output rows per block of the last pass, in each half (`m0..` and
/// `M + m0..`): one vector of 16 floats.
const ROWS_PER_BLOCK: usize = 16;

/// The sizes of one call, its plans and the twiddles of the last pass.
pub(super) struct Paired {
    w: usize,
    /// `N/2`: packed rows, and the length of the column transforms.
    m: usize,
    /// `1/(2·√(N·W))`: the orthonormal scale and the halves of `A` and `B`.
    half_scale: f32,
    row_fft: Arc<dyn Fft<f32>>,
    column_fft: Arc<dyn Fft<f32>>,
    /// `cos(2πm/N)` and `−sin(2πm/N)`, `m < M`, rounded from float64.
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// The widest vector paths the CPU has (the same bits on each).
    vectors: Vectors,
}

/// Which data-movement paths a [`Paired`] takes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Vectors {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Vectors {
    /// The widest this CPU has.
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Self::Avx2;
            }
        }
        Self::Scalar
    }

    /// Every path this CPU can run, the scalar one first.
    #[cfg(test)]
    fn available() -> Vec<Self> {
        let mut paths = vec![Self::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                paths.push(Self::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                paths.push(Self::Avx512);
            }
        }
        paths
    }
}

/// One thread's working buffers.
pub(super) struct Buffers {
    /// One block of packed rows, `PAIRS_PER_BLOCK × W`.
    rows: Vec<Complex32>,
    row_scratch: Vec<Complex32>,
    /// The last pass's scalar columns of rows `m0..` and `M + m0..`.
    low: Vec<f32>,
    high: Vec<f32>,
}

impl Paired {
    /// The transform of samples `[n, w]`, `n` even.
    pub(super) fn new(n: usize, w: usize) -> Self {
        debug_assert!(n.is_multiple_of(2) && n > 0);
        let m = n / 2;
        let angle = |p: usize| 2.0 * std::f64::consts::PI * p as f64 / n as f64;
        Self {
            w,
            m,
            half_scale: (0.5 / ((n * w) as f64).sqrt()) as f32,
            row_fft: plan(w, false),
            column_fft: plan(m, false),
            cos: (0..m).map(|p| angle(p).cos() as f32).collect(),
            sin: (0..m).map(|p| -angle(p).sin() as f32).collect(),
            vectors: Vectors::detect(),
        }
    }

    /// The same transform on the given paths (the tests compare them).
    #[cfg(test)]
    fn on(vectors: Vectors, n: usize, w: usize) -> Self {
        Self {
            vectors,
            ..Self::new(n, w)
        }
    }

    /// `(Re X[m, k], Re X[m + M, k])`, scaled, from `c = C[m, k]` and
    /// `d = C[−m, −k]`.
    #[inline(always)]
    fn combine(&self, c: Complex32, d: Complex32, m: usize) -> (f32, f32) {
        let t = c.re + d.re;
        let u = self.cos[m] * (c.im + d.im) + self.sin[m] * (c.re - d.re);
        ((t + u) * self.half_scale, (t - u) * self.half_scale)
    }
}

/// The sizes and tables of the last pass, for the vector paths (see
/// [`Paired`]).
#[cfg(target_arch = "x86_64")]
pub(super) struct Combine<'a> {
    pub m: usize,
    pub w: usize,
    pub cos: &'a [f32],
    pub sin: &'a [f32],
    pub half_scale: f32,
}

/// `packed[h] = even[h] + i·odd[h]` (also the vector paths' tails).
pub(super) fn interleave(even: &[f32], odd: &[f32], packed: &mut [Complex32]) {
    for ((z, &re), &im) in packed.iter_mut().zip(even).zip(odd) {
        *z = Complex32::new(re, im);
    }
}

impl Passes for Paired {
    type Buffers = Buffers;

    fn buffers(&self) -> Buffers {
        Buffers {
            rows: vec![Complex32::new(0.0, 0.0); PAIRS_PER_BLOCK * self.w],
            row_scratch: vec![Complex32::new(0.0, 0.0); self.row_fft.get_inplace_scratch_len()],
            low: Vec::with_capacity(ROWS_PER_BLOCK * self.w),
            high: Vec::with_capacity(ROWS_PER_BLOCK * self.w),
        }
    }

    fn spectrum_len(&self) -> usize {
        self.w * self.m
    }

    fn column_fft(&self) -> &dyn Fft<f32> {
        &*self.column_fft
    }

    fn row_blocks(&self) -> usize {
        self.m.div_ceil(PAIRS_PER_BLOCK)
    }

    fn output_blocks(&self) -> usize {
        self.m.div_ceil(ROWS_PER_BLOCK)
    }

    /// Packs the block's pairs of rows, transforms them along `W` and
    /// writes them transposed into the spectrum (column `k` at
    /// `spectrum[k·M..][..M]`).
    unsafe fn rows(
        &self,
        x: &[f32],
        block: usize,
        spectrum: *mut Complex32,
        buffers: &mut Buffers,
    ) {
        let (w, m) = (self.w, self.m);
        let p0 = block * PAIRS_PER_BLOCK;
        let pairs = PAIRS_PER_BLOCK.min(m - p0);
        for r in 0..pairs {
            let even = &x[2 * (p0 + r) * w..][..w];
            let odd = &x[(2 * (p0 + r) + 1) * w..][..w];
            let packed = &mut buffers.rows[r * w..][..w];
            #[cfg(target_arch = "x86_64")]
            match self.vectors {
                // SAFETY: `detect` found the instructions on this CPU.
                Vectors::Avx512 => unsafe { super::avx512::interleave(even, odd, packed) },
                Vectors::Avx2 => unsafe { super::avx2::interleave(even, odd, packed) },
                Vectors::Scalar => interleave(even, odd, packed),
            }
            #[cfg(not(target_arch = "x86_64"))]
            interleave(even, odd, packed);
        }
        let packed = &mut buffers.rows[..pairs * w];
        self.row_fft
            .process_with_scratch(packed, &mut buffers.row_scratch);
        let mut k0 = 0;
        #[cfg(target_arch = "x86_64")]
        if self.vectors == Vectors::Avx512 && pairs == PAIRS_PER_BLOCK {
            while k0 + 8 <= w {
                // SAFETY: AVX-512F; rows `0..8` of the block at columns
                // `k0..k0 + 8`, and columns `k0..k0 + 8` of the spectrum at
                // rows `p0..p0 + 8` (`p0 + 8 ≤ M`).
                unsafe {
                    super::avx512::transpose_8x8_complex(
                        buffers.rows.as_ptr().add(k0),
                        w,
                        spectrum.add(k0 * m + p0),
                        m,
                    )
                };
                k0 += 8;
            }
        }
        #[cfg(target_arch = "x86_64")]
        if self.vectors == Vectors::Avx2 && pairs == PAIRS_PER_BLOCK {
            while k0 + 4 <= w {
                for r0 in [0, 4] {
                    // SAFETY: AVX2; rows `r0..r0 + 4` of the block at columns
                    // `k0..k0 + 4`, and columns `k0..k0 + 4` of the spectrum
                    // at rows `p0 + r0..p0 + r0 + 4` (`p0 + 8 ≤ M`).
                    unsafe {
                        super::avx2::transpose_4x4_complex(
                            buffers.rows.as_ptr().add(r0 * w + k0),
                            w,
                            spectrum.add(k0 * m + p0 + r0),
                            m,
                        )
                    };
                }
                k0 += 4;
            }
        }
        for k in k0..w {
            for r in 0..pairs {
                // SAFETY: inside the sample's spectrum, at this block's rows.
                unsafe { spectrum.add(k * m + p0 + r).write(buffers.rows[r * w + k]) };
            }
        }
    }

    /// Output rows `m0..m0 + 16` and `M + m0..M + m0 + 16` of the block.
    unsafe fn output(
        &self,
        spectrum: &[Complex32],
        block: usize,
        out: *mut f32,
        buffers: &mut Buffers,
    ) {
        let (w, m) = (self.w, self.m);
        let m0 = block * ROWS_PER_BLOCK;
        let rows = ROWS_PER_BLOCK.min(m - m0);
        let mut k0 = 0;
        // The first block's mirrored rows (0, M − 1, …, M − 15) are not one
        // run; it and partial blocks take the scalar path.
        #[cfg(target_arch = "x86_64")]
        if rows == ROWS_PER_BLOCK && m0 > 0 {
            let combine = Combine {
                m,
                w,
                cos: &self.cos,
                sin: &self.sin,
                half_scale: self.half_scale,
            };
            match self.vectors {
                Vectors::Avx512 => {
                    while k0 + 16 <= w {
                        // SAFETY: AVX-512F; `16 ≤ m0`, `m0 + 16 ≤ M`,
                        // `k0 + 16 ≤ W`; the spectrum holds `W·M` values,
                        // `out` this sample's `N·W`.
                        unsafe { super::avx512::combine_block(&combine, spectrum, m0, k0, out) };
                        k0 += 16;
                    }
                }
                Vectors::Avx2 => {
                    while k0 + 8 <= w {
                        for half in [m0, m0 + 8] {
                            // SAFETY: AVX2; `1 ≤ half`, `half + 8 ≤ M`,
                            // `k0 + 8 ≤ W`; sizes as above.
                            unsafe {
                                super::avx2::combine_block(&combine, spectrum, half, k0, out)
                            };
                        }
                        k0 += 8;
                    }
                }
                Vectors::Scalar => {}
            }
        }
        // The other columns (all of them without AVX-512) are assembled in
        // two tiles in the first-level cache and copied out row by row, as
        // in `general`: written straight into `out`, each value would land
        // on another row's cache line.
        let width = w - k0;
        if width == 0 {
            return;
        }
        let Buffers { low, high, .. } = buffers;
        // Every value is written below: resizing zeroes only what grows.
        low.resize(rows * width, 0.0);
        high.resize(rows * width, 0.0);
        for k in k0..w {
            let column = &spectrum[k * m..][..m];
            let mirrored = &spectrum[((w - k) % w) * m..][..m];
            for (r, row) in (m0..m0 + rows).enumerate() {
                let (l, h) = self.combine(column[row], mirrored[(m - row) % m], row);
                low[r * width + k - k0] = l;
                high[r * width + k - k0] = h;
            }
        }
        for r in 0..rows {
            // SAFETY: rows `m0 + r` and `M + m0 + r` of the sample, columns
            // `k0..W`.
            unsafe {
                let row = out.add((m0 + r) * w + k0);
                std::ptr::copy_nonoverlapping(low.as_ptr().add(r * width), row, width);
                let row = out.add((m + m0 + r) * w + k0);
                std::ptr::copy_nonoverlapping(high.as_ptr().add(r * width), row, width);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two samples through all three passes on one thread.
    fn run(t: &Paired, x: &[f32], n: usize, w: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; x.len()];
        let mut buffers = t.buffers();
        let mut scratch = vec![Complex32::new(0.0, 0.0); t.column_fft.get_inplace_scratch_len()];
        for (sample, y) in x.chunks(n * w).zip(out.chunks_mut(n * w)) {
            let mut spectrum = vec![Complex32::new(0.0, 0.0); t.spectrum_len()];
            for block in 0..t.row_blocks() {
                // SAFETY: the spectrum holds `spectrum_len` values.
                unsafe { t.rows(sample, block, spectrum.as_mut_ptr(), &mut buffers) };
            }
            t.column_fft
                .process_with_scratch(&mut spectrum, &mut scratch);
            for block in 0..t.output_blocks() {
                // SAFETY: `y` holds the sample's `n·w` values.
                unsafe { t.output(&spectrum, block, y.as_mut_ptr(), &mut buffers) };
            }
        }
        out
    }

    /// The AVX2 and AVX-512 paths give the scalar paths' bits, on shapes
    /// with whole blocks, partial ones and none (each path the CPU has).
    #[test]
    fn vector_and_scalar_paths_agree_bit_for_bit() {
        for (n, w) in [(64usize, 48usize), (70, 40), (96, 33), (2, 3), (34, 16)] {
            let x: Vec<f32> = (0..2 * n * w)
                .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * (1.0 + (i % 3) as f32))
                .collect();
            let scalar = run(&Paired::on(Vectors::Scalar, n, w), &x, n, w);
            for vectors in Vectors::available() {
                let got = run(&Paired::on(vectors, n, w), &x, n, w);
                assert!(
                    got.iter()
                        .zip(&scalar)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "[{n}, {w}]: the {vectors:?} and scalar paths differ"
                );
            }
        }
    }
}
