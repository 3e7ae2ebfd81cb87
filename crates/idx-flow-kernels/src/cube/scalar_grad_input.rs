//! The scalar input-gradient kernels of the gather-contract: per kernel
//! slot over the slot's rows, or one launch over every row and slot.

use cubecl::prelude::*;

use super::tiling::*;

/// Input gradient of the gather-contract as a tiled matrix product over the
/// input rows: `dX[(b,i), c] = Σ_{(j,f)} A[(b,i), (j,f)]·K[j·C + c, f]` with
/// `A[(b,i), (j,f)] = Σ_{p : idx[p,j] = i} w[p,j]·dY[b,p,f]`. The A tile is
/// read straight from `dY` through the reverse graph: a pixel's edges are
/// ordered by slot, and a thread's reduction column only moves forward in
/// `j`, so each staged row keeps a cursor into its edge list and never
/// searches. The B tile is `Kᵀ` per slot, loaded transposed (neighbouring
/// threads read neighbouring `f`) into a padded `[bk][bn + 1]` tile.
///
/// Every sum has a fixed order (the reduction in `(j, f)` steps, and within an
/// element the pixel's slot-`j` edges by ascending `p`): no atomics, bitwise
/// the same from run to run.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn contract_grad_input_kernel<F: Float, I: Numeric>(
    dy: &Tensor<F>,
    rev_offsets: &Tensor<I>,
    rev_edges: &Tensor<I>,
    weights: &Tensor<F>,
    kernel: &Tensor<F>,
    dx: &mut Tensor<F>,
    n_in: usize,
    n_out: usize,
    channels: usize,
    k: usize,
    features: usize,
    rows: usize,
    tiles_n: usize,
    num_tiles: usize,
    #[comptime] weighted: bool,
    #[comptime] bm: usize,
    #[comptime] bn: usize,
    #[comptime] bk: usize,
    #[comptime] tm: usize,
    #[comptime] tn: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    // As in the forward: no early return ahead of the barriers.
    let active = CUBE_POS < num_tiles;
    let tile = min(CUBE_POS, num_tiles - 1);
    let threads = comptime!((bm / tm) * (bn / tn));
    let tid = UNIT_POS as usize;
    let tx = tid % (bn / tn);
    let ty = tid / (bn / tn);
    let m0 = (tile / tiles_n) * bm;
    let n0 = (tile % tiles_n) * bn;
    let depth = k * features;

    let mut a_s = Shared::<[f32]>::new_slice(comptime!(bk * (bm + 1)));
    let mut b_s = Shared::<[f32]>::new_slice(comptime!(bk * (bn + 1)));
    let mut acc = Array::<f32>::new(comptime!(tm * tn));
    #[unroll]
    for i in 0..comptime!(tm * tn) {
        acc[i] = 0.0f32;
    }

    // A thread stages column `a_t` of the A tile in rows `a_m + s·a_stride`.
    // For each of those input rows it keeps the range of edges not yet
    // passed (`cur[s]..end[s]`) and the slot of the first (`k` when none is
    // left).
    let a_loads = comptime!(bm * bk / threads);
    let a_stride = comptime!(threads / bk);
    let a_t = tid % bk;
    let a_m = tid / bk;
    let mut dy_base = Array::<usize>::new(a_loads);
    let mut cur = Array::<usize>::new(a_loads);
    let mut end = Array::<usize>::new(a_loads);
    let mut next_slot = Array::<usize>::new(a_loads);
    #[unroll]
    for s in 0..a_loads {
        let row = m0 + a_m + s * a_stride;
        start_row_cursor(
            rev_offsets,
            rev_edges,
            &mut dy_base,
            &mut cur,
            &mut end,
            &mut next_slot,
            s,
            row,
            row < rows,
            n_in,
            n_out,
            k,
        );
    }
    // B is staged transposed: thread `b_t` of each group of `bk` reads
    // consecutive `f` of one kernel row.
    let b_loads = comptime!(bk * bn / threads);
    let b_stride = comptime!(threads / bk);
    let b_t = tid % bk;
    let b_n = tid / bk;

    // The thread's A column `k0 + a_t` as (slot j, feature f) and its B row
    // `k0 + b_t` as (jj, ff), moved forward by `bk` each step without a
    // division.
    let mut j = a_t / features;
    let mut f = a_t - j * features;
    let mut jj = b_t / features;
    let mut ff = b_t - jj * features;
    let mut k0 = 0;
    while k0 < depth {
        let col = k0 + a_t;
        #[unroll]
        for s in 0..a_loads {
            let m = a_m + s * a_stride;
            let mut v = 0.0f32;
            if col < depth {
                v = slot_sum(
                    dy,
                    rev_edges,
                    weights,
                    &dy_base,
                    &mut cur,
                    &end,
                    &mut next_slot,
                    s,
                    j,
                    f,
                    k,
                    features,
                    weighted,
                );
            }
            a_s[a_t * (bm + 1) + m] = v;
        }
        stage_kernel_transposed(
            kernel,
            &mut b_s,
            jj * channels,
            ff,
            k0 + b_t < depth,
            n0,
            channels,
            features,
            b_t,
            b_n,
            b_loads,
            b_stride,
            bn,
        );
        sync_cube();
        tile_fma(
            &a_s,
            &b_s,
            &mut acc,
            tx,
            ty,
            bm,
            bn,
            bk,
            tm,
            tn,
            comptime!(bn + 1),
        );
        sync_cube();
        k0 += bk;
        f += bk;
        while f >= features {
            f -= features;
            j += 1;
        }
        ff += bk;
        while ff >= features {
            ff -= features;
            jj += 1;
        }
    }

    store_tile(
        dx, &acc, 0, m0, n0, rows, channels, active, tx, ty, bm, bn, tm, tn,
    );
}

/// Input gradient of the gather-contract, one kernel slot `j` per launch:
/// a tiled product over the (batch, pixel) rows that slot reads,
/// `dX[b,i,c] += Σ_f A[(b,i), f]·K[j·C + c, f]` with
/// `A[(b,i), f] = Σ_{p : idx[p,j] = i} w[p,j]·dY[b,p,f]`. The rows come from
/// the packed slot lists (`rev_slots`, see `ReverseGraph::slot_rows`), so no
/// row of A is zero and the arithmetic is the forward's whatever the
/// graph's shape. A pixel appears once per slot, so each launch adds into a
/// row of `dx` (f32) at most once, and the launches run in slot order: every
/// sum has a fixed order, without atomics.
///
/// Launched with enough cubes for the longest possible list
/// (`B·min(N_in, N_out)` rows); cubes past this slot's list leave at once,
/// all their threads together.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn contract_grad_input_slot_kernel<F: Float, I: Numeric>(
    dy: &Tensor<F>,
    rev_offsets: &Tensor<I>,
    rev_edges: &Tensor<I>,
    rev_slots: &Tensor<I>,
    weights: &Tensor<F>,
    kernel: &Tensor<F>,
    dx: &mut Tensor<f32>,
    batch: usize,
    n_in: usize,
    n_out: usize,
    channels: usize,
    k: usize,
    features: usize,
    slot: usize,
    pixels_at: usize,
    starts_at: usize,
    tiles_n: usize,
    num_tiles: usize,
    #[comptime] weighted: bool,
    #[comptime] bm: usize,
    #[comptime] bn: usize,
    #[comptime] bk: usize,
    #[comptime] tm: usize,
    #[comptime] tn: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let list_begin = usize::cast_from(rev_slots[slot]);
    let list_len = usize::cast_from(rev_slots[slot + 1]) - list_begin;
    let rows = batch * list_len;
    let tile = CUBE_POS;
    let m0 = (tile / tiles_n) * bm;
    // Uniform for the whole cube: no thread waits at a barrier alone.
    if tile >= num_tiles || m0 >= rows {
        terminate!();
    }
    let threads = comptime!((bm / tm) * (bn / tn));
    let tid = UNIT_POS as usize;
    let tx = tid % (bn / tn);
    let ty = tid / (bn / tn);
    let n0 = (tile % tiles_n) * bn;

    let mut a_s = Shared::<[f32]>::new_slice(comptime!(bk * (bm + 1)));
    let mut b_s = Shared::<[f32]>::new_slice(comptime!(bk * (bn + 1)));
    let mut acc = Array::<f32>::new(comptime!(tm * tn));
    #[unroll]
    for i in 0..comptime!(tm * tn) {
        acc[i] = 0.0f32;
    }

    // A thread stages column `a_t` of the A tile in rows `a_m + s·a_stride`:
    // for each, the pixel's slot edges `first[s]..` (up to `end[s]`) and the
    // batch's dY rows.
    let a_loads = comptime!(bm * bk / threads);
    let a_stride = comptime!(threads / bk);
    let a_t = tid % bk;
    let a_m = tid / bk;
    let mut dy_base = Array::<usize>::new(a_loads);
    let mut first = Array::<usize>::new(a_loads);
    let mut end = Array::<usize>::new(a_loads);
    #[unroll]
    for s in 0..a_loads {
        let row = m0 + a_m + s * a_stride;
        dy_base[s] = 0;
        first[s] = 0;
        end[s] = 0;
        if row < rows {
            let b = row / list_len;
            let m = list_begin + row - b * list_len;
            let i = usize::cast_from(rev_slots[pixels_at + m]);
            dy_base[s] = b * n_out;
            first[s] = usize::cast_from(rev_slots[starts_at + m]);
            end[s] = usize::cast_from(rev_offsets[i + 1]);
        }
    }
    let b_loads = comptime!(bk * bn / threads);
    let b_stride = comptime!(threads / bk);
    let b_t = tid % bk;
    let b_n = tid / bk;
    let k_base = slot * channels;

    let mut f0 = 0;
    while f0 < features {
        let f = f0 + a_t;
        #[unroll]
        for s in 0..a_loads {
            let m = a_m + s * a_stride;
            let mut v = 0.0f32;
            if f < features {
                let mut q = first[s];
                while q < end[s] {
                    let e = usize::cast_from(rev_edges[q]);
                    let p = e / k;
                    if e - p * k == slot {
                        let mut g = f32::cast_from(dy[(dy_base[s] + p) * features + f]);
                        if weighted {
                            g *= f32::cast_from(weights[e]);
                        }
                        v += g;
                        q += 1;
                    } else {
                        q = end[s];
                    }
                }
            }
            a_s[a_t * (bm + 1) + m] = v;
        }
        stage_kernel_transposed(
            kernel,
            &mut b_s,
            k_base,
            f0 + b_t,
            f0 + b_t < features,
            n0,
            channels,
            features,
            b_t,
            b_n,
            b_loads,
            b_stride,
            bn,
        );
        sync_cube();
        tile_fma(
            &a_s,
            &b_s,
            &mut acc,
            tx,
            ty,
            bm,
            bn,
            bk,
            tm,
            tn,
            comptime!(bn + 1),
        );
        sync_cube();
        f0 += bk;
    }

    #[unroll]
    for i in 0..tm {
        let row = m0 + ty + i * (bm / tm);
        if row < rows {
            let b = row / list_len;
            let m = list_begin + row - b * list_len;
            let pixel = usize::cast_from(rev_slots[pixels_at + m]);
            let base = (b * n_in + pixel) * channels;
            #[unroll]
            for jn in 0..tn {
                let c = n0 + tx + jn * (bn / tn);
                if c < channels {
                    dx[base + c] += acc[i * tn + jn];
                }
            }
        }
    }
}
