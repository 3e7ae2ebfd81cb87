//! Device functions the tensor-core kernels share: accumulators, the staged
//! 2×2 fragment product, quarter stores, row staging, the f32 split into
//! two halves, gathered reads.

use cubecl::prelude::*;

/// An `s × s` f32 accumulator fragment at zero.
#[cube]
pub(super) fn zero_accumulator(#[comptime] s: usize) -> cmma::Matrix<f32> {
    cmma::Matrix::<f32>::from_value(
        cmma::MatrixIdent::Accumulator,
        s,
        s,
        s,
        cmma::MatrixLayout::Undefined,
        f32::new(0.0),
    )
}

/// One staged step of every kernel here: the plane `(pm, pn)` multiplies its
/// rows of the `4s × 2s` operand tile `a_s` by its columns of the
/// `2s × 4s` tile `b_s` (both row-major) into its 2 × 2 accumulators.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn multiply_staged<H: Float>(
    a_s: &[H],
    b_s: &[H],
    c00: &cmma::Matrix<f32>,
    c01: &cmma::Matrix<f32>,
    c10: &cmma::Matrix<f32>,
    c11: &cmma::Matrix<f32>,
    pm: usize,
    pn: usize,
    #[comptime] s: usize,
) {
    let depth_step = comptime!(2 * s);
    let tile_edge = comptime!(4 * s);
    // A fragment's rows end `s − 1` strides plus `s` after its start.
    let a_span = comptime!((s - 1) * 2 * s + s);
    let b_span = comptime!((s - 1) * 4 * s + s);
    #[unroll]
    for kk in 0..2usize {
        let a0_at = (pm * 2 * s) * depth_step + kk * s;
        let a1_at = a0_at + s * depth_step;
        let b0_at = kk * s * tile_edge + pn * 2 * s;
        let b1_at = b0_at + s;
        let a0 = cmma::Matrix::<H>::from_slice(
            cmma::MatrixIdent::A,
            s,
            s,
            s,
            cmma::MatrixLayout::RowMajor,
            &a_s[a0_at..a0_at + a_span],
            u32::cast_from(depth_step),
        );
        let a1 = cmma::Matrix::<H>::from_slice(
            cmma::MatrixIdent::A,
            s,
            s,
            s,
            cmma::MatrixLayout::RowMajor,
            &a_s[a1_at..a1_at + a_span],
            u32::cast_from(depth_step),
        );
        let b0 = cmma::Matrix::<H>::from_slice(
            cmma::MatrixIdent::B,
            s,
            s,
            s,
            cmma::MatrixLayout::RowMajor,
            &b_s[b0_at..b0_at + b_span],
            u32::cast_from(tile_edge),
        );
        let b1 = cmma::Matrix::<H>::from_slice(
            cmma::MatrixIdent::B,
            s,
            s,
            s,
            cmma::MatrixLayout::RowMajor,
            &b_s[b1_at..b1_at + b_span],
            u32::cast_from(tile_edge),
        );
        cmma::execute(&a0, &b0, c00, c00);
        cmma::execute(&a0, &b1, c01, c01);
        cmma::execute(&a1, &b0, c10, c10);
        cmma::execute(&a1, &b1, c11, c11);
    }
}

/// The plane `(pm, pn)`'s 2 × 2 accumulators into its quarter of the
/// row-major `4s × 4s` f32 tile `c_s`.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn store_quarter(
    c_s: &mut [f32],
    c00: &cmma::Matrix<f32>,
    c01: &cmma::Matrix<f32>,
    c10: &cmma::Matrix<f32>,
    c11: &cmma::Matrix<f32>,
    pm: usize,
    pn: usize,
    #[comptime] s: usize,
) {
    let tile_edge = comptime!(4 * s);
    let span = comptime!((s - 1) * 4 * s + s);
    let stride = u32::cast_from(tile_edge);
    let c_at = (pm * 2 * s) * tile_edge + pn * 2 * s;
    cmma::store(
        &mut c_s[c_at..c_at + span],
        c00,
        stride,
        cmma::MatrixLayout::RowMajor,
    );
    let at = c_at + s;
    cmma::store(
        &mut c_s[at..at + span],
        c01,
        stride,
        cmma::MatrixLayout::RowMajor,
    );
    let at = c_at + s * tile_edge;
    cmma::store(
        &mut c_s[at..at + span],
        c10,
        stride,
        cmma::MatrixLayout::RowMajor,
    );
    let at = c_at + s * tile_edge + s;
    cmma::store(
        &mut c_s[at..at + span],
        c11,
        stride,
        cmma::MatrixLayout::RowMajor,
    );
}

/// Stages the `2s × 4s` right operand tile: rows `r0..r0 + 2s` (those below
/// `r_end`) and columns `n0..n0 + 4s` (those below `width`) of the
/// row-major `src` (`width` columns), zero elsewhere, through [`put`]. The
/// forward stages the kernel `[k·C, F]` this way, the kernel gradient `dY`
/// `[B·N_out, F]`.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn stage_rows<F: Float, H: Float>(
    src: &Tensor<F>,
    hi: &mut [H],
    lo: &mut [H],
    scale: f32,
    r0: usize,
    r_end: usize,
    n0: usize,
    width: usize,
    #[comptime] s: usize,
    #[comptime] split: bool,
) {
    let tile_edge = comptime!(4 * s);
    let mut q = UNIT_POS as usize;
    while q < comptime!(2 * s * 4 * s) {
        let row = r0 + q / tile_edge;
        let n = n0 + q % tile_edge;
        let mut v = 0.0f32;
        if row < r_end && n < width {
            v = f32::cast_from(src[row * width + n]);
        }
        put(v, scale, hi, lo, q, split);
        q += CUBE_DIM as usize;
    }
}

/// Stores the operand entry `v` at `at`: as it is, in the staged dtype, or
/// (split) `u = v·scale` as the f16 pair `hi` (`u` rounded to f16's 11
/// significant bits) in `hi` and `lo = f16(u − hi)` in `lo`, which together
/// carry 22 of its 24 significant bits.
#[cube]
pub(super) fn put<H: Float>(
    v: f32,
    scale: f32,
    hi: &mut [H],
    lo: &mut [H],
    at: usize,
    #[comptime] split: bool,
) {
    if split {
        let scaled = v * scale;
        // `hi` is rounded in f32 bits (half an f16 unit added, the 13 bits
        // f16 lacks cleared), not by a cast to f16 and back: shader
        // compilers may fold that round trip into nothing (Mesa's does),
        // which would leave every `lo` at zero. `scaled − high` is exact.
        let bits = u32::reinterpret(scaled);
        let high = f32::reinterpret((bits + 0x1000u32) & 0xFFFF_E000u32);
        hi[at] = H::cast_from(high);
        lo[at] = H::cast_from(scaled - high);
    } else {
        hi[at] = H::cast_from(v);
    }
}

/// One staged step: `hi_a·hi_b`, and for split f32 operands also
/// `hi_a·lo_b + lo_a·hi_b` (the dropped `lo·lo` is below 2⁻²² of the
/// product), in that fixed order into the same f32 accumulators.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn multiply_split<H: Float>(
    a_hi: &[H],
    a_lo: &[H],
    b_hi: &[H],
    b_lo: &[H],
    c00: &cmma::Matrix<f32>,
    c01: &cmma::Matrix<f32>,
    c10: &cmma::Matrix<f32>,
    c11: &cmma::Matrix<f32>,
    pm: usize,
    pn: usize,
    #[comptime] s: usize,
    #[comptime] split: bool,
) {
    multiply_staged(a_hi, b_hi, c00, c01, c10, c11, pm, pn, s);
    if split {
        multiply_staged(a_hi, b_lo, c00, c01, c10, c11, pm, pn, s);
        multiply_staged(a_lo, b_hi, c00, c01, c10, c11, pm, pn, s);
    }
}

/// The factor the split path multiplies an operand by before halving it
/// into f16, given a bound `bound` on the operand's `|v|`: it brings the
/// bound to 2¹³, well inside f16's range (65504) with room for `hi`'s
/// rounding, so that nothing overflows and entries down to 2⁻²⁴ of the
/// bound (f16's subnormals) keep their low half. The division at the end
/// undoes it. A zero bound (an all-zero operand) gives 1, and the products
/// are the zeros. So does a bound past f32's range (infinities, NaN): the
/// outputs that read a non-finite input are then NaN (an infinity's `lo`
/// is `∞ − ∞` in [`put`]), where plain f32 arithmetic could give an
/// infinity.
#[cube]
pub(super) fn split_scale(bound: f32) -> f32 {
    let mut scale = 1.0f32;
    // `bound < 3.4e38` is false for NaN and infinity.
    if bound > 0.0 && bound < 3.4e38 {
        // A floor under tiny bounds keeps the factor finite (≤ 2¹³·10³⁰).
        scale = 8192.0 / max(bound, 1.0e-30);
    }
    scale
}

/// Length of a shared array that only the split path uses: 1 otherwise.
pub(super) fn low_len(len: usize, split: bool) -> usize {
    if split { len } else { 1 }
}

/// One entry of a gathered row, in f32: channel `c` of the input pixel that
/// slot `j` of the row reads (`w·X[b, idx[p, j], c]` where weighted), with
/// the row given by its batch's first pixel `x_base = b·N_in` and its first
/// edge `e_base = p·k`.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn gathered<F: Float, I: Numeric>(
    x: &Tensor<F>,
    indices: &Tensor<I>,
    weights: &Tensor<F>,
    x_base: u32,
    e_base: u32,
    j: usize,
    c: usize,
    channels: usize,
    #[comptime] weighted: bool,
) -> f32 {
    let e = usize::cast_from(e_base) + j;
    let pixel = usize::cast_from(x_base) + usize::cast_from(indices[e]);
    let mut v = f32::cast_from(x[pixel * channels + c]);
    if weighted {
        v *= f32::cast_from(weights[e]);
    }
    v
}
