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
//! - The input gradients give each thread its own output elements, which it
//!   sums over the pixel's reverse edges in ascending order (again no atomics).
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

/// Tile sizes of the gather-GEMM kernels: a cube computes a `bm × bn` output
/// tile with `(bm / tm)·(bn / tn)` threads, each a `tm × tn` register block,
/// stepping through the reduction `bk` at a time.
#[derive(Clone, Copy, Debug)]
struct Tiling {
    bm: usize,
    bn: usize,
    bk: usize,
    tm: usize,
    tn: usize,
}

impl Tiling {
    /// Narrower column tiles for few output features, so that small `F`
    /// (5, 16, 32) does not leave most of a 64-wide tile idle. Every choice
    /// has 256 threads, a multiple of `bk`, `bm` and `bn`.
    fn for_columns(n: usize) -> Self {
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

    fn threads(&self) -> usize {
        (self.bm / self.tm) * (self.bn / self.tn)
    }
}

/// `acc[i·tn + jn] += Σ_t A[t][ty + i·bm/tm]·B[t][tx + jn·bn/tn]` over one
/// staged `bk` step. `a_s` is the A tile stored `[bk][bm + 1]` (the padding
/// keeps the transposed stores free of bank conflicts), `b_s` the B tile
/// `[bk][bn]`. Rows and columns of a thread are strided by the thread grid,
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
            b_reg[jn] = b_s[t * bn + tx + jn * (bn / tn)];
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

/// The forward gather-contract: one cube per `bm × bn` tile of the
/// `[rows = B·N_out, F]` output (`CUBE_POS = tile_m·tiles_n + tile_n`, so
/// neighbouring cubes share their gathered rows in cache).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn contract_kernel<F: Float, I: Numeric>(
    x: &Tensor<F>,
    indices: &Tensor<I>,
    weights: &Tensor<F>,
    kernel: &Tensor<F>,
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
    for i in 0..comptime!(tm * tn) {
        acc[i] = 0.0f32;
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

    let mut k0 = 0;
    while k0 < depth {
        let col = k0 + a_t;
        let j = col / channels;
        let c = col - j * channels;
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
        tile_fma(&a_s, &b_s, &mut acc, tx, ty, bm, bn, bk, tm, tn);
        sync_cube();
        k0 += bk;
    }

    #[unroll]
    for i in 0..tm {
        let row = m0 + ty + i * (bm / tm);
        #[unroll]
        for jn in 0..tn {
            let col = n0 + tx + jn * (bn / tn);
            if active && row < rows && col < features {
                out[row * features + col] = F::cast_from(acc[i * tn + jn]);
            }
        }
    }
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

    let mut r0 = r_begin;
    while r0 < r_end {
        #[unroll]
        for s in 0..a_loads {
            let t = a_t + s * a_stride;
            let row = r0 + t;
            let mut v = 0.0f32;
            if col_ok && row < r_end {
                let b = row / n_out;
                let e = (row - b * n_out) * k + j;
                let src = (b * n_in + usize::cast_from(indices[e])) * channels + c;
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
        tile_fma(&a_s, &b_s, &mut acc, tx, ty, bm, bn, bk, tm, tn);
        sync_cube();
        r0 += bk;
    }

    let base = group * depth * features;
    #[unroll]
    for i in 0..tm {
        let row = m0 + ty + i * (bm / tm);
        #[unroll]
        for jn in 0..tn {
            let n = n0 + tx + jn * (bn / tn);
            if active && row < depth && n < features {
                partials[base + row * features + n] = acc[i * tn + jn];
            }
        }
    }
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

/// Input gradient of the gather-contract: one thread per input pixel row
/// `b·N_in + i` and block of `cb` channels. For each reverse edge `(p, j)`
/// in ascending order it forms `Σ_f dY[b,p,f]·K[j·C + c, f]` for its channels
/// (reading each `dY` value once for all of them) and adds it, weighted.
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
    blocks: usize,
    total: usize,
    #[comptime] weighted: bool,
    #[comptime] cb: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let pos = ABSOLUTE_POS;
    if pos >= total {
        terminate!();
    }
    let row = pos / blocks;
    let c0 = (pos - row * blocks) * cb;
    let b = row / n_in;
    let i = row - b * n_in;

    let mut acc = Array::<f32>::new(cb);
    let mut dot = Array::<f32>::new(cb);
    let mut k_row = Array::<usize>::new(cb);
    #[unroll]
    for s in 0..cb {
        acc[s] = 0.0f32;
    }
    let e_end = usize::cast_from(rev_offsets[i + 1]);
    let mut q = usize::cast_from(rev_offsets[i]);
    while q < e_end {
        let e = usize::cast_from(rev_edges[q]);
        let p = e / k;
        let j = e - p * k;
        let dy_base = (b * n_out + p) * features;
        #[unroll]
        for s in 0..cb {
            dot[s] = 0.0f32;
            // Channels past the last read the last row; they are never written.
            k_row[s] = (j * channels + min(c0 + s, channels - 1)) * features;
        }
        for f in 0..features {
            let g = f32::cast_from(dy[dy_base + f]);
            #[unroll]
            for s in 0..cb {
                dot[s] += g * f32::cast_from(kernel[k_row[s] + f]);
            }
        }
        if weighted {
            let we = f32::cast_from(weights[e]);
            #[unroll]
            for s in 0..cb {
                acc[s] += we * dot[s];
            }
        } else {
            #[unroll]
            for s in 0..cb {
                acc[s] += dot[s];
            }
        }
        q += 1;
    }
    #[unroll]
    for s in 0..cb {
        if c0 + s < channels {
            dx[row * channels + c0 + s] = F::cast_from(acc[s]);
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

/// The index tensors in one int dtype (the first one's), contiguous.
fn int_tensors<const N: usize>(ts: [CubeTensor; N]) -> [CubeTensor; N] {
    let dtype = ts[0].dtype;
    ts.map(|t| prepare(t, dtype))
}

impl GraphKernels for CubeBackend {
    fn gather_contract(
        x: CubeTensor,
        indices: CubeTensor,
        _rev_offsets: CubeTensor,
        _rev_edges: CubeTensor,
        edge_weights: CubeTensor,
        kernel: CubeTensor,
        weighted: bool,
    ) -> CubeTensor {
        let dtype = x.dtype;
        let x = prepare(x, dtype);
        let [indices] = int_tensors([indices]);
        let w = prepare(edge_weights, dtype);
        let kernel = prepare(kernel, dtype);
        let [batch, n_in, channels] = dims::<3>(&x);
        let [n_out, k] = dims::<2>(&indices);
        let features = dims::<2>(&kernel)[1];
        let rows = batch * n_out;
        let out = empty(&x, vec![batch, n_out, features], dtype);
        if rows == 0 || features == 0 {
            return out;
        }
        let tiling = Tiling::for_columns(features);
        let tiles_n = features.div_ceil(tiling.bn);
        let num_tiles = rows.div_ceil(tiling.bm) * tiles_n;
        let (count, dim) = tiled_launch(&x, num_tiles, tiling.threads());
        let dtypes = [
            dtype_to_storage_type(dtype),
            dtype_to_storage_type(indices.dtype),
        ];
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

    fn gather_contract_grad_input(
        dy: CubeTensor,
        rev_offsets: CubeTensor,
        rev_edges: CubeTensor,
        edge_weights: CubeTensor,
        kernel: CubeTensor,
        weighted: bool,
    ) -> CubeTensor {
        let dtype = dy.dtype;
        let dy = prepare(dy, dtype);
        let [rev_offsets, rev_edges] = int_tensors([rev_offsets, rev_edges]);
        let w = prepare(edge_weights, dtype);
        let kernel = prepare(kernel, dtype);
        let [batch, n_out, features] = dims::<3>(&dy);
        let k = dims::<2>(&w)[1];
        let channels = dims::<2>(&kernel)[0] / k.max(1);
        let n_in = dims::<1>(&rev_offsets)[0] - 1;
        let out = empty(&dy, vec![batch, n_in, channels], dtype);
        // Four channels per thread share each read of dY.
        let cb = channels.clamp(1, 4);
        let blocks = channels.div_ceil(cb);
        let total = batch * n_in * blocks;
        if total == 0 {
            return out;
        }
        let (count, dim) = elementwise_launch(&dy, total);
        let dtypes = [
            dtype_to_storage_type(dtype),
            dtype_to_storage_type(rev_offsets.dtype),
        ];
        // SAFETY: reads follow the reverse graph, whose offsets lie in
        // 0..=N_out·k and whose edges lie in 0..N_out·k; channel reads are
        // clamped to C - 1 and writes checked against C.
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
                blocks,
                total,
                weighted,
                cb,
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
        let tiling = Tiling::for_columns(features);
        let tiles_n = features.div_ceil(tiling.bn);
        let tiles = depth.div_ceil(tiling.bm) * tiles_n;
        // The row groups depend on the sizes alone, never on the device.
        let groups = (GRAD_TARGET_CUBES / tiles)
            .min(GRAD_PARTIAL_FLOATS / len)
            .min(rows.div_ceil(tiling.bk))
            .max(1);
        let group_rows = rows.div_ceil(groups).div_ceil(tiling.bk) * tiling.bk;
        let groups = rows.div_ceil(group_rows);
        let partials = empty(&x, vec![groups, depth, features], DType::F32);
        let num_cubes = groups * tiles;
        let (count, dim) = tiled_launch(&x, num_cubes, tiling.threads());
        let dtypes = [
            dtype_to_storage_type(dtype),
            dtype_to_storage_type(indices.dtype),
        ];
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
        let out = empty(&x, vec![depth, features], dtype);
        let (count, dim) = elementwise_launch(&x, len);
        // SAFETY: one thread per element of the [k·C, F] output, bounds checked.
        unsafe {
            sum_partials_kernel::launch_unchecked(
                &x.client,
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
