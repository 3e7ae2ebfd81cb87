//! The paired-rows transform's data movement on AVX-512: the packing of two
//! real rows into one complex row, the transposes between the row and the
//! column passes, and the last pass's combination written out as whole
//! rows of 16. The arithmetic is the scalar path's, operation for
//! operation (separate multiplies and adds, same order), so the bits are
//! the same as without AVX-512.

use std::arch::x86_64::*;

use rustfft::num_complex::Complex32;

use super::paired::Combine;

/// Index vectors of one butterfly stage of an in-register transpose of
/// `LANES × LANES`: the pair of registers `(i, i + b)` swaps its
/// off-diagonal `b × b` blocks. Indices below `LANES` pick from the first
/// register, the others from the second (`permutex2var`'s convention).
const fn swap_indices<const LANES: usize>(b: usize) -> ([i64; LANES], [i64; LANES]) {
    let (mut low, mut high) = ([0i64; LANES], [0i64; LANES]);
    let mut lane = 0;
    while lane < LANES {
        if lane & b == 0 {
            low[lane] = lane as i64;
            high[lane] = (lane + b) as i64;
        } else {
            low[lane] = (LANES + lane - b) as i64;
            high[lane] = (LANES + lane) as i64;
        }
        lane += 1;
    }
    (low, high)
}

/// [`swap_indices`] for 16 lanes of 32 bits.
const fn swap_indices_32(b: usize) -> ([i32; 16], [i32; 16]) {
    let (wide_low, wide_high) = swap_indices::<16>(b);
    let (mut low, mut high) = ([0i32; 16], [0i32; 16]);
    let mut lane = 0;
    while lane < 16 {
        low[lane] = wide_low[lane] as i32;
        high[lane] = wide_high[lane] as i32;
        lane += 1;
    }
    (low, high)
}

const SWAPS_16: [([i32; 16], [i32; 16]); 4] = [
    swap_indices_32(8),
    swap_indices_32(4),
    swap_indices_32(2),
    swap_indices_32(1),
];
const SWAPS_8: [([i64; 8], [i64; 8]); 3] = [
    swap_indices::<8>(4),
    swap_indices::<8>(2),
    swap_indices::<8>(1),
];

/// Transposes 16 registers of 16 floats in place.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose_16x16(v: &mut [__m512; 16]) {
    for (stage, (low, high)) in SWAPS_16.iter().enumerate() {
        let b = 8 >> stage;
        // SAFETY: the arrays hold 16 i32 each.
        let (low, high) = unsafe {
            (
                _mm512_loadu_si512(low.as_ptr().cast()),
                _mm512_loadu_si512(high.as_ptr().cast()),
            )
        };
        for i in (0..16).filter(|i| i & b == 0) {
            let (x, y) = (v[i], v[i + b]);
            v[i] = _mm512_permutex2var_ps(x, low, y);
            v[i + b] = _mm512_permutex2var_ps(x, high, y);
        }
    }
}

/// `dst[h] = a[h] + i·b[h]`.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn interleave(a: &[f32], b: &[f32], dst: &mut [Complex32]) {
    let len = a.len().min(b.len()).min(dst.len());
    let first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let second = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let out = dst.as_mut_ptr().cast::<f32>();
    let mut h = 0;
    while h + 16 <= len {
        // SAFETY: `h + 16 ≤ len` values of `a` and `b`, `2·(h + 16)`
        // floats of `dst`.
        unsafe {
            let (va, vb) = (
                _mm512_loadu_ps(a.as_ptr().add(h)),
                _mm512_loadu_ps(b.as_ptr().add(h)),
            );
            _mm512_storeu_ps(out.add(2 * h), _mm512_permutex2var_ps(va, first, vb));
            _mm512_storeu_ps(out.add(2 * h + 16), _mm512_permutex2var_ps(va, second, vb));
        }
        h += 16;
    }
    super::paired::interleave(&a[h..len], &b[h..len], &mut dst[h..len]);
}

/// Writes the `8 × 8` complex block at `src` (rows `src_stride` apart)
/// transposed to `dst` (rows `dst_stride` apart).
///
/// # Safety
/// The CPU has AVX-512F; both blocks are inside their buffers.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn transpose_8x8_complex(
    src: *const Complex32,
    src_stride: usize,
    dst: *mut Complex32,
    dst_stride: usize,
) {
    // A complex float32 is 64 bits: the block is an 8 × 8 of doubles.
    let mut v = [_mm512_setzero_pd(); 8];
    for (r, row) in v.iter_mut().enumerate() {
        // SAFETY: the caller's contract.
        *row = unsafe { _mm512_loadu_pd(src.add(r * src_stride).cast()) };
    }
    for (stage, (low, high)) in SWAPS_8.iter().enumerate() {
        let b = 4 >> stage;
        // SAFETY: the arrays hold 8 i64 each.
        let (low, high) = unsafe {
            (
                _mm512_loadu_si512(low.as_ptr().cast()),
                _mm512_loadu_si512(high.as_ptr().cast()),
            )
        };
        for i in (0..8).filter(|i| i & b == 0) {
            let (x, y) = (v[i], v[i + b]);
            v[i] = _mm512_permutex2var_pd(x, low, y);
            v[i + b] = _mm512_permutex2var_pd(x, high, y);
        }
    }
    for (j, column) in v.iter().enumerate() {
        // SAFETY: the caller's contract.
        unsafe { _mm512_storeu_pd(dst.add(j * dst_stride).cast(), *column) };
    }
}

/// Output rows `m0..m0 + 16` and `m + m0..m + m0 + 16`, columns
/// `k0..k0 + 16`: each of the 16 columns is combined as a vector over the
/// rows, from column `k` at rows `m0..` and column `−k` at rows `m − m0 − 15
/// ..= m − m0` (reversed), then the two blocks are transposed and stored as
/// rows.
///
/// # Safety
/// The CPU has AVX-512F; `16 ≤ m0`, `m0 + 16 ≤ m`, `k0 + 16 ≤ w`; `spectrum`
/// holds `w·m` values and `out` `2·m·w`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn combine_block(
    c: &Combine<'_>,
    spectrum: &[Complex32],
    m0: usize,
    k0: usize,
    out: *mut f32,
) {
    let (m, w) = (c.m, c.w);
    let re = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let im = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let re_reversed = _mm512_setr_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    let im_reversed = _mm512_setr_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    // SAFETY: `m0 + 16 ≤ m` values of each table.
    let (cos, sin) = unsafe {
        (
            _mm512_loadu_ps(c.cos.as_ptr().add(m0)),
            _mm512_loadu_ps(c.sin.as_ptr().add(m0)),
        )
    };
    let half_scale = _mm512_set1_ps(c.half_scale);
    let mut low = [_mm512_setzero_ps(); 16];
    let mut high = [_mm512_setzero_ps(); 16];
    for j in 0..16 {
        let k = k0 + j;
        let mirror = (w - k) % w;
        // SAFETY: rows `m0..m0 + 16` of column `k` and `m − m0 − 15 ..=
        // m − m0` of column `−k` are inside the spectrum (`16 ≤ m0`).
        let (c0, c1, d0, d1) = unsafe {
            let at = spectrum.as_ptr().add(k * m + m0).cast::<f32>();
            let mirrored = spectrum
                .as_ptr()
                .add(mirror * m + m - m0 - 15)
                .cast::<f32>();
            (
                _mm512_loadu_ps(at),
                _mm512_loadu_ps(at.add(16)),
                _mm512_loadu_ps(mirrored),
                _mm512_loadu_ps(mirrored.add(16)),
            )
        };
        let (cr, ci) = (
            _mm512_permutex2var_ps(c0, re, c1),
            _mm512_permutex2var_ps(c0, im, c1),
        );
        let (dr, di) = (
            _mm512_permutex2var_ps(d0, re_reversed, d1),
            _mm512_permutex2var_ps(d0, im_reversed, d1),
        );
        // The scalar path's operations, in its order (see `Paired::combine`).
        let t = _mm512_add_ps(cr, dr);
        let u = _mm512_add_ps(
            _mm512_mul_ps(cos, _mm512_add_ps(ci, di)),
            _mm512_mul_ps(sin, _mm512_sub_ps(cr, dr)),
        );
        low[j] = _mm512_mul_ps(_mm512_add_ps(t, u), half_scale);
        high[j] = _mm512_mul_ps(_mm512_sub_ps(t, u), half_scale);
    }
    transpose_16x16(&mut low);
    transpose_16x16(&mut high);
    for r in 0..16 {
        // SAFETY: rows `m0 + r` and `m + m0 + r`, columns `k0..k0 + 16`.
        unsafe {
            _mm512_storeu_ps(out.add((m0 + r) * w + k0), low[r]);
            _mm512_storeu_ps(out.add((m + m0 + r) * w + k0), high[r]);
        }
    }
}
