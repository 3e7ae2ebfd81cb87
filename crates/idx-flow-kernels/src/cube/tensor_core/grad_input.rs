//! The tensor-core input gradients of the gather-contract: per kernel slot,
//! or one launch over every row and slot.

use cubecl::prelude::*;

use super::super::tiling::*;
use super::fragments::*;

/// The input gradient's product for one kernel slot on tensor cores:
/// `dX[b,i,c] += Σ_f A[(b,i), f]·K[j·C + c, f]` with
/// `A[(b,i), f] = Σ_{p : idx[p,j] = i} w[p,j]·dY[b,p,f]`, over the rows of the
/// slot's packed list (as the scalar per-slot kernel in `scalar_grad_input.rs`). The
/// cube's `4s` list rows are looked up once into shared memory; each step
/// stages `2s` features of A (summed over the row's slot edges) and of `Kᵀ`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn contract_grad_input_slot_cmma_kernel<F: Float, H: Float, I: Numeric>(
    dy: &Tensor<F>,
    rev_offsets: &Tensor<I>,
    rev_edges: &Tensor<I>,
    rev_slots: &Tensor<I>,
    weights: &Tensor<F>,
    kernel: &Tensor<F>,
    amax_dy: &Tensor<F>,
    amax_w: &Tensor<F>,
    amax_k: &Tensor<F>,
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
    #[comptime] s: usize,
    #[comptime] split: bool,
    #[define(F, H, I)] _dtypes: [ElemType; 3],
) {
    let tile_edge = comptime!(4 * s);
    let depth_step = comptime!(2 * s);
    let list_begin = usize::cast_from(rev_slots[slot]);
    let list_len = usize::cast_from(rev_slots[slot + 1]) - list_begin;
    let rows = batch * list_len;
    let tile = CUBE_POS;
    let m0 = (tile / tiles_n) * tile_edge;
    // Uniform for the whole cube: no plane waits at a barrier alone.
    if tile >= num_tiles || m0 >= rows {
        terminate!();
    }
    let n0 = (tile % tiles_n) * tile_edge;
    let threads = CUBE_DIM as usize;
    let tid = UNIT_POS as usize;
    let plane = UNIT_POS_Y as usize;
    let pm = plane / 2;
    let pn = plane % 2;

    let mut a_s = Shared::<[H]>::new_slice(comptime!(4 * s * 2 * s));
    let mut b_s = Shared::<[H]>::new_slice(comptime!(2 * s * 4 * s));
    let mut a_lo = Shared::<[H]>::new_slice(comptime!(low_len(4 * s * 2 * s, split)));
    let mut b_lo = Shared::<[H]>::new_slice(comptime!(low_len(2 * s * 4 * s, split)));
    let mut c_s = Shared::<[f32]>::new_slice(comptime!(4 * s * 4 * s));
    // Per tile row: the batch's first dY row, the pixel's first slot edge
    // and the end of its edges, and its dX row (all 0 past the list).
    let mut dy_base = Shared::<[u32]>::new_slice(comptime!(4 * s));
    let mut first = Shared::<[u32]>::new_slice(comptime!(4 * s));
    let mut end = Shared::<[u32]>::new_slice(comptime!(4 * s));
    let mut dx_row = Shared::<[u32]>::new_slice(comptime!(4 * s));
    // The split path scales each row of A (a sum of `dY` rows over the
    // row's slot edges) by its own bound: max|dY|·max|w| times its edges.
    let mut row_scale = Shared::<[f32]>::new_slice(comptime!(low_len(4 * s, split)));
    let mut b_scale = 1.0f32;
    let mut a_max = 1.0f32;
    if split {
        b_scale = split_scale(f32::cast_from(amax_k[0]));
        a_max = f32::cast_from(amax_dy[0]);
        if weighted {
            a_max *= f32::cast_from(amax_w[0]);
        }
    }
    let mut r = tid;
    while r < tile_edge {
        let row = m0 + r;
        let mut base = 0usize;
        let mut f0 = 0usize;
        let mut e0 = 0usize;
        let mut out_row = 0usize;
        if row < rows {
            let b = row / list_len;
            let m = list_begin + row - b * list_len;
            let i = usize::cast_from(rev_slots[pixels_at + m]);
            base = b * n_out;
            f0 = usize::cast_from(rev_slots[starts_at + m]);
            e0 = usize::cast_from(rev_offsets[i + 1]);
            out_row = b * n_in + i;
        }
        dy_base[r] = u32::cast_from(base);
        first[r] = u32::cast_from(f0);
        end[r] = u32::cast_from(e0);
        dx_row[r] = u32::cast_from(out_row);
        if split {
            let mut edges = 0u32;
            let mut q = f0;
            while q < e0 {
                let e = usize::cast_from(rev_edges[q]);
                if e % k == slot {
                    edges += 1;
                    q += 1;
                } else {
                    q = e0;
                }
            }
            row_scale[r] = split_scale(a_max * f32::cast_from(max(edges, 1u32)));
        }
        r += threads;
    }

    let c00 = zero_accumulator(s);
    let c01 = zero_accumulator(s);
    let c10 = zero_accumulator(s);
    let c11 = zero_accumulator(s);
    sync_cube();

    // A thread stages feature column `a_t` of A for rows `a_m, a_m +
    // a_stride, …`, and kernel entries `q, q + threads, …` of `Kᵀ`.
    let a_t = tid % depth_step;
    let a_stride = threads / depth_step;
    let k_base = slot * channels;
    let mut f0 = 0;
    while f0 < features {
        let f = f0 + a_t;
        let mut m = tid / depth_step;
        while m < tile_edge {
            let mut v = 0.0f32;
            if f < features {
                let base = usize::cast_from(dy_base[m]);
                let e_end = usize::cast_from(end[m]);
                let mut q = usize::cast_from(first[m]);
                while q < e_end {
                    let e = usize::cast_from(rev_edges[q]);
                    let p = e / k;
                    if e - p * k == slot {
                        let mut g = f32::cast_from(dy[(base + p) * features + f]);
                        if weighted {
                            g *= f32::cast_from(weights[e]);
                        }
                        v += g;
                        q += 1;
                    } else {
                        q = e_end;
                    }
                }
            }
            let mut scale = 1.0f32;
            if split {
                scale = row_scale[m];
            }
            put(v, scale, &mut a_s, &mut a_lo, m * depth_step + a_t, split);
            m += a_stride;
        }
        let mut q = tid;
        while q < comptime!(2 * s * 4 * s) {
            let fr = f0 + q / tile_edge;
            let c = n0 + q % tile_edge;
            let mut v = 0.0f32;
            if fr < features && c < channels {
                v = f32::cast_from(kernel[(k_base + c) * features + fr]);
            }
            put(v, b_scale, &mut b_s, &mut b_lo, q, split);
            q += threads;
        }
        sync_cube();

        multiply_split(
            &a_s, &a_lo, &b_s, &b_lo, &c00, &c01, &c10, &c11, pm, pn, s, split,
        );
        sync_cube();
        f0 += depth_step;
    }

    store_quarter(&mut c_s, &c00, &c01, &c10, &c11, pm, pn, s);
    sync_cube();
    let mut q = tid;
    while q < comptime!(4 * s * 4 * s) {
        let r = q / tile_edge;
        let c = n0 + q % tile_edge;
        if m0 + r < rows && c < channels {
            let at = usize::cast_from(dx_row[r]) * channels + c;
            let mut v = c_s[q];
            if split {
                v = v / row_scale[r] / b_scale;
            }
            dx[at] += v;
        }
        q += threads;
    }
}

/// The input gradient on tensor cores for graphs without slot lists:
/// `dX[(b,i), c] = Σ_(j,f) A[(b,i), (j,f)]·K[j·C + c, f]` with
/// `A[(b,i), (j,f)] = Σ_{p : idx[p,j] = i} w[p,j]·dY[b,p,f]`, the `k·F`
/// reduction staged `2s` deep. As in the scalar `contract_grad_input_kernel`,
/// a pixel's reverse edges are ordered by slot and a thread's column only
/// moves forward in `j`, so each of its staged rows keeps a cursor into its
/// edge list. The split path scales a row of A by its bound: max|dY|·max|w|
/// times the pixel's edge count.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn contract_grad_input_cmma_kernel<F: Float, H: Float, I: Numeric>(
    dy: &Tensor<F>,
    rev_offsets: &Tensor<I>,
    rev_edges: &Tensor<I>,
    weights: &Tensor<F>,
    kernel: &Tensor<F>,
    amax_dy: &Tensor<F>,
    amax_w: &Tensor<F>,
    amax_k: &Tensor<F>,
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
    #[comptime] s: usize,
    #[comptime] loads: usize,
    #[comptime] split: bool,
    #[define(F, H, I)] _dtypes: [ElemType; 3],
) {
    let tile_edge = comptime!(4 * s);
    let depth_step = comptime!(2 * s);
    // As in the forward: no early return ahead of the barriers.
    let active = CUBE_POS < num_tiles;
    let tile = min(CUBE_POS, num_tiles - 1);
    let m0 = (tile / tiles_n) * tile_edge;
    let n0 = (tile % tiles_n) * tile_edge;
    let depth = k * features;
    let threads = CUBE_DIM as usize;
    let tid = UNIT_POS as usize;
    let plane = UNIT_POS_Y as usize;
    let pm = plane / 2;
    let pn = plane % 2;

    let mut a_s = Shared::<[H]>::new_slice(comptime!(4 * s * 2 * s));
    let mut b_s = Shared::<[H]>::new_slice(comptime!(2 * s * 4 * s));
    let mut a_lo = Shared::<[H]>::new_slice(comptime!(low_len(4 * s * 2 * s, split)));
    let mut b_lo = Shared::<[H]>::new_slice(comptime!(low_len(2 * s * 4 * s, split)));
    let mut c_s = Shared::<[f32]>::new_slice(comptime!(4 * s * 4 * s));
    let mut row_scale = Shared::<[f32]>::new_slice(comptime!(low_len(4 * s, split)));
    let mut b_scale = 1.0f32;
    if split {
        b_scale = split_scale(f32::cast_from(amax_k[0]));
        let mut a_max = f32::cast_from(amax_dy[0]);
        if weighted {
            a_max *= f32::cast_from(amax_w[0]);
        }
        let mut r = tid;
        while r < tile_edge {
            let row = min(m0 + r, rows - 1);
            let i = row % n_in;
            let edges = usize::cast_from(rev_offsets[i + 1]) - usize::cast_from(rev_offsets[i]);
            row_scale[r] = split_scale(a_max * f32::cast_from(max(edges, 1)));
            r += threads;
        }
    }

    let c00 = zero_accumulator(s);
    let c01 = zero_accumulator(s);
    let c10 = zero_accumulator(s);
    let c11 = zero_accumulator(s);

    // A thread stages column `a_t` of the A tile in rows `a_m + l·a_stride`,
    // keeping for each the range of its edges not yet passed
    // (`cur[l]..end[l]`) and the slot of the first (`k` when none is left).
    let a_t = tid % depth_step;
    let a_m = tid / depth_step;
    let a_stride = threads / depth_step;
    let mut dy_base = Array::<usize>::new(loads);
    let mut cur = Array::<usize>::new(loads);
    let mut end = Array::<usize>::new(loads);
    let mut next_slot = Array::<usize>::new(loads);
    #[unroll]
    for l in 0..loads {
        let m = a_m + l * a_stride;
        let row = m0 + m;
        start_row_cursor(
            rev_offsets,
            rev_edges,
            &mut dy_base,
            &mut cur,
            &mut end,
            &mut next_slot,
            l,
            row,
            m < tile_edge && row < rows,
            n_in,
            n_out,
            k,
        );
    }
    sync_cube();

    // The thread's A column `k0 + a_t` as (slot j, feature f), moved forward
    // by `2s` each step without a division.
    let mut j = a_t / features;
    let mut f = a_t - j * features;
    let mut k0 = 0;
    while k0 < depth {
        let col = k0 + a_t;
        #[unroll]
        for l in 0..loads {
            let m = a_m + l * a_stride;
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
                    l,
                    j,
                    f,
                    k,
                    features,
                    weighted,
                );
            }
            if m < tile_edge {
                let mut scale = 1.0f32;
                if split {
                    scale = row_scale[m];
                }
                put(v, scale, &mut a_s, &mut a_lo, m * depth_step + a_t, split);
            }
        }
        // B = Kᵀ per slot: row (jj, ff) of the reduction, column c.
        let mut q = tid;
        while q < comptime!(2 * s * 4 * s) {
            let kr = k0 + q / tile_edge;
            let c = n0 + q % tile_edge;
            let mut v = 0.0f32;
            if kr < depth && c < channels {
                let jj = kr / features;
                let ff = kr - jj * features;
                v = f32::cast_from(kernel[(jj * channels + c) * features + ff]);
            }
            put(v, b_scale, &mut b_s, &mut b_lo, q, split);
            q += threads;
        }
        sync_cube();

        multiply_split(
            &a_s, &a_lo, &b_s, &b_lo, &c00, &c01, &c10, &c11, pm, pn, s, split,
        );
        sync_cube();
        k0 += depth_step;
        f += depth_step;
        while f >= features {
            f -= features;
            j += 1;
        }
    }

    store_quarter(&mut c_s, &c00, &c01, &c10, &c11, pm, pn, s);
    sync_cube();
    let mut q = tid;
    while q < comptime!(4 * s * 4 * s) {
        let r = q / tile_edge;
        let row = m0 + r;
        let c = n0 + q % tile_edge;
        if active && row < rows && c < channels {
            let mut v = c_s[q];
            if split {
                v = v / row_scale[r] / b_scale;
            }
            dx[row * channels + c] = F::cast_from(v);
        }
        q += threads;
    }
}
