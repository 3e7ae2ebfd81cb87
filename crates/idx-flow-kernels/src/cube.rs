//! The fused kernels on burn's CubeCL backend: one kernel source for wgpu,
//! vulkan and cuda.
//!
//! - The gather-contract forward is a tiled gather-GEMM. Each cube owns a
//!   `bm × bn` tile of the `[B·N_out, F]` output and walks the `k·C`
//!   reduction in steps of `bk`: the `bm × bk` operand tile is read straight
//!   from `X` through the indices into shared memory (a row's `C` channels
//!   are contiguous, so neighbouring threads read neighbouring floats), the
//!   `bk × bn` kernel tile beside it, and each thread accumulates a `tm × tn`
//!   block in registers. The gathered `[B, N_out, k, C]` tensor never exists.
//! - The kernel gradient is the same tiled product with the rows as the
//!   reduction. Rows are cut into groups whose size depends only on the
//!   problem's sizes; each cube reduces one group into its own f32 partial,
//!   and a second pass adds the partials in group order: no atomics, so the
//!   result is bitwise the same from run to run.
//! - The input gradient of the gather-contract is the same tiled product,
//!   one kernel slot per launch, over the input pixels that slot reads (the
//!   graph's packed slot lists): its A tile is summed from `dY` through the
//!   reverse graph, its B tile is the slot's kernel transposed, and each
//!   launch adds into an f32 accumulator. Graphs whose slots read most input
//!   pixels (same resolution, upsampling) carry no slot lists, and so does a
//!   layer moved between devices: there one launch covers every input row
//!   and slot, its A summed through the whole reverse graph (rows with no
//!   edge in a slot are zero).
//! - The gather-sum's input gradient gives each thread its own elements, which
//!   it sums over the pixel's reverse edges in order (again no atomics).
//! - The gather-sum is one thread per output element.
//!
//! Every sum is accumulated in f32 whatever the tensors' float dtype (f16 and
//! bf16 are read and written in their own dtype), and the index tensors are
//! read in the backend's int dtype.

use burn::backend::cubecl::dtype_to_storage_type;
use burn::tensor::{DType, Shape};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::{cast, into_contiguous};
use burn_cubecl::ops::numeric::{empty_device_contiguous_dtype, zeros_client};
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeDim, calculate_cube_count_elemwise};

use super::GraphKernels;

/// Cubes the kernel gradient aims to keep busy: its row groups are multiplied
/// until the tiles of `[k·C, F]` times the groups reach about this many.
const GRAD_TARGET_CUBES: usize = 1024;
/// At most this many f32 values of kernel-gradient partials (64 MiB).
const GRAD_PARTIAL_FLOATS: usize = 1 << 24;

// The tile sizes of the gather-GEMM kernels (a cube computes a `bm × bn`
// output tile with `(bm / tm)·(bn / tn)` threads, each a `tm × tn` register
// block, stepping through the reduction `bk` at a time); chosen by shape below.
use crate::CubeTiling as Tiling;

impl Tiling {
    /// Narrower column tiles for few output features, so that small `F`
    /// (5, 16, 32) does not leave most of a 64-wide tile idle. Every choice
    /// has 256 threads, a multiple of `bk`, `bm` and `bn`.
    ///
    /// [`KernelOptions::tiling`](crate::KernelOptions::tiling) replaces the
    /// choice for every kernel where the device of `on` can launch it.
    fn for_columns(n: usize, on: &CubeTensor) -> Self {
        if let Some(tiling) = Self::from_options(on) {
            return tiling;
        }
        if n > 32 {
            Self {
                bm: 64,
                bn: 64,
                bk: 16,
                tm: 4,
                tn: 4,
            }
        } else if n > 16 {
            Self {
                bm: 128,
                bn: 32,
                bk: 16,
                tm: 8,
                tn: 2,
            }
        } else {
            Self {
                bm: 128,
                bn: 16,
                bk: 16,
                tm: 8,
                tn: 1,
            }
        }
    }

    /// The forward's tiling: for more than 32 features, 8×8 register blocks
    /// on a 128×64 tile (128 threads). Measured on an H100 (Vulkan) they make
    /// the forward 14-22% faster than 4×4 blocks, while the two gradient
    /// kernels, which stage more per step, are slower with them.
    fn forward(n: usize, on: &CubeTensor) -> Self {
        match Self::from_options(on) {
            Some(tiling) => tiling,
            None if n > 32 => Self {
                bm: 128,
                bn: 64,
                bk: 16,
                tm: 8,
                tn: 8,
            },
            None => Self::for_columns(n, on),
        }
    }

    /// The tiling of the [`options`](crate::options), where the device of `on`
    /// can launch it. A tiling that passes [`Tiling::is_valid`] may still be
    /// too large for a device (Mesa's software Vulkan has 32 KiB of shared
    /// memory, less than `128,128,32,8,8` asks): it is then ignored, with a
    /// warning once, rather than failing at the launch.
    fn from_options(on: &CubeTensor) -> Option<Self> {
        let tiling = crate::options().tiling?;
        let hardware = &on.client.properties().hardware;
        let (max_shared, max_threads) = (
            hardware.max_shared_memory_size,
            hardware.max_units_per_cube as usize,
        );
        if tiling.fits(max_shared, max_threads) {
            return Some(tiling);
        }
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            let Self { bm, bn, bk, tm, tn } = tiling;
            eprintln!(
                "idx-flow: the CubeCL tiling {bm},{bn},{bk},{tm},{tn} is ignored on this device: \
                 it needs {} bytes of shared memory and {} threads a cube, the device has \
                 {max_shared} bytes and {max_threads} threads",
                tiling.shared_bytes(),
                tiling.threads()
            );
        });
        None
    }
}

/// `acc[i·tn + jn] += Σ_t A[t][ty + i·bm/tm]·B[t][tx + jn·bn/tn]` over one
/// staged `bk` step. `a_s` is the A tile stored `[bk][bm + 1]` (the padding
/// keeps the transposed stores free of bank conflicts), `b_s` the B tile
/// `[bk][b_row]` with `b_row` = `bn`, or `bn + 1` where it too is stored
/// transposed. Rows and columns of a thread are strided by the thread grid,
/// so a warp reads consecutive shared addresses and writes consecutive
/// output columns.
#[cube]
#[allow(clippy::too_many_arguments)]
fn tile_fma(
    a_s: &Shared<[f32]>,
    b_s: &Shared<[f32]>,
    acc: &mut Array<f32>,
    tx: usize,
    ty: usize,
    #[comptime] bm: usize,
    #[comptime] bn: usize,
    #[comptime] bk: usize,
    #[comptime] tm: usize,
    #[comptime] tn: usize,
    #[comptime] b_row: usize,
) {
    let mut a_reg = Array::<f32>::new(tm);
    let mut b_reg = Array::<f32>::new(tn);
    #[unroll]
    for t in 0..bk {
        #[unroll]
        for i in 0..tm {
            a_reg[i] = a_s[t * (bm + 1) + ty + i * (bm / tm)];
        }
        #[unroll]
        for jn in 0..tn {
            b_reg[jn] = b_s[t * b_row + tx + jn * (bn / tn)];
        }
        #[unroll]
        for i in 0..tm {
            #[unroll]
            for jn in 0..tn {
                acc[i * tn + jn] += a_reg[i] * b_reg[jn];
            }
        }
    }
}

/// Writes a thread's `tm × tn` accumulator block of the `bm × bn` tile at
/// `(m0, n0)` into the row-major `[rows, cols]` matrix that starts at `base`
/// in `out` (skipping the block when the cube is not `active`, and elements
/// outside the matrix).
#[cube]
#[allow(clippy::too_many_arguments)]
fn store_tile<F: Float>(
    out: &mut Tensor<F>,
    acc: &Array<f32>,
    base: usize,
    m0: usize,
    n0: usize,
    rows: usize,
    cols: usize,
    active: bool,
    tx: usize,
    ty: usize,
    #[comptime] bm: usize,
    #[comptime] bn: usize,
    #[comptime] tm: usize,
    #[comptime] tn: usize,
) {
    #[unroll]
    for i in 0..tm {
        let row = m0 + ty + i * (bm / tm);
        #[unroll]
        for jn in 0..tn {
            let col = n0 + tx + jn * (bn / tn);
            if active && row < rows && col < cols {
                out[base + row * cols + col] = F::cast_from(acc[i * tn + jn]);
            }
        }
    }
}

/// Stages the B tile of an input gradient, `Kᵀ` of one slot: element
/// `(t, n)` is `K[k_row0 + n0 + n, f]` for the thread's reduction row `t =
/// b_t` (feature `f`, present when `valid`) and channels `n = b_n +
/// s·b_stride`, stored transposed `[bk][bn + 1]`. Neighbouring threads read
/// neighbouring `f` of one kernel row.
#[cube]
#[allow(clippy::too_many_arguments)]
fn stage_kernel_transposed<F: Float>(
    kernel: &Tensor<F>,
    b_s: &mut Shared<[f32]>,
    k_row0: usize,
    f: usize,
    valid: bool,
    n0: usize,
    channels: usize,
    features: usize,
    b_t: usize,
    b_n: usize,
    #[comptime] b_loads: usize,
    #[comptime] b_stride: usize,
    #[comptime] bn: usize,
) {
    #[unroll]
    for s in 0..b_loads {
        let n = b_n + s * b_stride;
        let c = n0 + n;
        let mut v = 0.0f32;
        if valid && c < channels {
            v = f32::cast_from(kernel[(k_row0 + c) * features + f]);
        }
        b_s[b_t * (bn + 1) + n] = v;
    }
}

/// The forward gather-contract: one cube per `bm × bn` tile of the
/// `[rows = B·N_out, F]` output (`CUBE_POS = tile_m·tiles_n + tile_n`, so
/// neighbouring cubes share their gathered rows in cache). Where `biased`,
/// the accumulators start from the bias.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn contract_kernel<F: Float, I: Numeric>(
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
fn contract_grad_kernel_partials<F: Float, I: Numeric>(
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
fn sum_partials_kernel<F: Float>(
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
fn contract_grad_input_kernel<F: Float, I: Numeric>(
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

/// Points cursor `l` of a thread's input-gradient rows at row `row` of
/// `[B·N_in]` (at nothing where `valid` is false): its batch's first `dY`
/// row, the range of the pixel's reverse edges not yet passed
/// (`cur[l]..end[l]`) and the slot of the first (`k` when none is left).
/// See [`slot_sum`].
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn start_row_cursor<I: Numeric>(
    rev_offsets: &Tensor<I>,
    rev_edges: &Tensor<I>,
    dy_base: &mut Array<usize>,
    cur: &mut Array<usize>,
    end: &mut Array<usize>,
    next_slot: &mut Array<usize>,
    l: usize,
    row: usize,
    valid: bool,
    n_in: usize,
    n_out: usize,
    k: usize,
) {
    let b = row / n_in;
    dy_base[l] = b * n_out;
    cur[l] = 0;
    end[l] = 0;
    next_slot[l] = k;
    if valid {
        let i = row - b * n_in;
        cur[l] = usize::cast_from(rev_offsets[i]);
        end[l] = usize::cast_from(rev_offsets[i + 1]);
        if cur[l] < end[l] {
            let e = usize::cast_from(rev_edges[cur[l]]);
            next_slot[l] = e - (e / k) * k;
        }
    }
}

/// Entry `(j, f)` of the input gradient's A for the row under cursor `l`:
/// `Σ w[p,j]·dY[b,p,f]` over the pixel's slot-`j` edges, in edge order. A
/// pixel's reverse edges are ordered by slot and a thread's `j` only moves
/// forward, so the cursor passes earlier slots' edges once and never
/// searches.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn slot_sum<F: Float, I: Numeric>(
    dy: &Tensor<F>,
    rev_edges: &Tensor<I>,
    weights: &Tensor<F>,
    dy_base: &Array<usize>,
    cur: &mut Array<usize>,
    end: &Array<usize>,
    next_slot: &mut Array<usize>,
    l: usize,
    j: usize,
    f: usize,
    k: usize,
    features: usize,
    #[comptime] weighted: bool,
) -> f32 {
    let mut v = 0.0f32;
    while next_slot[l] < j {
        cur[l] += 1;
        next_slot[l] = k;
        if cur[l] < end[l] {
            let e = usize::cast_from(rev_edges[cur[l]]);
            next_slot[l] = e - (e / k) * k;
        }
    }
    if next_slot[l] == j {
        let mut q = cur[l];
        let mut more = true;
        while more {
            let e = usize::cast_from(rev_edges[q]);
            let p = e / k;
            let mut g = f32::cast_from(dy[(dy_base[l] + p) * features + f]);
            if weighted {
                g *= f32::cast_from(weights[e]);
            }
            v += g;
            q += 1;
            more = false;
            if q < end[l] {
                let e2 = usize::cast_from(rev_edges[q]);
                more = e2 - (e2 / k) * k == j;
            }
        }
    }
    v
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
fn contract_grad_input_slot_kernel<F: Float, I: Numeric>(
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

/// The gather-sum: one thread per output element `(b·N_out + p, c)`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn sum_kernel<F: Float, I: Numeric>(
    x: &Tensor<F>,
    indices: &Tensor<I>,
    weights: &Tensor<F>,
    out: &mut Tensor<F>,
    n_in: usize,
    n_out: usize,
    channels: usize,
    k: usize,
    total: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let pos = ABSOLUTE_POS;
    if pos >= total {
        terminate!();
    }
    let row = pos / channels;
    let c = pos - row * channels;
    let b = row / n_out;
    let e0 = (row - b * n_out) * k;
    let x_base = b * n_in;
    let mut sum = 0.0f32;
    for j in 0..k {
        let e = e0 + j;
        let src = (x_base + usize::cast_from(indices[e])) * channels + c;
        sum += f32::cast_from(weights[e]) * f32::cast_from(x[src]);
    }
    out[pos] = F::cast_from(sum);
}

/// Input gradient of the gather-sum: one thread per input element
/// `(b·N_in + i, c)`, over the pixel's reverse edges in ascending order.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn sum_grad_input_kernel<F: Float, I: Numeric>(
    dy: &Tensor<F>,
    rev_offsets: &Tensor<I>,
    rev_edges: &Tensor<I>,
    weights: &Tensor<F>,
    dx: &mut Tensor<F>,
    n_in: usize,
    n_out: usize,
    channels: usize,
    k: usize,
    total: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let pos = ABSOLUTE_POS;
    if pos >= total {
        terminate!();
    }
    let row = pos / channels;
    let c = pos - row * channels;
    let b = row / n_in;
    let i = row - b * n_in;
    let dy_base = b * n_out;
    let e_end = usize::cast_from(rev_offsets[i + 1]);
    let mut q = usize::cast_from(rev_offsets[i]);
    let mut sum = 0.0f32;
    while q < e_end {
        let e = usize::cast_from(rev_edges[q]);
        let p = e / k;
        sum += f32::cast_from(weights[e]) * f32::cast_from(dy[(dy_base + p) * channels + c]);
        q += 1;
    }
    dx[pos] = F::cast_from(sum);
}

/// A contiguous tensor in `dtype` (cast only when it differs).
fn prepare(t: CubeTensor, dtype: DType) -> CubeTensor {
    let t = into_contiguous(t);
    if t.dtype == dtype { t } else { cast(t, dtype) }
}

fn dims<const D: usize>(t: &CubeTensor) -> [usize; D] {
    t.meta.shape().dims::<D>()
}

/// An uninitialised contiguous result like `like`'s client and device.
fn empty(like: &CubeTensor, shape: Vec<usize>, dtype: DType) -> CubeTensor {
    empty_device_contiguous_dtype(
        like.client.clone(),
        like.device.clone(),
        Shape::from(shape),
        dtype,
    )
}

/// Launch settings for `cubes` cubes of `threads` threads, spread over the
/// grid's axes when one axis is too short (kernels index by `CUBE_POS`).
fn tiled_launch(t: &CubeTensor, cubes: usize, threads: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new_1d(threads as u32);
    (
        calculate_cube_count_elemwise(&t.client, cubes * threads, dim),
        dim,
    )
}

/// Launch settings for one thread per element of `total`.
fn elementwise_launch(t: &CubeTensor, total: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new(&t.client, total);
    (calculate_cube_count_elemwise(&t.client, total, dim), dim)
}

/// Pass 2 of the kernel gradient: `[groups, rows, cols]` f32 partials summed
/// in group order into a `[rows, cols]` tensor in `dtype`.
fn sum_partials(
    like: &CubeTensor,
    partials: CubeTensor,
    [rows, cols]: [usize; 2],
    groups: usize,
    dtype: DType,
) -> CubeTensor {
    let len = rows * cols;
    let out = empty(like, vec![rows, cols], dtype);
    let (count, dim) = elementwise_launch(like, len);
    // SAFETY: one thread per element of the [rows, cols] output, bounds checked.
    unsafe {
        sum_partials_kernel::launch_unchecked(
            &like.client,
            count,
            dim,
            partials.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            len,
            groups,
            dtype_to_storage_type(dtype),
        )
    };
    out
}

/// The index tensors in one int dtype (the first one's), contiguous.
fn int_tensors<const N: usize>(ts: [CubeTensor; N]) -> [CubeTensor; N] {
    let dtype = ts[0].dtype;
    ts.map(|t| prepare(t, dtype))
}

/// The input gradient of the gather-contract slot by slot (see
/// [`contract_grad_input_slot_kernel`]): an f32 accumulator starts at zero,
/// each slot's launch adds its product, and the result is cast to the
/// tensors' dtype.
fn contract_grad_input_by_slot(
    dy: CubeTensor,
    rev_offsets: CubeTensor,
    rev_edges: CubeTensor,
    rev_slots: CubeTensor,
    edge_weights: CubeTensor,
    kernel: CubeTensor,
    weighted: bool,
) -> CubeTensor {
    let dtype = dy.dtype;
    let dy = prepare(dy, dtype);
    let [rev_offsets, rev_edges, rev_slots] = int_tensors([rev_offsets, rev_edges, rev_slots]);
    let w = prepare(edge_weights, dtype);
    let kernel = prepare(kernel, dtype);
    let [batch, n_out, features] = dims::<3>(&dy);
    let k = dims::<2>(&w)[1];
    let channels = dims::<2>(&kernel)[0] / k.max(1);
    let n_in = dims::<1>(&rev_offsets)[0] - 1;
    let pairs = (dims::<1>(&rev_slots)[0] - (k + 1)) / 2;
    let shape = Shape::from(vec![batch, n_in, channels]);
    let acc = zeros_client(dy.client.clone(), dy.device.clone(), shape, DType::F32);
    if batch * n_in * channels == 0 || features == 0 || n_out == 0 {
        return if dtype == DType::F32 {
            acc
        } else {
            cast(acc, dtype)
        };
    }
    let dtypes = [
        dtype_to_storage_type(dtype),
        dtype_to_storage_type(rev_offsets.dtype),
    ];
    let fragments = crate::options()
        .tensor_cores
        .then(|| super::tensor_core::fragments(&dy, dtype))
        .flatten();
    if let Some(fragments) = fragments {
        super::tensor_core::launch_grad_input_by_slot(
            &dy,
            &rev_offsets,
            &rev_edges,
            &rev_slots,
            &w,
            &kernel,
            &acc,
            [batch, n_in, n_out, channels, k, features],
            weighted,
            fragments,
            dtypes,
        );
        return if dtype == DType::F32 {
            acc
        } else {
            cast(acc, dtype)
        };
    }
    let tiling = Tiling::for_columns(channels, &dy);
    let tiles_n = channels.div_ceil(tiling.bn);
    // No slot reads more pixels than there are inputs, or outputs.
    let num_tiles = (batch * n_in.min(n_out)).div_ceil(tiling.bm) * tiles_n;
    let (count, dim) = tiled_launch(&dy, num_tiles, tiling.threads());
    for slot in 0..k {
        // SAFETY: the slot lists hold pixels in 0..N_in and edge positions in
        // 0..N_out·k (ReverseGraph::slot_rows of this graph); rows, features
        // and channels are checked in the kernel, and each launch writes a
        // pixel's row at most once.
        unsafe {
            contract_grad_input_slot_kernel::launch_unchecked(
                &dy.client,
                count.clone(),
                dim,
                dy.clone().into_tensor_arg(),
                rev_offsets.clone().into_tensor_arg(),
                rev_edges.clone().into_tensor_arg(),
                rev_slots.clone().into_tensor_arg(),
                w.clone().into_tensor_arg(),
                kernel.clone().into_tensor_arg(),
                acc.clone().into_tensor_arg(),
                batch,
                n_in,
                n_out,
                channels,
                k,
                features,
                slot,
                k + 1,
                k + 1 + pairs,
                tiles_n,
                num_tiles,
                weighted,
                tiling.bm,
                tiling.bn,
                tiling.bk,
                tiling.tm,
                tiling.tn,
                dtypes,
            )
        };
    }
    if dtype == DType::F32 {
        acc
    } else {
        cast(acc, dtype)
    }
}

impl GraphKernels for CubeBackend {
    fn gather_contract(
        x: CubeTensor,
        indices: CubeTensor,
        _rev_offsets: CubeTensor,
        _rev_edges: CubeTensor,
        _rev_slots: CubeTensor,
        edge_weights: CubeTensor,
        kernel: CubeTensor,
        bias: CubeTensor,
        weighted: bool,
        biased: bool,
    ) -> CubeTensor {
        let dtype = x.dtype;
        let x = prepare(x, dtype);
        let [indices] = int_tensors([indices]);
        let w = prepare(edge_weights, dtype);
        let kernel = prepare(kernel, dtype);
        let bias = prepare(bias, dtype);
        let [batch, n_in, channels] = dims::<3>(&x);
        let [n_out, k] = dims::<2>(&indices);
        let features = dims::<2>(&kernel)[1];
        let rows = batch * n_out;
        let out = empty(&x, vec![batch, n_out, features], dtype);
        if rows == 0 || features == 0 {
            return out;
        }
        let dtypes = [
            dtype_to_storage_type(dtype),
            dtype_to_storage_type(indices.dtype),
        ];
        if let Some(fragments) = crate::options()
            .tensor_cores
            .then(|| super::tensor_core::fragments(&x, dtype))
            .flatten()
        {
            super::tensor_core::launch(
                x,
                indices,
                w,
                kernel,
                bias,
                &out,
                [batch, n_in, channels, k, features],
                weighted,
                biased,
                fragments,
                dtypes,
            );
            return out;
        }
        let tiling = Tiling::forward(features, &x);
        let tiles_n = features.div_ceil(tiling.bn);
        let num_tiles = rows.div_ceil(tiling.bm) * tiles_n;
        let (count, dim) = tiled_launch(&x, num_tiles, tiling.threads());
        // SAFETY: every global read is bounded by the checks in the kernel
        // (rows < B·N_out, columns < k·C and < F) and by the indices lying in
        // 0..N_in, which the caller guarantees; the output is contiguous.
        unsafe {
            contract_kernel::launch_unchecked(
                &x.client,
                count,
                dim,
                x.clone().into_tensor_arg(),
                indices.into_tensor_arg(),
                w.into_tensor_arg(),
                kernel.into_tensor_arg(),
                bias.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                n_in,
                n_out,
                channels,
                k,
                features,
                rows,
                tiles_n,
                num_tiles,
                weighted,
                biased,
                tiling.bm,
                tiling.bn,
                tiling.bk,
                tiling.tm,
                tiling.tn,
                dtypes,
            )
        };
        out
    }

    fn gather_contract_grad_input(
        dy: CubeTensor,
        rev_offsets: CubeTensor,
        rev_edges: CubeTensor,
        rev_slots: CubeTensor,
        edge_weights: CubeTensor,
        kernel: CubeTensor,
        weighted: bool,
    ) -> CubeTensor {
        let k = dims::<2>(&edge_weights)[1];
        if dims::<1>(&rev_slots)[0] > k + 1 {
            return contract_grad_input_by_slot(
                dy,
                rev_offsets,
                rev_edges,
                rev_slots,
                edge_weights,
                kernel,
                weighted,
            );
        }
        let dtype = dy.dtype;
        let dy = prepare(dy, dtype);
        let [rev_offsets, rev_edges] = int_tensors([rev_offsets, rev_edges]);
        let w = prepare(edge_weights, dtype);
        let kernel = prepare(kernel, dtype);
        let [batch, n_out, features] = dims::<3>(&dy);
        let k = dims::<2>(&w)[1];
        let channels = dims::<2>(&kernel)[0] / k.max(1);
        let n_in = dims::<1>(&rev_offsets)[0] - 1;
        let rows = batch * n_in;
        let out = empty(&dy, vec![batch, n_in, channels], dtype);
        if rows == 0 || channels == 0 {
            return out;
        }
        if k == 0 || features == 0 || n_out == 0 {
            return zeros_client(
                dy.client.clone(),
                dy.device.clone(),
                Shape::from(vec![batch, n_in, channels]),
                dtype,
            );
        }
        let dtypes = [
            dtype_to_storage_type(dtype),
            dtype_to_storage_type(rev_offsets.dtype),
        ];
        if let Some(fragments) = crate::options()
            .tensor_cores
            .then(|| super::tensor_core::fragments(&dy, dtype))
            .flatten()
        {
            super::tensor_core::launch_grad_input(
                dy,
                rev_offsets,
                rev_edges,
                w,
                kernel,
                &out,
                [batch, n_in, n_out, channels, k, features],
                weighted,
                fragments,
                dtypes,
            );
            return out;
        }
        let tiling = Tiling::for_columns(channels, &dy);
        let tiles_n = channels.div_ceil(tiling.bn);
        let num_tiles = rows.div_ceil(tiling.bm) * tiles_n;
        let (count, dim) = tiled_launch(&dy, num_tiles, tiling.threads());
        // SAFETY: reads follow the reverse graph, whose offsets lie in
        // 0..=N_out·k and whose edges lie in 0..N_out·k; rows < B·N_in,
        // reduction columns < k·F and channels < C are checked in the kernel.
        unsafe {
            contract_grad_input_kernel::launch_unchecked(
                &dy.client,
                count,
                dim,
                dy.clone().into_tensor_arg(),
                rev_offsets.into_tensor_arg(),
                rev_edges.into_tensor_arg(),
                w.into_tensor_arg(),
                kernel.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                n_in,
                n_out,
                channels,
                k,
                features,
                rows,
                tiles_n,
                num_tiles,
                weighted,
                tiling.bm,
                tiling.bn,
                tiling.bk,
                tiling.tm,
                tiling.tn,
                dtypes,
            )
        };
        out
    }

    fn gather_contract_grad_kernel(
        x: CubeTensor,
        indices: CubeTensor,
        edge_weights: CubeTensor,
        dy: CubeTensor,
        weighted: bool,
    ) -> CubeTensor {
        let dtype = x.dtype;
        let x = prepare(x, dtype);
        let [indices] = int_tensors([indices]);
        let w = prepare(edge_weights, dtype);
        let dy = prepare(dy, dtype);
        let [batch, n_in, channels] = dims::<3>(&x);
        let [n_out, k] = dims::<2>(&indices);
        let features = dims::<3>(&dy)[2];
        let depth = k * channels;
        let rows = batch * n_out;
        let len = depth * features;
        if len == 0 {
            return empty(&x, vec![depth, features], dtype);
        }
        if rows == 0 {
            return zeros_client(
                x.client.clone(),
                x.device.clone(),
                Shape::from(vec![depth, features]),
                dtype,
            );
        }
        let fragments = crate::options()
            .tensor_cores
            .then(|| super::tensor_core::fragments(&x, dtype))
            .flatten();
        let tiling = Tiling::for_columns(features, &x);
        // (tile rows, tile columns, rows per step) of pass 1.
        let (bm, bn, bk) = match fragments {
            Some(f) => {
                let (tile, step) = f.tile_and_step();
                (tile, tile, step)
            }
            None => (tiling.bm, tiling.bn, tiling.bk),
        };
        let tiles = depth.div_ceil(bm) * features.div_ceil(bn);
        // The row groups depend on the sizes (and the path) alone.
        let groups = (GRAD_TARGET_CUBES / tiles)
            .min(GRAD_PARTIAL_FLOATS / len)
            .min(rows.div_ceil(bk))
            .max(1);
        let group_rows = rows.div_ceil(groups).div_ceil(bk) * bk;
        let groups = rows.div_ceil(group_rows);
        let partials = empty(&x, vec![groups, depth, features], DType::F32);
        let dtypes = [
            dtype_to_storage_type(dtype),
            dtype_to_storage_type(indices.dtype),
        ];
        if let Some(fragments) = fragments {
            super::tensor_core::launch_grad_kernel_partials(
                x.clone(),
                indices,
                w,
                dy,
                &partials,
                [batch, n_in, channels, k, features],
                group_rows,
                weighted,
                fragments,
                dtypes,
            );
            return sum_partials(&x, partials, [depth, features], groups, dtype);
        }
        let tiles_n = features.div_ceil(tiling.bn);
        let num_cubes = groups * tiles;
        let (count, dim) = tiled_launch(&x, num_cubes, tiling.threads());
        // SAFETY: as for the forward; partial writes stay inside their
        // group's [k·C, F] slice.
        unsafe {
            contract_grad_kernel_partials::launch_unchecked(
                &x.client,
                count,
                dim,
                x.clone().into_tensor_arg(),
                indices.into_tensor_arg(),
                w.into_tensor_arg(),
                dy.into_tensor_arg(),
                partials.clone().into_tensor_arg(),
                n_in,
                n_out,
                channels,
                k,
                features,
                rows,
                group_rows,
                tiles_n,
                tiles,
                num_cubes,
                weighted,
                tiling.bm,
                tiling.bn,
                tiling.bk,
                tiling.tm,
                tiling.tn,
                dtypes,
            )
        };
        sum_partials(&x, partials, [depth, features], groups, dtype)
    }

    fn gather_sum(
        x: CubeTensor,
        indices: CubeTensor,
        _rev_offsets: CubeTensor,
        _rev_edges: CubeTensor,
        edge_weights: CubeTensor,
    ) -> CubeTensor {
        let dtype = x.dtype;
        let x = prepare(x, dtype);
        let [indices] = int_tensors([indices]);
        let w = prepare(edge_weights, dtype);
        let [batch, n_in, channels] = dims::<3>(&x);
        let [n_out, k] = dims::<2>(&indices);
        let out = empty(&x, vec![batch, n_out, channels], dtype);
        let total = batch * n_out * channels;
        if total == 0 {
            return out;
        }
        let (count, dim) = elementwise_launch(&x, total);
        let dtypes = [
            dtype_to_storage_type(dtype),
            dtype_to_storage_type(indices.dtype),
        ];
        // SAFETY: one thread per output element, bounds checked; the indices
        // lie in 0..N_in (the caller's guarantee).
        unsafe {
            sum_kernel::launch_unchecked(
                &x.client,
                count,
                dim,
                x.clone().into_tensor_arg(),
                indices.into_tensor_arg(),
                w.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                n_in,
                n_out,
                channels,
                k,
                total,
                dtypes,
            )
        };
        out
    }

    fn gather_sum_grad_input(
        dy: CubeTensor,
        rev_offsets: CubeTensor,
        rev_edges: CubeTensor,
        edge_weights: CubeTensor,
    ) -> CubeTensor {
        let dtype = dy.dtype;
        let dy = prepare(dy, dtype);
        let [rev_offsets, rev_edges] = int_tensors([rev_offsets, rev_edges]);
        let w = prepare(edge_weights, dtype);
        let [batch, n_out, channels] = dims::<3>(&dy);
        let k = dims::<2>(&w)[1];
        let n_in = dims::<1>(&rev_offsets)[0] - 1;
        let out = empty(&dy, vec![batch, n_in, channels], dtype);
        let total = batch * n_in * channels;
        if total == 0 {
            return out;
        }
        let (count, dim) = elementwise_launch(&dy, total);
        let dtypes = [
            dtype_to_storage_type(dtype),
            dtype_to_storage_type(rev_offsets.dtype),
        ];
        // SAFETY: one thread per input element, bounds checked; reads follow
        // the reverse graph of a valid index list.
        unsafe {
            sum_grad_input_kernel::launch_unchecked(
                &dy.client,
                count,
                dim,
                dy.clone().into_tensor_arg(),
                rev_offsets.into_tensor_arg(),
                rev_edges.into_tensor_arg(),
                w.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                n_in,
                n_out,
                channels,
                k,
                total,
                dtypes,
            )
        };
        out
    }
}
