//! The tensor-core gather-contract forward and kernel gradient.

use cubecl::prelude::*;

use super::fragments::*;

/// One cube per `4s × 4s` output tile (`CUBE_POS = tile_m·tiles_n + tile_n`),
/// `s` the fragment edge; the reduction is staged `2s` deep.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn contract_cmma_kernel<F: Float, H: Float, I: Numeric>(
    x: &Tensor<F>,
    indices: &Tensor<I>,
    weights: &Tensor<F>,
    kernel: &Tensor<F>,
    bias: &Tensor<F>,
    amax_x: &Tensor<F>,
    amax_w: &Tensor<F>,
    amax_k: &Tensor<F>,
    out: &mut Tensor<F>,
    n_in: usize,
    n_out: usize,
    channels: usize,
    k: usize,
    features: usize,
    rows: usize,
    tiles_n: usize,
    num_tiles: usize,
    #[comptime] weighted: bool,
    #[comptime] biased: bool,
    #[comptime] s: usize,
    #[comptime] split: bool,
    #[define(F, H, I)] _dtypes: [ElemType; 3],
) {
    let tile_edge = comptime!(4 * s);
    let depth_step = comptime!(2 * s);
    // Cubes past the last tile (the grid may be rounded up) redo the last
    // tile without writing it, so that no plane skips a barrier.
    let active = CUBE_POS < num_tiles;
    let tile = min(CUBE_POS, num_tiles - 1);
    let m0 = (tile / tiles_n) * tile_edge;
    let n0 = (tile % tiles_n) * tile_edge;
    let depth = k * channels;
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
    let mut a_scale = 1.0f32;
    let mut b_scale = 1.0f32;
    if split {
        let mut a_max = f32::cast_from(amax_x[0]);
        if weighted {
            a_max *= f32::cast_from(amax_w[0]);
        }
        a_scale = split_scale(a_max);
        b_scale = split_scale(f32::cast_from(amax_k[0]));
    }
    // Per tile row: its batch's first input pixel and its first edge.
    let mut x_base = Shared::<[u32]>::new_slice(comptime!(4 * s));
    let mut e_base = Shared::<[u32]>::new_slice(comptime!(4 * s));
    let mut r = tid;
    while r < tile_edge {
        let row = m0 + r;
        let b = row / n_out;
        x_base[r] = u32::cast_from(b * n_in);
        e_base[r] = u32::cast_from((row - b * n_out) * k);
        r += threads;
    }

    let c00 = zero_accumulator(s);
    let c01 = zero_accumulator(s);
    let c10 = zero_accumulator(s);
    let c11 = zero_accumulator(s);
    sync_cube();

    // A thread always stages column `a_t` of the operand tile, rows
    // `a_m, a_m + a_stride, …`; the column's (slot j, channel c) moves on by
    // the staged depth each step without a division.
    let a_t = tid % depth_step;
    let a_stride = threads / depth_step;
    let mut j = a_t / channels;
    let mut c = a_t - j * channels;
    let mut k0 = 0;
    while k0 < depth {
        let col = k0 + a_t;
        let mut m = tid / depth_step;
        while m < tile_edge {
            let mut v = 0.0f32;
            if col < depth && m0 + m < rows {
                v = gathered(
                    x, indices, weights, x_base[m], e_base[m], j, c, channels, weighted,
                );
            }
            put(v, a_scale, &mut a_s, &mut a_lo, m * depth_step + a_t, split);
            m += a_stride;
        }
        stage_rows(
            kernel, &mut b_s, &mut b_lo, b_scale, k0, depth, n0, features, s, split,
        );
        sync_cube();

        multiply_split(
            &a_s, &a_lo, &b_s, &b_lo, &c00, &c01, &c10, &c11, pm, pn, s, split,
        );
        sync_cube();
        k0 += depth_step;
        c += depth_step;
        while c >= channels {
            c -= channels;
            j += 1;
        }
    }

    // The plane's quarter into the f32 tile, then bias, cast and bounds.
    store_quarter(&mut c_s, &c00, &c01, &c10, &c11, pm, pn, s);
    sync_cube();
    let mut q = tid;
    while q < comptime!(4 * s * 4 * s) {
        let row = m0 + q / tile_edge;
        let col = n0 + q % tile_edge;
        if active && row < rows && col < features {
            let mut v = c_s[q];
            if split {
                v = v / a_scale / b_scale;
            }
            if biased {
                v += f32::cast_from(bias[col]);
            }
            out[row * features + col] = F::cast_from(v);
        }
        q += threads;
    }
}

/// Pass 1 of the kernel gradient on tensor cores: the cube's `4s × 4s` tile
/// of `[k·C, F]` as `Σ_rows gathered[row]ᵀ·dY[row]` over its group's rows,
/// `2s` rows per step: the `4s × 2s` operand (gathered rows, transposed) is
/// staged from `X` through the indices, the `2s × 4s` one from `dY`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn contract_grad_kernel_cmma_partials<F: Float, H: Float, I: Numeric>(
    x: &Tensor<F>,
    indices: &Tensor<I>,
    weights: &Tensor<F>,
    dy: &Tensor<F>,
    amax_x: &Tensor<F>,
    amax_w: &Tensor<F>,
    amax_dy: &Tensor<F>,
    partials: &mut Tensor<f32>,
    n_in: usize,
    n_out: usize,
    channels: usize,
    k: usize,
    features: usize,
    rows: usize,
    group_rows: usize,
    tiles_n: usize,
    tiles: usize,
    num_cubes: usize,
    #[comptime] weighted: bool,
    #[comptime] s: usize,
    #[comptime] split: bool,
    #[define(F, H, I)] _dtypes: [ElemType; 3],
) {
    let tile_edge = comptime!(4 * s);
    let depth_step = comptime!(2 * s);
    // As in the forward: no early return ahead of the barriers.
    let active = CUBE_POS < num_cubes;
    let cube = min(CUBE_POS, num_cubes - 1);
    let group = cube / tiles;
    let tile = cube - group * tiles;
    let m0 = (tile / tiles_n) * tile_edge;
    let n0 = (tile % tiles_n) * tile_edge;
    let depth = k * channels;
    let r_begin = group * group_rows;
    let r_end = min(r_begin + group_rows, rows);
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
    let mut a_scale = 1.0f32;
    let mut b_scale = 1.0f32;
    if split {
        let mut a_max = f32::cast_from(amax_x[0]);
        if weighted {
            a_max *= f32::cast_from(amax_w[0]);
        }
        a_scale = split_scale(a_max);
        b_scale = split_scale(f32::cast_from(amax_dy[0]));
    }
    // Per staged row: its batch's first input pixel and its first edge.
    let mut x_base = Shared::<[u32]>::new_slice(comptime!(2 * s));
    let mut e_base = Shared::<[u32]>::new_slice(comptime!(2 * s));

    let c00 = zero_accumulator(s);
    let c01 = zero_accumulator(s);
    let c10 = zero_accumulator(s);
    let c11 = zero_accumulator(s);

    // A thread always stages gradient row `a_m` (one (j, c) pair) of the
    // operand tile, for staged rows `a_t, a_t + a_stride, …`.
    let a_m = tid % tile_edge;
    let a_stride = threads / tile_edge;
    let col = m0 + a_m;
    let col_ok = col < depth;
    let j = col / channels;
    let c = col - j * channels;

    let mut r0 = r_begin;
    while r0 < r_end {
        let mut t = tid;
        while t < depth_step {
            let row = min(r0 + t, rows - 1);
            let b = row / n_out;
            x_base[t] = u32::cast_from(b * n_in);
            e_base[t] = u32::cast_from((row - b * n_out) * k);
            t += threads;
        }
        sync_cube();
        let mut t = tid / tile_edge;
        while t < depth_step {
            let mut v = 0.0f32;
            if col_ok && r0 + t < r_end {
                v = gathered(
                    x, indices, weights, x_base[t], e_base[t], j, c, channels, weighted,
                );
            }
            put(v, a_scale, &mut a_s, &mut a_lo, a_m * depth_step + t, split);
            t += a_stride;
        }
        stage_rows(
            dy, &mut b_s, &mut b_lo, b_scale, r0, r_end, n0, features, s, split,
        );
        sync_cube();

        multiply_split(
            &a_s, &a_lo, &b_s, &b_lo, &c00, &c01, &c10, &c11, pm, pn, s, split,
        );
        sync_cube();
        r0 += depth_step;
    }

    store_quarter(&mut c_s, &c00, &c01, &c10, &c11, pm, pn, s);
    sync_cube();
    let base = group * depth * features;
    let mut q = tid;
    while q < comptime!(4 * s * 4 * s) {
        let m = m0 + q / tile_edge;
        let n = n0 + q % tile_edge;
        if active && m < depth && n < features {
            let mut v = c_s[q];
            if split {
                v = v / a_scale / b_scale;
            }
            partials[base + m * features + n] = v;
        }
        q += threads;
    }
}
