//! Gather-sum (idx_flow's `SpatialUpsampling`) and its input gradient.

use rayon::prelude::*;

use crate::buffer::{tile_rows, unwritten, written, zeroed};
use crate::check::{GatherError, GatherSizes, product};

/// `Y` `[B, N_out, C]`: `Y[b,p] = Σ_j w[p,j]·X[b, idx[p,j]]` from `x`
/// `[B, N_in, C]`, `idx` and `w` `[N_out, k]` (idx_flow's `SpatialUpsampling`).
///
/// # Errors
/// A slice whose length does not fit `s`, or an index outside `0..N_in`.
pub fn sum_forward(
    x: &[f32],
    idx: &[i64],
    w: &[f32],
    s: GatherSizes,
) -> Result<Vec<f32>, GatherError> {
    s.expect_len("x", x, &[s.batch, s.n_in, s.channels], "[B, N_in, C]")?;
    s.check_indices(idx)?;
    s.check_weights(Some(w))?;
    if product(&[s.batch, s.n_out, s.channels], &s)? == 0 {
        return Ok(Vec::new());
    }
    let (c, k) = (s.channels, s.k);
    let rows = s.batch * s.n_out;
    let tile = tile_rows(c);
    let mut y = unwritten(rows * c);
    y.par_chunks_mut(tile * c)
        .enumerate()
        .for_each(|(t, y_tile)| {
            for (r, dst) in y_tile.chunks_mut(c).enumerate() {
                let dst = zeroed(dst);
                let row = t * tile + r;
                let (b, p) = (row / s.n_out, row % s.n_out);
                for j in 0..k {
                    let e = p * k + j;
                    let src = &x[(b * s.n_in + idx[e] as usize) * c..][..c];
                    let we = w[e];
                    for (d, v) in dst.iter_mut().zip(src) {
                        *d += we * v;
                    }
                }
            }
        });
    // SAFETY: every row was zeroed, then summed into.
    Ok(unsafe { written(y) })
}

/// The input gradient `dX` `[B, N_in, C]` of [`sum_forward`]:
/// `dX[b,i] = Σ_{(p,j) → i} w[p,j]·dY[b, p]`, over the pixel's edges in the
/// [`ReverseGraph`](crate::ReverseGraph)'s order, from `dy` `[B, N_out, C]`.
///
/// # Errors
/// A slice whose length does not fit `s`, or a reverse graph that is not one
/// of an `[N_out, k]` graph on `N_in` input pixels.
pub fn sum_grad_input(
    dy: &[f32],
    offsets: &[i64],
    edges: &[i64],
    w: &[f32],
    s: GatherSizes,
) -> Result<Vec<f32>, GatherError> {
    s.expect_len("dy", dy, &[s.batch, s.n_out, s.channels], "[B, N_out, C]")?;
    s.check_reverse(offsets, edges)?;
    s.check_weights(Some(w))?;
    if product(&[s.batch, s.n_in, s.channels], &s)? == 0 {
        return Ok(Vec::new());
    }
    let (c, k) = (s.channels, s.k);
    let rows = s.batch * s.n_in;
    let tile = tile_rows(c);
    let mut dx = unwritten(rows * c);
    dx.par_chunks_mut(tile * c)
        .enumerate()
        .for_each(|(t, dx_tile)| {
            for (r, dst) in dx_tile.chunks_mut(c).enumerate() {
                let dst = zeroed(dst);
                let row = t * tile + r;
                let (b, i) = (row / s.n_in, row % s.n_in);
                for &e in &edges[offsets[i] as usize..offsets[i + 1] as usize] {
                    let e = e as usize;
                    let src = &dy[(b * s.n_out + e / k) * c..][..c];
                    let we = w[e];
                    for (d, v) in dst.iter_mut().zip(src) {
                        *d += we * v;
                    }
                }
            }
        });
    // SAFETY: every row was zeroed, then summed into.
    Ok(unsafe { written(dx) })
}
