//! The gather-contract forward on tensor cores (CubeCL's cooperative matrices,
//! `cmma`), for f16 and bf16 tensors.
//!
//! Same tiling idea as the scalar forward in `cube.rs`, with `s` the edge of
//! the device's square fragments (16 on NVIDIA, 8 on Mesa's lavapipe): a cube
//! owns a `4s × 4s` tile of the `[B·N_out, F]` output (64 × 64) and steps
//! through the `k·C` reduction `2s` at a time, gathering the operand tile
//! from `X` through the indices into shared memory (in the tensors'
//! half-precision dtype, weighted in f32 first) beside the kernel tile. Four
//! planes (subgroups) each own a quarter of the output tile as 2 × 2
//! fragments and multiply with `cmma::execute`, accumulating in f32. The
//! accumulators go through shared memory to the output, where the bias is
//! added and the dtype cast. The backward passes are the scalar kernels'.
//!
//! Off by default: it is tested against the reference on Mesa's software
//! Vulkan (`.ci/gpu-tests`), but not yet timed on a GPU. Turn it on with
//! [`set_tensor_cores`](super::set_tensor_cores) or `IDX_FLOW_TENSOR_CORES=1`;
//! [`tensor_core_launches`](super::tensor_core_launches) tells whether it ran.
//! It runs only where the device lists `s × s × s` cooperative matrices for
//! the dtype with f32 accumulators and has one fixed plane size; elsewhere
//! the scalar forward runs.

use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::features::MmaConfig;
use cubecl::ir::{ElemType, FloatKind};
use cubecl::prelude::*;
use cubecl::{CubeDim, calculate_cube_count_elemwise};

/// Planes per cube: a 2 × 2 grid of quarters of the output tile, each
/// 2 × 2 fragments.
const PLANES: u32 = 4;

/// How the tensor-core forward runs on a device: the plane size and the
/// fragment edge `s` (cooperative matrices `s × s × s`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Fragments {
    plane: u32,
    edge: usize,
}

/// The settings of the tensor-core forward on `t`'s device for `dtype`, or
/// `None` where it cannot run: the device must offer square cooperative
/// matrices of edge 16 (NVIDIA) or 8 (Mesa's lavapipe) with f32 accumulators,
/// and one fixed plane size.
pub(super) fn fragments(t: &CubeTensor, dtype: DType) -> Option<Fragments> {
    let kind = match dtype {
        DType::F16 => FloatKind::F16,
        DType::BF16 => FloatKind::BF16,
        _ => return None,
    };
    let offered = &t.client.features().matmul.cmma;
    let edge = [16u32, 8].into_iter().find(|&e| {
        offered.contains(&MmaConfig {
            a_type: ElemType::Float(kind),
            b_type: ElemType::Float(kind),
            cd_type: ElemType::Float(FloatKind::F32),
            m: e,
            n: e,
            k: e,
        })
    })? as usize;
    let hardware = &t.client.properties().hardware;
    let plane = hardware.plane_size_max;
    // The loaders give each thread one column of the `2s`-deep operand tile,
    // so the cube's thread count must be a multiple of it; planes must have
    // one fixed size for UNIT_POS_Y to number them.
    let threads = plane as usize * PLANES as usize;
    (hardware.plane_size_min == plane && plane > 0 && threads.is_multiple_of(2 * edge))
        .then_some(Fragments { plane, edge })
}

/// Launches the tensor-core forward into `out` (`[B, N_out, F]`, contiguous,
/// in the inputs' dtype). The operands are contiguous, in `dtype`, as the
/// scalar forward's.
#[allow(clippy::too_many_arguments)]
pub(super) fn launch(
    x: CubeTensor,
    indices: CubeTensor,
    weights: CubeTensor,
    kernel: CubeTensor,
    bias: CubeTensor,
    out: &CubeTensor,
    sizes: [usize; 5],
    weighted: bool,
    biased: bool,
    fragments: Fragments,
    dtypes: [ElemType; 2],
) {
    let [batch, n_in, channels, k, features] = sizes;
    let n_out = indices.meta.shape().dims::<2>()[0];
    let rows = batch * n_out;
    let tile = 4 * fragments.edge;
    let tiles_n = features.div_ceil(tile);
    let num_tiles = rows.div_ceil(tile) * tiles_n;
    let dim = CubeDim::new_2d(fragments.plane, PLANES);
    let count = calculate_cube_count_elemwise(&x.client, num_tiles * dim.num_elems() as usize, dim);
    super::TENSOR_CORE_LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: every global read is bounded by the checks in the kernel (rows
    // < B·N_out, reduction columns < k·C, output columns < F) and by the
    // indices lying in 0..N_in, which the caller guarantees; shared-memory
    // fragments lie inside their tiles; the output is contiguous.
    unsafe {
        contract_cmma_kernel::launch_unchecked(
            &x.client,
            count,
            dim,
            x.clone().into_tensor_arg(),
            indices.into_tensor_arg(),
            weights.into_tensor_arg(),
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
            fragments.edge,
            dtypes,
        )
    };
}

/// One cube per `4s × 4s` output tile (`CUBE_POS = tile_m·tiles_n + tile_n`),
/// `s` the fragment edge; the reduction is staged `2s` deep.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn contract_cmma_kernel<F: Float, I: Numeric>(
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
    #[comptime] s: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
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

    let mut a_s = Shared::<[F]>::new_slice(comptime!(4 * s * 2 * s));
    let mut b_s = Shared::<[F]>::new_slice(comptime!(2 * s * 4 * s));
    let mut c_s = Shared::<[f32]>::new_slice(comptime!(4 * s * 4 * s));
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

    let zero = f32::new(0.0);
    let c00 = cmma::Matrix::<f32>::from_value(
        cmma::MatrixIdent::Accumulator,
        s,
        s,
        s,
        cmma::MatrixLayout::Undefined,
        zero,
    );
    let c01 = cmma::Matrix::<f32>::from_value(
        cmma::MatrixIdent::Accumulator,
        s,
        s,
        s,
        cmma::MatrixLayout::Undefined,
        zero,
    );
    let c10 = cmma::Matrix::<f32>::from_value(
        cmma::MatrixIdent::Accumulator,
        s,
        s,
        s,
        cmma::MatrixLayout::Undefined,
        zero,
    );
    let c11 = cmma::Matrix::<f32>::from_value(
        cmma::MatrixIdent::Accumulator,
        s,
        s,
        s,
        cmma::MatrixLayout::Undefined,
        zero,
    );
    sync_cube();

    // A thread always stages column `a_t` of the operand tile, rows
    // `a_m, a_m + a_stride, …`; the column's (slot j, channel c) moves on by
    // the staged depth each step without a division.
    let a_t = tid % depth_step;
    let a_stride = threads / depth_step;
    let mut j = a_t / channels;
    let mut c = a_t - j * channels;
    let mut k0 = 0;
    let a_span = comptime!((s - 1) * 2 * s + s);
    let b_span = comptime!((s - 1) * 4 * s + s);
    while k0 < depth {
        let col = k0 + a_t;
        let mut m = tid / depth_step;
        while m < tile_edge {
            let mut v = 0.0f32;
            if col < depth && m0 + m < rows {
                let e = usize::cast_from(e_base[m]) + j;
                let pixel = usize::cast_from(x_base[m]) + usize::cast_from(indices[e]);
                v = f32::cast_from(x[pixel * channels + c]);
                if weighted {
                    v *= f32::cast_from(weights[e]);
                }
            }
            a_s[m * depth_step + a_t] = F::cast_from(v);
            m += a_stride;
        }
        let mut q = tid;
        while q < comptime!(2 * s * 4 * s) {
            let kr = k0 + q / tile_edge;
            let n = n0 + q % tile_edge;
            let mut v = F::cast_from(0.0f32);
            if kr < depth && n < features {
                v = kernel[kr * features + n];
            }
            b_s[q] = v;
            q += threads;
        }
        sync_cube();

        #[unroll]
        for kk in 0..2usize {
            let a0_at = (pm * 2 * s) * depth_step + kk * s;
            let a1_at = a0_at + s * depth_step;
            let b0_at = kk * s * tile_edge + pn * 2 * s;
            let b1_at = b0_at + s;
            let a0 = cmma::Matrix::<F>::from_slice(
                cmma::MatrixIdent::A,
                s,
                s,
                s,
                cmma::MatrixLayout::RowMajor,
                &a_s[a0_at..a0_at + a_span],
                u32::cast_from(depth_step),
            );
            let a1 = cmma::Matrix::<F>::from_slice(
                cmma::MatrixIdent::A,
                s,
                s,
                s,
                cmma::MatrixLayout::RowMajor,
                &a_s[a1_at..a1_at + a_span],
                u32::cast_from(depth_step),
            );
            let b0 = cmma::Matrix::<F>::from_slice(
                cmma::MatrixIdent::B,
                s,
                s,
                s,
                cmma::MatrixLayout::RowMajor,
                &b_s[b0_at..b0_at + b_span],
                u32::cast_from(tile_edge),
            );
            let b1 = cmma::Matrix::<F>::from_slice(
                cmma::MatrixIdent::B,
                s,
                s,
                s,
                cmma::MatrixLayout::RowMajor,
                &b_s[b1_at..b1_at + b_span],
                u32::cast_from(tile_edge),
            );
            cmma::execute(&a0, &b0, &c00, &c00);
            cmma::execute(&a0, &b1, &c01, &c01);
            cmma::execute(&a1, &b0, &c10, &c10);
            cmma::execute(&a1, &b1, &c11, &c11);
        }
        sync_cube();
        k0 += depth_step;
        c += depth_step;
        while c >= channels {
            c -= channels;
            j += 1;
        }
    }

    // The plane's quarter into the f32 tile, then bias, cast and bounds.
    let c_at = (pm * 2 * s) * tile_edge + pn * 2 * s;
    let stride = u32::cast_from(tile_edge);
    cmma::store(
        &mut c_s[c_at..c_at + b_span],
        &c00,
        stride,
        cmma::MatrixLayout::RowMajor,
    );
    let at = c_at + s;
    cmma::store(
        &mut c_s[at..at + b_span],
        &c01,
        stride,
        cmma::MatrixLayout::RowMajor,
    );
    let at = c_at + s * tile_edge;
    cmma::store(
        &mut c_s[at..at + b_span],
        &c10,
        stride,
        cmma::MatrixLayout::RowMajor,
    );
    let at = c_at + s * tile_edge + s;
    cmma::store(
        &mut c_s[at..at + b_span],
        &c11,
        stride,
        cmma::MatrixLayout::RowMajor,
    );
    sync_cube();
    let mut q = tid;
    while q < comptime!(4 * s * 4 * s) {
        let row = m0 + q / tile_edge;
        let col = n0 + q % tile_edge;
        if active && row < rows && col < features {
            let mut v = c_s[q];
            if biased {
                v += f32::cast_from(bias[col]);
            }
            out[row * features + col] = F::cast_from(v);
        }
        q += threads;
    }
}
