//! The scalar gather-contract kernels: the forward and the kernel
//! gradient's partials, and the pass that adds the partials in group order.

use cubecl::prelude::*;

use super::tiling::*;

/// The forward gather-contract: one cube per `bm × bn` tile of the
/// `[rows = B·N_out, F]` output (`CUBE_POS = tile_m·tiles_n + tile_n`, so
/// neighbouring cubes share their gathered rows in cache). Where `biased`,
/// the accumulators start from the bias.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn contract_kernel<F: Float, I: Numeric>(
    x: &Tensor<F>,
    indices: &Tensor<I>,
    weights: &Tensor<F>,
    kernel: &Tensor<F>,
    bias: &Tensor<F>,
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
    #[comptime] bm: usize,
    #[comptime] bn: usize,
    #[comptime] bk: usize,
    #[comptime] tm: usize,
    #[comptime] tn: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    // Cubes past the last tile (the grid may be rounded up) redo the last
    // tile without writing it, so that no thread returns ahead of a barrier.
    let active = CUBE_POS < num_tiles;
    let tile = min(CUBE_POS, num_tiles - 1);
    let threads = comptime!((bm / tm) * (bn / tn));
    let tid = UNIT_POS as usize;
    let tx = tid % (bn / tn);
    let ty = tid / (bn / tn);
    let m0 = (tile / tiles_n) * bm;
    let n0 = (tile % tiles_n) * bn;
    let depth = k * channels;

    let mut a_s = Shared::<[f32]>::new_slice(comptime!(bk * (bm + 1)));
    let mut b_s = Shared::<[f32]>::new_slice(comptime!(bk * bn));
    let mut acc = Array::<f32>::new(comptime!(tm * tn));
    #[unroll]
    for jn in 0..tn {
        let col = n0 + tx + jn * (bn / tn);
        let mut start = 0.0f32;
        if biased && col < features {
            start = f32::cast_from(bias[col]);
        }
        #[unroll]
        for i in 0..tm {
            acc[i * tn + jn] = start;
        }
    }

    // A thread always stages column `a_t` of the A tile, in rows
    // `a_m + s·a_stride`: their batch and pixel are worked out once.
    let a_loads = comptime!(bm * bk / threads);
    let a_stride = comptime!(threads / bk);
    let a_t = tid % bk;
    let a_m = tid / bk;
    let mut x_base = Array::<usize>::new(a_loads);
    let mut e_base = Array::<usize>::new(a_loads);
    #[unroll]
    for s in 0..a_loads {
        let row = m0 + a_m + s * a_stride;
        let b = row / n_out;
        x_base[s] = b * n_in;
        e_base[s] = (row - b * n_out) * k;
    }
    let b_loads = comptime!(bk * bn / threads);
    let b_stride = comptime!(threads / bn);
    let b_n = tid % bn;
    let b_t = tid / bn;

    // The thread's reduction column `k0 + a_t` as (slot j, channel c), moved
    // forward by `bk` each step without a division.
    let mut j = a_t / channels;
    let mut c = a_t - j * channels;
    let mut k0 = 0;
    while k0 < depth {
        let col = k0 + a_t;
        #[unroll]
        for s in 0..a_loads {
            let m = a_m + s * a_stride;
            let mut v = 0.0f32;
            if col < depth && m0 + m < rows {
                let e = e_base[s] + j;
                let src = (x_base[s] + usize::cast_from(indices[e])) * channels + c;
                v = f32::cast_from(x[src]);
                if weighted {
                    v *= f32::cast_from(weights[e]);
                }
            }
            a_s[a_t * (bm + 1) + m] = v;
        }
        #[unroll]
        for s in 0..b_loads {
            let t = b_t + s * b_stride;
            let kr = k0 + t;
            let n = n0 + b_n;
            let mut v = 0.0f32;
            if kr < depth && n < features {
                v = f32::cast_from(kernel[kr * features + n]);
            }
            b_s[t * bn + b_n] = v;
        }
        sync_cube();
        tile_fma(&a_s, &b_s, &mut acc, tx, ty, bm, bn, bk, tm, tn, bn);
        sync_cube();
        k0 += bk;
        c += bk;
        while c >= channels {
            c -= channels;
            j += 1;
        }
    }

    store_tile(
        out, &acc, 0, m0, n0, rows, features, active, tx, ty, bm, bn, tm, tn,
    );
}

/// Pass 1 of the kernel gradient: cube `(group, tile)` reduces rows
/// `group·group_rows..` (at most `group_rows` of them, ascending) of
/// `gathered[row]ᵀ·dY[row]` into its own f32 partial `[k·C, F]` tile.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn contract_grad_kernel_partials<F: Float, I: Numeric>(
    x: &Tensor<F>,
    indices: &Tensor<I>,
    weights: &Tensor<F>,
    dy: &Tensor<F>,
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
    #[comptime] bm: usize,
    #[comptime] bn: usize,
    #[comptime] bk: usize,
    #[comptime] tm: usize,
    #[comptime] tn: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    // As in the forward: no early return ahead of the barriers.
    let active = CUBE_POS < num_cubes;
    let cube = min(CUBE_POS, num_cubes - 1);
    let threads = comptime!((bm / tm) * (bn / tn));
    let tid = UNIT_POS as usize;
    let tx = tid % (bn / tn);
    let ty = tid / (bn / tn);
    let group = cube / tiles;
    let tile = cube - group * tiles;
    let m0 = (tile / tiles_n) * bm;
    let n0 = (tile % tiles_n) * bn;
    let depth = k * channels;
    let r_begin = group * group_rows;
    let r_end = min(r_begin + group_rows, rows);

    let mut a_s = Shared::<[f32]>::new_slice(comptime!(bk * (bm + 1)));
    let mut b_s = Shared::<[f32]>::new_slice(comptime!(bk * bn));
    let mut acc = Array::<f32>::new(comptime!(tm * tn));
    #[unroll]
    for i in 0..comptime!(tm * tn) {
        acc[i] = 0.0f32;
    }

    // A thread always stages gradient row `a_m` (one (j, c) pair) of the A
    // tile, for the reduction rows `a_t + s·a_stride` of each step.
    let a_loads = comptime!(bm * bk / threads);
    let a_stride = comptime!(threads / bm);
    let a_m = tid % bm;
    let a_t = tid / bm;
    let col = m0 + a_m;
    let col_ok = col < depth;
    let j = col / channels;
    let c = col - j * channels;
    let b_loads = comptime!(bk * bn / threads);
    let b_stride = comptime!(threads / bn);
    let b_n = tid % bn;
    let b_t = tid / bn;

    // The staged rows `r0 + a_t + s·a_stride` as (batch, pixel), moved
    // forward by `bk` each step without a division.
    let mut row_b = Array::<usize>::new(a_loads);
    let mut row_p = Array::<usize>::new(a_loads);
    #[unroll]
    for s in 0..a_loads {
        let row = r_begin + a_t + s * a_stride;
        row_b[s] = row / n_out;
        row_p[s] = row - row_b[s] * n_out;
    }

    let mut r0 = r_begin;
    while r0 < r_end {
        #[unroll]
        for s in 0..a_loads {
            let t = a_t + s * a_stride;
            let row = r0 + t;
            let mut v = 0.0f32;
            if col_ok && row < r_end {
                let e = row_p[s] * k + j;
                let src = (row_b[s] * n_in + usize::cast_from(indices[e])) * channels + c;
                v = f32::cast_from(x[src]);
                if weighted {
                    v *= f32::cast_from(weights[e]);
                }
            }
            a_s[t * (bm + 1) + a_m] = v;
        }
        #[unroll]
        for s in 0..b_loads {
            let t = b_t + s * b_stride;
            let row = r0 + t;
            let n = n0 + b_n;
            let mut v = 0.0f32;
            if row < r_end && n < features {
                v = f32::cast_from(dy[row * features + n]);
            }
            b_s[t * bn + b_n] = v;
        }
        sync_cube();
        tile_fma(&a_s, &b_s, &mut acc, tx, ty, bm, bn, bk, tm, tn, bn);
        sync_cube();
        r0 += bk;
        #[unroll]
        for s in 0..a_loads {
            row_p[s] += bk;
            while row_p[s] >= n_out {
                row_p[s] -= n_out;
                row_b[s] += 1;
            }
        }
    }

    store_tile(
        partials,
        &acc,
        group * depth * features,
        m0,
        n0,
        depth,
        features,
        active,
        tx,
        ty,
        bm,
        bn,
        tm,
        tn,
    );
}

/// Pass 2 of the kernel gradient: each element adds its `groups` partials in
/// group order.
#[cube(launch_unchecked)]
pub(super) fn sum_partials_kernel<F: Float>(
    partials: &Tensor<f32>,
    out: &mut Tensor<F>,
    len: usize,
    groups: usize,
    #[define(F)] _dtype: ElemType,
) {
    let pos = ABSOLUTE_POS;
    if pos >= len {
        terminate!();
    }
    let mut sum = 0.0f32;
    for g in 0..groups {
        sum += partials[g * len + pos];
    }
    out[pos] = F::cast_from(sum);
}
