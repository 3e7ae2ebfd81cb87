//! Output buffers filled in parallel without zeroing them first, tile sizes,
//! and the one matrix product every kernel calls.

use std::mem::MaybeUninit;

use gemm::{Parallelism, gemm};

/// Bytes of gathered rows a tile aims for: well inside a core's L2 cache.
const TILE_BYTES: usize = 96 * 1024;

/// Rows per tile for rows of `row_len` floats.
pub(crate) fn tile_rows(row_len: usize) -> usize {
    (TILE_BYTES / (4 * row_len.max(1))).clamp(8, 512)
}

/// A result buffer of `n` floats left unwritten, for kernels that write
/// every element themselves: zeroing a large buffer first would be a serial
/// pass over memory that the parallel kernel then overwrites anyway.
pub(crate) fn unwritten(n: usize) -> Vec<MaybeUninit<f32>> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: `MaybeUninit` elements need no initialisation.
    unsafe { v.set_len(n) };
    v
}

/// The floats of a buffer from [`unwritten`].
///
/// # Safety
/// Every element must have been written.
pub(crate) unsafe fn written(v: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the caller
    // guarantees every element is initialised; the allocation is handed over.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<f32>(), v.len(), v.capacity()) }
}

/// A part of a buffer from [`unwritten`] whose elements have all been written.
///
/// # Safety
/// Every element of `part` must have been written.
pub(crate) unsafe fn written_part(part: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: as in `written`.
    unsafe { &mut *(part as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// A row of a buffer from [`unwritten`] set to zeros (while it is about to
/// be summed into, so in cache), as floats.
pub(crate) fn zeroed(row: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    for d in row.iter_mut() {
        d.write(0.0);
    }
    // SAFETY: written just above.
    unsafe { written_part(row) }
}

/// `dst[m×n] (+)= lhs[m×k]·rhs[k×n]`, each operand given by its pointer and
/// (row, column) strides, on the calling thread.
///
/// # Safety
/// The pointers and strides must address valid memory for the given sizes,
/// and `dst` must not overlap the operands.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const f32,
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: *const f32,
    (rhs_rs, rhs_cs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}
