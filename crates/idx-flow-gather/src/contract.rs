//! Gather-contract (idx_flow's `SpatialConv`): the forward and the kernel
//! gradient.

use rayon::prelude::*;

use crate::buffer::{matmul, tile_rows, unwritten, written};
use crate::check::{GatherError, GatherSizes, product};

/// Tiles of the kernel gradient are summed in at most this many fixed groups.
const GRAD_GROUPS: usize = 16;

/// Inputs up to this size are not prefetched: they stay in the last-level
/// cache from tile to tile, and the hints' own loop cost more than they
/// saved (the main job's layers, 1–6 MB, spent about 6% of a training
/// step in it).
const PREFETCH_MIN_BYTES: usize = 16 << 20;

/// Gathers output rows `r0..r0 + m` (flat over batch and output pixel) into
/// `buf` as `[m, k·C]`, scaled by the edge weights when given.
///
/// A row of a few channels is a few dozen bytes: copied through `memcpy`
/// with a length known only at run time, the call costs more than the copy
/// (about 8% of a training step of the main job went there), so the common
/// channel counts get their own copy of the loop ([`with_channel_count`]).
fn gather_rows(
    buf: &mut [f32],
    x: &[f32],
    idx: &[i64],
    w: Option<&[f32]>,
    s: GatherSizes,
    r0: usize,
    m: usize,
) {
    with_channel_count(
        s.channels,
        #[inline(always)]
        |c| {
            let k = s.k;
            for r in 0..m {
                let row = r0 + r;
                let (b, p) = (row / s.n_out, row % s.n_out);
                let x_b = &x[b * s.n_in * c..(b + 1) * s.n_in * c];
                for j in 0..k {
                    let e = p * k + j;
                    let src = &x_b[idx[e] as usize * c..][..c];
                    let dst = &mut buf[(r * k + j) * c..][..c];
                    match w {
                        Some(w) => {
                            let we = w[e];
                            for (d, v) in dst.iter_mut().zip(src) {
                                *d = we * v;
                            }
                        }
                        None => dst.copy_from_slice(src),
                    }
                }
            }
        },
    );
}

/// Calls `f(c)` with `c` a constant for the common channel counts (1, 2, 3,
/// 4, 8, 16, 32, 64), as is otherwise. `f` is inlined into each arm, so its
/// loops over a row of `c` values have a known length: a copy of a few
/// dozen bytes becomes a few vector moves instead of a `memcpy` call. Mark
/// the closure `#[inline(always)]`: left to itself, the compiler may keep
/// one out-of-line copy for all the arms (the gather's forward was 1.1–1.8×
/// slower so).
#[inline(always)]
pub fn with_channel_count<R>(c: usize, f: impl FnOnce(usize) -> R) -> R {
    match c {
        1 => f(1),
        2 => f(2),
        3 => f(3),
        4 => f(4),
        8 => f(8),
        16 => f(16),
        32 => f(32),
        64 => f(64),
        c => f(c),
    }
}

/// Asks the cache for the input rows that output rows `r0..r0 + m` read.
///
/// A tile's gather reads rows scattered over `x` (tens of MB for a large
/// batch), so each copy waits on memory; announcing the next tile's rows
/// before the current tile's matrix product lets those loads arrive while
/// the core computes. Only a hint: a no-op off x86-64, and for an `x` of at
/// most [`PREFETCH_MIN_BYTES`].
fn prefetch_rows(x: &[f32], idx: &[i64], s: GatherSizes, r0: usize, m: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::mem::size_of_val(x) > PREFETCH_MIN_BYTES {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        let (c, k) = (s.channels, s.k);
        let end = (r0 + m).min(s.batch * s.n_out);
        for row in r0..end {
            let (b, p) = (row / s.n_out, row % s.n_out);
            for &i in &idx[p * k..(p + 1) * k] {
                let start = (b * s.n_in + i as usize) * c;
                // One hint per 64-byte line of the row (16 floats).
                for off in (0..c).step_by(16) {
                    // SAFETY: prefetching has no architectural effect; the
                    // address lies inside `x` (start + off < len).
                    unsafe { _mm_prefetch::<_MM_HINT_T1>(x.as_ptr().add(start + off).cast()) };
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (x, idx, s, r0, m);
}

/// `Y` `[B, N_out, F]`: `Y[b,p,f] = bias[f] + Σ_j Σ_c w[p,j]·X[b, idx[p,j], c]·K[j·C + c, f]`
/// from `x` `[B, N_in, C]`, `idx` `[N_out, k]`, optional edge weights `w`
/// `[N_out, k]`, `kernel` `[k·C, F]` (idx_flow's `[k, C, F]` kernel, flat) and
/// an optional `bias` `[F]`.
///
/// Each tile's rows start from the bias (in cache) so the product accumulates
/// onto it: no separate pass over the output.
///
/// # Errors
/// A slice whose length does not fit `s` and `f`, or an index outside `0..N_in`.
pub fn contract_forward(
    x: &[f32],
    idx: &[i64],
    w: Option<&[f32]>,
    kernel: &[f32],
    bias: Option<&[f32]>,
    s: GatherSizes,
    f: usize,
) -> Result<Vec<f32>, GatherError> {
    s.expect_len("x", x, &[s.batch, s.n_in, s.channels], "[B, N_in, C]")?;
    s.check_indices(idx)?;
    s.check_weights(w)?;
    s.expect_len("kernel", kernel, &[s.k, s.channels, f], "[k·C, F]")?;
    if let Some(bias) = bias {
        s.expect_len("bias", bias, &[f], "[F]")?;
    }
    let len = product(&[s.batch, s.n_out, f], &s)?;
    product(&[s.k, s.channels, f], &s)?;
    if len == 0 {
        return Ok(Vec::new());
    }
    let kc = s.k * s.channels;
    let rows = s.batch * s.n_out;
    let tile = tile_rows(kc);
    let mut y = unwritten(rows * f);
    y.par_chunks_mut(tile * f).enumerate().for_each_init(
        || vec![0f32; tile * kc],
        |buf, (t, y_tile)| {
            let m = y_tile.len() / f;
            gather_rows(buf, x, idx, w, s, t * tile, m);
            prefetch_rows(x, idx, s, (t + 1) * tile, tile);
            if let Some(bias) = bias {
                for row in y_tile.chunks_exact_mut(f) {
                    for (d, b) in row.iter_mut().zip(bias) {
                        d.write(*b);
                    }
                }
            }
            // SAFETY: buf is [m, kc], kernel [kc, f], y_tile [m, f], all
            // row-major. Without a bias the product does not read y_tile
            // (gemm's `read_dst` false) and writes all of it, zeros when kc
            // is 0; with one, every element was written just above.
            unsafe {
                matmul(
                    (m, f, kc),
                    y_tile.as_mut_ptr().cast::<f32>(),
                    f,
                    bias.is_some(),
                    buf.as_ptr(),
                    (kc, 1),
                    kernel.as_ptr(),
                    (f, 1),
                )
            }
        },
    );
    // SAFETY: every tile of rows was written whole by its product.
    Ok(unsafe { written(y) })
}

/// The kernel gradient `dK` `[k·C, F]` of [`contract_forward`]:
/// `dK[j·C + c, f] = Σ_b Σ_p w[p,j]·X[b, idx[p,j], c]·dY[b,p,f]`, from `x`
/// `[B, N_in, C]` and `dy` `[B, N_out, F]`.
///
/// The rows' products are summed over fixed groups of tiles, then the groups
/// in order: the same bits for any number of threads.
///
/// # Errors
/// A slice whose length does not fit `s` and `f`, or an index outside `0..N_in`.
pub fn contract_grad_kernel(
    x: &[f32],
    idx: &[i64],
    w: Option<&[f32]>,
    dy: &[f32],
    s: GatherSizes,
    f: usize,
) -> Result<Vec<f32>, GatherError> {
    s.expect_len("x", x, &[s.batch, s.n_in, s.channels], "[B, N_in, C]")?;
    s.check_indices(idx)?;
    s.check_weights(w)?;
    s.expect_len("dy", dy, &[s.batch, s.n_out, f], "[B, N_out, F]")?;
    product(&[s.k, s.channels, f], &s)?;
    let kc = s.k * s.channels;
    let rows = s.batch * s.n_out;
    let tile = tile_rows(kc.max(f));
    let tiles = rows.div_ceil(tile);
    let groups = tiles.clamp(1, GRAD_GROUPS);
    let partials: Vec<Vec<f32>> = (0..groups)
        .into_par_iter()
        .map(|g| {
            let mut acc = vec![0f32; kc * f];
            let mut buf = vec![0f32; tile * kc];
            let (t0, t1) = (g * tiles / groups, (g + 1) * tiles / groups);
            for t in t0..t1 {
                let r0 = t * tile;
                let m = tile.min(rows - r0);
                gather_rows(&mut buf, x, idx, w, s, r0, m);
                if t + 1 < t1 {
                    prefetch_rows(x, idx, s, r0 + tile, tile);
                }
                // SAFETY: lhs = bufᵀ ([kc, m], buf row-major [m, kc]),
                // rhs = dY rows r0.. ([m, f]), acc [kc, f].
                unsafe {
                    matmul(
                        (kc, f, m),
                        acc.as_mut_ptr(),
                        f,
                        t > t0,
                        buf.as_ptr(),
                        (1, kc),
                        dy[r0 * f..].as_ptr(),
                        (f, 1),
                    )
                }
            }
            acc
        })
        .collect();
    let mut iter = partials.into_iter();
    let mut total = iter.next().unwrap_or_else(|| vec![0f32; kc * f]);
    for part in iter {
        for (t, p) in total.iter_mut().zip(&part) {
            *t += p;
        }
    }
    Ok(total)
}
