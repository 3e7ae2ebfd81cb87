//! The paired-rows transform's data movement on AVX2, for the CPUs without
//! AVX-512 (most laptops): the same three steps as [`super::avx512`] on
//! 8-float registers (4 × 4 complex blocks in the first pass, 8 × 8 float
//! blocks in the last). The arithmetic is the scalar path's, operation for
//! operation, so the bits are the same.

use std::arch::x86_64::*;

use rustfft::num_complex::Complex32;

use super::paired::Combine;

/// `dst[h] = a[h] + i·b[h]`.
///
/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn interleave(a: &[f32], b: &[f32], dst: &mut [Complex32]) {
    let len = a.len().min(b.len()).min(dst.len());
    let out = dst.as_mut_ptr().cast::<f32>();
    let mut h = 0;
    while h + 8 <= len {
        // SAFETY: `h + 8 ≤ len` values of `a` and `b`, `2·(h + 8)` floats
        // of `dst`.
        unsafe {
            let (va, vb) = (
                _mm256_loadu_ps(a.as_ptr().add(h)),
                _mm256_loadu_ps(b.as_ptr().add(h)),
            );
            // [a0 b0 a1 b1 | a4 b4 a5 b5] and [a2 b2 a3 b3 | a6 b6 a7 b7].
            let (low, high) = (_mm256_unpacklo_ps(va, vb), _mm256_unpackhi_ps(va, vb));
            _mm256_storeu_ps(out.add(2 * h), _mm256_permute2f128_ps(low, high, 0x20));
            _mm256_storeu_ps(out.add(2 * h + 8), _mm256_permute2f128_ps(low, high, 0x31));
        }
        h += 8;
    }
    super::paired::interleave(&a[h..len], &b[h..len], &mut dst[h..len]);
}

/// Writes the `4 × 4` complex block at `src` (rows `src_stride` apart)
/// transposed to `dst` (rows `dst_stride` apart).
///
/// # Safety
/// The CPU has AVX2; both blocks are inside their buffers.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn transpose_4x4_complex(
    src: *const Complex32,
    src_stride: usize,
    dst: *mut Complex32,
    dst_stride: usize,
) {
    // A complex float32 is 64 bits: the block is a 4 × 4 of doubles.
    // SAFETY: the caller's contract.
    let [r0, r1, r2, r3] =
        [0, 1, 2, 3].map(|r| unsafe { _mm256_loadu_pd(src.add(r * src_stride).cast()) });
    let (t0, t1) = (_mm256_unpacklo_pd(r0, r1), _mm256_unpackhi_pd(r0, r1));
    let (t2, t3) = (_mm256_unpacklo_pd(r2, r3), _mm256_unpackhi_pd(r2, r3));
    let columns = [
        _mm256_permute2f128_pd(t0, t2, 0x20),
        _mm256_permute2f128_pd(t1, t3, 0x20),
        _mm256_permute2f128_pd(t0, t2, 0x31),
        _mm256_permute2f128_pd(t1, t3, 0x31),
    ];
    for (j, column) in columns.iter().enumerate() {
        // SAFETY: the caller's contract.
        unsafe { _mm256_storeu_pd(dst.add(j * dst_stride).cast(), *column) };
    }
}

/// Transposes 8 registers of 8 floats in place.
#[inline]
#[target_feature(enable = "avx2")]
fn transpose_8x8(v: &mut [__m256; 8]) {
    let t = [
        _mm256_unpacklo_ps(v[0], v[1]),
        _mm256_unpackhi_ps(v[0], v[1]),
        _mm256_unpacklo_ps(v[2], v[3]),
        _mm256_unpackhi_ps(v[2], v[3]),
        _mm256_unpacklo_ps(v[4], v[5]),
        _mm256_unpackhi_ps(v[4], v[5]),
        _mm256_unpacklo_ps(v[6], v[7]),
        _mm256_unpackhi_ps(v[6], v[7]),
    ];
    let s = [
        _mm256_shuffle_ps::<0x44>(t[0], t[2]),
        _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
        _mm256_shuffle_ps::<0x44>(t[1], t[3]),
        _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
        _mm256_shuffle_ps::<0x44>(t[4], t[6]),
        _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
        _mm256_shuffle_ps::<0x44>(t[5], t[7]),
        _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
    ];
    for j in 0..4 {
        v[j] = _mm256_permute2f128_ps::<0x20>(s[j], s[j + 4]);
        v[j + 4] = _mm256_permute2f128_ps::<0x31>(s[j], s[j + 4]);
    }
}

/// The real and the imaginary parts of 8 complex values held in two
/// registers, each in order.
#[inline]
#[target_feature(enable = "avx2")]
fn split(first: __m256, second: __m256) -> (__m256, __m256) {
    // Per 128-bit lane [re re | re re] of each register, then the 64-bit
    // pairs put in order (0, 2, 1, 3).
    let re = _mm256_shuffle_ps::<0b10_00_10_00>(first, second);
    let im = _mm256_shuffle_ps::<0b11_01_11_01>(first, second);
    let order =
        |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)));
    (order(re), order(im))
}

/// Output rows `m0..m0 + 8` and `m + m0..m + m0 + 8`, columns `k0..k0 + 8`,
/// as [`super::avx512::combine_block`] does 16 × 16.
///
/// # Safety
/// The CPU has AVX2; `1 ≤ m0`, `m0 + 8 ≤ m`, `k0 + 8 ≤ w`; `spectrum` holds
/// `w·m` values and `out` `2·m·w`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn combine_block(
    c: &Combine<'_>,
    spectrum: &[Complex32],
    m0: usize,
    k0: usize,
    out: *mut f32,
) {
    let (m, w) = (c.m, c.w);
    let reverse = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    // SAFETY: `m0 + 8 ≤ m` values of each table.
    let (cos, sin) = unsafe {
        (
            _mm256_loadu_ps(c.cos.as_ptr().add(m0)),
            _mm256_loadu_ps(c.sin.as_ptr().add(m0)),
        )
    };
    let half_scale = _mm256_set1_ps(c.half_scale);
    let mut low = [_mm256_setzero_ps(); 8];
    let mut high = [_mm256_setzero_ps(); 8];
    for j in 0..8 {
        let k = k0 + j;
        let mirror = (w - k) % w;
        // SAFETY: rows `m0..m0 + 8` of column `k` and `m − m0 − 7 ..= m − m0`
        // of column `−k` are inside the spectrum (`1 ≤ m0`).
        let (c0, c1, d0, d1) = unsafe {
            let at = spectrum.as_ptr().add(k * m + m0).cast::<f32>();
            let mirrored = spectrum.as_ptr().add(mirror * m + m - m0 - 7).cast::<f32>();
            (
                _mm256_loadu_ps(at),
                _mm256_loadu_ps(at.add(8)),
                _mm256_loadu_ps(mirrored),
                _mm256_loadu_ps(mirrored.add(8)),
            )
        };
        let (cr, ci) = split(c0, c1);
        let (dr, di) = split(d0, d1);
        let (dr, di) = (
            _mm256_permutevar8x32_ps(dr, reverse),
            _mm256_permutevar8x32_ps(di, reverse),
        );
        // The scalar path's operations, in its order (see `Paired::combine`).
        let t = _mm256_add_ps(cr, dr);
        let u = _mm256_add_ps(
            _mm256_mul_ps(cos, _mm256_add_ps(ci, di)),
            _mm256_mul_ps(sin, _mm256_sub_ps(cr, dr)),
        );
        low[j] = _mm256_mul_ps(_mm256_add_ps(t, u), half_scale);
        high[j] = _mm256_mul_ps(_mm256_sub_ps(t, u), half_scale);
    }
    transpose_8x8(&mut low);
    transpose_8x8(&mut high);
    for r in 0..8 {
        // SAFETY: rows `m0 + r` and `m + m0 + r`, columns `k0..k0 + 8`.
        unsafe {
            _mm256_storeu_ps(out.add((m0 + r) * w + k0), low[r]);
            _mm256_storeu_ps(out.add((m + m0 + r) * w + k0), high[r]);
        }
    }
}
